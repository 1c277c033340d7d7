package manager

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
	"github.com/openmud/mud/violations"
)

// drop is a logged default-deny drop of mac's packet to peer:port.
func drop(m [6]byte, src, peer netip.Addr, port uint16) *violations.Drop {
	return &violations.Drop{Kind: violations.DefaultDeny, Direction: violations.Out, Family: 2,
		HWSrc: m, HasHW: true, Src: src, Dst: peer, Protocol: 6, Port: port}
}

func hw6(i int) [6]byte { var a [6]byte; copy(a[:], mac(i)); return a }

// waitEvents waits until the event log holds n events of kind.
func waitEvents(t *testing.T, h *harness, kind string, n int) []store.Event {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		evs, err := h.m.Events(bg, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		var got []store.Event
		for _, e := range evs {
			if e.Kind == kind {
				got = append(got, e)
			}
		}
		if len(got) >= n || time.Now().After(deadline) {
			if len(got) < n {
				t.Fatalf("%d %q events, want %d: %+v", len(got), kind, n, evs)
			}
			return got
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// A new violation record becomes a "violation" event naming the peer, its
// DNS name when the device was answered for it, and the port; the records
// are queried per device; the violation metrics are in /metrics.
func TestViolationsBecomeEvents(t *testing.T) {
	var m *Manager
	tbl := violations.NewTable(violations.Config{NameOf: func(hw net.HardwareAddr, a netip.Addr) string { return m.PeerName(hw, a) }})
	srv, u := camServer(t, "", false)
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.Violations = tbl }})
	m = h.m
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	cloud := netip.MustParseAddr("203.0.113.11")
	if err := h.m.HandleDNS(bg, resolver.Update{Name: "cloud.example", Addrs: []netip.Addr{cloud}, Expires: time.Now().Add(time.Minute), Source: resolver.Active}); err != nil {
		t.Fatal(err)
	}
	if got := h.m.PeerName(mac(1), cloud); got != "cloud.example" {
		t.Errorf("PeerName = %q, want cloud.example", got)
	}
	if got := h.m.DeviceOf(ip1); got.String() != mac(1).String() {
		t.Errorf("DeviceOf(%s) = %v, want %s", ip1, got, mac(1))
	}

	d := drop(hw6(1), ip1, cloud, 8080)
	tbl.Add(d)
	tbl.Add(d) // the same record again: no second event
	tbl.Flush()
	evs := waitEvents(t, h, "violation", 1)
	if evs[0].MAC != mac(1).String() || !strings.Contains(evs[0].Message, "out TCP to 203.0.113.11 (cloud.example) port 8080, dropped by the default deny") {
		t.Errorf("violation event %+v", evs[0])
	}
	vs, err := h.m.Violations(bg, mac(1).String())
	if err != nil || len(vs) != 1 || vs[0].Count != 2 || vs[0].Port != 8080 {
		t.Errorf("Violations = %+v, %v; want one record of 2 drops to port 8080", vs, err)
	}
	if _, err := h.m.Violations(bg, "not-a-mac"); err == nil {
		t.Error("Violations accepted a bad MAC")
	}
	var b strings.Builder
	h.m.writeMetrics(context.Background(), &b)
	if !strings.Contains(b.String(), "mud_violation") {
		t.Errorf("metrics have no violation counters:\n%s", b.String())
	}
}

// With AutoQuarantine, a device's third distinct violation within the
// window quarantines it, naming why; fewer, or the same one repeated, do
// not.
func TestAutoQuarantineAfterDistinctViolations(t *testing.T) {
	tbl := violations.NewTable(violations.Config{})
	srv, u := camServer(t, "", false)
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) {
			c.Violations = tbl
			c.AutoQuarantine = AutoQuarantine{After: 3, Window: time.Minute}
		}})
	for i := 1; i <= 2; i++ {
		h.lease(dhcpsnoop.KindBound, mac(i), netip.AddrFrom4([4]byte{192, 0, 2, byte(10 + i)}), u)
		h.waitState(mac(i), store.StateEnforced)
	}
	peer := netip.MustParseAddr("198.51.100.7")
	src1 := netip.MustParseAddr("192.0.2.11")
	for range 5 {
		tbl.Add(drop(hw6(1), src1, peer, 23)) // one violation, repeated
	}
	tbl.Add(drop(hw6(1), src1, peer, 2323))
	tbl.Add(drop(hw6(2), netip.MustParseAddr("192.0.2.12"), peer, 23)) // another device's
	tbl.Flush()
	waitEvents(t, h, "violation", 3)
	if d := h.waitState(mac(1), store.StateEnforced); d.Quarantine != nil {
		t.Fatalf("quarantined after 2 distinct violations: %+v", d.Quarantine)
	}
	tbl.Add(drop(hw6(1), src1, peer, 80))
	tbl.Flush()
	d := h.waitState(mac(1), store.StateQuarantined)
	if d.Quarantine == nil || d.Quarantine.By != "mudd" || !strings.Contains(d.Quarantine.Reason, "3 distinct violations within 1m0s") {
		t.Errorf("quarantine %+v", d.Quarantine)
	}
	evs := waitEvents(t, h, "quarantined", 1)
	if !slices.ContainsFunc(evs, func(e store.Event) bool { return e.MAC == mac(1).String() && strings.Contains(e.Message, "automatic") }) {
		t.Errorf("no quarantined event naming why: %+v", evs)
	}
	if dv := h.waitState(mac(2), store.StateEnforced); dv.Quarantine != nil {
		t.Error("the other device was quarantined")
	}
}
