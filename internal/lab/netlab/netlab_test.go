package netlab

import (
	"os"
	"strings"
	"testing"
	"time"
)

// The lab itself: devices reach servers through the gateway over IPv4 and
// IPv6 (TCP, UDP, ICMP), devices reach each other across the bridge, and Close
// leaves no namespace behind.
func TestLabConnectivity(t *testing.T) {
	lab := New(t, Config{Devices: 2, Servers: 1, StaticDevices: true})
	srv := lab.Servers[0]
	echo, err := ServeEcho(srv.NS, "[::]:7000")
	if err != nil {
		t.Fatal(err)
	}
	defer echo.Close()
	peer, err := ServeEcho(lab.Devices[1].NS, "[::]:7001")
	if err != nil {
		t.Fatal(err)
	}
	defer peer.Close()
	dev := lab.Devices[0]
	const timeout = 3 * time.Second
	for _, dst := range []struct {
		name string
		addr func() error
	}{
		{"tcp4 to server", func() error { return TCPEcho(dev.NS, HostPort(srv.IPv4, 7000), timeout) }},
		{"tcp6 to server", func() error { return TCPEcho(dev.NS, HostPort(srv.IPv6, 7000), timeout) }},
		{"udp4 to server", func() error { return UDPEcho(dev.NS, HostPort(srv.IPv4, 7000), timeout) }},
		{"udp6 to server", func() error { return UDPEcho(dev.NS, HostPort(srv.IPv6, 7000), timeout) }},
		{"ping4 server", func() error { return Ping(dev.NS, srv.IPv4, timeout) }},
		{"ping6 server", func() error { return Ping(dev.NS, srv.IPv6, timeout) }},
		{"tcp4 lateral", func() error { return TCPEcho(dev.NS, HostPort(lab.Devices[1].IPv4, 7001), timeout) }},
		{"tcp6 lateral", func() error { return TCPEcho(dev.NS, HostPort(lab.Devices[1].IPv6, 7001), timeout) }},
	} {
		if err := dst.addr(); err != nil {
			t.Errorf("%s: %v", dst.name, err)
		}
	}
	if got := dev.MAC.String(); got != "02:00:00:00:01:01" {
		t.Errorf("device MAC = %s", got)
	}
	lab.Close()
	entries, _ := os.ReadDir("/var/run/netns")
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), lab.Name+"-") {
			t.Errorf("namespace %s left behind", e.Name())
		}
	}
}
