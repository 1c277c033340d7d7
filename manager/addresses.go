package manager

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// The addresses a device holds come from three places: its DHCP leases
// (store.Device.IPs); the static addresses of an administrator's binding
// (store.Binding.IPs: mudctl bind --ip, or, for a binding made without
// addresses, the first address of each family the device was seen using
// in ARP or neighbour discovery while it has no lease: bound on first
// use, an "address-bound" event); and the IPv6 addresses package neighbor
// saw it use (neighbour discovery, duplicate address detection, the
// kernel's neighbour table): SLAAC, privacy and static IPv6 addresses.
// Other IPv4 addresses a device uses are not bound. The enforcer's source
// guard binds them all to the device. An address is bound to one device
// only: a leased address is its lessee's (a static address another device
// leases is not installed), a static address is refused when another
// device holds it, and a learned address another device holds is refused
// and reported (an "address-conflict" event), as package neighbor refuses
// and reports an address another MAC holds or has pinned.
//
// The LAN's prefixes (package lanwatch) are the default of local-networks
// (RFC 8520 §4.5) and, with Config.BridgeLAN, the enforcer's bridge table
// prefixes; they change while mudd runs (SetLAN).

// Neighbors is what the manager tells package neighbor
// (*neighbor.Learner): the static addresses of bindings (Pin, Unpin) and
// the devices bound without addresses whose first address of a family is
// bound on first use (BindOnFirstUseOf).
type Neighbors interface {
	Pin(mac net.HardwareAddr, addr netip.Addr) error
	Unpin(mac net.HardwareAddr, addr netip.Addr)
	BindOnFirstUseOf(mac net.HardwareAddr, v4, v6 bool) error
}

// LANUpdater is an enforcer that follows the LAN's prefixes
// (*enforcer.Enforcer): UpdateLAN applies an update together with new
// prefixes of its bridge table, in one transaction.
type LANUpdater interface {
	UpdateLAN(ctx context.Context, lan []netip.Prefix, u enforcer.Update) error
}

var localNetworksKey = policy.Peer{Kind: policy.LocalNetworks}.Key()

// localNetworks is the local-networks peer: the configured
// policy.local_networks, else the LAN's prefixes.
func (m *Manager) localNetworks() []netip.Prefix {
	if len(m.cfg.Settings.LocalNetworks) > 0 {
		return m.cfg.Settings.LocalNetworks
	}
	return m.lan
}

// addrsOf are the addresses bound to a device: its leased ones, its static
// ones that no other device leases, then those it was seen using, in
// address order.
func (m *Manager) addrsOf(mac string, d *store.Device) []netip.Addr {
	l := m.st.learned[mac]
	static := m.st.bindings[mac].IPs
	if len(l) == 0 && len(static) == 0 {
		return d.IPs
	}
	out := slices.Clone(d.IPs)
	for _, a := range static {
		if !slices.Contains(out, a) {
			if other := m.lessee(a); other == "" || other == mac {
				out = append(out, a)
			}
		}
	}
	var extra []netip.Addr
	for a := range l {
		if !slices.Contains(out, a) {
			extra = append(extra, a)
		}
	}
	slices.SortFunc(extra, netip.Addr.Compare)
	return append(out, extra...)
}

// holderOf is the device other than mac that holds a, and how: by lease,
// as a static address, or seen using it; "" when none does.
func (m *Manager) holderOf(a netip.Addr, mac string) (string, string) {
	if other := m.lessee(a); other != "" && other != mac {
		return other, "leased to"
	}
	for other, b := range m.st.bindings {
		if other != mac && slices.Contains(b.IPs, a) {
			return other, "a static address of"
		}
	}
	if other := m.st.learnedBy[a]; other != "" && other != mac {
		return other, "in use by"
	}
	return "", ""
}

