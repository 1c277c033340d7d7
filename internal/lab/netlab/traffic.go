package netlab

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/icmp"
	"golang.org/x/net/ipv4"
	"golang.org/x/net/ipv6"
)

// Echo is a TCP and UDP echo server inside a namespace, for reachability
// tests. Close stops it; the lab does not need to.
type Echo struct {
	tcp      net.Listener
	udp      net.PacketConn
	wg       sync.WaitGroup
	received atomic.Int64
}

// Received is the number of bytes the server has received so far (TCP and
// UDP).
func (e *Echo) Received() int64 { return e.received.Load() }

// countingReader counts what passes through it.
type countingReader struct {
	r io.Reader
	n *atomic.Int64
}

func (c countingReader) Read(b []byte) (int, error) {
	n, err := c.r.Read(b)
	c.n.Add(int64(n))
	return n, err
}

// ServeEcho starts TCP and UDP echo servers on addr ("[::]:8080" listens on
// both families) inside namespace ns.
func ServeEcho(ns, addr string) (*Echo, error) {
	e := &Echo{}
	var err error
	if e.tcp, err = Listen(ns, "tcp", addr); err != nil {
		return nil, fmt.Errorf("echo tcp listen in %s: %w", ns, err)
	}
	if e.udp, err = ListenPacket(ns, "udp", addr); err != nil {
		e.tcp.Close()
		return nil, fmt.Errorf("echo udp listen in %s: %w", ns, err)
	}
	e.wg.Add(2)
	go func() {
		defer e.wg.Done()
		for {
			c, err := e.tcp.Accept()
			if err != nil {
				return
			}
			e.wg.Add(1)
			go func() {
				defer e.wg.Done()
				defer c.Close()
				_, _ = io.Copy(c, countingReader{c, &e.received})
			}()
		}
	}()
	go func() {
		defer e.wg.Done()
		buf := make([]byte, 2048)
		for {
			n, from, err := e.udp.ReadFrom(buf)
			if err != nil {
				return
			}
			e.received.Add(int64(n))
			_, _ = e.udp.WriteTo(buf[:n], from)
		}
	}()
	return e, nil
}

// Close stops the servers. Connections still open are closed by their peers
// or when the namespace goes away.
func (e *Echo) Close() {
	e.tcp.Close()
	e.udp.Close()
}

// TCPEcho connects from ns to addr, sends a line and expects it back within
// timeout. A nil error means the flow passed in both directions.
func TCPEcho(ns string, addr netip.AddrPort, timeout time.Duration) error {
	c, err := Dial(ns, "tcp", addr.String(), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, timeout)
}

// UDPEcho sends a datagram from ns to addr and expects the echo within timeout.
func UDPEcho(ns string, addr netip.AddrPort, timeout time.Duration) error {
	c, err := Dial(ns, "udp", addr.String(), timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, timeout)
}

func roundTrip(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("mud-lab-probe\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	if _, err := io.ReadFull(c, got); err != nil {
		return err
	}
	if string(got) != string(msg) {
		return fmt.Errorf("echo mismatch: %q", got)
	}
	return nil
}

// Ping sends one ICMP or ICMPv6 echo request from ns to dst and waits for the
// reply.
func Ping(ns string, dst netip.Addr, timeout time.Duration) error {
	network, laddr, typ, proto := "ip4:icmp", "0.0.0.0", icmp.Type(ipv4.ICMPTypeEcho), 1
	if dst.Is6() {
		network, laddr, typ, proto = "ip6:ipv6-icmp", "::", ipv6.ICMPTypeEchoRequest, 58
	}
	var pc *icmp.PacketConn
	if err := Do(ns, func() (err error) {
		pc, err = icmp.ListenPacket(network, laddr)
		return err
	}); err != nil {
		return err
	}
	defer pc.Close()
	id := os.Getpid() & 0xffff
	msg := icmp.Message{Type: typ, Body: &icmp.Echo{ID: id, Seq: 1, Data: []byte("mud-lab")}}
	b, err := msg.Marshal(nil)
	if err != nil {
		return err
	}
	if _, err := pc.WriteTo(b, &net.IPAddr{IP: dst.AsSlice()}); err != nil {
		return err
	}
	deadline := time.Now().Add(timeout)
	_ = pc.SetReadDeadline(deadline)
	buf := make([]byte, 1500)
	for {
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			return err
		}
		reply, err := icmp.ParseMessage(proto, buf[:n])
		if err != nil {
			continue
		}
		echo, ok := reply.Body.(*icmp.Echo)
		if !ok || echo.ID != id || (reply.Type != ipv4.ICMPTypeEchoReply && reply.Type != ipv6.ICMPTypeEchoReply) {
			continue
		}
		if ip, ok := from.(*net.IPAddr); ok && ip.IP.Equal(dst.AsSlice()) {
			return nil
		}
		if time.Now().After(deadline) {
			return errors.New("ping: timeout")
		}
	}
}

// HostPort joins an address and port.
func HostPort(a netip.Addr, port int) netip.AddrPort {
	return netip.AddrPortFrom(a, uint16(port))
}

// PortString formats a port for listen addresses.
func PortString(port int) string { return ":" + strconv.Itoa(port) }

// MustPass records a test error when a probe that should have passed failed.
func MustPass(t testing.TB, what string, err error) {
	t.Helper()
	if err != nil {
		t.Errorf("%s: want pass, got %v", what, err)
	}
}

// MustDrop records a test error when a probe that should have been dropped
// got through.
func MustDrop(t testing.TB, what string, err error) {
	t.Helper()
	if err == nil {
		t.Errorf("%s: want dropped, but it passed", what)
	}
}
