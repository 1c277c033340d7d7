package enforcer

import (
	"context"
	"net"
	"net/netip"
	"testing"

	"github.com/openmud/mud/internal/lab/netlab"
)

// Quarantine (and block) is a cage: DNS to the gateway itself, nothing
// else — not DNS to another host (a tunnel), not NTP or another service
// of the gateway, nothing lateral. An enforced device keeps the App. A
// services of the gateway.
func TestQuarantineIsACage(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	gw := env.lab.GW
	for _, port := range []string{"[::]:53", "[::]:123", "[::]:9999"} {
		echo, err := netlab.ServeEcho(gw.NS, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(echo.Close)
	}
	for _, h := range []*netlab.Host{env.srv1, env.srv2} {
		echo, err := netlab.ServeEcho(h.NS, "[::]:53")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(echo.Close)
	}
	d1, d2 := env.dev1, env.dev2
	netlab.MustPass(t, "enforced: NTP to the gateway (App. A)", netlab.UDPEcho(d2.NS, ap(gw.IPv4, 123), pass))
	netlab.MustPass(t, "enforced: DNS to the gateway (App. A)", netlab.UDPEcho(d2.NS, ap(gw.IPv6, 53), pass))
	for _, mode := range []Mode{Quarantine, Block} {
		d := hostDevice(d1, "cam1")
		d.Mode = mode
		if err := env.e.UpsertDevice(ctx, d); err != nil {
			t.Fatal(err)
		}
		for _, v6 := range []bool{false, true} {
			g, s, peer := gw.IPv4, env.srv1.IPv4, d2.IPv4
			if v6 {
				g, s, peer = netlab.GatewayLAN6, env.srv1.IPv6, d2.IPv6
			}
			what := func(x string) string { return mode.String() + ": " + x }
			netlab.MustPass(t, what("DNS over UDP to the gateway "+g.String()), netlab.UDPEcho(d1.NS, ap(g, 53), pass))
			netlab.MustPass(t, what("DNS over TCP to the gateway "+g.String()), netlab.TCPEcho(d1.NS, ap(g, 53), pass))
			netlab.MustDrop(t, what("NTP to the gateway "+g.String()), netlab.UDPEcho(d1.NS, ap(g, 123), shut))
			netlab.MustDrop(t, what("a TCP service of the gateway "+g.String()), netlab.TCPEcho(d1.NS, ap(g, 9999), shut))
			netlab.MustDrop(t, what("UDP 53 to an internet host "+s.String()), netlab.UDPEcho(d1.NS, ap(s, 53), shut))
			netlab.MustDrop(t, what("TCP 53 to an internet host "+s.String()), netlab.TCPEcho(d1.NS, ap(s, 53), shut))
			netlab.MustDrop(t, what("its cloud "+s.String()), netlab.TCPEcho(d1.NS, ap(s, 8080), shut))
			netlab.MustDrop(t, what("lateral, to a device its policy allows, "+peer.String()), netlab.TCPEcho(d1.NS, ap(peer, 9090), shut))
			netlab.MustDrop(t, what("ping the gateway "+g.String()), netlab.Ping(d1.NS, g, shut))
		}
		// DNS from an address not bound to it: the source guard.
		if _, err := env.lab.Run(ctx, d1.NS, "ip", "addr", "add", "192.0.2.97/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
		netlab.MustDrop(t, mode.String()+": DNS to the gateway from an unbound address", udpFrom(d1.NS, netip.MustParseAddr("192.0.2.97"), ap(gw.IPv4, 53)))
		if _, err := env.lab.Run(ctx, d1.NS, "ip", "addr", "del", "192.0.2.97/24", "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
	netlab.MustPass(t, "enforced next to it: NTP to the gateway", netlab.UDPEcho(d2.NS, ap(gw.IPv6, 123), pass))
}

// udpFrom sends a datagram from local to dst inside ns and waits for the
// echo.
func udpFrom(ns string, local netip.Addr, dst netip.AddrPort) error {
	var c net.Conn
	if err := netlab.Do(ns, func() (err error) {
		dl := net.Dialer{LocalAddr: &net.UDPAddr{IP: local.AsSlice()}}
		c, err = dl.Dial("udp", dst.String())
		return err
	}); err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, shut)
}
