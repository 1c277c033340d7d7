package packet

import (
	"encoding/binary"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// frameDirs hold real frames captured in the lab: DHCP from udhcpc,
// dhclient, nclient4 and dnsmasq (dhcpsnoop), DNS answers from dnsmasq and
// built DNS answers over UDP, TCP and 802.1Q (resolver).
var frameDirs = []string{"../../dhcpsnoop/testdata/frames", "../../resolver/testdata/frames"}

func readFrames(t testing.TB) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	for _, dir := range frameDirs {
		files, err := filepath.Glob(filepath.Join(dir, "*.bin"))
		if err != nil || len(files) == 0 {
			t.Fatalf("no frames in %s (%v)", dir, err)
		}
		for _, f := range files {
			b, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			out[filepath.Base(f)] = b
		}
	}
	return out
}

// TestDecodeCaptured decodes every captured frame; the expectations were
// read from the frames by an independent decoder.
func TestDecodeCaptured(t *testing.T) {
	frames := readFrames(t)
	for _, tc := range []struct {
		file             string
		tags             int
		src, dst         string
		proto            uint8
		sport, dport     uint16
		payload, l4Start int
	}{
		{"dhclient-discover-oversize.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 557, 34},
		{"dhclient-release4.bin", 0, "192.0.2.163", "192.0.2.1", 17, 68, 67, 300, 34},
		{"dhclient-request-mud.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 305, 34},
		{"dhclient6-release.bin", 0, "fe80::ff:fe00:103", "ff02::1:2", 17, 546, 547, 144, 54},
		{"dhclient6-request-mud.bin", 0, "fe80::ff:fe00:103", "ff02::1:2", 17, 546, 547, 144, 54},
		{"dhclient6-solicit-mud.bin", 0, "fe80::ff:fe00:103", "ff02::1:2", 17, 546, 547, 98, 54},
		{"dnsmasq-ack4-dhclient.bin", 0, "192.0.2.1", "192.0.2.163", 17, 67, 68, 300, 34},
		{"dnsmasq-ack4-renew.bin", 0, "192.0.2.1", "192.0.2.50", 17, 67, 68, 300, 34},
		{"dnsmasq-ack4.bin", 0, "192.0.2.1", "192.0.2.50", 17, 67, 68, 300, 34},
		{"dnsmasq-advertise6.bin", 0, "fe80::c818:f5ff:fea5:7756", "fe80::ff:fe00:103", 17, 547, 546, 102, 54},
		{"dnsmasq-nak4.bin", 0, "192.0.2.1", "255.255.255.255", 17, 67, 68, 300, 34},
		{"dnsmasq-reply6-release.bin", 0, "fe80::c818:f5ff:fea5:7756", "fe80::ff:fe00:103", 17, 547, 546, 62, 54},
		{"dnsmasq-reply6.bin", 0, "fe80::c818:f5ff:fea5:7756", "fe80::ff:fe00:103", 17, 547, 546, 97, 54},
		{"nclient4-discover-mud.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 307, 34},
		{"nclient4-release.bin", 0, "0.0.0.0", "192.0.2.1", 17, 68, 67, 300, 34},
		{"udhcpc-discover-http.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 311, 34},
		{"udhcpc-discover-mud.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 341, 34},
		{"udhcpc-discover-nourl.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 300, 34},
		{"udhcpc-renew.bin", 0, "192.0.2.50", "192.0.2.1", 17, 68, 67, 341, 34},
		{"udhcpc-request-mud.bin", 0, "0.0.0.0", "255.255.255.255", 17, 68, 67, 353, 34},
		{"built-tcp4-cname.bin", 0, "192.0.2.1", "192.0.2.11", 6, 53, 40000, 200, 34},
		{"built-tcp6-aaaa.bin", 0, "2001:db8:1::1", "2001:db8:1::11", 6, 53, 40000, 80, 54},
		{"built-udp4-cname.bin", 0, "192.0.2.1", "192.0.2.11", 17, 53, 40000, 198, 34},
		{"built-udp6-aaaa.bin", 0, "2001:db8:1::1", "2001:db8:1::11", 17, 53, 40000, 78, 54},
		{"built-vlan4.bin", 1, "192.0.2.1", "192.0.2.11", 17, 53, 40000, 198, 38},
		{"lab-udp4-cname.bin", 0, "192.0.2.1", "192.0.2.11", 17, 53, 55467, 106, 34},
		{"lab-udp6-aaaa.bin", 0, "2001:db8:1::1", "2001:db8:1::b", 17, 53, 56289, 118, 54},
	} {
		t.Run(tc.file, func(t *testing.T) {
			b, ok := frames[tc.file]
			if !ok {
				t.Fatalf("missing frame %s", tc.file)
			}
			var f Frame
			if err := Decode(b, &f); err != nil {
				t.Fatal(err)
			}
			ip := &f.IP
			if f.NumTags != tc.tags || ip.Src != netip.MustParseAddr(tc.src) || ip.Dst != netip.MustParseAddr(tc.dst) ||
				ip.Protocol != tc.proto || f.Transport != tc.proto || ip.PayloadOffset != tc.l4Start || ip.Fragmented() || ip.NumExt != 0 {
				t.Fatalf("decoded tags %d, %v → %v, protocol %d (transport %d) at %d, fragmented %v, %d extension headers",
					f.NumTags, ip.Src, ip.Dst, ip.Protocol, f.Transport, ip.PayloadOffset, ip.Fragmented(), ip.NumExt)
			}
			var sport, dport uint16
			var payload []byte
			switch f.Transport {
			case ProtoUDP:
				sport, dport, payload = f.UDP.SrcPort, f.UDP.DstPort, f.UDP.Payload
			case ProtoTCP:
				sport, dport, payload = f.TCP.SrcPort, f.TCP.DstPort, f.TCP.Payload
			}
			if sport != tc.sport || dport != tc.dport || len(payload) != tc.payload {
				t.Errorf("ports %d → %d, %d octets of payload", sport, dport, len(payload))
			}
			// Views, not copies: the payload starts in the frame, after
			// the transport header.
			if &payload[0] != &b[tc.l4Start+headerLen(&f)] {
				t.Error("the payload is not a view into the frame")
			}
			if allocs := testing.AllocsPerRun(100, func() { _ = Decode(b, &f) }); allocs != 0 {
				t.Errorf("Decode allocates %v times per frame", allocs)
			}
		})
	}
}

func headerLen(f *Frame) int {
	if f.Transport == ProtoTCP {
		return len(f.TCP.Header)
	}
	return len(f.UDP.Header)
}

// Test frames built to order.
var (
	macA = []byte{0x02, 0, 0, 0, 0, 0x0a}
	macB = []byte{0x02, 0, 0, 0, 0, 0x0b}
	v4a  = netip.MustParseAddr("192.0.2.1")
	v4b  = netip.MustParseAddr("198.51.100.2")
	v6a  = netip.MustParseAddr("2001:db8::1")
	v6b  = netip.MustParseAddr("2001:db8::2")
)

// eth builds a frame of EtherType et; tags are pairs of a TCI and the
// EtherType after it (et is then a TPID).
func eth(et uint16, payload []byte, tags ...uint16) []byte {
	b := append(append([]byte{}, macA...), macB...)
	b = binary.BigEndian.AppendUint16(b, et)
	for _, v := range tags {
		b = binary.BigEndian.AppendUint16(b, v)
	}
	return append(b, payload...)
}

func udp(sport, dport uint16, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	return append(b, payload...)
}

func tcp(sport, dport uint16, opts, payload []byte) []byte {
	b := binary.BigEndian.AppendUint16(nil, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = append(b, 0, 0, 0, 1, 0, 0, 0, 2, byte((20+len(opts))/4)<<4, 0x18, 0xff, 0xff, 0, 0, 0, 0)
	return append(append(b, opts...), payload...)
}

// ipv4 builds a header with options opts and fragment field frag.
func ipv4(proto byte, opts []byte, frag uint16, payload []byte) []byte {
	ihl := 20 + len(opts)
	b := make([]byte, ihl, ihl+len(payload))
	b[0] = 0x40 | byte(ihl/4)
	binary.BigEndian.PutUint16(b[2:], uint16(ihl+len(payload)))
	binary.BigEndian.PutUint16(b[4:], 0x1234)
	binary.BigEndian.PutUint16(b[6:], frag)
	b[8], b[9] = 64, proto
	copy(b[12:], v4a.AsSlice())
	copy(b[16:], v4b.AsSlice())
	copy(b[20:], opts)
	return append(b, payload...)
}

// ipv6 builds a header whose next header is next, followed by payload
// (extension headers included).
func ipv6(next byte, payload []byte) []byte {
	b := make([]byte, 40, 40+len(payload))
	b[0] = 0x60
	binary.BigEndian.PutUint16(b[4:], uint16(len(payload)))
	b[6], b[7] = next, 64
	copy(b[8:], v6a.AsSlice())
	copy(b[24:], v6b.AsSlice())
	return append(b, payload...)
}

// ext is an 8*(1+units)-octet extension header.
func ext(next byte, units int) []byte {
	b := make([]byte, 8*(1+units))
	b[0], b[1] = next, byte(units)
	return b
}

// fragHdr is an IPv6 fragment header.
func fragHdr(next byte, offset int, more bool) []byte {
	fo := uint16(offset)
	if more {
		fo |= 1
	}
	b := []byte{next, 0, 0, 0, 0, 0, 0x56, 0x78}
	binary.BigEndian.PutUint16(b[2:], fo)
	return b
}

func cat(bs ...[]byte) []byte { return slices.Concat(bs...) }

func TestDecodeBuilt(t *testing.T) {
	data := []byte("payload!")
	u := udp(53, 40000, data)
	hbh, rt, dst := ext(ProtoRouting, 0), ext(ProtoDstOpts, 1), ext(ProtoUDP, 0)
	tooMany := []byte{}
	for range MaxExtHeaders + 1 {
		tooMany = append(tooMany, ext(ProtoDstOpts, 0)...)
	}
	tooMany[len(tooMany)-8] = ProtoUDP
	firstFrag4 := ipv4(ProtoUDP, nil, 0x2000, udp(53, 40000, make([]byte, 64))[:40])
	binary.BigEndian.PutUint16(firstFrag4[20+4:], 8+64) // the datagram's UDP length
	type check func(t *testing.T, f *Frame)
	udpOK := func(t *testing.T, f *Frame) {
		if f.Transport != ProtoUDP || f.UDP.SrcPort != 53 || string(f.UDP.Payload) != string(data) {
			t.Errorf("UDP not decoded: transport %d, %+v", f.Transport, f.UDP)
		}
	}
	for _, tc := range []struct {
		name  string
		frame []byte
		layer string // of the error; "" for none
		why   string
		check check
	}{
		{"802.1Q", eth(EtherTypeVLAN, cat(binary.BigEndian.AppendUint16([]byte{0x20, 0x0a}, EtherTypeIPv4), ipv4(ProtoUDP, nil, 0, u))), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				if f.NumTags != 1 || f.Tags[0].VID() != 10 || f.Tags[0].TPID != EtherTypeVLAN || f.Tags[0].TCI>>13 != 1 {
					t.Errorf("tags %+v", f.Tags[:f.NumTags])
				}
			}},
		{"QinQ", eth(EtherTypeQinQ, ipv6(ProtoUDP, u), 0x0064, EtherTypeVLAN, 0x000a, EtherTypeIPv6), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				if f.NumTags != 2 || f.Tags[0].VID() != 100 || f.Tags[0].TPID != EtherTypeQinQ || f.Tags[1].VID() != 10 {
					t.Errorf("tags %+v", f.Tags[:f.NumTags])
				}
			}},
		{"three tags", eth(EtherTypeVLAN, ipv4(ProtoUDP, nil, 0, u), 1, EtherTypeVLAN, 2, EtherTypeVLAN, 3, EtherTypeIPv4), "802.1Q tag", "more than 2", nil},
		{"truncated tag", eth(EtherTypeVLAN, []byte{0, 1}), "802.1Q tag", "truncated", nil},
		{"runt", macA, "Ethernet", "6 octets", nil},
		{"ARP: not IP, not an error", eth(0x0806, make([]byte, 28)), "", "",
			func(t *testing.T, f *Frame) {
				if f.IP.Version != 0 || f.EtherType != 0x0806 || len(f.Payload) != 28 {
					t.Errorf("ARP decoded as %+v", f)
				}
			}},
		{"IPv4 padded", eth(EtherTypeIPv4, cat(ipv4(ProtoUDP, nil, 0, u), make([]byte, 18))), "", "", udpOK},
		{"IPv4 options", eth(EtherTypeIPv4, ipv4(ProtoUDP, []byte{1, 1, 148, 4, 0, 0, 0, 0}, 0, u)), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				if len(f.IP.Options) != 8 || f.IP.PayloadOffset != 14+28 {
					t.Errorf("options %x, payload at %d", f.IP.Options, f.IP.PayloadOffset)
				}
			}},
		{"IPv4 option overruns", eth(EtherTypeIPv4, ipv4(ProtoUDP, []byte{1, 1, 148, 9}, 0, u)), "IPv4 option", "length 9", nil},
		{"IPv4 option without length", eth(EtherTypeIPv4, ipv4(ProtoUDP, []byte{1, 1, 1, 7}, 0, u)), "IPv4 option", "no length", nil},
		{"IPv4 version 5", eth(EtherTypeIPv4, func() []byte { b := ipv4(ProtoUDP, nil, 0, u); b[0] = 0x55; return b }()), "IPv4", "version 5", nil},
		{"IPv4 header length 16", eth(EtherTypeIPv4, func() []byte { b := ipv4(ProtoUDP, nil, 0, u); b[0] = 0x44; return b }()), "IPv4", "below 20", nil},
		{"IPv4 total length beyond the frame", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, u)[:30]), "IPv4", "exceeds the 30 octets", nil},
		{"IPv4 short", eth(EtherTypeIPv4, make([]byte, 12)), "IPv4", "shorter than the 20-octet header", nil},
		{"IPv4 first fragment", eth(EtherTypeIPv4, firstFrag4), "", "",
			func(t *testing.T, f *Frame) {
				if !f.IP.Fragmented() || !f.IP.Frag.More || f.IP.Frag.Offset != 0 || f.IP.Frag.ID != 0x1234 ||
					f.Transport != ProtoUDP || f.UDP.Length != 72 || len(f.UDP.Payload) != 32 {
					t.Errorf("first fragment: %+v, UDP %+v", f.IP.Frag, f.UDP)
				}
			}},
		{"IPv4 later fragment", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0x0003, u)), "", "",
			func(t *testing.T, f *Frame) {
				if !f.IP.Fragmented() || f.IP.Frag.More || f.IP.Frag.Offset != 24 || f.Transport != 0 {
					t.Errorf("later fragment: %+v, transport %d", f.IP.Frag, f.Transport)
				}
			}},
		{"IPv4 don't-fragment is no fragment", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0x4000, u)), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				if f.IP.Fragmented() {
					t.Error("DF read as a fragment")
				}
			}},
		{"IPv6 hop-by-hop, routing, destination options", eth(EtherTypeIPv6, ipv6(ProtoHopByHop, cat(hbh, rt, dst, u))), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				var types []uint8
				for _, e := range f.IP.ExtHeaders() {
					types = append(types, e.Type)
				}
				if !slices.Equal(types, []uint8{ProtoHopByHop, ProtoRouting, ProtoDstOpts}) || f.IP.PayloadOffset != 14+40+32 {
					t.Errorf("extension headers %v, payload at %d", types, f.IP.PayloadOffset)
				}
			}},
		{"IPv6 hop-by-hop not first", eth(EtherTypeIPv6, ipv6(ProtoDstOpts, cat(ext(ProtoHopByHop, 0), ext(ProtoUDP, 0), u))), "IPv6 extension header", "hop-by-hop", nil},
		{"IPv6 too many extension headers", eth(EtherTypeIPv6, ipv6(ProtoDstOpts, cat(tooMany, u))), "IPv6 extension header", "more than 8", nil},
		{"IPv6 extension header overruns", eth(EtherTypeIPv6, ipv6(ProtoDstOpts, ext(ProtoUDP, 0)[:6])), "IPv6 extension header", "truncated", nil},
		{"IPv6 extension header length", eth(EtherTypeIPv6, ipv6(ProtoDstOpts, cat([]byte{ProtoUDP, 3}, make([]byte, 14)))), "IPv6 extension header", "32 octets long, 16 left", nil},
		{"IPv6 first fragment", eth(EtherTypeIPv6, ipv6(ProtoFragment, cat(fragHdr(ProtoUDP, 0, true), u))), "", "",
			func(t *testing.T, f *Frame) {
				if !f.IP.Fragmented() || !f.IP.Frag.More || f.IP.Frag.ID != 0x5678 || f.Transport != ProtoUDP {
					t.Errorf("first fragment: %+v, transport %d", f.IP.Frag, f.Transport)
				}
			}},
		{"IPv6 later fragment", eth(EtherTypeIPv6, ipv6(ProtoFragment, cat(fragHdr(ProtoUDP, 1448, false), []byte{0, 1, 2, 3, 4, 5, 6, 7}))), "", "",
			func(t *testing.T, f *Frame) {
				if !f.IP.Fragmented() || f.IP.Frag.Offset != 1448 || f.Transport != 0 || f.IP.Protocol != ProtoUDP || len(f.IP.Payload) != 8 {
					t.Errorf("later fragment: %+v, transport %d", f.IP.Frag, f.Transport)
				}
			}},
		{"IPv6 atomic fragment", eth(EtherTypeIPv6, ipv6(ProtoFragment, cat(fragHdr(ProtoUDP, 0, false), u))), "", "",
			func(t *testing.T, f *Frame) {
				udpOK(t, f)
				if !f.IP.Fragmented() {
					t.Error("a fragment header not flagged")
				}
			}},
		{"IPv6 two fragment headers", eth(EtherTypeIPv6, ipv6(ProtoFragment, cat(fragHdr(ProtoFragment, 0, true), fragHdr(ProtoUDP, 0, true), u))), "IPv6 extension header", "second fragment header", nil},
		{"IPv6 payload length beyond the frame", eth(EtherTypeIPv6, ipv6(ProtoUDP, u)[:50]), "IPv6", "exceeds the 10 octets", nil},
		{"IPv6 version 4", eth(EtherTypeIPv6, func() []byte { b := ipv6(ProtoUDP, u); b[0] = 0x40; return b }()), "IPv6", "version 4", nil},
		{"IPv6 ICMPv6: no transport, no error", eth(EtherTypeIPv6, ipv6(58, make([]byte, 8))), "", "",
			func(t *testing.T, f *Frame) {
				if f.IP.Protocol != 58 || f.Transport != 0 {
					t.Errorf("protocol %d, transport %d", f.IP.Protocol, f.Transport)
				}
			}},
		{"UDP length beyond the packet", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, func() []byte { b := udp(53, 1, data); b[5] = 40; return b }())), "UDP", "length 40 exceeds the 16 octets", nil},
		{"UDP length below 8", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, func() []byte { b := udp(53, 1, data); b[5] = 7; return b }())), "UDP", "length 7", nil},
		{"UDP length shorter than the packet", eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, cat(u, []byte{9, 9}))), "", "", udpOK},
		{"UDP truncated", eth(EtherTypeIPv6, ipv6(ProtoUDP, u[:6])), "UDP", "shorter than the 8-octet header", nil},
		{"TCP with options", eth(EtherTypeIPv4, ipv4(ProtoTCP, nil, 0, tcp(53, 40000, []byte{1, 1, 1, 0}, data))), "", "",
			func(t *testing.T, f *Frame) {
				if f.Transport != ProtoTCP || string(f.TCP.Payload) != string(data) || len(f.TCP.Options) != 4 ||
					f.TCP.Seq != 1 || f.TCP.Ack != 2 || f.TCP.Flags != 0x18 || f.TCP.SrcPort != 53 {
					t.Errorf("TCP %+v", f.TCP)
				}
			}},
		{"TCP data offset beyond the segment", eth(EtherTypeIPv4, ipv4(ProtoTCP, nil, 0, tcp(53, 40000, make([]byte, 40), nil)[:40])), "TCP", "data offset 60 exceeds the 40 octets", nil},
		{"TCP data offset below 20", eth(EtherTypeIPv6, ipv6(ProtoTCP, func() []byte { b := tcp(53, 1, nil, data); b[12] = 0x40; return b }())), "TCP", "data offset 16", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var f Frame
			err := Decode(tc.frame, &f)
			if tc.layer == "" {
				if err != nil {
					t.Fatal(err)
				}
			} else {
				var e *Error
				if !errors.As(err, &e) || !errors.Is(err, ErrMalformed) {
					t.Fatalf("err = %v, want an *Error", err)
				}
				if e.Layer != tc.layer || !strings.Contains(e.Reason, tc.why) {
					t.Fatalf("err = %v, want the %s layer, saying %q", err, tc.layer, tc.why)
				}
			}
			if tc.check != nil {
				tc.check(t, &f)
			}
		})
	}
}

