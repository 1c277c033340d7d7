package plan

import (
	"cmp"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/openmud/mud/policy"
	"golang.org/x/sys/unix"
)

// Allow-only policies as elements. A MUD file is a list of accepts and the
// default deny: order does not matter, so each ACE that is a (peer,
// protocol, remote port) triple becomes elements of acl_out / acl_in
// instead of a rule, and the generic chains acl_out / acl_in look the packet
// up with its dispatch id (meta secmark). A policy then costs about one
// element per ACE and table instead of ~two rules; 10,000 distinct policies
// fit where their rules did not (BENCHMARKS.md). ACEs that are not such a
// triple (ICMP types, header fields, local ports, port ranges, literal
// prefixes, any peer) stay rules, in a short pol_<id>_* chain that ends in the acl chain.
// Policies with a drop ACE keep the ordered chain of rules.

// aclRestricted marks, in an element's family field, an ACE that may only
// match packets of existing connections where bridged traffic is not
// tracked (direction-initiated, stateless form: no bare SYN).
const aclRestricted = 0x80

// aclForm is one element-rendered ACE.
type aclForm struct {
	peer  string
	fam   byte // 0: both; unix.NFPROTO_IPV4/IPV6; | aclRestricted
	proto uint8
	port  uint16 // remote port; 0: any
	name  string // the ACE (counters)
}

// policyForms is how an allow-only policy renders: forms per table and
// direction (0 from-device, 1 to-device), and the ACEs that stay rules.
type policyForms struct {
	forms    [2][2][]aclForm
	residual [2][]policy.Rule
	pid      uint32 // dispatch id (set when first bound; 0: not yet)
	// shared are its App. A defaults (below), elements of the shared id
	// of sharedKey, not of pid; sharedKey is "" when it has none.
	shared    [2][2][]aclForm
	sharedKey string
}

// App. A defaults shared. Nearly every policy ends in the same RFC 8520
// App. A accepts (DNS and NTP to the controllers), which as elements of
// its own would be up to 8 per policy and table (per IP version and
// direction), a fifth of all elements at 10,000 policies. A policy's Default ACEs that are port triples are
// instead elements of one shared id, the id of the key naming them
// (sharedKey: equal defaults share it); the map app_a gives each policy's
// dispatch id that shared id, and the acl chains look the packet up under
// it after the policy's own elements. Not with per-ACE counters: an
// element's counter would then count for every policy using it.
const sharedPrefix = "\x00app-a\x00"

// dispatchName is the name an owner of binds (a policy, or a shared key)
// has its dispatch id under: a policy's from-device chain, or app_a_<digest>,
// which no chain is named.
func dispatchName(owner string) string {
	if isShared(owner) {
		return "app_a_" + owner[len(sharedPrefix):]
	}
	return polChain(owner, policy.FromDevice)
}

// isShared tells whether an owner id of binds is a shared key, not a
// policy.
func isShared(id string) bool { return strings.HasPrefix(id, sharedPrefix) }

// shareable tells whether an ACE's form goes to the shared defaults.
func shareable(r policy.Rule, fm aclForm, o buildOpts) bool {
	return r.Default && !o.ruleCounters && fm.port != 0 && fm.fam&aclRestricted == 0
}

// sharedOf is the owner of a shared key's elements, as bindPieces sees it.
func (pf *policyForms) sharedOf() *policyForms {
	return &policyForms{forms: pf.shared}
}

// keyShared sorts the shared forms (without ACE names: policies name
// their defaults as they like) and names them: a digest of their text,
// collision-resistant (two sets of defaults under one key would grant one
// policy the other's), short to hash in the planner's maps. known caches
// keys by text (nil: none): most policies have the same defaults.
func (pf *policyForms) keyShared(known map[string]string) {
	var buf [1024]byte // the text of the usual defaults fits
	b := buf[:0]
	for f := range pf.shared {
		for d := range pf.shared[f] {
			l := pf.shared[f][d]
			if len(l) == 0 {
				continue
			}
			for i := range l {
				l[i].name = ""
			}
			slices.SortFunc(l, func(a, c aclForm) int {
				return cmp.Or(strings.Compare(a.peer, c.peer), cmp.Compare(a.fam, c.fam), cmp.Compare(a.proto, c.proto), cmp.Compare(a.port, c.port))
			})
			l = slices.Compact(l)
			pf.shared[f][d] = l
			b = append(b, byte('0'+f), byte('0'+d))
			for _, fm := range l {
				b = append(b, ';')
				b = append(b, fm.peer...)
				b = append(b, ',', fm.fam, fm.proto, byte(fm.port>>8), byte(fm.port))
			}
			b = append(b, '|')
		}
	}
	if len(b) == 0 {
		return
	}
	if k, ok := known[string(b)]; ok {
		pf.sharedKey = k
		return
	}
	sum := sha256.Sum256(b)
	pf.sharedKey = sharedPrefix + hex.EncodeToString(sum[:16])
	if known != nil {
		known[string(b)] = pf.sharedKey
	}
}

