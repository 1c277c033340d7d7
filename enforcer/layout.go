package enforcer

import (
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/netip"
	"sort"
	"strings"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/openmud/mud/policy"
)

// Names of our tables, sets and fixed chains.
const (
	tableName = "mud"

	setFromDev = "from_dev"  // ether_addr : mark (dispatch id; direct mode: verdict)
	setToDev   = "to_dev"    // bridge: ether_addr : mark
	setToDev4  = "to_dev4"   // inet: ipv4_addr : mark
	setToDev6  = "to_dev6"   // inet: ipv6_addr : mark
	setOutVmap = "out_chain" // mark : verdict (dispatch id → from-device chain)
	setInVmap  = "in_chain"  // mark : verdict (dispatch id → to-device chain)
	setGuard4  = "guard4"    // ether_addr . ipv4_addr
	setGuard6  = "guard6"    // ether_addr . ipv6_addr
	setAddr4   = "addr4"     // ipv4_addr : mark (peer address → group id), timeout
	setAddr6   = "addr6"     // ipv6_addr : mark, timeout
	setNet4    = "net4"      // mark . ipv4_addr : mark, interval, timeout (class segments → group id)
	setNet6    = "net6"      // mark . ipv6_addr : mark, interval, timeout
	setPeerGrp = "peergrp"   // mark . mark (peer id . id of a group of several peers)
	setACLOut  = "acl_out"   // dispatch id . group . family . protocol . remote port
	setACLIn   = "acl_in"    // the same, to-device
	setDenyOut = "denyc_out" // mark, counter: per-policy default-deny counters
	setDenyIn  = "denyc_in"
	setResOut  = "res_out" // mark : verdict (id → goto the chain of an allow-only policy's rule-form ACEs)
	setResIn   = "res_in"
	setCaged   = "caged" // inet: ether_addr of the quarantined and blocked devices

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

type setDef struct {
	name    string
	key     nftables.SetDatatype
	vmap    bool // a verdict map
	dmap    bool // a data map (mark values: dispatch ids)
	concat  bool
	ival    bool
	timeout bool
	counter bool
	dynamic bool   // updated from the packet path
	size    uint32 // maximum number of elements (0: unbounded)
	decl    string // nft syntax, for Render
}

var (
	typeEtherIP4 = nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIPAddr)
	typeEtherIP6 = nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIP6Addr)
	typeMarkIP4  = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr)
	typeMarkIP6  = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIP6Addr)
	typeMarkMark = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark)
	typeACL      = nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark, nftables.TypeMark, nftables.TypeInetProto, nftables.TypeInetService)
)

