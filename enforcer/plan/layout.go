package plan

import (
	"cmp"
	"errors"
	"fmt"
	"hash/fnv"
	"maps"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/policy"
)

// Names of our tables, sets and fixed chains.
const (
	tableName = "mud"

	setFromDev = "from_dev"  // ether_addr : mark (dispatch id; direct mode: verdict); bridge: also the receiver's
	setToDev   = "to_dev"    // bridge, direct mode: ether_addr : verdict (the to-device chain)
	setToDev4  = "to_dev4"   // inet: ipv4_addr : mark
	setToDev6  = "to_dev6"   // inet: ipv6_addr : mark
	setOutVmap = "out_chain" // mark : verdict (dispatch id → goto from-device chain; none for allow-only policies)
	setInVmap  = "in_chain"  // mark : verdict (dispatch id → goto to-device chain)
	setGuard4  = "guard4"    // ether_addr . ipv4_addr
	setGuard6  = "guard6"    // ether_addr . ipv6_addr
	setAddr4   = "addr4"     // ipv4_addr : mark (peer address → group id), timeout
	setAddr6   = "addr6"     // ipv6_addr : mark, timeout
	setNet4    = "net4"      // mark . ipv4_addr : mark, interval, timeout (class segments → group id)
	setNet6    = "net6"      // mark . ipv6_addr : mark, interval, timeout
	setPeerGrp = "peergrp"   // mark . mark (peer id . id of a group of several peers)
	setACLOut  = "acl_out"   // dispatch id . group . family . protocol . remote port
	setACLIn   = "acl_in"    // the same, to-device
	setDenyOut = "denyc_out" // mark, dynamic, counter: per-policy default-deny counters, filled by the packet path
	setDenyIn  = "denyc_in"
	setResOut  = "res_out" // mark : verdict (id → goto the chain of an allow-only policy's rule-form ACEs)
	setResIn   = "res_in"
	setAppA    = "app_a" // mark : mark (dispatch id → the shared id of its App. A defaults)
	setCaged   = "caged" // inet: ether_addr of the quarantined and blocked devices
	// Per-device accounting (Config.DeviceCounters): dynamic sets with a
	// counter per element, filled by the packet path, never by plans.
	setAcctOut = "acct_out"  // ether_addr: what each device sent that our tables judged
	setAcctIn  = "acct_in"   // bridge: ether_addr, what each device was sent
	setAcctIn4 = "acct_in4"  // inet: ipv4_addr, what each device address was sent
	setAcctIn6 = "acct_in6"  // inet: ipv6_addr
	setDropOut = "dropc_out" // ether_addr: what of it was dropped (default deny, source guard, quarantine, block)
	setDropIn  = "dropc_in"  // bridge: ether_addr
	setDropIn4 = "dropc_in4" // inet: ipv4_addr
	setDropIn6 = "dropc_in6" // inet: ipv6_addr

	chainForward   = "forward"
	chainInput     = "input"
	chainGuard     = "src_guard"
	chainQuarOut   = "quarantine_out"
	chainQuarIn    = "quarantine_in"
	chainBlockOut  = "block_out"
	chainBlockIn   = "block_in"
	chainDispFwd   = "dispatch_fwd"
	chainDispIn    = "dispatch_in"
	chainBusyFwd   = "secmark_fwd"
	chainBusyIn    = "secmark_in"
	chainDenyOut   = "deny_out"
	chainDenyIn    = "deny_in"
	chainACLOut    = "acl_out"
	chainACLIn     = "acl_in"
	chainAllowOut  = "allow_out" // entry of every allow-only policy
	chainAllowIn   = "allow_in"
	chainPolOut    = "policy_out" // the dispatch's second stage: out_chain, else allow_out
	chainPolIn     = "policy_in"
	chainCageIn    = "cage_in" // what a quarantined or blocked device may ask of the gateway
	defaultDenyTag = "default-deny"
	carrierBusyTag = "carrier-busy"
)

// Dispatch ids of the fixed treatments; policies and per-device chains get
// ids from firstDispatchID on.
const (
	dispQuarantine  uint32 = 1
	dispBlock       uint32 = 2
	firstDispatchID uint32 = 16
)

