package manager

import (
	"context"
	"crypto/x509/pkix"
	"net/http/httptest"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

var (
	ip1 = netip.MustParseAddr("192.0.2.11")
	ip2 = netip.MustParseAddr("192.0.2.12")
	ip3 = netip.MustParseAddr("192.0.2.13")
	bg  = context.Background()
	adm = "root" // who the administrative commands are by
)

func unitHarness(t *testing.T, srv *mudServer, s Settings) (*harness, *fakeEnforcer) {
	t.Helper()
	fe := newFakeEnforcer()
	return startManager(t, harnessOpts{enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(), settings: s}), fe
}

// camServer starts a MUD server publishing the camera file (with extra
// ACEs) at /cam.json, signed (badly when badSig).
func camServer(t testing.TB, extra string, badSig bool) (*mudServer, string) {
	t.Helper()
	srv := newMUDServer(t)
	u := srv.url("mud.example", "/cam.json")
	srv.publish("/cam.json", mudFile(u, extra), badSig)
	return srv, u
}

// enforcedCam starts a manager whose MUD server publishes the camera file
// at /cam.json, and brings device 1 (ip1) to enforced with it.
func enforcedCam(t *testing.T, s Settings) (*mudServer, string, *harness, *fakeEnforcer, store.Device) {
	t.Helper()
	srv, u := camServer(t, "", false)
	h, fe := unitHarness(t, srv, s)
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	return srv, u, h, fe, h.waitState(mac(1), store.StateEnforced)
}

func TestBoundToEnforced(t *testing.T) {
	srv, u := camServer(t, "", false)
	h, fe := unitHarness(t, srv, Settings{})

	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	d := h.waitState(mac(1), store.StateEnforced)
	ed, ok := fe.device(mac(1))
	if !ok || ed.Mode != enforcer.Enforce || ed.PolicyID != d.PolicyID || !slices.Equal(ed.IPv4s, []netip.Addr{ip1}) {
		t.Fatalf("enforcer device = %+v (present %v), want enforce %s with %s", ed, ok, d.PolicyID, ip1)
	}
	// The policy's DNS name is watched; the device's names go to snooping.
	if !h.res.isWatched("cloud.example") {
		t.Error("cloud.example not watched")
	}
	// A resolver answer fills the peer set.
	srvAddr := netip.MustParseAddr("203.0.113.11")
	if err := h.m.HandleDNS(bg, resolver.Update{Name: "cloud.example", Addrs: []netip.Addr{srvAddr}, Expires: time.Now().Add(time.Minute), Source: resolver.Active}); err != nil {
		t.Fatal(err)
	}
	if got := fe.peer("dns:cloud.example"); !slices.Equal(got, []string{"203.0.113.11/32"}) {
		t.Errorf("dns peer = %v", got)
	}
	// same-manufacturer holds the device itself.
	if got := fe.peer("manufacturer:mud.example:" + srv.port); !slices.Equal(got, []string{"192.0.2.11/32"}) {
		t.Errorf("manufacturer peer = %v", got)
	}
	// The events tell the story, persisted.
	evs, err := h.m.Events(bg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var path []string
	for _, e := range evs {
		if e.MAC == mac(1).String() && e.From != e.To {
			path = append(path, string(e.To))
		}
	}
	if want := []string{"fetching", "enforced"}; !slices.Equal(path, want) {
		t.Errorf("state path = %v, want %v", path, want)
	}
	// Metrics.
	rec := httptest.NewRecorder()
	h.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	body := rec.Body.String()
	for _, want := range []string{`mud_devices{state="enforced"} 1`, "mud_fetches_total 1", "mud_bound_to_enforced_seconds_count 1",
		"mud_verification_failures_total 0", `mud_dropped_packets_total{policy="` + d.PolicyID + `",direction="from-device"} 3`} {
		if !strings.Contains(body, want) {
			t.Errorf("metrics lack %q:\n%s", want, body)
		}
	}
}

// RFC 8520 §13.2 and §2: a bad signature or IP literals hold the device
// for approval with the fallback; approval enforces.
func TestPendingApproval(t *testing.T) {
	for _, tc := range []struct {
		name      string
		badSig    bool
		extra     string
		onFailure config.OnFailure
		reason    string
	}{
		{"bad-signature-baseline", true, "", config.Baseline, "signature"},
		{"bad-signature-block", true, "", config.Block, "signature"},
		{"ip-literals", false, literalACE, config.Baseline, "IP address literals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, u := camServer(t, tc.extra, tc.badSig)
			h, fe := unitHarness(t, srv, Settings{OnFailure: tc.onFailure})
			h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
			d := h.waitState(mac(1), store.StatePendingApproval)
			if !strings.Contains(d.Reason, tc.reason) {
				t.Errorf("reason %q lacks %q", d.Reason, tc.reason)
			}
			ed, ok := fe.device(mac(1))
			switch tc.onFailure {
			case config.Baseline:
				if ok {
					t.Errorf("baseline fallback: device in the enforcer: %+v", ed)
				}
			case config.Block:
				if !ok || ed.Mode != enforcer.Block {
					t.Errorf("block fallback: enforcer device %+v (present %v)", ed, ok)
				}
			}
			// Not part of its manufacturer's group while pending (RFC 8520 §16).
			if got := fe.peer("manufacturer:mud.example:" + srv.port); len(got) != 0 {
				t.Errorf("pending device in manufacturer peer: %v", got)
			}
			if _, err := h.m.Release(bg, adm, mac(1).String(), Action{}); err == nil {
				t.Error("release of a device that is not quarantined succeeded")
			}
			dv, err := h.m.Approve(bg, adm, mac(1).String(), Action{Reason: "checked"})
			if err != nil {
				t.Fatal(err)
			}
			if dv.State != store.StateEnforced {
				t.Fatalf("after approve: %s (%s)", dv.State, dv.Reason)
			}
			if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Enforce {
				t.Errorf("after approve: enforcer device %+v", ed)
			}
			if _, err := h.m.Approve(bg, adm, mac(1).String(), Action{}); err == nil {
				t.Error("second approve succeeded")
			}
		})
	}
}

func TestRejectKeepsFallback(t *testing.T) {
	srv, u := camServer(t, "", true)
	h, fe := unitHarness(t, srv, Settings{})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StatePendingApproval)
	dv, err := h.m.Reject(bg, adm, mac(1).String(), Action{})
	if err != nil {
		t.Fatal(err)
	}
	if dv.State != store.StateFailed {
		t.Errorf("after reject: %s", dv.State)
	}
	if _, ok := fe.device(mac(1)); ok {
		t.Error("rejected device is in the enforcer (baseline fallback)")
	}
}

