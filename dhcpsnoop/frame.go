package dhcpsnoop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openmud/mud/internal/packet"
)

// DHCP's UDP ports.
const (
	portBOOTPS  = 67
	portBOOTPC  = 68
	portDHCP6C  = 546
	portDHCP6S  = 547
	etherTypeV4 = packet.EtherTypeIPv4
	etherTypeV6 = packet.EtherTypeIPv6
)

// optMUDURLv4 is DHCPv4 option 161 (RFC 8520 §10); insomniacslk has no
// constant for it.
var optMUDURLv4 = dhcpv4.GenericOptionCode(161)

// maxRelayDepth is RFC 8415's HOP_COUNT_LIMIT: no legitimate Relay-Forward
// is nested deeper, and stopping there bounds the work per frame.
const maxRelayDepth = 32

// Errors of ParseFrame for frames that are well-formed but not for us.
var (
	ErrNotDHCP    = errors.New("not a DHCP frame")
	ErrFragmented = errors.New("fragmented IP packet")
)

// Message is what one DHCP frame says, reduced to the facts the lease
// tracker needs. Byte slices alias nothing from the frame: a Message may be
// kept after the frame's buffer is reused.
type Message struct {
	Family     int    // 4 or 6
	Type       string // message type as the RFCs spell it: "DISCOVER", "ACK", "SOLICIT", "REPLY", …
	FromClient bool   // sent by a client (BOOTREQUEST; Solicit, Request, Renew, …)

	SrcMAC, DstMAC net.HardwareAddr // Ethernet addresses of the frame
	SrcIP, DstIP   netip.Addr

	// Relayed is true when the message came through a relay agent: DHCPv4
	// with giaddr set, or DHCPv6 wrapped in Relay-Forward/Relay-Reply.
	Relayed bool
	// XID is the transaction id (32 bits in DHCPv4, 24 in DHCPv6).
	XID uint32
	// ClientMAC is the client's hardware address: chaddr in DHCPv4; in DHCPv6
	// the relay's Client Link-Layer Address option (RFC 6939), else the frame's
	// source (a client's own message) or destination (a server's direct
	// reply). Nil when unknown.
	ClientMAC net.HardwareAddr
	// ClientID is DHCPv4 option 61 or the DHCPv6 client DUID, raw.
	ClientID []byte
	// Hostname is option 12 (v4) or the name in the FQDN option 39 (v6),
	// escaped.
	Hostname string
	// MUDURL is the raw value of option 161 / 112, nil when absent.
	MUDURL []byte

	ClientIP    netip.Addr // v4 ciaddr
	YourIP      netip.Addr // v4 yiaddr
	RequestedIP netip.Addr // v4 option 50
	// LeaseTime is option 51 (v4); for v6 the largest valid lifetime of
	// Addrs. Zero when absent; Infinite for 0xffffffff.
	LeaseTime time.Duration
	// Addrs are the DHCPv6 IA_NA addresses in the message.
	Addrs []LeaseAddr
}

// LeaseAddr is one DHCPv6 IA address with its valid lifetime.
type LeaseAddr struct {
	Addr  netip.Addr
	Valid time.Duration
}

// Infinite is the lease time of a lease that never expires (0xffffffff
// seconds on the wire, RFC 2131 §3.3, RFC 8415 §7.7).
const Infinite = time.Duration(1<<63 - 1)

// ParseFrame decodes an Ethernet frame (optionally 802.1Q/802.1ad tagged)
// carrying DHCPv4 (UDP 67/68) or DHCPv6 (UDP 546/547). Frames that are not
// DHCP, or whose Ethernet, IP or UDP headers are malformed (the error says
// what internal/packet found wrong), give ErrNotDHCP; fragments give
// ErrFragmented; malformed DHCP gives a wrapped parse error. It never
// panics on any input (FuzzHandleFrame checks that).
func ParseFrame(frame []byte) (*Message, error) {
	var f packet.Frame
	if err := packet.Decode(frame, &f); err != nil {
		return nil, fmt.Errorf("%w: %w", ErrNotDHCP, err)
	}
	etype := f.EtherType
	switch {
	case f.IP.Version == 0:
		return nil, fmt.Errorf("%w: ethertype 0x%04x", ErrNotDHCP, etype)
	case f.IP.Protocol != packet.ProtoUDP:
		return nil, fmt.Errorf("%w: IP protocol %d", ErrNotDHCP, f.IP.Protocol)
	case f.IP.Fragmented():
		// DHCP is not reassembled here (clients and servers keep messages
		// within one MTU, RFC 2131 §2).
		return nil, ErrFragmented
	}
	sport, dport := f.UDP.SrcPort, f.UDP.DstPort
	payload := f.UDP.Payload // cut to the UDP length: Ethernet padding is not DHCP
	m := &Message{
		SrcMAC: cloneHW(f.Src), DstMAC: cloneHW(f.Dst),
		SrcIP: f.IP.Src, DstIP: f.IP.Dst,
	}
	isPort := func(a, b uint16) bool { return sport == a || sport == b || dport == a || dport == b }
	var err error
	switch {
	case etype == etherTypeV4 && isPort(portBOOTPS, portBOOTPC):
		m.Family = 4
		err = m.parseV4(payload)
	case etype == etherTypeV6 && isPort(portDHCP6C, portDHCP6S):
		m.Family = 6
		err = m.parseV6(payload)
	default:
		return nil, fmt.Errorf("%w: udp ports %d→%d", ErrNotDHCP, sport, dport)
	}
	if err != nil {
		return nil, err
	}
	return m, nil
}

