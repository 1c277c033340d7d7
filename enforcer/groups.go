package enforcer

import (
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/openmud/mud/policy"
)

// Peer groups. A remote address is mapped to one *group id* (maps addr4 /
// addr6 for the single addresses of DNS names, manufacturers and models;
// net4 / net6 for the segments of administrator-configured classes, which
// may hold prefixes): the group of every peer that holds the address. Most
// addresses belong to one peer, whose group id is the peer id; an address
// several peers share (two names on one CDN address) gets a group of its
// own, listed in peergrp (peer id . group id) for the rules that test
// membership. Allow-only policies are then elements of acl_out / acl_in,
// keyed by dispatch id . group id . family . protocol . remote port: the
// packet's secmark (its dispatch id) and the looked-up group id complete
// the key. Addresses are stored once per table whatever the number of
// policies naming them, and a DNS answer changes address elements only.

// multiGroupBase starts the ids of groups of several peers; single-peer
// groups use the peer id (peer ids count from 1).
const multiGroupBase uint32 = 0x80000000

// addrInfo is the peers holding one address, with their expiries (zero:
// permanent).
type addrInfo map[string]time.Time

// sigOf names a group: its sorted peer keys.
func sigOf(peers map[string]time.Time) string {
	if len(peers) == 1 {
		for k := range peers {
			return k
		}
	}
	keys := make([]string, 0, len(peers))
	for k := range peers {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return strings.Join(keys, "\n")
}

func sigPeers(sig string) []string { return strings.Split(sig, "\n") }

// latest is the expiry of an element several peers hold: the latest one
// (zero if any is permanent). A peer whose answer expired earlier keeps the
// address until its next update, as a resolver's cache would.
func latest(exps map[string]time.Time) time.Time {
	var out time.Time
	for _, e := range exps {
		if e.IsZero() {
			return time.Time{}
		}
		if e.After(out) {
			out = e
		}
	}
	return out
}

// tsig is a group in one table.
type tsig struct {
	fam tfam
	sig string
}

// bindKey is one policy's acl elements for one group in one table.
type bindKey struct {
	fam    tfam
	policy string
	sig    string
}

// derivedState is what the kernel holds of the address → group → acl layer.
type derivedState struct {
	addrPeers map[netip.Addr]addrInfo
	refs      [2]map[string]int // per table: group → addresses and segments mapped to it
	netRefs   [2]map[string]int // the segments' part of refs
	peerSigs  [2]map[string]map[string]bool
	// peerPolicies: allow-only policies whose elements name a peer;
	// policyPeers the reverse.
	peerPolicies map[string]map[string]bool
	policyPeers  map[string][]string
}

func newDerivedState() *derivedState {
	d := &derivedState{addrPeers: map[netip.Addr]addrInfo{}, peerPolicies: map[string]map[string]bool{}, policyPeers: map[string][]string{}}
	for f := range d.refs {
		d.refs[f], d.netRefs[f], d.peerSigs[f] = map[string]int{}, map[string]int{}, map[string]map[string]bool{}
	}
	return d
}

// derivedObjects are the cached pieces of the layer.
type derivedObjects struct {
	addrs    map[netip.Addr]*pieces
	nets     *pieces
	groups   map[tsig]*pieces
	binds    map[bindKey]*pieces
	byPolicy map[string]map[bindKey]bool
	bySig    map[tsig]map[bindKey]bool
}

func newDerivedObjects() *derivedObjects {
	return &derivedObjects{addrs: map[netip.Addr]*pieces{}, nets: &pieces{}, groups: map[tsig]*pieces{},
		binds: map[bindKey]*pieces{}, byPolicy: map[string]map[bindKey]bool{}, bySig: map[tsig]map[bindKey]bool{}}
}

func (do *derivedObjects) all(out []*pieces) []*pieces {
	out = append(out, do.nets)
	for _, p := range do.addrs {
		out = append(out, p)
	}
	for _, p := range do.groups {
		out = append(out, p)
	}
	for _, p := range do.binds {
		out = append(out, p)
	}
	return out
}

// derivedDelta is a computed change of the layer: new values (nil: removed).
type derivedDelta struct {
	addrPeers   map[netip.Addr]addrInfo
	refDelta    [2]map[string]int
	netRefs     *[2]map[string]int // non-nil: the segments were recomputed
	appear      [2]map[string]bool
	vanish      [2]map[string]bool
	addrs       map[netip.Addr]*pieces
	nets        *pieces
	groups      map[tsig]*pieces
	binds       map[bindKey]*pieces
	policyPeers map[string][]string // changed policies: peers their elements name (nil: none)
}

func newDerivedDelta() *derivedDelta {
	d := &derivedDelta{addrPeers: map[netip.Addr]addrInfo{}, addrs: map[netip.Addr]*pieces{},
		groups: map[tsig]*pieces{}, binds: map[bindKey]*pieces{}, policyPeers: map[string][]string{}}
	for f := range d.refDelta {
		d.refDelta[f], d.appear[f], d.vanish[f] = map[string]int{}, map[string]bool{}, map[string]bool{}
	}
	return d
}

// groupView answers what the layer looks like after a change.
type groupView struct {
	o        buildOpts
	st       *derivedState
	dd       *derivedDelta
	policy   func(id string) *policy.Policy // after the change; nil: none
	changedP map[string]*policy.Policy
	forms    map[string]*policyForms
	naming   map[string][]string    // peer → changed policies naming it (after)
	appearBy [2]map[string][]string // peer → appearing groups containing it
}

func (v *groupView) formsOf(id string) *policyForms {
	if f, ok := v.forms[id]; ok {
		return f
	}
	var pf *policyForms
	if p := v.policy(id); p != nil {
		pf = aclForms(p, v.o)
	}
	v.forms[id] = pf
	return pf
}

// groupID is the id a group's elements carry.
func groupID(sig string, o buildOpts) uint32 {
	if !strings.Contains(sig, "\n") {
		return o.peerID(sig)
	}
	return o.groupID(sig)
}

func (v *groupView) addrPieces(a netip.Addr, info addrInfo, sig string) *pieces {
	if len(info) == 0 {
		return nil
	}
	el := &elemSpec{key: a.AsSlice(), data: dispatchKey(groupID(sig, v.o)), expires: latest(info)}
	set := setAddr4
	if a.Is6() {
		set = setAddr6
	}
	pc := &pieces{}
	for _, f := range []tfam{famInet, famBridge} {
		if v.o.inTable(f, a, info) {
			pc.elem(f, set, el)
		}
	}
	return pc
}

func (v *groupView) groupPieces(f tfam, sig string) *pieces {
	peers := sigPeers(sig)
	if len(peers) < 2 {
		return nil // a single peer's group id is its peer id: no membership element
	}
	gid := dispatchKey(groupID(sig, v.o))
	pc := &pieces{}
	for _, p := range peers {
		pc.elem(f, setPeerGrp, &elemSpec{key: append(dispatchKey(v.o.peerID(p)), gid...)})
	}
	return pc
}

func (v *groupView) bindPieces(k bindKey) *pieces {
	pf := v.formsOf(k.policy)
	if pf == nil {
		return nil
	}
	peers := sigPeers(k.sig)
	in := func(p string) bool {
		for _, q := range peers {
			if q == p {
				return true
			}
		}
		return false
	}
	if pf.pid == nil {
		pf.pid = dispatchKey(v.o.dispatchID(polChain(k.policy, policy.FromDevice)))
	}
	gid := dispatchKey(groupID(k.sig, v.o))
	var seen map[string]bool
	pc := &pieces{}
	for di, list := range pf.forms[k.fam] {
		set := setACLOut
		if di == 1 {
			set = setACLIn
		}
		for _, fm := range list {
			if !in(fm.peer) {
				continue
			}
			key := aclKey(pf.pid, gid, fm)
			if len(pc.elems) > 0 {
				// the same element from two ACEs (e.g. one name, two rules
				// differing only in what the element leaves out)
				if seen == nil {
					seen = map[string]bool{}
					for _, x := range pc.elems {
						seen[x.ref.name+string(x.elem.key)] = true
					}
				}
				if seen[set+string(key)] {
					continue
				}
			}
			if seen != nil {
				seen[set+string(key)] = true
			}
			pc.elem(k.fam, set, &elemSpec{key: key})
		}
	}
	if len(pc.elems) == 0 {
		return nil
	}
	return pc
}

// liveSigs are the groups containing peer p in table f after the change.
func (v *groupView) liveSigs(f tfam, p string) []string {
	var out []string
	for s := range v.st.peerSigs[f][p] {
		if !v.dd.vanish[f][s] {
			out = append(out, s)
		}
	}
	return append(out, v.appearBy[f][p]...)
}

// policiesNaming are the allow-only policies whose elements name p after
// the change.
func (v *groupView) policiesNaming(p string) []string {
	var out []string
	for id := range v.st.peerPolicies[p] {
		if _, changed := v.changedP[id]; !changed {
			out = append(out, id)
		}
	}
	return append(out, v.naming[p]...)
}

// deriveChange computes the layer's change for changed policies and peers.
// all: recompute everything from the state after the change (st is then
// empty and peersAfter lists every peer).
func deriveChange(o buildOpts, st *derivedState, objs *derivedObjects, all bool,
	changedPolicies map[string]*policy.Policy, policyAfter func(string) *policy.Policy,
	changedPeers map[string]map[netip.Prefix]time.Time, peersBefore func(string) map[netip.Prefix]time.Time,
	allPeersAfter func() map[string]map[netip.Prefix]time.Time) *derivedDelta {

	dd := newDerivedDelta()
	v := &groupView{o: o, st: st, dd: dd, policy: policyAfter, changedP: changedPolicies, forms: map[string]*policyForms{},
		naming: map[string][]string{}}
	for id, p := range changedPolicies {
		if p == nil {
			dd.policyPeers[id] = nil
			continue
		}
		dd.policyPeers[id] = v.formsOf(id).peers()
		for _, q := range dd.policyPeers[id] {
			v.naming[q] = append(v.naming[q], id)
		}
	}

	// 1. single addresses of changed peers
	touched := map[netip.Addr]bool{}
	fresh := map[netip.Addr]addrInfo{} // the changed peers' new addresses
	netChanged := all
	for k, after := range changedPeers {
		if !exactPeer(k) {
			netChanged = true
			continue
		}
		for p := range peersBefore(k) {
			touched[p.Addr()] = true
		}
		for p, exp := range after {
			touched[p.Addr()] = true
			if fresh[p.Addr()] == nil {
				fresh[p.Addr()] = addrInfo{}
			}
			fresh[p.Addr()][k] = exp
		}
	}
	order := make([]netip.Addr, 0, len(touched))
	for a := range touched {
		order = append(order, a)
	}
	// Sorted: group ids are allocated in a reproducible order.
	sort.Slice(order, func(i, j int) bool { return order[i].Less(order[j]) })
	for _, a := range order {
		old := st.addrPeers[a]
		info := fresh[a]
		if len(old) > 0 {
			info = addrInfo{}
			for k, exp := range old {
				if _, ch := changedPeers[k]; !ch {
					info[k] = exp
				}
			}
			for k, exp := range fresh[a] {
				info[k] = exp
			}
		}
		if len(info) == 0 {
			info = nil
		}
		dd.addrPeers[a] = info
		var oldSig, newSig string
		if len(old) > 0 {
			oldSig = sigOf(old)
		}
		if len(info) > 0 {
			newSig = sigOf(info)
		}
		for _, f := range []tfam{famInet, famBridge} {
			if len(old) > 0 && o.inTable(f, a, old) {
				dd.refDelta[f][oldSig]--
			}
			if len(info) > 0 && o.inTable(f, a, info) {
				dd.refDelta[f][newSig]++
			}
		}
		dd.addrs[a] = v.addrPieces(a, info, newSig)
	}

	// 2. segments of the classes (few, configured: recomputed as a whole)
	if netChanged {
		var nr [2]map[string]int
		nr[famInet], nr[famBridge] = map[string]int{}, map[string]int{}
		dd.nets = &pieces{}
		segs := netSegments(allPeersAfter())
		for _, s := range segs {
			el := &elemSpec{key: append(make([]byte, 4), s.first.AsSlice()...), keyEnd: append(make([]byte, 4), s.last.AsSlice()...),
				data: dispatchKey(groupID(s.sig, o)), expires: s.expires}
			set := setNet4
			if s.first.Is6() {
				set = setNet6
			}
			for _, f := range []tfam{famInet, famBridge} {
				dd.nets.elem(f, set, el)
				nr[f][s.sig]++
			}
		}
		for f := range nr {
			for s, n := range nr[f] {
				dd.refDelta[f][s] += n
			}
			for s, n := range st.netRefs[f] {
				dd.refDelta[f][s] -= n
			}
		}
		dd.netRefs = &nr
	}

	// 3. groups appearing and vanishing
	for _, f := range []tfam{famInet, famBridge} {
		for s, d := range dd.refDelta[f] {
			if d == 0 {
				continue
			}
			old := st.refs[f][s]
			switch {
			case old == 0 && old+d > 0:
				dd.appear[f][s] = true
				dd.groups[tsig{f, s}] = v.groupPieces(f, s)
			case old > 0 && old+d <= 0:
				dd.vanish[f][s] = true
				dd.groups[tsig{f, s}] = nil
				for k := range objs.bySig[tsig{f, s}] {
					dd.binds[k] = nil
				}
			}
		}
	}

	for _, f := range []tfam{famInet, famBridge} {
		v.appearBy[f] = map[string][]string{}
		for s := range dd.appear[f] {
			for _, p := range sigPeers(s) {
				v.appearBy[f][p] = append(v.appearBy[f][p], s)
			}
		}
	}

	// 4. changed policies: their old elements go, new ones are bound to
	// every live group of the peers they name
	for id := range changedPolicies {
		for k := range objs.byPolicy[id] {
			dd.binds[k] = nil
		}
		for _, p := range dd.policyPeers[id] {
			for _, f := range []tfam{famInet, famBridge} {
				for _, s := range v.liveSigs(f, p) {
					k := bindKey{f, id, s}
					dd.binds[k] = v.bindPieces(k)
				}
			}
		}
	}
	// 5. new groups: bound to every policy naming one of their peers
	for _, f := range []tfam{famInet, famBridge} {
		for s := range dd.appear[f] {
			for _, p := range sigPeers(s) {
				for _, id := range v.policiesNaming(p) {
					k := bindKey{f, id, s}
					if _, done := dd.binds[k]; !done {
						dd.binds[k] = v.bindPieces(k)
					}
				}
			}
		}
	}
	return dd
}

// apply records a committed delta.
func (st *derivedState) apply(dd *derivedDelta, changedPolicies map[string]*policy.Policy) {
	for a, info := range dd.addrPeers {
		if info == nil {
			delete(st.addrPeers, a)
		} else {
			st.addrPeers[a] = info
		}
	}
	for f := range dd.refDelta {
		for s, d := range dd.refDelta[f] {
			if n := st.refs[f][s] + d; n > 0 {
				st.refs[f][s] = n
			} else {
				delete(st.refs[f], s)
			}
		}
		if dd.netRefs != nil {
			st.netRefs[f] = dd.netRefs[f]
		}
		for s := range dd.vanish[f] {
			for _, p := range sigPeers(s) {
				delete(st.peerSigs[f][p], s)
				if len(st.peerSigs[f][p]) == 0 {
					delete(st.peerSigs[f], p)
				}
			}
		}
		for s := range dd.appear[f] {
			for _, p := range sigPeers(s) {
				m := st.peerSigs[f][p]
				if m == nil {
					m = map[string]bool{}
					st.peerSigs[f][p] = m
				}
				m[s] = true
			}
		}
	}
	for id := range changedPolicies {
		for _, p := range st.policyPeers[id] {
			delete(st.peerPolicies[p], id)
			if len(st.peerPolicies[p]) == 0 {
				delete(st.peerPolicies, p)
			}
		}
		delete(st.policyPeers, id)
		if len(dd.policyPeers[id]) > 0 {
			st.policyPeers[id] = dd.policyPeers[id]
		}
		for _, p := range dd.policyPeers[id] {
			m := st.peerPolicies[p]
			if m == nil {
				m = map[string]bool{}
				st.peerPolicies[p] = m
			}
			m[id] = true
		}
	}
}

// apply records a committed delta's pieces.
func (do *derivedObjects) apply(dd *derivedDelta) {
	for a, p := range dd.addrs {
		if p == nil {
			delete(do.addrs, a)
		} else {
			do.addrs[a] = p
		}
	}
	if dd.nets != nil {
		do.nets = dd.nets
	}
	for k, p := range dd.groups {
		if p == nil {
			delete(do.groups, k)
		} else {
			do.groups[k] = p
		}
	}
	for k, p := range dd.binds {
		ts := tsig{k.fam, k.sig}
		if p == nil {
			delete(do.binds, k)
			delete(do.byPolicy[k.policy], k)
			if len(do.byPolicy[k.policy]) == 0 {
				delete(do.byPolicy, k.policy)
			}
			delete(do.bySig[ts], k)
			if len(do.bySig[ts]) == 0 {
				delete(do.bySig, ts)
			}
			continue
		}
		do.binds[k] = p
		if do.byPolicy[k.policy] == nil {
			do.byPolicy[k.policy] = map[bindKey]bool{}
		}
		do.byPolicy[k.policy][k] = true
		if do.bySig[ts] == nil {
			do.bySig[ts] = map[bindKey]bool{}
		}
		do.bySig[ts][k] = true
	}
}

// pieces lists the delta's new pieces and the cached ones they replace.
func (dd *derivedDelta) diff(do *derivedObjects) (oldP, newP []*pieces) {
	for a, p := range dd.addrs {
		oldP, newP = appendIf(oldP, do.addrs[a]), appendIf(newP, p)
	}
	if dd.nets != nil {
		oldP, newP = appendIf(oldP, do.nets), append(newP, dd.nets)
	}
	for k, p := range dd.groups {
		oldP, newP = appendIf(oldP, do.groups[k]), appendIf(newP, p)
	}
	for k, p := range dd.binds {
		oldP, newP = appendIf(oldP, do.binds[k]), appendIf(newP, p)
	}
	return oldP, newP
}

// segment is a range of addresses the same configured classes cover.
type segment struct {
	first, last netip.Addr
	sig         string
	expires     time.Time
}

// netSegments splits the prefixes of the class peers into disjoint ranges,
// each with the group of peers covering it.
func netSegments(peers map[string]map[netip.Prefix]time.Time) []segment {
	type edge struct {
		at   netip.Addr
		open bool
		peer string
		exp  time.Time
	}
	var out []segment
	for _, six := range []bool{false, true} {
		var edges []edge
		for k, ps := range peers {
			if exactPeer(k) {
				continue
			}
			for p, exp := range ps {
				if p.Addr().Is6() != six {
					continue
				}
				first, last := prefixRange(p)
				edges = append(edges, edge{at: first, open: true, peer: k, exp: exp})
				if next := last.Next(); next.IsValid() {
					edges = append(edges, edge{at: next, peer: k, exp: exp})
				}
			}
		}
		if len(edges) == 0 {
			continue
		}
		sort.Slice(edges, func(i, j int) bool { return edges[i].at.Less(edges[j].at) })
		active := map[string]map[time.Time]int{}
		for i := 0; i < len(edges); {
			at := edges[i].at
			for ; i < len(edges) && edges[i].at == at; i++ {
				e := edges[i]
				if e.open {
					if active[e.peer] == nil {
						active[e.peer] = map[time.Time]int{}
					}
					active[e.peer][e.exp]++
				} else {
					active[e.peer][e.exp]--
					if active[e.peer][e.exp] == 0 {
						delete(active[e.peer], e.exp)
					}
					if len(active[e.peer]) == 0 {
						delete(active, e.peer)
					}
				}
			}
			if len(active) == 0 {
				continue
			}
			var end netip.Addr
			if i < len(edges) {
				end = edges[i].at.Prev()
			} else {
				end = lastAddr(six)
			}
			exps := map[string]time.Time{}
			for p, m := range active {
				var pe time.Time
				first := true
				for e := range m {
					if e.IsZero() {
						pe, first = time.Time{}, false
						break
					}
					if first || e.After(pe) {
						pe, first = e, false
					}
				}
				exps[p] = pe
			}
			out = append(out, segment{first: at, last: end, sig: sigOf(exps), expires: latest(exps)})
		}
	}
	return out
}

func lastAddr(six bool) netip.Addr {
	if six {
		return netip.AddrFrom16([16]byte{0: 0xff, 1: 0xff, 2: 0xff, 3: 0xff, 4: 0xff, 5: 0xff, 6: 0xff, 7: 0xff, 8: 0xff, 9: 0xff, 10: 0xff, 11: 0xff, 12: 0xff, 13: 0xff, 14: 0xff, 15: 0xff})
	}
	return netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
