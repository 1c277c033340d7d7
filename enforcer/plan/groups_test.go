package plan

import (
	"fmt"
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
