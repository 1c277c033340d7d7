package manager

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/openmud/mud/store"
)

// The addresses learned for DNS names (from the resolver's own queries and
// the answers it snooped) are kept in the store, so that a restarted mudd
// installs at once the addresses devices hold answers for: a device does
// not ask again before its cached answer expires, and until then its
// connections to them would be refused. They are written on the manager's
// tick, at most once a tick per name, not on the path of a held answer; a
// crash loses at most the last tick's.

// saveDNS writes the names changed since the last call, without the
// addresses expired by now; a name left without any is deleted.
func (m *Manager) saveDNS(now time.Time) {
	if len(m.st.dnsUnsaved) == 0 {
		return
	}
	names := sortedKeys(m.st.dnsUnsaved)
	err := m.update(func(tx *store.Tx) error {
		for _, name := range names {
			rec := store.DNSName{Name: name}
			for a, exp := range m.st.dns[name] {
				if exp.After(now) {
					rec.Addrs = append(rec.Addrs, store.DNSAddr{Addr: a, Expires: exp})
				}
			}
			if len(rec.Addrs) == 0 {
				if err := tx.DNSNames().Delete(name); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				continue
			}
			slices.SortFunc(rec.Addrs, func(a, b store.DNSAddr) int { return a.Addr.Compare(b.Addr) })
			if err := tx.DNSNames().Put(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Kept unsaved: the next tick tries again.
		m.log.Warn("saving DNS addresses", "names", len(names), "err", err)
		return
	}
	clear(m.st.dnsUnsaved)
}

// restoreDNS fills dns from the stored names, leaving out what expired.
func restoreDNS(dns map[string]map[netip.Addr]time.Time, stored map[string]store.DNSName, now time.Time) {
	for name, rec := range stored {
		for _, a := range rec.Addrs {
			if !a.Expires.After(now) {
				continue
			}
			set := dns[name]
			if set == nil {
				set = map[netip.Addr]time.Time{}
				dns[name] = set
			}
			set[a.Addr.Unmap()] = a.Expires
		}
	}
}