// peers lists the peers the policy's elements name.
func (pf *policyForms) peers() []string {
	if pf == nil {
		return nil
	}
	var out []string
	for f := range pf.forms {
		for d := range pf.forms[f] {
			for _, fm := range pf.forms[f][d] {
				out = append(out, fm.peer)
			}
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// elementPolicy tells whether a policy renders as elements: two-stage
// dispatch (the id must be in the packet) and accepts only.
func elementPolicy(p *policy.Policy, o buildOpts) bool {
	if !o.twoStage {
		return false
	}
	for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		for _, r := range p.Rules(d) {
			if r.Verdict != policy.Accept {
				return false
			}
		}
	}
	return true
}

func dirIndex(d policy.Direction) int {
	if d == policy.ToDevice {
		return 1
	}
	return 0
}

// restricts tells whether direction-initiated limits this direction of r
// to packets of existing connections.
func restricts(r policy.Rule, d policy.Direction) bool {
	return r.Protocol == policy.ProtoTCP && ((d == policy.FromDevice && r.Initiated == policy.InitiatedToDevice) ||
		(d == policy.ToDevice && r.Initiated == policy.InitiatedFromDevice))
}

// aclForms renders an allow-only policy (nil for any other).
func aclForms(p *policy.Policy, o buildOpts) *policyForms {
	if !elementPolicy(p, o) {
		return nil
	}
	pf := &policyForms{}
	var keys peerKeyCache
	// The forms are collected first, then copied into one array the
	// lists share: 10,000 policies are rendered in a rebuild.
	type placed struct {
		shared bool
		f      Family
		di     int
		fm     aclForm
	}
	var buf [32]placed
	all := buf[:0]
	for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		di := dirIndex(d)
		for _, r := range p.Rules(d) {
			fm, ok := aceForm(r, d, &keys)
			if !ok {
				pf.residual[di] = append(pf.residual[di], r)
				continue
			}
			for _, f := range Families {
				if restricts(r, d) {
					if f == Inet || o.bridgeCT {
						// Only packets of existing connections: the fast
						// path has accepted them before any policy.
						continue
					}
					rf := fm
					rf.fam |= aclRestricted
					all = append(all, placed{false, f, di, rf})
					continue
				}
				all = append(all, placed{shareable(r, fm, o), f, di, fm})
			}
		}
	}
	var n [2][2][2]int // shared, table, direction
	for _, x := range all {
		n[b2i(x.shared)][x.f][x.di]++
	}
	forms := make([]aclForm, len(all))
	off := 0
	for sh := range n {
		for f := range n[sh] {
			for di, c := range n[sh][f] {
				if c == 0 {
					continue
				}
				l := forms[off : off : off+c] // full: an append elsewhere copies
				if sh == 1 {
					pf.shared[f][di] = l
				} else {
					pf.forms[f][di] = l
				}
				off += c
			}
		}
	}
	for _, x := range all {
		if x.shared {
			pf.shared[x.f][x.di] = append(pf.shared[x.f][x.di], x.fm)
		} else {
			pf.forms[x.f][x.di] = append(pf.forms[x.f][x.di], x.fm)
		}
	}
	pf.keyShared(o.sharedKeys)
	return pf
}

func b2i(b bool) int {
	if b {
		return 1
	}
	return 0
}

// aceForm is the element form of an ACE, if it has one.
func aceForm(r policy.Rule, d policy.Direction, keys *peerKeyCache) (aclForm, bool) {
	if r.Verdict != policy.Accept || r.ICMP != nil || len(r.Fields) > 0 || r.Peer.Kind == policy.AnyPeer || r.Peer.Kind == policy.Prefix {
		return aclForm{}, false
	}
	local, remote := r.SrcPort, r.DstPort
	if d == policy.ToDevice {
		local, remote = r.DstPort, r.SrcPort
	}
	if local != nil {
		return aclForm{}, false
	}
	k, _ := keys.key(r.Peer)
	fm := aclForm{peer: k, proto: r.Protocol, name: r.Name}
	if remote != nil {
		if remote.First != remote.Last || remote.Negate || remote.First == 0 ||
			(r.Protocol != policy.ProtoTCP && r.Protocol != policy.ProtoUDP && r.Protocol != 132) {
			return aclForm{}, false
		}
		fm.port = remote.First
	}
	switch r.Family {
	case policy.IPv4:
		fm.fam = unix.NFPROTO_IPV4
	case policy.IPv6:
		fm.fam = unix.NFPROTO_IPV6
	}
	switch r.Protocol {
	case policy.ProtoICMP:
		if fm.fam == unix.NFPROTO_IPV6 {
			return aclForm{}, false
		}
		fm.fam = unix.NFPROTO_IPV4
	case policy.ProtoICMPv6:
		if fm.fam == unix.NFPROTO_IPV4 {
			return aclForm{}, false
		}
		fm.fam = unix.NFPROTO_IPV6
	}
	return fm, true
}

// aclKey is an element of acl_out / acl_in.
func aclKey(pid, gid uint32, fm aclForm) ACLKey {
	return ACLKey{Dispatch: pid, Group: gid, Family: fm.fam, Proto: fm.proto, Port: fm.port}
}

// Lookup shapes of the acl chains: the packet's port, any port of its
// protocol, any protocol.
const (
	shapePort = iota
	shapeProto
	shapeAny
)

var zero4 = make([]byte, 4)

// fAddrGroup looks the remote address's group up into register dst.
func fAddrGroup(v int, remoteIsSrc, net bool, dst uint32) ([]expr.Any, string) {
	set := setAddr4
	switch {
	case net && v == 6:
		set = setNet6
	case net:
		set = setNet4
	case v == 6:
		set = setAddr6
	}
	scratch := uint32(reg32 + 5)
	if net {
		// net maps are keyed 0 . address (a concatenation: the interval
		// type that takes a range end per element)
		return []expr.Any{
			&expr.Immediate{Register: scratch, Data: zero4},
			loadAddr(v, remoteIsSrc, scratch+1),
			&expr.Lookup{SourceRegister: scratch, DestRegister: dst, IsDestRegSet: true, SetName: set},
		}, fmt.Sprintf("0 . %s map @%s", addrText(v, remoteIsSrc), set)
	}
	return []expr.Any{
		loadAddr(v, remoteIsSrc, scratch),
		&expr.Lookup{SourceRegister: scratch, DestRegister: dst, IsDestRegSet: true, SetName: set},
	}, fmt.Sprintf("%s map @%s", addrText(v, remoteIsSrc), set)
}

// fGroupIntoConcat puts the remote address's group into register dst for a
// concatenation. nft (1.0.6) aborts listing a rule whose concatenation
// holds a map lookup's result, so the result passes through a packet field
// nft can read back: saved, set to the group, read into dst and restored
// within the rule, with nothing between that can end it (a failed lookup
// ends the rule before the field is touched), so no one ever sees the
// field changed. The field is meta secmark with two-stage dispatch, meta
// mark on kernels without secmark.
func fGroupIntoConcat(v int, remoteIsSrc, net, secmark bool, dst uint32) ([]expr.Any, string) {
	const save, tmp = reg32 + 14, reg32 + 15
	key := expr.MetaKeyMARK
	if secmark {
		key = expr.MetaKeySECMARK
	}
	ag, text := fAddrGroup(v, remoteIsSrc, net, tmp)
	ex := []expr.Any{&expr.Meta{Key: key, Register: save}}
	ex = append(ex, ag...)
	ex = append(ex,
		&expr.Meta{Key: key, SourceRegister: true, Register: tmp},
		&expr.Meta{Key: key, Register: dst},
		&expr.Meta{Key: key, SourceRegister: true, Register: save})
	return ex, "(" + text + ")"
}

// fACL looks (secmark . group . family . protocol . port) up in an acl set.
func fACL(v int, remoteIsSrc, net bool, fam byte, shape int, set string) frag {
	ex := []expr.Any{&expr.Meta{Key: expr.MetaKeySECMARK, Register: reg32}}
	ag, agText := fGroupIntoConcat(v, remoteIsSrc, net, true, reg32+1)
	ex = append(ex, ag...)
	ex = append(ex, &expr.Immediate{Register: reg32 + 2, Data: []byte{fam, 0, 0, 0}})
	port := "th dport"
	off := uint32(2)
	if remoteIsSrc {
		port, off = "th sport", 0
	}
	proto := "meta l4proto"
	switch shape {
	case shapePort:
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + 3},
			&expr.Payload{DestRegister: reg32 + 4, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2})
	case shapeProto:
		port = "0"
		ex = append(ex, &expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + 3}, &expr.Immediate{Register: reg32 + 4, Data: zero4})
	default:
		proto, port = "0", "0"
		ex = append(ex, &expr.Immediate{Register: reg32 + 3, Data: zero4}, &expr.Immediate{Register: reg32 + 4, Data: zero4})
	}
	ex = append(ex, &expr.Lookup{SourceRegister: reg32, SetName: set})
	return frag{fmt.Sprintf("meta secmark . %s . 0x%02x . %s . %s @%s", agText, fam, proto, port, set), ex}
}