// setDefs lists the sets of a table. With two-stage dispatch (the default),
// the device maps hold dispatch ids (data, so adding a device makes the
// kernel validate nothing) and out_chain/in_chain map ids to chains; in
// direct mode the device maps are verdict maps jumping to the chains.
// flows is the size of the flow sets of the bridge table's reflexive mode
// (0: none, the kernel tracks bridged traffic).
func setDefs(f tfam, twoStage, ruleCounters bool, flows uint32) []setDef {
	dev := func(name string, key nftables.SetDatatype, keyText string) setDef {
		if twoStage {
			return setDef{name: name, key: key, dmap: true, decl: "type " + keyText + " : mark"}
		}
		return setDef{name: name, key: key, vmap: true, decl: "type " + keyText + " : verdict"}
	}
	defs := []setDef{dev(setFromDev, nftables.TypeEtherAddr, "ether_addr")}
	if f == famInet {
		defs = append(defs, dev(setToDev4, nftables.TypeIPAddr, "ipv4_addr"), dev(setToDev6, nftables.TypeIP6Addr, "ipv6_addr"),
			setDef{name: setCaged, key: nftables.TypeEtherAddr, decl: "type ether_addr"})
	} else {
		defs = append(defs, dev(setToDev, nftables.TypeEtherAddr, "ether_addr"))
	}
	if twoStage {
		defs = append(defs,
			setDef{name: setOutVmap, key: nftables.TypeMark, vmap: true, decl: "type mark : verdict"},
			setDef{name: setInVmap, key: nftables.TypeMark, vmap: true, decl: "type mark : verdict"})
	}
	defs = append(defs,
		setDef{name: setGuard4, key: typeEtherIP4, concat: true, decl: "type ether_addr . ipv4_addr"},
		setDef{name: setGuard6, key: typeEtherIP6, concat: true, decl: "type ether_addr . ipv6_addr"},
		setDef{name: setAddr4, key: nftables.TypeIPAddr, dmap: true, timeout: true, decl: "type ipv4_addr : mark; flags timeout"},
		setDef{name: setAddr6, key: nftables.TypeIP6Addr, dmap: true, timeout: true, decl: "type ipv6_addr : mark; flags timeout"},
		setDef{name: setNet4, key: typeMarkIP4, dmap: true, concat: true, ival: true, timeout: true, decl: "type mark . ipv4_addr : mark; flags interval, timeout"},
		setDef{name: setNet6, key: typeMarkIP6, dmap: true, concat: true, ival: true, timeout: true, decl: "type mark . ipv6_addr : mark; flags interval, timeout"},
		setDef{name: setPeerGrp, key: typeMarkMark, concat: true, decl: "type mark . mark"},
	)
	if twoStage {
		acl := "type mark . mark . mark . inet_proto . inet_service"
		if ruleCounters {
			acl += "; counter"
		}
		defs = append(defs,
			setDef{name: setACLOut, key: typeACL, concat: true, counter: ruleCounters, decl: acl},
			setDef{name: setACLIn, key: typeACL, concat: true, counter: ruleCounters, decl: acl},
			setDef{name: setDenyOut, key: nftables.TypeMark, counter: true, decl: "type mark; counter"},
			setDef{name: setDenyIn, key: nftables.TypeMark, counter: true, decl: "type mark; counter"},
			setDef{name: setResOut, key: nftables.TypeMark, vmap: true, decl: "type mark : verdict"},
			setDef{name: setResIn, key: nftables.TypeMark, vmap: true, decl: "type mark : verdict"})
	}
	if f == famBridge && flows > 0 {
		defs = append(defs, flowSetDefs(flows)...)
	}
	return defs
}

type chainID struct {
	fam  tfam
	name string
}

type hookSpec struct {
	hook nftables.ChainHook
	prio int32
	text string
}

type chainSpec struct {
	id    chainID
	hook  *hookSpec
	rules []irRule
	sig   string // the rules' text: equal signatures mean equal chains
}

type elemSpec struct {
	key, keyEnd []byte
	data        []byte // data maps: the value (a dispatch id)
	verdict     *expr.Verdict
	expires     time.Time // zero: permanent
}

type setRef struct {
	fam  tfam
	name string
}

// layout is everything our two tables hold for one model.
type layout struct {
	chains map[chainID]*chainSpec
	elems  map[setRef]map[string]*elemSpec
}

// buildOpts carries what the layout depends on besides the model.
type buildOpts struct {
	prio, bridgePrio int32
	logGroup         uint16
	log              bool
	bridgeCT         bool     // the kernel tracks bridged traffic (nf_conntrack_bridge)
	bridgeNF         bridgeNF // what br_netfilter passes to the inet hooks
	flowSize         uint32   // bound of the flow sets (reflexive mode; 0 with bridgeCT)
	twoStage         bool     // dispatch through ids in meta secmark (see fixedChains)
	ruleCounters     bool     // acl elements carry counters
	bridgeLAN        []netip.Prefix
	peerID           func(key string) uint32
	groupID          func(sig string) uint32      // a group of several peers
	isElement        func(policyID string) bool   // the policy renders as elements (after the change)
	dispatchID       func(outChain string) uint32 // two-stage: id of a dispatch target
	now              time.Time
}