// setDefs lists the sets of a table. With two-stage dispatch (the default),
// the device maps hold dispatch ids (data, so adding a device makes the
// kernel validate nothing) and out_chain/in_chain map ids to chains; in
// direct mode the device maps are verdict maps jumping to the chains.
// flows is the size of the flow sets of the bridge table's reflexive mode
// (0: none, the kernel tracks bridged traffic).
func setDefs(f Family, twoStage, ruleCounters bool, flows, acct uint32) []Set {
	dev := func(name string, key KeyType, keyText string) Set {
		if twoStage {
			return Set{Name: name, Key: key, Value: ValueMark, decl: "type " + keyText + " : mark"}
		}
		return Set{Name: name, Key: key, Value: ValueVerdict, decl: "type " + keyText + " : verdict"}
	}
	defs := []Set{dev(setFromDev, KeyMAC, "ether_addr")}
	if f == Inet {
		defs = append(defs, dev(setToDev4, KeyIPv4, "ipv4_addr"), dev(setToDev6, KeyIPv6, "ipv6_addr"),
			Set{Name: setCaged, Key: KeyMAC, decl: "type ether_addr"})
	} else if !twoStage {
		// With two-stage dispatch from_dev gives the receiver's id too: a
		// device's id does not depend on the direction.
		defs = append(defs, dev(setToDev, KeyMAC, "ether_addr"))
	}
	if twoStage {
		defs = append(defs,
			Set{Name: setOutVmap, Key: KeyMark, Value: ValueVerdict, decl: "type mark : verdict"},
			Set{Name: setInVmap, Key: KeyMark, Value: ValueVerdict, decl: "type mark : verdict"})
	}
	defs = append(defs,
		Set{Name: setGuard4, Key: KeyMACIPv4, decl: "type ether_addr . ipv4_addr"},
		Set{Name: setGuard6, Key: KeyMACIPv6, decl: "type ether_addr . ipv6_addr"},
		Set{Name: setAddr4, Key: KeyIPv4, Value: ValueMark, Timeout: true, decl: "type ipv4_addr : mark; flags timeout"},
		Set{Name: setAddr6, Key: KeyIPv6, Value: ValueMark, Timeout: true, decl: "type ipv6_addr : mark; flags timeout"},
		Set{Name: setNet4, Key: KeyMarkIPv4, Value: ValueMark, Interval: true, Timeout: true, decl: "type mark . ipv4_addr : mark; flags interval, timeout"},
		Set{Name: setNet6, Key: KeyMarkIPv6, Value: ValueMark, Interval: true, Timeout: true, decl: "type mark . ipv6_addr : mark; flags interval, timeout"},
		Set{Name: setPeerGrp, Key: KeyMarkMark, decl: "type mark . mark"},
	)
	if twoStage {
		acl := "type mark . mark . mark . inet_proto . inet_service"
		if ruleCounters {
			acl += "; counter"
		}
		defs = append(defs,
			Set{Name: setACLOut, Key: KeyACL, Counter: ruleCounters, decl: acl},
			Set{Name: setACLIn, Key: KeyACL, Counter: ruleCounters, decl: acl},
			denySetDef(setDenyOut), denySetDef(setDenyIn),
			Set{Name: setResOut, Key: KeyMark, Value: ValueVerdict, decl: "type mark : verdict"},
			Set{Name: setResIn, Key: KeyMark, Value: ValueVerdict, decl: "type mark : verdict"},
			Set{Name: setAppA, Key: KeyMark, Value: ValueMark, decl: "type mark : mark"})
	}
	if f == Bridge && flows > 0 {
		defs = append(defs, flowSetDefs(flows)...)
	}
	if acct > 0 {
		defs = append(defs, acctSetDefs(f, acct)...)
	}
	return defs
}

// minSetBuckets is the smallest hash table a rebuild asks the kernel for:
// 32 KiB of buckets per set (about 1 MiB for all of them), so that a
// network of up to 3,000 devices never stalls to grow a set.
const minSetBuckets = 4096

// capacityFor is the size a rebuild gives a set that starts with n
// elements (sets the packet path fills have their own). The kernel takes
// a set's size as its hash table's initial size as well as its bound:
// without one, a table starts with a few buckets and doubles in a worker
// while the batch inserts, and every insert meanwhile takes the slow path
// (at 10,000 policies, half the kernel's time in a rebuild). The size is
// 75% of a power of two buckets, where a growing table would double: the
// memory is that of the table grown to n, or of the next one when n is
// within an eighth of its bound, so that a set always takes n/8 more
// elements before it must grow. A change that would overfill a set is
// refused by the kernel (ENFILE) and made as a rebuild, which sizes the
// sets anew: a stall as long as a full apply, about once each time a set
// doubles.
func capacityFor(n int) uint32 {
	b := minSetBuckets
	for b*3/4 <= n+n/8 {
		b *= 2
	}
	return uint32(b * 3 / 4)
}

// layout is everything our two tables hold for one model.
type layout struct {
	chains map[ChainRef]*Chain
	elems  map[SetRef]map[Key]*Elem
}

func newLayout() *layout {
	return &layout{chains: map[ChainRef]*Chain{}, elems: map[SetRef]map[Key]*Elem{}}
}

// buildOpts carries what the layout depends on besides the model.
type buildOpts struct {
	prio, bridgePrio int32
	logGroup         uint16
	log              bool
	bridgeCT         bool     // the kernel tracks bridged traffic (nf_conntrack_bridge)
	bridgeNF         BridgeNF // what br_netfilter passes to the inet hooks
	flowSize         uint32   // bound of the flow sets (reflexive mode; 0 with bridgeCT)
	twoStage         bool     // dispatch through ids in meta secmark (see fixedChains)
	ruleCounters     bool     // acl elements carry counters
	acct             uint32   // bound of the per-device accounting sets (0: none)
	bridgeLAN        []netip.Prefix
	peerID           func(key string) uint32
	groupID          func(sig string) uint32      // a group of several peers
	isElement        func(policyID string) bool   // the policy renders as elements (after the change)
	dispatchID       func(outChain string) uint32 // two-stage: id of a dispatch target
	now              time.Time
	forms            map[*policy.Policy]*policyForms // aclForms computed in this plan (nil: not kept)
	sharedKeys       map[string]string               // shared defaults' keys by text, in this plan (nil: not kept)
}

// formsOf is aclForms of p, computed once per plan when o keeps them.
func (o buildOpts) formsOf(p *policy.Policy) *policyForms {
	if o.forms == nil {
		return aclForms(p, o)
	}
	pf, ok := o.forms[p]
	if !ok {
		pf = aclForms(p, o)
		o.forms[p] = pf
	}
	return pf
}

func chainTag(id string) string {
	if len(id) > 0 && len(id) <= 40 && strings.IndexFunc(id, func(r rune) bool { return !tagRune(r) }) < 0 {
		return id // the usual case, without building a copy
	}
	var b strings.Builder
	clean := true
	for _, r := range id {
		if tagRune(r) {
			b.WriteRune(r)
		} else {
			clean = false
		}
	}
	s := b.String()
	if clean && len(s) > 0 && len(s) <= 40 {
		return s
	}
	// Chain names are limited and the ID may be anything (a URL, a hash):
	// keep a readable head and make it unique with a hash of the whole.
	h := fnv.New32a()
	h.Write([]byte(id))
	if len(s) > 24 {
		s = s[:24]
	}
	return fmt.Sprintf("%s_%08x", s, h.Sum32())
}

