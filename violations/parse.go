package violations

import (
	"encoding/binary"
	"net/netip"

	"github.com/openmud/mud/internal/packet"
)

// The nfnetlink_log protocol (linux/netfilter/nfnetlink_log.h); x/sys/unix
// does not define it.
const (
	nfnlSubsysULOG = 4 // NFNL_SUBSYS_ULOG
	msgPacket      = 0 // NFULNL_MSG_PACKET
	msgConfig      = 1 // NFULNL_MSG_CONFIG

	attrPacketHdr = 1  // NFULA_PACKET_HDR: hw_protocol (be16), hook, pad
	attrHWAddr    = 8  // NFULA_HWADDR: hw_addrlen (be16), pad, hw_addr[8]
	attrPayload   = 9  // NFULA_PAYLOAD: the packet from its network header
	attrPrefix    = 10 // NFULA_PREFIX: the log prefix, NUL-terminated
	attrHWType    = 15 // NFULA_HWTYPE: ARPHRD_* (be16)
	attrHWHeader  = 16 // NFULA_HWHEADER: the link-layer header
	attrL2Hdr     = 21 // NFULA_L2HDR: the link-layer header (bridge family)

	cfgCmd     = 1 // NFULA_CFG_CMD
	cfgMode    = 2 // NFULA_CFG_MODE
	cfgQThresh = 5 // NFULA_CFG_QTHRESH
	cmdBind    = 1 // NFULNL_CFG_CMD_BIND
	copyPacket = 2 // NFULNL_COPY_PACKET

	nfprotoIPv4   = 2
	nfprotoIPv6   = 10
	nfprotoBridge = 7

	arphrdEther = 1

	protoICMP   = 1
	protoICMPv6 = 58
)

// The log prefixes the enforcer's rules use (enforcer/README.md, "Logged
// drops").
const (
	PrefixDenyOut = "mud deny out: "
	PrefixDenyIn  = "mud deny in: "
	PrefixGuard   = "mud guard: "
)

// Direction is the way a dropped packet went, seen from the device.
type Direction uint8

const (
	// Out: sent by the device (its from-device policy, or its source guard).
	Out Direction = iota + 1
	// In: sent to the device (its to-device policy).
	In
)

func (d Direction) String() string {
	switch d {
	case Out:
		return "out"
	case In:
		return "in"
	}
	return "unknown"
}

// Kind is the rule that dropped the packet.
type Kind uint8

const (
	// DefaultDeny: no ACE of the device's policy allowed the packet (RFC
	// 8520 §5, the default deny).
	DefaultDeny Kind = iota + 1
	// SourceGuard: the device sent from an address not bound to its MAC.
	SourceGuard
)

func (k Kind) String() string {
	switch k {
	case DefaultDeny:
		return "default-deny"
	case SourceGuard:
		return "source-guard"
	}
	return "unknown"
}

// Drop is one logged packet, as parsed from an NFLOG message. Its
// addresses are copies: a Drop does not refer to the message's bytes.
type Drop struct {
	Kind      Kind
	Direction Direction
	// Family is the netfilter family of the table that logged it:
	// NFPROTO_IPV4 or NFPROTO_IPV6 (table inet mud) or NFPROTO_BRIDGE
	// (table bridge mud).
	Family uint8
	// HWSrc and HWDst are the Ethernet addresses of the link-layer header
	// the packet arrived with (NFULA_HWHEADER, or NFULA_L2HDR in the
	// bridge family); HasHW is false when the message had none.
	HWSrc, HWDst [6]byte
	HasHW        bool
	// Src and Dst are the IP addresses; Protocol the upper-layer protocol.
	Src, Dst netip.Addr
	Protocol uint8
	// Port is the destination port (TCP, UDP), or the ICMP / ICMPv6 type;
	// 0 for other protocols and later fragments.
	Port uint16
}

