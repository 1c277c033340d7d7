package plan

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"
)

// Plan is one nftables transaction over our two tables: the kernel applies
// all of it or nothing. Its parts are applied in this order (package
// nftwire encodes them so):
//
//  1. Tables: each is deleted with whatever it holds and created anew with
//     its sets (a rebuild; empty for an incremental plan);
//  2. DelElems: elements deleted;
//  3. AddChains, FlushChains, DelChains: chains created, emptied, deleted
//     (elements and chains referring to a deleted one go first);
//  4. the Rules of FlushChains, then those of AddChains, appended;
//  5. AddElems: elements added.
//
// After the kernel committed it, the Planner that made it must be told
// (Planner.Commit), and the flows of EndFlows ended.
type Plan struct {
	// Now is when the plan was made: an element's timeout is its Expires
	// minus the time the plan is sent.
	Now         time.Time
	Tables      []TableSets
	DelElems    []SetElems
	AddChains   []*Chain
	FlushChains []*Chain
	DelChains   []ChainRef
	AddElems    []SetElems
	// EndFlows are the devices whose treatment tightened: their flows
	// must end once the plan is committed.
	EndFlows Flows

	pending *pending
}

// TableSets is a table a plan replaces, and the sets it is created with.
type TableSets struct {
	Family Family
	Sets   []Set
}

// SetElems are elements of one set to add or delete. Destroy marks
// deletions of elements due to expire: they are deleted if the kernel
// still has them (NFT_MSG_DESTROYSETELEM).
type SetElems struct {
	Set     SetRef
	Elems   []*Elem
	Destroy bool
}

// Flows are the addresses and MACs whose flows end: conntrack entries
// from, to and answered by the addresses, and the bridge table's
// remembered flows of the MACs.
type Flows struct {
	Addrs []netip.Addr
	MACs  []net.HardwareAddr
}

// Empty tells whether the plan changes nothing in the kernel.
func (p *Plan) Empty() bool {
	return len(p.Tables) == 0 && len(p.DelElems) == 0 && len(p.AddChains) == 0 && len(p.FlushChains) == 0 &&
		len(p.DelChains) == 0 && len(p.AddElems) == 0
}

// Rebuild tells whether the plan replaces our tables.
func (p *Plan) Rebuild() bool { return len(p.Tables) > 0 }

// Count is the number of elements and rules the plan sends.
func (p *Plan) Count() (elems, rules int) {
	for _, l := range [][]SetElems{p.DelElems, p.AddElems} {
		for _, se := range l {
			elems += len(se.Elems)
		}
	}
	for _, l := range [][]*Chain{p.AddChains, p.FlushChains} {
		for _, c := range l {
			rules += len(c.Rules)
		}
	}
	return elems, rules
}

// String prints the plan in nft's syntax, one operation a line, in the
// order the kernel applies them; elements sorted within each set (the
// kernel does not care about their order). Timeouts are relative to Now.
func (p *Plan) String() string {
	var b strings.Builder
	for _, t := range p.Tables {
		fmt.Fprintf(&b, "replace table %s %s\n", t.Family, tableName)
		for _, s := range t.Sets {
			kind := "set"
			if s.Value != ValueNone {
				kind = "map"
			}
			fmt.Fprintf(&b, "add %s %s %s %s { %s; }\n", kind, t.Family, tableName, s.Name, s.decl)
		}
	}
	for _, se := range p.DelElems {
		verb := "delete"
		if se.Destroy {
			verb = "destroy"
		}
		for _, e := range sortedElems(se.Elems) {
			fmt.Fprintf(&b, "%s element %s { %s }\n", verb, se.Set, e.Key)
		}
	}
	for _, c := range p.AddChains {
		if c.Hook != nil {
			fmt.Fprintf(&b, "add chain %s { %s }\n", c.ID, c.Hook.Text())
		} else {
			fmt.Fprintf(&b, "add chain %s\n", c.ID)
		}
	}
	for _, c := range p.FlushChains {
		fmt.Fprintf(&b, "flush chain %s\n", c.ID)
	}
	for _, c := range p.DelChains {
		fmt.Fprintf(&b, "delete chain %s\n", c)
	}
	for _, l := range [][]*Chain{p.FlushChains, p.AddChains} {
		for _, c := range l {
			for _, r := range c.Rules {
				fmt.Fprintf(&b, "add rule %s %s\n", c.ID, r.Text())
			}
		}
	}
	for _, se := range p.AddElems {
		for _, e := range sortedElems(se.Elems) {
			fmt.Fprintf(&b, "add element %s { %s }\n", se.Set, elemText(e, p.Now))
		}
	}
	if f := p.EndFlows; len(f.Addrs) > 0 || len(f.MACs) > 0 {
		var items []string
		for _, m := range f.MACs {
			items = append(items, m.String())
		}
		slices.Sort(items)
		addrs := slices.Clone(f.Addrs)
		slices.SortFunc(addrs, netip.Addr.Compare)
		for _, a := range addrs {
			items = append(items, a.String())
		}
		fmt.Fprintf(&b, "# end flows of %s\n", strings.Join(items, ", "))
	}
	return b.String()
}

// elemText is an element in nft syntax: key, timeout, value.
func elemText(e *Elem, now time.Time) string {
	s := e.Key.String()
	if !e.Expires.IsZero() {
		s += " timeout " + durText(e.Expires.Sub(now).Round(time.Millisecond))
	}
	switch {
	case e.Verdict.Kind != VerdictNone:
		s += " : " + e.Verdict.String()
	case e.Mark != 0:
		s += fmt.Sprintf(" : 0x%08x", e.Mark)
	}
	return s
}

func sortedElems(elems []*Elem) []*Elem {
	out := slices.Clone(elems)
	slices.SortFunc(out, func(a, b *Elem) int { return strings.Compare(a.Key.String(), b.Key.String()) })
	return out
}
