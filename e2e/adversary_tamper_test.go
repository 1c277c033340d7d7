package e2e

import (
	"fmt"
	"github.com/openmud/mud/api"
	"regexp"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/gwlab"
)

// An element someone else adds to mudd's tables to grant a device access
// its file does not (the forbidden host's address mapped to the permitted
// name's group) is taken out again within a second, and an event names the
// change.
func TestAdversaryTamperElementGrantingAccess(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("bulb → cloud:443", h.NS, cloud, permitted)
	e.refuse("bulb → other:443, before", h.NS, other, permitted)

	out, err := e.gw.NFT(e.ctx, "list", "map", "inet", "mud", "addr4")
	if err != nil {
		t.Fatal(err)
	}
	m := regexp.MustCompile(regexp.QuoteMeta(cloud.String()) + `[^,}]* : (0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("the cloud's address is not in addr4:\n%s", out)
	}
	if _, err := e.gw.NFT(e.ctx, "add", "element", "inet", "mud", "addr4", fmt.Sprintf("{ %s : %s }", other, m[1])); err != nil {
		t.Fatal(err)
	}
	added := time.Now()
	var took time.Duration
	err = gwlab.Poll(e.ctx, 5*time.Second, func() error {
		out, err := e.gw.NFT(e.ctx, "list", "map", "inet", "mud", "addr4")
		if err != nil {
			return err
		}
		if regexp.MustCompile(regexp.QuoteMeta(other.String()) + ` :`).MatchString(out) {
			return fmt.Errorf("the added element is still there:\n%s", out)
		}
		took = time.Since(added)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("the added element was gone %.0f ms later", float64(took.Microseconds())/1000)
	if took > time.Second {
		t.Errorf("the added element stood for %v; enforcer/README.md promises a repair within 1 s", took)
	}
	e.refuse("bulb → other:443, after the repair", h.NS, other, permitted)
	e.pass("bulb → cloud:443, after the repair", h.NS, cloud, permitted)
	err = gwlab.Poll(e.ctx, 5*time.Second, func() error {
		out := e.mudctl("events", "-o", "json")
		if !regexp.MustCompile(`"nftables-tampered"[^}]*element added to set addr4 in table inet mud`).MatchString(out) {
			return fmt.Errorf("no nftables-tampered event naming the element:\n%s", out)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
}