// inLAN reports whether a is inside one of the LAN's prefixes.
func (m *Manager) inLAN(a netip.Addr) bool {
	for _, p := range m.lan {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// checkStatic refuses static addresses for mac that are not usable: not a
// unicast address inside the LAN's prefixes, given twice, or held by
// another device.
func (m *Manager) checkStatic(mac string, ips []netip.Addr) ([]netip.Addr, error) {
	out := make([]netip.Addr, 0, len(ips))
	for _, a := range ips {
		a = a.Unmap()
		switch {
		case !a.IsValid() || a.Zone() != "" || !a.IsGlobalUnicast():
			return nil, errorf(ErrInvalid, "%s is not a unicast address a device can hold", a)
		case !m.inLAN(a):
			return nil, errorf(ErrInvalid, "%s is outside the LAN prefixes (%s)", a, prefixList(m.lan))
		case slices.Contains(out, a):
			return nil, errorf(ErrInvalid, "%s given twice", a)
		}
		if other, how := m.holderOf(a, mac); other != "" {
			return nil, errorf(ErrConflict, "%s is %s %s", a, how, other)
		}
		out = append(out, a)
	}
	return out, nil
}

// firstUseOf says for which families a bound device waits for its first
// address: its binding was made without addresses, it has no lease, and
// it has no static address of the family yet.
func (m *Manager) firstUseOf(mac string) (v4, v6 bool) {
	b, ok := m.st.bindings[mac]
	if !ok || !b.FirstUse {
		return false, false
	}
	if d := m.st.devices[mac]; d != nil && (len(d.IPs) > 0 || !d.LeaseExpiry.IsZero()) {
		// Its addresses come from DHCP: an address it keeps using after
		// its lease is not bound to it.
		return false, false
	}
	v4, v6 = true, true
	for _, a := range b.IPs {
		if a.Is4() {
			v4 = false
		} else {
			v6 = false
		}
	}
	return v4, v6
}

// syncFirstUse tells package neighbor for which families mac waits for its
// first address.
func (m *Manager) syncFirstUse(mac string) {
	if m.cfg.NeighborControl == nil {
		return
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return
	}
	v4, v6 := m.firstUseOf(mac)
	if err := m.cfg.NeighborControl.BindOnFirstUseOf(hw, v4, v6); err != nil {
		m.log.Warn("binding addresses on first use", "mac", mac, "err", err)
	}
}

// pinAll tells package neighbor the static addresses and the first-use
// bindings of the store (at start).
func (m *Manager) pinAll() {
	if m.cfg.NeighborControl == nil {
		return
	}
	for mac, b := range m.st.bindings {
		hw, err := net.ParseMAC(mac)
		if err != nil {
			continue
		}
		for _, a := range b.IPs {
			if err := m.cfg.NeighborControl.Pin(hw, a); err != nil {
				m.log.Warn("static address", "mac", mac, "addr", a, "err", err)
			}
		}
		m.syncFirstUse(mac)
	}
}

// pin tells package neighbor of mac's static addresses ips, which replace
// old; on an error those already pinned are unpinned again.
func (m *Manager) pin(mac string, ips, old []netip.Addr) error {
	nc := m.cfg.NeighborControl
	hw, err := net.ParseMAC(mac)
	if nc == nil || err != nil {
		return nil
	}
	for i, a := range ips {
		if slices.Contains(old, a) {
			continue
		}
		if err := nc.Pin(hw, a); err != nil {
			for _, p := range ips[:i] {
				if !slices.Contains(old, p) {
					nc.Unpin(hw, p)
				}
			}
			return errorf(ErrConflict, "%s: %v", a, err)
		}
	}
	return nil
}

// unpin tells package neighbor that old's addresses not in ips are no
// longer static addresses of mac.
func (m *Manager) unpin(mac string, old, ips []netip.Addr) {
	nc := m.cfg.NeighborControl
	hw, err := net.ParseMAC(mac)
	if nc == nil || err != nil {
		return
	}
	for _, a := range old {
		if !slices.Contains(ips, a) {
			nc.Unpin(hw, a)
		}
	}
}

// staticTaken removes mac's static addresses from the learned addresses
// of every device (its own included: they are static now).
func (m *Manager) staticTaken(mac string, ips []netip.Addr) {
	for _, a := range ips {
		if other := m.st.learnedBy[a]; other != "" {
			m.unlearn(other, a)
		}
	}
}

// boundOnFirstUse applies a pinned address package neighbor reports for
// mac: when mac waits for its first address of the family, the address
// becomes a static address of its binding (an "address-bound" event), or
// is refused when another device holds it (an "address-conflict" event).
// It reports whether it handled the event.
func (m *Manager) boundOnFirstUse(mac string, a netip.Addr) bool {
	b, ok := m.st.bindings[mac]
	if !ok || slices.Contains(b.IPs, a) {
		return ok
	}
	v4, v6 := m.firstUseOf(mac)
	hw, _ := net.ParseMAC(mac)
	if (a.Is4() && !v4) || (a.Is6() && !v6) {
		// Pinned by package neighbor, but not waited for (a lease came,
		// the binding changed): an ordinary sighting.
		if m.cfg.NeighborControl != nil && hw != nil {
			m.cfg.NeighborControl.Unpin(hw, a)
		}
		return false
	}
	if other, how := m.holderOf(a, mac); other != "" {
		if m.cfg.NeighborControl != nil && hw != nil {
			m.cfg.NeighborControl.Unpin(hw, a)
		}
		m.syncFirstUse(mac)
		m.event(mac, "address-conflict", "", "", fmt.Sprintf("%s was seen using %s, which is %s %s; not bound", mac, a, how, other))
		return true
	}
	nb := b
	nb.IPs = append(slices.Clone(b.IPs), a)
	if err := m.update(func(tx *store.Tx) error { return tx.Bindings().Put(nb) }); err != nil {
		m.log.Error("binding an address on first use", "mac", mac, "addr", a, "err", err)
		if m.cfg.NeighborControl != nil && hw != nil {
			m.cfg.NeighborControl.Unpin(hw, a)
		}
		m.syncFirstUse(mac)
		return true
	}
	m.st.bindings[mac] = nb
	m.shareBinding(mac)
	m.syncFirstUse(mac)
	m.staticTaken(mac, []netip.Addr{a})
	if m.st.devices[mac] != nil {
		m.markMAC(markDevice, mac)
	}
	m.event(mac, "address-bound", "", "", fmt.Sprintf("%s bound to %s on first use", a, mac))
	return true
}

// SetLAN follows a change of the LAN's prefixes: local-networks (unless
// policy.local_networks sets it) and, with Config.BridgeLAN, the
// enforcer's bridge table change in one transaction, with a
// "lan-prefixes-changed" event.
func (m *Manager) SetLAN(ctx context.Context, prefixes []netip.Prefix) error {
	return m.do(ctx, func() error {
		m.onLAN(prefixes)
		return nil
	})
}

func (m *Manager) onLAN(prefixes []netip.Prefix) {
	if slices.Equal(prefixes, m.lan) {
		return
	}
	old := m.lan
	m.lan = slices.Clone(prefixes)
	m.lanDirty = m.cfg.BridgeLAN
	if len(m.cfg.Settings.LocalNetworks) == 0 {
		m.markPeer(markAll, localNetworksKey)
	}
	m.event("", "lan-prefixes-changed", "", "", fmt.Sprintf("LAN prefixes %s (were %s)", prefixList(prefixes), prefixList(old)))
}

func prefixList(ps []netip.Prefix) string {
	if len(ps) == 0 {
		return "none"
	}
	s := make([]string, len(ps))
	for i, p := range ps {
		s[i] = p.String()
	}
	return strings.Join(s, ", ")
}

// HandleNeighbor feeds one event of package neighbor (as
// Config.Neighbors would).
func (m *Manager) HandleNeighbor(ctx context.Context, ev neighbor.Event) error {
	return m.do(ctx, func() error { m.onNeighbor(ev); return nil })
}

// onNeighbor applies an address a device was seen using, or no longer
// holds, or a conflict package neighbor refused.
func (m *Manager) onNeighbor(ev neighbor.Event) {
	mac, err := store.NormalizeMAC(ev.MAC.String())
	if err != nil || !ev.Addr.IsValid() {
		return
	}
	a := ev.Addr.Unmap()
	switch ev.Kind {
	case neighbor.KindLearned, neighbor.KindRefreshed:
		if ev.Pinned && !ev.LinkLocal && m.boundOnFirstUse(mac, a) {
			m.touch(mac, m.now())
			return
		}
		if ev.LinkLocal || a.Is4() {
			// Link-local: never routed, the source guard always lets it
			// pass. IPv4: a device's IPv4 addresses are its DHCP leases'
			// and its static ones; one it configures itself (a moved
			// lease's old address kept or spoofed) stays refused.
			return
		}
		// A tentative address (duplicate address detection) is bound at
		// once, so that the device's first packet from it passes; if
		// another device defends it, package neighbor expires it.
		if _, ok := m.st.learned[mac][a]; ok {
			m.learn(mac, a, ev.Time)
			m.touch(mac, m.now())
			return
		}
		if other, how := m.holderOf(a, mac); other != "" && how != "in use by" {
			m.event(mac, "address-conflict", "", "", fmt.Sprintf("%s was seen using %s, which is %s %s; refused", mac, a, how, other))
			return
		}
		m.learn(mac, a, ev.Time)
		m.touch(mac, m.now())
	case neighbor.KindExpired:
		m.unlearn(mac, a)
	case neighbor.KindConflict:
		msg := fmt.Sprintf("%s claimed %s, which %s holds; refused", mac, a, ev.Holder)
		if ev.Reason != "" {
			msg += " (" + ev.Reason + ")"
		}
		m.event(mac, "address-conflict", "", "", msg)
	}
}

// staticLeaseChanged marks the devices other than mac whose static
// addresses are among ips (a lease of mac took or gave them back).
func (m *Manager) staticLeaseChanged(mac string, ips []netip.Addr) {
	for other, b := range m.st.bindings {
		if other != mac && slices.ContainsFunc(b.IPs, func(a netip.Addr) bool { return slices.Contains(ips, a) }) {
			m.markLearned(other)
		}
	}
}

// markLearned marks a device whose learned addresses changed, when it has
// a record (the addresses of other MACs wait until it has one).
func (m *Manager) markLearned(mac string) {
	if m.st.devices[mac] != nil {
		m.markMAC(markDevice, mac)
	}
}

// lessee is the device whose lease holds a, "" when none does (the first
// by MAC, should two).
func (m *Manager) lessee(a netip.Addr) string {
	hs := m.st.leases[a]
	if len(hs) == 0 {
		return ""
	}
	return hs[0].mac
}

// leased takes the addresses of a device's lease away from the learned
// addresses of every other device: a leased address is its lessee's.
func (m *Manager) leased(mac string, ips []netip.Addr) {
	for _, a := range ips {
		for other, b := range m.st.bindings {
			if other != mac && slices.Contains(b.IPs, a) && m.lessee(a) != mac {
				m.event(mac, "address-conflict", "", "", fmt.Sprintf("%s was leased %s, a static address of %s, which loses it while the lease lasts", mac, a, other))
			}
		}
		if other := m.st.learnedBy[a]; other != "" && other != mac {
			m.unlearn(other, a)
		}
	}
}
