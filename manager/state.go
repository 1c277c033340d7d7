package manager

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// state is the desired state, owned by the Run goroutine: the store's
// records plus what is derived from them (compiled policies) and what lives
// only in memory (fetches in flight, timers).
type state struct {
	devices        map[string]*store.Device
	bindings       map[string]store.Binding
	files          map[string]*store.MUDFile
	models         map[string]*model // by URL, from files
	pinsByURL      map[string]store.Pin
	pinsByMAC      map[string]store.Pin
	approvalsByMAC map[string]store.Approval
	approvalsByURL map[string]store.Approval
	overrides      map[string]store.Overrides
	controllers    map[string]store.ControllerMapping
	myControllers  map[string]store.ControllerMapping

	pending  map[string][]string                 // MAC → why it awaits approval
	flags    map[string][]string                 // MAC → suspicious DHCP observations (RFC 8520 §10.1, §16)
	rejected map[string]string                   // MAC → digest an admin rejected
	fetching map[string]bool                     // URLs with a fetch in flight
	jobs     map[string]*fetchJob                // URLs waiting for a fetch slot (see scheduler)
	fetch    map[string]*urlFetch                // URL → failures, next retry, latest attempts
	removeAt map[string]time.Time                // MAC → end of the removal grace period
	dns      map[string]map[netip.Addr]time.Time // name → address → expiry
	// dnsUnsaved are the names of dns changed since saveDNS last wrote
	// them to the store.
	dnsUnsaved map[string]bool
	candidate  map[string]*candidate               // URL → a refreshed file awaiting approval
	notified   map[string]bool                     // MAC → an "unenforced" event is open
	learned    map[string]map[netip.Addr]time.Time // MAC → addresses package neighbor saw it use → when last
	learnedBy  map[netip.Addr]string               // the learned addresses' holders
	// learnedUnsaved are the MACs whose learned addresses changed since
	// saveLearned last wrote them.
	learnedUnsaved map[string]bool
	// urlUnknown: MAC → where a device was found that joined while mudd
	// did not watch (a lease file, the forwarding database): its MUD URL
	// is unknown until its next DHCP request.
	urlUnknown map[string]string
	violated   map[string][]time.Time // MAC → when its recent new violations came (AutoQuarantine)

	stateIndex
}

// model is a parsed and compiled MUD file.
type model struct {
	digest string
	file   *mudfile.File
	pol    *policy.Policy
	err    string
}

func compileModel(u string, f *store.MUDFile) *model {
	md := &model{digest: f.Digest()}
	res := mudfile.Parse(f.Body)
	if !res.Valid() {
		var msgs []string
		for _, e := range res.Errors() {
			msgs = append(msgs, e.String())
		}
		md.err = "MUD file is invalid: " + strings.Join(msgs, "; ")
		return md
	}
	p, err := policy.Compile(res.File, policy.Context{MUDURL: u})
	if err != nil {
		md.err = "compiling the MUD file: " + err.Error()
		return md
	}
	md.file, md.pol = res.File, p
	return md
}

// authority is the URL's host[:port] in lower case, as package policy
// writes manufacturer peers.
func authority(u string) string {
	p, err := url.Parse(u)
	if err != nil {
		return ""
	}
	return strings.ToLower(p.Host)
}

// transitions lists the state changes the machine makes; anything else is
// a bug and logged as such.
var transitions = map[store.State][]store.State{
	store.StateDiscovered:      {store.StateFetching, store.StateEnforced, store.StatePendingApproval, store.StateFailed, store.StateQuarantined, store.StateRemoved},
	store.StateFetching:        {store.StateEnforced, store.StatePendingApproval, store.StateFailed, store.StateDiscovered, store.StateQuarantined, store.StateRemoved},
	store.StateEnforced:        {store.StatePendingApproval, store.StateFailed, store.StateFetching, store.StateDiscovered, store.StateQuarantined, store.StateRemoved},
	store.StatePendingApproval: {store.StateEnforced, store.StateFailed, store.StateFetching, store.StateDiscovered, store.StateQuarantined, store.StateRemoved},
	store.StateFailed:          {store.StateFetching, store.StateEnforced, store.StatePendingApproval, store.StateDiscovered, store.StateQuarantined, store.StateRemoved},
	store.StateQuarantined:     {store.StateDiscovered, store.StateFetching, store.StateEnforced, store.StatePendingApproval, store.StateFailed, store.StateRemoved},
	store.StateRemoved:         {store.StateDiscovered, store.StateFetching, store.StateEnforced, store.StatePendingApproval, store.StateFailed, store.StateQuarantined},
}