func TestQuarantineRelease(t *testing.T) {
	_, u, h, fe, d := enforcedCam(t, Settings{})
	dv, err := h.m.Quarantine(bg, adm, mac(1).String(), Action{Reason: "scanning"})
	if err != nil {
		t.Fatal(err)
	}
	if dv.State != store.StateQuarantined || dv.Quarantine == nil || dv.Quarantine.By != "root" {
		t.Fatalf("after quarantine: %+v", dv.Device)
	}
	if ed, _ := fe.device(mac(1)); ed.Mode != enforcer.Quarantine {
		t.Errorf("enforcer mode %v, want quarantine", ed.Mode)
	}
	// A renewal does not lift the quarantine.
	h.lease(dhcpsnoop.KindRenewed, mac(1), ip1, u)
	h.waitState(mac(1), store.StateQuarantined)
	dv, err = h.m.Release(bg, adm, mac(1).String(), Action{})
	if err != nil {
		t.Fatal(err)
	}
	if dv.State != store.StateEnforced || dv.PolicyID != d.PolicyID {
		t.Errorf("after release: %s %s", dv.State, dv.PolicyID)
	}
	if ed, _ := fe.device(mac(1)); ed.Mode != enforcer.Enforce {
		t.Errorf("enforcer mode %v, want enforce", ed.Mode)
	}
}