// tagRune tells whether a rune may stand in a chain name.
func tagRune(r rune) bool {
	return r < 128 && (r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z')
}

func polChain(id string, d policy.Direction) string {
	if d == policy.FromDevice {
		return "pol_" + chainTag(id) + "_out"
	}
	return "pol_" + chainTag(id) + "_in"
}

func devChain(mac net.HardwareAddr, d policy.Direction) string {
	s := strings.ReplaceAll(mac.String(), ":", "")
	if d == policy.FromDevice {
		return "dev_" + s + "_out"
	}
	return "dev_" + s + "_in"
}

// deviceChains says which chains a device's traffic is dispatched to.
func deviceChains(d *Device) (out, in string) {
	switch d.Mode {
	case Quarantine:
		return chainQuarOut, chainQuarIn
	case Block:
		return chainBlockOut, chainBlockIn
	}
	if !d.Overrides.empty() {
		return devChain(d.MAC, policy.FromDevice), devChain(d.MAC, policy.ToDevice)
	}
	return polChain(d.PolicyID, policy.FromDevice), polChain(d.PolicyID, policy.ToDevice)
}

func (pc *pieces) chain(c *Chain) {
	c.sign()
	pc.chains = append(pc.chains, c)
}

// sign computes the chain's signature.
func (c *Chain) sign() {
	var sig strings.Builder
	if c.Hook != nil {
		sig.WriteString(c.Hook.Text() + "\n")
	}
	for _, r := range c.Rules {
		sig.WriteString(r.Text())
		sig.WriteByte('\n')
	}
	c.sig = sig.String()
}

func (pc *pieces) elem(f Family, set string, e *Elem) {
	pc.elems = append(pc.elems, elemAt{SetRef{f, set}, e})
}

func (l *layout) add(pc *pieces) {
	if pc == nil {
		return
	}
	for _, c := range pc.chains {
		l.chains[c.ID] = c
	}
	for _, x := range pc.elems {
		m := l.elems[x.ref]
		if m == nil {
			m = map[Key]*Elem{}
			l.elems[x.ref] = m
		}
		m[x.elem.Key] = x.elem
	}
}

func fixedPieces(o buildOpts) *pieces {
	pc := &pieces{}
	for _, f := range Families {
		for _, c := range fixedChains(f, o) {
			pc.chain(c)
		}
	}
	if o.twoStage {
		dispatchElems(pc, dispQuarantine, chainQuarOut, chainQuarIn)
		dispatchElems(pc, dispBlock, chainBlockOut, chainBlockIn)
	}
	return pc
}

func policyPieces(p *policy.Policy, o buildOpts) (*pieces, error) {
	pc := &pieces{}
	if pf := o.formsOf(p); pf != nil {
		// Allow-only: elements (bound per group, see groups.go) and a
		// chain only for the ACEs that are not triples. No dispatch
		// element: an id out_chain / in_chain do not hold goes to
		// allow_out / allow_in (each jump element would make the kernel
		// re-validate its chains at every commit), and the packet path
		// counts the default deny in denyc_*.
		k := MarkKey(o.dispatchID(polChain(p.ID, policy.FromDevice)))
		if pf.sharedKey != "" {
			shared := o.dispatchID(dispatchName(pf.sharedKey))
			for _, f := range Families {
				pc.elem(f, setAppA, &Elem{Key: k, Mark: shared})
			}
		}
		for di, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			res, acl := setResOut, chainACLOut
			if di == 1 {
				res, acl = setResIn, chainACLIn
			}
			for _, f := range Families {
				if len(pf.residual[di]) == 0 {
					continue
				}
				rules, err := policyRules(f, pf.residual[di], d, o)
				if err != nil {
					return nil, fmt.Errorf("rendering policy %q %s: %w", p.ID, d, err)
				}
				name := polChain(p.ID, d)
				pc.chain(&Chain{ID: ChainRef{f, name}, Rules: append(rules, Rule{verdict: gotoChain(acl)})})
				pc.elem(f, res, &Elem{Key: k, Verdict: gotoChain(name)})
			}
		}
		return pc, nil
	}
	for _, f := range Families {
		for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			rules, err := policyRules(f, p.Rules(d), d, o)
			if err != nil {
				return nil, fmt.Errorf("rendering policy %q %s: %w", p.ID, d, err)
			}
			pc.chain(&Chain{ID: ChainRef{f, polChain(p.ID, d)},
				Rules: append(prologue(f, d, o), append(rules, epilogue(d, o)...)...)})
		}
	}
	if o.twoStage {
		out, in := polChain(p.ID, policy.FromDevice), polChain(p.ID, policy.ToDevice)
		dispatchElems(pc, o.dispatchID(out), out, in)
	}
	return pc, nil
}

// dispatchElems maps a dispatch id to its chains (two-stage dispatch). The
// elements are gotos: policy_out / policy_in, which hold the lookup, were
// jumped to, so the chain's return goes back to the dispatch.
func dispatchElems(pc *pieces, id uint32, out, in string) {
	k := MarkKey(id)
	for _, f := range Families {
		pc.elem(f, setOutVmap, &Elem{Key: k, Verdict: gotoChain(out)})
		pc.elem(f, setInVmap, &Elem{Key: k, Verdict: gotoChain(in)})
	}
}

// fixedDispatchID gives the ids of the fixed treatments.
func fixedDispatchID(outChain string) (uint32, bool) {
	switch outChain {
	case chainQuarOut:
		return dispQuarantine, true
	case chainBlockOut:
		return dispBlock, true
	}
	return 0, false
}

