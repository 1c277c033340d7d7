package framegen

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openmud/mud/internal/packet"
)

// Options the library has no constants for (RFC 8520 §10).
const (
	optMUDURLv4 = dhcpv4.GenericOptionCode(161)
	optMUDURLv6 = dhcpv6.OptionCode(112)
)

var (
	broadcastMAC = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	// allDHCP6 is All_DHCP_Relay_Agents_and_Servers (RFC 8415 §7.1) and
	// its Ethernet group address (RFC 2464 §7).
	allDHCP6    = netip.MustParseAddr("ff02::1:2")
	allDHCP6MAC = net.HardwareAddr{0x33, 0x33, 0x00, 0x01, 0x00, 0x02}
)

// options4 are the client's options of every DHCPv4 message.
func options4(c Client) []dhcpv4.Modifier {
	mods := []dhcpv4.Modifier{
		dhcpv4.WithHwAddr(c.MAC),
		// The server broadcasts its answers: the clients have no address
		// the gateway could resolve yet (RFC 2131 §4.1).
		dhcpv4.WithBroadcast(true),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, c.MAC...))),
	}
	if c.Hostname != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptHostName(c.Hostname)))
	}
	if c.MUDURL != "" {
		mods = append(mods, dhcpv4.WithOption(dhcpv4.OptGeneric(optMUDURLv4, []byte(c.MUDURL))))
	}
	return mods
}

func discover(c Client, xid uint32) ([]byte, error) {
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	m, err := dhcpv4.NewDiscovery(c.MAC, append(options4(c), dhcpv4.WithTransactionID(id))...)
	if err != nil {
		return nil, fmt.Errorf("framegen: DISCOVER for %s: %w", c.MAC, err)
	}
	return frame4(c.MAC, netip.IPv4Unspecified(), m.ToBytes()), nil
}

func request4(c Client, offer *dhcpv4.DHCPv4) ([]byte, error) {
	if offer.ServerIdentifier() == nil {
		return nil, errNoServerID
	}
	m, err := dhcpv4.NewRequestFromOffer(offer, options4(c)...)
	if err != nil {
		return nil, fmt.Errorf("framegen: REQUEST for %s: %w", c.MAC, err)
	}
	return frame4(c.MAC, netip.IPv4Unspecified(), m.ToBytes()), nil
}

// release4 is a DHCPRELEASE of addr (RFC 2131 §4.4.6), naming the server
// that offered it (option 54) and the client as its REQUESTs did (chaddr,
// option 61). It is broadcast from addr: the lab's clients never resolve
// the server's address, and the server reads it all the same.
func release4(c Client, xid uint32, server net.IP, addr netip.Addr) ([]byte, error) {
	if server == nil {
		return nil, errNoServerID
	}
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	m, err := dhcpv4.New(
		dhcpv4.WithMessageType(dhcpv4.MessageTypeRelease),
		dhcpv4.WithTransactionID(id),
		dhcpv4.WithHwAddr(c.MAC),
		dhcpv4.WithClientIP(addr.AsSlice()),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier(append([]byte{1}, c.MAC...))),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(server)),
	)
	if err != nil {
		return nil, fmt.Errorf("framegen: DHCPRELEASE for %s: %w", c.MAC, err)
	}
	return frame4(c.MAC, addr, m.ToBytes()), nil
}

// frame4 is a client's broadcast from from:68 to 255.255.255.255:67.
func frame4(src net.HardwareAddr, from netip.Addr, payload []byte) []byte {
	f := make([]byte, 14+20+8+len(payload))
	copy(f[0:6], broadcastMAC)
	copy(f[6:12], src)
	binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv4)
	ip := f[14:34]
	ip[0] = 0x45
	binary.BigEndian.PutUint16(ip[2:4], uint16(20+8+len(payload)))
	ip[8] = 64
	ip[9] = packet.ProtoUDP
	a := from.As4()
	copy(ip[12:16], a[:])
	copy(ip[16:20], []byte{255, 255, 255, 255})
	binary.BigEndian.PutUint16(ip[10:12], ipv4Checksum(ip))
	u := f[34:]
	binary.BigEndian.PutUint16(u[0:2], 68)
	binary.BigEndian.PutUint16(u[2:4], 67)
	binary.BigEndian.PutUint16(u[4:6], uint16(8+len(payload)))
	copy(u[8:], payload) // UDP checksum 0: none (RFC 768)
	return f
}

