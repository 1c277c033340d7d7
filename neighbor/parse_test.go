package neighbor

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/packet"
)

// Each kind of frame claims what its sender holds: ARP its sender address
// (a probe its target, tentatively), an NS or RS its source, an NA its
// target and source, DAD its target, tentatively.
func TestParseClaims(t *testing.T) {
	a4, b4 := addr("192.0.2.11"), addr("192.0.2.12")
	a6, ll := addr("2001:db8:1::11"), addr("fe80::ff:fe00:101")
	for _, tc := range []struct {
		name       string
		frame      []byte
		typ        MsgType
		claims     []netip.Addr
		source     Source
		tentative  bool
		gratuitous bool
	}{
		{"arp request", arpFrame(1, macA, a4, make(net.HardwareAddr, 6), b4), ARPRequest, []netip.Addr{a4}, SourceARP, false, false},
		{"arp reply", arpFrame(2, macA, a4, macB, b4), ARPReply, []netip.Addr{a4}, SourceARP, false, false},
		{"gratuitous arp", garp(macA, a4), ARPRequest, []netip.Addr{a4}, SourceARP, false, true},
		{"gratuitous arp reply", arpFrame(2, macA, a4, bcast, a4), ARPReply, []netip.Addr{a4}, SourceARP, false, true},
		{"arp probe", arpProbe(macA, a4), ARPProbe, []netip.Addr{a4}, SourceDAD, true, false},
		{"dad", dadNS(macA, a6), DADSolicitation, []netip.Addr{a6}, SourceDAD, true, false},
		{"ns", ns(macA, a6, addr("2001:db8:1::1")), NeighborSolicitation, []netip.Addr{a6}, SourceND, false, false},
		{"ns from link-local", ns(macA, ll, addr("fe80::1")), NeighborSolicitation, []netip.Addr{ll}, SourceND, false, false},
		{"unsolicited na", unsolicitedNA(macA, ll, a6), NeighborAdvertisement, []netip.Addr{a6, ll}, SourceND, false, true},
		{"solicited na", solicitedNA(macA, macGW, a6, addr("2001:db8:1::1")), NeighborAdvertisement, []netip.Addr{a6}, SourceND, false, false},
		{"rs", rs(macA, ll), RouterSolicitation, []netip.Addr{ll}, SourceND, false, false},
		{"rs from ::", rs(macA, netip.IPv6Unspecified()), RouterSolicitation, nil, SourceND, false, false},
	} {
		var m Message
		if err := ParseFrame(tc.frame, &m); err != nil {
			t.Errorf("%s: %v", tc.name, err)
			continue
		}
		if m.Type != tc.typ || !slices.Equal(m.Claims(), tc.claims) || m.Source() != tc.source ||
			m.Tentative() != tc.tentative || m.Gratuitous != tc.gratuitous || net.HardwareAddr(m.MAC[:]).String() != macA.String() {
			t.Errorf("%s: got %v %v source %s tentative %v gratuitous %v from %v; want %v %v %s %v %v",
				tc.name, m.Type, m.Claims(), m.Source(), m.Tentative(), m.Gratuitous, net.HardwareAddr(m.MAC[:]),
				tc.typ, tc.claims, tc.source, tc.tentative, tc.gratuitous)
		}
	}
}

