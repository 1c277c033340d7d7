package neighbor

import (
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"
)

// tt is a table under test with its own clock.
type tt struct {
	*table
	t   *testing.T
	now time.Time
}

func newTT(t *testing.T, mod func(*Config)) *tt {
	cfg := Config{}
	if mod != nil {
		mod(&cfg)
	}
	return &tt{table: newTable(cfg.limits(), []netip.Prefix{lan4, lan6}), t: t, now: t0}
}

func (x *tt) advance(d time.Duration) { x.now = x.now.Add(d) }

// see applies a sighting now and returns the events, in short form.
func (x *tt) see(mac net.HardwareAddr, a string, src Source) []string {
	x.observe(claim{mac: key(mac), addr: addr(a), source: src, tentative: src == SourceDAD, at: x.now, iface: "br-lan"}, x.now)
	return x.take()
}

func (x *tt) take() []string {
	var out []string
	for _, ev := range x.out {
		out = append(out, short(ev))
	}
	x.out = nil
	return out
}

// short is "kind mac-suffix addr [flags] [holder]".
func short(ev Event) string {
	s := fmt.Sprintf("%s %02x %s", ev.Kind, ev.MAC[5], ev.Addr)
	for _, f := range []struct {
		on   bool
		name string
	}{{ev.Tentative, "tentative"}, {ev.Pinned, "pinned"}, {ev.LinkLocal, "link-local"}} {
		if f.on {
			s += " " + f.name
		}
	}
	if ev.Holder != nil {
		s += fmt.Sprintf(" holder %02x", ev.Holder[5])
	}
	return s
}

func (x *tt) want(got []string, want ...string) {
	x.t.Helper()
	if !slices.Equal(got, want) {
		x.t.Errorf("events:\n  got  %q\n  want %q", got, want)
	}
}

func (x *tt) holder(a string) string {
	b := x.owners[addr(a)]
	if b == nil {
		return "none"
	}
	return fmt.Sprintf("%02x", b.dev.key[5])
}

// Only addresses inside the LAN prefixes are learned, and IPv6 link-local
// ones (flagged); never a subnet's network, broadcast or anycast address,
// nor what is outside.
func TestLearnInsidePrefixes(t *testing.T) {
	x := newTT(t, nil)
	x.want(x.see(macA, "2001:db8:1::11", SourceND), "learned 01 2001:db8:1::11")
	x.want(x.see(macA, "fe80::ff:fe00:101", SourceND), "learned 01 fe80::ff:fe00:101 link-local")
	x.want(x.see(macA, "192.0.2.11", SourceARP), "learned 01 192.0.2.11")
	for _, a := range []string{
		"2001:db8:2::11", "198.51.100.7", "192.0.2.0", "192.0.2.255", "2001:db8:1::",
		"2001:db8:1::fdff:ffff:ffff:ff80", "169.254.1.1", "::1", "ff02::1", "0.0.0.0",
	} {
		x.want(x.see(macA, a, SourceND))
	}
	if s := x.stats(); s.OutsideLAN != 10 || s.Addrs != 3 {
		t.Errorf("stats: %+v", s)
	}
	// A /31 (RFC 3021) has no network or broadcast address.
	x.setPrefixes([]netip.Prefix{lan4, lan6, netip.MustParsePrefix("198.51.100.0/31")}, x.now)
	x.want(x.see(macB, "198.51.100.0", SourceARP), "learned 02 198.51.100.0")
}

// A MAC claiming an address another MAC holds is refused and reported as
// a conflict naming both, once a minute for the same MAC and address; the
// address stays where it was. Every claim is counted.
func TestConflictRefused(t *testing.T) {
	x := newTT(t, nil)
	x.see(macA, "192.0.2.11", SourceARP)
	x.see(macA, "2001:db8:1::11", SourceND)
	x.want(x.see(macB, "192.0.2.11", SourceARP), "conflict 02 192.0.2.11 holder 01")
	x.want(x.see(macB, "2001:db8:1::11", SourceDAD), "conflict 02 2001:db8:1::11 tentative holder 01")
	x.advance(30 * time.Second)
	x.want(x.see(macB, "192.0.2.11", SourceARP))
	x.advance(31 * time.Second)
	x.want(x.see(macB, "192.0.2.11", SourceNetlink), "conflict 02 192.0.2.11 holder 01")
	if h := x.holder("192.0.2.11"); h != "01" {
		t.Errorf("holder %s", h)
	}
	if s := x.stats(); s.Conflicts != 4 {
		t.Errorf("conflicts counted: %d", s.Conflicts)
	}
}