func chainTag(id string) string {
	var b strings.Builder
	clean := true
	for _, r := range id {
		if r < 128 && (r == '_' || r == '-' || r >= '0' && r <= '9' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z') {
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

// pieces are the chains and set elements one object of the model (the fixed
// skeleton, a policy, a device, a peer) contributes. Changes are diffed per
// object, so a change costs work in proportion to what changed, not to the
// size of the ruleset.
type pieces struct {
	chains []*chainSpec
	elems  []elemAt
}

type elemAt struct {
	ref  setRef
	elem *elemSpec
}

func (pc *pieces) chain(c *chainSpec) {
	var sig strings.Builder
	if c.hook != nil {
		sig.WriteString(c.hook.text + "\n")
	}
	for _, r := range c.rules {
		sig.WriteString(r.text())
		sig.WriteByte('\n')
	}
	c.sig = sig.String()
	pc.chains = append(pc.chains, c)
}

func (pc *pieces) elem(f tfam, set string, e *elemSpec) {
	pc.elems = append(pc.elems, elemAt{setRef{f, set}, e})
}

func (e *elemSpec) id() string { return string(e.key) + "|" + string(e.keyEnd) }

func (l *layout) add(pc *pieces) {
	for _, c := range pc.chains {
		l.chains[c.id] = c
	}
	for _, x := range pc.elems {
		m := l.elems[x.ref]
		if m == nil {
			m = map[string]*elemSpec{}
			l.elems[x.ref] = m
		}
		m[x.elem.id()] = x.elem
	}
}

func fixedPieces(o buildOpts) *pieces {
	pc := &pieces{}
	for _, f := range []tfam{famInet, famBridge} {
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
	if pf := aclForms(p, o); pf != nil {
		// Peer ids in rule order, as the rule form allocates them: the same
		// policies give the same ids after a restart.
		for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			for _, r := range p.Rules(d) {
				if r.Peer.Kind != policy.AnyPeer && r.Peer.Kind != policy.Prefix {
					o.peerID(r.Peer.Key())
				}
			}
		}
		// Allow-only: elements (bound per group, see groups.go), a chain
		// only for the ACEs that are not triples, the per-policy deny
		// counter.
		k := dispatchKey(o.dispatchID(polChain(p.ID, policy.FromDevice)))
		for di, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			vm, res, deny, allow, acl := setOutVmap, setResOut, setDenyOut, chainAllowOut, chainACLOut
			if di == 1 {
				vm, res, deny, allow, acl = setInVmap, setResIn, setDenyIn, chainAllowIn, chainACLIn
			}
			for _, f := range []tfam{famInet, famBridge} {
				pc.elem(f, vm, &elemSpec{key: k, verdict: jump(allow)})
				pc.elem(f, deny, &elemSpec{key: k})
				if len(pf.residual[di]) == 0 {
					continue
				}
				rules, err := policyRules(f, pf.residual[di], d, o)
				if err != nil {
					return nil, fmt.Errorf("rendering policy %q %s: %w", p.ID, d, err)
				}
				name := polChain(p.ID, d)
				pc.chain(&chainSpec{id: chainID{f, name}, rules: append(rules, irRule{verdict: gotoChain(acl)})})
				pc.elem(f, res, &elemSpec{key: k, verdict: gotoChain(name)})
			}
		}
		return pc, nil
	}
	for _, f := range []tfam{famInet, famBridge} {
		for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			rules, err := policyRules(f, p.Rules(d), d, o)
			if err != nil {
				return nil, fmt.Errorf("rendering policy %q %s: %w", p.ID, d, err)
			}
			pc.chain(&chainSpec{id: chainID{f, polChain(p.ID, d)},
				rules: append(prologue(f, d, o), append(rules, epilogue(d, o)...)...)})
		}
	}
	if o.twoStage {
		out, in := polChain(p.ID, policy.FromDevice), polChain(p.ID, policy.ToDevice)
		dispatchElems(pc, o.dispatchID(out), out, in)
	}
	return pc, nil
}

// dispatchElems maps a dispatch id to its chains (two-stage dispatch).
func dispatchElems(pc *pieces, id uint32, out, in string) {
	k := dispatchKey(id)
	for _, f := range []tfam{famInet, famBridge} {
		pc.elem(f, setOutVmap, &elemSpec{key: k, verdict: jump(out)})
		pc.elem(f, setInVmap, &elemSpec{key: k, verdict: jump(in)})
	}
}

// dispatchKey is an id as meta secmark holds it: host byte order.
func dispatchKey(id uint32) []byte { return nativeEndian.AppendUint32(nil, id) }

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
	specs := make([]elemSpec, 0, 4+2*naddr+naddr)
	pc := &pieces{elems: make([]elemAt, 0, cap(specs))}
	spec := func(e elemSpec) *elemSpec {
		specs = append(specs, e)
		return &specs[len(specs)-1]
	}
	// The device maps' values: a dispatch id (two-stage) or a jump.
	var outE, inE func(key []byte) *elemSpec
	if o.twoStage {
		id := dispatchKey(o.dispatchID(outC))
		outE = func(key []byte) *elemSpec { return spec(elemSpec{key: key, data: id}) }
		inE = outE
	} else {
		outE = func(key []byte) *elemSpec { return spec(elemSpec{key: key, verdict: jump(outC)}) }
		inE = func(key []byte) *elemSpec { return spec(elemSpec{key: key, verdict: jump(inC)}) }
	}
	mac := []byte(d.MAC)
	overrides := d.Mode == Enforce && !d.Overrides.empty()
	if overrides && o.twoStage {
		dispatchElems(pc, o.dispatchID(outC), outC, inC)
	}
	// Keys are shared by both tables' elements (read-only).
	v4 := make([][]byte, len(d.IPv4s))
	g4 := make([][]byte, len(d.IPv4s))
	for i, a := range d.IPv4s {
		v4[i] = a.AsSlice()
		g4[i] = append(append(append(make([]byte, 0, 12), mac...), 0, 0), v4[i]...)
	}
	v6 := make([][]byte, len(d.IPv6s))
	g6 := make([][]byte, len(d.IPv6s))
	for i, a := range d.IPv6s {
		v6[i] = a.AsSlice()
		g6[i] = append(append(append(make([]byte, 0, 24), mac...), 0, 0), v6[i]...)
	}
	from := outE(mac)
	if d.Mode == Quarantine || d.Mode == Block {
		pc.elem(famInet, setCaged, spec(elemSpec{key: mac}))
	}
	for _, f := range []tfam{famInet, famBridge} {
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
					rules = append(rules, irRule{frags: []frag{fSetSecmark(o.dispatchID(polChain(d.PolicyID, policy.FromDevice)))}, verdict: gotoChain(allow)})
				} else {
					rules = append(rules, irRule{verdict: gotoChain(polChain(d.PolicyID, dir))})
				}
				pc.chain(&chainSpec{id: chainID{f, devChain(d.MAC, dir)}, rules: rules})
			}
		}
		pc.elem(f, setFromDev, from)
		if f == famBridge {
			pc.elem(f, setToDev, inE(mac))
		}
		for i := range v4 {
			if f == famInet {
				pc.elem(f, setToDev4, inE(v4[i]))
			}
			pc.elem(f, setGuard4, spec(elemSpec{key: g4[i]}))
		}
		for i := range v6 {
			if f == famInet {
				pc.elem(f, setToDev6, inE(v6[i]))
			}
			pc.elem(f, setGuard6, spec(elemSpec{key: g6[i]}))
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

// build computes the whole layout of a model (Render and tests; the
// enforcer works per object).
func build(m *model, o buildOpts) (*layout, error) {
	l := &layout{chains: map[chainID]*chainSpec{}, elems: map[setRef]map[string]*elemSpec{}}
	o.isElement = func(id string) bool { p := m.policies[id]; return p != nil && elementPolicy(p, o) }
	l.add(fixedPieces(o))
	for _, p := range m.policies {
		pc, err := policyPieces(p, o)
		if err != nil {
			return nil, err
		}
		l.add(pc)
	}
	for _, d := range m.devices {
		if d.Mode == Enforce && m.policies[d.PolicyID] == nil {
			return nil, fmt.Errorf("device %s: policy %q is not installed", d.MAC, d.PolicyID)
		}
		pc, err := devicePieces(d, o)
		if err != nil {
			return nil, err
		}
		l.add(pc)
	}
	policyAfter := func(id string) *policy.Policy { return m.policies[id] }
	dd := deriveChange(o, newDerivedState(), newDerivedObjects(), true, m.policies, policyAfter,
		m.peers, func(string) map[netip.Prefix]time.Time { return nil },
		func() map[string]map[netip.Prefix]time.Time { return m.peers })
	_, np := dd.diff(newDerivedObjects())
	for _, pc := range np {
		l.add(pc)
	}
	return l, nil
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
	var list []pe
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
	sort.Slice(list, func(i, j int) bool {
		if list[i].p.Addr().BitLen() != list[j].p.Addr().BitLen() {
			return list[i].p.Addr().BitLen() < list[j].p.Addr().BitLen()
		}
		return list[i].p.Bits() < list[j].p.Bits()
	})
	out := map[netip.Prefix]time.Time{}
	var kept []netip.Prefix
	for _, e := range list {
		merged := false
		for _, k := range kept {
			if k.Addr().BitLen() == e.p.Addr().BitLen() && k.Contains(e.p.Addr()) {
				if old := out[k]; !old.IsZero() && (e.exp.IsZero() || e.exp.After(old)) {
					out[k] = e.exp
				}
				merged = true
				break
			}
		}
		if !merged {
			kept = append(kept, e.p)
			out[e.p] = e.exp
		}
	}
	return out, nil
}

// Always-allowed traffic: DHCP (RFC 8520 devices must renew leases). ndRule
// is the ICMPv6 neighbour discovery IPv6 cannot work without.
func dhcpRules(clientToServerOnly bool) []irRule {
	pairs := [][2]uint16{{68, 67}, {546, 547}}
	if !clientToServerOnly {
		pairs = append(pairs, [2]uint16{67, 68}, [2]uint16{547, 546})
	}
	var out []irRule
	for _, p := range pairs {
		out = append(out, irRule{frags: fUDPPorts(p[0], p[1]), verdict: accept()})
	}
	return out
}

func ndRule() irRule {
	return irRule{frags: []frag{fL4proto(58), fICMPv6Types(133, 137)}, verdict: accept()}
}

func fixedChains(f tfam, o buildOpts) []*chainSpec {
	var cs []*chainSpec
	// Neighbour discovery goes between the two fast-path rules: conntrack
	// classifies NS/NA as invalid, and IPv6 must keep resolving neighbours.
	fast := []irRule{
		{frags: []frag{ctEstRel}, verdict: accept()},
		ndRule(),
		{frags: []frag{ctInvalid}, counter: true, verdict: drop()},
	}
	// dispatch is what follows the always-allowed traffic in a base chain.
	var fwdDispatch, inDispatch []irRule
	if o.twoStage {
		fwdDispatch = []irRule{
			{frags: []frag{fSecmarkIs(true)}, verdict: jump(chainDispFwd)},
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainBusyFwd)},
		}
		inDispatch = []irRule{
			{frags: []frag{fSecmarkIs(true)}, verdict: jump(chainDispIn)},
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainBusyIn)},
		}
	} else {
		etherSrc := []frag{fVmapEther(true, setFromDev)}
		if f == famInet {
			etherSrc = append([]frag{fIIFEther()}, etherSrc...)
			fwdDispatch = []irRule{
				{frags: etherSrc},
				{frags: []frag{fNfproto(f, 4), fVmapAddr(4, false, setToDev4)}},
				{frags: []frag{fNfproto(f, 6), fVmapAddr(6, false, setToDev6)}}}
			inDispatch = []irRule{{frags: etherSrc}}
		} else {
			fwdDispatch = []irRule{{frags: etherSrc}, {frags: []frag{fVmapEther(false, setToDev)}}}
		}
	}
	// Replies of MUD devices pass the source guard before the established
	// fast path: otherwise a device could answer connections made to an
	// address it does not hold (the to-device maps do not know it, so the
	// inbound packet is nobody's, and the device's replies are
	// "established"). The original direction needs no check after the
	// first packet, which dispatch guards: a flow's source never changes.
	guardFirst := irRule{frags: []frag{fCtReply(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev)}, verdict: jump(chainGuard)}
	if f == famInet {
		guardFirst.frags = []frag{fCtReply(), fIIFEther(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev)}
		fast = append([]irRule{guardFirst}, fast...)
	}
	if f == famInet {
		fwd := append(append([]irRule{}, fast...), dhcpRules(false)...)
		fwd = append(fwd, fwdDispatch...)
		cs = append(cs, &chainSpec{id: chainID{f, chainForward},
			hook:  &hookSpec{*nftables.ChainHookForward, o.prio, fmt.Sprintf("type filter hook forward priority %d; policy accept;", o.prio)},
			rules: fwd})
		in := append(append([]irRule{}, fast...), dhcpRules(true)...)
		// A quarantined or blocked device asks the gateway for DNS and
		// nothing else.
		in = append(in, irRule{frags: []frag{fIIFEther(), fInMap(loadEther(true, reg1), "ether saddr", setCaged)}, verdict: jump(chainCageIn)})
		// RFC 8520 App. A: the gateway's own DNS and NTP stay reachable.
		in = append(in,
			irRule{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 53, last: 53})}, verdict: accept()},
			irRule{frags: []frag{fL4proto(6), fPort(6, true, portRange{first: 53, last: 53})}, verdict: accept()},
			irRule{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 123, last: 123})}, verdict: accept()})
		in = append(in, inDispatch...)
		cs = append(cs, &chainSpec{id: chainID{f, chainInput},
			hook:  &hookSpec{*nftables.ChainHookInput, o.prio, fmt.Sprintf("type filter hook input priority %d; policy accept;", o.prio)},
			rules: in})
	} else {
		var fwd []irRule
		if o.bridgeCT {
			fwd = append(append(fwd, guardFirst), fast...)
		}
		fwd = append(fwd, irRule{frags: []frag{fNotIP()}, verdict: accept()})
		if !o.bridgeCT && (o.bridgeNF.toInet(0) || o.bridgeNF.toInet(1)) {
			fwd = append(fwd, irRule{verdict: jump(chainToInet)})
			cs = append(cs, toInetChain(o))
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
			to := fInMap(loadEther(false, reg1), "ether daddr", setToDev)
			fwd = append(fwd,
				irRule{frags: []frag{from}, verdict: jump(chainGuard)},
				irRule{frags: []frag{from}, verdict: jump(chainFlowFast)},
				irRule{frags: []frag{notFrom, to}, verdict: jump(chainFlowFast)})
			fwd = append(fwd, fwdDispatch...)
			fwd = append(fwd,
				irRule{frags: []frag{from}, verdict: jump(chainFlowRecord)},
				irRule{frags: []frag{notFrom, to}, verdict: jump(chainFlowRecord)})
		} else {
			fwd = append(fwd, fwdDispatch...)
		}
		if !o.bridgeCT {
			cs = append(cs, flowChains(o)...)
		}
		cs = append(cs, &chainSpec{id: chainID{f, chainForward},
			hook:  &hookSpec{*nftables.ChainHookForward, o.bridgePrio, fmt.Sprintf("type filter hook forward priority %d; policy accept;", o.bridgePrio)},
			rules: fwd})
	}
	if o.twoStage {
		cs = append(cs, dispatchChains(f, !o.bridgeCT)...)
		cs = append(cs, aclChains(f, o)...)
	}
	// The IP source guard: a MUD device may only send from the addresses
	// bound to its MAC (plus IPv6 link-local, which ND needs).
	var guard []irRule
	for _, v := range []int{4, 6} {
		set := setGuard4
		if v == 6 {
			set = setGuard6
		}
		fr := []frag{fNfproto(f, v)}
		if f == famInet {
			fr = append(fr, fIIFEther())
		}
		guard = append(guard, irRule{frags: append(fr, fGuard(v, set)), verdict: ret()})
	}
	guard = append(guard, irRule{frags: []frag{fNfproto(f, 6), fPrefix(true, netip.MustParsePrefix("fe80::/10"))}, verdict: ret()})
	// A DHCPv4 client has no bound address yet (DHCPv6 uses link-local);
	// neighbour discovery comes from addresses not yet learned (and DAD
	// from ::), and the gateway learns SLAAC addresses from it.
	nd := ndRule()
	nd.frags = append([]frag{fNfproto(f, 6)}, nd.frags...)
	nd.verdict = ret()
	guard = append(guard,
		irRule{frags: append([]frag{fNfproto(f, 4)}, fUDPPorts(68, 67)...), verdict: ret()},
		nd)
	guard = append(guard, logRule("guard", o)...)
	guard = append(guard, irRule{counter: true, verdict: drop(), comment: "source-guard"})
	cs = append(cs, &chainSpec{id: chainID{f, chainGuard}, rules: guard})

	// The default deny's rate-limited log is shared: each policy chain ends
	// in one counted goto to it (its counter is the policy's default-deny).
	if o.log {
		for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			name, dir := chainDenyOut, "out"
			if d == policy.ToDevice {
				name, dir = chainDenyIn, "in"
			}
			cs = append(cs, &chainSpec{id: chainID{f, name}, rules: append(logRule("deny "+dir, o), irRule{verdict: drop()})})
		}
	}

	// Quarantine and block: DHCP (the base chains) and, in the input hook,
	// DNS to the gateway itself (cage_in); nothing through the gateway,
	// nothing to another device. They differ in why the device is there.
	if f == famInet {
		cage := []irRule{{verdict: jump(chainGuard)},
			{frags: []frag{fL4proto(17), fPort(17, true, portRange{first: 53, last: 53})}, counter: true, verdict: accept(), comment: "quarantine/gateway-dns"},
			{frags: []frag{fL4proto(6), fPort(6, true, portRange{first: 53, last: 53})}, counter: true, verdict: accept(), comment: "quarantine/gateway-dns"},
		}
		cs = append(cs, &chainSpec{id: chainID{f, chainCageIn}, rules: append(cage, epilogue(policy.FromDevice, o)...)})
	}
	cs = append(cs,
		&chainSpec{id: chainID{f, chainQuarOut}, rules: append(prologue(f, policy.FromDevice, o), epilogue(policy.FromDevice, o)...)},
		&chainSpec{id: chainID{f, chainQuarIn}, rules: epilogue(policy.ToDevice, o)},
		&chainSpec{id: chainID{f, chainBlockOut}, rules: append(prologue(f, policy.FromDevice, o), epilogue(policy.FromDevice, o)...)},
		&chainSpec{id: chainID{f, chainBlockIn}, rules: epilogue(policy.ToDevice, o)},
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
func dispatchChains(f tfam, flows bool) []*chainSpec {
	srcMAC := func() []frag {
		if f == famInet {
			return []frag{fIIFEther()}
		}
		return nil
	}
	fromDev := irRule{frags: append(srcMAC(), fSecmarkFromMap(loadEther(true, reg1), "ether saddr", setFromDev)), verdict: jump(chainGuard)}
	outVmap := irRule{frags: []frag{fSecmarkVmap(setOutVmap)}}
	reset := irRule{frags: []frag{fSetSecmark0()}}
	busy := func(name string, members ...[]frag) *chainSpec {
		var rules []irRule
		for _, m := range members {
			rules = append(rules, irRule{frags: m, counter: true, verdict: drop(), comment: carrierBusyTag})
		}
		return &chainSpec{id: chainID{f, name}, rules: rules}
	}
	fromMember := append(srcMAC(), fInMap(loadEther(true, reg1), "ether saddr", setFromDev))
	if f == famInet {
		to4 := irRule{frags: []frag{fNfproto(f, 4), fSecmarkFromMap(loadAddr(4, false, reg1), "ip daddr", setToDev4), fSecmarkVmap(setInVmap)}}
		to6 := irRule{frags: []frag{fNfproto(f, 6), fSecmarkFromMap(loadAddr(6, false, reg1), "ip6 daddr", setToDev6), fSecmarkVmap(setInVmap)}}
		return []*chainSpec{
			{id: chainID{f, chainDispFwd}, rules: []irRule{fromDev, outVmap, to4, to6, reset}},
			{id: chainID{f, chainDispIn}, rules: []irRule{fromDev, outVmap, reset}},
			busy(chainBusyFwd, fromMember,
				[]frag{fNfproto(f, 4), fInMap(loadAddr(4, false, reg1), "ip daddr", setToDev4)},
				[]frag{fNfproto(f, 6), fInMap(loadAddr(6, false, reg1), "ip6 daddr", setToDev6)}),
			busy(chainBusyIn, fromMember),
		}
	}
	to := irRule{frags: []frag{fSecmarkFromMap(loadEther(false, reg1), "ether daddr", setToDev), fSecmarkVmap(setInVmap)}}
	disp := []irRule{fromDev, outVmap, to, reset}
	if flows {
		disp = []irRule{fromDev,
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainFlowFast)},
			{frags: []frag{fSecmarkIs(true), fInMap(loadEther(false, reg1), "ether daddr", setToDev)}, verdict: jump(chainFlowFast)},
			outVmap, to,
			// the secmark is the sender's or the receiver's id: one of
			// them is a MUD device
			{frags: []frag{fSecmarkIs(false)}, verdict: jump(chainFlowRecord)},
			reset}
	}
	return []*chainSpec{
		{id: chainID{f, chainDispFwd}, rules: disp},
		busy(chainBusyFwd, fromMember, []frag{fInMap(loadEther(false, reg1), "ether daddr", setToDev)}),
	}
}

