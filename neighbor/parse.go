package neighbor

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"

	"github.com/openmud/mud/internal/packet"
)

// EtherType and ICMPv6 numbers of the messages the learner reads.
const (
	etherTypeARP = 0x0806
	protoICMPv6  = 58

	icmpRS = 133 // Router Solicitation (RFC 4861 §4.1)
	icmpRA = 134 // Router Advertisement (§4.2): the gateway's own, never a claim
	icmpNS = 135 // Neighbor Solicitation (§4.3)
	icmpNA = 136 // Neighbor Advertisement (§4.4)

	optSourceLL = 1 // Source Link-layer Address option (§4.6.1)
	optTargetLL = 2 // Target Link-layer Address option
)

// MsgType is the kind of frame a Message was read from.
type MsgType uint8

// Message types.
const (
	// ARPRequest: an ARP request (RFC 826) from a host with an address: it
	// holds the sender protocol address. A gratuitous ARP (sender and
	// target address the same) is one too.
	ARPRequest MsgType = iota + 1
	// ARPReply: an ARP reply; the sender holds the sender address.
	ARPReply
	// ARPProbe: an ARP request with sender address 0.0.0.0 (RFC 5227
	// §2.1.1): the sender is about to use the target address.
	ARPProbe
	// RouterSolicitation from an address (RFC 4861 §4.1); one from the
	// unspecified address claims nothing.
	RouterSolicitation
	// NeighborSolicitation from an address: the sender holds the source
	// address (the target is someone else's).
	NeighborSolicitation
	// NeighborAdvertisement: the sender holds the target address (and the
	// source address).
	NeighborAdvertisement
	// DADSolicitation: a Neighbor Solicitation from the unspecified address
	// to the target's solicited-node group, i.e. Duplicate Address
	// Detection (RFC 4862 §5.4.2): the sender is about to use the target.
	DADSolicitation
)

var msgTypeNames = [...]string{
	ARPRequest: "arp-request", ARPReply: "arp-reply", ARPProbe: "arp-probe",
	RouterSolicitation: "router-solicitation", NeighborSolicitation: "neighbor-solicitation",
	NeighborAdvertisement: "neighbor-advertisement", DADSolicitation: "dad-solicitation",
}

func (t MsgType) String() string {
	if int(t) < len(msgTypeNames) && msgTypeNames[t] != "" {
		return msgTypeNames[t]
	}
	return fmt.Sprintf("MsgType(%d)", uint8(t))
}

// Message is what one ARP or neighbour discovery frame says about who holds
// which address: the frame's Ethernet source holds Addrs (NumAddrs of them,
// at most two: an advertisement's target and its source address).
type Message struct {
	Type MsgType
	// MAC is the frame's Ethernet source, a unicast MAC. Every link-layer
	// address the message carries (ARP's sender hardware address, ND's
	// link-layer address options) is this one, or the frame is refused.
	MAC      [6]byte
	Addrs    [2]netip.Addr
	NumAddrs int
	// Gratuitous: an ARP whose sender and target address are the same
	// (RFC 5227 §3 announcement), or a Neighbor Advertisement sent to a
	// multicast group, i.e. not solicited (RFC 4861 §7.2.6).
	Gratuitous bool
}

// Claims returns the addresses the sender holds.
func (m *Message) Claims() []netip.Addr { return m.Addrs[:m.NumAddrs] }

// Tentative reports whether the addresses are only about to be used
// (an ARP probe, Duplicate Address Detection), not yet in use.
func (m *Message) Tentative() bool { return m.Type == ARPProbe || m.Type == DADSolicitation }

// Source is the source of the learner's events that the message gives.
func (m *Message) Source() Source {
	switch m.Type {
	case ARPRequest, ARPReply:
		return SourceARP
	case ARPProbe, DADSolicitation:
		return SourceDAD
	}
	return SourceND
}

func (m *Message) claim(a netip.Addr) { m.Addrs[m.NumAddrs] = a; m.NumAddrs++ }

// ErrNotNeighbor is returned (wrapped) for a frame that is neither ARP nor
// a Router Solicitation, Neighbor Solicitation or Neighbor Advertisement;
// ErrMalformed for one that is, but breaks the rules.
var (
	ErrNotNeighbor = errors.New("not an ARP or neighbour discovery frame")
	ErrMalformed   = errors.New("malformed ARP or neighbour discovery frame")
)

