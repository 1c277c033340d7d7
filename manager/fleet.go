package manager

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/openmud/mud/store"
)

// This file shares the administrator's decisions with the other gateways
// of a site (Config.Fleet) and applies theirs.
//
// Outbound: once the store has committed a shared record — a trust pin, an
// approval or a rejection, a device's overrides, a controller or
// my-controller mapping, a binding — the record goes to the fleet as its
// store JSON (approvals and rejections in a fleetVerdict). The devices'
// summaries go too, when their state, addresses, enforcement, policy or
// URL change (not when only LastSeen does), collected and handed over once
// per Tick.
//
// Inbound: the fleet's events are inputs of the Run goroutine like a DHCP
// lease. A decision made elsewhere is written to the store and the devices
// it concerns are settled exactly as if an administrator had decided here,
// with events saying it came from the fleet. Nothing received is handed
// back to the fleet (a decision this gateway made comes back too; it is
// recognised and skipped). While the fleet is partitioned nothing changes
// here: enforcement keeps to the local store.

// FleetKind is a class of shared decision; the values are package fleet's
// kinds.
type FleetKind string

// The shared decisions.
const (
	FleetPinURL       FleetKind = "pins-url"
	FleetPinMAC       FleetKind = "pins-mac"
	FleetVerdictMAC   FleetKind = "verdicts-mac"
	FleetVerdictURL   FleetKind = "verdicts-url"
	FleetOverrides    FleetKind = "overrides"
	FleetController   FleetKind = "controllers"
	FleetMyController FleetKind = "my-controllers"
	FleetBinding      FleetKind = "bindings"
)

// FleetKinds lists every kind the manager shares.
func FleetKinds() []FleetKind {
	return []FleetKind{FleetPinURL, FleetPinMAC, FleetVerdictMAC, FleetVerdictURL, FleetOverrides,
		FleetController, FleetMyController, FleetBinding}
}

// FleetEventType says what a FleetEvent reports (package fleet's event
// types).
type FleetEventType string

// Fleet event types.
const (
	FleetChanged   FleetEventType = "changed"
	FleetResync    FleetEventType = "resync"
	FleetPartition FleetEventType = "partition"
	FleetHeal      FleetEventType = "heal"
	FleetConflict  FleetEventType = "conflict"
	FleetFlushed   FleetEventType = "flushed"
)

// FleetEvent is one event of the fleet: a shared decision as the fleet
// holds it now (changed, or the winner of a conflict), or a change of the
// connection.
type FleetEvent struct {
	Type    FleetEventType
	Kind    FleetKind
	Key     string
	Value   []byte
	Deleted bool
	// Err says why etcd is unreachable (partition).
	Err error
}

// FleetStatus is the fleet connection at a glance.
type FleetStatus struct {
	GatewayID   string
	Partitioned bool
	// Queued counts the writes etcd has not taken yet.
	Queued int
}

// FleetDecision is one shared decision to write: its value is the
// record's JSON, nil to withdraw it.
type FleetDecision struct {
	Kind  FleetKind
	Key   string
	Value []byte
}

// Fleet is what the manager needs of the fleet client (package fleet,
// adapted by internal/fleetlink). Submit and PutDevices return once the
// writes are queued on disk.
type Fleet interface {
	// Submit queues shared decisions, in order, in one write.
	Submit(ds ...FleetDecision) error
	// Known is the revision of a decision this gateway has seen in the
	// fleet; 0 when it has seen none.
	Known(kind FleetKind, key string) int64
	// PutDevices queues this gateway's summaries of devices, by MAC; a
	// nil summary removes the device's.
	PutDevices(summaries map[string][]byte) error
	// Events delivers the fleet's events; Run reads it.
	Events() <-chan FleetEvent
	Status() FleetStatus
}

// fleetVerdict is the value of a verdicts-mac or verdicts-url decision:
// an approval and a rejection of one device's file share one key, so that
// the fleet orders them.
type fleetVerdict struct {
	Verdict   string           `json:"verdict"` // "approved" or "rejected"
	Approval  *store.Approval  `json:"approval,omitempty"`
	Rejection *store.Rejection `json:"rejection,omitempty"`
}