// fACLShared looks (shared id . group . family . protocol . port) up in an
// acl set, the shared id being the one app_a maps the packet's secmark to.
// As in fGroupIntoConcat, the map's result passes through the secmark
// within the rule (nft cannot list a concatenation holding a lookup's
// result); a policy without shared defaults ends the rule at the lookup,
// before the secmark is touched.
func fACLShared(v int, remoteIsSrc, net bool, fam byte, set string) frag {
	const orig, shared = reg32 + 13, reg32 + 12
	ex := []expr.Any{
		&expr.Meta{Key: expr.MetaKeySECMARK, Register: orig},
		&expr.Lookup{SourceRegister: orig, DestRegister: shared, IsDestRegSet: true, SetName: setAppA},
		&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: shared},
		&expr.Meta{Key: expr.MetaKeySECMARK, Register: reg32},
		&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: orig},
	}
	ag, agText := fGroupIntoConcat(v, remoteIsSrc, net, true, reg32+1)
	ex = append(ex, ag...)
	port, off := "th dport", uint32(2)
	if remoteIsSrc {
		port, off = "th sport", 0
	}
	ex = append(ex, &expr.Immediate{Register: reg32 + 2, Data: []byte{fam, 0, 0, 0}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + 3},
		&expr.Payload{DestRegister: reg32 + 4, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2},
		&expr.Lookup{SourceRegister: reg32, SetName: set})
	return frag{fmt.Sprintf("(meta secmark map @%s) . %s . 0x%02x . meta l4proto . %s @%s", setAppA, agText, fam, port, set), ex}
}