// A frame that breaks a rule claims nothing, whatever else it says.
func TestParseRefuses(t *testing.T) {
	a4, a6, gw := addr("192.0.2.11"), addr("2001:db8:1::11"), addr("2001:db8:1::1")
	edit := func(b []byte, f func([]byte)) []byte { b = append([]byte(nil), b...); f(b); return b }
	// reSum recomputes the ICMPv6 checksum of an edited ND frame.
	reSum := func(b []byte) []byte {
		icmp := b[54:]
		icmp[2], icmp[3] = 0, 0
		c := checksum(b)
		binary.BigEndian.PutUint16(icmp[2:4], c)
		return b
	}
	for _, tc := range []struct {
		name  string
		frame []byte
	}{
		{"arp sender is not the frame's source", edit(garp(macA, a4), func(b []byte) { copy(b[6:12], macB) })},
		{"arp from a multicast MAC", edit(garp(macA, a4), func(b []byte) { b[6] |= 1; b[22] |= 1 })},
		{"arp for IPv6", edit(garp(macA, a4), func(b []byte) { b[16] = 0x86 })},
		{"arp operation 3", edit(garp(macA, a4), func(b []byte) { b[21] = 3 })},
		{"arp truncated", garp(macA, a4)[:14+27]},
		{"arp from 255.255.255.255", garp(macA, addr("255.255.255.255"))},
		{"arp probe for a multicast address", arpProbe(macA, addr("224.0.0.1"))},
		{"hop limit 64", edit(dadNS(macA, a6), func(b []byte) { b[21] = 64 })},
		{"code 1", reSum(edit(dadNS(macA, a6), func(b []byte) { b[55] = 1 }))},
		{"bad checksum", edit(dadNS(macA, a6), func(b []byte) { b[57] ^= 1 })},
		{"dad to another group", ndFrame(macA, nil, netip.IPv6Unspecified(), addr("ff02::1"), icmpMsg(icmpNS, 0, a6))},
		{"dad with a source link-layer option", ndFrame(macA, nil, netip.IPv6Unspecified(), solicitedNode(a6), icmpMsg(icmpNS, 0, a6, llOpt(optSourceLL, macA)))},
		{"ns for a multicast target", ns(macA, a6, addr("ff02::1"))},
		{"ns option of length 0", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, gw, []byte{1, 0, 0, 0, 0, 0, 0, 0}))},
		{"ns option past the end", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, gw, []byte{1, 2, 0, 0, 0, 0, 0, 0}))},
		{"ns option truncated", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, gw, []byte{1}))},
		{"ns source option of another MAC", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, gw, llOpt(optSourceLL, macB)))},
		{"ns link-layer option of 16 octets", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, gw, append(llOpt(optSourceLL, macA)[:1:1], append([]byte{2}, make([]byte, 14)...)...)))},
		{"ns truncated", ndFrame(macA, nil, a6, solicitedNode(gw), icmpMsg(icmpNS, 0, netip.Addr{}))},
		{"na target option of another MAC", ndFrame(macA, nil, a6, addr("ff02::1"), icmpMsg(icmpNA, 0x20<<24, a6, llOpt(optTargetLL, macB)))},
		{"solicited na to all nodes", ndFrame(macA, nil, a6, addr("ff02::1"), icmpMsg(icmpNA, 0x60<<24, a6))},
		{"na from ::", ndFrame(macA, nil, netip.IPv6Unspecified(), addr("ff02::1"), icmpMsg(icmpNA, 0, a6))},
		{"na for a multicast target", unsolicitedNA(macA, a6, addr("ff02::2"))},
		{"rs from :: with a link-layer option", ndFrame(macA, nil, netip.IPv6Unspecified(), addr("ff02::2"), icmpMsg(icmpRS, 0, netip.Addr{}, llOpt(optSourceLL, macA)))},
		{"nd after an extension header", func() []byte {
			b := unsolicitedNA(macA, a6, a6)
			// Insert an empty destination options header.
			out := append([]byte(nil), b[:54]...)
			out[20] = 60
			binary.BigEndian.PutUint16(out[18:20], uint16(len(b)-54+8))
			out = append(out, protoICMPv6, 0, 1, 4, 0, 0, 0, 0)
			return append(out, b[54:]...)
		}()},
		{"ethernet truncated", []byte{1, 2, 3}},
		{"ipv6 truncated", dadNS(macA, a6)[:40]},
	} {
		var m Message
		err := ParseFrame(tc.frame, &m)
		if !errors.Is(err, ErrMalformed) {
			t.Errorf("%s: err = %v, want ErrMalformed", tc.name, err)
		}
		for _, r := range err.Error() {
			if r < 0x20 || r == 0x7f {
				t.Errorf("%s: control character in %q", tc.name, err)
			}
		}
	}
	// Not neighbour discovery at all.
	var m Message
	for name, f := range map[string][]byte{
		"ipv4 udp":      ether(macA, bcast, 0x0800, append([]byte{0x45, 0, 0, 28, 0, 0, 0, 0, 64, 17, 0, 0, 192, 0, 2, 11, 192, 0, 2, 1}, 0, 9, 0, 9, 0, 8, 0, 0)),
		"router advert": ra(macGW, addr("fe80::1"), lan6, 3600, 1800),
		"lldp":          ether(macA, bcast, 0x88cc, make([]byte, 40)),
	} {
		if err := ParseFrame(f, &m); !errors.Is(err, ErrNotNeighbor) {
			t.Errorf("%s: err = %v, want ErrNotNeighbor", name, err)
		}
	}
}

// checksum is the ICMPv6 checksum of an ND frame built by ndFrame.
func checksum(b []byte) uint16 {
	src, _ := netip.AddrFromSlice(b[22:38])
	dst, _ := netip.AddrFromSlice(b[38:54])
	return packet.Checksum6(src, dst, protoICMPv6, b[54:])
}

