package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/mudd"
	"github.com/openmud/mud/internal/lab/gwlab"
)

// metricsAddr is mudd's metrics listener inside the gateway namespace.
const metricsAddr = "127.0.0.1:9610"

// violationWait bounds the wait for a violation to be reported; it is
// normally there within a few hundred milliseconds of the drop (the log
// is read as the kernel writes it).
const violationWait = 5 * time.Second

// An enforced device that connects to a host its file does not name
// leaves a violation record that names the device, the peer and the port:
// in `mudctl violations`, as an event in `mudctl events`, and in the
// per-device drop counter of /metrics.
func TestViolationNamesDevicePeerAndPort(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{MetricsListen: metricsAddr})
	h := e.lab.Devices[0]
	mac := h.MAC.String()
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	other := e.resolve(h, otherHost)

	dropped := time.Now()
	e.refuse("enforced: a host its file does not name", h.NS, other, otherPort)

	var v api.Violation
	err := gwlab.Poll(e.ctx, violationWait, func() error {
		var err error
		v, err = findViolation(e, mac, other.String(), otherPort)
		return err
	})
	if err != nil {
		t.Fatalf("mudctl violations %s: %v", mac, err)
	}
	t.Logf("violation recorded %v after the refused connection began", time.Since(dropped).Round(time.Millisecond))
	if v.Direction != api.FromDevice || v.Kind != api.ViolationDefaultDeny || v.Protocol != "tcp" || v.Count == 0 {
		t.Errorf("violation %+v, want from-device default-deny tcp with a count", v)
	}

	want := fmt.Sprintf("TCP to %s port %d, dropped by the default deny", other, otherPort)
	err = gwlab.Poll(e.ctx, violationWait, func() error {
		out, err := e.gw.Mudctl(e.ctx, "events")
		if err != nil {
			return err
		}
		for _, line := range strings.Split(out, "\n") {
			if strings.Contains(line, mac) && strings.Contains(line, "violation") && strings.Contains(line, want) {
				return nil
			}
		}
		return fmt.Errorf("no violation event of %s saying %q in:\n%s", mac, want, out)
	})
	if err != nil {
		t.Error(err)
	}

	series := `mud_violation_drops_total{mac="` + mac + `",direction="out"}`
	err = gwlab.Poll(e.ctx, violationWait, func() error {
		n, err := e.gw.Metric(series)
		if err != nil {
			return err
		}
		if n < 1 {
			return fmt.Errorf("%s is %d", series, n)
		}
		return nil
	})
	if err != nil {
		t.Errorf("/metrics: %v", err)
	}
	// The DHCP snooper's counters are there too: the device's DHCP exchange
	// was captured, none of it dropped.
	if n, err := e.gw.Metric("mud_dhcp_frames_total"); err != nil || n < 2 {
		t.Errorf("mud_dhcp_frames_total = %d, %v; want the device's DHCP exchange counted", n, err)
	}
	if n, err := e.gw.Metric("mud_dhcp_queue_drops_total"); err != nil || n != 0 {
		t.Errorf("mud_dhcp_queue_drops_total = %d, %v; want 0", n, err)
	}
	// mudd collects its heap at its own GOGC unless the environment (which
	// the lab's mudd inherits) sets one.
	if _, set := os.LookupEnv("GOGC"); !set {
		if n, err := e.gw.Metric("go_gc_gogc_percent"); err != nil || n != mudd.DefaultGCPercent {
			t.Errorf("go_gc_gogc_percent = %d, %v; want mudd's default, %d", n, err, mudd.DefaultGCPercent)
		}
	}
	// And the resolver's: no held DNS answer was lost.
	if n, err := e.gw.Metric("mud_dns_release_errors_total"); err != nil || n != 0 {
		t.Errorf("mud_dns_release_errors_total = %d, %v; want 0", n, err)
	}

	if out := e.mudctl("device", "show", mac); !strings.Contains(out, "recent violations") || !strings.Contains(out, other.String()) {
		t.Errorf("mudctl device show does not list the violation:\n%s", out)
	}
}

