package manager

import (
	"errors"
	"net/netip"
	"slices"
	"time"

	"github.com/openmud/mud/store"
)

// The addresses devices were seen using (package neighbor) are kept in the
// store with when each was last seen, so that a restarted mudd has them
// bound again at once — the daemon hands them back to package neighbor,
// which ages them from then — instead of refusing a device's traffic from
// its SLAAC and privacy addresses until it is heard from again. Like the
// DNS addresses they are written on the manager's tick; a refresh is
// written only once the stored time is savedSeenEvery old, so a restored
// address may expire that much early.
const savedSeenEvery = 10 * time.Minute

// learn records that mac holds a (last seen at seen; zero: now), and
// marks it when the address is new to it.
func (m *Manager) learn(mac string, a netip.Addr, seen time.Time) {
	if seen.IsZero() {
		seen = m.now()
	}
	set := m.st.learned[mac]
	if set == nil {
		set = map[netip.Addr]time.Time{}
		m.st.learned[mac] = set
	}
	old, known := set[a]
	if known && seen.Before(old.Add(savedSeenEvery)) {
		return
	}
	set[a] = seen
	m.st.learnedUnsaved[mac] = true
	if !known {
		if prev := m.st.learnedBy[a]; prev != "" && prev != mac {
			m.unlearn(prev, a)
		}
		m.st.learnedBy[a] = mac
		m.markLearned(mac)
	}
}

// unlearn takes a from mac's learned addresses.
func (m *Manager) unlearn(mac string, a netip.Addr) {
	set := m.st.learned[mac]
	if _, ok := set[a]; !ok {
		return
	}
	delete(set, a)
	if len(set) == 0 {
		delete(m.st.learned, mac)
	}
	if m.st.learnedBy[a] == mac {
		delete(m.st.learnedBy, a)
	}
	m.st.learnedUnsaved[mac] = true
	m.markLearned(mac)
}

// saveLearned writes the learned addresses of the MACs changed since the
// last call; a MAC left without any has its record deleted.
func (m *Manager) saveLearned() {
	if len(m.st.learnedUnsaved) == 0 {
		return
	}
	macs := sortedKeys(m.st.learnedUnsaved)
	err := m.update(func(tx *store.Tx) error {
		for _, mac := range macs {
			set := m.st.learned[mac]
			if len(set) == 0 {
				if err := tx.Learned().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				continue
			}
			rec := store.LearnedAddrs{MAC: mac}
			for a, seen := range set {
				rec.Addrs = append(rec.Addrs, store.LearnedAddr{Addr: a, Seen: seen})
			}
			slices.SortFunc(rec.Addrs, func(a, b store.LearnedAddr) int { return a.Addr.Compare(b.Addr) })
			if err := tx.Learned().Put(rec); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		// Kept unsaved: the next tick tries again.
		m.log.Warn("saving learned addresses", "devices", len(macs), "err", err)
		return
	}
	clear(m.st.learnedUnsaved)
}
