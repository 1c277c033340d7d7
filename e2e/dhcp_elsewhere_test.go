package e2e

import (
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// routerLAN4 is the address of the other router on the LAN, which runs
// the DHCP server in TestDHCPServerElsewhereOnTheLAN.
var routerLAN4 = netip.MustParseAddr("192.0.2.2")

// startLANRouter makes lab host h another router on the gateway's LAN: it
// gets routerLAN4 and runs dnsmasq as the LAN's DHCP server (no DNS),
// handing out the gateway as default route and DNS server. It returns
// dnsmasq's log.
func startLANRouter(t *testing.T, e *env, h *netlab.Host) *netlab.SyncBuffer {
	t.Helper()
	if _, err := e.lab.Run(e.ctx, h.NS, "ip", "addr", "add", routerLAN4.String()+"/24", "dev", h.Iface); err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, out, err := e.lab.Start(h.NS, "dnsmasq",
		"--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--interface="+h.Iface, "--bind-interfaces",
		"--dhcp-leasefile="+filepath.Join(dir, "leases"), "--pid-file="+filepath.Join(dir, "pid"),
		"--dhcp-authoritative", "--no-ping", "--log-dhcp", "--log-facility=-", "--user=root", "--group=root",
		"--dhcp-range=192.0.2.100,192.0.2.199,255.255.255.0,1h",
		"--dhcp-option=option:router,"+netlab.GatewayLAN4.String(),
		"--dhcp-option=option:dns-server,"+netlab.GatewayLAN4.String())
	if err != nil {
		t.Fatal(err)
	}
	if err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		if !strings.Contains(out.String(), "DHCP, IP range") {
			return errString("dnsmasq has not opened its DHCP socket yet: " + out.String())
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- dnsmasq of the other router ---\n%s", out)
		}
	})
	return out
}

type errString string

func (e errString) Error() string { return string(e) }

// The LAN's DHCP server is another router on a port of the gateway's
// bridge, not the gateway: its OFFER and ACK go by unicast from its port
// to the device's, and so do the device's renewal (RFC 2131 §4.4.5,
// RENEWING) and the server's answer. With dhcp.capture: ports, mudd
// captures on the bridge's ports and follows the lease all the same: the
// device's MUD file is enforced (the permitted cloud service works, other
// destinations are refused), and a unicast renewal extends the lease mudd
// holds. A socket on the bridge itself, as dhcp.capture: bridge uses,
// receives none of the renewal's frames.
func TestDHCPServerElsewhereOnTheLAN(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2, gw: gwlab.Config{
		// The gateway's dnsmasq answers DNS only.
		DNSMasqArgs: []string{"--no-dhcp-interface=" + netlab.LANBridge},
		DHCP:        "  capture: ports\n",
	}})
	dev, router := e.lab.Devices[0], e.lab.Devices[1]
	routerLog := startLANRouter(t, e, router)
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/elsewhere.json", Mfg: "Example", Model: "elsewhere",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted}}})

	d, ip := e.join(0, gwlab.Udhcpc, "sensor-elsewhere", u)
	if !strings.Contains(routerLog.String(), "DHCPACK(eth0) "+ip.String()) {
		t.Fatalf("the lease of %s did not come from the other router:\n%s", ip, routerLog)
	}
	got := e.waitState(dev, api.StateEnforced)
	if got.MUDURL != u || len(got.IPs) != 1 || got.IPs[0] != ip {
		t.Fatalf("mudd lists %s with URL %q and addresses %v, want %q and %s", dev.MAC, got.MUDURL, got.IPs, u, ip)
	}
	if got.Interface != netlab.LANBridge || got.Port != dev.Port {
		t.Errorf("mudd lists %s on %s port %s, want %s port %s", dev.MAC, got.Interface, got.Port, netlab.LANBridge, dev.Port)
	}
	cloud, other := e.resolve(dev, cloudHost), e.resolve(dev, otherHost)
	e.pass("enforced: sensor → cloud:443 (permitted)", dev.NS, cloud, permitted)
	e.refuse("enforced: sensor → cloud:8080 (not permitted)", dev.NS, cloud, otherPort)
	e.refuse("enforced: sensor → other:8080 (not permitted)", dev.NS, other, otherPort)

	// The renewal: udhcpc unicasts its REQUEST to the server it got the
	// lease from, and the server its ACK to the device's address.
	onBridge := bridgeDHCP(t, e)
	time.Sleep(1100 * time.Millisecond) // the renewed lease ends visibly later
	before := strings.Count(routerLog.String(), "DHCPACK(eth0) "+ip.String())
	if err := d.Renew(); err != nil {
		t.Fatal(err)
	}
	renewed, err := e.gw.WaitDevice(e.ctx, dev.MAC.String(), joinWait, func(x api.Device) bool {
		return x.LeaseExpiry.After(got.LeaseExpiry)
	})
	if err != nil {
		t.Fatalf("mudd did not see the unicast renewal: %v", err)
	}
	if n := strings.Count(routerLog.String(), "DHCPACK(eth0) "+ip.String()); n != before+1 {
		t.Fatalf("the other router sent %d ACKs for %s during the renewal, want 1:\n%s", n-before, ip, routerLog)
	}
	t.Logf("lease expiry moved from %s to %s by the renewal", got.LeaseExpiry.Format(time.RFC3339Nano), renewed.LeaseExpiry.Format(time.RFC3339Nano))
	if renewed.State != api.StateEnforced {
		t.Errorf("after the renewal %s is %s (%s)", dev.MAC, renewed.State, renewed.Reason)
	}
	if n := onBridge(dev.MAC); n != 0 {
		t.Errorf("%d DHCP frames of the renewal reached the bridge itself: the renewal was not unicast between ports", n)
	}
	e.pass("renewed: sensor → cloud:443 (permitted)", dev.NS, cloud, permitted)
	e.refuse("renewed: sensor → other:8080 (not permitted)", dev.NS, other, otherPort)
}

// bridgeDHCP opens a packet socket on the gateway's LAN bridge with the
// snooper's DHCP filter, not in promiscuous mode: what dhcp.capture: bridge
// receives. The function it returns counts the DHCP frames from or to mac
// received since.
func bridgeDHCP(t *testing.T, e *env) func(mac net.HardwareAddr) int {
	t.Helper()
	prog, err := dhcpsnoop.DHCPFilter()
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.Open(netlab.LANBridge, capture.Config{NetNS: e.lab.GW.NS, Filter: capture.Filter{Program: prog}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return func(mac net.HardwareAddr) int {
		n := 0
		buf := make([]byte, 1<<16)
		for {
			if err := c.SetReadDeadline(time.Now().Add(200 * time.Millisecond)); err != nil {
				t.Fatal(err)
			}
			f, _, err := c.ReadFrame(buf)
			if err != nil {
				return n
			}
			m, err := dhcpsnoop.ParseFrame(f)
			if err == nil && (m.ClientMAC.String() == mac.String() || m.SrcMAC.String() == mac.String()) {
				n++
			}
		}
	}
}