// With violations.quarantine_after set, a device that commits that many
// distinct violations within the window is quarantined by mudd: the
// event says why, and the connection it had open to a host its file
// permits is cut. mudctl release lifts it.
func TestAutoQuarantineAfterDistinctViolations(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1, gw: gwlab.Config{
		Extra: "violations:\n  quarantine_after: 3\n  quarantine_window: 1m\n",
	}})
	u := "https://" + mudHost + "/streamer.json"
	e.publish(gwlab.File{URL: u, Mfg: "Example", Model: "streamer",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: streamPort}, {Remote: cloudHost, Protocol: 17, RemotePort: streamPort}},
	})
	h := e.lab.Devices[0]
	mac := h.MAC.String()
	e.join(0, gwlab.Udhcpc, "streamer", u)
	e.waitState(h, api.StateEnforced)
	cloud := e.resolve(h, cloudHost)
	s := openStream(t, "streamer → cloud (permitted)", h.NS, cloud, newFarEnd(t, e.cloud, streamPort))
	defer s.close()
	s.flowing(t)

	// Two distinct violations: below the threshold, the device stays.
	e.refuse("enforced: other host, port 8080", h.NS, e.other.IPv4, otherPort)
	e.refuse("enforced: other host, port 8081", h.NS, e.other.IPv4, otherPort+1)
	err := gwlab.Poll(e.ctx, violationWait, func() error {
		vs, err := violationsOf(e, mac)
		if err != nil {
			return err
		}
		if len(vs) < 2 {
			return fmt.Errorf("%d violation records, want 2", len(vs))
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if d, _, err := e.gw.Device(e.ctx, mac); err != nil || d.State != api.StateEnforced {
		t.Fatalf("after two violations the device is %s (%v), want enforced", d.State, err)
	}
	s.flowing(t)

	// The third distinct one reaches the threshold.
	e.refuse("enforced: other host, port 8082", h.NS, e.other.IPv4, otherPort+2)
	d, err := e.gw.WaitState(e.ctx, mac, api.StateQuarantined, violationWait)
	if err != nil {
		t.Fatalf("after three distinct violations: %v", err)
	}
	if d.Quarantine == nil || d.Quarantine.By != "mudd" || !strings.Contains(d.Quarantine.Reason, "automatic: 3 distinct violations within 1m0s") {
		t.Errorf("quarantine %+v, want one by mudd saying why", d.Quarantine)
	}
	s.stopped(t)
	if out := e.mudctl("events"); !strings.Contains(out, "automatic: 3 distinct violations") {
		t.Errorf("no event says why the device was quarantined:\n%s", out)
	}

	e.mudctl("release", mac)
	e.waitState(h, api.StateEnforced)
	e.pass("released: the permitted host again", h.NS, cloud, streamPort)
}

// violationsOf is `mudctl violations MAC -o json`.
func violationsOf(e *env, mac string) ([]api.Violation, error) {
	out, err := e.gw.Mudctl(e.ctx, "violations", mac, "-o", "json")
	if err != nil {
		return nil, err
	}
	var vs []api.Violation
	if err := json.Unmarshal([]byte(out), &vs); err != nil {
		return nil, fmt.Errorf("mudctl violations -o json: %w\n%s", err, out)
	}
	return vs, nil
}

// findViolation finds the device's record of peer and port.
func findViolation(e *env, mac, peer string, port int) (api.Violation, error) {
	vs, err := violationsOf(e, mac)
	if err != nil {
		return api.Violation{}, err
	}
	for _, v := range vs {
		if v.MAC == mac && v.Peer.String() == peer && int(v.Port) == port {
			return v, nil
		}
	}
	return api.Violation{}, fmt.Errorf("no record of %s port %d among %+v", peer, port, vs)
}
