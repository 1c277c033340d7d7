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

// Devices with static addresses (no DHCP) are enforced as leased ones are:
// an administrator binds a MUD URL and the address (mudctl bind --ip), or
// binds the URL alone and the device's first address is bound when it
// first uses it (ARP).

// staticAddr configures a on the device (in the LAN's /24) and its
// default route through the gateway, with a as the source.
func (e *env) staticAddr(h *netlab.Host, a netip.Addr) {
	e.t.Helper()
	e.ip(h.NS, "addr", "add", a.String()+"/24", "dev", h.Iface)
	e.ip(h.NS, "route", "replace", "default", "via", netlab.GatewayLAN4.String(), "src", a.String())
}

// guarded reports whether the source guard binds a to mac.
func (e *env) guarded(mac string, a netip.Addr) bool {
	e.t.Helper()
	return strings.Contains(e.nftTables(), mac+" . "+a.String())
}

// A device with a static IPv4 address and no DHCP client, bound with
// mudctl bind MAC URL --ip ADDR, is enforced: it reaches the host and port
// its file permits and nothing else. A packet it sends from another
// address (a second address it configured itself) is dropped by the source
// guard. The address cannot be bound to another device, nor can one
// outside the LAN.
func TestStaticAddressBoundByAdmin(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	mac := h.MAC.String()
	static, spoofed := netip.MustParseAddr("192.0.2.60"), netip.MustParseAddr("192.0.2.61")
	e.staticAddr(h, static)

	e.mudctl("bind", mac, bulbURL, "--ip", static.String())
	d := e.waitState(h, api.StateEnforced)
	if out := e.mudctl("device", "show", mac); !strings.Contains(out, "static ips") || !strings.Contains(out, static.String()) {
		t.Errorf("mudctl device show does not show the static address:\n%s", out)
	}
	if !slices.Equal(d.StaticIPs, []netip.Addr{static}) || !slices.Contains(d.IPs, static) || d.BindOnFirstUse {
		t.Errorf("mudctl device: ips %v, static_ips %v, bind_on_first_use %v", d.IPs, d.StaticIPs, d.BindOnFirstUse)
	}
	if !e.guarded(mac, static) {
		t.Fatalf("the source guard does not bind %s to %s:\n%s", static, mac, e.nftTables())
	}
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("static device → cloud:443 (permitted)", h.NS, cloud, permitted)
	e.refuse("static device → cloud:8080 (another port)", h.NS, cloud, otherPort)
	e.refuse("static device → other:443 (another host)", h.NS, other, permitted)

	// A second address the device gives itself: what it sends from it is
	// dropped, though the destination is permitted.
	e.ip(h.NS, "addr", "add", spoofed.String()+"/24", "dev", h.Iface)
	e.ip(h.NS, "route", "replace", "default", "via", netlab.GatewayLAN4.String(), "src", spoofed.String())
	e.refuse("static device → cloud:443 from an address not bound to it", h.NS, cloud, permitted)
	if e.guarded(mac, spoofed) {
		t.Errorf("the source guard binds %s, which the device gave itself, to %s", spoofed, mac)
	}
	e.ip(h.NS, "route", "replace", "default", "via", netlab.GatewayLAN4.String(), "src", static.String())
	e.pass("static device → cloud:443 from its static address again", h.NS, cloud, permitted)

	// Another device cannot have the address, nor can one outside the LAN.
	for _, c := range []struct{ addr, want string }{
		{static.String(), static.String() + " is a static address of " + mac},
		{"198.51.100.5", "198.51.100.5 is outside the LAN prefixes"},
	} {
		out, err := e.gw.Mudctl(e.ctx, "bind", "02:00:5e:00:53:99", bulbURL, "--ip", c.addr)
		if err == nil || !strings.Contains(out+err.Error(), c.want) {
			t.Errorf("mudctl bind of %s to another device: %v\n%s\nwant an error saying %q", c.addr, err, out, c.want)
		}
	}
	if !hasEvent(e.events(nil), "address-conflict", static.String()+" is a static address of "+mac) {
		t.Error("no address-conflict event for the refused binding")
	}
}

// A device bound without --ip has its first IPv4 address bound when it
// first uses it: its first ARP (it has no DHCP lease). It is then enforced
// as a static device, with an address-bound event; a second address it
// gives itself later is not bound.
func TestBoundDeviceAddressBoundOnFirstARP(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	mac := h.MAC.String()
	first, later := netip.MustParseAddr("192.0.2.70"), netip.MustParseAddr("192.0.2.71")

	e.mudctl("bind", mac, bulbURL)
	d, err := e.gw.WaitDevice(e.ctx, mac, joinWait, func(d api.Device) bool { return d.BindOnFirstUse })
	if err != nil {
		t.Fatal(err)
	}
	if len(d.StaticIPs) != 0 || len(d.IPs) != 0 {
		t.Fatalf("bound device has addresses before it used any: %+v", d)
	}
	e.staticAddr(h, first)
	// Its first packet (a TCP connection to the gateway): the ARP request
	// for the gateway's address goes before it.
	_ = netlab.TCPEcho(h.NS, netlab.HostPort(netlab.GatewayLAN4, 9), time.Second)
	d, err = e.gw.WaitState(e.ctx, mac, api.StateEnforced, joinWait)
	if err != nil {
		t.Fatalf("%v; events: %+v", err, e.events(nil))
	}
	if !slices.Equal(d.StaticIPs, []netip.Addr{first}) {
		t.Fatalf("static_ips %v after the first ARP, want [%s]", d.StaticIPs, first)
	}
	err = gwlab.Poll(e.ctx, 5*time.Second, func() error {
		if !hasEvent(e.events(h), "address-bound", first.String()) {
			return fmt.Errorf("no address-bound event for %s", first)
		}
		if !e.guarded(mac, first) {
			return fmt.Errorf("the source guard does not bind %s to %s", first, mac)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("device bound on first use → cloud:443 (permitted)", h.NS, cloud, permitted)
	e.refuse("device bound on first use → cloud:8080 (another port)", h.NS, cloud, otherPort)
	e.refuse("device bound on first use → other:443 (another host)", h.NS, other, permitted)

	// Only the first address is bound: a second one, used (the gateway's
	// ARP for it is answered), is not.
	e.ip(h.NS, "addr", "add", later.String()+"/24", "dev", h.Iface)
	e.ip(h.NS, "route", "replace", "default", "via", netlab.GatewayLAN4.String(), "src", later.String())
	e.refuse("device bound on first use → cloud:443 from a second address", h.NS, cloud, permitted)
	if d, _, _ := e.gw.Device(e.ctx, mac); !slices.Equal(d.StaticIPs, []netip.Addr{first}) || e.guarded(mac, later) {
		t.Errorf("a second address was bound: static_ips %v", d.StaticIPs)
	}
}