// malformed returns an error that matches ErrMalformed. Its text is made
// of the constant format and numbers, never of the frame's bytes.
func malformed(format string, a ...any) error {
	return fmt.Errorf("%w: %s", ErrMalformed, fmt.Sprintf(format, a...))
}

// ParseFrame reads one Ethernet frame (VLAN tags allowed) into m. It
// checks every length before reading, and the rules of RFC 826, RFC 5227,
// RFC 4861 §6.1.1 and §7.1 (hop limit 255, code 0, the ICMPv6 checksum,
// option lengths, no link-layer option from the unspecified address, a DAD
// solicitation sent to the target's solicited-node group) and that every
// link-layer address in the message is the frame's source: a frame that
// breaks any of them claims nothing. It never panics and allocates nothing.
func ParseFrame(frame []byte, m *Message) error { return parse(frame, m, true) }

// parse is ParseFrame; sum false skips the ICMPv6 checksum, for a frame the
// kernel says still has its checksum to be filled in (and for fuzzing past
// it).
func parse(frame []byte, m *Message, sum bool) error {
	*m = Message{}
	var f packet.Frame
	if err := packet.Decode(frame, &f); err != nil {
		return fmt.Errorf("%w: %w", ErrMalformed, err)
	}
	if f.Src[0]&1 != 0 || [6]byte(f.Src) == ([6]byte{}) {
		return malformed("source MAC is not unicast")
	}
	m.MAC = [6]byte(f.Src)
	switch {
	case f.EtherType == etherTypeARP:
		return parseARP(f.Payload, m)
	case f.IP.Version == 6 && f.IP.Protocol == protoICMPv6:
		return parseND(&f, m, sum)
	}
	return ErrNotNeighbor
}

// parseARP reads an Ethernet/IPv4 ARP packet (RFC 826).
func parseARP(p []byte, m *Message) error {
	if len(p) < 28 {
		return malformed("ARP: %d octets, shorter than the 28 of Ethernet/IPv4", len(p))
	}
	htype, ptype := binary.BigEndian.Uint16(p[0:2]), binary.BigEndian.Uint16(p[2:4])
	if htype != 1 || ptype != packet.EtherTypeIPv4 || p[4] != 6 || p[5] != 4 {
		return malformed("ARP: hardware type %d, protocol %#04x, lengths %d/%d, not Ethernet/IPv4", htype, ptype, p[4], p[5])
	}
	if !bytes.Equal(p[8:14], m.MAC[:]) {
		return malformed("ARP: sender hardware address is not the frame's source")
	}
	spa := netip.AddrFrom4([4]byte(p[14:18]))
	tpa := netip.AddrFrom4([4]byte(p[24:28]))
	switch op := binary.BigEndian.Uint16(p[6:8]); {
	case op == 1 && spa.IsUnspecified():
		m.Type = ARPProbe
		if !unicast(tpa) {
			return malformed("ARP probe for an address that is not unicast")
		}
		m.claim(tpa)
		return nil
	case op == 1:
		m.Type = ARPRequest
	case op == 2:
		m.Type = ARPReply
	default:
		return malformed("ARP: operation %d", op)
	}
	if !unicast(spa) {
		return malformed("ARP: sender address is not unicast")
	}
	m.Gratuitous = spa == tpa
	m.claim(spa)
	return nil
}

