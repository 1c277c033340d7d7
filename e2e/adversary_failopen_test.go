package e2e

import (
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// waitEnforcement waits until mudctl lists the device (with an address)
// as held to enforcement.
func (e *env) waitEnforcement(h *netlab.Host, want api.Enforcement, timeout time.Duration) api.Device {
	e.t.Helper()
	d, err := e.gw.WaitDevice(e.ctx, h.MAC.String(), timeout, func(d api.Device) bool {
		return d.Enforcement == want && len(d.IPs) > 0
	})
	if err != nil {
		e.t.Fatalf("waiting for %s to be %s: %v (enforcement %q: %s)", h.MAC, want, err, d.Enforcement, d.UnenforcedReason)
	}
	return d
}

// events is `mudctl events -o json` for one device.
func (e *env) events(h *netlab.Host) []api.Event {
	e.t.Helper()
	var all, out []api.Event
	if err := json.Unmarshal([]byte(e.mudctl("events", "-o", "json")), &all); err != nil {
		e.t.Fatalf("mudctl events -o json: %v", err)
	}
	for _, ev := range all {
		if h == nil || ev.MAC == h.MAC.String() {
			out = append(out, ev)
		}
	}
	return out
}

func hasEvent(evs []api.Event, kind, text string) bool {
	for _, ev := range evs {
		if ev.Kind == kind && strings.Contains(ev.Message, text) {
			return true
		}
	}
	return false
}

// The MUD server is down when a device announces its MUD URL. Under the
// default policy.on_failure (baseline) the device is unrestricted, and
// mudctl says so: UNENFORCED with the reason in `mudctl devices`,
// enforcement "unenforced" with unenforced_reason in -o json, an
// "unenforced" event. Reloaded with on_failure: block, the same device
// reaches nothing but DHCP (its lease still renews), and mudctl says
// "blocked".
func TestAdversaryMUDServerDownUnenforcedThenBlocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1})
	e.gw.MUD.Close()
	h := e.lab.Devices[0]
	dev, _ := e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	d := e.waitEnforcement(h, api.EnforcementUnenforced, joinWait)
	if !strings.Contains(d.UnenforcedReason, "MUD server unreachable") || d.State != api.StateFailed {
		t.Errorf("mudctl devices -o json: state %s, unenforced_reason %q", d.State, d.UnenforcedReason)
	}
	var table string
	err := gwlab.Poll(e.ctx, joinWait, func() error {
		for _, line := range strings.Split(e.mudctl("devices"), "\n") {
			if strings.HasPrefix(line, h.MAC.String()) {
				table = line
			}
		}
		if !strings.Contains(table, "UNENFORCED") || !strings.Contains(table, "MUD server unreachable") {
			return fmt.Errorf("mudctl devices: %q", table)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if evs := e.events(h); !hasEvent(evs, "unenforced", "MUD server unreachable") {
		t.Errorf("no unenforced event naming the reason: %+v", evs)
	}
	other := e.resolve(h, otherHost)
	e.pass("unenforced (baseline): bulb → other:8080, as a device without MUD", h.NS, other, otherPort)

	if err := e.gw.ReloadPolicy(e.ctx, "  on_failure: block\n"); err != nil {
		t.Fatal(err)
	}
	d = e.waitEnforcement(h, api.EnforcementBlocked, joinWait)
	if !strings.Contains(d.UnenforcedReason, "MUD server unreachable") {
		t.Errorf("blocked device: unenforced_reason %q", d.UnenforcedReason)
	}
	e.refuse("blocked: bulb → other:8080", h.NS, other, otherPort)
	e.refuse("blocked: bulb → cloud:443", h.NS, e.cloud.IPv4, permitted)
	if evs := e.events(h); !hasEvent(evs, "unenforced-ended", "blocked") {
		t.Errorf("no unenforced-ended event: %+v", evs)
	}
	// DHCP still passes: a renewal is answered.
	before := d.LeaseExpiry
	time.Sleep(1100 * time.Millisecond) // a lease renewed now ends later
	if err := dev.Renew(); err != nil {
		t.Fatal(err)
	}
	if _, err := e.gw.WaitDevice(e.ctx, h.MAC.String(), joinWait, func(d api.Device) bool { return d.LeaseExpiry.After(before) }); err != nil {
		t.Errorf("blocked device's lease renewal: %v", err)
	}
}

// The MUD server is down when the device arrives and comes up 10 s later:
// mudd retries by itself (5 s, then 10 s, ...) and the device is enforced
// within about 30 s, without `mudctl refresh`; `mudctl device show` lists
// the attempts.
func TestAdversaryMUDServerComesBackRetried(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1})
	e.gw.MUD.Close()
	h := e.lab.Devices[0]
	arrived := time.Now()
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitEnforcement(h, api.EnforcementUnenforced, joinWait)
	time.Sleep(time.Until(arrived.Add(10 * time.Second)))
	srv, err := gwlab.StartMUDServer(e.mudSrv.NS, e.gw.MUDAddr, e.gw.PKI.Server)
	if err != nil {
		t.Fatal(err)
	}
	e.gw.MUD = srv // the gateway's Close stops it
	e.publish(bulb(bulbURL, "Example", "lightbulb2000"))
	d, err := e.gw.WaitState(e.ctx, h.MAC.String(), api.StateEnforced, 30*time.Second-time.Since(arrived))
	if err != nil {
		t.Fatalf("not enforced within 30 s of arriving: %v", err)
	}
	t.Logf("enforced %.1f s after arriving (the MUD server came up after 10 s)", time.Since(arrived).Seconds())
	if d.Enforcement != api.EnforcementEnforced || d.Fetch == nil || len(d.Fetch.Attempts) < 2 ||
		d.Fetch.Attempts[0].OK || !d.Fetch.Attempts[len(d.Fetch.Attempts)-1].OK {
		t.Errorf("enforced device: enforcement %q, fetch %+v", d.Enforcement, d.Fetch)
	}
	show := e.mudctl("device", "show", h.MAC.String())
	if strings.Count(show, "fetch attempt") < 2 || !strings.Contains(show, "failed: ") || !strings.Contains(show, "fetched") {
		t.Errorf("mudctl device show does not list the attempts:\n%s", show)
	}
	if evs := e.events(h); !hasEvent(evs, "fetch-failed", "attempt 1 failed") || !hasEvent(evs, "unenforced-ended", "enforced") {
		t.Errorf("events: %+v", evs)
	}
}