// An address moves once its holder's binding expired, or the caller
// released it, never before.
func TestMoveAfterExpiryOrRelease(t *testing.T) {
	x := newTT(t, func(c *Config) { c.TTL4 = 10 * time.Minute })
	x.see(macA, "192.0.2.11", SourceARP)
	x.advance(9 * time.Minute)
	x.want(x.see(macB, "192.0.2.11", SourceARP), "conflict 02 192.0.2.11 holder 01")
	x.advance(time.Minute)
	x.want(x.see(macB, "192.0.2.11", SourceARP), "expired 01 192.0.2.11", "learned 02 192.0.2.11")
	if !x.release(addr("192.0.2.11"), x.now) {
		t.Fatal("release of a held address")
	}
	x.want(x.take(), "expired 02 192.0.2.11")
	x.want(x.see(macA, "192.0.2.11", SourceARP), "learned 01 192.0.2.11")
	if x.release(addr("192.0.2.99"), x.now) {
		t.Error("released an address nobody holds")
	}
}

// RFC 4862 §5.4: the MAC that probed an address loses it to a MAC that
// defends it within the DAD window; after the window, the prober holds it
// like any other address.
func TestDADDefended(t *testing.T) {
	x := newTT(t, nil)
	x.want(x.see(macB, "2001:db8:1::99", SourceDAD), "learned 02 2001:db8:1::99 tentative")
	x.advance(time.Second)
	x.want(x.see(macA, "2001:db8:1::99", SourceND),
		"conflict 02 2001:db8:1::99 tentative holder 01", "expired 02 2001:db8:1::99 tentative", "learned 01 2001:db8:1::99")
	// Another probe of a held address is a conflict; the holder keeps it.
	x.want(x.see(macB, "2001:db8:1::99", SourceDAD), "conflict 02 2001:db8:1::99 tentative holder 01")

	x.want(x.see(macB, "2001:db8:1::98", SourceDAD), "learned 02 2001:db8:1::98 tentative")
	x.advance(11 * time.Second)
	x.want(x.see(macA, "2001:db8:1::98", SourceND), "conflict 01 2001:db8:1::98 holder 02")
	// A second probe by another MAC is no defence either.
	x.want(x.see(macB, "2001:db8:1::97", SourceDAD), "learned 02 2001:db8:1::97 tentative")
	x.want(x.see(macC, "2001:db8:1::97", SourceDAD), "conflict 03 2001:db8:1::97 tentative holder 02")
}

// An address learned from DAD is tentative until its holder is seen using
// it: then a refreshed event says so. Later sightings refresh at most every
// RefreshEvery.
func TestTentativeThenUsed(t *testing.T) {
	x := newTT(t, func(c *Config) { c.RefreshEvery = time.Minute })
	x.want(x.see(macA, "2001:db8:1::5", SourceDAD), "learned 01 2001:db8:1::5 tentative")
	x.want(x.see(macA, "2001:db8:1::5", SourceDAD))
	x.advance(time.Second)
	x.want(x.see(macA, "2001:db8:1::5", SourceND), "refreshed 01 2001:db8:1::5")
	x.advance(30 * time.Second)
	x.want(x.see(macA, "2001:db8:1::5", SourceNetlink))
	x.advance(31 * time.Second)
	x.want(x.see(macA, "2001:db8:1::5", SourceNetlink), "refreshed 01 2001:db8:1::5")
	b := x.owners[addr("2001:db8:1::5")]
	if !b.first.Equal(t0) || !b.seen.Equal(x.now) || b.source != SourceNetlink {
		t.Errorf("binding %+v", b)
	}
}

