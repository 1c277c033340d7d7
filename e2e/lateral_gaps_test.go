package e2e

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// status is mudctl status -o json.
func (e *env) status() api.Status {
	e.t.Helper()
	var st api.Status
	if err := json.Unmarshal([]byte(e.mudctl("status", "-o", "json")), &st); err != nil {
		e.t.Fatalf("mudctl status -o json: %v", err)
	}
	return st
}

// lateralGap is the status's gap on port, if any.
func lateralGap(st api.Status, port string) (api.LateralGap, bool) {
	for _, g := range st.LateralUnenforced {
		if g.Interface == netlab.LANBridge && g.Port == port {
			return g, true
		}
	}
	return api.LateralGap{}, false
}

// LAN bridge ports whose frames are redirected past the bridge (XDP
// programs on the ports, as a fast path or an offload loads them) are
// where lateral rules cannot reach, and mudd says so: an enforced device
// whose file allows nothing lateral reaches another device through them,
// mudctl status names the ports and why, and lateral-unenforced events are
// raised. Once the programs are detached the device is refused again, the
// ports leave the status, and lateral-ended events are raised.
func TestLateralBypassNamedInStatusAndEvents(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 2, gwlab.Config{})
	dev, peer := e.lab.Devices[0], e.lab.Devices[1]
	devAddr, peerAddr := netip.MustParseAddr("192.0.2.80"), netip.MustParseAddr("192.0.2.81")
	e.staticAddr(dev, devAddr)
	e.staticAddr(peer, peerAddr)
	e.echo(peer, lateralPort)
	e.mudctl("bind", dev.MAC.String(), bulbURL, "--ip", devAddr.String())
	e.waitState(dev, api.StateEnforced)
	e.refuse("enforced device → another device (its file allows nothing lateral)", dev.NS, peerAddr, lateralPort)
	for _, p := range []string{dev.Port, peer.Port} {
		if g, ok := lateralGap(e.status(), p); ok {
			t.Fatalf("a lateral gap on %s before anything bypasses the bridge: %+v", p, g)
		}
	}

	var detach []func() error
	for _, link := range [][2]string{{dev.Port, peer.Port}, {peer.Port, dev.Port}} {
		d, err := attachXDPRedirect(e.lab.GW.NS, link[0], link[1])
		if err != nil {
			t.Fatal(err)
		}
		detach = append(detach, d)
	}
	detached := false
	t.Cleanup(func() {
		if !detached {
			for _, d := range detach {
				_ = d()
			}
		}
	})
	e.pass("enforced device → another device, both ports redirected past the bridge", dev.NS, peerAddr, lateralPort)
	var gap api.LateralGap
	err := gwlab.Poll(e.ctx, 10*time.Second, func() error {
		st := e.status()
		var ok bool
		if gap, ok = lateralGap(st, dev.Port); !ok {
			return fmt.Errorf("mudctl status names no lateral gap on %s: %+v", dev.Port, st.LateralUnenforced)
		}
		if _, ok = lateralGap(st, peer.Port); !ok {
			return fmt.Errorf("mudctl status names no lateral gap on %s: %+v", peer.Port, st.LateralUnenforced)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gap.Severity != api.LateralWarning || !strings.Contains(gap.Reason, "an XDP program is attached to "+dev.Port) || gap.Fix == "" {
		t.Errorf("lateral gap on %s: %+v", dev.Port, gap)
	}
	if out := e.mudctl("status"); !strings.Contains(out, "lateral unenforced") || !strings.Contains(out, netlab.LANBridge+" port "+dev.Port) {
		t.Errorf("mudctl status does not name %s:\n%s", dev.Port, out)
	}
	for _, p := range []string{dev.Port, peer.Port} {
		if !hasEvent(e.events(nil), "lateral-unenforced", netlab.LANBridge+" port "+p+": an XDP program") {
			t.Errorf("no lateral-unenforced event naming %s", p)
		}
	}

	for _, d := range detach {
		if err := d(); err != nil {
			t.Fatal(err)
		}
	}
	detached = true
	err = gwlab.Poll(e.ctx, 10*time.Second, func() error {
		if g, ok := lateralGap(e.status(), dev.Port); ok {
			return fmt.Errorf("lateral gap on %s after the program was detached: %+v", dev.Port, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(e.events(nil), "lateral-ended", netlab.LANBridge+" port "+dev.Port+": no longer") {
		t.Errorf("no lateral-ended event naming %s", dev.Port)
	}
	e.refuse("enforced device → another device, through the bridge again", dev.NS, peerAddr, lateralPort)
}
