package lanwatch

import (
	"net/netip"
	"slices"
)

// PrefixChange is a change of the LAN prefixes: the set before and the set
// after. Changes that were not received yet are merged: Old is the set the
// receiver last saw, New the current one.
type PrefixChange struct {
	Old, New []netip.Prefix
}

// Added are the prefixes in New and not in Old.
func (c PrefixChange) Added() []netip.Prefix { return minus(c.New, c.Old) }

// Removed are the prefixes in Old and not in New.
func (c PrefixChange) Removed() []netip.Prefix { return minus(c.Old, c.New) }

func minus(a, b []netip.Prefix) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range a {
		if !slices.Contains(b, p) {
			out = append(out, p)
		}
	}
	return out
}

// lanPrefixes are the prefixes of the addresses on the interfaces in lan:
// masked, sorted, each once. Only addresses a device on the LAN may use to
// reach others count: global unicast IPv4 (private ranges included) and
// IPv6 (unique local addresses included); link-local, loopback and
// multicast addresses do not.
func lanPrefixes(addrs []ifAddr, lan map[int]bool) []netip.Prefix {
	var out []netip.Prefix
	for _, a := range addrs {
		if !lan[a.index] || !a.prefix.Addr().IsGlobalUnicast() {
			continue
		}
		p := a.prefix.Masked()
		if !slices.Contains(out, p) {
			out = append(out, p)
		}
	}
	slices.SortFunc(out, comparePrefixes)
	return out
}

// comparePrefixes orders IPv4 before IPv6, then by address, then shorter
// prefixes first.
func comparePrefixes(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}