const (
	verdictApproved = "approved"
	verdictRejected = "rejected"
)

// deviceSummary is this gateway's summary of one device, as the fleet's
// device summaries are encoded (fleet.DeviceSummary).
type deviceSummary struct {
	MAC         string    `json:"mac"`
	IPs         []string  `json:"ips,omitempty"`
	MUDURL      string    `json:"mud_url,omitempty"`
	State       string    `json:"state"`
	Enforcement string    `json:"enforcement,omitempty"`
	PolicyID    string    `json:"policy_id,omitempty"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}

func encodeSummary(d *store.Device, at time.Time) []byte {
	s := deviceSummary{MAC: d.MAC, MUDURL: d.MUDURL, State: string(d.State), Enforcement: string(d.Enforcement),
		PolicyID: d.PolicyID, UpdatedAt: at.UTC()}
	for _, a := range d.IPs {
		s.IPs = append(s.IPs, a.String())
	}
	b, _ := json.Marshal(s) // strings and a time: cannot fail
	return b
}

// fleetState is the manager's side of the fleet, owned by Run.
type fleetState struct {
	// sent are the values this gateway submitted that the fleet has not
	// reported back yet, per decision (kind, key); nil is a withdrawal.
	sent map[fleetKey][][]byte
	// devices are the MACs whose summary is due.
	devices map[string]bool
	// partitioned mirrors the last partition/heal event.
	partitioned bool
}

type fleetKey struct {
	kind FleetKind
	key  string
}

func newFleetState() fleetState {
	return fleetState{sent: map[fleetKey][][]byte{}, devices: map[string]bool{}}
}

// share hands a record to the fleet (nil rec withdraws it) once the store
// has committed it. The record is encoded now, as it is.
func (m *Manager) share(kind FleetKind, key string, rec any) {
	if m.cfg.Fleet == nil {
		return
	}
	d, ok := m.encodeShared(kind, key, rec)
	if !ok {
		return
	}
	m.afterCommit(func() {
		if rec == nil && m.cfg.Fleet.Known(kind, key) == 0 && len(m.fleet.sent[fleetKey{kind, key}]) == 0 {
			return // the fleet holds nothing to withdraw
		}
		m.submitShared([]FleetDecision{d})
	})
}

func (m *Manager) encodeShared(kind FleetKind, key string, rec any) (FleetDecision, bool) {
	d := FleetDecision{Kind: kind, Key: key}
	if rec != nil {
		var err error
		if d.Value, err = json.Marshal(rec); err != nil {
			m.log.Error("encoding a shared decision", "kind", kind, "key", key, "err", err)
			return d, false
		}
	}
	return d, true
}

// submitShared queues decisions and remembers them, to recognise them when the
// fleet reports them back.
func (m *Manager) submitShared(ds []FleetDecision) {
	if len(ds) == 0 {
		return
	}
	if err := m.cfg.Fleet.Submit(ds...); err != nil {
		m.log.Error("queueing shared decisions for the fleet", "decisions", len(ds), "err", err)
		m.event("", "fleet-error", "", "", fmt.Sprintf("%d decisions (%s %s first) were not queued for the fleet: %v", len(ds), ds[0].Kind, ds[0].Key, err))
		return
	}
	for _, d := range ds {
		k := fleetKey{d.Kind, d.Key}
		m.fleet.sent[k] = append(m.fleet.sent[k], d.Value)
	}
}

// localRecord is the record this gateway holds for a shared decision, as
// share would send it; false when it holds none.
func (m *Manager) localRecord(kind FleetKind, key string) (any, bool) {
	var rec any
	var ok bool
	switch kind {
	case FleetPinURL:
		rec, ok = m.st.pinsByURL[key]
	case FleetPinMAC:
		rec, ok = m.st.pinsByMAC[key]
	case FleetVerdictMAC:
		if a, had := m.st.approvalsByMAC[key]; had {
			return fleetVerdict{Verdict: verdictApproved, Approval: &a}, true
		}
		if r, had := m.rejection(key); had {
			return fleetVerdict{Verdict: verdictRejected, Rejection: &r}, true
		}
	case FleetVerdictURL:
		if a, had := m.st.approvalsByURL[key]; had {
			return fleetVerdict{Verdict: verdictApproved, Approval: &a}, true
		}
	case FleetOverrides:
		rec, ok = m.st.overrides[key]
	case FleetController:
		rec, ok = m.st.controllers[key]
	case FleetMyController:
		rec, ok = m.st.myControllers[key]
	case FleetBinding:
		rec, ok = m.st.bindings[key]
	}
	return rec, ok
}

// sameAsLocal reports whether a shared decision says what this gateway
// holds already (a pin first seen elsewhere at another time included).
func (m *Manager) sameAsLocal(ev FleetEvent) bool {
	rec, ok := m.localRecord(ev.Kind, ev.Key)
	if ev.Deleted || !ok {
		return ev.Deleted && !ok
	}
	if p, isPin := rec.(store.Pin); isPin {
		var sp store.Pin
		return json.Unmarshal(ev.Value, &sp) == nil && samePin(p, sp)
	}
	shared := reflect.New(reflect.TypeOf(rec))
	if json.Unmarshal(ev.Value, shared.Interface()) != nil {
		return false
	}
	return same(rec, shared.Elem().Interface())
}

// publishUnshared hands the fleet, in one write, every shared record of
// the store the fleet has not seen from this gateway: what was decided
// before the gateway joined (store.backend bbolt until now). Where the
// fleet decided otherwise meanwhile, the write is refused and the fleet's
// decision applies here (a conflict).
func (m *Manager) publishUnshared() {
	var ds []FleetDecision
	seen := map[fleetKey]bool{}
	add := func(kind FleetKind, keys []string) {
		for _, k := range keys {
			if seen[fleetKey{kind, k}] || m.cfg.Fleet.Known(kind, k) != 0 {
				continue
			}
			seen[fleetKey{kind, k}] = true
			if rec, ok := m.localRecord(kind, k); ok {
				if d, ok := m.encodeShared(kind, k, rec); ok {
					ds = append(ds, d)
				}
			}
		}
	}
	add(FleetPinURL, sortedKeys(m.st.pinsByURL))
	add(FleetPinMAC, sortedKeys(m.st.pinsByMAC))
	add(FleetVerdictMAC, sortedKeys(m.st.approvalsByMAC))
	add(FleetVerdictMAC, sortedKeys(m.st.rejected))
	add(FleetVerdictURL, sortedKeys(m.st.approvalsByURL))
	add(FleetOverrides, sortedKeys(m.st.overrides))
	add(FleetController, sortedKeys(m.st.controllers))
	add(FleetMyController, sortedKeys(m.st.myControllers))
	add(FleetBinding, sortedKeys(m.st.bindings))
	if len(ds) > 0 {
		m.log.Info("handing the fleet the decisions it has not seen from this gateway", "decisions", len(ds))
	}
	m.submitShared(ds)
}

func (m *Manager) shareBinding(mac string) {
	if b, ok := m.st.bindings[mac]; ok {
		m.share(FleetBinding, mac, b)
	} else {
		m.share(FleetBinding, mac, nil)
	}
}

func (m *Manager) shareOverrides(mac string) {
	if o, ok := m.st.overrides[mac]; ok {
		m.share(FleetOverrides, mac, o)
	} else {
		m.share(FleetOverrides, mac, nil)
	}
}

// sharePins hands the pins persist just wrote to the fleet.
func (m *Manager) sharePins(mac, u string, oldM, oldU store.Pin, hadM, hadU bool) {
	if m.cfg.Fleet == nil {
		return
	}
	if p, ok := m.st.pinsByMAC[mac]; ok && (!hadM || !samePin(p, oldM)) {
		m.share(FleetPinMAC, mac, p)
	}
	if p, ok := m.st.pinsByURL[u]; ok && u != "" && (!hadU || !samePin(p, oldU)) {
		m.share(FleetPinURL, u, p)
	}
}

func samePin(a, b store.Pin) bool {
	return a.MUDURL == b.MUDURL && a.Signer == b.Signer && a.Authority == b.Authority
}

// deviceChanged notes a device whose summary the fleet should have.
func (m *Manager) deviceChanged(old, d *store.Device) {
	if m.cfg.Fleet == nil {
		return
	}
	if old != nil && old.State == d.State && old.Enforcement == d.Enforcement && old.PolicyID == d.PolicyID &&
		old.MUDURL == d.MUDURL && slices.Equal(old.IPs, d.IPs) {
		return
	}
	m.fleet.devices[d.MAC] = true
}

// flushSummaries hands the due device summaries to the fleet (a device
// no longer known: its summary is removed).
func (m *Manager) flushSummaries() {
	if m.cfg.Fleet == nil || len(m.fleet.devices) == 0 {
		return
	}
	now := m.now()
	out := make(map[string][]byte, len(m.fleet.devices))
	for mac := range m.fleet.devices {
		if d := m.st.devices[mac]; d != nil {
			out[mac] = encodeSummary(d, now)
		} else {
			out[mac] = nil
		}
	}
	if err := m.cfg.Fleet.PutDevices(out); err != nil {
		m.log.Error("queueing device summaries for the fleet", "devices", len(out), "err", err)
		return
	}
	clear(m.fleet.devices)
}

// onFleet handles one event of the fleet.
func (m *Manager) onFleet(ev FleetEvent) {
	switch ev.Type {
	case FleetPartition:
		m.fleet.partitioned = true
		msg := "etcd is unreachable: enforcing from the local store, decisions made here are queued"
		if ev.Err != nil {
			msg += " (" + ev.Err.Error() + ")"
		}
		m.event("", "fleet-partition", "", "", msg)
	case FleetHeal:
		m.fleet.partitioned = false
		m.event("", "fleet-heal", "", "", "etcd is reachable again: queued decisions are being written")
	case FleetResync:
		m.log.Info("fleet: every shared decision was read again")
	case FleetConflict:
		// A decision made here lost to another gateway's: theirs holds.
		delete(m.fleet.sent, fleetKey{ev.Kind, ev.Key})
		if m.sameAsLocal(ev) {
			// Both decided the same (two gateways pinned what they both
			// saw, or this one joined with what the fleet holds).
			return
		}
		m.event("", "fleet-conflict", "", "", fmt.Sprintf("%s %s: another gateway decided first; its decision applies here", ev.Kind, ev.Key))
		m.applyFleet(ev)
	case FleetChanged:
		if m.ownEcho(ev) {
			return
		}
		m.applyFleet(ev)
	}
}

// ownEcho reports whether ev is a decision this gateway submitted coming
// back, and forgets it and what was submitted before it. Another
// gateway's write forgets them all: what this gateway wrote before it has
// come back already, and what it wrote after will be refused as a
// conflict.
func (m *Manager) ownEcho(ev FleetEvent) bool {
	k := fleetKey{ev.Kind, ev.Key}
	vs := m.fleet.sent[k]
	for i, v := range vs {
		if (ev.Deleted && v == nil) || (!ev.Deleted && v != nil && bytes.Equal(v, ev.Value)) {
			if i == len(vs)-1 {
				delete(m.fleet.sent, k)
			} else {
				m.fleet.sent[k] = vs[i+1:]
			}
			return true
		}
	}
	delete(m.fleet.sent, k)
	return false
}

// errFleetValue: a shared decision that cannot be applied.
var errFleetValue = errors.New("shared decision not usable")

// applyFleet applies a decision made elsewhere, as if an administrator had
// made it here; a decision equal to what the store holds changes nothing.
func (m *Manager) applyFleet(ev FleetEvent) {
	var err error
	switch ev.Kind {
	case FleetPinMAC, FleetPinURL:
		err = m.fleetPin(ev)
	case FleetVerdictMAC:
		err = m.fleetVerdictMAC(ev)
	case FleetVerdictURL:
		err = m.fleetVerdictURL(ev)
	case FleetOverrides:
		err = m.fleetOverrides(ev)
	case FleetController, FleetMyController:
		err = m.fleetController(ev)
	case FleetBinding:
		err = m.fleetBinding(ev)
	default:
		err = fmt.Errorf("%w: unknown kind %q", errFleetValue, ev.Kind)
	}
	if err != nil {
		m.log.Warn("a decision from the fleet was not applied", "kind", ev.Kind, "key", ev.Key, "err", err)
		m.event("", "fleet-refused", "", "", fmt.Sprintf("%s %q from the fleet was not applied: %v", ev.Kind, ev.Key, err))
	}
}

// decode reads a shared value into rec; the record's own key must be the
// decision's.
func decode(ev FleetEvent, rec any, key func() string) error {
	if err := json.Unmarshal(ev.Value, rec); err != nil {
		return fmt.Errorf("%w: %v", errFleetValue, err)
	}
	if k := key(); k != ev.Key {
		return fmt.Errorf("%w: the record names %q", errFleetValue, k)
	}
	return nil
}

// same reports whether a local record encodes as the shared one.
func same(local any, shared any) bool {
	a, err1 := json.Marshal(local)
	b, err2 := json.Marshal(shared)
	return err1 == nil && err2 == nil && bytes.Equal(a, b)
}

func macKey(ev FleetEvent) (string, error) {
	n, err := store.NormalizeMAC(ev.Key)
	if err != nil || n != ev.Key {
		return "", fmt.Errorf("%w: key %q is not a MAC in normal form", errFleetValue, ev.Key)
	}
	return n, nil
}

// settleMAC settles a known device after a decision about it.
func (m *Manager) settleMAC(mac, kind, msg string) {
	if d := m.st.devices[mac]; d != nil && d.State != store.StateRemoved {
		_ = m.settle(*d, kind, msg)
	}
}

func (m *Manager) fleetPin(ev FleetEvent) error {
	byMAC := ev.Kind == FleetPinMAC
	key := ev.Key
	if byMAC {
		var err error
		if key, err = macKey(ev); err != nil {
			return err
		}
	}
	tbl := m.st.pinsByURL
	if byMAC {
		tbl = m.st.pinsByMAC
	}
	old, had := tbl[key]
	var p store.Pin
	if !ev.Deleted {
		if err := decode(ev, &p, func() string {
			if byMAC {
				return p.MAC
			}
			return p.MUDURL
		}); err != nil {
			return err
		}
		if had && samePin(old, p) {
			return nil // the same pin, first seen elsewhere at another time
		}
	} else if !had {
		return nil
	}
	err := m.update(func(tx *store.Tx) error {
		t := tx.PinsByURL()
		if byMAC {
			t = tx.PinsByMAC()
		}
		if ev.Deleted {
			if err := t.Delete(key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		}
		return t.Put(p)
	})
	if err != nil {
		return fmt.Errorf("storing the pin: %w", err)
	}
	if ev.Deleted {
		delete(tbl, key)
	} else {
		tbl[key] = p
	}
	msg := "trust pin from the fleet"
	if byMAC {
		m.settleMAC(key, "", msg)
	} else {
		m.reevaluateURL(key, "", msg)
	}
	return nil
}

func (m *Manager) fleetVerdictMAC(ev FleetEvent) error {
	mac, err := macKey(ev)
	if err != nil {
		return err
	}
	var v fleetVerdict
	if !ev.Deleted {
		if err := json.Unmarshal(ev.Value, &v); err != nil {
			return fmt.Errorf("%w: %v", errFleetValue, err)
		}
	}
	a, hadA := m.st.approvalsByMAC[mac]
	r, hadR := m.rejection(mac)
	switch {
	case ev.Deleted:
		if !hadA && !hadR {
			return nil
		}
		if err := m.storeVerdictMAC(mac, nil, nil); err != nil {
			return err
		}
		m.settleMAC(mac, "", "verdict withdrawn in the fleet")
	case v.Verdict == verdictApproved && v.Approval != nil:
		na := *v.Approval
		if na.MAC != mac || na.Digest == "" {
			return fmt.Errorf("%w: the approval names %q, digest %q", errFleetValue, na.MAC, na.Digest)
		}
		if hadA && !hadR && same(a, na) {
			return nil
		}
		if err := m.storeVerdictMAC(mac, &na, nil); err != nil {
			return err
		}
		delete(m.st.flags, mac)
		m.settleMAC(mac, "approved", "approval from the fleet: approved by "+na.By)
	case v.Verdict == verdictRejected && v.Rejection != nil:
		nr := *v.Rejection
		if nr.MAC != mac || nr.Digest == "" {
			return fmt.Errorf("%w: the rejection names %q, digest %q", errFleetValue, nr.MAC, nr.Digest)
		}
		if hadR && !hadA && same(r, nr) {
			return nil
		}
		if err := m.storeVerdictMAC(mac, nil, &nr); err != nil {
			return err
		}
		m.settleMAC(mac, "rejected", joinMsg("rejection from the fleet: rejected by "+nr.By, nr.Reason))
	default:
		return fmt.Errorf("%w: verdict %q without its record", errFleetValue, v.Verdict)
	}
	return nil
}

// rejection is the stored rejection of mac, if any.
func (m *Manager) rejection(mac string) (store.Rejection, bool) {
	var r store.Rejection
	var ok bool
	_ = m.view(func(tx *store.Tx) error {
		var err error
		r, err = tx.Rejections().Get(mac)
		ok = err == nil
		return nil
	})
	return r, ok
}

// storeVerdictMAC makes a (or r, or neither) the one verdict about mac in
// the store and in memory.
func (m *Manager) storeVerdictMAC(mac string, a *store.Approval, r *store.Rejection) error {
	err := m.update(func(tx *store.Tx) error {
		if a != nil {
			if err := tx.ApprovalsByMAC().Put(*a); err != nil {
				return err
			}
		} else if err := tx.ApprovalsByMAC().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		if r != nil {
			return tx.Rejections().Put(*r)
		}
		if err := tx.Rejections().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("storing the verdict about %s: %w", mac, err)
	}
	if a != nil {
		m.st.approvalsByMAC[mac] = *a
	} else {
		delete(m.st.approvalsByMAC, mac)
	}
	if r != nil {
		m.st.rejected[mac] = r.Digest
	} else {
		delete(m.st.rejected, mac)
	}
	return nil
}

func (m *Manager) fleetVerdictURL(ev FleetEvent) error {
	u := ev.Key
	old, had := m.st.approvalsByURL[u]
	if ev.Deleted {
		if !had {
			return nil
		}
		if err := m.update(func(tx *store.Tx) error {
			if err := tx.ApprovalsByURL().Delete(u); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		}); err != nil {
			return fmt.Errorf("removing the approval of %s: %w", u, err)
		}
		delete(m.st.approvalsByURL, u)
		m.reevaluateURL(u, "", "approval withdrawn in the fleet")
		return nil
	}
	var v fleetVerdict
	if err := json.Unmarshal(ev.Value, &v); err != nil {
		return fmt.Errorf("%w: %v", errFleetValue, err)
	}
	if v.Verdict != verdictApproved || v.Approval == nil || v.Approval.MUDURL != u || v.Approval.Digest == "" {
		return fmt.Errorf("%w: not an approval of %s", errFleetValue, u)
	}
	a := *v.Approval
	if had && same(old, a) {
		return nil
	}
	if err := m.update(func(tx *store.Tx) error { return tx.ApprovalsByURL().Put(a) }); err != nil {
		return fmt.Errorf("recording the approval of %s: %w", u, err)
	}
	m.st.approvalsByURL[u] = a
	msg := "approval from the fleet: approved by " + a.By
	if c := m.st.candidate[u]; c != nil && c.file.Digest() == a.Digest {
		// The update that waited here is the one approved elsewhere.
		m.putFile(c.file, true)
		m.reevaluateURL(u, "update-approved", msg)
		return nil
	}
	for _, mac := range m.macsOf(u) {
		if d := m.st.devices[mac]; d.State == store.StatePendingApproval {
			_ = m.settle(*d, "approved", msg)
		}
	}
	return nil
}

func (m *Manager) fleetOverrides(ev FleetEvent) error {
	mac, err := macKey(ev)
	if err != nil {
		return err
	}
	old, had := m.st.overrides[mac]
	var o store.Overrides
	if ev.Deleted {
		if !had {
			return nil
		}
	} else {
		if err := decode(ev, &o, func() string { return o.MAC }); err != nil {
			return err
		}
		if had && same(old, o) {
			return nil
		}
	}
	err = m.update(func(tx *store.Tx) error {
		if ev.Deleted {
			if err := tx.Overrides().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		}
		return tx.Overrides().Put(o)
	})
	if err != nil {
		return fmt.Errorf("storing the overrides of %s: %w", mac, err)
	}
	if ev.Deleted {
		delete(m.st.overrides, mac)
		m.event(mac, "overrides-cleared", "", "", "from the fleet")
	} else {
		m.st.overrides[mac] = o
		m.event(mac, "overrides-set", "", "", fmt.Sprintf("from the fleet: %d entries", len(o.Rules)))
	}
	m.markMAC(markOverrides, mac)
	return nil
}

func (m *Manager) fleetController(ev FleetEvent) error {
	my := ev.Kind == FleetMyController
	tbl, kind := m.st.controllers, "controller"
	if my {
		tbl, kind = m.st.myControllers, "my-controller"
	}
	old, had := tbl[ev.Key]
	var c store.ControllerMapping
	if ev.Deleted {
		if !had {
			return nil
		}
	} else {
		if err := decode(ev, &c, func() string { return c.Name }); err != nil {
			return err
		}
		for _, p := range c.Prefixes {
			if !p.IsValid() {
				return fmt.Errorf("%w: an invalid prefix", errFleetValue)
			}
		}
		if had && same(old, c) {
			return nil
		}
	}
	err := m.update(func(tx *store.Tx) error {
		t := tx.Controllers()
		if my {
			t = tx.MyControllers()
		}
		if ev.Deleted {
			if err := t.Delete(ev.Key); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		}
		return t.Put(c)
	})
	if err != nil {
		return fmt.Errorf("storing %s %s: %w", kind, ev.Key, err)
	}
	var ps []netip.Prefix
	if ev.Deleted {
		delete(tbl, ev.Key)
	} else {
		tbl[ev.Key] = c
		ps = c.Prefixes
	}
	m.markAll()
	m.event("", "controller-set", "", "", fmt.Sprintf("%s %s: %v from the fleet", kind, ev.Key, ps))
	return nil
}

func (m *Manager) fleetBinding(ev FleetEvent) error {
	mac, err := macKey(ev)
	if err != nil {
		return err
	}
	old, had := m.st.bindings[mac]
	b := store.Binding{MAC: mac}
	if ev.Deleted {
		if !had {
			return nil
		}
	} else {
		if err := decode(ev, &b, func() string { return b.MAC }); err != nil {
			return err
		}
		if b.MUDURL == "" {
			return fmt.Errorf("%w: a binding without a MUD URL", errFleetValue)
		}
		if had && same(old, b) {
			return nil
		}
	}
	return m.setBinding(b, "", "binding from the fleet")
}

// dropRejection forgets an administrator's rejection of mac's file (an
// approval replaces it; a device that returns after its removal is judged
// afresh).
func (m *Manager) dropRejection(mac string) {
	if _, ok := m.st.rejected[mac]; !ok {
		return
	}
	delete(m.st.rejected, mac)
	err := m.update(func(tx *store.Tx) error {
		if err := tx.Rejections().Delete(mac); err != nil && !errors.Is(err, store.ErrNotFound) {
			return err
		}
		return nil
	})
	if err != nil {
		m.log.Error("removing a rejection", "mac", mac, "err", err)
	}
}