func devicePieces(d *Device, o buildOpts) (*pieces, error) {
	outC, inC := deviceChains(d)
	// One allocation for the device's elements (a full apply builds
	// 100,000 of them).
	naddr := len(d.IPv4s) + len(d.IPv6s)
	specs := make([]Elem, 0, 4+2*naddr+naddr)
	pc := &pieces{elems: make([]elemAt, 0, cap(specs))}
	spec := func(e Elem) *Elem {
		specs = append(specs, e)
		return &specs[len(specs)-1]
	}
	// The device maps' values: a dispatch id (two-stage) or a jump.
	var outE, inE func(key Key) *Elem
	if o.twoStage {
		id := o.dispatchID(outC)
		outE = func(key Key) *Elem { return spec(Elem{Key: key, Mark: id}) }
		inE = outE
	} else {
		outE = func(key Key) *Elem { return spec(Elem{Key: key, Verdict: jump(outC)}) }
		inE = func(key Key) *Elem { return spec(Elem{Key: key, Verdict: jump(inC)}) }
	}
	macK := MACOf(d.MAC)
	var mac Key = macK
	overrides := d.Mode == Enforce && !d.Overrides.empty()
	if overrides && o.twoStage {
		dispatchElems(pc, o.dispatchID(outC), outC, inC)
	}
	// Keys are shared by both tables' elements.
	v4 := make([]Key, len(d.IPv4s))
	g4 := make([]Key, len(d.IPv4s))
	for i, a := range d.IPv4s {
		v4[i], g4[i] = AddrKey(a), GuardKey{macK, a}
	}
	v6 := make([]Key, len(d.IPv6s))
	g6 := make([]Key, len(d.IPv6s))
	for i, a := range d.IPv6s {
		v6[i], g6[i] = AddrKey(a), GuardKey{macK, a}
	}
	from := outE(mac)
	if d.Mode == Quarantine || d.Mode == Block {
		pc.elem(Inet, setCaged, spec(Elem{Key: mac}))
	}
	for _, f := range Families {
		if overrides {
			for _, dir := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
				list := d.Overrides.FromDevice
				if dir == policy.ToDevice {
					list = d.Overrides.ToDevice
				}
				rules, err := policyRules(f, list, dir, o)
				if err != nil {
					return nil, fmt.Errorf("rendering overrides of device %s: %w", d.MAC, err)
				}
				rules = append(prologue(f, dir, o), rules...)
				if o.isElement != nil && o.isElement(d.PolicyID) {
					// Continue with the policy under its own id: its
					// elements are keyed by it.
					allow := chainAllowOut
					if dir == policy.ToDevice {
						allow = chainAllowIn
					}
					rules = append(rules, Rule{frags: []frag{fSetSecmark(o.dispatchID(polChain(d.PolicyID, policy.FromDevice)))}, verdict: gotoChain(allow)})
				} else {
					rules = append(rules, Rule{verdict: gotoChain(polChain(d.PolicyID, dir))})
				}
				pc.chain(&Chain{ID: ChainRef{f, devChain(d.MAC, dir)}, Rules: rules})
			}
		}
		pc.elem(f, setFromDev, from)
		if f == Bridge && !o.twoStage {
			pc.elem(f, setToDev, inE(mac))
		}
		for i := range v4 {
			if f == Inet {
				pc.elem(f, setToDev4, inE(v4[i]))
			}
			pc.elem(f, setGuard4, spec(Elem{Key: g4[i]}))
		}
		for i := range v6 {
			if f == Inet {
				pc.elem(f, setToDev6, inE(v6[i]))
			}
			pc.elem(f, setGuard6, spec(Elem{Key: g6[i]}))
		}
	}
	return pc, nil
}

// exactPeer tells the peers that only ever hold single addresses (DNS
// answers, devices of a manufacturer or model): they live in hash sets, where
// adding or deleting an element is O(1). Administrator-configured classes may
// hold prefixes and use the interval (pipapo) sets, whose every change
// rebuilds the set's lookup tables.
func exactPeer(key string) bool {
	for _, k := range []policy.PeerKind{policy.DNSName, policy.Manufacturer, policy.Model} {
		if strings.HasPrefix(key, k.String()+":") {
			return true
		}
	}
	return false
}

// build computes the whole layout of a model (Render).
func build(m *model, o buildOpts) (*layout, error) {
	all, err := buildOwners(m, o)
	if err != nil {
		return nil, err
	}
	return all.layout(), nil
}

// buildOwners computes the pieces of every object of a model, from
// scratch.
func buildOwners(m *model, o buildOpts) (*owners, error) {
	return buildOwnersWith(m, o, fixedPieces(o))
}

// buildOwnersWith is buildOwners with the fixed pieces of o at hand.
func buildOwnersWith(m *model, o buildOpts, fixed *pieces) (*owners, error) {
	out := newOwners()
	o.isElement = func(id string) bool { p := m.policies[id]; return p != nil && elementPolicy(p, o) }
	out.fixed = fixed
	for _, id := range slices.Sorted(maps.Keys(m.policies)) {
		// Peer ids in rule order, as plans allocate them: the same
		// policies give the same ids after a restart.
		peerIDs(o, m.policies[id].FromDevice, m.policies[id].ToDevice)
		pc, err := policyPieces(m.policies[id], o)
		if err != nil {
			return nil, err
		}
		out.policies[id] = pc
	}
	for _, mac := range slices.Sorted(maps.Keys(m.devices)) {
		d := m.devices[mac]
		if d.Mode == Enforce && m.policies[d.PolicyID] == nil {
			return nil, fmt.Errorf("device %s: policy %q is not installed", d.MAC, d.PolicyID)
		}
		pc, err := devicePieces(d, o)
		if err != nil {
			return nil, err
		}
		out.devices[mac] = pc
	}
	deriveChange(o, newDerivedState(), out, true, m.policies, func(id string) *policy.Policy { return m.policies[id] },
		m.peers, func(string) map[netip.Prefix]time.Time { return nil },
		func() map[string]map[netip.Prefix]time.Time { return m.peers }, nil).fill()
	return out, nil
}

