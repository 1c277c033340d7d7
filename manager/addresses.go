package manager

import (
	"context"
	"fmt"
	"net/netip"
	"slices"
	"strings"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// The addresses a device holds come from two places: its DHCP leases
// (store.Device.IPs) and the IPv6 addresses package neighbor saw it use
// (neighbour discovery, duplicate address detection, the kernel's
// neighbour table): SLAAC, privacy and static IPv6 addresses. IPv4
// addresses are the leases' alone. The enforcer's source
// guard binds both to the device. An address is bound to one device only:
// a leased address is its lessee's, and a learned address another device
// holds by lease is refused and reported (an "address-conflict" event),
// as package neighbor refuses and reports an address another MAC holds.
//
// The LAN's prefixes (package lanwatch) are the default of local-networks
// (RFC 8520 §4.5) and, with Config.BridgeLAN, the enforcer's bridge table
// prefixes; they change while mudd runs (SetLAN).

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

// addrsOf are the addresses bound to a device: its leased ones, then those
// it was seen using, in address order.
func (m *Manager) addrsOf(mac string, d *store.Device) []netip.Addr {
	l := m.st.learned[mac]
	if len(l) == 0 {
		return d.IPs
	}
	out := slices.Clone(d.IPs)
	var extra []netip.Addr
	for a := range l {
		if !slices.Contains(d.IPs, a) {
			extra = append(extra, a)
		}
	}
	slices.SortFunc(extra, netip.Addr.Compare)
	return append(out, extra...)
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
		if ev.LinkLocal || a.Is4() {
			// Link-local: never routed, the source guard always lets it
			// pass. IPv4: a device's IPv4 addresses are its DHCP leases';
			// one it configures itself (a moved lease's old address kept
			// or spoofed) stays refused.
			return
		}
		// A tentative address (duplicate address detection) is bound at
		// once, so that the device's first packet from it passes; if
		// another device defends it, package neighbor expires it.
		if _, ok := m.st.learned[mac][a]; ok {
			m.touch(mac, m.now())
			return
		}
		if other := m.lessee(a); other != "" && other != mac {
			m.event(mac, "address-conflict", "", "", fmt.Sprintf("%s was seen using %s, which is leased to %s; refused", mac, a, other))
			return
		}
		set := m.st.learned[mac]
		if set == nil {
			set = map[netip.Addr]struct{}{}
			m.st.learned[mac] = set
		}
		set[a] = struct{}{}
		m.markLearned(mac)
		m.touch(mac, m.now())
	case neighbor.KindExpired:
		if _, ok := m.st.learned[mac][a]; !ok {
			return
		}
		delete(m.st.learned[mac], a)
		if len(m.st.learned[mac]) == 0 {
			delete(m.st.learned, mac)
		}
		m.markLearned(mac)
	case neighbor.KindConflict:
		msg := fmt.Sprintf("%s claimed %s, which %s holds; refused", mac, a, ev.Holder)
		if ev.Reason != "" {
			msg += " (" + ev.Reason + ")"
		}
		m.event(mac, "address-conflict", "", "", msg)
	}
}

// markLearned marks a device whose learned addresses changed, when it has
// a record (the addresses of other MACs wait until it has one).
func (m *Manager) markLearned(mac string) {
	if m.st.devices[mac] != nil {
		m.markMAC(markDevice, mac)
	}
}

// lessee is the device whose lease holds a, "" when none does.
func (m *Manager) lessee(a netip.Addr) string {
	for mac, d := range m.st.devices {
		if d.State != store.StateRemoved && slices.Contains(d.IPs, a) {
			return mac
		}
	}
	return ""
}

// leased takes the addresses of a device's lease away from the learned
// addresses of every other device: a leased address is its lessee's.
func (m *Manager) leased(mac string, ips []netip.Addr) {
	for _, a := range ips {
		for other, set := range m.st.learned {
			if other == mac {
				continue
			}
			if _, ok := set[a]; ok {
				delete(set, a)
				if len(set) == 0 {
					delete(m.st.learned, other)
				}
				m.markLearned(other)
			}
		}
	}
}