// ValidTransition reports whether the state machine moves from one state to
// another.
func ValidTransition(from, to store.State) bool {
	return from == to || slices.Contains(transitions[from], to)
}

// evaluation is what evaluate decides for a device.
type evaluation struct {
	state    store.State
	reason   string
	policyID string
	pending  []string
}

// evaluate decides a device's state from its URL, the cached file and the
// pins and approvals (see the package documentation). It starts a fetch
// when the file is needed and none is cached.
func (m *Manager) evaluate(d *store.Device) evaluation {
	s := m.st
	if d.State == store.StateRemoved {
		return evaluation{state: store.StateRemoved, reason: d.Reason}
	}
	ev := m.evaluateFile(d)
	if d.Quarantine != nil {
		ev.state, ev.reason = store.StateQuarantined, "quarantined by "+d.Quarantine.By
		if d.Quarantine.Reason != "" {
			ev.reason += ": " + d.Quarantine.Reason
		}
	}
	if ev.state == store.StateFetching && !s.fetching[d.MUDURL] {
		// Queued (again: a lease moves it up its port's queue).
		m.enqueue(d.MUDURL, d, false)
	}
	return ev
}

func (m *Manager) evaluateFile(d *store.Device) evaluation {
	s := m.st
	u := d.MUDURL
	if u == "" {
		if d.InvalidMUDURL != "" {
			// It asked for MUD, but with nothing usable: as unusable as
			// a file that cannot be fetched (on_failure applies).
			return evaluation{state: store.StateFailed, reason: "the MUD URL it announced is invalid: " + d.InvalidMUDURL}
		}
		if src := s.urlUnknown[d.MAC]; src != "" {
			return evaluation{state: store.StateDiscovered, reason: "MUD URL unknown until its next DHCP request (" + src + ")"}
		}
		return evaluation{state: store.StateDiscovered, reason: "no MUD URL"}
	}
	f := s.files[u]
	if f == nil {
		// After a failure the device stays failed through the retries,
		// until one succeeds.
		if fi := s.fetch[u]; fi != nil && fi.failures > 0 {
			return evaluation{state: store.StateFailed, reason: fi.reason()}
		}
		return evaluation{state: store.StateFetching, reason: "fetching " + u}
	}
	md := m.modelFor(u)
	if md.err != "" {
		return evaluation{state: store.StateFailed, reason: md.err}
	}
	if dg, ok := s.rejected[d.MAC]; ok && dg == md.digest {
		return evaluation{state: store.StateFailed, reason: "rejected by an administrator", policyID: md.pol.ID}
	}
	var why []string
	if f.Verdict != store.VerdictValid {
		r := "the signature is not valid (" + string(f.Verdict) + ")"
		if f.Verdict == store.VerdictUnverified {
			r = "the signature has not been verified"
		}
		if f.VerdictReason != "" {
			r += ": " + f.VerdictReason
		}
		why = append(why, r+" (RFC 8520 §13.2)")
	}
	why = append(why, md.pol.NeedsApproval...)
	why = append(why, m.pinChanges(d.MAC, u, f)...)
	why = append(why, s.flags[d.MAC]...)
	if len(why) > 0 && !m.approved(d.MAC, u, md.digest) {
		return evaluation{state: store.StatePendingApproval, reason: strings.Join(why, "; "), policyID: md.pol.ID, pending: why}
	}
	return evaluation{state: store.StateEnforced, policyID: md.pol.ID}
}

// pinChanges lists why the file must not replace what was pinned for this
// MAC or URL without review (RFC 8520 §16).
func (m *Manager) pinChanges(mac, u string, f *store.MUDFile) []string {
	var out []string
	if old, ok := m.st.pinsByMAC[mac]; ok {
		if a := authority(u); old.Authority != a {
			out = append(out, fmt.Sprintf("the MUD URL's authority changed from %q to %q for this device (RFC 8520 §16)", old.Authority, a))
		} else if ok, why := mudfetch.AcceptableURL(old.MUDURL, u); !ok {
			out = append(out, why)
		}
		if old.Signer != "" && f.Signer != old.Signer {
			out = append(out, fmt.Sprintf("the signer changed from %q to %q for this device", old.Signer, f.Signer))
		}
	}
	if old, ok := m.st.pinsByURL[u]; ok && old.Signer != "" && f.Signer != old.Signer {
		out = append(out, fmt.Sprintf("the signer of this MUD URL changed from %q to %q", old.Signer, f.Signer))
	}
	return out
}

