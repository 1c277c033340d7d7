package manager

import (
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/store"
)

// maxForgetListed is how many forgotten MACs the event names.
const maxForgetListed = 10

// forget drops the records of devices that never got past DHCP: never
// enforced (no signer pinned for the MAC), no address now, nothing an
// administrator set for them (quarantine, binding, approval, override),
// and not seen for Settings.ForgetAfter. A DHCP flood from made-up MACs
// leaves nothing behind for longer than that. One event says how many went,
// by port. It also prunes the records of any device without an address and
// without an administrator's setting not seen for Settings.PruneAfter, its
// MAC's signer pin with it: devices that randomise their MAC would
// otherwise leave a record per address for ever.
func (m *Manager) forget(now time.Time) {
	s := m.st
	forgetCut, pruneCut := now.Add(-m.cfg.Settings.ForgetAfter), now.Add(-m.cfg.Settings.PruneAfter)
	var gone, pruned []string
	for mac, d := range s.devices {
		switch {
		case m.forgettable(mac, d, forgetCut):
			gone = append(gone, mac)
		case m.prunable(mac, d, pruneCut):
			pruned = append(pruned, mac)
		}
	}
	if len(gone) == 0 && len(pruned) == 0 {
		return
	}
	var msgs []string
	if len(gone) > 0 {
		byPort := map[string]int{}
		for _, mac := range gone {
			byPort[portName(s.devices[mac].Port)]++
		}
		var ports []string
		for _, p := range sortedKeys(byPort) {
			ports = append(ports, fmt.Sprintf("%s: %d", p, byPort[p]))
		}
		msgs = append(msgs, fmt.Sprintf("forgot %d devices that never got past DHCP (never enforced, no address, not seen for %s; %s): %s",
			len(gone), m.cfg.Settings.ForgetAfter, strings.Join(ports, ", "), listMACs(gone)))
	}
	if len(pruned) > 0 {
		msgs = append(msgs, fmt.Sprintf("pruned %d device records (no address, nothing an administrator set, not seen for %s): %s",
			len(pruned), m.cfg.Settings.PruneAfter, listMACs(pruned)))
	}
	kinds := []string{"forgotten", "pruned"}
	if len(gone) == 0 {
		kinds = kinds[1:]
	}
	all := append(slices.Clone(gone), pruned...)
	stored := make([]store.Event, len(msgs))
	err := m.update(func(tx *store.Tx) error {
		for _, mac := range all {
			if err := tx.Devices().Delete(mac); err != nil {
				return err
			}
		}
		for _, mac := range all {
			if _, ok := s.rejected[mac]; ok {
				if err := tx.Rejections().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
			}
		}
		for _, mac := range pruned {
			if _, ok := s.pinsByMAC[mac]; ok {
				if err := tx.PinsByMAC().Delete(mac); err != nil {
					return err
				}
			}
		}
		for i, msg := range msgs {
			var err error
			if stored[i], err = tx.AppendEvent(store.Event{Kind: kinds[i], Message: msg}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		m.log.Error("forgetting devices", "devices", len(all), "err", err)
		return
	}
	for _, mac := range all {
		m.dropDevice(mac)
		delete(s.pending, mac)
		delete(s.flags, mac)
		delete(s.rejected, mac)
		delete(s.removeAt, mac)
		delete(s.notified, mac)
		delete(s.violated, mac)
		delete(s.urlUnknown, mac)
		delete(s.pinsByMAC, mac)
		delete(m.latencyTarget, mac)
		delete(m.sched.macRun, mac)
		if m.cfg.Fleet != nil {
			m.fleet.devices[mac] = true // its summary goes
		}
	}
	for _, e := range stored {
		m.publish(e)
	}
	m.log.Info("forgot device records", "never past DHCP", len(gone), "pruned", len(pruned))
}

// listMACs names the first maxForgetListed MACs of sorted macs.
func listMACs(macs []string) string {
	slices.Sort(macs)
	listed := macs[:min(len(macs), maxForgetListed)]
	more := ""
	if n := len(macs) - len(listed); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	return strings.Join(listed, ", ") + more
}

// prunable: no address, not in its removal grace, nothing an
// administrator set, not seen since cut.
func (m *Manager) prunable(mac string, d *store.Device, cut time.Time) bool {
	s := m.st
	last := d.LastSeen
	if last.IsZero() {
		last = d.FirstSeen
	}
	if d.Quarantine != nil || len(d.IPs) > 0 || !last.Before(cut) {
		return false
	}
	if _, ok := s.removeAt[mac]; ok {
		return false
	}
	_, bound := s.bindings[mac]
	_, approved := s.approvalsByMAC[mac]
	return !bound && !approved && len(s.overrides[mac].Rules) == 0
}

func (m *Manager) forgettable(mac string, d *store.Device, cut time.Time) bool {
	s := m.st
	last := d.LastSeen
	if last.IsZero() {
		last = d.FirstSeen
	}
	if d.State == store.StateEnforced || d.Quarantine != nil || len(d.IPs) > 0 || !last.Before(cut) {
		return false
	}
	if _, ok := s.removeAt[mac]; ok {
		return false
	}
	_, pinned := s.pinsByMAC[mac]
	_, bound := s.bindings[mac]
	_, approved := s.approvalsByMAC[mac]
	return !pinned && !bound && !approved && len(s.overrides[mac].Rules) == 0
}
