package plan

import "net/netip"

// pieces are the chains and set elements one object contributes to the
// layout: the fixed skeleton, a policy, a device, a peer address, the
// segments of the configured classes, a group of peers sharing an address,
// or one policy's acl elements for one group (a bind). Every chain and
// every element has exactly one owner, so a change costs work in
// proportion to the objects it touches, not to the size of the ruleset.
type pieces struct {
	chains []*Chain
	elems  []elemAt
}

type elemAt struct {
	ref  SetRef
	elem *Elem
}

// owners are pieces by object: everything the kernel holds
// (Planner.inst), or the new pieces of the objects a change touches (a
// delta: nil pieces mean the object is gone; fixed and nets are nil when
// unchanged).
type owners struct {
	fixed    *pieces
	policies map[string]*pieces
	devices  map[string]*pieces // by MAC string
	addrs    map[netip.Addr]*pieces
	nets     *pieces
	groups   map[tsig]*pieces
	binds    map[bindKey]*pieces
}

// tsig is a group in one table.
type tsig struct {
	fam Family
	sig string
}

// bindKey is one policy's acl elements for one group in one table.
type bindKey struct {
	fam    Family
	policy string
	sig    string
}

func newOwners() *owners {
	return &owners{policies: map[string]*pieces{}, devices: map[string]*pieces{}, addrs: map[netip.Addr]*pieces{},
		groups: map[tsig]*pieces{}, binds: map[bindKey]*pieces{}}
}

// all calls fn for every object's pieces.
func (o *owners) all(fn func(*pieces)) {
	if o.fixed != nil {
		fn(o.fixed)
	}
	if o.nets != nil {
		fn(o.nets)
	}
	each(o.policies, fn)
	each(o.devices, fn)
	each(o.addrs, fn)
	each(o.groups, fn)
	each(o.binds, fn)
}

func each[K comparable](m map[K]*pieces, fn func(*pieces)) {
	for _, p := range m {
		if p != nil {
			fn(p)
		}
	}
}

// pairs calls fn with the installed and the new pieces of every object a
// delta touches.
func (d *owners) pairs(inst *owners, fn func(old, new *pieces)) {
	if d.fixed != nil {
		fn(inst.fixed, d.fixed)
	}
	if d.nets != nil {
		fn(inst.nets, d.nets)
	}
	pairsOf(d.policies, inst.policies, fn)
	pairsOf(d.devices, inst.devices, fn)
	pairsOf(d.addrs, inst.addrs, fn)
	pairsOf(d.groups, inst.groups, fn)
	pairsOf(d.binds, inst.binds, fn)
}

func pairsOf[K comparable](delta, inst map[K]*pieces, fn func(old, new *pieces)) {
	for k, p := range delta {
		fn(inst[k], p)
	}
}

// apply records a committed delta.
func (o *owners) apply(d *owners) {
	if d.fixed != nil {
		o.fixed = d.fixed
	}
	if d.nets != nil {
		o.nets = d.nets
	}
	applyOwned(o.policies, d.policies)
	applyOwned(o.devices, d.devices)
	applyOwned(o.addrs, d.addrs)
	applyOwned(o.groups, d.groups)
	applyOwned(o.binds, d.binds)
}

func applyOwned[K comparable](dst, delta map[K]*pieces) {
	for k, p := range delta {
		if p == nil {
			delete(dst, k)
		} else {
			dst[k] = p
		}
	}
}

// layoutOf is the layout all objects make up.
func (o *owners) layout() *layout {
	l := newLayout()
	o.all(l.add)
	return l
}