func (m *Manager) approved(mac, u, digest string) bool {
	if a, ok := m.st.approvalsByMAC[mac]; ok && a.Digest == digest {
		return true
	}
	a, ok := m.st.approvalsByURL[u]
	return ok && a.Digest == digest
}

// settle re-evaluates a device and persists the result (with an event
// when the state changed). d is a copy the caller may have modified; the
// map is updated only after the store committed.
func (m *Manager) settle(d store.Device, kind, msg string) error {
	ev := m.evaluate(&d)
	old := m.st.devices[d.MAC]
	from := store.State("")
	if old != nil {
		from = old.State
	}
	if from != "" && !ValidTransition(from, ev.state) {
		m.log.Error("invalid state transition (bug)", "mac", d.MAC, "from", from, "to", ev.state)
	}
	d.State, d.Reason, d.PolicyID = ev.state, ev.reason, ev.policyID
	d.Enforcement, d.UnenforcedReason = m.enforcement(&d)
	if len(ev.pending) > 0 {
		m.st.pending[d.MAC] = ev.pending
	} else {
		delete(m.st.pending, d.MAC)
	}
	var extra func(*store.Tx) error
	if ev.state == store.StateEnforced || (ev.state == store.StateQuarantined && m.evaluateFile(&d).state == store.StateEnforced) {
		extra = m.pinUpdate(d.MAC, d.MUDURL)
	}
	var evs []*store.Event
	if from != d.State {
		if kind == "" {
			kind = "state"
		}
		evs = append(evs, &store.Event{MAC: d.MAC, Kind: kind, From: from, To: d.State, Message: joinMsg(msg, d.Reason)})
	} else if kind != "" {
		evs = append(evs, &store.Event{MAC: d.MAC, Kind: kind, From: from, To: d.State, Message: msg})
	}
	if e := m.enforcementEvent(old, &d); e != nil {
		evs = append(evs, e)
	}
	if old != nil && len(evs) == 0 && extra == nil && sameDevice(*old, d) {
		return nil
	}
	return m.persist(d, evs, extra)
}

func joinMsg(a, b string) string {
	switch {
	case a == "":
		return b
	case b == "":
		return a
	}
	return a + ": " + b
}

// sameDevice reports whether b needs no write over a (LastSeen alone is
// not worth one: see onLease).
func sameDevice(a, b store.Device) bool {
	return a.State == b.State && a.Reason == b.Reason && a.PolicyID == b.PolicyID && a.MUDURL == b.MUDURL &&
		slices.Equal(a.IPs, b.IPs) && a.Hostname == b.Hostname && a.LeaseExpiry.Equal(b.LeaseExpiry) &&
		(a.Quarantine == nil) == (b.Quarantine == nil) && a.Interface == b.Interface && a.URLSource == b.URLSource &&
		a.Port == b.Port && a.InvalidMUDURL == b.InvalidMUDURL && a.Enforcement == b.Enforcement &&
		a.UnenforcedReason == b.UnenforcedReason
}

// pinUpdate pins the signer and authority of an accepted file for the MAC
// and the URL, when they are new or (after an approval) changed.
func (m *Manager) pinUpdate(mac, u string) func(*store.Tx) error {
	f := m.st.files[u]
	if f == nil {
		return nil
	}
	cur := store.Pin{MUDURL: u, Signer: f.Signer, Authority: authority(u), FirstSeen: m.now()}
	om, okm := m.st.pinsByMAC[mac]
	ou, oku := m.st.pinsByURL[u]
	needM := !okm || om.MUDURL != cur.MUDURL || om.Signer != cur.Signer || om.Authority != cur.Authority
	needU := !oku || ou.Signer != cur.Signer || ou.Authority != cur.Authority
	if !needM && !needU {
		return nil
	}
	return func(tx *store.Tx) error {
		if needM {
			p := cur
			p.MAC = mac
			if err := tx.PinsByMAC().Put(p); err != nil {
				return err
			}
			m.st.pinsByMAC[mac] = p // only read after a successful commit (see persist)
		}
		if needU {
			if err := tx.PinsByURL().Put(cur); err != nil {
				return err
			}
			m.st.pinsByURL[u] = cur
		}
		return nil
	}
}

