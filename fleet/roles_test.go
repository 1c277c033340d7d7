package fleet_test

import (
	"context"
	"fmt"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
	"github.com/openmud/mud/internal/lab/netlab"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

// TestFleetRoles: after scripts/fleet-roles.sh, a gateway's certificate may
// write the shared decisions and its own keys, read the other gateways'
// keys, and write nothing else; the fleet client works under these roles.
func TestFleetRoles(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	netlab.RequireCommand(t, "bash")
	cert, key, ca, err := cl.ClientFiles("root")
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../scripts/fleet-roles.sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	run := func(ids ...string) (string, error) {
		args := append([]string{"netns", "exec", cl.NS, "bash", script, "--endpoints", strings.Join(cl.Endpoints(), ","),
			"--cacert", ca, "--cert", cert, "--key", key, "--prefix", "/mud"}, ids...)
		out, err := exec.CommandContext(ctx, "ip", args...).CombinedOutput()
		return string(out), err
	}
	if out, err := run("gw0", "gw1"); err != nil {
		t.Fatalf("fleet-roles.sh: %v\n%s", err, out)
	}
	// A second run (adding a gateway) keeps what exists.
	if out, err := run("gw0", "gw1", "gw2"); err != nil {
		t.Fatalf("fleet-roles.sh again: %v\n%s", err, out)
	}
	if out, err := run("gw0", "$(reboot)"); err == nil || !strings.Contains(out, "gateway id") {
		t.Fatalf("a bad gateway id was accepted: %v\n%s", err, out)
	}

	gw0, err := cl.AdminClient("gw0")
	if err != nil {
		t.Fatal(err)
	}
	defer gw0.Close()
	for _, tc := range []struct {
		key string
		ok  bool
	}{
		{"/mud/shared/verdicts-mac/02:00:00:00:01:01", true},
		{"/mud/gateways/gw0/devices/02:00:00:00:01:01", true},
		{"/mud/gateways/gw1/devices/02:00:00:00:01:01", false},
		{"/mud/gateways/gw0x/alive", false},
		{"/mud/elsewhere", false},
		{"/other", false},
	} {
		_, err := gw0.Put(ctx, tc.key, "x")
		switch {
		case tc.ok && err != nil:
			t.Errorf("gw0 writing %s: %v", tc.key, err)
		case !tc.ok && err == nil:
			t.Errorf("gw0 wrote %s; want permission denied", tc.key)
		case !tc.ok && err != rpctypes.ErrPermissionDenied && !strings.Contains(err.Error(), "permission denied"):
			t.Errorf("gw0 writing %s: %v, want permission denied", tc.key, err)
		}
	}
	if _, err := gw0.Get(ctx, "/mud/gateways/gw1/alive"); err != nil {
		t.Errorf("gw0 reading gw1's liveness: %v", err)
	}

	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	a.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	v := approval("sha256:r", "gw0")
	if _, err := a.Propose(ctx, fleet.KindVerdictURL, "https://mud.example.com/r.json", []byte(v), 0); err != nil {
		t.Fatalf("gw0 proposing under its role: %v", err)
	}
	b.waitFor(t, 10*time.Second, "gw0's decision", changed(fleet.KindVerdictURL, "https://mud.example.com/r.json", v))
	if err := a.PutDevice("02:00:00:00:01:09", []byte(`{"state":"enforced"}`)); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 10*time.Second, "flushed", isType(fleet.EventFlushed))
	deadline := time.Now().Add(10 * time.Second)
	for {
		ids, err := b.Alive(ctx)
		if err == nil && fmt.Sprint(ids) == "[gw0 gw1]" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gateways alive as seen by gw1: %v %v, want [gw0 gw1]", ids, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}