// The layers decoded before an error stay in the Frame.
func TestDecodeKeepsLayersBeforeTheError(t *testing.T) {
	b := eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, func() []byte { b := udp(53, 1, nil); b[5] = 99; return b }()))
	var f Frame
	err := Decode(b, &f)
	if err == nil || f.IP.Version != 4 || f.IP.Src != v4a || f.Transport != 0 {
		t.Errorf("err %v, IP %+v, transport %d", err, f.IP, f.Transport)
	}
	if e := err.(*Error); e.Offset != 34 || !strings.Contains(err.Error(), "UDP at offset 34") {
		t.Errorf("error %q at offset %d, want the UDP header's 34", err, e.Offset)
	}
}

func TestFillUDPChecksum(t *testing.T) {
	frames := readFrames(t)
	n := 0
	for name, b := range frames {
		var f Frame
		if err := Decode(b, &f); err != nil || f.Transport != ProtoUDP {
			continue
		}
		n++
		orig := slices.Clone(b)
		valid := checksumOK(&f)
		binary.BigEndian.PutUint16(f.UDP.Header[6:], 0xbeef)
		if !FillUDPChecksum(&f) {
			t.Errorf("%s: not filled", name)
			continue
		}
		if !checksumOK(&f) {
			t.Errorf("%s: checksum %#04x does not verify", name, f.UDP.Checksum)
		}
		if valid && !slices.Equal(b, orig) {
			t.Errorf("%s: checksum %#04x, the sender's was %#04x", name, f.UDP.Checksum, binary.BigEndian.Uint16(orig[f.IP.PayloadOffset+6:]))
		}
		copy(b, orig)
	}
	if n < 20 {
		t.Errorf("only %d UDP frames", n)
	}
	// Not whole datagrams, or without UDP: left alone.
	u := udp(53, 40000, []byte("x"))
	for name, b := range map[string][]byte{
		"IPv4 fragment":               eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0x2000, u)),
		"IPv6 fragment":               eth(EtherTypeIPv6, ipv6(ProtoFragment, cat(fragHdr(ProtoUDP, 0, false), u))),
		"IPv6 routing header":         eth(EtherTypeIPv6, ipv6(ProtoRouting, cat(ext(ProtoUDP, 0), u))),
		"UDP shorter than the packet": eth(EtherTypeIPv4, ipv4(ProtoUDP, nil, 0, cat(u, []byte{0}))),
		"TCP":                         eth(EtherTypeIPv4, ipv4(ProtoTCP, nil, 0, tcp(53, 1, nil, nil))),
	} {
		var f Frame
		_ = Decode(b, &f)
		before := slices.Clone(b)
		if FillUDPChecksum(&f) || !slices.Equal(b, before) {
			t.Errorf("%s: changed", name)
		}
	}
}