// prologue: in direct mode, a policy's from-device chain starts with the
// source guard (two-stage dispatch runs it before the policy, as does the
// bridge table's base chain in reflexive mode).
func prologue(f tfam, d policy.Direction, o buildOpts) []irRule {
	if d == policy.FromDevice && !o.twoStage && (f == famInet || o.bridgeCT) {
		return []irRule{{verdict: jump(chainGuard)}}
	}
	return nil
}

func logRule(what string, o buildOpts) []irRule {
	if !o.log {
		return nil
	}
	prefix := "mud " + what + ": "
	if len(prefix) > 120 {
		prefix = prefix[:120]
	}
	return []irRule{{frags: fLogLimited(o.logGroup, prefix)}}
}

// epilogue is the default deny (RFC 8520 §5): counted per
// chain, then the shared rate-limited NFLOG and drop.
func epilogue(d policy.Direction, o buildOpts) []irRule {
	if !o.log {
		return []irRule{{counter: true, verdict: drop(), comment: defaultDenyTag}}
	}
	tail := chainDenyOut
	if d == policy.ToDevice {
		tail = chainDenyIn
	}
	return []irRule{{counter: true, verdict: gotoChain(tail), comment: defaultDenyTag}}
}

var errSkip = errors.New("rule cannot match this family")

// policyRules renders an ordered ACE list. Accept becomes `return`, so that
// the packet goes back to the base chain where the other device's to-device
// policy (lateral traffic) is still checked; drop is final.
func policyRules(f tfam, rules []policy.Rule, d policy.Direction, o buildOpts) ([]irRule, error) {
	var out []irRule
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
func aceRule(f tfam, r policy.Rule, d policy.Direction, v int, o buildOpts) ([]irRule, error) {
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
		if f == famInet || o.bridgeCT {
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
	var out []irRule
	for _, pm := range peerMatch {
		frags := append(append(append([]frag{}, fr...), pm...), tail...)
		out = append(out, irRule{frags: frags, counter: true, verdict: vd, comment: r.Name})
	}
	return out, nil
}
