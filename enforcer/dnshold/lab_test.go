package dnshold

// The hold table in the kernel: in a lab gateway, answers the gateway sends
// from UDP port 53 out of a listed bridge port to a held device are dropped
// (and counted by the rule) unless they carry the mark; everything else
// passes. The table goes with its socket.

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/openmud/mud/internal/lab/netlab"
	"golang.org/x/sys/unix"
)

// holdLab is a gateway with two devices on its LAN bridge, each listening
// on UDP port 40000.
type holdLab struct {
	lab  *netlab.Lab
	nsFd int
	sink map[*netlab.Host]net.PacketConn
	seq  int
}

func newHoldLab(t *testing.T) *holdLab {
	t.Helper()
	netlab.RequireRoot(t)
	l := &holdLab{lab: netlab.New(t, netlab.Config{Devices: 2, StaticDevices: true}), sink: map[*netlab.Host]net.PacketConn{}}
	h, err := netlab.NSHandle(l.lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	l.nsFd = int(h)
	for _, d := range l.lab.Devices {
		pc, err := netlab.ListenPacket(d.NS, "udp", "[::]:40000")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { pc.Close() })
		l.sink[d] = pc
	}
	return l
}

// answer is a datagram the gateway sends to a device.
type answer struct {
	to      *netlab.Host
	v6      bool
	sport   int
	mark    uint32
	hopOpts bool // IPv6 with a hop-by-hop options header
}

func (a answer) String() string {
	fam := "ipv4"
	if a.v6 {
		fam = "ipv6"
	}
	s := fmt.Sprintf("%s udp from port %d to %s, mark %#x", fam, a.sport, a.to.Port, a.mark)
	if a.hopOpts {
		s += ", hop-by-hop header"
	}
	return s
}

// delivered sends a from the gateway and reports whether the device got
// it within wait.
func (l *holdLab) delivered(t *testing.T, a answer, wait time.Duration) bool {
	t.Helper()
	l.seq++
	payload := fmt.Appendf(nil, "answer %d", l.seq)
	src, dst := netlab.GatewayLAN4, a.to.IPv4
	if a.v6 {
		src, dst = netlab.GatewayLAN6, a.to.IPv6
	}
	lc := net.ListenConfig{Control: func(_, _ string, rc syscall.RawConn) error {
		var serr error
		err := rc.Control(func(fd uintptr) {
			if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(a.mark)); serr != nil || !a.hopOpts {
				return
			}
			// PadN filling the 8-byte header: an extension header that
			// changes nothing but the header chain.
			serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_HOPOPTS, string([]byte{0, 0, 1, 4, 0, 0, 0, 0}))
		})
		if err != nil {
			return err
		}
		return serr
	}}
	var pc net.PacketConn
	if err := netlab.Do(l.lab.GW.NS, func() (err error) {
		pc, err = lc.ListenPacket(context.Background(), "udp", netip.AddrPortFrom(src, uint16(a.sport)).String())
		return err
	}); err != nil {
		t.Fatalf("%v: %v", a, err)
	}
	defer pc.Close()
	if _, err := pc.WriteTo(payload, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, 40000))); err != nil {
		t.Fatalf("%v: %v", a, err)
	}
	sink := l.sink[a.to]
	buf := make([]byte, 64)
	_ = sink.SetReadDeadline(time.Now().Add(wait))
	for {
		n, _, err := sink.ReadFrom(buf)
		if err != nil {
			return false
		}
		if bytes.Equal(buf[:n], payload) {
			return true
		}
	}
}

// expect checks that a is held (dropped) or delivered.
func (l *holdLab) expect(t *testing.T, a answer, held bool) {
	t.Helper()
	if held {
		if l.delivered(t, a, 300*time.Millisecond) {
			t.Errorf("%v: delivered, want held", a)
		}
		return
	}
	if !l.delivered(t, a, 2*time.Second) {
		t.Errorf("%v: held, want delivered", a)
	}
}

