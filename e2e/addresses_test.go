package e2e

import (
	"context"
	"fmt"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// mudd knows every address a device holds wherever it connects: the LAN's
// prefixes as they change, the addresses devices configure themselves as
// they appear, and no address another device holds.

// ip runs `ip ARGS` in namespace ns.
func (e *env) ip(ns string, args ...string) {
	e.t.Helper()
	if out, err := e.lab.Run(e.ctx, ns, "ip", args...); err != nil {
		e.t.Fatalf("ip %s in %s: %v\n%s", strings.Join(args, " "), ns, err, out)
	}
}

// A prefix added to the LAN bridge while mudd runs becomes part of
// local-networks (RFC 8520 §4.5) in the kernel's sets, without a restart:
// a device whose MUD file allows local-networks reaches a host in the new
// prefix.
func TestLANPrefixAddedJoinsLocalNetworks(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2})
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/local.json", Mfg: "Example Things", Model: "local",
		From: []gwlab.Rule{{MUD: map[string]any{"local-networks": []any{nil}}, RemotePort: lateralPort}},
		To:   []gwlab.Rule{{MUD: map[string]any{"local-networks": []any{nil}}, LocalPort: lateralPort}}})
	dev, host := e.lab.Devices[0], e.lab.Devices[1]
	e.join(0, gwlab.Udhcpc, "local", u)
	e.waitState(dev, api.StateEnforced)
	pid := e.gw.MuddPID()

	// A host on the LAN in 198.51.100.0/24, which the gateway does not hold
	// yet: its route to it goes through the gateway.
	newPrefix := netip.MustParsePrefix("198.51.100.0/24")
	hostAddr := netip.MustParseAddr("198.51.100.20")
	e.ip(host.NS, "addr", "add", "198.51.100.20/24", "dev", host.Iface)
	e.ip(host.NS, "route", "add", "default", "via", "198.51.100.1")
	e.echo(host, lateralPort, 9090)
	if tables := e.nftTables(); strings.Contains(tables, newPrefix.String()) {
		t.Fatalf("%s in the tables before the gateway holds it:\n%s", newPrefix, tables)
	}

	e.ip(e.lab.GW.NS, "addr", "add", "198.51.100.1/24", "dev", netlab.LANBridge)
	err := gwlab.Poll(e.ctx, 10*time.Second, func() error {
		if !strings.Contains(e.nftTables(), newPrefix.String()) {
			return fmt.Errorf("%s not in the tables", newPrefix)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	e.pass("device → host in the new LAN prefix (local-networks)", dev.NS, hostAddr, lateralPort)
	e.refuse("device → host in the new LAN prefix, a port its file does not allow", dev.NS, hostAddr, 9090)
	if got := e.gw.MuddPID(); got != pid {
		t.Errorf("mudd restarted: pid %d, was %d", got, pid)
	}
	if !hasEvent(e.events(nil), "lan-prefixes-changed", newPrefix.String()) {
		t.Errorf("no lan-prefixes-changed event naming %s", newPrefix)
	}

	// Removed again, it leaves local-networks.
	e.ip(e.lab.GW.NS, "addr", "del", "198.51.100.1/24", "dev", netlab.LANBridge)
	err = gwlab.Poll(e.ctx, 10*time.Second, func() error {
		if strings.Contains(e.nftTables(), newPrefix.String()) {
			return fmt.Errorf("%s still in the tables", newPrefix)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

// cloud6 is the controller class the IPv6 files below allow, mapped to the
// lab's internet segment.
const cloud6 = "urn:example:cloud6"

// v6Port is the port the IPv6 files allow to the cloud, v6Other one they
// do not (served on IPv6 only, apart from the IPv4 echo services).
const v6Port, v6Other = 8443, 9443

// An enforced device rotating through 50 IPv6 privacy addresses (RFC 8981)
// keeps working: each new address is learned from its duplicate address
// detection before the device sends from it, and the source guard lets its
// traffic through. A device that takes another device's address is refused:
// its traffic from that address is dropped, and an address-conflict event
// names both.
func TestPrivacyAddressesLearnedAndStolenAddressRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2, gw: gwlab.Config{
		Policy: fmt.Sprintf("  controllers:\n    %s: [\"%s\"]\n", cloud6, netlab.WANPrefix6)}})
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/v6.json", Mfg: "Example Things", Model: "v6", IPv6: true,
		From: []gwlab.Rule{{MUD: map[string]any{"controller": cloud6}, RemotePort: v6Port}},
		To:   []gwlab.Rule{{MUD: map[string]any{"controller": cloud6}, RemotePort: v6Port}}})
	dev, thief := e.lab.Devices[0], e.lab.Devices[1]
	e.join(0, gwlab.Udhcpc, "v6", u)
	e.join(1, gwlab.Udhcpc, "thief", u)
	e.waitState(dev, api.StateEnforced)
	e.waitState(thief, api.StateEnforced)
	cloud := e.cloud.IPv6
	e.echo6(e.cloud, v6Port, v6Other)
	for _, h := range []*netlab.Host{dev, thief} {
		// Duplicate address detection (the lab turns it off), in 100 ms
		// instead of a second.
		if err := e.lab.Sysctl(h.NS, "net.ipv6.conf.all.accept_dad=1", "net.ipv6.conf."+h.Iface+".accept_dad=1",
			"net.ipv6.neigh."+h.Iface+".retrans_time_ms=100"); err != nil {
			t.Fatal(err)
		}
	}

	var cur netip.Addr
	for i := range 50 {
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 0, 0, 0x5e, 0xc0, 0, 0, 0, 0, 0x10, byte(i)})
		e.ip(dev.NS, "-6", "addr", "add", a.String()+"/64", "dev", dev.Iface)
		if cur.IsValid() {
			e.ip(dev.NS, "-6", "addr", "del", cur.String()+"/64", "dev", dev.Iface)
		} else {
			e.ip(dev.NS, "-6", "route", "add", "default", "via", netlab.GatewayLAN6.String())
		}
		cur = a
		e.waitDAD(dev)
		e.pass(fmt.Sprintf("privacy address %d (%s) → cloud", i+1, a), dev.NS, cloud, v6Port)
	}
	e.refuse("device → cloud, a port its file does not allow", dev.NS, cloud, v6Other)

	// The thief takes the device's current address (without duplicate
	// address detection, which would have told it the address is taken).
	e.ip(thief.NS, "-6", "addr", "add", cur.String()+"/64", "dev", thief.Iface, "nodad")
	e.ip(thief.NS, "-6", "route", "add", "default", "via", netlab.GatewayLAN6.String())
	e.refuse("thief → cloud from the device's address", thief.NS, cloud, v6Port)
	err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		if !hasEvent(e.events(thief), "address-conflict", cur.String()) {
			return fmt.Errorf("no address-conflict event for %s", cur)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	// The device keeps the address in the source guard; the thief never
	// gets it. (The gateway's own neighbour cache may now point at the
	// thief: that is the kernel's, outside what mudd filters.)
	tables := e.nftTables()
	if !strings.Contains(tables, dev.MAC.String()+" . "+cur.String()) || strings.Contains(tables, thief.MAC.String()+" . "+cur.String()) {
		t.Errorf("the source guard does not bind %s to %s alone:\n%s", cur, dev.MAC, tables)
	}
}

// echo6 serves TCP echo on the host's IPv6 addresses too.
func (e *env) echo6(h *netlab.Host, ports ...int) {
	e.t.Helper()
	for _, p := range ports {
		s, err := netlab.ServeEcho(h.NS, fmt.Sprintf("[%s]:%d", h.IPv6, p))
		if err != nil {
			e.t.Fatalf("echo service in %s on [::]:%d: %v", h.NS, p, err)
		}
		e.t.Cleanup(s.Close)
	}
}

// waitDAD waits until no address of h is tentative (duplicate address
// detection done).
func (e *env) waitDAD(h *netlab.Host) {
	e.t.Helper()
	err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		out, err := e.lab.Run(context.Background(), h.NS, "ip", "-6", "addr", "show", "dev", h.Iface, "tentative")
		if err != nil {
			return err
		}
		if strings.TrimSpace(out) != "" {
			return fmt.Errorf("tentative: %s", out)
		}
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}
