package plan

import (
	"cmp"
	"slices"
	"strings"
	"time"
)

// The diff: the one place that decides what the kernel must change. It
// compares the pieces the kernel holds with the new pieces of the objects
// a change touches, element by element and chain by chain.

// expiryMargin is how close to its expiry an element with a timeout may be
// deleted by a plain delete: the kernel may remove it any moment, and a
// delete of an element it no longer has fails the whole batch.
const expiryMargin = 2 * time.Second

// keepDeletedIn, set only by a test, names a set whose element deletions
// the diff drops, or the start of the names of chains it does not delete:
// the property test must notice what stays behind.
var keepDeletedIn string

// diff plans the change from the installed pieces of the objects a delta
// touches to their new pieces.
func (pl *Planner) diff(delta *owners, now time.Time) (*Plan, []elemAt, []elemAt) {
	old, nw := newLayout(), newLayout()
	delta.pairs(pl.inst, func(o, n *pieces) {
		old.add(o)
		nw.add(n)
	})
	p := &Plan{Now: now}
	dels, destroys, adds := map[SetRef][]*Elem{}, map[SetRef][]*Elem{}, map[SetRef][]*Elem{}
	var linger []elemAt
	for r, om := range old.elems {
		nm := nw.elems[r]
		for k, oe := range om {
			ne, replaced := nm[k]
			if replaced && oe.Same(ne) {
				continue
			}
			switch {
			case r.Name == keepDeletedIn:
			case oe.Expires.IsZero() || oe.Expires.After(now.Add(expiryMargin)):
				dels[r] = append(dels[r], oe)
			case !oe.Expires.After(now.Add(-expiryMargin)):
				// expired long ago: the kernel no longer has it
			case pl.cfg.Destroy:
				// due to expire, or just expired (the kernel's clock for
				// it started when it was added): deleted if still there
				destroys[r] = append(destroys[r], oe)
			case !oe.Expires.After(now):
				// expired
			case replaced || isInterval(oe):
				// another value or timeout would clash with it (a range
				// with any new range it overlaps)
				dels[r] = append(dels[r], oe)
			default:
				// Left to expire: a delete would fail the batch if the
				// kernel removed it first. Remembered, in case its key
				// comes back before.
				linger = append(linger, elemAt{r, oe})
			}
		}
	}
	var unlinger []elemAt
	for r, nm := range nw.elems {
		om := old.elems[r]
		for k, ne := range nm {
			if oe, ok := om[k]; ok && oe.Same(ne) {
				continue
			}
			if !live(ne, now) {
				continue
			}
			adds[r] = append(adds[r], ne)
			if le := pl.lingering[r][k]; le != nil && le.Expires.After(now) {
				// an element left to expire is in the way
				dels[r] = append(dels[r], le)
				unlinger = append(unlinger, elemAt{r, le})
			}
		}
	}
	p.DelElems = append(setElems(dels, false), setElems(destroys, true)...)
	p.AddElems = setElems(adds, false)
	for id, n := range nw.chains {
		o, ok := old.chains[id]
		switch {
		case !ok:
			p.AddChains = append(p.AddChains, n)
		case o.sig != n.sig:
			p.FlushChains = append(p.FlushChains, n)
		}
	}
	for id := range old.chains {
		if _, ok := nw.chains[id]; !ok && (keepDeletedIn == "" || !strings.HasPrefix(id.Name, keepDeletedIn)) {
			p.DelChains = append(p.DelChains, id)
		}
	}
	sortChains(p.AddChains)
	sortChains(p.FlushChains)
	// Deleted in the order of their references: per-device chains jump to
	// policy chains, which jump to the shared ones.
	slices.SortFunc(p.DelChains, func(a, b ChainRef) int {
		return cmp.Or(cmp.Compare(chainRank(a.Name), chainRank(b.Name)), cmp.Compare(a.Family, b.Family))
	})
	return p, linger, unlinger
}

func isInterval(e *Elem) bool {
	_, ok := e.Key.(NetKey)
	return ok
}

// live tells whether an element is worth adding: permanent, or expiring
// later than a millisecond from now.
func live(e *Elem, now time.Time) bool {
	return e.Expires.IsZero() || e.Expires.After(now.Add(time.Millisecond))
}

// rebuildPlan plans our tables anew with every object's pieces (those of
// addresses and binds still in dd's lists).
func (pl *Planner) rebuildPlan(all *owners, dd *derivedDelta, o buildOpts) *Plan {
	p := &Plan{Now: o.now}
	for _, f := range Families {
		p.Tables = append(p.Tables, TableSets{f, setDefs(f, o.twoStage, o.ruleCounters, o.flowSize, o.acct)})
	}
	// One pass over a rebuild's ~350,000 elements at 10,000 policies,
	// into a list per set. Consecutive elements are mostly of one set,
	// and the sets are few (~30): a set's list is looked up in a short
	// slice when the set changes, not hashed by name.
	type setList struct {
		ref   SetRef
		elems []*Elem
	}
	var lists []setList
	at := -1
	cut := o.now.Add(time.Millisecond)
	add := func(pc *pieces) {
		p.AddChains = append(p.AddChains, pc.chains...)
		for _, x := range pc.elems {
			if !x.elem.Expires.IsZero() && !x.elem.Expires.After(cut) {
				continue // not live: expired
			}
			if at < 0 || lists[at].ref != x.ref {
				at = slices.IndexFunc(lists, func(l setList) bool { return l.ref == x.ref })
				if at < 0 {
					lists = append(lists, setList{ref: x.ref})
					at = len(lists) - 1
				}
			}
			lists[at].elems = append(lists[at].elems, x.elem)
		}
	}
	all.all(add)
	dd.each(add)
	adds := make(map[SetRef][]*Elem, len(lists))
	for _, l := range lists {
		adds[l.ref] = l.elems
	}
	p.AddElems = setElems(adds, false)
	for i := range p.Tables {
		t := &p.Tables[i]
		for j := range t.Sets {
			if s := &t.Sets[j]; !s.Dynamic && !s.Interval {
				s.Size = capacityFor(len(adds[SetRef{t.Family, s.Name}]))
			}
		}
	}
	sortChains(p.AddChains)
	return p
}

// setElems lists elements by set, in the order of the sets' names.
func setElems(m map[SetRef][]*Elem, destroy bool) []SetElems {
	out := make([]SetElems, 0, len(m))
	for r, l := range m {
		if len(l) > 0 {
			out = append(out, SetElems{Set: r, Elems: l, Destroy: destroy})
		}
	}
	slices.SortFunc(out, func(a, b SetElems) int {
		return cmp.Or(cmp.Compare(a.Set.Family, b.Set.Family), cmp.Compare(a.Set.Name, b.Set.Name))
	})
	return out
}

func sortChains(cs []*Chain) {
	slices.SortFunc(cs, func(a, b *Chain) int {
		return cmp.Or(cmp.Compare(a.ID.Name, b.ID.Name), cmp.Compare(a.ID.Family, b.ID.Family))
	})
}

// chainRank orders chain deletions: per-device chains reference policy
// chains, which reference the shared ones.
func chainRank(name string) string {
	switch {
	case strings.HasPrefix(name, "dev_"):
		return "0" + name
	case strings.HasPrefix(name, "pol_"):
		return "1" + name
	}
	return "2" + name
}
