package plan

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"strings"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The intermediate representation: every match is a fragment that carries
// both its netlink expressions and its nft text, so what Render prints and
// what the kernel receives come from the same code.

var nativeEndian = binary.NativeEndian

// Registers: reg 1 is the 16-byte register NFT_REG_1; concatenations use the
// 32-bit registers starting at NFT_REG32_00 (8), as nft does.
const (
	reg1   = 1
	reg32  = 8
	regVer = 0 // the verdict register, destination of a vmap lookup
)

type frag struct {
	text  string
	exprs []expr.Any
}

// Rule is one rule: matches ANDed, an optional counter, a verdict, a
// comment. Its expressions are github.com/google/nftables/expr values
// (data, which the wire layer marshals); its text is what Render and plans
// print, and equal texts mean equal rules.
type Rule struct {
	frags   []frag
	counter bool
	verdict Verdict // Kind VerdictNone: none (e.g. a log rule that falls through)
	comment string  // stored as the rule's comment; counters are read back by it
}

// Exprs are the rule's expressions, in order.
func (r Rule) Exprs() []expr.Any {
	var out []expr.Any
	for _, f := range r.frags {
		out = append(out, f.exprs...)
	}
	if r.counter {
		out = append(out, &expr.Counter{})
	}
	if r.verdict.Kind != VerdictNone {
		out = append(out, exprVerdict(r.verdict))
	}
	return out
}

// Comment is the rule's comment (the ACE's name for counted rules).
func (r Rule) Comment() string { return r.comment }

// Verdict is the rule's verdict.
func (r Rule) Verdict() Verdict { return r.verdict }

// Text is the rule in nft syntax.
func (r Rule) Text() string {
	var parts []string
	for _, f := range r.frags {
		if f.text != "" {
			parts = append(parts, f.text)
		}
	}
	if r.counter {
		parts = append(parts, "counter")
	}
	if r.verdict.Kind != VerdictNone {
		parts = append(parts, r.verdict.String())
	}
	if r.comment != "" {
		parts = append(parts, fmt.Sprintf("comment %q", r.comment))
	}
	return strings.Join(parts, " ")
}

// exprVerdict is a verdict as an expression.
func exprVerdict(v Verdict) *expr.Verdict {
	var k expr.VerdictKind
	switch v.Kind {
	case VerdictAccept:
		k = expr.VerdictAccept
	case VerdictDrop:
		k = expr.VerdictDrop
	case VerdictReturn:
		k = expr.VerdictReturn
	case VerdictJump:
		k = expr.VerdictJump
	case VerdictGoto:
		k = expr.VerdictGoto
	}
	return &expr.Verdict{Kind: k, Chain: v.Chain}
}

func accept() Verdict            { return Verdict{Kind: VerdictAccept} }
func drop() Verdict              { return Verdict{Kind: VerdictDrop} }
func ret() Verdict               { return Verdict{Kind: VerdictReturn} }
func jump(c string) Verdict      { return Verdict{Kind: VerdictJump, Chain: c} }
func gotoChain(c string) Verdict { return Verdict{Kind: VerdictGoto, Chain: c} }

// markBytes is a 32-bit id as meta mark, meta secmark and a mark map's
// value hold it: host byte order.
func markBytes(id uint32) []byte { return nativeEndian.AppendUint32(nil, id) }

func cmpEq(reg uint32, data []byte) *expr.Cmp {
	return &expr.Cmp{Op: expr.CmpOpEq, Register: reg, Data: data}
}

// ipVer is 4 or 6.

// fNfproto restricts to one IP version: `meta nfproto` in inet, `meta
// protocol` (the ethertype) in bridge, as nft's implicit dependencies do.
func fNfproto(f Family, v int) frag {
	if f == Bridge {
		et, name := uint16(unix.ETH_P_IP), "ip"
		if v == 6 {
			et, name = unix.ETH_P_IPV6, "ip6"
		}
		return frag{"meta protocol " + name, []expr.Any{
			&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
			cmpEq(reg1, binary.BigEndian.AppendUint16(nil, et)),
		}}
	}
	p, name := byte(unix.NFPROTO_IPV4), "ipv4"
	if v == 6 {
		p, name = unix.NFPROTO_IPV6, "ipv6"
	}
	return frag{"meta nfproto " + name, []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: reg1},
		cmpEq(reg1, []byte{p}),
	}}
}

// fNotIP matches frames that are neither IPv4 nor IPv6 (bridge only).
func fNotIP() frag {
	return frag{"meta protocol != { ip, ip6 }", []expr.Any{
		&expr.Meta{Key: expr.MetaKeyPROTOCOL, Register: reg1},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, unix.ETH_P_IP)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, unix.ETH_P_IPV6)},
	}}
}

var protoNames = map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "ipv6-icmp", 132: "sctp"}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprint(p)
}

func fL4proto(p uint8) frag {
	return frag{"meta l4proto " + protoName(p), []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg1},
		cmpEq(reg1, []byte{p}),
	}}
}