// A MAC holds at most MaxV6PerMAC (MaxV4PerMAC) addresses: the least
// recently seen makes room. Pinned addresses do not count.
func TestPerMACBound(t *testing.T) {
	x := newTT(t, func(c *Config) { c.MaxV6PerMAC, c.MaxV4PerMAC = 3, 1 })
	x.pin(key(macA), addr("2001:db8:1::100"), x.now)
	for i := 1; i <= 3; i++ {
		x.see(macA, fmt.Sprintf("2001:db8:1::%d", i), SourceND)
		x.advance(time.Second)
	}
	x.see(macA, "2001:db8:1::1", SourceND) // now ::2 is the least recent
	x.want(x.see(macA, "2001:db8:1::4", SourceND), "expired 01 2001:db8:1::2", "learned 01 2001:db8:1::4")
	x.want(x.see(macA, "192.0.2.11", SourceARP), "learned 01 192.0.2.11")
	x.want(x.see(macA, "192.0.2.12", SourceARP), "expired 01 192.0.2.11", "learned 01 192.0.2.12")
	var got []string
	for _, b := range x.addrs(key(macA)) {
		got = append(got, b.Addr.String())
	}
	want := []string{"192.0.2.12", "2001:db8:1::1", "2001:db8:1::3", "2001:db8:1::4", "2001:db8:1::100"}
	if !slices.Equal(got, want) {
		t.Errorf("addresses %v, want %v", got, want)
	}
	if s := x.stats(); s.Replaced != 2 {
		t.Errorf("replaced %d", s.Replaced)
	}
}

// Addresses not seen for their family's TTL expire at the next sweep;
// pinned ones never; a device that holds nothing is then forgotten.
func TestAging(t *testing.T) {
	x := newTT(t, func(c *Config) { c.TTL4, c.TTL6 = 2*time.Hour, time.Hour })
	x.see(macA, "2001:db8:1::1", SourceND)
	x.see(macA, "192.0.2.11", SourceARP)
	x.pin(key(macB), addr("2001:db8:1::2"), x.now)
	x.advance(time.Hour - time.Second)
	x.sweep(x.now)
	x.want(x.take())
	x.advance(time.Second)
	x.sweep(x.now)
	x.want(x.take(), "expired 01 2001:db8:1::1")
	x.advance(time.Hour)
	x.sweep(x.now)
	x.want(x.take(), "expired 01 192.0.2.11")
	x.advance(time.Hour)
	x.sweep(x.now)
	if x.devs[key(macA)] != nil || x.devs[key(macB)] == nil || x.holder("2001:db8:1::2") != "02" {
		t.Errorf("after aging: A %v, B %v", x.devs[key(macA)], x.devs[key(macB)])
	}
	if s := x.stats(); s.Expired != 2 || s.MACs != 1 || s.Addrs != 1 {
		t.Errorf("stats %+v", s)
	}
}

// Pinned addresses never move: another MAC's claim is a conflict. Pinning
// takes an address from a MAC that only learned it; pinning one pinned to
// another MAC is an error. Unpinned, it ages from its last sighting.
func TestPin(t *testing.T) {
	x := newTT(t, nil)
	x.see(macB, "192.0.2.20", SourceARP)
	if err := x.pin(key(macA), addr("192.0.2.20"), x.now); err != nil {
		t.Fatal(err)
	}
	x.want(x.take(), "expired 02 192.0.2.20")
	x.want(x.see(macB, "192.0.2.20", SourceARP), "conflict 02 192.0.2.20 holder 01")
	if err := x.pin(key(macB), addr("192.0.2.20"), x.now); err == nil || !strings.Contains(err.Error(), "pinned to 02:00:00:00:01:01") {
		t.Errorf("pinning another MAC's pinned address: %v", err)
	}
	if err := x.pin(key(macB), addr("ff02::1"), x.now); err == nil {
		t.Error("pinned a multicast address")
	}
	x.advance(2 * time.Hour)
	x.sweep(x.now)
	x.want(x.take())
	x.see(macA, "192.0.2.20", SourceARP) // seen now: refreshed (pinned)
	x.unpin(key(macA), addr("192.0.2.20"), x.now)
	x.advance(time.Hour)
	x.sweep(x.now)
	x.want(x.take(), "expired 01 192.0.2.20")
	// A pin never seen is forgotten when unpinned.
	x.pin(key(macA), addr("192.0.2.21"), x.now)
	x.unpin(key(macA), addr("192.0.2.21"), x.now)
	if x.holder("192.0.2.21") != "none" || x.learned != 0 {
		t.Errorf("unpinned, never seen: holder %s, learned %d", x.holder("192.0.2.21"), x.learned)
	}
}