func prefixRange(p netip.Prefix) (netip.Addr, netip.Addr) {
	p = p.Masked()
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return p.Addr(), last
}

// normalizePeer drops prefixes contained in another one of the same peer:
// interval sets reject overlapping elements. The wider prefix keeps the later
// expiry of the two.
func normalizePeer(elems []Element, now time.Time) (map[netip.Prefix]time.Time, error) {
	type pe struct {
		p   netip.Prefix
		exp time.Time
	}
	var buf [4]pe // most peers hold an address or two
	list := buf[:0]
	for _, e := range elems {
		if !e.Prefix.IsValid() {
			return nil, fmt.Errorf("invalid prefix %v", e.Prefix)
		}
		p := e.Prefix.Masked()
		if p.Addr().Is4In6() {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		list = append(list, pe{p, exp})
	}
	slices.SortFunc(list, func(x, y pe) int {
		return cmp.Or(cmp.Compare(x.p.Addr().BitLen(), y.p.Addr().BitLen()), cmp.Compare(x.p.Bits(), y.p.Bits()))
	})
	// A prefix is contained in a kept one when its own address masked to
	// one of the kept lengths is kept: a lookup per distinct length (few),
	// not a walk over every kept prefix (a class of 10,000 members).
	out := make(map[netip.Prefix]time.Time, len(list))
	var lens [2][]int // distinct kept lengths, ascending, for IPv4 and IPv6
	for _, e := range list {
		fam := 0
		if e.p.Addr().Is6() {
			fam = 1
		}
		merged := false
		for _, l := range lens[fam] {
			if l > e.p.Bits() {
				break
			}
			k, _ := e.p.Addr().Prefix(l)
			old, ok := out[k]
			if !ok {
				continue
			}
			if !old.IsZero() && (e.exp.IsZero() || e.exp.After(old)) {
				out[k] = e.exp
			}
			merged = true
			break
		}
		if !merged {
			out[e.p] = e.exp
			if n := len(lens[fam]); n == 0 || lens[fam][n-1] != e.p.Bits() {
				lens[fam] = append(lens[fam], e.p.Bits())
			}
		}
	}
	return out, nil
}

// Always-allowed traffic: DHCP (RFC 8520 devices must renew leases). ndRule
// is the ICMPv6 neighbour discovery IPv6 cannot work without.
func dhcpRules(clientToServerOnly bool) []Rule {
	pairs := [][2]uint16{{68, 67}, {546, 547}}
	if !clientToServerOnly {
		pairs = append(pairs, [2]uint16{67, 68}, [2]uint16{547, 546})
	}
	var out []Rule
	for _, p := range pairs {
		out = append(out, Rule{frags: fUDPPorts(p[0], p[1]), verdict: accept()})
	}
	return out
}

func ndRule() Rule {
	return Rule{frags: []frag{fL4proto(58), fICMPv6Types(133, 137)}, verdict: accept()}
}

func fixedChains(f Family, o buildOpts) []*Chain {
	var cs []*Chain
	// Neighbour discovery goes between the two fast-path rules: conntrack
	// classifies NS/NA as invalid, and IPv6 must keep resolving neighbours.
	fast := []Rule{
		{frags: []frag{ctEstRel}, verdict: accept()},
		ndRule(),
		{frags: []frag{ctInvalid}, counter: true, verdict: drop()},
	}
	// dispatch is what follows the always-allowed traffic in a base chain.
	var fwdDispatch, inDispatch []Rule
	if o.twoStage {
		fwdDispatch = []Rule{
			{frags: []frag{fSecmarkIs(true)}, verdict: jump(chainDispFwd)},
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainBusyFwd)},
		}
		inDispatch = []Rule{
			{frags: []frag{fSecmarkIs(true)}, verdict: jump(chainDispIn)},
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainBusyIn)},
		}
	} else {
		etherSrc := []frag{fVmapEther(true, setFromDev)}
		if f == Inet {
			etherSrc = append([]frag{fIIFEther()}, etherSrc...)
			fwdDispatch = []Rule{
				{frags: etherSrc},
				{frags: []frag{fNfproto(f, 4), fVmapAddr(4, false, setToDev4)}},
				{frags: []frag{fNfproto(f, 6), fVmapAddr(6, false, setToDev6)}}}
			inDispatch = []Rule{{frags: etherSrc}}
		} else {
			fwdDispatch = []Rule{{frags: etherSrc}, {frags: []frag{fVmapEther(false, setToDev)}}}
		}
	}
	// Replies of MUD devices pass the source guard before the established
	// fast path: otherwise a device could answer connections made to an
	// address it does not hold (the to-device maps do not know it, so the
	// inbound packet is nobody's, and the device's replies are
	// "established"). The original direction needs no check after the
	// first packet, which dispatch guards: a flow's source never changes.
	guardFirst := Rule{frags: []frag{fCtReply(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev)}, verdict: jump(chainGuard)}
	if f == Inet {
		guardFirst.frags = []frag{fCtReply(), fIIFEther(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev)}
		fast = append([]Rule{guardFirst}, fast...)
	}
	// Device counters count first, before anything can end the base chain.
	var acctFwd, acctIn []Rule
	if o.acct > 0 {
		acctFwd, acctIn = acctRules(f, true), acctRules(f, false)
	}
	if f == Inet {
		fwd := append(append(slices.Clone(acctFwd), fast...), dhcpRules(false)...)
		fwd = append(fwd, fwdDispatch...)
		cs = append(cs, &Chain{ID: ChainRef{f, chainForward},
			Hook:  &Hook{HookForward, o.prio},
			Rules: fwd})
		in := append(append(slices.Clone(acctIn), fast...), dhcpRules(true)...)
		// A quarantined or blocked device asks the gateway for DNS and
		// nothing else.
		in = append(in, Rule{frags: []frag{fIIFEther(), fInMap(loadEther(true, reg1), "ether saddr", setCaged)}, verdict: jump(chainCageIn)})
		// RFC 8520 App. A: the gateway's own DNS and NTP stay reachable.
		in = append(in,
			Rule{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 53, last: 53})}, verdict: accept()},
			Rule{frags: []frag{fL4proto(6), fPort(6, true, portRange{first: 53, last: 53})}, verdict: accept()},
			Rule{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 123, last: 123})}, verdict: accept()})
		in = append(in, inDispatch...)
		cs = append(cs, &Chain{ID: ChainRef{f, chainInput},
			Hook:  &Hook{HookInput, o.prio},
			Rules: in})
	} else {
		// Bridged IP that table inet judges (to_inet accepts it here) is
		// counted there.
		var fwd []Rule
		if o.bridgeCT {
			fwd = append(append(append(fwd, acctFwd...), guardFirst), fast...)
		}
		fwd = append(fwd, Rule{frags: []frag{fNotIP()}, verdict: accept()})
		if !o.bridgeCT && (o.bridgeNF.toInet(0) || o.bridgeNF.toInet(1)) {
			fwd = append(fwd, Rule{verdict: jump(chainToInet)})
			cs = append(cs, toInetChain(o))
		}
		if !o.bridgeCT {
			fwd = append(fwd, acctFwd...)
		}
		fwd = append(fwd, dhcpRules(false)...)
		if !o.bridgeCT {
			fwd = append(fwd, ndRule())
		}
		if !o.bridgeCT && !o.twoStage {
			// Reflexive mode, direct dispatch: the source guard, then the
			// flows remembered, before the policies; what they accepted is
			// remembered after them (two-stage dispatch does both in
			// dispatch_fwd, where the sender's id is at hand).
			from := fInMap(loadEther(true, reg1), "ether saddr", setFromDev)
			notFrom := fNotInMap(loadEther(true, reg1), "ether saddr", setFromDev)
			to := fInMap(loadEther(false, reg1), "ether daddr", setFromDev)
			fwd = append(fwd,
				Rule{frags: []frag{from}, verdict: jump(chainGuard)},
				Rule{frags: []frag{from}, verdict: jump(chainFlowFast)},
				Rule{frags: []frag{notFrom, to}, verdict: jump(chainFlowFast)})
			fwd = append(fwd, fwdDispatch...)
			fwd = append(fwd,
				Rule{frags: []frag{from}, verdict: jump(chainFlowRecord)},
				Rule{frags: []frag{notFrom, to}, verdict: jump(chainFlowRecord)})
		} else {
			fwd = append(fwd, fwdDispatch...)
		}
		if !o.bridgeCT {
			cs = append(cs, flowChains(o)...)
		}
		cs = append(cs, &Chain{ID: ChainRef{f, chainForward},
			Hook:  &Hook{HookForward, o.bridgePrio},
			Rules: fwd})
	}
	if o.twoStage {
		cs = append(cs, dispatchChains(f, !o.bridgeCT)...)
		cs = append(cs, aclChains(f, o)...)
	}
	// The IP source guard: a MUD device may only send from the addresses
	// bound to its MAC (plus IPv6 link-local, which ND needs).
	var guard []Rule
	for _, v := range []int{4, 6} {
		set := setGuard4
		if v == 6 {
			set = setGuard6
		}
		fr := []frag{fNfproto(f, v)}
		if f == Inet {
			fr = append(fr, fIIFEther())
		}
		guard = append(guard, Rule{frags: append(fr, fGuard(v, set)), verdict: ret()})
	}
	guard = append(guard, Rule{frags: []frag{fNfproto(f, 6), fPrefix(true, netip.MustParsePrefix("fe80::/10"))}, verdict: ret()})
	// A DHCPv4 client has no bound address yet (DHCPv6 uses link-local);
	// neighbour discovery comes from addresses not yet learned (and DAD
	// from ::), and the gateway learns SLAAC addresses from it.
	nd := ndRule()
	nd.frags = append([]frag{fNfproto(f, 6)}, nd.frags...)
	nd.verdict = ret()
	guard = append(guard,
		Rule{frags: append([]frag{fNfproto(f, 4)}, fUDPPorts(68, 67)...), verdict: ret()},
		nd)
	guard = append(guard, logRule("guard", o)...)
	if o.acct > 0 {
		guard = append(guard, dropRules(f, true)...)
	}
	guard = append(guard, Rule{counter: true, verdict: drop(), comment: "source-guard"})
	cs = append(cs, &Chain{ID: ChainRef{f, chainGuard}, Rules: guard})

	// The default deny's rate-limited log is shared: each policy chain ends
	// in one counted goto to it (its counter is the policy's default-deny).
	// With device counters it also counts the drop on the device.
	if o.log || o.acct > 0 {
		for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			name, dir := chainDenyOut, "out"
			if d == policy.ToDevice {
				name, dir = chainDenyIn, "in"
			}
			var rules []Rule
			if o.acct > 0 {
				rules = dropRules(f, d == policy.FromDevice)
			}
			rules = append(append(rules, logRule("deny "+dir, o)...), Rule{verdict: drop()})
			cs = append(cs, &Chain{ID: ChainRef{f, name}, Rules: rules})
		}
	}

	// Quarantine and block: DHCP (the base chains) and, in the input hook,
	// DNS to the gateway itself (cage_in); nothing through the gateway,
	// nothing to another device. They differ in why the device is there.
	if f == Inet {
		cage := []Rule{{verdict: jump(chainGuard)},
			{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 53, last: 53})}, counter: true, verdict: accept(), comment: "quarantine/gateway-dns"},
			{frags: []frag{fL4proto(6), fPort(6, true, portRange{first: 53, last: 53})}, counter: true, verdict: accept(), comment: "quarantine/gateway-dns"},
		}
		cs = append(cs, &Chain{ID: ChainRef{f, chainCageIn}, Rules: append(cage, epilogue(policy.FromDevice, o)...)})
	}
	cs = append(cs,
		&Chain{ID: ChainRef{f, chainQuarOut}, Rules: append(prologue(f, policy.FromDevice, o), epilogue(policy.FromDevice, o)...)},
		&Chain{ID: ChainRef{f, chainQuarIn}, Rules: epilogue(policy.ToDevice, o)},
		&Chain{ID: ChainRef{f, chainBlockOut}, Rules: append(prologue(f, policy.FromDevice, o), epilogue(policy.FromDevice, o)...)},
		&Chain{ID: ChainRef{f, chainBlockIn}, Rules: epilogue(policy.ToDevice, o)},
	)
	return cs
}