// fPort matches a transport port (offset 0: source, 2: destination).
func fPort(proto uint8, dst bool, pr portRange) frag {
	off, name := uint32(0), "sport"
	if dst {
		off, name = 2, "dport"
	}
	p := protoName(proto)
	if proto != 6 && proto != 17 && proto != 132 {
		p = "th"
	}
	load := &expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: 2}
	neg := ""
	if pr.negate {
		neg = "!= "
	}
	if pr.first == pr.last {
		op := expr.CmpOpEq
		if pr.negate {
			op = expr.CmpOpNeq
		}
		return frag{fmt.Sprintf("%s %s %s%d", p, name, neg, pr.first), []expr.Any{load,
			&expr.Cmp{Op: op, Register: reg1, Data: binary.BigEndian.AppendUint16(nil, pr.first)}}}
	}
	op := expr.CmpOpEq
	if pr.negate {
		op = expr.CmpOpNeq
	}
	return frag{fmt.Sprintf("%s %s %s%d-%d", p, name, neg, pr.first, pr.last), []expr.Any{load,
		&expr.Range{Op: op, Register: reg1,
			FromData: binary.BigEndian.AppendUint16(nil, pr.first),
			ToData:   binary.BigEndian.AppendUint16(nil, pr.last)}}}
}

type portRange struct {
	first, last uint16
	negate      bool
}

// fICMP matches the ICMP/ICMPv6 type and optionally the code.
func fICMP(v6 bool, typ uint8, code *uint8) frag {
	name := "icmp"
	if v6 {
		name = "icmpv6"
	}
	f := frag{fmt.Sprintf("%s type %d", name, typ), []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		cmpEq(reg1, []byte{typ}),
	}}
	if code != nil {
		f.text += fmt.Sprintf(" %s code %d", name, *code)
		f.exprs = append(f.exprs,
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 1, Len: 1},
			cmpEq(reg1, []byte{*code}))
	}
	return f
}

// fICMPTypeRange matches an inclusive range of ICMPv6 types.
func fICMPv6Types(first, last uint8) frag {
	return frag{fmt.Sprintf("icmpv6 type %d-%d", first, last), []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Range{Op: expr.CmpOpEq, Register: reg1, FromData: []byte{first}, ToData: []byte{last}},
	}}
}

// fCtState matches if the conntrack state is one of mask's bits.
func fCtState(mask uint32, text string) frag {
	return frag{"ct state " + text, []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeySTATE},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 4,
			Mask: nativeEndian.AppendUint32(nil, mask), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: make([]byte, 4)},
	}}
}

// fCtReply matches packets in the reply direction of their connection.
func fCtReply() frag {
	return frag{"ct direction reply", []expr.Any{
		&expr.Ct{Register: reg1, Key: expr.CtKeyDIRECTION},
		&expr.Cmp{Op: expr.CmpOpEq, Register: reg1, Data: []byte{1}}, // IP_CT_DIR_REPLY
	}}
}

var (
	ctEstRel  = fCtState(expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED, "established,related")
	ctInvalid = fCtState(expr.CtStateBitINVALID, "invalid")
)

// fNotBareSYN matches TCP segments that are not a connection opening
// (SYN without ACK): the stateless form of direction-initiated.
func fNotBareSYN() frag {
	const syn, ack = 0x02, 0x10
	return frag{"tcp flags & (syn | ack) != syn", []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{syn | ack}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: reg1, Data: []byte{syn}},
	}}
}

// fIIFEther is the implicit guard nft adds before reading the link-layer
// header in inet tables.
func fIIFEther() frag {
	return frag{"meta iiftype ether", []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: reg1},
		cmpEq(reg1, nativeEndian.AppendUint16(nil, unix.ARPHRD_ETHER)),
	}}
}

func loadEther(src bool, reg uint32) *expr.Payload {
	off := uint32(0)
	if src {
		off = 6
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseLLHeader, Offset: off, Len: 6}
}

// loadAddr loads the IPv4/IPv6 source or destination address.
func loadAddr(v int, src bool, reg uint32) *expr.Payload {
	if v == 4 {
		off := uint32(16)
		if src {
			off = 12
		}
		return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 4}
	}
	off := uint32(24)
	if src {
		off = 8
	}
	return &expr.Payload{DestRegister: reg, Base: expr.PayloadBaseNetworkHeader, Offset: off, Len: 16}
}

func addrText(v int, src bool) string {
	s := "ip "
	if v == 6 {
		s = "ip6 "
	}
	if src {
		return s + "saddr"
	}
	return s + "daddr"
}

// fVmapEther dispatches through a verdict map keyed by a MAC (direct mode,
// kernels without secmark: every device is a jump element, and adding one
// makes the kernel re-validate every jump element of the table).
func fVmapEther(src bool, set string) frag {
	t := "ether daddr"
	if src {
		t = "ether saddr"
	}
	return frag{fmt.Sprintf("%s vmap @%s", t, set), []expr.Any{
		loadEther(src, reg1),
		&expr.Lookup{SourceRegister: reg1, DestRegister: regVer, IsDestRegSet: true, SetName: set},
	}}
}

