package plan

import (
	"net/netip"
	"slices"
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
// permanent), sorted by key. A list, not a map: nearly every address has
// one peer, and a rebuild at 10,000 policies keeps ~60,000 of them.
type addrInfo []peerExp

type peerExp struct {
	k   string
	exp time.Time
}

// infoOf is the addrInfo of the peers holding one address (in any order).
func infoOf(hs []held) addrInfo {
	info := make(addrInfo, len(hs))
	for i, h := range hs {
		info[i] = peerExp{h.k, h.exp}
	}
	info.sort()
	return info
}

// sort orders a list built in any order by key.
func (info addrInfo) sort() {
	if len(info) > 1 {
		slices.SortFunc(info, func(x, y peerExp) int { return strings.Compare(x.k, y.k) })
	}
}

// with is info with peer k holding the address until exp, as a new list.
func (info addrInfo) with(k string, exp time.Time) addrInfo {
	i, found := slices.BinarySearchFunc(info, k, func(x peerExp, k string) int { return strings.Compare(x.k, k) })
	out := make(addrInfo, 0, len(info)+1)
	out = append(out, info[:i]...)
	out = append(out, peerExp{k, exp})
	if found {
		i++
	}
	return append(out, info[i:]...)
}

// sig names the group of the peers holding the address: their keys, in
// order.
func (info addrInfo) sig() string {
	if len(info) == 1 {
		return info[0].k
	}
	keys := make([]string, len(info))
	for i, pe := range info {
		keys[i] = pe.k
	}
	return strings.Join(keys, "\n")
}

// latest is the expiry of an element several peers hold: the latest one
// (zero if any is permanent). A peer whose answer expired earlier keeps the
// address until its next update, as a resolver's cache would.
func (info addrInfo) latest() time.Time {
	var out time.Time
	for _, pe := range info {
		if pe.exp.IsZero() {
			return time.Time{}
		}
		if pe.exp.After(out) {
			out = pe.exp
		}
	}
	return out
}

func sigPeers(sig string) []string { return strings.Split(sig, "\n") }

// sigHas tells whether a group holds peer p (without splitting its sig).
func sigHas(sig, p string) bool {
	if len(sig) == len(p) {
		return sig == p
	}
	for q := range strings.SplitSeq(sig, "\n") {
		if q == p {
			return true
		}
	}
	return false
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
	// Shared App. A defaults (acl.go): the key each policy uses, how many
	// use each key, and a key's forms. A key is bound like a policy (its
	// binds, policyPeers and peerPolicies are under the key) while a
	// policy uses it.
	policyShared map[string]string
	sharedUsers  map[string]int
	sharedForms  map[string]*policyForms
}

func newDerivedState() *derivedState {
	d := &derivedState{addrPeers: map[netip.Addr]addrInfo{}, peerPolicies: map[string]map[string]bool{}, policyPeers: map[string][]string{},
		policyShared: map[string]string{}, sharedUsers: map[string]int{}, sharedForms: map[string]*policyForms{}}
	for f := range d.refs {
		d.refs[f], d.netRefs[f], d.peerSigs[f] = map[string]int{}, map[string]int{}, map[string]map[string]bool{}
	}
	return d
}

// derivedDelta is a computed change of the layer's index; the new pieces
// of the objects it touches (addresses, segments, groups, binds) go to out.
type derivedDelta struct {
	addrPeers   map[netip.Addr]addrInfo
	refDelta    [2]map[string]int
	netRefs     *[2]map[string]int // non-nil: the segments were recomputed
	appear      [2]map[string]bool
	vanish      [2]map[string]bool
	policyPeers map[string][]string // changed policies and shared keys: peers their elements name (nil: none)
	out         *owners
	// changed policies: their shared key ("": none); the users each
	// shared key gains (or loses); the keys appearing (forms) and
	// vanishing (nil)
	policyShared map[string]string
	sharedUsers  map[string]int
	sharedForms  map[string]*policyForms
	// A rebuild's addresses (held: by address, their peers) and binds as
	// lists: its plan needs only the pieces, and the maps the state keeps
	// them in (out.addrs, out.binds, addrPeers) are built by fill, while
	// the kernel loads the batch.
	held  []held
	addrs []ownedAddr
	binds []ownedBind
}

// held is one peer holding an address, until when (zero: permanent).
type held struct {
	a   netip.Addr
	k   string
	exp time.Time
}

type ownedAddr struct {
	a  netip.Addr
	pc *pieces
}

type ownedBind struct {
	k  bindKey
	pc *pieces
}

// each calls fn for the pieces of a rebuild's lists.
func (dd *derivedDelta) each(fn func(*pieces)) {
	for _, x := range dd.addrs {
		if x.pc != nil {
			fn(x.pc)
		}
	}
	for _, x := range dd.binds {
		if x.pc != nil {
			fn(x.pc)
		}
	}
}

// fill moves a rebuild's lists into the maps of its owners and of the
// addresses' peers.
func (dd *derivedDelta) fill() {
	if dd.held == nil && dd.addrs == nil && dd.binds == nil {
		return
	}
	out := dd.out
	if len(out.addrs) == 0 {
		out.addrs = make(map[netip.Addr]*pieces, len(dd.addrs))
	}
	for _, x := range dd.addrs {
		out.addrs[x.a] = x.pc
	}
	if len(out.binds) == 0 {
		out.binds = make(map[bindKey]*pieces, len(dd.binds))
	}
	for _, x := range dd.binds {
		out.binds[x.k] = x.pc
	}
	dd.addrPeers = make(map[netip.Addr]addrInfo, len(dd.addrs))
	hs := dd.held
	for i := 0; i < len(hs); {
		j := i + 1
		for j < len(hs) && hs[j].a == hs[i].a {
			j++
		}
		dd.addrPeers[hs[i].a] = infoOf(hs[i:j])
		i = j
	}
	dd.held, dd.addrs, dd.binds = nil, nil, nil
}

// derivedStateOf is the state a rebuild's delta leaves: it derived every
// address anew (none removed), so its addresses are the state's.
func derivedStateOf(dd *derivedDelta) *derivedState {
	dd.fill()
	st := newDerivedState()
	st.addrPeers, st.refs = dd.addrPeers, dd.refDelta // every count positive
	for f := range st.peerSigs {
		st.peerSigs[f] = make(map[string]map[string]bool, len(dd.appear[f]))
	}
	st.peerPolicies = make(map[string]map[string]bool, len(dd.appear[Inet]))
	st.policyPeers = make(map[string][]string, len(dd.policyPeers))
	st.policyShared = make(map[string]string, len(dd.policyShared))
	rest := *dd
	rest.refDelta = [2]map[string]int{}
	st.applyGroups(&rest)
	return st
}

func newDerivedDelta(out *owners) *derivedDelta {
	d := &derivedDelta{addrPeers: map[netip.Addr]addrInfo{}, policyPeers: map[string][]string{}, out: out,
		policyShared: map[string]string{}, sharedUsers: map[string]int{}, sharedForms: map[string]*policyForms{}}
	for f := range d.refDelta {
		d.refDelta[f], d.appear[f], d.vanish[f] = map[string]int{}, map[string]bool{}, map[string]bool{}
	}
	return d
}

// bindsOfPolicy calls fn for every bind a policy may have (before the
// change): its peers' groups.
func (st *derivedState) bindsOfPolicy(id string, fn func(bindKey)) {
	for _, p := range st.policyPeers[id] {
		for _, f := range Families {
			for s := range st.peerSigs[f][p] {
				fn(bindKey{f, id, s})
			}
		}
	}
}

// bindsOfGroup calls fn for every bind a group may have (before the
// change): the policies naming its peers.
func (st *derivedState) bindsOfGroup(f Family, s string, fn func(bindKey)) {
	for p := range strings.SplitSeq(s, "\n") {
		for id := range st.peerPolicies[p] {
			fn(bindKey{f, id, s})
		}
	}
}

// groupView answers what the layer looks like after a change.
type groupView struct {
	o        buildOpts
	st       *derivedState
	dd       *derivedDelta
	policy   func(id string) *policy.Policy // after the change; nil: none
	changedP map[string]bool                // changed policies and shared keys
	forms    map[string]*policyForms
	naming   map[string][]string    // peer → changed policies naming it (after)
	appearBy [2]map[string][]string // peer → appearing groups of several peers containing it
}

func (v *groupView) formsOf(id string) *policyForms {
	if f, ok := v.forms[id]; ok {
		return f
	}
	var pf *policyForms
	if isShared(id) {
		pf = v.st.sharedForms[id]
	} else if p := v.policy(id); p != nil {
		pf = v.o.formsOf(p)
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
	var in [len(Families)]bool
	for _, f := range Families {
		in[f] = v.o.inTable(f, a, info)
	}
	return v.addrPiecesIn(a, sig, info.latest(), in)
}

// addrPiecesIn are the pieces of an address of group sig, expiring at exp,
// in the tables in says.
func (v *groupView) addrPiecesIn(a netip.Addr, sig string, exp time.Time, in [len(Families)]bool) *pieces {
	// The pieces, the element and the list in one allocation (a rebuild
	// derives ~60,000 addresses).
	x := &struct {
		pc  pieces
		el  Elem
		arr [len(Families)]elemAt
	}{}
	x.el = Elem{Key: AddrKey(a), Mark: groupID(sig, v.o), Expires: exp}
	x.pc.elems = x.arr[:0]
	set := setAddr4
	if a.Is6() {
		set = setAddr6
	}
	for _, f := range Families {
		if in[f] {
			x.pc.elem(f, set, &x.el)
		}
	}
	return &x.pc
}

func (v *groupView) groupPieces(f Family, sig string) *pieces {
	peers := sigPeers(sig)
	if len(peers) < 2 {
		return nil // a single peer's group id is its peer id: no membership element
	}
	gid := groupID(sig, v.o)
	pc := &pieces{}
	for _, p := range peers {
		pc.elem(f, setPeerGrp, &Elem{Key: PeerGroupKey{Peer: v.o.peerID(p), Group: gid}})
	}
	return pc
}

func (v *groupView) bindPieces(k bindKey) *pieces {
	pf := v.formsOf(k.policy)
	if pf == nil {
		return nil
	}
	if pf.pid == 0 {
		pf.pid = v.o.dispatchID(dispatchName(k.policy))
	}
	gid := groupID(k.sig, v.o)
	n := 0
	for _, list := range pf.forms[k.fam] {
		for _, fm := range list {
			if sigHas(k.sig, fm.peer) {
				n++
			}
		}
	}
	if n == 0 {
		return nil
	}
	// A rebuild at 10,000 policies makes ~100,000 binds.
	pc, els := newElemPieces(n)
	type setKey struct {
		set string
		key ACLKey
	}
	var seen map[setKey]bool
	dup := func(set string, key ACLKey) bool {
		// the same element from two ACEs (e.g. one name, two rules
		// differing only in what the element leaves out); a bind has a
		// few elements, looked through, unless it has many
		if n <= 16 {
			for _, x := range pc.elems {
				if x.ref.Name == set && x.elem.Key.(ACLKey) == key {
					return true
				}
			}
			return false
		}
		if seen == nil {
			seen = map[setKey]bool{}
		}
		if seen[setKey{set, key}] {
			return true
		}
		seen[setKey{set, key}] = true
		return false
	}
	for di, list := range pf.forms[k.fam] {
		set := setACLOut
		if di == 1 {
			set = setACLIn
		}
		for _, fm := range list {
			if !sigHas(k.sig, fm.peer) {
				continue
			}
			key := aclKey(pf.pid, gid, fm)
			if dup(set, key) {
				continue
			}
			els = append(els, Elem{Key: key})
			pc.elem(k.fam, set, &els[len(els)-1])
		}
	}
	return pc
}

// newElemPieces are pieces with room for n elements, and the storage of
// those elements: one allocation for the few elements most binds have.
func newElemPieces(n int) (*pieces, []Elem) {
	switch n {
	case 1:
		x := &struct {
			pc  pieces
			arr [1]elemAt
			els [1]Elem
		}{}
		x.pc.elems = x.arr[:0]
		return &x.pc, x.els[:0]
	case 2:
		x := &struct {
			pc  pieces
			arr [2]elemAt
			els [2]Elem
		}{}
		x.pc.elems = x.arr[:0]
		return &x.pc, x.els[:0]
	case 3:
		x := &struct {
			pc  pieces
			arr [3]elemAt
			els [3]Elem
		}{}
		x.pc.elems = x.arr[:0]
		return &x.pc, x.els[:0]
	}
	return &pieces{elems: make([]elemAt, 0, n)}, make([]Elem, 0, n)
}

// liveSigs calls fn with the groups containing peer p in table f after
// the change.
func (v *groupView) liveSigs(f Family, p string, fn func(sig string)) {
	for s := range v.st.peerSigs[f][p] {
		if !v.dd.vanish[f][s] {
			fn(s)
		}
	}
	if v.dd.appear[f][p] {
		fn(p) // its own group (a group appearing was not live before)
	}
	for _, s := range v.appearBy[f][p] {
		fn(s)
	}
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
func deriveChange(o buildOpts, st *derivedState, out *owners, all bool,
	changedPolicies map[string]*policy.Policy, policyAfter func(string) *policy.Policy,
	changedPeers map[string]map[netip.Prefix]time.Time, peersBefore func(string) map[netip.Prefix]time.Time,
	allPeersAfter func() map[string]map[netip.Prefix]time.Time, touchedOf map[string]map[netip.Prefix]struct{}) *derivedDelta {

	dd := newDerivedDelta(out)
	n := 0 // addresses to derive, when all are
	if all {
		// Sized up front: a rebuild at 10,000 policies derives ~60,000
		// addresses and ~100,000 binds, and growing maps costs more.
		for _, after := range changedPeers {
			n += len(after)
		}
		dd.policyPeers = make(map[string][]string, len(changedPolicies))
		dd.policyShared = make(map[string]string, len(changedPolicies))
		for f := range dd.refDelta {
			// groups: about one per peer
			dd.refDelta[f], dd.appear[f] = make(map[string]int, len(changedPeers)), make(map[string]bool, len(changedPeers))
		}
	}
	changed := make(map[string]bool, len(changedPolicies))
	v := &groupView{o: o, st: st, dd: dd, policy: policyAfter, changedP: changed, forms: make(map[string]*policyForms, len(changedPolicies)),
		naming: make(map[string][]string, min(len(changedPeers), 1<<16))}
	for id, p := range changedPolicies {
		changed[id] = true
		var pf *policyForms
		if p != nil {
			pf = v.formsOf(id)
		}
		dd.policyShared[id] = ""
		if pf != nil {
			dd.policyShared[id] = pf.sharedKey
		}
		if old, now := st.policyShared[id], dd.policyShared[id]; old != now {
			if old != "" {
				dd.sharedUsers[old]--
			}
			if now != "" {
				dd.sharedUsers[now]++
				if _, ok := dd.sharedForms[now]; !ok && st.sharedUsers[now] == 0 {
					dd.sharedForms[now] = pf.sharedOf()
				}
			}
		}
	}
	// Shared keys gaining their first user, or losing their last, change
	// as policies do.
	for k, d := range dd.sharedUsers {
		n := st.sharedUsers[k]
		switch {
		case n == 0 && d > 0:
			v.forms[k] = dd.sharedForms[k]
			changed[k] = true
		case n > 0 && n+d <= 0:
			dd.sharedForms[k], v.forms[k] = nil, nil
			changed[k] = true
		default:
			delete(dd.sharedForms, k)
		}
	}
	nbinds := 0
	for id := range changed {
		pf := v.formsOf(id)
		dd.policyPeers[id] = pf.peers()
		nbinds += len(dd.policyPeers[id])
		for _, q := range dd.policyPeers[id] {
			v.naming[q] = append(v.naming[q], id)
		}
	}
	if all {
		dd.binds = make([]ownedBind, 0, nbinds*len(Families))
	}

	// holds is whether a changed peer holds p after the change: a peer
	// changed by address holds what it held, but for what it touched.
	holds := func(k string, p netip.Prefix) (time.Time, bool) {
		if t, ok := touchedOf[k]; ok {
			if _, in := t[p]; !in {
				e, ok := peersBefore(k)[p]
				return e, ok
			}
		}
		e, ok := changedPeers[k][p]
		return e, ok
	}

	// 1. single addresses of changed peers
	netChanged := all
	var order []netip.Addr            // else: the addresses touched
	var fresh map[netip.Addr]addrInfo // else: the changed peers' new addresses
	if all {
		// Every address is new: sorted once, without maps of what
		// changed; the addresses' maps of peers are left to fill.
		hs := make([]held, 0, n)
		for k, after := range changedPeers {
			if exactPeer(k) {
				for p, exp := range after {
					hs = append(hs, held{p.Addr(), k, exp})
				}
			}
		}
		slices.SortFunc(hs, func(x, y held) int { return x.a.Compare(y.a) })
		dd.held = hs
		dd.addrs = make([]ownedAddr, 0, len(hs))
		for i := 0; i < len(hs); {
			j := i + 1
			for j < len(hs) && hs[j].a == hs[i].a {
				j++
			}
			a, run := hs[i].a, hs[i:j]
			sig, exp, dnsOnly := run[0].k, run[0].exp, dnsPeer(run[0].k)
			if len(run) > 1 {
				for _, h := range run {
					dnsOnly = dnsOnly && dnsPeer(h.k)
				}
				info := infoOf(run)
				sig, exp = info.sig(), info.latest()
			}
			var in [len(Families)]bool
			for _, f := range Families {
				if in[f] = o.inTableIf(f, a, dnsOnly); in[f] {
					dd.refDelta[f][sig]++
				}
			}
			dd.addrs = append(dd.addrs, ownedAddr{a, v.addrPiecesIn(a, sig, exp, in)})
			i = j
		}
	} else {
		touched := map[netip.Addr]bool{}
		fresh = map[netip.Addr]addrInfo{}
		for k, after := range changedPeers {
			if !exactPeer(k) {
				netChanged = true
				continue
			}
			// Only the addresses that came, went or changed expiry: a class
			// of 10,000 members gaining one touches one address, not 10,001.
			if t, ok := touchedOf[k]; ok {
				for p := range t {
					touched[p.Addr()] = true
					if exp, ok := after[p]; ok {
						fresh[p.Addr()] = fresh[p.Addr()].with(k, exp)
					}
				}
				continue
			}
			before := peersBefore(k)
			for p := range before {
				if _, ok := after[p]; !ok {
					touched[p.Addr()] = true
				}
			}
			for p, exp := range after {
				if old, ok := before[p]; ok && old.Equal(exp) {
					continue
				}
				touched[p.Addr()] = true
				fresh[p.Addr()] = fresh[p.Addr()].with(k, exp)
			}
		}
		order = make([]netip.Addr, 0, len(touched))
		for a := range touched {
			order = append(order, a)
		}
		// Sorted: group ids are allocated in a reproducible order.
		sort.Slice(order, func(i, j int) bool { return order[i].Less(order[j]) })
	}
	for _, a := range order {
		old := st.addrPeers[a]
		info := fresh[a]
		if len(old) > 0 {
			// old is the state's: a new list (sorted, as old is)
			kept := make(addrInfo, 0, len(old)+len(fresh[a]))
			for _, pe := range old {
				if _, ch := changedPeers[pe.k]; !ch {
					kept = append(kept, pe)
				} else if e, ok := holds(pe.k, netip.PrefixFrom(a, a.BitLen())); ok {
					kept = append(kept, peerExp{pe.k, e}) // a changed peer that still holds a
				}
			}
			for _, pe := range fresh[a] {
				kept = kept.with(pe.k, pe.exp)
			}
			info = kept
		}
		if len(info) == 0 {
			info = nil
		}
		dd.addrPeers[a] = info
		var oldSig, newSig string
		if len(old) > 0 {
			oldSig = old.sig()
		}
		if len(info) > 0 {
			newSig = info.sig()
		}
		for _, f := range Families {
			if len(old) > 0 && o.inTable(f, a, old) {
				dd.refDelta[f][oldSig]--
			}
			if len(info) > 0 && o.inTable(f, a, info) {
				dd.refDelta[f][newSig]++
			}
		}
		out.addrs[a] = v.addrPieces(a, info, newSig)
	}

	// 2. segments of the classes (few, configured: recomputed as a whole)
	if netChanged {
		var nr [2]map[string]int
		nr[Inet], nr[Bridge] = map[string]int{}, map[string]int{}
		out.nets = &pieces{}
		segs := netSegments(allPeersAfter())
		for _, s := range segs {
			el := &Elem{Key: NetKey{First: s.first, Last: s.last}, Mark: groupID(s.sig, o), Expires: s.expires}
			set := setNet4
			if s.first.Is6() {
				set = setNet6
			}
			for _, f := range Families {
				out.nets.elem(f, set, el)
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
	for _, f := range Families {
		for s, d := range dd.refDelta[f] {
			if d == 0 {
				continue
			}
			old := st.refs[f][s]
			switch {
			case old == 0 && old+d > 0:
				dd.appear[f][s] = true
				if pc := v.groupPieces(f, s); pc != nil || !all {
					out.groups[tsig{f, s}] = pc // all: a rebuild has no pieces to delete
				}
			case old > 0 && old+d <= 0:
				dd.vanish[f][s] = true
				out.groups[tsig{f, s}] = nil
				st.bindsOfGroup(f, s, func(k bindKey) { out.binds[k] = nil })
			}
		}
	}

	for _, f := range Families {
		v.appearBy[f] = map[string][]string{}
		for s := range dd.appear[f] {
			if !strings.Contains(s, "\n") {
				continue // a peer's own group (liveSigs)
			}
			for p := range strings.SplitSeq(s, "\n") {
				v.appearBy[f][p] = append(v.appearBy[f][p], s)
			}
		}
	}

	// 4. changed policies: their old elements go, new ones are bound to
	// every live group of the peers they name
	var multi map[bindKey]bool // all: binds to groups of several peers listed
	for id := range changed {
		st.bindsOfPolicy(id, func(k bindKey) { out.binds[k] = nil })
		for _, p := range dd.policyPeers[id] {
			for _, f := range Families {
				v.liveSigs(f, p, func(s string) {
					k := bindKey{f, id, s}
					if !all {
						out.binds[k] = v.bindPieces(k)
						return
					}
					if len(s) != len(p) {
						// a group of several peers the policy names: reached
						// from each of them
						if multi == nil {
							multi = map[bindKey]bool{}
						}
						if multi[k] {
							return
						}
						multi[k] = true
					}
					dd.binds = append(dd.binds, ownedBind{k, v.bindPieces(k)})
				})
			}
		}
	}
	// 5. new groups: bound to every policy naming one of their peers (all:
	// step 4 bound every policy to every group already)
	for _, f := range Families {
		if all {
			break
		}
		for s := range dd.appear[f] {
			for p := range strings.SplitSeq(s, "\n") {
				for _, id := range v.policiesNaming(p) {
					k := bindKey{f, id, s}
					if _, done := out.binds[k]; !done {
						out.binds[k] = v.bindPieces(k)
					}
				}
			}
		}
	}
	return dd
}

// apply records a committed delta.
func (st *derivedState) apply(dd *derivedDelta) {
	for a, info := range dd.addrPeers {
		if info == nil {
			delete(st.addrPeers, a)
		} else {
			st.addrPeers[a] = info
		}
	}
	st.applyGroups(dd)
}

// applyGroups records a committed delta but for its addresses.
func (st *derivedState) applyGroups(dd *derivedDelta) {
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
			for p := range strings.SplitSeq(s, "\n") {
				delete(st.peerSigs[f][p], s)
				if len(st.peerSigs[f][p]) == 0 {
					delete(st.peerSigs[f], p)
				}
			}
		}
		for s := range dd.appear[f] {
			for p := range strings.SplitSeq(s, "\n") {
				m := st.peerSigs[f][p]
				if m == nil {
					m = map[string]bool{}
					st.peerSigs[f][p] = m
				}
				m[s] = true
			}
		}
	}
	for id, k := range dd.policyShared {
		if k == "" {
			delete(st.policyShared, id)
		} else {
			st.policyShared[id] = k
		}
	}
	for k, d := range dd.sharedUsers {
		if n := st.sharedUsers[k] + d; n > 0 {
			st.sharedUsers[k] = n
		} else {
			delete(st.sharedUsers, k)
		}
	}
	for k, pf := range dd.sharedForms {
		if pf == nil {
			delete(st.sharedForms, k)
		} else {
			st.sharedForms[k] = pf
		}
	}
	for id := range dd.policyPeers {
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
			exps := make(addrInfo, 0, len(active))
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
				exps = append(exps, peerExp{p, pe})
			}
			exps.sort()
			out = append(out, segment{first: at, last: end, sig: exps.sig(), expires: exps.latest()})
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