// dispatchChains are the two-stage dispatch. The device maps give a
// dispatch id, carried in meta secmark from the data-map lookup to the
// out_chain / in_chain verdict map, and reset to 0 afterwards. A device
// therefore costs data elements only: adding one makes the kernel validate
// nothing, where a jump element makes it re-validate every jump element of
// the table (milliseconds at 10,000 devices).
//
// Only packets whose secmark is 0 are dispatched (no LSM labels forwarded
// packets on a gateway), so resetting it restores the packet exactly; meta
// mark, which routing and QoS tools use, is never touched. A MUD device's
// packet that already carries a secmark is dropped and counted
// ("carrier-busy"): its policy cannot be evaluated without losing the
// label. Such systems use Config.DirectDispatch. (Moving the label aside
// for the dispatch would need a second path through the verdict maps,
// which doubles the kernel's validation of every policy change.)
//
// In the bridge table's reflexive mode (flows), dispatch_fwd also runs the
// flow fast path between the source guard and the policies, for packets
// from or to a MUD device, and remembers what the policies accepted.
func dispatchChains(f Family, flows bool) []*Chain {
	srcMAC := func() []frag {
		if f == Inet {
			return []frag{fIIFEther()}
		}
		return nil
	}
	fromDev := Rule{frags: append(srcMAC(), fSecmarkFromMap(loadEther(true, reg1), "ether saddr", setFromDev)), verdict: jump(chainGuard)}
	// The sender's id is set (secmark not 0) only if it is a MUD device.
	outVmap := Rule{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainPolOut)}
	reset := Rule{frags: []frag{fSetSecmark0()}}
	// The second stage: an id with chains of its own (quarantine, block,
	// policies with a drop, devices with overrides) goes to them, any
	// other is an allow-only policy's. The verdict maps hold gotos, so
	// their chains return to the dispatch, not here.
	second := []*Chain{
		{ID: ChainRef{f, chainPolOut}, Rules: []Rule{{frags: []frag{fSecmarkVmap(setOutVmap)}}, {verdict: gotoChain(chainAllowOut)}}},
		{ID: ChainRef{f, chainPolIn}, Rules: []Rule{{frags: []frag{fSecmarkVmap(setInVmap)}}, {verdict: gotoChain(chainAllowIn)}}},
	}
	busy := func(name string, members ...[]frag) *Chain {
		var rules []Rule
		for _, m := range members {
			rules = append(rules, Rule{frags: m, counter: true, verdict: drop(), comment: carrierBusyTag})
		}
		return &Chain{ID: ChainRef{f, name}, Rules: rules}
	}
	fromMember := append(srcMAC(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev))
	if f == Inet {
		to4 := Rule{frags: []frag{fNfproto(f, 4), fSecmarkFromMap(loadAddr(4, false, reg1), "ip daddr", setToDev4)}, verdict: jump(chainPolIn)}
		to6 := Rule{frags: []frag{fNfproto(f, 6), fSecmarkFromMap(loadAddr(6, false, reg1), "ip6 daddr", setToDev6)}, verdict: jump(chainPolIn)}
		return append(second,
			&Chain{ID: ChainRef{f, chainDispFwd}, Rules: []Rule{fromDev, outVmap, to4, to6, reset}},
			&Chain{ID: ChainRef{f, chainDispIn}, Rules: []Rule{fromDev, outVmap, reset}},
			busy(chainBusyFwd, fromMember,
				[]frag{fNfproto(f, 4), fInMap(loadAddr(4, false, reg1), "ip daddr", setToDev4)},
				[]frag{fNfproto(f, 6), fInMap(loadAddr(6, false, reg1), "ip6 daddr", setToDev6)}),
			busy(chainBusyIn, fromMember))
	}
	// from_dev gives the receiver's id as well.
	to := Rule{frags: []frag{fSecmarkFromMap(loadEther(false, reg1), "ether daddr", setFromDev)}, verdict: jump(chainPolIn)}
	disp := []Rule{fromDev, outVmap, to, reset}
	if flows {
		disp = []Rule{fromDev,
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainFlowFast)},
			{frags: []frag{fSecmarkIs(true), fInMap(loadEther(false, reg1), "ether daddr", setFromDev)}, verdict: jump(chainFlowFast)},
			outVmap, to,
			// the secmark is the sender's or the receiver's id: one of
			// them is a MUD device
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainFlowRecord)},
			reset}
	}
	return append(second,
		&Chain{ID: ChainRef{f, chainDispFwd}, Rules: disp},
		busy(chainBusyFwd, fromMember, []frag{fInMap(loadEther(false, reg1), "ether daddr", setFromDev)}))
}