// RFC 8520 §10.2: release or expiry removes the rules after the grace
// period, and only then; a renewal with a new address moves the binding.
func TestLeaseLifecycle(t *testing.T) {
	srv, u, h, fe, _ := enforcedCam(t, Settings{})

	h.lease(dhcpsnoop.KindAddressChanged, mac(1), ip2, u)
	if ed, _ := fe.device(mac(1)); !slices.Equal(ed.IPv4s, []netip.Addr{ip2}) {
		t.Errorf("after address change: %v", ed.IPv4s)
	}
	if got := fe.peer("manufacturer:mud.example:" + srv.port); !slices.Equal(got, []string{"192.0.2.12/32"}) {
		t.Errorf("manufacturer peer after move = %v", got)
	}

	for _, kind := range []dhcpsnoop.Kind{dhcpsnoop.KindReleased, dhcpsnoop.KindExpired} {
		h.lease(dhcpsnoop.KindBound, mac(1), ip2, u)
		h.waitState(mac(1), store.StateEnforced)
		h.lease(kind, mac(1), netip.Addr{}, "")
		if _, ok := fe.device(mac(1)); !ok {
			t.Fatalf("%s: rules gone before the grace period", kind)
		}
		h.waitState(mac(1), store.StateRemoved)
		if err := h.m.Sync(bg); err != nil {
			t.Fatal(err)
		}
		if _, ok := fe.device(mac(1)); ok {
			t.Errorf("%s: device still in the enforcer after removal", kind)
		}
		if len(fe.policies) != 0 {
			t.Errorf("%s: unused policy left installed", kind)
		}
		if h.res.isWatched("cloud.example") {
			t.Errorf("%s: cloud.example still watched with no policy using it", kind)
		}
	}

	// A renewal within the grace period keeps the rules.
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	h.lease(dhcpsnoop.KindExpired, mac(1), netip.Addr{}, "")
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	time.Sleep(500 * time.Millisecond)
	h.waitState(mac(1), store.StateEnforced)
}

// A server that leases an address another device's record still holds
// (that lease ended unseen) moves it: the new lessee has it, the old one
// loses it with an address-conflict event, and the enforcer takes the
// desired state (it refuses one address bound to two devices).
func TestLeaseOfAnotherDevicesAddressMovesIt(t *testing.T) {
	_, u, h, fe, _ := enforcedCam(t, Settings{})
	h.lease(dhcpsnoop.KindBound, mac(2), ip1, u)
	h.waitState(mac(2), store.StateEnforced)
	if err := h.m.Sync(bg); err != nil {
		t.Fatalf("the enforcer refused the desired state: %v", err)
	}
	if ed, _ := fe.device(mac(2)); !slices.Equal(ed.IPv4s, []netip.Addr{ip1}) {
		t.Errorf("new lessee's addresses in the enforcer: %v", ed.IPv4s)
	}
	if ed, _ := fe.device(mac(1)); slices.Contains(ed.IPv4s, ip1) {
		t.Errorf("old lessee still bound to %s: %v", ip1, ed.IPv4s)
	}
	d, err := h.m.Device(bg, mac(1).String())
	if err != nil || slices.Contains(d.IPs, ip1) {
		t.Errorf("old lessee's record: %v, %v", d.IPs, err)
	}
}

// RFC 8520 §4.1, §4.4: manufacturer and model sets follow their members.
func TestManufacturerPeerSet(t *testing.T) {
	srv := newMUDServer(t)
	u1 := srv.url("mud.example", "/cam.json")
	u2 := srv.url("mud.example", "/cam2.json")
	u3 := srv.url("other.example", "/hub.json")
	srv.publish("/cam.json", mudFile(u1, ""), false)
	srv.publish("/cam2.json", mudFile(u2, ""), false)
	srv.publish("/hub.json", mudFile(u3, ""), false)
	h, fe := unitHarness(t, srv, Settings{})
	key := "manufacturer:mud.example:" + srv.port
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u1)
	h.waitState(mac(1), store.StateEnforced)
	h.lease(dhcpsnoop.KindBound, mac(2), ip2, u2)
	h.waitState(mac(2), store.StateEnforced)
	h.lease(dhcpsnoop.KindBound, mac(3), ip3, u3)
	h.waitState(mac(3), store.StateEnforced)
	if got := fe.peer(key); !slices.Equal(got, []string{"192.0.2.11/32", "192.0.2.12/32"}) {
		t.Errorf("manufacturer peer = %v", got)
	}
	if got := fe.peer("manufacturer:other.example:" + srv.port); !slices.Equal(got, []string{"192.0.2.13/32"}) {
		t.Errorf("other manufacturer peer = %v", got)
	}
	h.lease(dhcpsnoop.KindReleased, mac(2), netip.Addr{}, "")
	h.waitState(mac(2), store.StateRemoved)
	if err := h.m.Sync(bg); err != nil {
		t.Fatal(err)
	}
	if got := fe.peer(key); !slices.Equal(got, []string{"192.0.2.11/32"}) {
		t.Errorf("manufacturer peer after leave = %v", got)
	}
	// Devices of one URL share one compiled policy.
	h.lease(dhcpsnoop.KindBound, mac(4), netip.MustParseAddr("192.0.2.14"), u1)
	d4 := h.waitState(mac(4), store.StateEnforced)
	d1 := h.waitState(mac(1), store.StateEnforced)
	if d1.PolicyID != d4.PolicyID {
		t.Errorf("same URL, different policies %s %s", d1.PolicyID, d4.PolicyID)
	}
	if got := fe.peer("model:" + u1); len(got) != 0 {
		t.Errorf("model peer present though no policy refers to it: %v", got)
	}
}