// checksumOK verifies a UDP checksum independently of FillUDPChecksum.
func checksumOK(f *Frame) bool {
	var pseudo []byte
	pseudo = append(pseudo, f.IP.Src.AsSlice()...)
	pseudo = append(pseudo, f.IP.Dst.AsSlice()...)
	pseudo = append(pseudo, 0, ProtoUDP)
	pseudo = binary.BigEndian.AppendUint16(pseudo, uint16(len(f.IP.Payload)))
	data := append(pseudo, f.IP.Payload...)
	var s uint32
	for i := 0; i < len(data); i += 2 {
		w := uint32(data[i]) << 8
		if i+1 < len(data) {
			w |= uint32(data[i+1])
		}
		s += w
	}
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return s == 0xffff
}

// FuzzDecode decodes arbitrary frames: it must never panic, every error
// must be an *Error, and what is decoded must be views inside the frame
// that agree with each other.
func FuzzDecode(f *testing.F) {
	for _, b := range readFrames(f) {
		f.Add(b)
	}
	u := udp(53, 40000, []byte("seed"))
	f.Add(eth(EtherTypeQinQ, ipv6(ProtoHopByHop, cat(ext(ProtoFragment, 0), fragHdr(ProtoUDP, 0, true), u)), 1, EtherTypeVLAN, 2, EtherTypeIPv6))
	f.Add(eth(EtherTypeIPv4, ipv4(ProtoTCP, []byte{1, 0}, 0x2000, tcp(53, 1, []byte{2, 4, 5, 0xb4}, []byte("seed")))))
	f.Fuzz(func(t *testing.T, b []byte) {
		in := slices.Clone(b)
		var fr Frame
		err := Decode(b, &fr)
		if !slices.Equal(in, b) {
			t.Fatal("Decode modified the frame")
		}
		if err != nil {
			var e *Error
			if !errors.As(err, &e) || e.Offset < 0 || e.Offset > len(b) || e.Reason == "" {
				t.Fatalf("error %#v", err)
			}
		}
		within := func(what string, v []byte) {
			if len(v) == 0 {
				return
			}
			if o := offsetIn(b, v); o < 0 || o+len(v) > len(b) || &v[len(v)-1] != &b[o+len(v)-1] {
				t.Fatalf("%s is not a view into the frame", what)
			}
		}
		within("IP header", fr.IP.Header)
		within("IP payload", fr.IP.Payload)
		if fr.IP.Version != 0 && len(fr.IP.Payload) > 0 && offsetIn(b, fr.IP.Payload) != fr.IP.PayloadOffset {
			t.Fatalf("payload offset %d, payload at %d", fr.IP.PayloadOffset, offsetIn(b, fr.IP.Payload))
		}
		switch fr.Transport {
		case ProtoUDP:
			within("UDP payload", fr.UDP.Payload)
			if fr.IP.Protocol != ProtoUDP || fr.IP.Frag.Offset != 0 || len(fr.UDP.Payload) > len(fr.IP.Payload)-8 {
				t.Fatalf("UDP in %+v", fr.IP)
			}
		case ProtoTCP:
			within("TCP payload", fr.TCP.Payload)
			if fr.IP.Protocol != ProtoTCP || len(fr.TCP.Header) < 20 || len(fr.TCP.Header)+len(fr.TCP.Payload) != len(fr.IP.Payload) {
				t.Fatalf("TCP in %+v", fr.IP)
			}
		case 0:
		default:
			t.Fatalf("transport %d", fr.Transport)
		}
		if fr.NumTags > MaxTags || fr.IP.NumExt > MaxExtHeaders {
			t.Fatalf("%d tags, %d extension headers", fr.NumTags, fr.IP.NumExt)
		}
		c := slices.Clone(b)
		var fc Frame
		_ = Decode(c, &fc)
		FillUDPChecksum(&fc)
		if len(c) != len(b) {
			t.Fatal("FillUDPChecksum changed the length")
		}
		diff := 0
		for i := range c {
			if c[i] != b[i] {
				diff++
			}
		}
		if diff > 2 {
			t.Fatalf("FillUDPChecksum changed %d octets", diff)
		}
	})
}

// offsetIn is the offset of the view v in b (both non-empty).
func offsetIn(b, v []byte) int {
	for i := range b {
		if &b[i] == &v[0] {
			return i
		}
	}
	return -1
}

// BenchmarkDecode is the decoder alone on captured frames: a DHCPv4 request
// and a DNS answer over IPv6.
func BenchmarkDecode(b *testing.B) {
	frames := readFrames(b)
	for _, name := range []string{"udhcpc-request-mud.bin", "lab-udp6-aaaa.bin", "built-tcp4-cname.bin"} {
		frame := frames[name]
		b.Run(name, func(b *testing.B) {
			var f Frame
			b.ReportAllocs()
			for b.Loop() {
				if err := Decode(frame, &f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}