// prologue: in direct mode, a policy's from-device chain starts with the
// source guard (two-stage dispatch runs it before the policy, as does the
// bridge table's base chain in reflexive mode).
func prologue(f Family, d policy.Direction, o buildOpts) []Rule {
	if d == policy.FromDevice && !o.twoStage && (f == Inet || o.bridgeCT) {
		return []Rule{{verdict: jump(chainGuard)}}
	}
	return nil
}

func logRule(what string, o buildOpts) []Rule {
	if !o.log {
		return nil
	}
	prefix := "mud " + what + ": "
	if len(prefix) > 120 {
		prefix = prefix[:120]
	}
	return []Rule{{frags: fLogLimited(o.logGroup, prefix)}}
}

// epilogue is the default deny (RFC 8520 §5): counted per
// chain, then the shared rate-limited NFLOG and drop.
func epilogue(d policy.Direction, o buildOpts) []Rule {
	if !o.log && o.acct == 0 {
		return []Rule{{counter: true, verdict: drop(), comment: defaultDenyTag}}
	}
	tail := chainDenyOut
	if d == policy.ToDevice {
		tail = chainDenyIn
	}
	return []Rule{{counter: true, verdict: gotoChain(tail), comment: defaultDenyTag}}
}

var errSkip = errors.New("rule cannot match this family")