// parseND reads a Router Solicitation, Neighbor Solicitation or Neighbor
// Advertisement (RFC 4861) without extension headers.
func parseND(f *packet.Frame, m *Message, sum bool) error {
	ip := &f.IP
	icmp := ip.Payload
	if len(icmp) < 8 {
		return malformed("ICMPv6: %d octets, shorter than the 8-octet header", len(icmp))
	}
	var minLen int
	switch icmp[0] {
	case icmpRS:
		m.Type, minLen = RouterSolicitation, 8
	case icmpNS:
		m.Type, minLen = NeighborSolicitation, 24
	case icmpNA:
		m.Type, minLen = NeighborAdvertisement, 24
	default:
		return ErrNotNeighbor
	}
	switch {
	case ip.NumExt != 0 || ip.Fragmented():
		return malformed("ND: extension headers before the message")
	case ip.TTL != 255:
		return malformed("ND: hop limit %d, not 255 (RFC 4861 §6.1.1, §7.1)", ip.TTL)
	case icmp[1] != 0:
		return malformed("ND: code %d, not 0", icmp[1])
	case len(icmp) < minLen:
		return malformed("ND: %d octets, shorter than the %d of type %d", len(icmp), minLen, icmp[0])
	case sum && packet.Checksum6(ip.Src, ip.Dst, protoICMPv6, icmp) != 0:
		return malformed("ND: bad ICMPv6 checksum")
	}
	hasLL, err := checkOptions(icmp[minLen:], m.MAC)
	if err != nil {
		return err
	}
	src := ip.Src
	switch m.Type {
	case RouterSolicitation:
		if src.IsUnspecified() {
			if hasLL {
				return malformed("RS: link-layer option from the unspecified address")
			}
			return nil
		}
		return claimSource(m, src)
	case NeighborSolicitation:
		target := netip.AddrFrom16([16]byte(icmp[8:24]))
		if !unicast(target) {
			return malformed("NS: target is not unicast")
		}
		if !src.IsUnspecified() {
			return claimSource(m, src)
		}
		if hasLL {
			return malformed("NS: link-layer option from the unspecified address")
		}
		if ip.Dst != solicitedNode(target) {
			return malformed("NS: from the unspecified address but not to the target's solicited-node group")
		}
		m.Type = DADSolicitation
		m.claim(target)
		return nil
	default: // NeighborAdvertisement
		target := netip.AddrFrom16([16]byte(icmp[8:24]))
		solicited := icmp[4]&0x40 != 0
		switch {
		case !unicast(target):
			return malformed("NA: target is not unicast")
		case ip.Dst.IsMulticast() && solicited:
			return malformed("NA: solicited flag on a multicast advertisement")
		case !unicast(src):
			return malformed("NA: source is not unicast")
		}
		m.Gratuitous = ip.Dst.IsMulticast()
		m.claim(target)
		if src != target {
			m.claim(src)
		}
		return nil
	}
}

func claimSource(m *Message, src netip.Addr) error {
	if !unicast(src) {
		return malformed("%v: source is not unicast", m.Type)
	}
	m.claim(src)
	return nil
}

// checkOptions walks ND options: each is at least 8 octets and fits (RFC
// 4861 §4.6: a zero length is malformed), and every link-layer address
// option holds mac, in the 8 octets Ethernet gives it (§4.6.1). It reports
// whether there was one.
func checkOptions(opts []byte, mac [6]byte) (hasLL bool, err error) {
	for len(opts) > 0 {
		if len(opts) < 2 {
			return false, malformed("ND option: truncated")
		}
		n := int(opts[1]) * 8
		switch {
		case n == 0:
			return false, malformed("ND option %d: length 0", opts[0])
		case n > len(opts):
			return false, malformed("ND option %d: %d octets long, %d left", opts[0], n, len(opts))
		}
		if t := opts[0]; t == optSourceLL || t == optTargetLL {
			if n != 8 {
				return false, malformed("ND link-layer address option: %d octets, not 8", n)
			}
			if [6]byte(opts[2:8]) != mac {
				return false, malformed("ND link-layer address option is not the frame's source")
			}
			hasLL = true
		}
		opts = opts[n:]
	}
	return hasLL, nil
}

// solicitedNode is the solicited-node multicast address of a (RFC 4291
// §2.7.1): ff02::1:ff00:0/104 and a's low 24 bits.
func solicitedNode(a netip.Addr) netip.Addr {
	b := a.As16()
	return netip.AddrFrom16([16]byte{0xff, 0x02, 10: 0, 11: 1, 12: 0xff, 13: b[13], 14: b[14], 15: b[15]})
}

// unicast reports whether a can be a host's own address: not unspecified,
// loopback, multicast or the IPv4 limited broadcast, and not an IPv4 address
// in IPv6 form.
func unicast(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() &&
		!a.Is4In6() && a != netip.AddrFrom4([4]byte{255, 255, 255, 255})
}
