package e2e

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// v6Env is a gateway whose dnsmasq serves DHCPv6 on the LAN besides
// DHCPv4 and sends router advertisements that let hosts autoconfigure
// (SLAAC) too, every few seconds; the files it publishes reach the cloud
// server's IPv6 address as a controller.
func v6Env(t *testing.T, devices int) (*env, string) {
	t.Helper()
	e := newEnv(t, envConfig{devices: devices, gw: gwlab.Config{
		DHCPRanges:  []string{"192.0.2.100,192.0.2.199,255.255.255.0,1h", "2001:db8:1::100,2001:db8:1::1ff,slaac,64,1h"},
		DNSMasqArgs: []string{"--enable-ra", "--ra-param=" + netlab.LANBridge + ",3"},
		Policy:      fmt.Sprintf("  controllers:\n    %s: [\"%s\"]\n", cloud6, netlab.WANPrefix6)}})
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/v6-only.json", Mfg: "Example Things", Model: "v6-only", IPv6: true,
		From: []gwlab.Rule{{MUD: map[string]any{"controller": cloud6}, RemotePort: v6Port}}})
	e.echo6(e.cloud, v6Port, v6Other)
	return e, u
}

// A device that speaks DHCPv6 only (ISC dhclient -6) announces its MUD URL
// in option 112 (RFC 8520 §10): mudd binds the leased address to it and
// enforces its file: the permitted port on the cloud server works, another
// is refused, and traffic from an address it was not leased is dropped by
// the source guard.
func TestDHCPv6DeviceEnforced(t *testing.T) {
	t.Parallel()
	netlab.RequireCommand(t, "dhclient")
	e, u := v6Env(t, 1)
	dev := e.lab.Devices[0]
	e.ip(dev.NS, "-6", "route", "add", netlab.LANPrefix6.String(), "dev", dev.Iface)
	e.ip(dev.NS, "-6", "route", "add", "default", "via", netlab.GatewayLAN6.String())
	dc := netlab.NewDhclient(t, dev, true, fmt.Sprintf("option dhcp6.mud-url code 112 = text;\nsend dhcp6.mud-url %q;\n", u))
	// dhclient -6 sends from the link-local address, once it is usable.
	if err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		o, err := e.lab.Run(e.ctx, dev.NS, "ip", "-6", "addr", "show", "dev", dev.Iface, "scope", "link")
		if err != nil || !strings.Contains(o, "fe80") || strings.Contains(o, "tentative") {
			return fmt.Errorf("no usable link-local address yet: %s %v", o, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	_, out := e.lab.StartDhclient(t, dc)
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- dhclient -6 ---\n%s", out)
		}
	})
	got, err := e.gw.WaitDevice(e.ctx, dev.MAC.String(), joinWait, func(d api.Device) bool {
		return d.State == api.StateEnforced && slices.ContainsFunc(d.IPs, func(a netip.Addr) bool { return netlab.LANPrefix6.Contains(a) })
	})
	if err != nil {
		t.Fatal(err)
	}
	if got.MUDURL != u || got.URLSource != api.SourceDHCPv6 {
		t.Errorf("URL %q from %q, want %s from dhcpv6", got.MUDURL, got.URLSource, u)
	}
	var leased netip.Addr
	for _, a := range got.IPs {
		if netlab.LANPrefix6.Contains(a) {
			leased = a
		}
	}
	if err := gwlab.Poll(e.ctx, joinWait, func() error {
		o, err := e.lab.Run(e.ctx, dev.NS, "ip", "-6", "addr", "show", "dev", dev.Iface)
		if err != nil || !strings.Contains(o, leased.String()+"/") {
			return fmt.Errorf("%s not configured yet: %s %v", leased, o, err)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	cloud := e.cloud.IPv6
	e.pass("DHCPv6 device → cloud (permitted)", dev.NS, cloud, v6Port)
	e.refuse("DHCPv6 device → cloud, a port its file does not allow", dev.NS, cloud, v6Other)
	forged := netip.MustParseAddr("2001:db8:1::77")
	e.ip(dev.NS, "-6", "addr", "add", forged.String()+"/128", "dev", dev.Iface, "nodad")
	netlab.MustDrop(t, "DHCPv6 device → cloud from an address it was not leased (source guard)",
		tcpEchoFrom(dev.NS, forged, netlab.HostPort(cloud, v6Port), refuseWait))
}

// A device that autoconfigures its IPv6 addresses from the gateway's
// router advertisements (SLAAC) with privacy extensions (RFC 8981) gets a
// new temporary address every few seconds and uses it at once: mudd learns
// each from the device's duplicate address detection and binds it to the
// device in the source guard, and the device,
// enforced by the MUD URL it announced over DHCPv4, keeps reaching what its
// file permits from every address, and nothing else.
func TestSLAACPrivacyAddressesRotateEnforced(t *testing.T) {
	t.Parallel()
	e, u := v6Env(t, 1)
	dev := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "slaac", u)
	e.waitState(dev, api.StateEnforced)
	e.slaac(dev, "net.ipv6.conf."+dev.Iface+".use_tempaddr=2", "net.ipv6.conf."+dev.Iface+".max_desync_factor=1",
		"net.ipv6.conf."+dev.Iface+".temp_prefered_lft=6", "net.ipv6.conf."+dev.Iface+".temp_valid_lft=60")
	cloud := e.cloud.IPv6
	// The preferred temporary address is the one the device sends from.
	temps := map[netip.Addr]bool{}
	deadline := time.Now().Add(90 * time.Second)
	for len(temps) < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("only %d temporary addresses in 90 s: %v", len(temps), temps)
		}
		a := e.preferredTemporary(dev)
		if !a.IsValid() || temps[a] {
			time.Sleep(300 * time.Millisecond)
			continue
		}
		temps[a] = true
		e.pass(fmt.Sprintf("temporary address %d (%s) → cloud (permitted)", len(temps), a), dev.NS, cloud, v6Port)
		netlab.MustPass(t, fmt.Sprintf("from %s explicitly", a), tcpEchoFrom(dev.NS, a, netlab.HostPort(cloud, v6Port), passWait))
		e.refuse(fmt.Sprintf("temporary address %d → cloud, a port its file does not allow", len(temps)), dev.NS, cloud, v6Other)
		if !strings.Contains(e.nftTables(), dev.MAC.String()+" . "+a.String()) {
			t.Errorf("the source guard does not bind %s to %s", a, dev.MAC)
		}
	}
}