// persist writes the device and its events in one transaction, then
// updates the in-memory state and tells event subscribers.
func (m *Manager) persist(d store.Device, evs []*store.Event, extra func(*store.Tx) error) error {
	stored := make([]store.Event, 0, len(evs))
	snapM, snapU := m.st.pinsByMAC[d.MAC], m.st.pinsByURL[d.MUDURL]
	_, hadM := m.st.pinsByMAC[d.MAC]
	_, hadU := m.st.pinsByURL[d.MUDURL]
	err := m.update(func(tx *store.Tx) error {
		stored = stored[:0]
		if extra != nil {
			if err := extra(tx); err != nil {
				return err
			}
		}
		if err := tx.Devices().Put(d); err != nil {
			return err
		}
		for _, e := range evs {
			se, err := tx.AppendEvent(*e)
			if err != nil {
				return err
			}
			stored = append(stored, se)
		}
		return nil
	})
	if err != nil {
		// Undo what extra did to memory: the store did not take it.
		restorePin(m.st.pinsByMAC, d.MAC, snapM, hadM)
		restorePin(m.st.pinsByURL, d.MUDURL, snapU, hadU)
		m.log.Error("persisting device", "mac", d.MAC, "err", err)
		return fmt.Errorf("persisting device %s: %w", d.MAC, err)
	}
	nd := d
	old := m.st.devices[d.MAC]
	m.putDevice(&nd)
	m.deviceChanged(old, &nd)
	m.sharePins(d.MAC, d.MUDURL, snapM, snapU, hadM, hadU)
	for _, e := range stored {
		m.publish(e)
		m.log.Info("device", "mac", d.MAC, "kind", e.Kind, "from", e.From, "to", e.To, "message", e.Message)
	}
	return nil
}

func restorePin(mp map[string]store.Pin, k string, v store.Pin, had bool) {
	if had {
		mp[k] = v
	} else {
		delete(mp, k)
	}
}

// event appends a gateway-wide or device event that is not a device change.
func (m *Manager) event(mac, kind string, from, to store.State, msg string) {
	var stored store.Event
	err := m.update(func(tx *store.Tx) error {
		var err error
		stored, err = tx.AppendEvent(store.Event{MAC: mac, Kind: kind, From: from, To: to, Message: msg})
		return err
	})
	if err != nil {
		m.log.Error("appending event", "kind", kind, "err", err)
		return
	}
	m.publish(stored)
}

// reevaluateURL settles every live device announcing u.
func (m *Manager) reevaluateURL(u, kind, msg string) int {
	n := 0
	for _, mac := range m.macsOf(u) {
		d := m.st.devices[mac]
		if d.State != store.StateRemoved {
			_ = m.settle(*d, kind, msg)
			n++
		}
	}
	return n
}

