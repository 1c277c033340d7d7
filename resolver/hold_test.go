package resolver

// Hold and release, pure parts (the device's first packet must find a
// freshly answered address allowed): which captured frames the hold
// chain dropped, and the checksum a released frame needs.

import (
	"context"
	"encoding/binary"
	"slices"
	"testing"
	"time"

	"github.com/openmud/mud/enforcer/dnshold"
)

func TestHoldNeedsApply(t *testing.T) {
	if _, err := New(Config{Server: "127.0.0.1:53", HoldMark: dnshold.DefaultMark}); err == nil {
		t.Fatal("New accepted HoldMark without Apply: held answers would never be released")
	}
	r, err := New(Config{Server: "127.0.0.1:53", HoldMark: dnshold.DefaultMark,
		Apply: func(context.Context, Update) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	if r.cfg.ApplyTimeout != DefaultApplyTimeout || *r.cfg.HoldPriority != dnshold.DefaultPriority {
		t.Errorf("defaults: apply timeout %v, priority %d", r.cfg.ApplyTimeout, *r.cfg.HoldPriority)
	}
}

// heldFrame must match the kernel rule exactly: a frame it misses is a
// lost answer, a frame it adds is a duplicate (or, VLAN-tagged, one sent
// on the wrong VLAN).
func TestHeldFrame(t *testing.T) {
	r := snooper(t, Config{})
	now := time.Now()
	r.hold.markHeld([6]byte(devMAC))
	msg := cdnResponse()
	v4 := frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}
	v6 := frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000}
	with := func(f frameSpec, change func(*frameSpec)) frameSpec { change(&f); return f }
	v6ext := buildFrame(v6, msg)
	v6ext[14+6] = 0 // a hop-by-hop header first: the capture filter does not see it, the rule does not hold it
	for _, tc := range []struct {
		name  string
		frame []byte
		vlan  bool
		want  bool
	}{
		{"udp4", buildFrame(v4, msg), false, true},
		{"udp6", buildFrame(v6, msg), false, true},
		{"udp4 first fragment", buildFrame(with(v4, func(f *frameSpec) { f.fragment = true }), msg), false, true},
		{"tcp4", buildFrame(with(v4, func(f *frameSpec) { f.tcp = true }), msg), false, false},
		{"tcp6", buildFrame(with(v6, func(f *frameSpec) { f.tcp = true }), msg), false, false},
		{"inline vlan tag", buildFrame(with(v4, func(f *frameSpec) { f.vlan = true }), msg), false, false},
		{"accelerated vlan tag", buildFrame(v4, msg), true, false},
		{"other device", buildFrame(with(v4, func(f *frameSpec) { f.dst = otherMAC }), msg), false, false},
		{"not from port 53", buildFrame(with(v4, func(f *frameSpec) { f.sport = 5353 }), msg), false, false},
		{"ipv6 extension header", v6ext, false, false},
		{"runt", buildFrame(v4, msg)[:30], false, false},
	} {
		if got := r.heldFrame(tc.frame, tc.vlan, now); got != tc.want {
			t.Errorf("%s: held %v, want %v", tc.name, got, tc.want)
		}
	}
	// Removed from the kernel set: still held for a moment, then not.
	r.hold.markReleased([6]byte(devMAC), now.Add(holdLinger))
	if !r.heldFrame(buildFrame(v4, msg), false, now) {
		t.Error("a frame captured just after its device left the hold set is not released")
	}
	if r.heldFrame(buildFrame(v4, msg), false, now.Add(holdLinger)) {
		t.Error("a device removed from the hold set long ago is still held")
	}
}

// The hold bookkeeping: a MAC is held while in the kernel set and for
// holdLinger after it leaves; the lingering ones are swept.
func TestHoldBookkeeping(t *testing.T) {
	var h holdState
	a, b := [6]byte(devMAC), [6]byte(otherMAC)
	now := time.Now()
	h.markHeld(a)
	if !h.inKernel(a) || !h.held(a, now.Add(time.Hour)) || h.held(b, now) {
		t.Fatal("a MAC in the kernel set not held, or another one held")
	}
	h.markReleased(a, now.Add(holdLinger))
	if h.inKernel(a) || !h.held(a, now) || h.held(a, now.Add(holdLinger)) {
		t.Error("a MAC just released: not held for holdLinger only")
	}
	h.markHeld(a)
	if !h.held(a, now.Add(time.Hour)) || len(h.lingering) != 0 {
		t.Error("a MAC back in the kernel set is not held, or still lingers")
	}
	h.markReleased(a, now.Add(-time.Second))
	h.sweepAt = time.Time{} // due
	h.markReleased(b, now.Add(holdLinger))
	if _, ok := h.lingering[a]; ok || len(h.lingering) != 1 || len(h.kernel) != 0 {
		t.Errorf("after a sweep: lingering %v, kernel %v", h.lingering, h.kernel)
	}
}

// A frame captured on its way out carries only the pseudo-header sum when
// the checksum is offloaded; released as is, the device would drop it.
func TestCompleteUDPChecksum(t *testing.T) {
	for _, f := range []frameSpec{
		{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000},
		{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000},
	} {
		good := buildFrame(f, cdnResponse())
		off := 14 + 20 + 6
		if f.src.Is6() {
			off = 14 + 40 + 6
		}
		partial := slices.Clone(good)
		binary.BigEndian.PutUint16(partial[off:], 0x844e)
		completeUDPChecksum(partial)
		if !slices.Equal(partial, good) {
			t.Errorf("%v: checksum %#04x, want %#04x", f.src, binary.BigEndian.Uint16(partial[off:]), binary.BigEndian.Uint16(good[off:]))
		}
		// Not a whole datagram: left alone.
		frag := buildFrame(frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000, fragment: true}, cdnResponse())
		before := slices.Clone(frag)
		completeUDPChecksum(frag)
		if !slices.Equal(frag, before) {
			t.Error("completeUDPChecksum changed a fragment")
		}
		completeUDPChecksum(good[:40]) // truncated: no panic
	}
}
