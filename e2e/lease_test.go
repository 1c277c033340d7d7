package e2e

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// TestLeaseReleaseExpiryAndRenewal takes the longest (dnsmasq's shortest
// lease is 2 minutes; the grace period mudd keeps a device's rules for after
// its lease ended is shortened to 2 s with policy.removal_grace), so it is
// declared first: parallel tests tend to start in that order, and the others
// run while it waits.

// The end of a lease removes the device's rules — a release (udhcpc,
// SIGUSR2) and an expiry (ISC dhclient killed, so its 2-minute lease,
// dnsmasq's shortest, runs out) — once mudd's grace period is over: no
// element of our tables names the MAC any more, and the device is the no-MUD
// baseline again. A renewal with a new address moves the
// binding: the old address no longer passes the source guard or the
// to-device map, the new one does. RFC 8520 §10.2 and §1.9: when the device
// disconnects, its policy is removed.
func TestLeaseReleaseExpiryAndRenewal(t *testing.T) {
	t.Parallel()
	const inbound = 9000 // the device's service the file opens to the cloud
	oldIP, newIP := netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("192.0.2.60")
	e := newEnv(t, envConfig{devices: 3, gw: gwlab.Config{LeaseTime: "2m", Policy: "  removal_grace: 2s\n"}})
	netlab.RequireCommand(t, "dhclient")
	u := "https://" + mudHost + "/sensor.json"
	e.publish(gwlab.File{URL: u, Mfg: "Example", Model: "sensor",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: otherPort}},
		To:   []gwlab.Rule{{Remote: cloudHost, LocalPort: inbound}},
	})
	rel, exp, mov := e.lab.Devices[0], e.lab.Devices[1], e.lab.Devices[2]
	if err := e.gw.SetDHCPHosts(mov.MAC.String() + "," + oldIP.String()); err != nil {
		t.Fatal(err)
	}
	for _, h := range e.lab.Devices {
		e.echo(h, inbound)
	}
	// The expiring device first: its lease runs from its ACK.
	expDev, expIP := e.join(1, gwlab.Dhclient, "sensor-exp", u)
	relDev, _ := e.join(0, gwlab.Udhcpc, "sensor-rel", u)
	movDev, ip := e.join(2, gwlab.Udhcpc, "sensor-mov", u)
	if ip != oldIP {
		t.Fatalf("the reserved address: got %s, want %s", ip, oldIP)
	}
	for _, h := range e.lab.Devices {
		e.waitState(h, api.StateEnforced)
	}
	cloud, other := e.resolve(exp, cloudHost), e.resolve(exp, otherHost)
	e.refuse("enforced: sensor-exp → other:8080", exp.NS, other, otherPort)
	// Gone without a word: only the lease time can end it.
	if err := expDev.Kill(); err != nil {
		t.Fatal(err)
	}
	expired := time.Now()

	e.refuse("enforced: sensor-rel → other:8080", rel.NS, other, otherPort)
	if err := relDev.Release(e.ctx, e.lab); err != nil {
		t.Fatal(err)
	}
	released := time.Now()

	// Renewal with a new address.
	e.pass("sensor-mov → cloud:8080 from "+oldIP.String(), mov.NS, cloud, otherPort)
	e.pass("cloud → sensor-mov:9000 at "+oldIP.String(), e.cloud.NS, oldIP, inbound)
	if err := e.gw.SetDHCPHosts(mov.MAC.String() + "," + newIP.String()); err != nil {
		t.Fatal(err)
	}
	// udhcpc renews from its address; dnsmasq NAKs it (the reservation
	// moved) and the client comes back with the new one.
	err := gwlab.Poll(e.ctx, joinWait, func() error {
		if a, _ := movDev.Addr(); a == newIP {
			return nil
		}
		if err := movDev.Renew(); err != nil {
			return err
		}
		time.Sleep(300 * time.Millisecond)
		return fmt.Errorf("sensor-mov has not moved to %s", newIP)
	})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.gw.WaitDevice(e.ctx, mov.MAC.String(), joinWait, func(d api.Device) bool {
		return d.State == api.StateEnforced && slices.Equal(d.IPs, []netip.Addr{newIP})
	}); err != nil {
		t.Fatal(err)
	}
	e.pass("moved: sensor-mov → cloud:8080 from "+newIP.String(), mov.NS, cloud, otherPort)
	e.pass("moved: cloud → sensor-mov:9000 at "+newIP.String(), e.cloud.NS, newIP, inbound)
	// The device keeps (or spoofs) its old address next to the new one.
	if _, err := e.lab.Run(e.ctx, mov.NS, "ip", "addr", "add", oldIP.String()+"/24", "dev", mov.Iface); err != nil {
		t.Fatal(err)
	}
	netlab.MustDrop(t, "moved: sensor-mov → cloud:8080 from the old "+oldIP.String()+" (source guard)",
		tcpEchoFrom(mov.NS, oldIP, netlab.HostPort(cloud, otherPort), refuseWait))
	if out := e.nftTables(); strings.Contains(out, " "+oldIP.String()) {
		t.Errorf("our tables still name the old address %s:\n%s", oldIP, out)
	}
	// Nothing maps the old address to the device any more, so an inbound
	// connection to it is nobody's; the device must still not answer it
	// (the source guard runs before the established fast path).
	e.refuse("moved: cloud → sensor-mov:9000 at the old, unbound "+oldIP.String(), e.cloud.NS, oldIP, inbound)
	netlab.MustPass(t, "moved: sensor-mov → cloud:8080 from "+newIP.String(),
		tcpEchoFrom(mov.NS, newIP, netlab.HostPort(cloud, otherPort), passWait))

	// The released device: rules gone after the grace period.
	removed := func(h *netlab.Host, since time.Time, within time.Duration) {
		t.Helper()
		d, err := e.gw.WaitDevice(e.ctx, h.MAC.String(), within, func(d api.Device) bool { return d.State == api.StateRemoved })
		if err != nil {
			t.Fatalf("%s: %v", h.MAC, err)
		}
		t.Logf("%s removed %.1f s after its lease ended (%s)", h.MAC, time.Since(since).Seconds(), d.Reason)
		if e.inKernel(h.MAC) {
			t.Errorf("%s is removed, but our tables still name its MAC:\n%s", h.MAC, e.nftTables())
		}
	}
	removed(rel, released, 60*time.Second)
	// udhcpc deconfigured the released address; with one configured by
	// hand the device is a no-MUD device like any other.
	for _, args := range [][]string{{"addr", "add", "192.0.2.77/24", "dev", rel.Iface}, {"route", "replace", "default", "via", netlab.GatewayLAN4.String()}} {
		if _, err := e.lab.Run(e.ctx, rel.NS, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	e.pass("released and removed: sensor-rel → other:8080 (baseline)", rel.NS, other, otherPort)

	// The expired device: 2 minutes of lease, then the grace period.
	removed(exp, expired, 4*time.Minute)
	if a, err := expDev.Addr(); err != nil || a != expIP {
		t.Fatalf("the killed client's address: %s %v", a, err)
	}
	e.pass("expired and removed: sensor-exp → other:8080 (baseline)", exp.NS, other, otherPort)
	if !e.inKernel(mov.MAC) {
		t.Errorf("the renewed device lost its rules")
	}
}

// tcpEchoFrom is netlab.TCPEcho from a chosen source address.
func tcpEchoFrom(ns string, src netip.Addr, dst netip.AddrPort, timeout time.Duration) error {
	var c net.Conn
	err := netlab.Do(ns, func() (err error) {
		d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
		c, err = d.Dial("tcp", dst.String())
		return err
	})
	if err != nil {
		return err
	}
	defer c.Close()
	return roundTrip(c, timeout)
}