// conn is a netlink connection in the lab gateway, for reading the table.
func (l *holdLab) conn(t *testing.T) *nftables.Conn {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(l.nsFd))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// chain returns the table's chain, nil without the table.
func (l *holdLab) chain(t *testing.T) *nftables.Chain {
	t.Helper()
	chains, err := l.conn(t).ListChainsOfTableFamily(nftables.TableFamilyBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range chains {
		if c.Table.Name == TableName && c.Name == "out" {
			return c
		}
	}
	return nil
}

// dropped returns the packets the IPv4 and the IPv6 rule counted.
func (l *holdLab) dropped(t *testing.T) (v4, v6 uint64) {
	t.Helper()
	ch := l.chain(t)
	if ch == nil {
		t.Fatal("no hold chain")
	}
	rules, err := l.conn(t).GetRules(ch.Table, ch)
	if err != nil {
		t.Fatal(err)
	}
	var n []uint64
	for _, r := range rules {
		for _, e := range r.Exprs {
			if c, ok := e.(*expr.Counter); ok {
				n = append(n, c.Packets)
			}
		}
	}
	if len(n) != 2 {
		t.Fatalf("hold chain has %d counters, want 2 (one rule per IP version)", len(n))
	}
	return n[0], n[1]
}

func TestLabHoldTable(t *testing.T) {
	l := newHoldLab(t)
	dev, other := l.lab.Devices[0], l.lab.Devices[1]
	tbl, err := Open(Config{NetNSFd: l.nsFd, Ports: []string{dev.Port}, Devices: [][6]byte{[6]byte(dev.MAC)},
		Mark: DefaultMark, Priority: DefaultPriority})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)

	ch := l.chain(t)
	if ch == nil {
		t.Fatalf("no chain out in table bridge %s", TableName)
	}
	if ch.Type != nftables.ChainTypeFilter || ch.Hooknum == nil || *ch.Hooknum != *nftables.ChainHookOutput ||
		ch.Priority == nil || *ch.Priority != nftables.ChainPriority(DefaultPriority) {
		t.Errorf("chain out: type %s, hook %v, priority %v; want filter, bridge output, %d", ch.Type, ch.Hooknum, ch.Priority, DefaultPriority)
	}

	var want4, want6 uint64
	held := func(a answer, isHeld bool) {
		t.Helper()
		l.expect(t, a, isHeld)
		if isHeld && a.v6 {
			want6++
		} else if isHeld {
			want4++
		}
	}
	// A device held from the start, on a listed port.
	for _, v6 := range []bool{false, true} {
		held(answer{to: dev, v6: v6, sport: 53}, true)
		held(answer{to: dev, v6: v6, sport: 53, mark: DefaultMark}, false)
		held(answer{to: dev, v6: v6, sport: 53, mark: DefaultMark | 0x1}, false)
		held(answer{to: dev, v6: v6, sport: 53, mark: 0x1}, true)
		held(answer{to: dev, v6: v6, sport: 5353}, false)
	}
	// What the capture cannot see is never held.
	held(answer{to: dev, v6: true, sport: 53, hopOpts: true}, false)
	// DNS over TCP passes.
	ln, err := netlab.Listen(l.lab.GW.NS, "tcp", netip.AddrPortFrom(netlab.GatewayLAN4, 53).String())
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		if c, err := ln.Accept(); err == nil {
			_, _ = c.Write([]byte("answer over tcp"))
			c.Close()
		}
	}()
	if c, err := netlab.Dial(dev.NS, "tcp", netip.AddrPortFrom(netlab.GatewayLAN4, 53).String(), 2*time.Second); err != nil {
		t.Errorf("DNS over TCP to a held device: %v", err)
	} else {
		_ = c.SetReadDeadline(time.Now().Add(2 * time.Second))
		buf := make([]byte, 64)
		if n, err := c.Read(buf); string(buf[:n]) != "answer over tcp" {
			t.Errorf("DNS over TCP to a held device: read %q, %v", buf[:n], err)
		}
		c.Close()
	}
	// A held device on a port that is not listed.
	if err := tbl.Add([6]byte(other.MAC)); err != nil {
		t.Fatal(err)
	}
	held(answer{to: other, sport: 53}, false)
	// Removed, then added again (twice: a MAC already held stays held).
	if err := tbl.Remove([6]byte(dev.MAC)); err != nil {
		t.Fatal(err)
	}
	held(answer{to: dev, sport: 53}, false)
	held(answer{to: dev, v6: true, sport: 53}, false)
	if err := tbl.Remove([6]byte(dev.MAC)); err == nil {
		t.Error("removing a MAC that is not held succeeded")
	}
	for range 2 {
		if err := tbl.Add([6]byte(dev.MAC)); err != nil {
			t.Fatal(err)
		}
	}
	held(answer{to: dev, sport: 53}, true)
	if v4, v6 := l.dropped(t); v4 != want4 || v6 != want6 {
		t.Errorf("the rules counted %d IPv4 and %d IPv6 drops, want %d and %d", v4, v6, want4, want6)
	}

	// Another mudd in the namespace is refused, and takes nothing over.
	if t2, err := Open(Config{NetNSFd: l.nsFd, Ports: []string{dev.Port}, Mark: DefaultMark, Priority: DefaultPriority}); err == nil {
		t2.Close()
		t.Error("a second hold table opened in the same namespace")
	} else if !strings.Contains(err.Error(), "another mudd") {
		t.Errorf("second Open: %v; want it to say another mudd holds the table", err)
	}
	held(answer{to: dev, sport: 53}, true)

	// The table goes with its socket.
	tbl.Close()
	if l.chain(t) != nil {
		t.Fatal("hold table still there after Close")
	}
	held(answer{to: dev, sport: 53}, false)
	if err := tbl.Add([6]byte(dev.MAC)); err == nil {
		t.Error("Add on a closed table succeeded")
	}

	// A table of that name made with nft is not taken over either.
	c := l.conn(t)
	c.AddTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}
	if t2, err := Open(Config{NetNSFd: l.nsFd, Ports: []string{dev.Port}, Mark: DefaultMark, Priority: DefaultPriority}); err == nil {
		t2.Close()
		t.Error("Open took over a table made with nft")
	} else if !strings.Contains(err.Error(), "is not mudd's") {
		t.Errorf("Open over a table made with nft: %v; want it to say the table is not mudd's", err)
	}
	if l.chain(t) != nil {
		t.Error("Open added its chain to a table made with nft")
	}
	c.DelTable(&nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge})
	if err := c.Flush(); err != nil {
		t.Fatal(err)
	}

	// Another mark and priority.
	tbl, err = Open(Config{NetNSFd: l.nsFd, Ports: []string{dev.Port, other.Port}, Devices: [][6]byte{[6]byte(dev.MAC)},
		Mark: 0x1, Priority: -250})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(tbl.Close)
	if ch := l.chain(t); ch == nil || ch.Priority == nil || *ch.Priority != -250 {
		t.Errorf("chain out with priority -250 configured: %+v", ch)
	}
	held(answer{to: dev, sport: 53, mark: 0x1}, false)
	held(answer{to: dev, sport: 53, mark: DefaultMark}, true)
	held(answer{to: other, sport: 53}, false)
}