// slaac makes dev configure addresses from the gateway's router
// advertisements (SLAAC, with duplicate address detection), with the
// extra sysctls given.
func (e *env) slaac(dev *netlab.Host, extra ...string) {
	e.t.Helper()
	if err := e.lab.Sysctl(dev.NS, append([]string{
		"net.ipv6.conf." + dev.Iface + ".accept_ra=2", "net.ipv6.conf." + dev.Iface + ".autoconf=1",
		"net.ipv6.conf." + dev.Iface + ".accept_dad=1", "net.ipv6.neigh." + dev.Iface + ".retrans_time_ms=100"}, extra...)...); err != nil {
		e.t.Fatal(err)
	}
}

// preferredTemporary is the temporary IPv6 address h prefers now (not
// tentative, not deprecated), if any.
func (e *env) preferredTemporary(h *netlab.Host) netip.Addr {
	e.t.Helper()
	out, err := e.lab.Run(e.ctx, h.NS, "ip", "-6", "-o", "addr", "show", "dev", h.Iface, "temporary")
	if err != nil {
		e.t.Fatal(err)
	}
	for line := range strings.SplitSeq(out, "\n") {
		if strings.Contains(line, "deprecated") || strings.Contains(line, "tentative") {
			continue
		}
		f := strings.Fields(line)
		for i, w := range f {
			if w == "inet6" && i+1 < len(f) {
				if p, err := netip.ParsePrefix(f[i+1]); err == nil && netlab.LANPrefix6.Contains(p.Addr()) {
					return p.Addr()
				}
			}
		}
	}
	return netip.Addr{}
}

// The addresses a device was seen using (here its SLAAC address) are kept
// across a restart of mudd: they are bound again at start, before the
// device is heard from, even when the gateway's neighbour table no longer
// has them — so its first packet from such an address passes. Without
// them the source guard drops it until the device next sends neighbour
// discovery (a SYN from it would wait for its retransmission, 1 s).
func TestLearnedAddressesSurviveRestart(t *testing.T) {
	t.Parallel()
	e, u := v6Env(t, 1)
	dev := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "slaac-restart", u)
	e.waitState(dev, api.StateEnforced)
	e.slaac(dev, "net.ipv6.conf."+dev.Iface+".use_tempaddr=0")
	// The stable SLAAC address (EUI-64 of the device's MAC).
	var slaac netip.Addr
	if err := gwlab.Poll(e.ctx, 30*time.Second, func() error {
		out, err := e.lab.Run(e.ctx, dev.NS, "ip", "-6", "-o", "addr", "show", "dev", dev.Iface, "scope", "global", "mngtmpaddr")
		if err != nil {
			return err
		}
		for _, f := range strings.Fields(out) {
			if p, err := netip.ParsePrefix(f); err == nil && p.Bits() == 64 && netlab.LANPrefix6.Contains(p.Addr()) && !strings.Contains(out, "tentative") {
				slaac = p.Addr()
				return nil
			}
		}
		return fmt.Errorf("no SLAAC address yet: %s", out)
	}); err != nil {
		t.Fatal(err)
	}
	cloud := netlab.HostPort(e.cloud.IPv6, v6Port)
	netlab.MustPass(t, "from the SLAAC address before the restart", tcpEchoFrom(dev.NS, slaac, cloud, passWait))
	if !strings.Contains(e.nftTables(), dev.MAC.String()+" . "+slaac.String()) {
		t.Fatalf("the source guard does not bind %s to %s", slaac, dev.MAC)
	}

	if err := e.gw.StopMudd(); err != nil {
		t.Fatal(err)
	}
	// Nothing left for mudd to learn the address from at start: the
	// kernel's neighbour table is empty and the device stays quiet.
	e.ip(e.lab.GW.NS, "-6", "neigh", "flush", "dev", netlab.LANBridge)
	if err := e.gw.StartMudd(e.ctx); err != nil {
		t.Fatal(err)
	}
	e.waitState(dev, api.StateEnforced)
	if err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		if !strings.Contains(e.nftTables(), dev.MAC.String()+" . "+slaac.String()) {
			return fmt.Errorf("the source guard does not bind %s to %s after the restart", slaac, dev.MAC)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Shorter than TCP's first retransmission: only a SYN that passes the
	// first time gets through.
	netlab.MustPass(t, "from the SLAAC address after the restart", tcpEchoFrom(dev.NS, slaac, cloud, 700*time.Millisecond))
}