// A VLAN-tagged frame is read past its tag, and a frame whose checksum the
// kernel says is still to be filled in is read without checking it.
func TestParseTaggedAndPartial(t *testing.T) {
	a6 := addr("2001:db8:1::11")
	f := dadNS(macA, a6)
	tagged := append(append(append([]byte(nil), f[:12]...), 0x81, 0x00, 0x00, 0x0a), f[12:]...)
	var m Message
	if err := ParseFrame(tagged, &m); err != nil || m.Type != DADSolicitation || m.Addrs[0] != a6 {
		t.Errorf("tagged: %v %+v", err, m)
	}
	partial := append([]byte(nil), f...)
	partial[56], partial[57] = 0x12, 0x34
	if err := ParseFrame(partial, &m); !errors.Is(err, ErrMalformed) {
		t.Errorf("bad checksum checked: %v", err)
	}
	if err := parse(partial, &m, false); err != nil || m.Type != DADSolicitation {
		t.Errorf("bad checksum not checked: %v", err)
	}
}

// Real frames Linux hosts, busybox and the gateway's kernel sent in the
// lab (testdata/frames/README.md) parse as what they are.
func TestParseCaptured(t *testing.T) {
	frames := testdataFrames(t)
	for _, tc := range []struct {
		file       string
		typ        MsgType
		claims     []string
		gratuitous bool
	}{
		{"busybox-arp-gratuitous.bin", ARPRequest, []string{"192.0.2.11"}, true},
		{"busybox-arp-probe.bin", ARPProbe, []string{"192.0.2.50"}, false},
		{"gateway-arp-reply.bin", ARPReply, []string{"192.0.2.1"}, false},
		{"gateway-arp-request.bin", ARPRequest, []string{"192.0.2.1"}, false},
		{"gateway-na.bin", NeighborAdvertisement, []string{"2001:db8:1::1"}, false},
		{"gateway-ns.bin", NeighborSolicitation, []string{"2001:db8:1::1"}, false},
		{"linux-arp-reply.bin", ARPReply, []string{"192.0.2.12"}, false},
		{"linux-arp-request.bin", ARPRequest, []string{"192.0.2.11"}, false},
		{"linux-dad-linklocal.bin", DADSolicitation, []string{"fe80::ff:fe00:101"}, false},
		{"linux-dad-privacy.bin", DADSolicitation, []string{"2001:db8:1:0:1fde:275b:f15b:a88e"}, false},
		{"linux-dad-slaac.bin", DADSolicitation, []string{"2001:db8:1::ff:fe00:101"}, false},
		{"linux-dad-static.bin", DADSolicitation, []string{"2001:db8:1:0:11a4:fb04:7b96:25bc"}, false},
		{"linux-na-defends-dad.bin", NeighborAdvertisement, []string{"2001:db8:1::b"}, true},
		{"linux-na-solicited.bin", NeighborAdvertisement, []string{"2001:db8:1:0:a41d:cb2:9bbb:ede0"}, false},
		{"linux-ns-global.bin", NeighborSolicitation, []string{"2001:db8:1:0:11a4:fb04:7b96:25bc"}, false},
		{"linux-rs.bin", RouterSolicitation, []string{"fe80::ff:fe00:101"}, false},
	} {
		b, ok := frames[tc.file]
		if !ok {
			t.Errorf("%s: missing", tc.file)
			continue
		}
		delete(frames, tc.file)
		var m Message
		if err := ParseFrame(b, &m); err != nil {
			t.Errorf("%s: %v", tc.file, err)
			continue
		}
		var got []string
		for _, a := range m.Claims() {
			got = append(got, a.String())
		}
		if m.Type != tc.typ || !slices.Equal(got, tc.claims) || m.Gratuitous != tc.gratuitous {
			t.Errorf("%s: %v %v gratuitous %v, want %v %v %v", tc.file, m.Type, got, m.Gratuitous, tc.typ, tc.claims, tc.gratuitous)
		}
		if strings.HasPrefix(tc.file, "linux-") || strings.HasPrefix(tc.file, "busybox-") {
			if mac := net.HardwareAddr(m.MAC[:]).String(); !strings.HasPrefix(mac, "02:00:00:00:01:0") {
				t.Errorf("%s: from %s", tc.file, mac)
			}
		}
	}
	for name := range frames {
		t.Errorf("%s: no expectation", name)
	}
}

func TestMsgTypeString(t *testing.T) {
	if s := DADSolicitation.String(); s != "dad-solicitation" {
		t.Error(s)
	}
	if s := MsgType(99).String(); s != "MsgType(99)" {
		t.Error(s)
	}
}