// A MAC bound without addresses gets the first address of each family it
// uses pinned: not one it only probes, not a link-local one, not one
// another MAC holds.
func TestBindOnFirstUse(t *testing.T) {
	x := newTT(t, nil)
	x.see(macB, "192.0.2.30", SourceARP)
	x.device(key(macA), x.now).firstUse = [2]bool{true, true}
	x.want(x.see(macA, "192.0.2.30", SourceARP), "conflict 01 192.0.2.30 holder 02")
	x.want(x.see(macA, "fe80::1", SourceND), "learned 01 fe80::1 link-local")
	x.want(x.see(macA, "2001:db8:1::31", SourceDAD), "learned 01 2001:db8:1::31 tentative")
	x.want(x.see(macA, "2001:db8:1::31", SourceND), "refreshed 01 2001:db8:1::31 pinned")
	x.want(x.see(macA, "2001:db8:1::32", SourceND), "learned 01 2001:db8:1::32")
	x.want(x.see(macA, "192.0.2.31", SourceARP), "learned 01 192.0.2.31 pinned")
	x.want(x.see(macA, "192.0.2.32", SourceARP), "learned 01 192.0.2.32")
	x.advance(2 * time.Hour)
	x.sweep(x.now)
	x.want(x.take(), "expired 01 192.0.2.32", "expired 01 2001:db8:1::32", "expired 01 fe80::1 link-local", "expired 02 192.0.2.30")
	if x.holder("192.0.2.31") != "01" || x.holder("2001:db8:1::31") != "01" {
		t.Error("first-use bindings aged")
	}
}

// The gateway's own addresses are never a device's: a claim is a conflict
// naming the gateway's MAC, and a device that held one loses it.
func TestGatewayAddresses(t *testing.T) {
	x := newTT(t, nil)
	x.see(macA, "192.0.2.1", SourceARP)
	x.setOwn(map[netip.Addr]macKey{addr("192.0.2.1"): key(macGW), addr("fe80::1"): key(macGW)}, x.now)
	x.want(x.take(), "expired 01 192.0.2.1")
	x.want(x.see(macA, "fe80::1", SourceND), "conflict 01 fe80::1 link-local holder fe")
	if x.holder("fe80::1") != "none" {
		t.Error("the gateway's address was learned")
	}
}

// The kernel's failed neighbour entry ends its address, unless the address
// was seen in the last seconds or is pinned.
func TestKernelFailed(t *testing.T) {
	x := newTT(t, nil)
	x.see(macA, "2001:db8:1::5", SourceND)
	x.failed(addr("2001:db8:1::5"), macKey{}, x.now)
	x.want(x.take())
	x.advance(5 * time.Second)
	x.failed(addr("2001:db8:1::5"), key(macB), x.now)
	x.want(x.take())
	x.failed(addr("2001:db8:1::5"), macKey{}, x.now)
	x.want(x.take(), "expired 01 2001:db8:1::5")
}

// Changing the prefixes drops what is outside the new ones, except pinned
// and link-local addresses.
func TestSetPrefixes(t *testing.T) {
	x := newTT(t, nil)
	x.see(macA, "2001:db8:1::5", SourceND)
	x.see(macA, "fe80::5", SourceND)
	x.see(macA, "192.0.2.5", SourceARP)
	x.pin(key(macA), addr("2001:db8:1::6"), x.now)
	x.setPrefixes([]netip.Prefix{netip.MustParsePrefix("2001:db8:3::/64"), lan4}, x.now)
	x.want(x.take(), "expired 01 2001:db8:1::5")
	x.want(x.see(macA, "2001:db8:3::5", SourceND), "learned 01 2001:db8:3::5")
}