// Device is the device's MAC as the packet tells it: the source of an out
// packet's link-layer header; for an in packet, the destination of the
// link-layer header only in the bridge family (lateral traffic: the frame
// is addressed to the device). A routed in packet arrived from the WAN side
// and its link-layer header names the gateway, so Device reports false:
// the device is then the packet's destination address (DeviceAddr).
func (d *Drop) Device() (mac [6]byte, ok bool) {
	if !d.HasHW {
		return mac, false
	}
	if d.Direction == Out {
		return d.HWSrc, true
	}
	if d.Family == nfprotoBridge {
		return d.HWDst, true
	}
	return mac, false
}

// DeviceAddr is the device's side of the packet: the source of an out
// packet (for a source-guard drop, the address it was not allowed to use),
// the destination of an in packet.
func (d *Drop) DeviceAddr() netip.Addr {
	if d.Direction == Out {
		return d.Src
	}
	return d.Dst
}

// Peer is the other side of the packet.
func (d *Drop) Peer() netip.Addr {
	if d.Direction == Out {
		return d.Dst
	}
	return d.Src
}

// ParseError is what was wrong with a message; Reason is one of the names
// Stats.Errors counts by.
type ParseError struct {
	Reason string
	Detail string
}

func (e *ParseError) Error() string {
	if e.Detail == "" {
		return "nflog: " + e.Reason
	}
	return "nflog: " + e.Reason + ": " + e.Detail
}

// The names of the parse errors (Stats.Errors keys).
const (
	ErrShortHeader   = "short-netlink-header" // fewer bytes than nlmsghdr + nfgenmsg, or a length that does not fit
	ErrNotPacket     = "not-a-packet-message" // another nfnetlink subsystem or message type
	ErrBadAttribute  = "bad-attribute"        // an attribute whose length runs past the message or is below 4
	ErrNoPrefix      = "no-prefix"            // no NFULA_PREFIX
	ErrForeignPrefix = "foreign-prefix"       // a prefix that is none of mud's (another rule logs to the group)
	ErrNoPayload     = "no-payload"           // no NFULA_PAYLOAD
	ErrPayload       = "bad-payload"          // the payload is not a well-formed IPv4 or IPv6 packet
	ErrBadHWHeader   = "bad-hw-header"        // an Ethernet link-layer header shorter than 14 octets
)

// errorNames lists the parse errors, in the order Stats reports them.
var errorNames = [...]string{ErrShortHeader, ErrNotPacket, ErrBadAttribute, ErrNoPrefix,
	ErrForeignPrefix, ErrNoPayload, ErrPayload, ErrBadHWHeader}

func perr(reason, detail string) error { return &ParseError{Reason: reason, Detail: detail} }

// Parser parses NFLOG messages. It keeps a buffer for the payload it
// decodes, so a Parser is not safe for concurrent use; its zero value is
// ready.
type Parser struct {
	buf   []byte
	frame packet.Frame
}

// ParseMessage parses one netlink message (its nlmsghdr included) of
// nfnetlink_log into d. It never panics; a message that is not a
// well-formed NFLOG packet message of one of mud's prefixes gets a
// *ParseError.
func (p *Parser) ParseMessage(b []byte, d *Drop) error {
	if len(b) < 16 {
		return perr(ErrShortHeader, "")
	}
	n := int(binary.NativeEndian.Uint32(b[0:4]))
	if n < 16 || n > len(b) {
		return perr(ErrShortHeader, "")
	}
	return p.Parse(binary.NativeEndian.Uint16(b[4:6]), b[16:n], d)
}

