package plan

import (
	"maps"
	"slices"
	"sort"
	"time"

	"github.com/openmud/mud/policy"
)

// Counters: the kernel counts per rule (policies in chain form, ACEs in
// rule form) and per element (the default deny of allow-only policies in
// denyc_out / denyc_in, their ACEs in acl_out / acl_in with
// Config.RuleCounters). The enforcer reads those the planner names and the
// planner says which ACE each counts.

// RuleCount is a rule's counter as read from the kernel.
type RuleCount struct {
	Comment        string
	Packets, Bytes uint64
}

// ElemCount is an element's counter as read from the kernel.
type ElemCount struct {
	Key            Key
	Packets, Bytes uint64
}

// Counted lists the chains whose rule counters and the sets whose element
// counters Counters needs.
func (pl *Planner) Counted() (chains []ChainRef, sets []SetRef) {
	if pl.inst != nil {
		for _, id := range slices.Sorted(maps.Keys(pl.m.policies)) {
			if pc := pl.inst.policies[id]; pc != nil {
				for _, c := range pc.chains {
					chains = append(chains, c.ID)
				}
			}
		}
	}
	if !pl.cfg.DirectDispatch {
		names := []string{setDenyOut, setDenyIn}
		if pl.cfg.RuleCounters {
			names = append(names, setACLOut, setACLIn)
		}
		for _, n := range names {
			for _, f := range Families {
				sets = append(sets, SetRef{f, n})
			}
		}
	}
	return chains, sets
}

// Counters sums what the kernel counted per policy, direction and ACE
// (summed over families and tables), in policy order, from the counters
// of the chains and sets Counted names. An element that serves several
// ACEs counts for each of them.
func (pl *Planner) Counters(rules map[ChainRef][]RuleCount, elems map[SetRef][]ElemCount) []RuleCounter {
	ids := make([]string, 0, len(pl.m.policies))
	for id := range pl.m.policies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	o := pl.opts(time.Time{})
	// Element counters by dispatch id.
	byID := map[SetRef]map[uint32][]ElemCount{}
	for r, list := range elems {
		m := map[uint32][]ElemCount{}
		for _, ec := range list {
			switch k := ec.Key.(type) {
			case MarkKey:
				m[uint32(k)] = append(m[uint32(k)], ec)
			case ACLKey:
				m[k.Dispatch] = append(m[k.Dispatch], ec)
			}
		}
		byID[r] = m
	}
	groupPeers := pl.ids.peerNames()
	var out []RuleCounter
	for _, id := range ids {
		p := pl.m.policies[id]
		pf := aclForms(p, o)
		pid, hasID := pl.ids.disp[polChain(id, policy.FromDevice)]
		for di, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			idx := map[string]int{}
			var names []string
			for _, r := range p.Rules(d) {
				if _, ok := idx[r.Name]; !ok {
					idx[r.Name] = len(names)
					names = append(names, r.Name)
				}
			}
			idx[defaultDenyTag] = len(names)
			names = append(names, defaultDenyTag)
			sums := make([]RuleCounter, len(names))
			for i, n := range names {
				sums[i] = RuleCounter{PolicyID: id, Direction: d, Rule: n}
			}
			add := func(name string, packets, bytes uint64) {
				if i, ok := idx[name]; ok {
					sums[i].Packets += packets
					sums[i].Bytes += bytes
				}
			}
			for _, f := range Families {
				for _, rc := range rules[ChainRef{f, polChain(id, d)}] {
					add(rc.Comment, rc.Packets, rc.Bytes)
				}
			}
			if pf == nil || !hasID {
				out = append(out, sums...)
				continue
			}
			deny, acl := setDenyOut, setACLOut
			if di == 1 {
				deny, acl = setDenyIn, setACLIn
			}
			for _, f := range Families {
				for _, ec := range byID[SetRef{f, deny}][pid] {
					add(defaultDenyTag, ec.Packets, ec.Bytes)
				}
				for _, ec := range byID[SetRef{f, acl}][pid] {
					k := ec.Key.(ACLKey)
					peers := groupPeers[k.Group]
					counted := map[string]bool{}
					for _, fm := range pf.forms[f][di] {
						if !counted[fm.name] && slices.Contains(peers, fm.peer) && fm.fam == k.Family && fm.proto == k.Proto && fm.port == k.Port {
							counted[fm.name] = true
							add(fm.name, ec.Packets, ec.Bytes)
						}
					}
				}
			}
			out = append(out, sums...)
		}
	}
	return out
}
