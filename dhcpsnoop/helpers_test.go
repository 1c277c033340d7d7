package dhcpsnoop

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
)

// Test addressing: documentation ranges, MACs like the lab's.
var (
	macDev1    = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01}
	macDev2    = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02}
	macGW      = net.HardwareAddr{0x02, 0, 0, 0, 0x00, 0xfe}
	macRelay   = net.HardwareAddr{0x02, 0, 0, 0, 0x00, 0xfd}
	macBcast   = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}
	macAllDHCP = net.HardwareAddr{0x33, 0x33, 0, 1, 0, 2}
	ipGW4      = netip.MustParseAddr("192.0.2.1")
	ipGW6LL    = netip.MustParseAddr("fe80::fe")
	ipDev6LL   = netip.MustParseAddr("fe80::1")
	ipAllDHCP  = netip.MustParseAddr("ff02::1:2")
	t0         = time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
)

const (
	urlA = "https://lighting.example.com/lightbulb2000"
	urlB = "https://other.example.net/thing"
)

// ethUDP wraps a UDP payload in Ethernet, IPv4 or IPv6 (by the address
// family of src) and UDP headers. Checksums are left zero: the snooper does
// not check them (the kernel hands packet sockets frames before any check).
func ethUDP(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	udp := make([]byte, 8, 8+len(payload))
	binary.BigEndian.PutUint16(udp[0:], sport)
	binary.BigEndian.PutUint16(udp[2:], dport)
	binary.BigEndian.PutUint16(udp[4:], uint16(8+len(payload)))
	udp = append(udp, payload...)
	f := append(append([]byte{}, dstMAC...), srcMAC...)
	if src.Is4() {
		f = binary.BigEndian.AppendUint16(f, etherTypeV4)
		ip := make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
		ip[8], ip[9] = 64, 17
		s4, d4 := src.As4(), dst.As4()
		copy(ip[12:], s4[:])
		copy(ip[16:], d4[:])
		f = append(f, ip...)
	} else {
		f = binary.BigEndian.AppendUint16(f, etherTypeV6)
		ip := make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(udp)))
		ip[6], ip[7] = 17, 64
		s6, d6 := src.As16(), dst.As16()
		copy(ip[8:], s6[:])
		copy(ip[24:], d6[:])
		f = append(f, ip...)
	}
	return append(f, udp...)
}

// v4Client frames a client's DHCPv4 message as broadcast from its MAC.
func v4Client(t testing.TB, src net.HardwareAddr, d *dhcpv4.DHCPv4) []byte {
	t.Helper()
	return ethUDP(src, macBcast, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67, d.ToBytes())
}

// v4Server frames a server's reply as sent by the gateway to the client.
func v4Server(t testing.TB, d *dhcpv4.DHCPv4) []byte {
	t.Helper()
	dst := netip.MustParseAddr("255.255.255.255")
	if a, ok := netip.AddrFromSlice(d.YourIPAddr.To4()); ok && !a.IsUnspecified() {
		dst = a
	}
	return ethUDP(macGW, d.ClientHWAddr, ipGW4, dst, 67, 68, d.ToBytes())
}

func v4Msg(t testing.TB, typ dhcpv4.MessageType, mac net.HardwareAddr, xid byte, mods ...dhcpv4.Modifier) *dhcpv4.DHCPv4 {
	t.Helper()
	op := dhcpv4.OpcodeBootRequest
	switch typ {
	case dhcpv4.MessageTypeOffer, dhcpv4.MessageTypeAck, dhcpv4.MessageTypeNak:
		op = dhcpv4.OpcodeBootReply
	}
	base := []dhcpv4.Modifier{
		dhcpv4.WithMessageType(typ), dhcpv4.WithHwAddr(mac),
		dhcpv4.WithTransactionID(dhcpv4.TransactionID{0xde, 0xad, 0, xid}),
		func(d *dhcpv4.DHCPv4) { d.OpCode = op },
	}
	d, err := dhcpv4.New(append(base, mods...)...)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func withMUD(url string) dhcpv4.Modifier {
	return dhcpv4.WithGeneric(optMUDURLv4, []byte(url))
}

func ack4(t testing.TB, mac net.HardwareAddr, xid byte, ip string, lease uint32) []byte {
	t.Helper()
	return v4Server(t, v4Msg(t, dhcpv4.MessageTypeAck, mac, xid,
		dhcpv4.WithYourIP(net.ParseIP(ip)), dhcpv4.WithLeaseTime(lease),
		dhcpv4.WithOption(dhcpv4.OptServerIdentifier(net.IP(ipGW4.AsSlice())))))
}

func request4(t testing.TB, mac net.HardwareAddr, xid byte, mods ...dhcpv4.Modifier) []byte {
	t.Helper()
	return v4Client(t, mac, v4Msg(t, dhcpv4.MessageTypeRequest, mac, xid, mods...))
}

// v6 messages.
func duidLL(mac net.HardwareAddr) dhcpv6.DUID {
	return &dhcpv6.DUIDLL{HWType: 1, LinkLayerAddr: mac}
}

func v6Msg(t testing.TB, typ dhcpv6.MessageType, mac net.HardwareAddr, xid byte, opts ...dhcpv6.Option) *dhcpv6.Message {
	t.Helper()
	m := &dhcpv6.Message{MessageType: typ, TransactionID: dhcpv6.TransactionID{0xbe, 0xef, xid}}
	m.AddOption(dhcpv6.OptClientID(duidLL(mac)))
	for _, o := range opts {
		m.AddOption(o)
	}
	return m
}

func mud6(url string) dhcpv6.Option {
	return &dhcpv6.OptionGeneric{OptionCode: dhcpv6.OptionMUDUrlV6, OptionData: []byte(url)}
}

func iana6(valid time.Duration, addrs ...string) dhcpv6.Option {
	ia := &dhcpv6.OptIANA{IaId: [4]byte{0, 0, 0, 1}, T1: valid / 2, T2: valid * 4 / 5}
	for _, a := range addrs {
		ia.Options.Add(&dhcpv6.OptIAAddress{IPv6Addr: net.ParseIP(a), PreferredLifetime: valid, ValidLifetime: valid})
	}
	return ia
}

func v6Client(mac net.HardwareAddr, m dhcpv6.DHCPv6) []byte {
	return ethUDP(mac, macAllDHCP, ipDev6LL, ipAllDHCP, 546, 547, m.ToBytes())
}

func v6Server(mac net.HardwareAddr, m dhcpv6.DHCPv6) []byte {
	return ethUDP(macGW, mac, ipGW6LL, ipDev6LL, 547, 546, m.ToBytes())
}

// handle feeds frames to tr and returns every event, failing on frames that
// do not parse.
func handle(t testing.TB, tr *Tracker, now time.Time, frames ...[]byte) []Event {
	t.Helper()
	var out []Event
	for _, f := range frames {
		evs, err := tr.HandleFrame(f, "br-lan", now)
		if err != nil {
			t.Fatalf("HandleFrame: %v", err)
		}
		out = append(out, evs...)
	}
	return out
}

func kinds(evs []Event) []Kind {
	out := make([]Kind, len(evs))
	for i, e := range evs {
		out[i] = e.Kind
	}
	return out
}

// testdataFrames returns the captured frames under testdata/frames.
func testdataFrames(t testing.TB) map[string][]byte {
	t.Helper()
	paths, err := filepath.Glob(filepath.Join("testdata", "frames", "*.bin"))
	if err != nil {
		t.Fatal(err)
	}
	out := map[string][]byte{}
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		out[filepath.Base(p)] = b
	}
	return out
}
