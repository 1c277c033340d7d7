package e2e

import (
	"encoding/json"
	"fmt"
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

// A LAN bridge port whose frames are redirected past the bridge (an XDP
// program on the port, as a fast path or an offload loads one) is where
// lateral rules cannot reach: mudctl status names the port and why, a
// lateral-unenforced event is raised; once the program is detached the
// port leaves the status, with a lateral-ended event.
func TestLateralBypassNamedInStatusAndEvents(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2})
	port, to := e.lab.Devices[0].Port, e.lab.Devices[1].Port
	if g, ok := lateralGap(e.status(), port); ok {
		t.Fatalf("a lateral gap on %s before anything bypasses the bridge: %+v", port, g)
	}

	detach, err := attachXDPRedirect(e.lab.GW.NS, port, to)
	if err != nil {
		t.Fatal(err)
	}
	detached := false
	t.Cleanup(func() {
		if !detached {
			_ = detach()
		}
	})
	var gap api.LateralGap
	err = gwlab.Poll(e.ctx, 10*time.Second, func() error {
		var ok bool
		if gap, ok = lateralGap(e.status(), port); !ok {
			return fmt.Errorf("mudctl status names no lateral gap on %s", port)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if gap.Severity != api.LateralWarning || !strings.Contains(gap.Reason, "an XDP program is attached to "+port) || gap.Fix == "" {
		t.Errorf("lateral gap on %s: %+v", port, gap)
	}
	if out := e.mudctl("status"); !strings.Contains(out, "lateral unenforced") || !strings.Contains(out, netlab.LANBridge+" port "+port) {
		t.Errorf("mudctl status does not name %s:\n%s", port, out)
	}
	if !hasEvent(e.events(nil), "lateral-unenforced", netlab.LANBridge+" port "+port+": an XDP program") {
		t.Errorf("no lateral-unenforced event naming %s", port)
	}

	if err := detach(); err != nil {
		t.Fatal(err)
	}
	detached = true
	err = gwlab.Poll(e.ctx, 10*time.Second, func() error {
		if g, ok := lateralGap(e.status(), port); ok {
			return fmt.Errorf("lateral gap on %s after the program was detached: %+v", port, g)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !hasEvent(e.events(nil), "lateral-ended", netlab.LANBridge+" port "+port+": no longer") {
		t.Errorf("no lateral-ended event naming %s", port)
	}
}
