package manager

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/store"
)

// fakeNeighbors records what the manager tells package neighbor, and
// refuses to pin what fail names (as the learner refuses the gateway's own
// addresses).
type fakeNeighbors struct {
	mu       sync.Mutex
	pinned   map[netip.Addr]string
	firstUse map[string][2]bool
	fail     netip.Addr
}

func newFakeNeighbors() *fakeNeighbors {
	return &fakeNeighbors{pinned: map[netip.Addr]string{}, firstUse: map[string][2]bool{}}
}

func (f *fakeNeighbors) Pin(mac net.HardwareAddr, a netip.Addr) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if a == f.fail {
		return fmt.Errorf("neighbor: %v is the gateway's own address", a)
	}
	if other, ok := f.pinned[a]; ok && other != mac.String() {
		return fmt.Errorf("neighbor: %v is pinned to %v", a, other)
	}
	f.pinned[a] = mac.String()
	return nil
}

func (f *fakeNeighbors) Unpin(mac net.HardwareAddr, a netip.Addr) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.pinned[a] == mac.String() {
		delete(f.pinned, a)
	}
}

func (f *fakeNeighbors) BindOnFirstUseOf(mac net.HardwareAddr, v4, v6 bool) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.firstUse[mac.String()] = [2]bool{v4, v6}
	return nil
}

func (f *fakeNeighbors) state(mac net.HardwareAddr, a netip.Addr) (pinnedTo string, firstUse [2]bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.pinned[a], f.firstUse[mac.String()]
}

var lanV4 = netip.MustParsePrefix("192.0.2.0/24")

func staticHarness(t *testing.T, dir string, srv *mudServer, nb *fakeNeighbors) (*harness, *fakeEnforcer) {
	t.Helper()
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.LAN, c.NeighborControl = []netip.Prefix{lanV4}, nb }})
	return h, fe
}

