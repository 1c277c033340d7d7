package plan

import (
	"math/bits"
	"testing"
)

// A set's size is 75% of a power of two buckets (where a growing kernel
// hash table doubles), leaves room for an eighth more elements than it
// starts with, and is the smallest such size.
func TestCapacityFor(t *testing.T) {
	for _, c := range []struct {
		n    int
		want uint32
	}{
		{0, 3072}, {1, 3072}, {2730, 3072}, {2731, 6144}, {10000, 12288},
		{30050, 49152}, {50002, 98304}, {87381, 98304}, {87382, 196608},
	} {
		if got := capacityFor(c.n); got != c.want {
			t.Errorf("capacityFor(%d) = %d, want %d", c.n, got, c.want)
		}
	}
	for n := 0; n < 300000; n += 997 {
		c := int(capacityFor(n))
		if buckets := c * 4 / 3; buckets*3/4 != c || bits.OnesCount(uint(buckets)) != 1 {
			t.Fatalf("capacityFor(%d) = %d: not 75%% of a power of two", n, c)
		}
		if c <= n+n/8 {
			t.Fatalf("capacityFor(%d) = %d: no room for an eighth more", n, c)
		}
		if half := c / 2; c > 3072 && half > n+n/8 {
			t.Fatalf("capacityFor(%d) = %d: %d would do", n, c, half)
		}
	}
}

// A rebuild sizes every set it fills for the elements it starts with; the
// sets the packet path fills keep their configured size, and the interval
// sets of classes have none.
func TestRebuildSizesSets(t *testing.T) {
	pl := New(goldenConfig())
	d := largeState()
	p, err := pl.Replace(d, t0)
	if err != nil {
		t.Fatal(err)
	}
	n := map[SetRef]int{}
	for _, se := range p.AddElems {
		n[se.Set] += len(se.Elems)
	}
	sized := 0
	for _, ts := range p.Tables {
		for _, s := range ts.Sets {
			ref := SetRef{ts.Family, s.Name}
			switch {
			case s.Dynamic:
				if s.Size == 0 {
					t.Errorf("dynamic set %v has no size", ref)
				}
			case s.Interval:
				if s.Size != 0 {
					t.Errorf("interval set %v sized %d", ref, s.Size)
				}
			default:
				if want := capacityFor(n[ref]); s.Size != want {
					t.Errorf("set %v with %d elements sized %d, want %d", ref, n[ref], s.Size, want)
				}
				if n[ref] > 3072 {
					sized++
				}
			}
		}
	}
	if sized == 0 {
		t.Error("no set holds more than 3,072 elements: the state is too small to show sizing")
	}
}