// eachLookup calls fn for each IP version, kind of address map (single
// addresses, class segments) and element family (the version's, any) the
// acl chains look up.
func eachLookup(fn func(v int, net bool, fam byte)) {
	for _, v := range []int{4, 6} {
		nfp := byte(unix.NFPROTO_IPV4)
		if v == 6 {
			nfp = unix.NFPROTO_IPV6
		}
		for _, net := range []bool{false, true} {
			for _, fam := range []byte{nfp, 0} {
				fn(v, net, fam)
			}
		}
	}
}

// aclChains are the generic chains of the element-rendered policies.
func aclChains(f Family, o buildOpts) []*Chain {
	var cs []*Chain
	for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		name, set, deny := chainACLOut, setACLOut, setDenyOut
		if d == policy.ToDevice {
			name, set, deny = chainACLIn, setACLIn, setDenyIn
		}
		remoteIsSrc := d == policy.ToDevice
		var rules []Rule
		eachLookup(func(v int, net bool, fam byte) {
			for _, shape := range []int{shapePort, shapeProto, shapeAny} {
				rules = append(rules, Rule{frags: []frag{fNfproto(f, v), fACL(v, remoteIsSrc, net, fam, shape, set)}, verdict: ret()})
			}
			if f == Bridge && !o.bridgeCT {
				for _, shape := range []int{shapePort, shapeProto} {
					rules = append(rules, Rule{frags: []frag{fNfproto(f, v), fL4proto(policy.ProtoTCP), fNotBareSYN(),
						fACL(v, remoteIsSrc, net, fam|aclRestricted, shape, set)}, verdict: ret()})
				}
			}
		})
		// The policy's shared App. A defaults (remote port triples).
		if !o.ruleCounters {
			eachLookup(func(v int, net bool, fam byte) {
				rules = append(rules, Rule{frags: []frag{fNfproto(f, v), fACLShared(v, remoteIsSrc, net, fam, set)}, verdict: ret()})
			})
		}
		// The default deny, counted per policy by its element in denyc_*,
		// which the first denied packet adds; if the set is full, the
		// next rule denies.
		tail := epilogue(d, o)[0]
		rules = append(rules, Rule{frags: []frag{fCountSecmark(deny)}, verdict: tail.verdict})
		rules = append(rules, tail)
		cs = append(cs, &Chain{ID: ChainRef{f, name}, Rules: rules})
		// The entry: a policy with ACEs in rule form goes to its chain
		// first, which ends in the acl chain (goto: an accept there returns
		// to the dispatch).
		entry, res := chainAllowOut, setResOut
		if d == policy.ToDevice {
			entry, res = chainAllowIn, setResIn
		}
		cs = append(cs, &Chain{ID: ChainRef{f, entry}, Rules: []Rule{
			{frags: []frag{fSecmarkVmap(res)}}, {verdict: gotoChain(name)}}})
	}
	return cs
}

