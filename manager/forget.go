package manager

import (
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
// by port.
func (m *Manager) forget(now time.Time) {
	s := m.st
	cut := now.Add(-m.cfg.Settings.ForgetAfter)
	var gone []string
	for mac, d := range s.devices {
		if m.forgettable(mac, d, cut) {
			gone = append(gone, mac)
		}
	}
	if len(gone) == 0 {
		return
	}
	slices.Sort(gone)
	byPort := map[string]int{}
	for _, mac := range gone {
		byPort[portName(s.devices[mac].Port)]++
	}
	var ports []string
	for _, p := range sortedKeys(byPort) {
		ports = append(ports, fmt.Sprintf("%s: %d", p, byPort[p]))
	}
	listed := gone[:min(len(gone), maxForgetListed)]
	more := ""
	if n := len(gone) - len(listed); n > 0 {
		more = fmt.Sprintf(" and %d more", n)
	}
	msg := fmt.Sprintf("forgot %d devices that never got past DHCP (never enforced, no address, not seen for %s; %s): %s%s",
		len(gone), m.cfg.Settings.ForgetAfter, strings.Join(ports, ", "), strings.Join(listed, ", "), more)
	var stored store.Event
	err := m.cfg.Store.Update(func(tx *store.Tx) error {
		for _, mac := range gone {
			if err := tx.Devices().Delete(mac); err != nil {
				return err
			}
		}
		var err error
		stored, err = tx.AppendEvent(store.Event{Kind: "forgotten", Message: msg})
		return err
	})
	if err != nil {
		m.log.Error("forgetting devices", "devices", len(gone), "err", err)
		return
	}
	for _, mac := range gone {
		m.dropDevice(mac)
		delete(s.pending, mac)
		delete(s.flags, mac)
		delete(s.rejected, mac)
		delete(s.removeAt, mac)
		delete(s.notified, mac)
		delete(s.violated, mac)
		delete(s.urlUnknown, mac)
		delete(m.latencyTarget, mac)
		delete(m.sched.macRun, mac)
	}
	m.publish(stored)
	m.log.Info("forgot devices that never got past DHCP", "devices", len(gone), "ports", ports)
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
