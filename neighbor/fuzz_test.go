package neighbor

import (
	"errors"
	"net/netip"
	"testing"
	"time"
)

// FuzzParseFrame feeds arbitrary frames to the parser (with and without the
// ICMPv6 checksum check, so that the fuzzer gets past it) and what they
// claim to a small table. The parser never panics, reports only
// ErrMalformed or ErrNotNeighbor, with no control character in the
// message; what it claims is unicast and comes from a unicast MAC; the
// table never exceeds its bounds.
func FuzzParseFrame(f *testing.F) {
	for _, b := range testdataFrames(f) {
		f.Add(b)
	}
	for _, b := range [][]byte{
		garp(macA, addr("192.0.2.11")), arpProbe(macA, addr("192.0.2.12")), arpFrame(2, macA, addr("192.0.2.11"), macB, addr("192.0.2.12")),
		dadNS(macA, addr("2001:db8:1::5")), ns(macA, addr("fe80::1"), addr("fe80::2")),
		unsolicitedNA(macA, addr("fe80::1"), addr("2001:db8:1::5")), rs(macA, addr("fe80::1")),
	} {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		tb := newTable((&Config{MaxMACs: 2, MaxAddrs: 3, MaxV4PerMAC: 1, MaxV6PerMAC: 1}).limits(),
			[]netip.Prefix{lan4, lan6})
		now := t0
		for _, sum := range []bool{true, false} {
			var m Message
			err := parse(frame, &m, sum)
			if err != nil {
				if !errors.Is(err, ErrMalformed) && !errors.Is(err, ErrNotNeighbor) {
					t.Fatalf("unexpected error %v", err)
				}
				for _, r := range err.Error() {
					if r < 0x20 || r == 0x7f {
						t.Fatalf("control character in %q", err)
					}
				}
				continue
			}
			if m.MAC[0]&1 != 0 || m.NumAddrs > 2 || m.Type.String() == "" {
				t.Fatalf("message %+v", m)
			}
			for _, a := range m.Claims() {
				if !unicast(a) {
					t.Fatalf("claims %v", a)
				}
				tb.observe(claim{mac: m.MAC, addr: a, source: m.Source(), tentative: m.Tentative(), at: now}, now)
				now = now.Add(time.Second)
			}
		}
		tb.sweep(now.Add(2 * time.Hour))
		if len(tb.devs) > 2 || tb.learned > 3 || len(tb.owners) > 3 {
			t.Fatalf("bounds exceeded: %d MACs, %d addresses", len(tb.devs), len(tb.owners))
		}
	})
}