func ipv4Checksum(h []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(h); i += 2 {
		s += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func options6(c Client) []dhcpv6.Modifier {
	var mods []dhcpv6.Modifier
	if c.Hostname != "" {
		mods = append(mods, dhcpv6.WithFQDN(0, c.Hostname))
	}
	if c.MUDURL != "" {
		mods = append(mods, dhcpv6.WithOption(&dhcpv6.OptionGeneric{OptionCode: optMUDURLv6, OptionData: []byte(c.MUDURL)}))
	}
	return mods
}

// duid is a client's DUID-LL (RFC 8415 §11.4).
func duid(c Client) dhcpv6.DUID {
	return &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: c.MAC}
}

func solicit(c Client, xid uint32) ([]byte, error) {
	duid := duid(c)
	m, err := dhcpv6.NewSolicit(c.MAC, append(options6(c), dhcpv6.WithClientID(duid))...)
	if err != nil {
		return nil, fmt.Errorf("framegen: SOLICIT for %s: %w", c.MAC, err)
	}
	// NewSolicit added a DUID-LLT; keep the DUID-LL alone.
	m.Options.Del(dhcpv6.OptionClientID)
	m.AddOption(dhcpv6.OptClientID(duid))
	m.TransactionID = dhcpv6.TransactionID{byte(xid >> 16), byte(xid >> 8), byte(xid)}
	return udp6(c.MAC, m.ToBytes()), nil
}

func request6(c Client, adv *dhcpv6.Message) ([]byte, error) {
	m, err := dhcpv6.NewRequestFromAdvertise(adv, options6(c)...)
	if err != nil {
		return nil, fmt.Errorf("framegen: REQUEST for %s: %w", c.MAC, err)
	}
	m.TransactionID = adv.TransactionID
	return udp6(c.MAC, m.ToBytes()), nil
}

// release6 is a RELEASE of addrs in the IA_NA iaid (RFC 8415 §18.2.7),
// naming the server that advertised them (serverID, option 2).
func release6(c Client, xid uint32, serverID dhcpv6.Option, iaid [4]byte, addrs []netip.Addr) ([]byte, error) {
	if serverID == nil {
		return nil, fmt.Errorf("framegen: RELEASE for %s: no server identifier", c.MAC)
	}
	ia := &dhcpv6.OptIANA{IaId: iaid}
	for _, a := range addrs {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: a.AsSlice()})
	}
	m := &dhcpv6.Message{
		MessageType:   dhcpv6.MessageTypeRelease,
		TransactionID: dhcpv6.TransactionID{byte(xid >> 16), byte(xid >> 8), byte(xid)},
	}
	m.AddOption(dhcpv6.OptClientID(duid(c)))
	m.AddOption(serverID)
	m.AddOption(dhcpv6.OptElapsedTime(0))
	m.AddOption(ia)
	return udp6(c.MAC, m.ToBytes()), nil
}

// udp6 is a client's message from its link-local address, port 546, to
// All_DHCP_Relay_Agents_and_Servers, port 547.
func udp6(src net.HardwareAddr, payload []byte) []byte {
	u := make([]byte, 8+len(payload))
	binary.BigEndian.PutUint16(u[0:2], 546)
	binary.BigEndian.PutUint16(u[2:4], 547)
	binary.BigEndian.PutUint16(u[4:6], uint16(len(u)))
	copy(u[8:], payload)
	ll := LinkLocal(src)
	binary.BigEndian.PutUint16(u[6:8], packet.Checksum6(ll, allDHCP6, packet.ProtoUDP, u))
	return frame6(allDHCP6MAC, src, ll, allDHCP6, packet.ProtoUDP, 1, u)
}

// frame6 wraps an upper-layer message in IPv6 and Ethernet.
func frame6(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, proto, hops uint8, msg []byte) []byte {
	f := make([]byte, 14+40+len(msg))
	copy(f[0:6], dstMAC)
	copy(f[6:12], srcMAC)
	binary.BigEndian.PutUint16(f[12:14], packet.EtherTypeIPv6)
	ip := f[14:54]
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(msg)))
	ip[6], ip[7] = proto, hops
	s, d := src.As16(), dst.As16()
	copy(ip[8:24], s[:])
	copy(ip[24:40], d[:])
	copy(f[54:], msg)
	return f
}

// LinkLocal is the modified EUI-64 link-local address of mac (RFC 4291
// appendix A): the address a simulated DHCPv6 client sends from, and the
// one the server answers.
func LinkLocal(mac net.HardwareAddr) netip.Addr {
	var a [16]byte
	a[0], a[1] = 0xfe, 0x80
	a[8], a[9], a[10] = mac[0]^2, mac[1], mac[2]
	a[11], a[12] = 0xff, 0xfe
	a[13], a[14], a[15] = mac[3], mac[4], mac[5]
	return netip.AddrFrom16(a)
}

// solicitNeighbour is a neighbour solicitation for target from mac's
// link-local address with its source link-layer address option (RFC 4861
// §4.3), sent to target's solicited-node group (RFC 4291 §2.7.1).
func solicitNeighbour(mac net.HardwareAddr, target netip.Addr) []byte {
	t := target.As16()
	group := netip.AddrFrom16([16]byte{0xff, 0x02, 11: 1, 12: 0xff, 13: t[13], 14: t[14], 15: t[15]})
	groupMAC := net.HardwareAddr{0x33, 0x33, 0xff, t[13], t[14], t[15]}
	src := LinkLocal(mac)
	ns := make([]byte, 32)
	ns[0] = 135
	copy(ns[8:24], t[:])
	ns[24], ns[25] = 1, 1 // source link-layer address, 8 octets
	copy(ns[26:32], mac)
	binary.BigEndian.PutUint16(ns[2:4], packet.Checksum6(src, group, 58, ns))
	return frame6(groupMAC, mac, src, group, 58, 255, ns)
}