func TestOpenRefusesZeroMark(t *testing.T) {
	if tbl, err := Open(Config{Ports: []string{"lan1"}, Priority: DefaultPriority}); err == nil {
		tbl.Close()
		t.Fatal("Open accepted a zero mark: no held answer could ever be released")
	}
}

// A gateway with many devices starts holding all of them in one
// transaction: the MACs go into the set in messages that each stay within
// netlink's 64 KiB, and the device listed last is held.
func TestOpenHoldsManyDevices(t *testing.T) {
	l := newHoldLab(t)
	dev := l.lab.Devices[0]
	const n = 20000
	macs := make([][6]byte, 0, n)
	for i := range n - 1 {
		macs = append(macs, [6]byte{0x02, 0x00, 0x5e, byte(i >> 16), byte(i >> 8), byte(i)})
	}
	macs = append(macs, [6]byte(dev.MAC))
	tbl, err := Open(Config{NetNSFd: l.nsFd, Ports: []string{dev.Port}, Devices: macs, Mark: DefaultMark, Priority: DefaultPriority})
	if err != nil {
		t.Fatalf("opening the hold table with %d devices: %v", n, err)
	}
	t.Cleanup(tbl.Close)
	set, err := l.conn(t).GetSetByName(&nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}, "hold")
	if err != nil {
		t.Fatal(err)
	}
	elems, err := l.conn(t).GetSetElements(set)
	if err != nil {
		t.Fatal(err)
	}
	if len(elems) != n {
		t.Errorf("the hold set has %d MACs, want %d", len(elems), n)
	}
	l.expect(t, answer{to: dev, sport: 53}, true)
}