// policyRules renders an ordered ACE list. Accept becomes `return`, so that
// the packet goes back to the base chain where the other device's to-device
// policy (lateral traffic) is still checked; drop is final.
func policyRules(f Family, rules []policy.Rule, d policy.Direction, o buildOpts) ([]Rule, error) {
	var out []Rule
	for _, r := range rules {
		var versions []int
		switch {
		case r.Protocol == policy.ProtoICMP:
			versions = []int{4}
		case r.Protocol == policy.ProtoICMPv6:
			versions = []int{6}
		case r.Peer.Kind == policy.Prefix && r.Peer.Prefix.Addr().Is4():
			versions = []int{4}
		case r.Peer.Kind == policy.Prefix:
			versions = []int{6}
		case r.Family == policy.IPv4:
			versions = []int{4}
		case r.Family == policy.IPv6:
			versions = []int{6}
		case r.Peer.Kind == policy.AnyPeer:
			versions = []int{0}
		default:
			versions = []int{4, 6}
		}
		for _, v := range versions {
			irs, err := aceRule(f, r, d, v, o)
			if errors.Is(err, errSkip) {
				continue
			}
			if err != nil {
				return nil, fmt.Errorf("rule %q: %w", r.Name, err)
			}
			out = append(out, irs...)
		}
	}
	return out, nil
}

// aceRule renders one ACE for one IP version (0: any). A peer match takes
// two rules: the address's group is the peer's own, or a shared group
// listing it.
func aceRule(f Family, r policy.Rule, d policy.Direction, v int, o buildOpts) ([]Rule, error) {
	if (r.Family == policy.IPv4 && v == 6) || (r.Family == policy.IPv6 && v == 4) {
		return nil, errSkip
	}
	var fr []frag
	if v != 0 {
		fr = append(fr, fNfproto(f, v))
	}
	if r.Protocol != 0 {
		fr = append(fr, fL4proto(r.Protocol))
	}
	if (r.SrcPort != nil || r.DstPort != nil) && r.Protocol != policy.ProtoTCP && r.Protocol != policy.ProtoUDP && r.Protocol != 132 {
		return nil, fmt.Errorf("ports need protocol tcp, udp or sctp (protocol %d)", r.Protocol)
	}
	if r.SrcPort != nil {
		fr = append(fr, fPort(r.Protocol, false, portRange{r.SrcPort.First, r.SrcPort.Last, r.SrcPort.Negate}))
	}
	if r.DstPort != nil {
		fr = append(fr, fPort(r.Protocol, true, portRange{r.DstPort.First, r.DstPort.Last, r.DstPort.Negate}))
	}
	if r.ICMP != nil {
		if r.Protocol != policy.ProtoICMP && r.Protocol != policy.ProtoICMPv6 {
			return nil, fmt.Errorf("icmp match needs protocol 1 or 58 (protocol %d)", r.Protocol)
		}
		fr = append(fr, fICMP(r.Protocol == policy.ProtoICMPv6, r.ICMP.Type, r.ICMP.Code))
	}
	for _, fm := range r.Fields {
		ff, err := fField(v, r.Protocol, fm)
		if err != nil {
			return nil, err
		}
		fr = append(fr, ff)
	}
	remoteIsSrc := d == policy.ToDevice
	peerMatch := [][]frag{nil}
	switch r.Peer.Kind {
	case policy.AnyPeer:
	case policy.Prefix:
		if !r.Peer.Prefix.IsValid() {
			return nil, errors.New("prefix peer without a valid prefix")
		}
		peerMatch = [][]frag{{fPrefix(remoteIsSrc, r.Peer.Prefix)}}
	default:
		key := r.Peer.Key()
		peerMatch = [][]frag{{fPeerOnly(v, remoteIsSrc, o.peerID(key), key)}, {fPeerShared(v, remoteIsSrc, o.twoStage, o.peerID(key), key)}}
	}
	// direction-initiated (RFC 8520 §4.8, TCP only): the side that may not
	// open connections is restricted to packets of existing ones.
	var tail []frag
	if restricts(r, d) {
		if f == Inet || o.bridgeCT {
			tail = append(tail, ctEstRel)
		} else {
			// No conntrack for bridged traffic: only a segment that opens
			// a connection (SYN without ACK) is refused.
			tail = append(tail, fNotBareSYN())
		}
	}
	vd := ret()
	if r.Verdict == policy.Drop {
		vd = drop()
	} else if r.Verdict != policy.Accept {
		return nil, fmt.Errorf("unknown verdict %v", r.Verdict)
	}
	var out []Rule
	for _, pm := range peerMatch {
		frags := append(append(append([]frag{}, fr...), pm...), tail...)
		out = append(out, Rule{frags: frags, counter: true, verdict: vd, comment: r.Name})
	}
	return out, nil
}