func (m *Manager) macs() []string {
	out := make([]string, 0, len(m.st.devices))
	for k := range m.st.devices {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

// onLease applies a DHCP lease event (RFC 8520 §10.1, §10.2).
func (m *Manager) onLease(ev dhcpsnoop.Event) {
	mac, err := store.NormalizeMAC(ev.MAC.String())
	if err != nil {
		m.log.Warn("lease event without a usable MAC", "err", err)
		return
	}
	now := m.now()
	if ev.Kind.IsFlag() {
		msg := joinMsg(ev.Reason, ev.Raw)
		if ev.Kind == dhcpsnoop.KindURLMismatch {
			// RFC 8520 §10.1: no additive policy until an admin looks.
			m.st.flags[mac] = []string{"the device's DHCPv4 and DHCPv6 MUD URLs differ (RFC 8520 §10.1)"}
			if d := m.st.devices[mac]; d != nil {
				_ = m.settle(*d, "dhcp-"+string(ev.Kind), msg)
				return
			}
		}
		if ev.Kind == dhcpsnoop.KindInvalidURL {
			// The device asked for MUD with a URL that cannot be used:
			// a device record, so that it is not silently unrestricted
			// (on_failure applies while it has no usable URL).
			d := m.seen(mac, ev, now)
			d.InvalidMUDURL = joinMsg(ev.Reason, quoted(ev.Raw))
			_ = m.settle(d, "dhcp-"+string(ev.Kind), msg)
			m.touch(mac, now)
			return
		}
		m.event(mac, "dhcp-"+string(ev.Kind), "", "", msg)
		return
	}
	if ev.Kind == dhcpsnoop.KindPresent {
		// Found at start without a lease: listed, nothing more. A device
		// known already keeps its record, unless all it says is that
		// nothing is known (no URL, no address): now it is unknown.
		kind := "present"
		if d := m.st.devices[mac]; d != nil {
			if d.State != store.StateDiscovered || d.MUDURL != "" || d.InvalidMUDURL != "" || len(d.IPs) > 0 {
				m.touch(mac, now)
				return
			}
			kind = ""
		}
		m.st.urlUnknown[mac] = ev.Reason
		_ = m.settle(m.seen(mac, ev, now), kind, ev.Reason)
		m.touch(mac, now)
		return
	}
	if ev.Kind == dhcpsnoop.KindBound && ev.Reason == dhcpsnoop.ReasonLeaseFile {
		if d := m.st.devices[mac]; d == nil || d.MUDURL == "" {
			m.st.urlUnknown[mac] = ev.Reason
		}
	} else {
		// Every other lease event follows a request the device sent,
		// which carries its MUD URL if it has one.
		delete(m.st.urlUnknown, mac)
	}
	d := m.seen(mac, ev, now)
	oldIPs := slices.Clone(d.IPs)
	kind := ""
	if d.State == store.StateRemoved {
		d.State, d.Reason, d.IPs = store.StateDiscovered, "", nil
		m.dropRejection(mac)
		kind = "discovered"
	}
	if ev.Hostname != "" {
		d.Hostname = ev.Hostname
	}
	if ev.MUDURL != "" {
		d.InvalidMUDURL = ""
	}
	if ev.MUDURL != "" && d.URLSource != store.SourceAdminBind && d.MUDURL != ev.MUDURL {
		if d.MUDURL != "" {
			kind = "mud-url-changed"
		}
		d.MUDURL = ev.MUDURL
		d.URLSource = store.SourceDHCPv4
		if ev.Family == 6 {
			d.URLSource = store.SourceDHCPv6
		}
	}
	switch ev.Kind {
	case dhcpsnoop.KindAnnounced:
	case dhcpsnoop.KindBound, dhcpsnoop.KindRenewed, dhcpsnoop.KindAddressChanged, dhcpsnoop.KindAddressesLearned:
		d.IPs = ev.Addresses()
		m.leased(mac, d.IPs)
		m.reassigned(mac, d.IPs)
		d.LeaseExpiry = ev.Expires
		if _, ok := m.st.removeAt[mac]; ok {
			delete(m.st.removeAt, mac)
			if kind == "" {
				kind = "lease-resumed"
			}
		}
		if ev.Kind == dhcpsnoop.KindBound {
			at := ev.Time
			if at.IsZero() {
				at = now
			}
			m.latencyTarget[mac] = at
		}
	case dhcpsnoop.KindReleased, dhcpsnoop.KindDeclined, dhcpsnoop.KindExpired:
		d.IPs = ev.Addresses()
		if ev.Gone || len(d.IPs) == 0 {
			delete(m.latencyTarget, mac) // nothing to become active any more
			// RFC 8520 §10.2: the rules go when the lease ends, after a
			// grace period (a device that reboots comes straight back).
			m.st.removeAt[mac] = now.Add(m.cfg.RemovalGrace)
			kind = "lease-ended"
		}
	}
	_ = m.settle(d, kind, string(ev.Kind))
	m.touch(mac, now)
	if _, bound := m.st.bindings[mac]; bound {
		m.syncFirstUse(mac)
	}
	// A static address of another device that this lease took, or gave
	// back, changes that device's addresses.
	m.staticLeaseChanged(mac, append(oldIPs, m.st.devices[mac].IPs...))
}

// reassigned takes the addresses a server just leased to mac away from the
// records of the other devices that held them: the server's latest
// confirmation is its word on who holds an address (the earlier holder's
// lease ended unseen, or the server gave one address twice). Otherwise
// two devices would claim one address and the enforcer would refuse the
// whole desired state, every device's change with it.
func (m *Manager) reassigned(mac string, ips []netip.Addr) {
	if len(ips) == 0 {
		return
	}
	// The leased-address index names the holders without a walk over
	// every device (a lease event must not cost more with more devices).
	holders := map[string]struct{}{}
	for _, a := range ips {
		for _, h := range m.st.leases[a] {
			if h.mac != mac {
				holders[h.mac] = struct{}{}
			}
		}
	}
	for _, other := range slices.Sorted(maps.Keys(holders)) {
		od := m.st.devices[other]
		if od == nil || od.State == store.StateRemoved {
			continue
		}
		var taken []netip.Addr
		kept := slices.DeleteFunc(slices.Clone(od.IPs), func(a netip.Addr) bool {
			if slices.Contains(ips, a) {
				taken = append(taken, a)
				return true
			}
			return false
		})
		if len(taken) == 0 {
			continue
		}
		d := *od
		d.IPs = kept
		m.event(other, "address-conflict", "", "", fmt.Sprintf("the DHCP server leased %v, held by %s, to %s; %s no longer holds it", taken, other, mac, other))
		_ = m.settle(d, "", "")
	}
}

// seen is the device record for a lease event's MAC (a new one for a MAC
// not known yet), with where it was seen updated.
func (m *Manager) seen(mac string, ev dhcpsnoop.Event, now time.Time) store.Device {
	var d store.Device
	if old := m.st.devices[mac]; old != nil {
		d = *old
	} else {
		d = store.Device{MAC: mac, FirstSeen: now, State: store.StateDiscovered}
	}
	d.LastSeen = now
	if ev.Interface != "" {
		d.Interface = ev.Interface
	}
	if ev.Port != "" {
		d.Port = ev.Port
	}
	return d
}

// touch records that a device was seen now. Only in memory when nothing
// else about it changed: a write per DHCP message would let a chatty (or
// hostile) client set the pace of the store; the next change persists it.
func (m *Manager) touch(mac string, now time.Time) {
	if d := m.st.devices[mac]; d != nil && d.LastSeen.Before(now) {
		d.LastSeen = now
	}
}

func quoted(raw string) string {
	if raw == "" {
		return ""
	}
	return `"` + raw + `"`
}

// remove ends a device's enforcement after its grace period.
func (m *Manager) remove(mac string) {
	delete(m.st.removeAt, mac)
	delete(m.latencyTarget, mac)
	d := m.st.devices[mac]
	if d == nil || d.State == store.StateRemoved {
		return
	}
	nd := *d
	from, leased := nd.State, nd.IPs
	nd.State, nd.Reason, nd.IPs, nd.PolicyID = store.StateRemoved, "lease ended", nil, ""
	nd.Enforcement, nd.UnenforcedReason = store.EnforcementNone, ""
	delete(m.st.pending, mac)
	delete(m.st.flags, mac)
	evs := []*store.Event{{MAC: mac, Kind: "removed", From: from, To: store.StateRemoved, Message: "lease ended; grace period over"}}
	if e := m.enforcementEvent(d, &nd); e != nil {
		evs = append(evs, e)
	}
	_ = m.persist(nd, evs, nil)
	m.staticLeaseChanged(mac, leased)
}

// interner gives one copy of each string that many records decoded from
// the store repeat (a URL, an interface, a state): each record has its
// own copy of every string, some 300 bytes a device, 3 MB with 10,000.
type interner map[string]string

func (in interner) of(s string) string {
	if c, ok := in[s]; ok {
		return c
	}
	in[s] = s
	return s
}

// device interns the strings a device's record shares with others.
func (in interner) device(d *store.Device) {
	d.Interface, d.Port, d.MUDURL, d.Reason, d.PolicyID = in.of(d.Interface), in.of(d.Port), in.of(d.MUDURL), in.of(d.Reason), in.of(d.PolicyID)
	d.URLSource, d.State, d.Enforcement = store.URLSource(in.of(string(d.URLSource))), store.State(in.of(string(d.State))), store.Enforcement(in.of(string(d.Enforcement)))
	d.UnenforcedReason = in.of(d.UnenforcedReason)
}

// load reads the store snapshot into memory, re-verifies cached files
// against the current trust anchors and re-evaluates every device.
func (m *Manager) load(ctx context.Context) error {
	snap, err := m.cfg.Store.Snapshot()
	if err != nil {
		return fmt.Errorf("loading the store: %w", err)
	}
	s := &state{
		stateIndex: newStateIndex(),
		devices:    map[string]*store.Device{}, bindings: snap.Bindings, files: map[string]*store.MUDFile{},
		models: map[string]*model{}, pinsByURL: snap.PinsByURL, pinsByMAC: snap.PinsByMAC,
		approvalsByMAC: snap.ApprovalsByMAC, approvalsByURL: snap.ApprovalsByURL, overrides: snap.Overrides,
		controllers: snap.Controllers, myControllers: snap.MyControllers,
		pending: map[string][]string{}, flags: map[string][]string{}, rejected: map[string]string{},
		fetching: map[string]bool{}, jobs: map[string]*fetchJob{}, fetch: map[string]*urlFetch{},
		removeAt: map[string]time.Time{}, dns: map[string]map[netip.Addr]time.Time{}, dnsUnsaved: map[string]bool{}, candidate: map[string]*candidate{},
		notified: map[string]bool{}, learned: map[string]map[netip.Addr]time.Time{},
		learnedBy: map[netip.Addr]string{}, learnedUnsaved: map[string]bool{}, urlUnknown: map[string]string{}, violated: map[string][]time.Time{},
	}
	m.st = s
	in := interner{}
	for _, d := range snap.Devices {
		in.device(&d)
		m.putDevice(&d)
	}
	for mac, p := range s.pinsByMAC {
		p.MUDURL, p.Signer, p.Authority = in.of(p.MUDURL), in.of(p.Signer), in.of(p.Authority)
		s.pinsByMAC[mac] = p
	}
	for mac, r := range snap.Rejections {
		s.rejected[mac] = r.Digest
	}
	for k, f := range snap.MUDFiles {
		s.files[k] = &f
	}
	now := m.now()
	restoreDNS(s.dns, snap.DNSNames, now)
	for mac := range snap.Learned {
		// Reconciled by the first save: package neighbor reports the
		// addresses it takes back (the daemon hands it these records).
		s.learnedUnsaved[mac] = true
	}
	m.markAll()
	for _, u := range sortedKeys(s.files) {
		f := s.files[u]
		if len(f.Signature) == 0 {
			continue
		}
		// RFC 8520 §16: a removed trust anchor (all of them, when
		// Anchors is nil) or a signer that expired meanwhile puts the
		// file back to pending — and its devices under on_failure.
		v := mudfetch.Verify(f.Body, f.Signature, m.cfg.Anchors, now, mudfetch.VerifyOptions{})
		verdict, reason := verdictOf(v)
		if verdict == f.Verdict {
			continue
		}
		nf := *f
		nf.Verdict, nf.VerdictReason = verdict, reason
		if err := m.update(func(tx *store.Tx) error { return tx.MUDFiles().Put(nf) }); err != nil {
			return fmt.Errorf("updating the verdict of %s: %w", u, err)
		}
		s.files[u] = &nf
		m.event("", "reverified", "", "", joinMsg(fmt.Sprintf("%s: signature now %s", u, verdict), reason))
	}
	for _, mac := range m.macs() {
		d := s.devices[mac]
		if d.State == store.StateRemoved {
			continue
		}
		if strings.HasPrefix(d.Reason, "rejected") && d.State == store.StateFailed {
			if md := m.modelFor(d.MUDURL); md != nil {
				s.rejected[mac] = md.digest
			}
		}
		if !d.LeaseExpiry.IsZero() {
			at := d.LeaseExpiry
			if at.Before(now) {
				at = now
			}
			s.removeAt[mac] = at.Add(m.cfg.RemovalGrace)
		}
		if err := m.settle(*d, "", "restart"); err != nil {
			return err
		}
	}
	return ctx.Err()
}

func (m *Manager) modelFor(u string) *model {
	f := m.st.files[u]
	if f == nil {
		return nil
	}
	md := m.st.models[u]
	if md == nil {
		md = compileModel(u, f)
		m.st.models[u] = md
		m.markURL(u)
	}
	return md
}

// verdictOf maps mudfetch's verdict to the store's.
func verdictOf(v mudfetch.Verdict) (store.Verdict, string) {
	if v.Verified() {
		return store.VerdictValid, ""
	}
	err := v.Err()
	switch {
	case errors.Is(err, mudfetch.ErrNoSignature), errors.Is(err, mudfetch.ErrSignatureFetch):
		return store.VerdictUnsigned, v.Reason
	case errors.Is(err, mudfetch.ErrUntrustedSigner), errors.Is(err, mudfetch.ErrNoTrustAnchors),
		errors.Is(err, mudfetch.ErrSignerExpired), errors.Is(err, mudfetch.ErrSignerMismatch):
		return store.VerdictUntrusted, v.Reason
	}
	return store.VerdictInvalid, v.Reason
}