func (m *Message) parseV4(b []byte) error {
	d, err := dhcpv4.FromBytes(b)
	if err != nil {
		return fmt.Errorf("parsing DHCPv4: %w", err)
	}
	m.FromClient = d.OpCode == dhcpv4.OpcodeBootRequest
	m.Type = v4TypeName(d.MessageType())
	m.XID = binary.BigEndian.Uint32(d.TransactionID[:])
	if len(d.ClientHWAddr) == 6 && d.HWType == iana.HWTypeEthernet {
		m.ClientMAC = cloneHW(d.ClientHWAddr)
	}
	m.Relayed = !d.GatewayIPAddr.IsUnspecified() && d.GatewayIPAddr.To4() != nil
	m.ClientIP = addr4(d.ClientIPAddr)
	m.YourIP = addr4(d.YourIPAddr)
	if v := d.Options.Get(dhcpv4.OptionRequestedIPAddress); len(v) == 4 {
		m.RequestedIP = netip.AddrFrom4([4]byte(v))
	}
	if v := d.Options.Get(dhcpv4.OptionIPAddressLeaseTime); len(v) == 4 {
		m.LeaseTime = seconds(binary.BigEndian.Uint32(v))
	}
	if v := d.Options.Get(dhcpv4.OptionClientIdentifier); len(v) > 0 {
		m.ClientID = clip(v, 64)
	}
	if v := d.Options.Get(dhcpv4.OptionHostName); len(v) > 0 {
		m.Hostname = EscapeBytes(v, 64)
	}
	// Options 161 repeated are concatenated by the library (RFC 3396), so
	// an oversize MUD string is seen whole and refused by length.
	if d.Options.Has(optMUDURLv4) {
		m.MUDURL = present(clip(d.Options.Get(optMUDURLv4), maxMUDKept))
	}
	return nil
}

func (m *Message) parseV6(b []byte) error {
	pkt, err := dhcpv6.FromBytes(b)
	if err != nil {
		return fmt.Errorf("parsing DHCPv6: %w", err)
	}
	var relayMAC net.HardwareAddr
	for depth := 0; pkt.IsRelay(); depth++ {
		if depth >= maxRelayDepth {
			return fmt.Errorf("parsing DHCPv6: relay nesting deeper than %d", maxRelayDepth)
		}
		r, ok := pkt.(*dhcpv6.RelayMessage)
		if !ok {
			return errors.New("parsing DHCPv6: relay message of unexpected type")
		}
		m.Relayed = true
		// The innermost relay is the one on the client's link; its
		// Client Link-Layer Address option names the client.
		if ht, lla := r.Options.ClientLinkLayerAddress(); ht == iana.HWTypeEthernet && len(lla) == 6 {
			relayMAC = cloneHW(lla)
		}
		inner := r.Options.RelayMessage()
		if inner == nil {
			return errors.New("parsing DHCPv6: relay message without Relay Message option")
		}
		pkt = inner
	}
	msg, ok := pkt.(*dhcpv6.Message)
	if !ok {
		return errors.New("parsing DHCPv6: no inner message")
	}
	m.Type = v6TypeName(msg.MessageType)
	m.FromClient = v6FromClient(msg.MessageType)
	m.XID = uint32(msg.TransactionID[0])<<16 | uint32(msg.TransactionID[1])<<8 | uint32(msg.TransactionID[2])
	var duidMAC net.HardwareAddr
	if duid := msg.Options.ClientID(); duid != nil {
		m.ClientID = clip(duid.ToBytes(), 64)
		switch d := duid.(type) {
		case *dhcpv6.DUIDLLT:
			duidMAC = d.LinkLayerAddr
		case *dhcpv6.DUIDLL:
			duidMAC = d.LinkLayerAddr
		}
	}
	switch {
	case relayMAC != nil:
		m.ClientMAC = relayMAC
	case !m.Relayed && m.FromClient:
		m.ClientMAC = m.SrcMAC
	case !m.Relayed && !m.FromClient && m.DstMAC[0]&1 == 0:
		m.ClientMAC = m.DstMAC
	case len(duidMAC) == 6:
		// Last resort for relayed traffic without RFC 6939: the DUID's
		// link-layer address is usually, not always, the client's MAC.
		m.ClientMAC = cloneHW(duidMAC)
	}
	if fqdn := msg.Options.FQDN(); fqdn != nil && fqdn.DomainName != nil {
		if labels := fqdn.DomainName.Labels; len(labels) > 0 {
			m.Hostname = EscapeBytes([]byte(labels[0]), 64)
		}
	}
	if o := msg.GetOneOption(dhcpv6.OptionMUDUrlV6); o != nil {
		m.MUDURL = present(clip(o.ToBytes(), maxMUDKept))
	}
	for _, ia := range msg.Options.IANA() {
		for _, a := range ia.Options.Addresses() {
			ip, ok := netip.AddrFromSlice(a.IPv6Addr)
			if !ok || len(m.Addrs) >= maxAddrsPerMessage {
				continue
			}
			la := LeaseAddr{Addr: ip.Unmap(), Valid: lifetime(a.ValidLifetime)}
			m.Addrs = append(m.Addrs, la)
			if la.Valid > m.LeaseTime {
				m.LeaseTime = la.Valid
			}
		}
	}
	return nil
}