// One MAC's claims beyond its burst are dropped and counted; so are new
// MACs beyond their admission rate; a kept MAC is not subject to the
// global limit.
func TestRateLimits(t *testing.T) {
	x := newTT(t, func(c *Config) { c.RatePerMAC, c.NewMACRate, c.Rate = 1, 1, 10 })
	for i := range 10 {
		x.see(macA, fmt.Sprintf("2001:db8:1::%d", i+1), SourceND)
	}
	// The first claim is a new MAC's, then the MAC's own burst of 5.
	if s := x.stats(); s.RateLimited != 4 || s.Addrs != 6 {
		t.Errorf("one MAC: %+v", s)
	}
	x.advance(time.Second)
	x.want(x.see(macA, "2001:db8:1::99", SourceND), "learned 01 2001:db8:1::99")
	for i := range 10 {
		x.see(net.HardwareAddr{2, 0xf1, 0, 0, 0, byte(i)}, fmt.Sprintf("192.0.2.%d", 100+i), SourceARP)
	}
	if s := x.stats(); s.RateLimited != 4+6 || s.MACs != 5 { // new MACs: burst 4
		t.Errorf("new MACs: %+v", s)
	}
	// The global bucket (burst 20) is empty now for MACs not kept.
	x.device(key(macB), x.now).keep = true
	for i := range 20 {
		x.see(net.HardwareAddr{2, 0xf1, 0, 0, 0, byte(i % 4)}, fmt.Sprintf("192.0.2.%d", 100+i%4), SourceARP)
	}
	x.want(x.see(macB, "192.0.2.50", SourceARP), "learned 02 192.0.2.50")
}

// A flood of 10,000 MACs, each claiming addresses of both families, costs
// what the bounds allow and no more; the devices the caller keeps keep
// their addresses; what was dropped is counted.
func TestFloodBounded(t *testing.T) {
	x := newTT(t, func(c *Config) { c.MaxMACs, c.MaxAddrs = 256, 512 })
	x.see(macA, "2001:db8:1::11", SourceND)
	x.see(macA, "192.0.2.11", SourceARP)
	x.devs[key(macA)].keep = true
	for i := range 10000 {
		mac := net.HardwareAddr{0x02, 0xf1, 0, byte(i >> 16), byte(i >> 8), byte(i)}
		for j := range 4 {
			x.see(mac, fmt.Sprintf("2001:db8:1::%x:%x", i, j), SourceND)
		}
		x.see(mac, fmt.Sprintf("192.0.2.%d", 20+i%200), SourceARP)
		x.see(mac, "192.0.2.11", SourceARP)
		x.advance(10 * time.Millisecond)
		if len(x.devs) > 256 || len(x.owners) > 512+2 || x.learned > 512 {
			t.Fatalf("after %d MACs: %d MACs, %d addresses", i, len(x.devs), len(x.owners))
		}
	}
	x.sweep(x.now)
	x.take()
	if x.holder("2001:db8:1::11") != "01" || x.holder("192.0.2.11") != "01" {
		t.Error("the kept device lost its addresses")
	}
	s := x.stats()
	if s.RateLimited == 0 || s.Evicted == 0 || s.Conflicts == 0 || len(x.conflicts) > maxConflicts {
		t.Errorf("stats %+v, %d conflict reports remembered", s, len(x.conflicts))
	}
	t.Logf("flood: %+v", s)
}

// The bridge ports table is bounded: when full, MACs the table does not
// track make room, and beyond that a new one is left out.
func TestPortsBounded(t *testing.T) {
	x := newTT(t, func(c *Config) { c.MaxMACs = 4 })
	x.see(macA, "192.0.2.11", SourceARP)
	x.setPort(key(macA), "lan1")
	for i := range 20 {
		x.setPort(macKey{2, 0xf1, 0, 0, 0, byte(i)}, "lan2")
	}
	if len(x.ports) > 8 || x.ports[key(macA)] != "lan1" {
		t.Errorf("%d ports, A on %q", len(x.ports), x.ports[key(macA)])
	}
	x.want(x.see(macA, "192.0.2.12", SourceARP), "learned 01 192.0.2.12")
	if b := x.addrs(key(macA)); b[0].Port != "lan1" {
		t.Errorf("binding %+v", b[0])
	}
	x.setPort(key(macA), "")
	if _, ok := x.ports[key(macA)]; ok {
		t.Error("port not forgotten")
	}
}