func fVmapAddr(v int, src bool, set string) frag {
	return frag{fmt.Sprintf("%s vmap @%s", addrText(v, src), set), []expr.Any{
		loadAddr(v, src, reg1),
		&expr.Lookup{SourceRegister: reg1, DestRegister: regVer, IsDestRegSet: true, SetName: set},
	}}
}

// fGuard matches if (ether saddr . ip saddr) is in the bound-address set.
func fGuard(v int, set string) frag {
	return frag{fmt.Sprintf("ether saddr . %s @%s", addrText(v, true), set), []expr.Any{
		loadEther(true, reg32),
		loadAddr(v, true, reg32+2), // the MAC takes 8 bytes (padded): two 32-bit registers
		&expr.Lookup{SourceRegister: reg32, SetName: set},
	}}
}

// fPrefix matches a literal prefix inline (no set needed).
func fPrefix(remoteIsSrc bool, p netip.Prefix) frag {
	v := 4
	if p.Addr().Is6() {
		v = 6
	}
	p = p.Masked()
	n := p.Addr().BitLen() / 8
	mask := make([]byte, n)
	for i := 0; i < p.Bits(); i++ {
		mask[i/8] |= 0x80 >> (i % 8)
	}
	exprs := []expr.Any{loadAddr(v, remoteIsSrc, reg1)}
	if p.Bits() < p.Addr().BitLen() {
		exprs = append(exprs, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: uint32(n), Mask: mask, Xor: make([]byte, n)})
	}
	exprs = append(exprs, cmpEq(reg1, p.Addr().AsSlice()))
	return frag{fmt.Sprintf("%s %s", addrText(v, remoteIsSrc), p), exprs}
}

// fUDPPorts matches a UDP source and destination port (DHCP).
func fUDPPorts(sport, dport uint16) []frag {
	return []frag{fL4proto(17),
		fPort(17, false, portRange{first: sport, last: sport}),
		fPort(17, true, portRange{first: dport, last: dport})}
}

// fLog is a rate-limited NFLOG to group: userspace learns who hit a drop
// without a flood of messages.
func fLogLimited(group uint16, prefix string) []frag {
	return []frag{
		{"limit rate 10/second burst 5 packets", []expr.Any{
			&expr.Limit{Type: expr.LimitTypePkts, Rate: 10, Unit: expr.LimitTimeSecond, Burst: 5}}},
		{fmt.Sprintf("log prefix %q group %d", prefix, group), []expr.Any{
			&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: group, Data: []byte(prefix)}}},
	}
}

// Two-stage dispatch: the device maps yield a dispatch id into meta
// secmark, which a verdict map turns into a jump (see dispatchChains).

// fSecmarkIs matches a secmark of 0 (zero) or not 0.
func fSecmarkIs(zero bool) frag {
	op, text := expr.CmpOpEq, "meta secmark 0"
	if !zero {
		op, text = expr.CmpOpNeq, "meta secmark != 0"
	}
	return frag{text, []expr.Any{
		&expr.Meta{Key: expr.MetaKeySECMARK, Register: reg1},
		&expr.Cmp{Op: op, Register: reg1, Data: make([]byte, 4)},
	}}
}

// fSecmarkFromMap sets secmark to the value a data map holds for the
// loaded key; a key not in the map ends the rule (secmark unchanged).
func fSecmarkFromMap(load *expr.Payload, keyText, set string) frag {
	return frag{fmt.Sprintf("meta secmark set %s map @%s", keyText, set), []expr.Any{
		load,
		&expr.Lookup{SourceRegister: reg1, DestRegister: reg1, IsDestRegSet: true, SetName: set},
		&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: reg1},
	}}
}

// fSecmarkVmap jumps to the chain a verdict map holds for the secmark.
func fSecmarkVmap(set string) frag {
	return frag{"meta secmark vmap @" + set, []expr.Any{
		&expr.Meta{Key: expr.MetaKeySECMARK, Register: reg1},
		&expr.Lookup{SourceRegister: reg1, DestRegister: regVer, IsDestRegSet: true, SetName: set},
	}}
}

func fSetSecmark0() frag {
	return frag{"meta secmark set 0", []expr.Any{
		&expr.Immediate{Register: reg1, Data: make([]byte, 4)},
		&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: reg1},
	}}
}

// fInMap matches if the loaded key is in a map (membership only).
func fInMap(load *expr.Payload, keyText, set string) frag {
	return frag{fmt.Sprintf("%s @%s", keyText, set), []expr.Any{
		load,
		&expr.Lookup{SourceRegister: reg1, SetName: set},
	}}
}

// fNotInMap matches if the loaded key is not in a set or map.
func fNotInMap(load *expr.Payload, keyText, set string) frag {
	return frag{fmt.Sprintf("%s != @%s", keyText, set), []expr.Any{
		load,
		&expr.Lookup{SourceRegister: reg1, SetName: set, Invert: true},
	}}
}
