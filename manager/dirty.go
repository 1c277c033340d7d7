package manager

import (
	"net/netip"
	"slices"
	"strings"

	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// What a reconcile recomputes. Every place that writes state the enforcer
// or the resolver depends on marks what it changed: a device record (its
// MAC), an administrator's overrides (the MAC), a URL's compiled model
// (every device announcing the URL), a DNS name's addresses (its peer key),
// or, for the settings and the controller mappings, everything. A
// reconcile recomputes the entries of the marked devices only, the peers
// whose elements those can have changed (a device entering or leaving a
// model or manufacturer class marks the class), and installs or removes
// policies and peers by reference count; so its cost follows the change,
// not the number of devices. computeDesired derives the same from scratch
// (start-up and recovery, and the reference the tests hold the marks to).

// markKind is a kind of change that marks something dirty.
type markKind uint8

const (
	markDevice    markKind = 1 << iota // a device record written or deleted
	markOverrides                      // a device's overrides set or cleared
	markModel                          // a URL's compiled model set or dropped
	markDNS                            // a DNS name's addresses updated
	markAll                            // settings or controller mappings changed
)

// dirtySet is what changed since the last reconcile.
type dirtySet struct {
	all   bool
	macs  map[string]struct{}
	urls  map[string]struct{}
	peers map[string]struct{}
}

func newDirtySet() dirtySet {
	return dirtySet{macs: map[string]struct{}{}, urls: map[string]struct{}{}, peers: map[string]struct{}{}}
}

func (d *dirtySet) empty() bool {
	return !d.all && len(d.macs) == 0 && len(d.urls) == 0 && len(d.peers) == 0
}

// onlyPeers says that nothing but peer elements changed.
func (d *dirtySet) onlyPeers() bool {
	return !d.all && len(d.macs) == 0 && len(d.urls) == 0
}

func (d *dirtySet) reset() {
	d.all = false
	clear(d.macs)
	clear(d.urls)
	clear(d.peers)
}

// skipped says whether a test switched marking of this kind off (to show
// that the reconcile then misses the change).
func (m *Manager) skipped(k markKind) bool { return m.skipMarks&k != 0 }

// markMAC marks a device's entry for recomputation.
func (m *Manager) markMAC(k markKind, mac string) {
	if !m.skipped(k) {
		m.dirty.macs[mac] = struct{}{}
	}
}

// markURL marks the entries of every device announcing u.
func (m *Manager) markURL(u string) {
	if !m.skipped(markModel) {
		m.dirty.urls[u] = struct{}{}
	}
}

// markPeer marks a peer's elements for recomputation.
func (m *Manager) markPeer(k markKind, key string) {
	if !m.skipped(k) {
		m.dirty.peers[key] = struct{}{}
	}
}

// markAll makes the next reconcile recompute every device and peer.
func (m *Manager) markAll() {
	if !m.skipped(markAll) {
		m.dirty.all = true
	}
}

// stateIndex is what the state keeps besides the records to find a
// device's class and count the devices without going through all of them.
type stateIndex struct {
	byURL      map[string]map[string]struct{} // MUD URL → MACs announcing it (any state)
	byAuth     map[string]map[string]struct{} // authority → MACs whose URL has it
	urlOf      map[string]string              // MAC → the URL it is indexed under
	counts     map[store.State]int            // devices by state
	unenforced int                            // devices whose Enforcement is unenforced
	leases     map[netip.Addr][]leaseHold     // leased address → devices not removed that hold it, by MAC
}

// leaseHold is one device holding a leased address (n times: a device's
// record may list an address twice). An address has one holder but for
// a conflict: a slice, not a map, per address.
type leaseHold struct {
	mac string
	n   int
}

func newStateIndex() stateIndex {
	return stateIndex{byURL: map[string]map[string]struct{}{}, byAuth: map[string]map[string]struct{}{},
		urlOf: map[string]string{}, counts: map[store.State]int{}, leases: map[netip.Addr][]leaseHold{}}
}

func addTo(idx map[string]map[string]struct{}, k, mac string) {
	s := idx[k]
	if s == nil {
		s = map[string]struct{}{}
		idx[k] = s
	}
	s[mac] = struct{}{}
}

func removeFrom(idx map[string]map[string]struct{}, k, mac string) {
	if s := idx[k]; s != nil {
		delete(s, mac)
		if len(s) == 0 {
			delete(idx, k)
		}
	}
}

// count adds (n = 1) or removes (n = -1) a device from the tallies.
func (x *stateIndex) count(d *store.Device, n int) {
	x.counts[d.State] += n
	if x.counts[d.State] == 0 {
		delete(x.counts, d.State)
	}
	if d.Enforcement == store.EnforcementUnenforced {
		x.unenforced += n
	}
	if d.State == store.StateRemoved {
		return
	}
	for _, a := range d.IPs {
		hs := x.leases[a]
		i, found := slices.BinarySearchFunc(hs, d.MAC, func(h leaseHold, mac string) int { return strings.Compare(h.mac, mac) })
		if !found {
			if n <= 0 {
				continue
			}
			hs = slices.Insert(hs, i, leaseHold{mac: d.MAC})
		}
		if hs[i].n += n; hs[i].n <= 0 {
			hs = slices.Delete(hs, i, i+1)
		}
		if len(hs) == 0 {
			delete(x.leases, a)
		} else {
			x.leases[a] = hs
		}
	}
}

// setURL indexes a device under its current URL.
func (x *stateIndex) setURL(mac, u string) {
	old, ok := x.urlOf[mac]
	if ok && old == u {
		return
	}
	if ok {
		removeFrom(x.byURL, old, mac)
		removeFrom(x.byAuth, authority(old), mac)
		delete(x.urlOf, mac)
	}
	if u != "" {
		addTo(x.byURL, u, mac)
		addTo(x.byAuth, authority(u), mac)
		x.urlOf[mac] = u
	}
}

// putDevice makes d the device's record in memory (after the store took
// it) and marks it.
func (m *Manager) putDevice(d *store.Device) {
	s := m.st
	if old := s.devices[d.MAC]; old != nil {
		s.count(old, -1)
	}
	s.devices[d.MAC] = d
	s.count(d, 1)
	s.setURL(d.MAC, d.MUDURL)
	m.markMAC(markDevice, d.MAC)
}

// dropDevice deletes a device's record from memory (after the store
// deleted it) and marks it.
func (m *Manager) dropDevice(mac string) {
	s := m.st
	if old := s.devices[mac]; old != nil {
		s.count(old, -1)
	}
	delete(s.devices, mac)
	s.setURL(mac, "")
	m.markMAC(markDevice, mac)
}

// macsOf lists the devices announcing u, by MAC.
func (m *Manager) macsOf(u string) []string {
	set := m.st.byURL[u]
	out := make([]string, 0, len(set))
	for mac := range set {
		out = append(out, mac)
	}
	slices.Sort(out)
	return out
}

// classKeys are the peer keys of the model and manufacturer classes of a
// device's entry; none when it is not a member of any.
func classKeys(e *devEntry) []string {
	if e == nil || !e.member() {
		return nil
	}
	return []string{policy.Peer{Kind: policy.Model, Value: e.url}.Key(), policy.Peer{Kind: policy.Manufacturer, Value: e.auth}.Key()}
}
