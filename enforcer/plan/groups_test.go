package plan

import (
	"fmt"
	"maps"
	"math/rand/v2"
	"net/netip"
	"strings"
	"testing"
	"time"
)

func TestNormalizePeerMergesContainedPrefixes(t *testing.T) {
	got, err := normalizePeer([]Element{
		{Prefix: mustPrefix("10.1.0.0/16")}, {Prefix: mustPrefix("10.0.0.0/8")}, {Prefix: mustPrefix("2001:db8::1/128")},
	}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %v, want 10.0.0.0/8 and 2001:db8::1/128", got)
	}
}

// normalizePeer keeps exactly the prefixes no other element contains, each
// with the latest expiry of what it absorbed (zero, permanent, wins), as
// the pairwise definition says; checked on random nested prefixes of both
// families, duplicates and expiries included.
func TestNormalizePeerMatchesPairwiseDefinition(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	rng := rand.New(rand.NewPCG(7, 7))
	for round := range 2000 {
		var els []Element
		for range 1 + rng.IntN(12) {
			var p netip.Prefix
			if rng.IntN(2) == 0 {
				a := netip.AddrFrom4([4]byte{192, 0, 2, byte(rng.IntN(8))})
				p = netip.PrefixFrom(a, 24+rng.IntN(9)).Masked()
			} else {
				a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(8))})
				p = netip.PrefixFrom(a, 120+rng.IntN(9)).Masked()
			}
			els = append(els, Element{Prefix: p, Timeout: time.Duration(rng.IntN(5)) * time.Minute}) // 0: permanent
		}
		got, err := normalizePeer(els, now)
		if err != nil {
			t.Fatal(err)
		}
		want := map[netip.Prefix]time.Time{}
		for _, e := range els {
			covered := false
			for _, o := range els {
				if o.Prefix != e.Prefix && o.Prefix.Bits() < e.Prefix.Bits() && o.Prefix.Contains(e.Prefix.Addr()) {
					covered = true
				}
			}
			if covered {
				continue
			}
			var exp time.Time // the latest expiry of the prefix and all it contains
			permanent := false
			for _, o := range els {
				if e.Prefix.Bits() <= o.Prefix.Bits() && e.Prefix.Contains(o.Prefix.Addr()) {
					if o.Timeout == 0 {
						permanent = true
					} else if x := now.Add(o.Timeout); x.After(exp) {
						exp = x
					}
				}
			}
			if permanent {
				exp = time.Time{}
			}
			want[e.Prefix] = exp
		}
		if !maps.Equal(got, want) {
			t.Fatalf("round %d: %v\ngot  %v\nwant %v", round, els, got, want)
		}
	}
}

// Overlapping class prefixes split into disjoint segments, each mapped to
// the group of every class covering it (interval maps reject overlaps).
func TestNetSegments(t *testing.T) {
	segs := netSegments(map[string]map[netip.Prefix]time.Time{
		"my-controller:x":     {mustPrefix("192.0.2.0/24"): {}},
		"controller:dns":      {mustPrefix("192.0.2.53/32"): {}},
		"local-networks:":     {mustPrefix("192.0.2.128/25"): {}, mustPrefix("2001:db8::/32"): {}},
		"dns:ignored.example": {mustPrefix("192.0.2.1/32"): {}}, // single-address peers are not segments
	})
	var got []string
	for _, s := range segs {
		got = append(got, fmt.Sprintf("%s-%s %s", s.first, s.last, strings.ReplaceAll(s.sig, "\n", "+")))
	}
	want := []string{
		"192.0.2.0-192.0.2.52 my-controller:x",
		"192.0.2.53-192.0.2.53 controller:dns+my-controller:x",
		"192.0.2.54-192.0.2.127 my-controller:x",
		"192.0.2.128-192.0.2.255 local-networks:+my-controller:x",
		"2001:db8::-2001:db8:ffff:ffff:ffff:ffff:ffff:ffff local-networks:",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("segments:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
