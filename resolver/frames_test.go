package resolver

import (
	"encoding/binary"
	"net"
	"net/netip"

	"github.com/miekg/dns"
)

var (
	devMAC   = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01} // netlab device 1
	otherMAC = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02}
	gwMAC    = net.HardwareAddr{0x02, 0, 0, 0, 0x00, 0x01}
	gw4      = netip.MustParseAddr("192.0.2.1")
	dev4     = netip.MustParseAddr("192.0.2.11")
	gw6      = netip.MustParseAddr("2001:db8:1::1")
	dev6     = netip.MustParseAddr("2001:db8:1::11")
)

// frameSpec describes an Ethernet frame carrying a UDP or TCP payload.
type frameSpec struct {
	dst          net.HardwareAddr
	src, dstIP   netip.Addr
	sport, dport uint16
	tcp          bool
	vlan         bool
	fragment     bool // IPv4 more-fragments flag
}

func response(qname string, qtype uint16, rrs ...dns.RR) []byte {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(qname), qtype)
	m.Id = 0x4d55 // fixed, so built seed frames are reproducible
	m.Response, m.RecursionAvailable = true, true
	m.Answer = rrs
	b, err := m.Pack()
	if err != nil {
		panic(err)
	}
	return b
}

func checksum(b []byte) uint16 {
	var s uint32
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// buildFrame wraps a DNS message (length-prefixed for TCP) in L4, IP and
// Ethernet headers with valid IP/UDP/TCP checksums.
func buildFrame(f frameSpec, msg []byte) []byte {
	var l4 []byte
	proto := byte(17)
	if f.tcp {
		proto = 6
		l4 = make([]byte, 20, 22+len(msg))
		binary.BigEndian.PutUint16(l4[0:], f.sport)
		binary.BigEndian.PutUint16(l4[2:], f.dport)
		binary.BigEndian.PutUint32(l4[4:], 1000)
		binary.BigEndian.PutUint32(l4[8:], 2000)
		l4[12] = 5 << 4
		l4[13] = 0x18 // PSH, ACK
		binary.BigEndian.PutUint16(l4[14:], 65535)
		l4 = binary.BigEndian.AppendUint16(l4, uint16(len(msg)))
		l4 = append(l4, msg...)
	} else {
		l4 = make([]byte, 8, 8+len(msg))
		binary.BigEndian.PutUint16(l4[0:], f.sport)
		binary.BigEndian.PutUint16(l4[2:], f.dport)
		binary.BigEndian.PutUint16(l4[4:], uint16(8+len(msg)))
		l4 = append(l4, msg...)
	}
	// Pseudo-header checksum.
	src, dst := f.src.AsSlice(), f.dstIP.AsSlice()
	pseudo := append(append(append([]byte{}, src...), dst...), 0, proto)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(l4)))
	csum := checksum(append(pseudo, l4...))
	if f.tcp {
		binary.BigEndian.PutUint16(l4[16:], csum)
	} else {
		binary.BigEndian.PutUint16(l4[6:], csum)
	}
	var ip []byte
	et := uint16(0x0800)
	if f.src.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(l4)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		if f.fragment {
			binary.BigEndian.PutUint16(ip[6:], 0x2000)
		} else {
			binary.BigEndian.PutUint16(ip[6:], 0x4000) // DF
		}
		ip[8], ip[9] = 64, proto
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], checksum(ip))
	} else {
		et = 0x86dd
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(l4)))
		ip[6], ip[7] = proto, 64
		copy(ip[8:], src)
		copy(ip[24:], dst)
	}
	eth := make([]byte, 0, 18+len(ip)+len(l4))
	eth = append(eth, f.dst...)
	eth = append(eth, gwMAC...)
	if f.vlan {
		eth = append(eth, 0x81, 0x00, 0x00, 0x0a)
	}
	eth = binary.BigEndian.AppendUint16(eth, et)
	eth = append(eth, ip...)
	return append(eth, l4...)
}

// udp4 is the common case: the gateway's resolver answering device 1.
func udp4(msg []byte) []byte {
	return buildFrame(frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}, msg)
}

// cdnResponse is a typical CDN answer: a CNAME chain to two A records.
func cdnResponse() []byte {
	return response("api.vendor.test", dns.TypeA,
		rrCNAME("api.vendor.test", 300, "api.vendor.test.cdn.test"),
		rrCNAME("api.vendor.test.cdn.test", 120, "edge7.cdn.test"),
		rrA("edge7.cdn.test", 20, "198.51.100.71"),
		rrA("edge7.cdn.test", 30, "198.51.100.72"))
}