// Parse parses the body of a netlink message (nfgenmsg and attributes) of
// type typ into d.
func (p *Parser) Parse(typ uint16, body []byte, d *Drop) error {
	*d = Drop{}
	if typ != nfnlSubsysULOG<<8|msgPacket {
		return perr(ErrNotPacket, "")
	}
	if len(body) < 4 {
		return perr(ErrShortHeader, "")
	}
	d.Family = body[0]
	var prefix, payload, hwhdr, l2hdr []byte
	var hwProto uint16
	hwType := -1
	havePrefix, havePayload := false, false
	for a := body[4:]; len(a) > 0; {
		if len(a) < 4 {
			return perr(ErrBadAttribute, "trailing octets")
		}
		alen := int(binary.NativeEndian.Uint16(a[0:2]))
		atype := binary.NativeEndian.Uint16(a[2:4]) & 0x3fff // without NLA_F_NESTED, NLA_F_NET_BYTEORDER
		if alen < 4 || alen > len(a) {
			return perr(ErrBadAttribute, "length past the message")
		}
		v := a[4:alen]
		switch atype {
		case attrPacketHdr:
			if len(v) >= 2 {
				hwProto = binary.BigEndian.Uint16(v[0:2])
			}
		case attrPayload:
			payload, havePayload = v, true
		case attrPrefix:
			prefix, havePrefix = v, true
		case attrHWType:
			if len(v) >= 2 {
				hwType = int(binary.BigEndian.Uint16(v[0:2]))
			}
		case attrHWHeader:
			hwhdr = v
		case attrL2Hdr:
			l2hdr = v
		}
		step := (alen + 3) &^ 3
		if step > len(a) {
			step = len(a)
		}
		a = a[step:]
	}
	if !havePrefix {
		return perr(ErrNoPrefix, "")
	}
	for i, c := range prefix { // NUL-terminated
		if c == 0 {
			prefix = prefix[:i]
			break
		}
	}
	switch string(prefix) {
	case PrefixDenyOut:
		d.Kind, d.Direction = DefaultDeny, Out
	case PrefixDenyIn:
		d.Kind, d.Direction = DefaultDeny, In
	case PrefixGuard:
		d.Kind, d.Direction = SourceGuard, Out
	default:
		return perr(ErrForeignPrefix, "")
	}
	if !havePayload {
		return perr(ErrNoPayload, "")
	}
	// The link-layer header: in the bridge family the kernel gives it as
	// NFULA_L2HDR (and HWHEADER too); either is Ethernet on a LAN bridge.
	hw := hwhdr
	if l2hdr != nil {
		hw = l2hdr
	}
	if hw != nil && (hwType == -1 || hwType == arphrdEther) {
		if len(hw) < 14 {
			return perr(ErrBadHWHeader, "")
		}
		copy(d.HWDst[:], hw[0:6])
		copy(d.HWSrc[:], hw[6:12])
		d.HasHW = true
	}
	return p.decodePayload(payload, hwProto, d)
}

// decodePayload decodes the network-layer packet with internal/packet,
// behind an Ethernet header of the packet's EtherType.
func (p *Parser) decodePayload(payload []byte, hwProto uint16, d *Drop) error {
	et := hwProto
	if et != packet.EtherTypeIPv4 && et != packet.EtherTypeIPv6 {
		// skb->protocol is the IP EtherType for every packet mud's rules
		// log; otherwise go by the version nibble.
		switch {
		case len(payload) > 0 && payload[0]>>4 == 4:
			et = packet.EtherTypeIPv4
		case len(payload) > 0 && payload[0]>>4 == 6:
			et = packet.EtherTypeIPv6
		default:
			return perr(ErrPayload, "not IPv4 or IPv6")
		}
	}
	p.buf = append(p.buf[:0], 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, byte(et>>8), byte(et))
	p.buf = append(p.buf, payload...)
	f := &p.frame
	if err := packet.Decode(p.buf, f); err != nil || f.IP.Version == 0 {
		detail := "no IP header"
		if err != nil {
			detail = err.Error()
		}
		return perr(ErrPayload, detail)
	}
	d.Src, d.Dst, d.Protocol = f.IP.Src, f.IP.Dst, f.IP.Protocol
	switch {
	case f.Transport == packet.ProtoTCP:
		d.Port = f.TCP.DstPort
	case f.Transport == packet.ProtoUDP:
		d.Port = f.UDP.DstPort
	case f.IP.Frag.Offset == 0 && (f.IP.Protocol == protoICMP || f.IP.Protocol == protoICMPv6) && len(f.IP.Payload) > 0:
		d.Port = uint16(f.IP.Payload[0])
	}
	return nil
}
