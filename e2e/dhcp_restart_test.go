package e2e

import (
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Devices that join while mudd is down are known when it starts again:
// one that got a lease meanwhile from the gateway's dnsmasq is read from
// dnsmasq's lease file (dhcp.lease_file) with its address and host name,
// and one with a static address that only talked to the gateway is found
// in the bridge's forwarding database and the neighbour table. Both are
// listed as discovered, their MUD URL unknown until their next DHCP
// request: the lease file does not hold option 161. The leased device's
// renewal (RFC 2131 §4.4.5) announces its URL, and its MUD file is then
// enforced. A device mudd knew before it stopped stays enforced.
func TestDevicesThatJoinedWhileMuddWasDown(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 3})
	known, leased, static := e.lab.Devices[0], e.lab.Devices[1], e.lab.Devices[2]
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/while-down.json", Mfg: "Example", Model: "while-down",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted}}})
	e.join(0, gwlab.Udhcpc, "known-before", u)
	e.waitState(known, api.StateEnforced)

	if err := e.gw.StopMudd(); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.SetDHCP("  lease_file: " + e.gw.LeaseFile() + "\n"); err != nil {
		t.Fatal(err)
	}
	d, ip := e.join(1, gwlab.Udhcpc, "joined-while-down", u)
	staticIP := netip.MustParseAddr("192.0.2.20")
	for _, args := range [][]string{{"addr", "add", staticIP.String() + "/24", "dev", static.Iface}, {"route", "replace", "default", "via", netlab.GatewayLAN4.String()}} {
		if _, err := e.lab.Run(e.ctx, static.NS, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	if err := netlab.Ping(static.NS, netlab.GatewayLAN4, 2*time.Second); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.StartMudd(e.ctx); err != nil {
		t.Fatal(err)
	}

	const unknown = "MUD URL unknown until its next DHCP request"
	got, err := e.gw.WaitDevice(e.ctx, leased.MAC.String(), joinWait, func(x api.Device) bool { return len(x.IPs) > 0 })
	if err != nil {
		t.Fatalf("the device that got its lease while mudd was down: %v", err)
	}
	if got.State != api.StateDiscovered || !strings.Contains(got.Reason, unknown) || !strings.Contains(got.Reason, "lease file") ||
		!slices.Equal(got.IPs, []netip.Addr{ip}) || got.Hostname != "joined-while-down" || got.MUDURL != "" || got.Port != leased.Port {
		t.Errorf("from the lease file: %s %q ips %v host %q url %q port %q; want discovered (%s), %s, joined-while-down, no URL, port %s",
			got.State, got.Reason, got.IPs, got.Hostname, got.MUDURL, got.Port, unknown, ip, leased.Port)
	}
	st, err := e.gw.WaitDevice(e.ctx, static.MAC.String(), joinWait, func(api.Device) bool { return true })
	if err != nil {
		t.Fatalf("the device with a static address: %v", err)
	}
	if st.State != api.StateDiscovered || !strings.Contains(st.Reason, unknown) || st.Port != static.Port {
		t.Errorf("the static device: %s %q port %q; want discovered (%s) on port %s", st.State, st.Reason, st.Port, unknown, static.Port)
	}
	if k, _, err := e.gw.Device(e.ctx, known.MAC.String()); err != nil || k.State != api.StateEnforced {
		t.Errorf("the device known before the restart: %s (%s) %v", k.State, k.Reason, err)
	}
	cloud, other := e.resolve(leased, cloudHost), e.resolve(leased, otherHost)
	e.pass("URL unknown: joined-while-down → other:8080 (baseline)", leased.NS, other, otherPort)

	// Its renewal says what the lease file could not.
	if err := d.Renew(); err != nil {
		t.Fatal(err)
	}
	got = e.waitState(leased, api.StateEnforced)
	if got.MUDURL != u || !slices.Equal(got.IPs, []netip.Addr{ip}) {
		t.Errorf("after the renewal: URL %q ips %v, want %s and %s", got.MUDURL, got.IPs, u, ip)
	}
	e.pass("renewed: joined-while-down → cloud:443 (permitted)", leased.NS, cloud, permitted)
	e.refuse("renewed: joined-while-down → other:8080 (not permitted)", leased.NS, other, otherPort)
}