// RFC 8520 §1.6, §3.5: with the MUD server down, the cached verified
// file stays enforced, on refresh and across a restart.
func TestServerDownKeepsCachedFile(t *testing.T) {
	srv, u := camServer(t, "", false)
	dir := t.TempDir()
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	d := h.waitState(mac(1), store.StateEnforced)
	srv.setDown(true)
	before := srv.hitCount("/cam.json")
	if _, err := h.m.Refresh(bg, adm, ""); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for srv.hitCount("/cam.json") == before && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond)
	if got := h.waitState(mac(1), store.StateEnforced); got.PolicyID != d.PolicyID {
		t.Errorf("policy changed while the server was down")
	}
	h.stop()

	fe2 := newFakeEnforcer()
	h2 := startManager(t, harnessOpts{dir: dir, enf: fe2, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	h2.waitState(mac(1), store.StateEnforced)
	if ed, ok := fe2.device(mac(1)); !ok || ed.PolicyID != d.PolicyID {
		t.Errorf("after restart: %+v", ed)
	}
	if fe2.applies != 1 {
		t.Errorf("restart: %d full applies, want 1", fe2.applies)
	}
}

// RFC 8520 §16: a trust anchor removed (here: another CA configured)
// puts its files back to pending at the next start.
func TestAnchorRemovedGoesPending(t *testing.T) {
	srv, u := camServer(t, "", false)
	dir := t.TempDir()
	h := startManager(t, harnessOpts{dir: dir, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	h.stop()
	other, err := labpki.NewCA("Other CA")
	if err != nil {
		t.Fatal(err)
	}
	srv.setDown(true)
	h2 := startManager(t, harnessOpts{dir: dir, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, other.Pool()), anchors: other.Pool()})
	d := h2.waitState(mac(1), store.StatePendingApproval)
	if !strings.Contains(d.Reason, "untrusted") {
		t.Errorf("reason %q", d.Reason)
	}
}

// RFC 8520 §16: the same MAC announcing a URL of another
// authority needs review.
func TestAuthorityChangePending(t *testing.T) {
	srv := newMUDServer(t)
	u1 := srv.url("mud.example", "/cam.json")
	u2 := srv.url("other.example", "/cam.json")
	srv.publish("/cam.json", mudFile(u1, ""), false)
	h, _ := unitHarness(t, srv, Settings{})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u1)
	h.waitState(mac(1), store.StateEnforced)
	h.lease(dhcpsnoop.KindRenewed, mac(1), ip1, u2)
	d := h.waitState(mac(1), store.StatePendingApproval)
	if !strings.Contains(d.Reason, "authority changed") {
		t.Errorf("reason %q", d.Reason)
	}
}

// RFC 8520 §10.1: DHCPv4 and DHCPv6 URLs that differ: no additive policy.
func TestURLMismatchPending(t *testing.T) {
	_, _, h, _, _ := enforcedCam(t, Settings{})
	if err := h.m.HandleLease(bg, dhcpsnoop.Event{Kind: dhcpsnoop.KindURLMismatch, MAC: mac(1), Reason: "v4 and v6 differ"}); err != nil {
		t.Fatal(err)
	}
	h.waitState(mac(1), store.StatePendingApproval)
}

// RFC 8520 §4.5, §4.6, §4.7: controllers from config and mudctl, local
// networks from the settings; my-controller per URL.
func TestControllersAndLocalNetworks(t *testing.T) {
	srv := newMUDServer(t)
	u := srv.url("mud.example", "/cam.json")
	extra := `,
      {"name": "ctl", "matches": {"ietf-mud:mud": {"controller": "https://controller.example/x"}, "ipv4": {"protocol": 17}},
       "actions": {"forwarding": "accept"}},
      {"name": "myctl", "matches": {"ietf-mud:mud": {"my-controller": [null]}, "ipv4": {"protocol": 17}},
       "actions": {"forwarding": "accept"}},
      {"name": "local", "matches": {"ietf-mud:mud": {"local-networks": [null]}, "ipv4": {"protocol": 17}},
       "actions": {"forwarding": "accept"}}`
	srv.publish("/cam.json", mudFile(u, extra), false)
	lan := netip.MustParsePrefix("192.0.2.0/24")
	h, fe := unitHarness(t, srv, Settings{LocalNetworks: []netip.Prefix{lan},
		Controllers: map[string][]netip.Prefix{"urn:ietf:params:mud:dns": {netip.MustParsePrefix("192.0.2.1/32")}}})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	if got := fe.peer("local-networks"); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("local-networks = %v", got)
	}
	if got := fe.peer("controller:urn:ietf:params:mud:dns"); !slices.Equal(got, []string{"192.0.2.1/32"}) {
		t.Errorf("dns controller = %v", got)
	}
	if got := fe.peer("controller:https://controller.example/x"); len(got) != 0 {
		t.Errorf("unmapped controller = %v", got)
	}
	before := srv.hitCount("/x")
	if _, err := h.m.SetController(bg, adm, Controller{URI: "https://controller.example/x",
		Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.7/32")}}); err != nil {
		t.Fatal(err)
	}
	if _, err := h.m.SetController(bg, adm, Controller{URI: u, My: true,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.5/32")}}); err != nil {
		t.Fatal(err)
	}
	if got := fe.peer("controller:https://controller.example/x"); !slices.Equal(got, []string{"198.51.100.7/32"}) {
		t.Errorf("mapped controller = %v", got)
	}
	if got := fe.peer("my-controller:" + u); !slices.Equal(got, []string{"192.0.2.5/32"}) {
		t.Errorf("my-controller = %v", got)
	}
	if srv.hitCount("/x") != before {
		t.Error("a URL-form controller was fetched")
	}
	cs, err := h.m.Controllers(bg)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 3 {
		t.Errorf("controllers = %+v", cs)
	}
}

// RFC 8520 §1.6: a changed file updates the policy after a refresh.
func TestChangedFileUpdates(t *testing.T) {
	srv, u, h, fe, d1 := enforcedCam(t, Settings{})
	extra := `,
      {"name": "ntp", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "ntp.example", "protocol": 17}},
       "actions": {"forwarding": "accept"}}`
	srv.publish("/cam.json", mudFile(u, extra), false)
	if _, err := h.m.Refresh(bg, adm, mac(1).String()); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		d, _ := h.m.Device(bg, mac(1).String())
		if d.PolicyID != d1.PolicyID && d.State == store.StateEnforced {
			if ed, _ := fe.device(mac(1)); ed.PolicyID != d.PolicyID {
				t.Errorf("enforcer still has %s", ed.PolicyID)
			}
			if !h.res.isWatched("ntp.example") {
				t.Error("new name not watched")
			}
			return
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatal("policy did not change after refresh")
}

func TestStateMachineTransitions(t *testing.T) {
	for _, ok := range [][2]store.State{{store.StateDiscovered, store.StateFetching}, {store.StateFetching, store.StateEnforced},
		{store.StateEnforced, store.StateQuarantined}, {store.StateRemoved, store.StateDiscovered}, {store.StatePendingApproval, store.StateEnforced}} {
		if !ValidTransition(ok[0], ok[1]) {
			t.Errorf("%s → %s refused", ok[0], ok[1])
		}
	}
	for _, s := range allStates {
		if s != store.StateRemoved && !ValidTransition(s, store.StateQuarantined) && s != store.StateQuarantined {
			t.Errorf("quarantine not reachable from %s", s)
		}
	}
}

// RFC 8520 §16: a class never mixes strongly (admin-bound) and weakly
// (DHCP) sourced devices of the same URL.
func TestStrongWeakNotMixed(t *testing.T) {
	srv, u := camServer(t, "", false)
	h, fe := unitHarness(t, srv, Settings{})
	key := "manufacturer:mud.example:" + srv.port
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	h.lease(dhcpsnoop.KindBound, mac(2), ip2, "")
	if _, err := h.m.Bind(bg, adm, mac(2).String(), u, "", nil); err != nil {
		t.Fatal(err)
	}
	d := h.waitState(mac(2), store.StateEnforced)
	if d.URLSource != store.SourceAdminBind {
		t.Errorf("source %q", d.URLSource)
	}
	if got := fe.peer(key); !slices.Equal(got, []string{"192.0.2.12/32"}) {
		t.Errorf("manufacturer class = %v, want only the admin-bound device", got)
	}
	// A DHCP announcement does not override the admin's binding.
	h.lease(dhcpsnoop.KindRenewed, mac(2), ip2, srv.url("mud.example", "/other.json"))
	if d := h.waitState(mac(2), store.StateEnforced); d.MUDURL != u {
		t.Errorf("binding overridden by DHCP: %s", d.MUDURL)
	}
}

// RFC 8520 §3.5: no re-fetch before cache-validity (48 h here);
// a refresh after it; the server gone for 200 h: the rules remain.
func TestCacheValidity(t *testing.T) {
	srv, u := camServer(t, "", false)
	var mu sync.Mutex
	now := time.Now()
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	advance := func(d time.Duration) { mu.Lock(); now = now.Add(d); mu.Unlock() }
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(), now: clock})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	d := h.waitState(mac(1), store.StateEnforced)
	if n := srv.hitCount("/cam.json"); n != 1 {
		t.Fatalf("%d fetches, want 1", n)
	}
	advance(47 * time.Hour)
	time.Sleep(200 * time.Millisecond) // a few ticks
	if n := srv.hitCount("/cam.json"); n != 1 {
		t.Errorf("re-fetched before cache-validity: %d fetches", n)
	}
	advance(2 * time.Hour)
	deadline := time.Now().Add(5 * time.Second)
	for srv.hitCount("/cam.json") < 2 && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if n := srv.hitCount("/cam.json"); n != 2 {
		t.Errorf("no refresh after cache-validity: %d fetches", n)
	}
	srv.setDown(true)
	advance(200 * time.Hour)
	time.Sleep(300 * time.Millisecond)
	if got := h.waitState(mac(1), store.StateEnforced); got.PolicyID != d.PolicyID {
		t.Errorf("policy changed")
	}
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Enforce {
		t.Errorf("rules gone after 200 h offline: %+v", ed)
	}
}

// RFC 8520 §1.6: a file imported out of band is verified like a fetched
// one; a device bound to its URL is enforced without any fetch succeeding.
func TestImport(t *testing.T) {
	srv := newMUDServer(t)
	u := srv.url("mud.example", "/cam.json")
	srv.setDown(true)
	h, fe := unitHarness(t, srv, Settings{})
	sub, err := h.m.SubscribeEvents(bg)
	if err != nil {
		t.Fatal(err)
	}
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateFailed)
	body := mudFile(u, "")
	sig, err := srv.signer.SignDetached(body)
	if err != nil {
		t.Fatal(err)
	}
	bad, err := h.m.Import(bg, adm, body, sig[:len(sig)-1])
	if err != nil || bad.Verdict == store.VerdictValid {
		t.Fatalf("import with a broken signature: %+v %v", bad, err)
	}
	h.waitState(mac(1), store.StatePendingApproval)
	res, err := h.m.Import(bg, adm, body, sig)
	if err != nil {
		t.Fatal(err)
	}
	if res.Verdict != store.VerdictValid || res.URL != u || res.DevicesUpdated != 1 {
		t.Errorf("import result %+v", res)
	}
	h.waitState(mac(1), store.StateEnforced)
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Enforce {
		t.Errorf("enforcer device %+v", ed)
	}
	// The subscriber saw the device's transitions as they were stored.
	var seen []store.State
	for len(seen) < 4 {
		select {
		case e := <-sub:
			if e.MAC == mac(1).String() && e.From != e.To {
				seen = append(seen, e.To)
			}
		case <-time.After(2 * time.Second):
			t.Fatalf("events seen: %v", seen)
		}
	}
	if want := []store.State{store.StateFetching, store.StateFailed, store.StatePendingApproval, store.StateEnforced}; !slices.Equal(seen, want) {
		t.Errorf("events %v, want %v", seen, want)
	}
}

