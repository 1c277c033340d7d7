package enforcer

import (
	"encoding/binary"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"golang.org/x/sys/unix"
)

// Hand-made TCP segments, for what a socket cannot send (a bare ACK, a SYN
// with chosen flags, a VLAN tag), sent as Ethernet frames from a lab host
// and counted where they arrive.

// TCP flags.
const tcpSYN, tcpACK = 0x02, 0x10

type tcpProbe struct {
	srcMAC, dstMAC net.HardwareAddr
	vlan           uint16 // 802.1Q VLAN id; 0: untagged
	src, dst       netip.Addr
	sport, dport   uint16
	flags          byte
	window         uint16
}

func csumAdd(sum uint32, b []byte) uint32 {
	for i := 0; i+1 < len(b); i += 2 {
		sum += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		sum += uint32(b[len(b)-1]) << 8
	}
	return sum
}

func csumFold(sum uint32) uint16 {
	for sum>>16 != 0 {
		sum = sum&0xffff + sum>>16
	}
	return ^uint16(sum)
}

func (p tcpProbe) frame() []byte {
	win := p.window
	if win == 0 {
		win = 64240
	}
	tcp := make([]byte, 20)
	binary.BigEndian.PutUint16(tcp[0:], p.sport)
	binary.BigEndian.PutUint16(tcp[2:], p.dport)
	binary.BigEndian.PutUint32(tcp[4:], 0x01020304)
	if p.flags&tcpACK != 0 {
		binary.BigEndian.PutUint32(tcp[8:], 0x0a0b0c0d)
	}
	tcp[12] = 5 << 4
	tcp[13] = p.flags
	binary.BigEndian.PutUint16(tcp[14:], win)
	src, dst := p.src.AsSlice(), p.dst.AsSlice()
	// pseudo-header checksum
	sum := csumAdd(0, src)
	sum = csumAdd(sum, dst)
	sum += 6 + uint32(len(tcp))
	binary.BigEndian.PutUint16(tcp[16:], csumFold(csumAdd(sum, tcp)))
	var ip []byte
	et := uint16(unix.ETH_P_IP)
	if p.src.Is4() {
		ip = make([]byte, 20)
		ip[0] = 0x45
		binary.BigEndian.PutUint16(ip[2:], uint16(20+len(tcp)))
		binary.BigEndian.PutUint16(ip[4:], 0x1234)
		ip[6] = 0x40 // DF
		ip[8], ip[9] = 64, 6
		copy(ip[12:], src)
		copy(ip[16:], dst)
		binary.BigEndian.PutUint16(ip[10:], csumFold(csumAdd(0, ip)))
	} else {
		et = unix.ETH_P_IPV6
		ip = make([]byte, 40)
		ip[0] = 0x60
		binary.BigEndian.PutUint16(ip[4:], uint16(len(tcp)))
		ip[6], ip[7] = 6, 64
		copy(ip[8:], src)
		copy(ip[24:], dst)
	}
	f := append(append([]byte{}, p.dstMAC...), p.srcMAC...)
	if p.vlan != 0 {
		f = binary.BigEndian.AppendUint16(f, unix.ETH_P_8021Q)
		f = binary.BigEndian.AppendUint16(f, p.vlan)
	}
	f = binary.BigEndian.AppendUint16(f, et)
	return append(append(f, ip...), tcp...)
}

func htons(v uint16) uint16 { return v<<8 | v>>8 }

// packetSocket opens an AF_PACKET socket bound to iface inside ns.
func packetSocket(t *testing.T, ns, iface string) (int, int) {
	t.Helper()
	var fd, idx int
	err := netlab.Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err != nil {
			return err
		}
		idx = ifi.Index
		fd, err = unix.Socket(unix.AF_PACKET, unix.SOCK_RAW, int(htons(unix.ETH_P_ALL)))
		if err != nil {
			return err
		}
		return unix.Bind(fd, &unix.SockaddrLinklayer{Protocol: htons(unix.ETH_P_ALL), Ifindex: idx})
	})
	if err != nil {
		t.Fatalf("packet socket on %s in %s: %v", iface, ns, err)
	}
	return fd, idx
}

// sendFrames sends Ethernet frames out of the host's interface.
func sendFrames(t *testing.T, h *netlab.Host, frames ...[]byte) {
	t.Helper()
	fd, idx := packetSocket(t, h.NS, h.Iface)
	defer unix.Close(fd)
	for _, f := range frames {
		if err := unix.Sendto(fd, f, 0, &unix.SockaddrLinklayer{Ifindex: idx, Halen: 6}); err != nil {
			t.Fatalf("sending a frame from %s: %v", h.NS, err)
		}
	}
}

// tcpCounter counts the TCP segments to one port arriving at a host, by
// their flags.
type tcpCounter struct {
	fd   int
	mu   sync.Mutex
	seen map[byte]int
	wg   sync.WaitGroup
	stop atomic.Bool
}

func countTCP(t *testing.T, h *netlab.Host, dport uint16) *tcpCounter {
	t.Helper()
	fd, _ := packetSocket(t, h.NS, h.Iface)
	_ = unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	c := &tcpCounter{fd: fd, seen: map[byte]int{}}
	c.wg.Add(1)
	go func() {
		defer c.wg.Done()
		buf := make([]byte, 2048)
		for !c.stop.Load() {
			n, from, err := unix.Recvfrom(fd, buf, 0)
			if err != nil {
				continue
			}
			if ll, ok := from.(*unix.SockaddrLinklayer); ok && ll.Pkttype == unix.PACKET_OUTGOING {
				continue
			}
			if flags, ok := tcpTo(buf[:n], dport); ok {
				c.mu.Lock()
				c.seen[flags]++
				c.mu.Unlock()
			}
		}
	}()
	t.Cleanup(c.close)
	return c
}

func (c *tcpCounter) close() {
	if !c.stop.Swap(true) {
		c.wg.Wait()
		unix.Close(c.fd)
	}
}

func (c *tcpCounter) count(flags byte) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.seen[flags]
}

// tcpTo returns the flags of a frame's TCP segment to dport.
func tcpTo(f []byte, dport uint16) (byte, bool) {
	if len(f) < 14 {
		return 0, false
	}
	et, p := binary.BigEndian.Uint16(f[12:]), f[14:]
	if et == unix.ETH_P_8021Q && len(p) >= 4 {
		et, p = binary.BigEndian.Uint16(p[2:]), p[4:]
	}
	var l4 []byte
	switch {
	case et == unix.ETH_P_IP && len(p) >= 20 && p[9] == 6:
		l4 = p[int(p[0]&0x0f)*4:]
	case et == unix.ETH_P_IPV6 && len(p) >= 40 && p[6] == 6:
		l4 = p[40:]
	default:
		return 0, false
	}
	if len(l4) < 20 || binary.BigEndian.Uint16(l4[2:]) != dport {
		return 0, false
	}
	return l4[13], true
}

// settle waits for frames in flight to arrive.
func settle() { time.Sleep(300 * time.Millisecond) }

// bridgeMAC is the gateway's LAN bridge MAC now (a bridge takes a port's
// address as ports join, so the lab's record of it can be stale).
func bridgeMAC(t *testing.T, lab *netlab.Lab) net.HardwareAddr {
	t.Helper()
	var mac net.HardwareAddr
	if err := netlab.Do(lab.GW.NS, func() error {
		ifi, err := net.InterfaceByName(netlab.LANBridge)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	return mac
}
