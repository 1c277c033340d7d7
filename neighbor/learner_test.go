package neighbor

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// inject hands frames to a learner as its capture would.
func inject(t *testing.T, l *Learner, at time.Time, frames ...[]byte) {
	t.Helper()
	for _, f := range frames {
		s := sighting{iface: "br-lan", at: at}
		if err := ParseFrame(f, &s.msg); err != nil {
			t.Fatal(err)
		}
		l.frames <- s
	}
}

// runLearner runs a learner without sockets (no capture, no rtnetlink).
func runLearner(t *testing.T, cfg Config) (*Learner, func()) {
	t.Helper()
	cfg.Interfaces = []string{"br-lan"}
	cfg.NoCapture, cfg.NoNetlink = true, true
	if cfg.Prefixes == nil {
		cfg.Prefixes = []netip.Prefix{lan4, lan6}
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.Run(ctx) }()
	return l, func() {
		cancel()
		if err := <-done; err != nil {
			t.Error(err)
		}
		for range l.Events() {
		}
	}
}

func next(t *testing.T, l *Learner) Event {
	t.Helper()
	select {
	case ev, ok := <-l.Events():
		if !ok {
			t.Fatal("events closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no event")
	}
	return Event{}
}

// The learner delivers the table's events in order with their details,
// answers queries, and delivers the events of the caller's own requests
// (Release, Pin, SetPrefixes) too, also to a consumer that calls it back
// while it handles an event. Run closes Events when it returns.
func TestLearnerEvents(t *testing.T) {
	clk := &clock{now: t0}
	l, stop := runLearner(t, Config{Now: clk.Now})
	a6 := addr("2001:db8:1::11")
	inject(t, l, t0.Add(-time.Millisecond), dadNS(macA, a6))
	ev := next(t, l)
	if ev.Kind != KindLearned || ev.MAC.String() != macA.String() || ev.Addr != a6 || ev.Source != SourceDAD ||
		!ev.Tentative || ev.Interface != "br-lan" || !ev.Time.Equal(t0.Add(-time.Millisecond)) {
		t.Errorf("learned event %+v", ev)
	}
	inject(t, l, t0, garp(macA, addr("192.0.2.11")), garp(macB, addr("192.0.2.11")))
	if ev := next(t, l); ev.Kind != KindLearned || ev.Source != SourceARP {
		t.Errorf("%+v", ev)
	}
	ev = next(t, l)
	if ev.Kind != KindConflict || ev.MAC.String() != macB.String() || ev.Holder.String() != macA.String() || ev.Reason == "" {
		t.Errorf("conflict %+v", ev)
	}
	// The consumer calls back while handling: no deadlock.
	if !l.Release(addr("192.0.2.11")) {
		t.Error("release")
	}
	if ev := next(t, l); ev.Kind != KindExpired || ev.Reason != "released" {
		t.Errorf("%+v", ev)
	}
	if err := l.Pin(macB, addr("192.0.2.12")); err != nil {
		t.Fatal(err)
	}
	b, ok := l.Holder(addr("192.0.2.12"))
	if !ok || !b.Pinned || b.MAC.String() != macB.String() || b.Source != SourceAdmin {
		t.Errorf("holder of a pinned address: %+v %v", b, ok)
	}
	if err := l.Pin(macA, addr("192.0.2.12")); err == nil {
		t.Error("pinned another MAC's pinned address")
	}
	if err := l.Pin(net.HardwareAddr{1, 0, 0x5e, 0, 0, 1}, addr("192.0.2.13")); err == nil {
		t.Error("pinned to a multicast MAC")
	}
	l.SetPrefixes([]netip.Prefix{lan4})
	if ev := next(t, l); ev.Kind != KindExpired || ev.Addr != a6 || !strings.Contains(ev.Reason, "prefixes") {
		t.Errorf("%+v", ev)
	}
	var got []netip.Addr
	for _, b := range l.Addrs(macB) {
		got = append(got, b.Addr)
	}
	if !slices.Equal(got, []netip.Addr{addr("192.0.2.12")}) {
		t.Errorf("B holds %v", got)
	}
	if l.Addrs(net.HardwareAddr{1, 2, 3}) != nil {
		t.Error("addresses of an invalid MAC")
	}
	if s := l.Stats(); s.Claims != 3 || s.Conflicts != 1 || s.MACs != 2 || s.Addrs != 1 || s.Events != 5 {
		t.Errorf("stats %+v", s)
	}
	stop()
	if _, ok := <-l.Events(); ok {
		t.Error("events open after Run returned")
	}
	if err := l.Run(context.Background()); err == nil {
		t.Error("second Run")
	}
}

// Sweeps run on the learner's ticker and expire what aged.
func TestLearnerSweeps(t *testing.T) {
	clk := &clock{now: t0}
	l, stop := runLearner(t, Config{Now: clk.Now, SweepInterval: 10 * time.Millisecond, TTL6: time.Minute})
	defer stop()
	inject(t, l, t0, ns(macA, addr("fe80::5"), addr("fe80::1")))
	if ev := next(t, l); ev.Kind != KindLearned || !ev.LinkLocal {
		t.Errorf("%+v", ev)
	}
	clk.Advance(time.Minute)
	if ev := next(t, l); ev.Kind != KindExpired || ev.Reason != "not seen for 1m0s" {
		t.Errorf("%+v", ev)
	}
}

// BindOnFirstUse and Keep take effect before the MAC is ever seen, and
// are refused for a MAC that is not unicast.
func TestLearnerMarks(t *testing.T) {
	clk := &clock{now: t0}
	l, stop := runLearner(t, Config{Now: clk.Now})
	defer stop()
	if err := l.BindOnFirstUse(macA, true); err != nil {
		t.Fatal(err)
	}
	if err := l.Keep(macA, true); err != nil {
		t.Fatal(err)
	}
	for _, f := range []func(net.HardwareAddr, bool) error{l.BindOnFirstUse, l.Keep} {
		if f(bcast, true) == nil || f(nil, true) == nil {
			t.Error("marked a MAC that is not unicast")
		}
		if err := f(macC, false); err != nil || l.Addrs(macC) != nil {
			t.Error("unmarking an unknown MAC")
		}
	}
	inject(t, l, t0, garp(macA, addr("192.0.2.40")))
	if ev := next(t, l); ev.Kind != KindLearned || !ev.Pinned {
		t.Errorf("%+v", ev)
	}
	l.Unpin(macA, addr("192.0.2.40"))
	if b, _ := l.Holder(addr("192.0.2.40")); b.Pinned {
		t.Error("still pinned")
	}
}

// BindOnFirstUseOf waits for one family only: the first IPv4 address is
// pinned, an IPv6 address is learned as usual.
func TestBindOnFirstUseOfOneFamily(t *testing.T) {
	clk := &clock{now: t0}
	l, stop := runLearner(t, Config{Now: clk.Now})
	defer stop()
	if err := l.BindOnFirstUseOf(macB, true, false); err != nil {
		t.Fatal(err)
	}
	inject(t, l, t0, ns(macB, addr("2001:db8:1::b"), addr("2001:db8:1::1")))
	if ev := next(t, l); ev.Kind != KindLearned || ev.Pinned {
		t.Errorf("IPv6 address: %+v, want learned, not pinned", ev)
	}
	inject(t, l, t0, garp(macB, addr("192.0.2.41")))
	if ev := next(t, l); ev.Kind != KindLearned || !ev.Pinned {
		t.Errorf("IPv4 address: %+v, want learned and pinned", ev)
	}
	inject(t, l, t0, garp(macB, addr("192.0.2.42")))
	if ev := next(t, l); ev.Kind != KindLearned || ev.Pinned {
		t.Errorf("second IPv4 address: %+v, want learned, not pinned", ev)
	}
}

func TestNewValidates(t *testing.T) {
	for _, ifs := range [][]string{nil, {""}, {"br-lan", "br-lan"}, {strings.Repeat("x", 16)}} {
		if _, err := New(Config{Interfaces: ifs}); err == nil {
			t.Errorf("interfaces %q accepted", ifs)
		}
	}
}

// A restored address is learned (its event says so) and ages from when it
// was last seen before the restart, not from the restart: one seen longer
// ago than its TTL is not restored, and one outside the LAN never is. A
// restored address another MAC holds is a conflict, as any sighting.
func TestLearnerRestore(t *testing.T) {
	clk := &clock{now: t0}
	l, stop := runLearner(t, Config{Now: clk.Now, SweepInterval: 10 * time.Millisecond, TTL6: time.Hour})
	defer stop()
	recent, old, outside := addr("2001:db8:1::10"), addr("2001:db8:1::11"), addr("2001:db8:99::1")
	l.Restore(macA, old, t0.Add(-2*time.Hour))
	l.Restore(macA, outside, t0.Add(-time.Minute))
	l.Restore(macA, recent, t0.Add(-50*time.Minute))
	if ev := next(t, l); ev.Kind != KindLearned || ev.Addr != recent || ev.Source != SourceRestored {
		t.Fatalf("first event %+v, want %s learned from %s", ev, recent, SourceRestored)
	}
	if got := l.Addrs(macA); len(got) != 1 || got[0].Addr != recent {
		t.Errorf("restored %+v, want only %s", got, recent)
	}
	l.Restore(macB, recent, t0)
	if ev := next(t, l); ev.Kind != KindConflict || ev.Addr != recent {
		t.Errorf("another MAC restoring a held address: %+v, want a conflict", ev)
	}
	// A restart with thousands of devices: none is rate-limited.
	const many = 3000
	for i := range many {
		l.Restore(net.HardwareAddr{0x02, 0, 0, 0x10, byte(i >> 8), byte(i)}, netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 12: 0x10, 14: byte(i >> 8), 15: byte(i)}), t0)
	}
	for i := range many {
		if ev := next(t, l); ev.Kind != KindLearned {
			t.Fatalf("restored device %d: %+v", i, ev)
		}
	}
	if st := l.Stats(); st.RateLimited != 0 {
		t.Errorf("%d restored sightings rate-limited", st.RateLimited)
	}
	clk.Advance(10 * time.Minute) // an hour after it was last seen
	if ev := next(t, l); ev.Kind != KindExpired || ev.Addr != recent {
		t.Errorf("%+v, want %s expired an hour after it was last seen", ev, recent)
	}
}