// RFC 8520 §16, §2: a refreshed file with another signer, or with
// IP literals, does not replace the verified one in force until approved.
func TestUpdateNeedsApproval(t *testing.T) {
	for _, tc := range []struct {
		name   string
		extra  string
		other  bool
		reason string
	}{
		{"signer-changed", "", true, "signer changed"},
		{"ip-literals", literalACE, false, "IP address literals"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, u, h, fe, d := enforcedCam(t, Settings{})
			signer := srv.signer
			if tc.other {
				var err error
				if signer, err = srv.ca.Signer(pkix.Name{CommonName: "Integrator signer"}); err != nil {
					t.Fatal(err)
				}
			}
			body := mudFile(u, tc.extra+`,
      {"name": "new", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "new.example", "protocol": 17}},
       "actions": {"forwarding": "accept"}}`)
			srv.publishSigned("/cam.json", body, body, signer)
			evs, _ := h.m.Events(bg, 0, 0)
			since := evs[len(evs)-1].Seq
			if _, err := h.m.Refresh(bg, adm, ""); err != nil {
				t.Fatal(err)
			}
			waitEvent(t, h, since, "update-pending-approval")
			dv, err := h.m.Device(bg, mac(1).String())
			if err != nil {
				t.Fatal(err)
			}
			if dv.State != store.StateEnforced || dv.PolicyID != d.PolicyID {
				t.Errorf("device left its verified policy: %s %s", dv.State, dv.PolicyID)
			}
			if len(dv.PendingReasons) == 0 || !strings.Contains(strings.Join(dv.PendingReasons, " "), tc.reason) {
				t.Errorf("pending reasons %q lack %q", dv.PendingReasons, tc.reason)
			}
			if ed, _ := fe.device(mac(1)); ed.PolicyID != d.PolicyID {
				t.Errorf("enforcer moved to %s before approval", ed.PolicyID)
			}
			dv, err = h.m.Approve(bg, adm, mac(1).String(), Action{})
			if err != nil {
				t.Fatal(err)
			}
			if dv.State != store.StateEnforced || dv.PolicyID == d.PolicyID || len(dv.PendingReasons) != 0 {
				t.Errorf("after approval: %s %s %q", dv.State, dv.PolicyID, dv.PendingReasons)
			}
			if ed, _ := fe.device(mac(1)); ed.PolicyID != dv.PolicyID {
				t.Errorf("enforcer has %s, want %s", ed.PolicyID, dv.PolicyID)
			}
		})
	}
}