// waitIPv4s waits until the enforcer holds the device with exactly want
// as its IPv4 addresses.
func waitIPv4s(t *testing.T, fe *fakeEnforcer, mac net.HardwareAddr, want ...netip.Addr) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		d, ok := fe.device(mac)
		if ok && slices.Equal(d.IPv4s, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("enforcer holds %s with IPv4 %v (present %v), want %v", mac, d.IPv4s, ok, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func hasEvent(t *testing.T, h *harness, mac net.HardwareAddr, kind, substr string) bool {
	t.Helper()
	evs, err := h.m.Events(bg, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.MAC == mac.String() && e.Kind == kind && strings.Contains(e.Message, substr) {
			return true
		}
	}
	return false
}

// A device bound with static addresses holds them as it would a lease's:
// they are in its enforcer entry (the source guard), pinned in package
// neighbor, kept across a restart; an address outside the LAN, or held by
// another device (leased, or static), is refused with an error and an
// address-conflict event.
func TestStaticAddressesBoundAndChecked(t *testing.T) {
	srv, u := camServer(t, "", false)
	nb := newFakeNeighbors()
	dir := t.TempDir()
	h, fe := staticHarness(t, dir, srv, nb)
	static := netip.MustParseAddr("192.0.2.60")
	d, err := h.m.Bind(bg, adm, mac(3).String(), u, "", []netip.Addr{static})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.StaticIPs, []netip.Addr{static}) || d.FirstUse {
		t.Errorf("device view: static %v, first use %v", d.StaticIPs, d.FirstUse)
	}
	h.waitState(mac(3), store.StateEnforced)
	waitIPv4s(t, fe, mac(3), static)
	if to, fu := nb.state(mac(3), static); to != mac(3).String() || fu != [2]bool{} {
		t.Errorf("neighbor: %s pinned to %q, first use %v", static, to, fu)
	}

	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	for _, c := range []struct {
		ip       string
		sentinel error
		msg      string
	}{
		{"192.0.2.60", ErrConflict, "192.0.2.60 is a static address of " + mac(3).String()},
		{ip1.String(), ErrConflict, ip1.String() + " is leased to " + mac(1).String()},
		{"198.51.100.5", ErrInvalid, "198.51.100.5 is outside the LAN prefixes (192.0.2.0/24)"},
		{"224.0.0.1", ErrInvalid, "is not a unicast address"},
	} {
		_, err := h.m.Bind(bg, adm, mac(4).String(), u, "", []netip.Addr{netip.MustParseAddr(c.ip)})
		if !errors.Is(err, c.sentinel) || !strings.Contains(err.Error(), c.msg) {
			t.Errorf("binding %s to another device: %v, want %v naming %q", c.ip, err, c.sentinel, c.msg)
		}
	}
	if !hasEvent(t, h, mac(4), "address-conflict", "192.0.2.60 is a static address of "+mac(3).String()) {
		t.Error("no address-conflict event for the refused static address")
	}
	// The gateway's own address: package neighbor refuses to pin it.
	nb.fail = netip.MustParseAddr("192.0.2.1")
	if _, err := h.m.Bind(bg, adm, mac(4).String(), u, "", []netip.Addr{nb.fail}); !errors.Is(err, ErrConflict) ||
		!strings.Contains(err.Error(), "gateway's own address") {
		t.Errorf("binding the gateway's address: %v", err)
	}
	if _, ok := fe.device(mac(4)); ok {
		t.Error("a refused binding reached the enforcer")
	}

	// Binding again replaces the addresses.
	moved := netip.MustParseAddr("192.0.2.61")
	if _, err := h.m.Bind(bg, adm, mac(3).String(), u, "", []netip.Addr{moved}); err != nil {
		t.Fatal(err)
	}
	waitIPv4s(t, fe, mac(3), moved)
	if to, _ := nb.state(mac(3), static); to != "" {
		t.Errorf("replaced address still pinned to %q", to)
	}

	// A restart pins the stored addresses again.
	h.stop()
	nb2 := newFakeNeighbors()
	_, fe2 := staticHarness(t, dir, srv, nb2)
	waitIPv4s(t, fe2, mac(3), moved)
	if to, _ := nb2.state(mac(3), moved); to != mac(3).String() {
		t.Errorf("after a restart %s is pinned to %q", moved, to)
	}
}

// A device bound without addresses waits for its first address of each
// family: the first one it is seen using (package neighbor pins it) is
// bound to it for good, with an address-bound event; one another device
// holds is refused (address-conflict) and the device waits on.
func TestFirstUseBindsFirstAddress(t *testing.T) {
	srv, u := camServer(t, "", false)
	nb := newFakeNeighbors()
	dir := t.TempDir()
	h, fe := staticHarness(t, dir, srv, nb)
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	if _, err := h.m.Bind(bg, adm, mac(5).String(), u, "", nil); err != nil {
		t.Fatal(err)
	}
	h.waitState(mac(5), store.StateEnforced)
	if _, fu := nb.state(mac(5), netip.Addr{}); fu != [2]bool{true, true} {
		t.Fatalf("first use asked of neighbor: %v, want both families", fu)
	}
	// The lease of another device is not bound.
	if err := h.m.HandleNeighbor(bg, neighbor.Event{Kind: neighbor.KindLearned, MAC: mac(5), Addr: ip1, Pinned: true, Source: neighbor.SourceARP}); err != nil {
		t.Fatal(err)
	}
	if !hasEvent(t, h, mac(5), "address-conflict", ip1.String()+", which is leased to "+mac(1).String()) {
		t.Error("no address-conflict event for another device's leased address")
	}
	if _, fu := nb.state(mac(5), netip.Addr{}); fu != [2]bool{true, true} {
		t.Errorf("after a refused first use neighbor waits for %v, want both families", fu)
	}
	first := netip.MustParseAddr("192.0.2.70")
	if err := h.m.HandleNeighbor(bg, neighbor.Event{Kind: neighbor.KindLearned, MAC: mac(5), Addr: first, Pinned: true, Source: neighbor.SourceARP}); err != nil {
		t.Fatal(err)
	}
	waitIPv4s(t, fe, mac(5), first)
	if !hasEvent(t, h, mac(5), "address-bound", "192.0.2.70 bound to "+mac(5).String()) {
		t.Error("no address-bound event")
	}
	if _, fu := nb.state(mac(5), netip.Addr{}); fu != [2]bool{false, true} {
		t.Errorf("after the first IPv4 address neighbor waits for %v, want IPv6 only", fu)
	}
	d, err := h.m.Device(bg, mac(5).String())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(d.StaticIPs, []netip.Addr{first}) || !d.FirstUse {
		t.Errorf("device view: static %v, first use %v", d.StaticIPs, d.FirstUse)
	}
	// A second IPv4 address is an ordinary sighting: not bound.
	if err := h.m.HandleNeighbor(bg, neighbor.Event{Kind: neighbor.KindLearned, MAC: mac(5), Addr: netip.MustParseAddr("192.0.2.71"), Pinned: true}); err != nil {
		t.Fatal(err)
	}
	waitIPv4s(t, fe, mac(5), first)
	// It is kept across a restart.
	h.stop()
	_, fe2 := staticHarness(t, dir, srv, newFakeNeighbors())
	waitIPv4s(t, fe2, mac(5), first)
}

// A DHCP lease of another device's static address wins while it lasts
// (the DHCP server gave it): the static device loses it from its entry,
// with an address-conflict event, and gets it back when the lease ends.
func TestLeaseOfStaticAddressWinsWhileItLasts(t *testing.T) {
	srv, u := camServer(t, "", false)
	h, fe := staticHarness(t, t.TempDir(), srv, newFakeNeighbors())
	static := netip.MustParseAddr("192.0.2.60")
	if _, err := h.m.Bind(bg, adm, mac(3).String(), u, "", []netip.Addr{static}); err != nil {
		t.Fatal(err)
	}
	h.waitState(mac(3), store.StateEnforced)
	waitIPv4s(t, fe, mac(3), static)
	h.lease(dhcpsnoop.KindBound, mac(6), static, u)
	h.waitState(mac(6), store.StateEnforced)
	waitIPv4s(t, fe, mac(3))
	waitIPv4s(t, fe, mac(6), static)
	if !hasEvent(t, h, mac(6), "address-conflict", "a static address of "+mac(3).String()) {
		t.Error("no address-conflict event for the leased static address")
	}
	h.lease(dhcpsnoop.KindReleased, mac(6), static, u)
	waitIPv4s(t, fe, mac(3), static) // after the removal grace
}
