package manager

import (
	"maps"
	"net/netip"
	"slices"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/policy"
)

// classSet counts the members' addresses of a model or manufacturer class
// (RFC 8520 §4.2, §4.3) by how strongly each member's URL is bound: the
// class is kept alongside the pushed state so that a member coming or
// going changes the class's peer by its own addresses, not by the class's
// (a site with 10,000 devices of one manufacturer).
type classSet struct {
	strong, weak map[netip.Prefix]int
}

// classDelta is what a change does to a class's counts.
type classDelta map[netip.Prefix][2]int // [0] strong, [1] weak

// classEdit is what a change adds to and removes from a class peer's
// elements, when it changes them by address.
type classEdit struct{ add, remove []netip.Prefix }

func (cs *classSet) active(strong bool) map[netip.Prefix]int {
	if strong {
		return cs.strong
	}
	return cs.weak
}

// addClassMember counts a member's addresses into its classes (full
// computation; a change stages a classDelta instead).
func (ds *desired) addClassMember(e *devEntry) {
	for _, k := range classKeys(e) {
		cs := ds.classes[k]
		if cs == nil {
			cs = &classSet{strong: map[netip.Prefix]int{}, weak: map[netip.Prefix]int{}}
			ds.classes[k] = cs
		}
		for _, h := range e.hosts {
			cs.active(e.strong)[h]++
		}
	}
}

// classMove stages a member's addresses leaving (n = -1) or joining
// (n = 1) its classes.
func (c *change) classMove(e *devEntry, n int) {
	for _, k := range classKeys(e) {
		d := c.classDeltas[k]
		if d == nil {
			d = classDelta{}
			c.classDeltas[k] = d
		}
		i := 1
		if e.strong {
			i = 0
		}
		for _, h := range e.hosts {
			v := d[h]
			v[i] += n
			d[h] = v
		}
	}
}

// stageClassEdit stages a class peer by the addresses the change moves,
// when it can: the peer was installed before and stays, and the class does
// not switch between its strong and weak members (RFC 8520 §16: when an
// administrator bound any member, the class holds only those). It reports
// whether it handled the peer.
func (m *Manager) stageClassEdit(c *change, k string) bool {
	pr := c.peerOfKey(k)
	if pr.Kind != policy.Model && pr.Kind != policy.Manufacturer {
		return false
	}
	if c.peerRefsOf(k) <= 0 || c.pushed.peerRefs[k] <= 0 {
		return false
	}
	d := c.classDeltas[k]
	if len(d) == 0 {
		return true // no member moved: the class is as pushed
	}
	cs := c.pushed.classes[k]
	if cs == nil {
		cs = &classSet{}
	}
	// The number of distinct strong addresses after the change decides the
	// class's mode.
	strongBefore := len(cs.strong)
	strongAfter := strongBefore
	for p, v := range d {
		was := cs.strong[p]
		switch {
		case was == 0 && was+v[0] > 0:
			strongAfter++
		case was > 0 && was+v[0] <= 0:
			strongAfter--
		}
	}
	if (strongBefore > 0) != (strongAfter > 0) {
		return false
	}
	i, set := 1, cs.weak
	if strongBefore > 0 {
		i, set = 0, cs.strong
	}
	var ed classEdit
	for _, p := range slices.SortedFunc(maps.Keys(d), comparePrefix) {
		was := set[p]
		now := was + d[p][i]
		switch {
		case was == 0 && now > 0:
			ed.add = append(ed.add, p)
		case was > 0 && now <= 0:
			ed.remove = append(ed.remove, p)
		}
	}
	if len(ed.add)+len(ed.remove) == 0 {
		return true
	}
	c.classEdits[k] = ed
	if c.upd.ChangePeers == nil {
		c.upd.ChangePeers = map[string]enforcer.PeerChange{}
	}
	pc := enforcer.PeerChange{Remove: ed.remove}
	for _, p := range ed.add {
		pc.Add = append(pc.Add, enforcer.Element{Prefix: p}) // members are permanent
	}
	c.upd.ChangePeers[k] = pc
	return true
}

func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// commitClasses records a change's class counts and edits as pushed.
func (c *change) commitClasses(pu *desired) {
	for k, d := range c.classDeltas {
		cs := pu.classes[k]
		if cs == nil {
			cs = &classSet{strong: map[netip.Prefix]int{}, weak: map[netip.Prefix]int{}}
			pu.classes[k] = cs
		}
		for p, v := range d {
			for i, set := range []map[netip.Prefix]int{cs.strong, cs.weak} {
				if n := set[p] + v[i]; n > 0 {
					set[p] = n
				} else {
					delete(set, p)
				}
			}
		}
		if len(cs.strong)+len(cs.weak) == 0 {
			delete(pu.classes, k)
		}
	}
	for k, ed := range c.classEdits {
		els := pu.peers[k]
		for _, p := range ed.remove {
			if i, ok := slices.BinarySearchFunc(els, p, elemAt); ok {
				els = slices.Delete(els, i, i+1)
			}
		}
		for _, p := range ed.add {
			if i, ok := slices.BinarySearchFunc(els, p, elemAt); !ok {
				els = slices.Insert(els, i, peerElem{prefix: p})
			}
		}
		if len(els) == 0 {
			delete(pu.peers, k)
		} else {
			pu.peers[k] = els
		}
	}
}

// elemAt orders a class's elements as dedupElems sorts them (members are
// permanent, so address and length decide).
func elemAt(e peerElem, p netip.Prefix) int { return comparePrefix(e.prefix, p) }