// denySize bounds denyc_out / denyc_in: the policies whose default deny
// is counted (a policy beyond it is denied, not counted).
const denySize = 65536

// denySetDef is a per-policy default-deny counter set. It is dynamic: the
// packet path adds a policy's element when the policy first denies, so no
// transaction carries an element per policy.
func denySetDef(name string) Set {
	return Set{Name: name, Key: KeyMark, Counter: true, Dynamic: true, Size: denySize,
		decl: fmt.Sprintf("type mark; size %d; flags dynamic; counter", denySize)}
}

// fCountSecmark counts the packet on the element of set keyed by its
// secmark (the dispatch id), adding the element if it is new.
func fCountSecmark(set string) frag {
	return frag{fmt.Sprintf("update @%s { meta secmark }", set), []expr.Any{
		&expr.Meta{Key: expr.MetaKeySECMARK, Register: reg1},
		&expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: dynsetUpdate},
	}}
}

// fSetSecmark sets the secmark to a dispatch id.
func fSetSecmark(id uint32) frag {
	return frag{fmt.Sprintf("meta secmark set 0x%08x", id), []expr.Any{
		&expr.Immediate{Register: reg1, Data: markBytes(id)},
		&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: reg1},
	}}
}

// Peer matches of rules: the remote address's group is the peer's own
// (fPeerOnly), or a shared group listing the peer (fPeerShared).
func fPeerOnly(v int, remoteIsSrc bool, id uint32, key string) frag {
	ex, text := fAddrGroup(v, remoteIsSrc, !exactPeer(key), reg1)
	ex = append(ex, cmpEq(reg1, markBytes(id)))
	return frag{fmt.Sprintf("%s 0x%08x /* %s */", text, id, key), ex}
}

func fPeerShared(v int, remoteIsSrc, secmark bool, id uint32, key string) frag {
	ex := []expr.Any{&expr.Immediate{Register: reg32, Data: markBytes(id)}}
	var ag []expr.Any
	ag, text := fGroupIntoConcat(v, remoteIsSrc, !exactPeer(key), secmark, reg32+1)
	ex = append(ag, ex...)
	ex = append(ex, &expr.Lookup{SourceRegister: reg32, SetName: setPeerGrp})
	return frag{fmt.Sprintf("0x%08x . %s @%s /* %s */", id, text, setPeerGrp, key), ex}
}

// inTable tells whether a peer address goes into a table's address maps.
func (o buildOpts) inTable(f Family, a netip.Addr, info addrInfo) bool {
	if f != Bridge || len(o.bridgeLAN) == 0 {
		return true
	}
	for _, pe := range info {
		if !dnsPeer(pe.k) {
			return true // devices of a manufacturer or model are on the LAN
		}
	}
	return o.inTableIf(f, a, true)
}

// inTableIf is inTable for an address only DNS names hold (dnsOnly) or
// not.
func (o buildOpts) inTableIf(f Family, a netip.Addr, dnsOnly bool) bool {
	if f != Bridge || len(o.bridgeLAN) == 0 || !dnsOnly {
		return true
	}
	for _, p := range o.bridgeLAN {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

func dnsPeer(key string) bool { return strings.HasPrefix(key, policy.DNSName.String()+":") }