func waitEvent(t *testing.T, h *harness, since uint64, kind string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		evs, err := h.m.Events(bg, since, 0)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range evs {
			if e.Kind == kind {
				return
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Fatalf("no %s event", kind)
}

// SIGHUP's live settings: on_failure and controllers change at once.
func TestReload(t *testing.T) {
	srv, u := camServer(t, "", true)
	h, fe := unitHarness(t, srv, Settings{})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StatePendingApproval)
	if _, ok := fe.device(mac(1)); ok {
		t.Fatal("baseline: device in the enforcer")
	}
	if err := h.m.Reload(bg, Settings{OnFailure: config.Block}); err != nil {
		t.Fatal(err)
	}
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Block {
		t.Errorf("after reload to block: %+v (present %v)", ed, ok)
	}
}

// Quarantine from any state: a removed device comes back quarantined.
func TestQuarantineRemovedDevice(t *testing.T) {
	_, u, h, fe, _ := enforcedCam(t, Settings{})
	h.lease(dhcpsnoop.KindReleased, mac(1), netip.Addr{}, "")
	h.waitState(mac(1), store.StateRemoved)
	if _, err := h.m.Quarantine(bg, adm, mac(1).String(), Action{Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	h.waitState(mac(1), store.StateRemoved)
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateQuarantined)
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Quarantine {
		t.Errorf("returning device: %+v (present %v)", ed, ok)
	}
}

// A failed incremental change makes the next reconcile a full Apply, and
// the kernel catches up without another input.
func TestEnforcerFailureRecovers(t *testing.T) {
	srv, u := camServer(t, "", false)
	h, fe := unitHarness(t, srv, Settings{})
	fe.mu.Lock()
	fe.failUpdates = 1
	fe.mu.Unlock()
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	deadline := time.Now().Add(5 * time.Second)
	for time.Now().Before(deadline) {
		if ed, ok := fe.device(mac(1)); ok && ed.Mode == enforcer.Enforce {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Enforce {
		t.Fatalf("device not enforced after the failure: %+v", ed)
	}
	fe.mu.Lock()
	applies := fe.applies
	fe.mu.Unlock()
	if applies != 2 {
		t.Errorf("%d full applies, want 2 (start-up and recovery)", applies)
	}
	st, err := h.m.Status(bg)
	if err != nil || !st.Enforcer.Healthy {
		t.Errorf("status after recovery: %+v %v", st.Enforcer, err)
	}
}

// An administrator's override entries reach the enforcer as rules before
// the device's policy, numbered in order, and are persisted: after a
// restart the enforcer gets the same rules.
func TestOverridesReachEnforcerAcrossRestart(t *testing.T) {
	srv, u := camServer(t, "", false)
	dir := t.TempDir()
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	entries := []store.OverrideRule{
		{Direction: store.OverrideFromDevice, Verdict: store.OverrideAllow, Prefix: netip.MustParsePrefix("198.51.100.7/32"),
			Protocol: store.ProtoTCP, DstPort: &store.PortRange{First: 443, Last: 443}, Comment: "cloud"},
		{Direction: store.OverrideToDevice, Verdict: store.OverrideDeny, Prefix: netip.MustParsePrefix("2001:db8::/32")},
	}
	for _, o := range entries {
		if _, err := h.m.AddOverride(bg, adm, mac(1).String(), o); err != nil {
			t.Fatal(err)
		}
	}
	want := enforcer.Overrides{
		FromDevice: []policy.Rule{{Name: "override/1", Family: policy.IPv4, Protocol: policy.ProtoTCP, Verdict: policy.Accept,
			Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("198.51.100.7/32")}, DstPort: &policy.PortRange{First: 443, Last: 443}}},
		ToDevice: []policy.Rule{{Name: "override/2", Family: policy.IPv6, Verdict: policy.Drop,
			Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("2001:db8::/32")}}},
	}
	if ed, ok := fe.device(mac(1)); !ok || !reflect.DeepEqual(ed.Overrides, want) {
		t.Fatalf("enforcer overrides:\n got %+v\nwant %+v", ed.Overrides, want)
	}
	if evs := h.eventsOf("override-added", mac(1)); len(evs) != 2 || !strings.Contains(evs[0].Message, "198.51.100.7") {
		t.Errorf("override events: %+v", evs)
	}
	h.stop()

	fe2 := newFakeEnforcer()
	h2 := startManager(t, harnessOpts{dir: dir, enf: fe2, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	h2.waitState(mac(1), store.StateEnforced)
	if ed, ok := fe2.device(mac(1)); !ok || !reflect.DeepEqual(ed.Overrides, want) {
		t.Fatalf("enforcer overrides after a restart:\n got %+v\nwant %+v", ed.Overrides, want)
	}
	d, err := h2.m.Device(bg, mac(1).String())
	if err != nil || len(d.Overrides) != 2 || d.Overrides[0].Comment != "cloud" || d.Overrides[0].By != adm {
		t.Errorf("device overrides after a restart: %+v %v", d.Overrides, err)
	}
}
