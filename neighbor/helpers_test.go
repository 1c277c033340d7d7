package neighbor

import (
	"encoding/binary"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/internal/packet"
)

// Test addresses: the lab's (documentation ranges).
var (
	macA  = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x01}
	macB  = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x02}
	macC  = net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x03}
	macGW = net.HardwareAddr{0x02, 0, 0, 0, 0x00, 0xfe}
	bcast = net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}

	lan4 = netip.MustParsePrefix("192.0.2.0/24")
	lan6 = netip.MustParsePrefix("2001:db8:1::/64")

	t0 = time.Date(2030, 1, 2, 3, 4, 5, 0, time.UTC)
)

func addr(s string) netip.Addr { return netip.MustParseAddr(s) }

func key(mac net.HardwareAddr) macKey { return macKey(mac) }

// ether builds an Ethernet II frame.
func ether(src, dst net.HardwareAddr, et uint16, payload []byte) []byte {
	b := append(append(append([]byte{}, dst...), src...), byte(et>>8), byte(et))
	return append(b, payload...)
}

// arpFrame builds an Ethernet/IPv4 ARP packet from sha, broadcast for a
// request and to tha for a reply.
func arpFrame(op uint16, sha net.HardwareAddr, spa netip.Addr, tha net.HardwareAddr, tpa netip.Addr) []byte {
	p := []byte{0, 1, 0x08, 0, 6, 4, 0, byte(op)}
	p = append(p, sha...)
	p = append(p, spa.AsSlice()...)
	p = append(p, tha...)
	p = append(p, tpa.AsSlice()...)
	dst := bcast
	if op == 2 {
		dst = tha
	}
	return ether(sha, dst, etherTypeARP, append(p, make([]byte, 18)...)) // padded to 60 octets
}

// garp is a gratuitous ARP request: sender and target address a.
func garp(mac net.HardwareAddr, a netip.Addr) []byte {
	return arpFrame(1, mac, a, make(net.HardwareAddr, 6), a)
}

// arpProbe is an RFC 5227 probe for a.
func arpProbe(mac net.HardwareAddr, a netip.Addr) []byte {
	return arpFrame(1, mac, netip.IPv4Unspecified(), make(net.HardwareAddr, 6), a)
}

// ndFrame wraps an ICMPv6 message (checksum filled in) in IPv6 with hop
// limit 255 and Ethernet; the Ethernet destination is the group's MAC for
// a multicast destination (RFC 2464 §7), dstMAC otherwise.
func ndFrame(srcMAC, dstMAC net.HardwareAddr, src, dst netip.Addr, icmp []byte) []byte {
	icmp = append([]byte(nil), icmp...)
	c := packet.Checksum6(src, dst, protoICMPv6, icmp)
	binary.BigEndian.PutUint16(icmp[2:4], c)
	ip := make([]byte, 40, 40+len(icmp))
	ip[0] = 0x60
	binary.BigEndian.PutUint16(ip[4:6], uint16(len(icmp)))
	ip[6], ip[7] = protoICMPv6, 255
	copy(ip[8:24], src.AsSlice())
	copy(ip[24:40], dst.AsSlice())
	if dst.IsMulticast() {
		d := dst.As16()
		dstMAC = net.HardwareAddr{0x33, 0x33, d[12], d[13], d[14], d[15]}
	}
	return ether(srcMAC, dstMAC, packet.EtherTypeIPv6, append(ip, icmp...))
}

// llOpt is a link-layer address option (1 source, 2 target).
func llOpt(typ byte, mac net.HardwareAddr) []byte { return append([]byte{typ, 1}, mac...) }

// icmpMsg is an ICMPv6 message: type, code 0, checksum 0, the 4 octets
// after it, the target (if valid) and the options.
func icmpMsg(typ byte, word uint32, target netip.Addr, opts ...[]byte) []byte {
	b := []byte{typ, 0, 0, 0}
	b = binary.BigEndian.AppendUint32(b, word)
	if target.IsValid() {
		b = append(b, target.AsSlice()...)
	}
	for _, o := range opts {
		b = append(b, o...)
	}
	return b
}

// dadNS is mac's Duplicate Address Detection solicitation for target.
func dadNS(mac net.HardwareAddr, target netip.Addr) []byte {
	return ndFrame(mac, nil, netip.IPv6Unspecified(), solicitedNode(target), icmpMsg(icmpNS, 0, target))
}

// ns is a Neighbor Solicitation from src for target.
func ns(mac net.HardwareAddr, src, target netip.Addr) []byte {
	return ndFrame(mac, nil, src, solicitedNode(target), icmpMsg(icmpNS, 0, target, llOpt(optSourceLL, mac)))
}

// unsolicitedNA is an override advertisement of target to all nodes.
func unsolicitedNA(mac net.HardwareAddr, src, target netip.Addr) []byte {
	return ndFrame(mac, nil, src, addr("ff02::1"), icmpMsg(icmpNA, 0x20<<24, target, llOpt(optTargetLL, mac)))
}

// solicitedNA answers a solicitation from dst.
func solicitedNA(mac, dstMAC net.HardwareAddr, target, dst netip.Addr) []byte {
	return ndFrame(mac, dstMAC, target, dst, icmpMsg(icmpNA, 0x60<<24, target, llOpt(optTargetLL, mac)))
}

// rs is a Router Solicitation from src.
func rs(mac net.HardwareAddr, src netip.Addr) []byte {
	var opts [][]byte
	if !src.IsUnspecified() {
		opts = append(opts, llOpt(optSourceLL, mac))
	}
	return ndFrame(mac, nil, src, addr("ff02::2"), icmpMsg(icmpRS, 0, netip.Addr{}, opts...))
}

// ra is a Router Advertisement from the gateway announcing prefix for
// SLAAC (on-link and autonomous), with the given lifetimes in seconds.
func ra(mac net.HardwareAddr, src netip.Addr, prefix netip.Prefix, valid, preferred uint32) []byte {
	pio := []byte{3, 4, byte(prefix.Bits()), 0xc0}
	pio = binary.BigEndian.AppendUint32(pio, valid)
	pio = binary.BigEndian.AppendUint32(pio, preferred)
	pio = append(pio, 0, 0, 0, 0)
	pio = append(pio, prefix.Addr().AsSlice()...)
	// Hop limit 64, no flags, router lifetime 0 (not a default router):
	// the prefix is what matters.
	msg := icmpMsg(icmpRA, 64<<24, netip.Addr{}, []byte{0, 0, 0, 0, 0, 0, 0, 0}, pio, llOpt(optSourceLL, mac))
	return ndFrame(mac, nil, src, addr("ff02::1"), msg)
}

// testdataFrames reads the captured frames under testdata/frames.
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

// clock is a clock the test moves, safe for a running learner to read.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}
