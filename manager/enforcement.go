package manager

import (
	"github.com/openmud/mud/config"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/store"
)

// No silent fail-open. A device that announced a MUD URL but whose file
// cannot be used — being fetched, failed, pending approval, an invalid
// URL — is held to policy.on_failure: "baseline" leaves it unrestricted
// (as if it had no MUD URL), "block" lets it do nothing but DHCP. Either
// way its record says so: Enforcement is "unenforced" or "blocked" and
// UnenforcedReason says why, an "unenforced" event is appended when it
// becomes unrestricted (see enforcementEvent) and an "unenforced-ended" one
// when that ends, and
// the mud_devices_unenforced gauge counts them. The enforcer is driven
// from Enforcement alone (modeOf), so what mudctl shows is what the kernel
// holds.

// enforcement says what a device in its (just evaluated) state is held to
// under the current settings, and why its policy is not in force.
func (m *Manager) enforcement(d *store.Device) (store.Enforcement, string) {
	switch d.State {
	case store.StateEnforced:
		return store.EnforcementEnforced, ""
	case store.StateQuarantined:
		return store.EnforcementQuarantined, ""
	case store.StateFetching, store.StatePendingApproval, store.StateFailed:
		why := d.Reason
		switch d.State {
		case store.StateFetching:
			why = "its MUD file has not been fetched yet (" + d.Reason + ")"
		case store.StatePendingApproval:
			why = "its MUD file awaits an administrator's approval: " + d.Reason
		}
		if m.cfg.Settings.OnFailure == config.Block {
			return store.EnforcementBlocked, why
		}
		return store.EnforcementUnenforced, why
	}
	return store.EnforcementNone, ""
}

// enforcementEvent is the event of a device becoming unrestricted because
// its file cannot be used, or ceasing to be; nil otherwise. A device's
// first fetch (a moment, normally) is unenforced too — its record says so
// — but an event is only told once the file could not be used: the fetch
// failed, the file awaits approval or is unusable, the URL is invalid.
// "unenforced-ended" follows every "unenforced".
func (m *Manager) enforcementEvent(old, d *store.Device) *store.Event {
	told := m.st.notified[d.MAC] || (old != nil && old.Enforcement == store.EnforcementUnenforced && old.State != store.StateFetching)
	switch {
	case d.Enforcement == store.EnforcementUnenforced && d.State != store.StateFetching && !told:
		m.st.notified[d.MAC] = true
		return &store.Event{MAC: d.MAC, Kind: "unenforced",
			Message: d.UnenforcedReason + "; the device is unrestricted until its MUD file can be used (policy.on_failure: baseline)"}
	case told && d.Enforcement != store.EnforcementUnenforced:
		delete(m.st.notified, d.MAC)
		msg := "now " + string(d.Enforcement)
		if d.UnenforcedReason != "" {
			msg += ": " + d.UnenforcedReason
		}
		return &store.Event{MAC: d.MAC, Kind: "unenforced-ended", Message: msg}
	case told:
		m.st.notified[d.MAC] = true
	}
	return nil
}

// modeOf is how the enforcer treats a device, and whether it is in the
// enforcer's maps at all (unenforced and none: the no-MUD treatment).
func modeOf(d *store.Device) (enforcer.Mode, bool) {
	switch d.Enforcement {
	case store.EnforcementEnforced:
		return enforcer.Enforce, true
	case store.EnforcementQuarantined:
		return enforcer.Quarantine, true
	case store.EnforcementBlocked:
		return enforcer.Block, true
	}
	return 0, false
}