// Under on_failure: block, mudd restarts when the cached file's signer has
// expired: the device stays blocked (pending approval), never open.
func TestAdversaryRestartWithExpiredSignerStaysBlocked(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1, gw: gwlab.Config{Policy: "  on_failure: block\n"}})
	until := time.Now().Add(15 * time.Second)
	signer, err := e.gw.PKI.CA.SignerUntil(pkix.Name{CommonName: "Example MUD signer", Organization: []string{"Example"}}, until)
	if err != nil {
		t.Fatal(err)
	}
	f := bulb(bulbURL, "Example", "lightbulb2000")
	sig, err := signer.SignDetached(f.JSON())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.PublishRaw(f.URL, f.JSON(), f.SignatureURL(), sig); err != nil {
		t.Fatal(err)
	}
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitEnforcement(h, api.EnforcementEnforced, joinWait)
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("enforced: bulb → cloud:443", h.NS, cloud, permitted)

	time.Sleep(time.Until(until.Add(time.Second)))
	if err := e.gw.StopMudd(); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.StartMudd(e.ctx); err != nil {
		t.Fatal(err)
	}
	d := e.waitEnforcement(h, api.EnforcementBlocked, joinWait)
	if d.State != api.StatePendingApproval || !strings.Contains(d.UnenforcedReason, "expired") {
		t.Errorf("after the restart: state %s, unenforced_reason %q", d.State, d.UnenforcedReason)
	}
	e.refuse("signer expired, block: bulb → cloud:443", h.NS, cloud, permitted)
	e.refuse("signer expired, block: bulb → other:8080", h.NS, other, otherPort)
}
