package plan

import (
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The in-memory kernel refuses what nf_tables refuses, all or nothing:
// the property test's verdicts depend on it.

var t0 = time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

// smallTables are our tables with their sets and two chains: fixed jumps
// to pol, and the out_chain map has an element jumping to pol too.
func smallTables(t *testing.T) *Tables {
	t.Helper()
	ts := NewTables()
	p := &Plan{Now: t0}
	for _, f := range Families {
		p.Tables = append(p.Tables, TableSets{f, setDefs(f, true, false, 8, 0)})
	}
	pol := &Chain{ID: ChainRef{Inet, "pol"}, Rules: []Rule{{verdict: drop()}}}
	fixed := &Chain{ID: ChainRef{Inet, "fixed"}, Rules: []Rule{{verdict: jump("pol")}}}
	p.AddChains = []*Chain{pol, fixed}
	p.AddElems = []SetElems{
		{Set: SetRef{Inet, setOutVmap}, Elems: []*Elem{{Key: MarkKey(16), Verdict: jump("pol")}}},
		{Set: SetRef{Inet, setAddr4}, Elems: []*Elem{{Key: AddrKey(netip.MustParseAddr("192.0.2.1")), Mark: 1, Expires: t0.Add(time.Minute)}}},
		{Set: SetRef{Inet, setNet4}, Elems: []*Elem{{Key: NetKey{First: netip.MustParseAddr("192.0.2.0"), Last: netip.MustParseAddr("192.0.2.63")}, Mark: 2}}},
	}
	if err := ts.Apply(p); err != nil {
		t.Fatal(err)
	}
	return ts
}

func TestTablesRefuseWhatTheKernelRefuses(t *testing.T) {
	a1 := AddrKey(netip.MustParseAddr("192.0.2.1"))
	for _, c := range []struct {
		name string
		plan Plan
		want string
	}{
		{"delete a missing element", Plan{DelElems: []SetElems{{Set: SetRef{Inet, setGuard4}, Elems: []*Elem{{Key: GuardKey{Addr: netip.MustParseAddr("192.0.2.9")}}}}}},
			"no such file"},
		{"add an element of another value", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setAddr4}, Elems: []*Elem{{Key: a1, Mark: 7}}}}},
			"another value"},
		{"add to a missing set", Plan{AddElems: []SetElems{{Set: SetRef{Inet, "nosuch"}, Elems: []*Elem{{Key: MarkKey(1)}}}}},
			"no such file"},
		{"add a key of another type", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setAddr6}, Elems: []*Elem{{Key: a1, Mark: 1}}}}},
			"key of another type"},
		{"add a timeout to a set without", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setCaged}, Elems: []*Elem{{Key: MACKey{2}, Expires: t0.Add(time.Hour)}}}}},
			"without timeouts"},
		{"add a data element without a value", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setFromDev}, Elems: []*Elem{{Key: MACKey{2}}}}}},
			"needs a mark"},
		{"add a jump to a missing chain", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setInVmap}, Elems: []*Elem{{Key: MarkKey(16), Verdict: jump("nosuch")}}}}},
			"no such file"},
		{"add an overlapping range", Plan{AddElems: []SetElems{{Set: SetRef{Inet, setNet4}, Elems: []*Elem{{Key: NetKey{First: netip.MustParseAddr("192.0.2.32"), Last: netip.MustParseAddr("192.0.2.127")}, Mark: 3}}}}},
			"overlaps"},
		{"delete a chain a rule jumps to", Plan{DelElems: []SetElems{{Set: SetRef{Inet, setOutVmap}, Elems: []*Elem{{Key: MarkKey(16)}}}}, DelChains: []ChainRef{{Inet, "pol"}}},
			"which a rule of chain fixed refers to"},
		{"delete a chain a map jumps to", Plan{FlushChains: []*Chain{{ID: ChainRef{Inet, "fixed"}}}, DelChains: []ChainRef{{Inet, "pol"}}},
			"an element of map out_chain"},
		{"add a chain that exists", Plan{AddChains: []*Chain{{ID: ChainRef{Inet, "pol"}}}}, "file exists"},
		{"flush a missing chain", Plan{FlushChains: []*Chain{{ID: ChainRef{Bridge, "pol"}}}}, "no such file"},
		{"a rule jumping to a missing chain", Plan{AddChains: []*Chain{{ID: ChainRef{Inet, "new"}, Rules: []Rule{{verdict: gotoChain("nosuch")}}}}},
			"no such file"},
		{"a rule looking up a missing set", Plan{AddChains: []*Chain{{ID: ChainRef{Bridge, "new"}, Rules: []Rule{{frags: []frag{fSecmarkVmap("nosuch")}}}}}},
			"set nosuch"},
	} {
		t.Run(c.name, func(t *testing.T) {
			ts := smallTables(t)
			before := ts.String()
			c.plan.Now = t0
			err := ts.Apply(&c.plan)
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("Apply = %v, want an error saying %q", err, c.want)
			}
			if ts.String() != before {
				t.Errorf("a refused plan changed the tables:\n%s\nwant:\n%s", ts, before)
			}
		})
	}
}