// maxMUDKept is how much of a MUD option is kept: more than the 255 allowed,
// so that an oversize value is still recognised as one, and no more.
const maxMUDKept = 512

// present marks an option as present even when it is empty (nil means absent).
func present(b []byte) []byte {
	if b == nil {
		return []byte{}
	}
	return b
}

// maxAddrsPerMessage bounds what one DHCPv6 message can add to a binding.
const maxAddrsPerMessage = 8

func v6FromClient(t dhcpv6.MessageType) bool {
	switch t {
	case dhcpv6.MessageTypeSolicit, dhcpv6.MessageTypeRequest, dhcpv6.MessageTypeConfirm,
		dhcpv6.MessageTypeRenew, dhcpv6.MessageTypeRebind, dhcpv6.MessageTypeRelease,
		dhcpv6.MessageTypeDecline, dhcpv6.MessageTypeInformationRequest:
		return true
	}
	return false
}

var v4Names = map[dhcpv4.MessageType]string{
	dhcpv4.MessageTypeDiscover: "DISCOVER", dhcpv4.MessageTypeOffer: "OFFER",
	dhcpv4.MessageTypeRequest: "REQUEST", dhcpv4.MessageTypeDecline: "DECLINE",
	dhcpv4.MessageTypeAck: "ACK", dhcpv4.MessageTypeNak: "NAK",
	dhcpv4.MessageTypeRelease: "RELEASE", dhcpv4.MessageTypeInform: "INFORM",
}

func v4TypeName(t dhcpv4.MessageType) string {
	if n, ok := v4Names[t]; ok {
		return n
	}
	if t == dhcpv4.MessageTypeNone {
		return "BOOTP"
	}
	return fmt.Sprintf("TYPE-%d", uint8(t))
}

var v6Names = map[dhcpv6.MessageType]string{
	dhcpv6.MessageTypeSolicit: "SOLICIT", dhcpv6.MessageTypeAdvertise: "ADVERTISE",
	dhcpv6.MessageTypeRequest: "REQUEST", dhcpv6.MessageTypeConfirm: "CONFIRM",
	dhcpv6.MessageTypeRenew: "RENEW", dhcpv6.MessageTypeRebind: "REBIND",
	dhcpv6.MessageTypeReply: "REPLY", dhcpv6.MessageTypeRelease: "RELEASE",
	dhcpv6.MessageTypeDecline: "DECLINE", dhcpv6.MessageTypeReconfigure: "RECONFIGURE",
	dhcpv6.MessageTypeInformationRequest: "INFORMATION-REQUEST",
}

func v6TypeName(t dhcpv6.MessageType) string {
	if n, ok := v6Names[t]; ok {
		return n
	}
	return fmt.Sprintf("TYPE-%d", uint8(t))
}

func seconds(s uint32) time.Duration {
	if s == 0xffffffff {
		return Infinite
	}
	return time.Duration(s) * time.Second
}

// lifetime maps the library's decoded DHCPv6 lifetime back to ours: it
// decodes 0xffffffff as that many seconds.
func lifetime(d time.Duration) time.Duration {
	if d >= 0xffffffff*time.Second {
		return Infinite
	}
	return d
}

func addr4(ip net.IP) netip.Addr {
	if v4 := ip.To4(); v4 != nil && !v4.IsUnspecified() {
		return netip.AddrFrom4([4]byte(v4))
	}
	return netip.Addr{}
}

func cloneHW(b []byte) net.HardwareAddr {
	if b == nil {
		return nil
	}
	return append(net.HardwareAddr(nil), b...)
}

// clip copies at most max octets: the tracker keeps these, and a copy
// detaches them from the frame buffer.
func clip(b []byte, max int) []byte {
	if len(b) > max {
		b = b[:max]
	}
	return append([]byte(nil), b...)
}