func TestTablesApply(t *testing.T) {
	ts := smallTables(t)
	a1 := AddrKey(netip.MustParseAddr("192.0.2.1"))
	// destroy of a missing element, the same value with a new timeout, a
	// chain deleted once nothing refers to it
	p := &Plan{Now: t0.Add(time.Second),
		DelElems: []SetElems{{Set: SetRef{Inet, setGuard4}, Elems: []*Elem{{Key: GuardKey{Addr: netip.MustParseAddr("192.0.2.9")}}}, Destroy: true},
			{Set: SetRef{Inet, setOutVmap}, Elems: []*Elem{{Key: MarkKey(16)}}}},
		FlushChains: []*Chain{{ID: ChainRef{Inet, "fixed"}, Rules: []Rule{{verdict: accept()}}}},
		DelChains:   []ChainRef{{Inet, "pol"}},
		AddElems:    []SetElems{{Set: SetRef{Inet, setAddr4}, Elems: []*Elem{{Key: a1, Mark: 1, Expires: t0.Add(time.Hour)}}}},
	}
	if err := ts.Apply(p); err != nil {
		t.Fatal(err)
	}
	in := ts.Table(Inet)
	if e := in.Sets[setAddr4].Elems[a1]; e == nil || !e.Expires.Equal(t0.Add(time.Hour)) {
		t.Errorf("re-added element = %+v, want the new timeout", e)
	}
	if in.Chains["pol"] != nil || len(in.Chains["fixed"].Rules) != 1 || in.Chains["fixed"].Rules[0].Text() != "accept" {
		t.Errorf("chains after the plan:\n%s", ts)
	}
	// Elements expire with their timeout.
	ts.Expire(t0.Add(2 * time.Hour))
	if len(in.Sets[setAddr4].Elems) != 0 || len(in.Sets[setNet4].Elems) != 1 {
		t.Errorf("after expiry:\n%s", ts)
	}
	// A replaced table holds only what the plan gives it.
	if err := ts.Apply(&Plan{Now: t0, Tables: []TableSets{{Inet, setDefs(Inet, true, false, 8, 0)}}}); err != nil {
		t.Fatal(err)
	}
	if n := len(ts.Table(Inet).Chains) + len(ts.Table(Inet).Sets[setNet4].Elems); n != 0 {
		t.Errorf("replaced table kept %d objects", n)
	}
}

// Verify compares the kernel as read back (rule counts, decoded elements)
// with the planner's tables.
func TestVerify(t *testing.T) {
	want := smallTables(t)
	got := smallTables(t)
	if d := Verify(want, got, t0, 0); len(d) != 0 {
		t.Fatalf("equal tables differ: %v", d)
	}
	in := got.Table(Inet)
	in.Chains["pol"].Rules = nil
	in.PutChain(&Chain{ID: ChainRef{Inet, "theirs"}})
	in.PutSet(Set{Name: "theirs"})
	a1 := AddrKey(netip.MustParseAddr("192.0.2.1"))
	in.Sets[setAddr4].Elems[a1] = &Elem{Key: a1, Mark: 9}
	g := GuardKey{Addr: netip.MustParseAddr("192.0.2.5")}
	in.Sets[setGuard4].Elems[g] = &Elem{Key: g}
	delete(in.Sets[setOutVmap].Elems, MarkKey(16))
	delete(got.t, Bridge)
	d := strings.Join(Verify(want, got, t0, 0), "\n")
	for _, w := range []string{
		"table bridge mud missing",
		"chain pol of table inet mud has 0 rules, want 1",
		"unexpected chain theirs in table inet mud",
		"unexpected set theirs in table inet mud",
		"element 192.0.2.1 of map addr4 of table inet mud has another value",
		"unexpected element 00:00:00:00:00:00 . 192.0.2.5 in set guard4 of table inet mud",
		"element 0x00000010 missing from set out_chain of table inet mud",
	} {
		if !strings.Contains(d, w) {
			t.Errorf("Verify does not say %q:\n%s", w, d)
		}
	}
	if n := len(Verify(want, got, t0, 3)); n != 3 {
		t.Errorf("Verify with a limit of 3 listed %d", n)
	}
	// An element due within a few seconds may be gone.
	delete(in.Sets[setAddr4].Elems, a1)
	if d := strings.Join(Verify(want, got, t0.Add(58*time.Second), 0), "\n"); strings.Contains(d, "192.0.2.1") {
		t.Errorf("an element due to expire reported: %s", d)
	}
}
