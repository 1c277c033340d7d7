package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// This file is the manager's administrative surface: queries that describe
// the desired state and commands that change it, in the manager's own
// terms (store records, policies, the views below). Package api adapts
// them to its wire types; the manager knows nothing of the control API.
// Every request is answered by the Run goroutine (reads see one
// consistent state; writes are persisted and the enforcer driven before
// the answer).

// Sentinel errors of the queries and commands, wrapped with what was being
// done; match them with errors.Is.
var (
	// ErrNotFound: no such device, policy or mapping.
	ErrNotFound = errors.New("not found")
	// ErrInvalid: the request is malformed or not acceptable.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict: the request does not fit the current state, e.g.
	// approving a device that is not pending approval.
	ErrConflict = errors.New("conflict")
)

// StatusView is the daemon's health at a glance.
type StatusView struct {
	Version   string
	StartedAt time.Time
	Uptime    time.Duration
	// Devices counts every known device, DevicesByState splits them, and
	// DevicesUnenforced counts those whose MUD file cannot be used and
	// that are unrestricted for it.
	Devices           int
	DevicesByState    map[store.State]int
	DevicesUnenforced int
	// PoliciesInstalled is the number of distinct compiled policies
	// handed to the enforcer.
	PoliciesInstalled int
	// DNSAnswersRefused counts snooped DNS answers that granted nothing
	// because their source is not trusted (Config.DNSStats).
	DNSAnswersRefused uint64
	Enforcer          EnforcerView
	// LateralUnenforced are the places where lateral traffic may pass
	// without mudd's rules (SetLateral).
	LateralUnenforced []LateralGap
	// Fleet is the connection to the other gateways of the site; nil
	// without one (store.backend bbolt).
	Fleet *FleetStatus
}

// EnforcerView says whether the kernel matches the desired state.
type EnforcerView struct {
	Healthy          bool
	LastApply        time.Time
	LastApplyLatency time.Duration
	LastError        string
	LastErrorAt      time.Time
	// Tables, BridgeConntrack and Repairs come from Config.EnforcerInfo.
	Tables          []string
	BridgeConntrack bool
	Repairs         int
	// BridgeReplies says how replies of bridged flows pass, per IP
	// version (Config.BridgeReplies).
	BridgeReplies string
}

// DeviceView is one device as the manager knows it: the persisted record
// and what goes with it.
type DeviceView struct {
	store.Device
	// File describes the device's MUD file when one is cached; nil
	// otherwise.
	File *FileView
	// Fetch is how fetching the device's MUD URL goes; nil when no fetch
	// of it was needed since mudd started.
	Fetch *FetchView
	// PendingReasons lists why the device awaits an administrator's
	// approval.
	PendingReasons []string
	// Overrides are the administrator's entries for the device, in
	// evaluation order.
	Overrides []store.OverrideRule
	// StaticIPs are the static addresses of its binding (mudctl bind
	// --ip, or bound on first use); FirstUse says that its binding binds
	// the first address of each family it uses.
	StaticIPs []netip.Addr
	FirstUse  bool
}

// FileView is a cached MUD file: how it was obtained and judged, and its
// metadata once it parsed.
type FileView struct {
	URL           string
	Digest        string
	Verdict       store.Verdict
	VerdictReason string
	Signer        string
	FetchedAt     time.Time
	VerifiedAt    time.Time
	CacheValidity time.Duration
	// MUD is the file's ietf-mud container (RFC 8520 §2.1); nil when the
	// file did not parse.
	MUD *mudfile.MUD
}

// FetchView is the state of fetching one MUD URL.
type FetchView struct {
	URL string
	// InFlight says a fetch is running; Queued that one waits to start,
	// and Waiting for what (a free fetch slot, a fetch budget).
	InFlight bool
	Queued   bool
	Waiting  string
	// Failures counts the failed attempts since the last success;
	// NextAttempt is when the next one is due.
	Failures    int
	NextAttempt time.Time
	// Attempts are the latest attempts, oldest first.
	Attempts []FetchAttempt
}

// FetchAttempt is one fetch of a MUD URL.
type FetchAttempt struct {
	At   time.Time
	Took time.Duration
	// Port is the bridge port whose fetch budget the attempt used.
	Port string
	// OK says a file was obtained (verified or not); Error says why not.
	OK    bool
	Error string
}

// PolicyView is the policy in force for one device, with the kernel's
// counters.
type PolicyView struct {
	MAC    string
	MUDURL string
	State  store.State
	Policy *policy.Policy
	// Overrides are the device's entries as the enforcer evaluates them,
	// before the policy's rules, named "override/N".
	Overrides enforcer.Overrides
	// Counts are the kernel's counters of the policy's rules, by
	// direction and rule name, and Dropped those of each direction's
	// final drop. CountersAt is when they were read; zero when they could
	// not be.
	Counts     map[policy.Direction]map[string]Count
	Dropped    map[policy.Direction]Count
	CountersAt time.Time
	// NFT is the device's part of the ruleset in nft syntax, when asked
	// for.
	NFT string
}

// Count is what a rule matched.
type Count struct {
	Packets, Bytes uint64
}

func (c *Count) add(packets, bytes uint64) { c.Packets += packets; c.Bytes += bytes }

// Action is an administrator's decision about a device (approve, reject,
// quarantine, release).
type Action struct {
	Reason string
	// AllWithURL, for approve, covers every device announcing the same
	// MUD URL (and future ones), not only this one.
	AllWithURL bool
}

// Controller is one mapping of a controller class URI (RFC 8520 §4.6)
// or, when My, of a MUD URL's my-controller (§4.7) to prefixes.
type Controller struct {
	URI      string
	My       bool
	Prefixes []netip.Prefix
	// Source is "config" or "mudctl".
	Source    string
	UpdatedAt time.Time
}

// RefreshCount says what a refresh queued.
type RefreshCount struct {
	Devices, URLs int
}

// ImportOutcome says what the manager made of an imported file.
type ImportOutcome struct {
	URL            string
	Digest         string
	Verdict        store.Verdict
	Signer         string
	Reason         string
	DevicesUpdated int
}

type subscriber struct {
	ctx context.Context
	ch  chan store.Event
}

// publish hands a stored event to the subscribers once it is committed.
func (m *Manager) publish(e store.Event) {
	m.afterCommit(func() { m.publishNow(e) })
}

func (m *Manager) publishNow(e store.Event) {
	if m.onPublish != nil {
		m.onPublish(e)
	}
	keep := m.subscribers[:0]
	for _, s := range m.subscribers {
		if s.ctx.Err() != nil {
			close(s.ch)
			continue
		}
		select {
		case s.ch <- e:
			keep = append(keep, s)
		default: // fallen behind: it resumes through Events
			close(s.ch)
		}
	}
	m.subscribers = keep
}

func (m *Manager) pruneSubscribers() {
	keep := m.subscribers[:0]
	for _, s := range m.subscribers {
		if s.ctx.Err() != nil {
			close(s.ch)
			continue
		}
		keep = append(keep, s)
	}
	m.subscribers = keep
}

// Status reports the daemon's health.
func (m *Manager) Status(ctx context.Context) (StatusView, error) {
	var st StatusView
	err := m.do(ctx, func() error {
		st = StatusView{Version: m.cfg.Version, StartedAt: m.started, Uptime: m.now().Sub(m.started),
			Devices: len(m.st.devices), DevicesByState: map[store.State]int{}, PoliciesInstalled: len(m.pushed.policies)}
		for _, d := range m.st.devices {
			st.DevicesByState[d.State]++
			if d.Enforcement == store.EnforcementUnenforced {
				st.DevicesUnenforced++
			}
		}
		es := EnforcerView{Healthy: !m.needFull && m.lastErr == nil, LastApply: m.lastApply, LastApplyLatency: m.lastLatency}
		if m.lastErr != nil {
			es.LastError, es.LastErrorAt = m.lastErr.Error(), m.lastErrAt
		}
		if m.cfg.EnforcerInfo != nil {
			es.Tables, es.BridgeConntrack, es.Repairs = m.cfg.EnforcerInfo()
		}
		if m.cfg.BridgeReplies != nil {
			es.BridgeReplies = m.cfg.BridgeReplies()
		}
		if m.cfg.DNSStats != nil {
			st.DNSAnswersRefused = m.cfg.DNSStats().RefusedAnswers
		}
		st.Enforcer = es
		st.LateralUnenforced = slices.Clone(m.lateral)
		if m.cfg.Fleet != nil {
			fs := m.cfg.Fleet.Status()
			st.Fleet = &fs
		}
		return nil
	})
	return st, err
}

func (m *Manager) deviceView(d *store.Device) DeviceView {
	v := DeviceView{Device: *d, PendingReasons: m.st.pending[d.MAC], Overrides: m.st.overrides[d.MAC].Rules}
	if b, ok := m.st.bindings[d.MAC]; ok {
		v.StaticIPs, v.FirstUse = slices.Clone(b.IPs), b.FirstUse
	}
	if c := m.st.candidate[d.MUDURL]; c != nil && d.MUDURL != "" {
		v.PendingReasons = append(slices.Clone(v.PendingReasons), "an updated MUD file awaits approval: "+strings.Join(c.reasons, "; "))
	}
	if f := m.st.files[d.MUDURL]; f != nil && d.MUDURL != "" {
		fv := &FileView{URL: f.URL, Digest: f.Digest(), Verdict: f.Verdict, VerdictReason: f.VerdictReason,
			Signer: f.Signer, FetchedAt: f.FetchedAt, VerifiedAt: f.VerifiedAt, CacheValidity: f.CacheValidity}
		if md := m.st.models[d.MUDURL]; md != nil && md.file != nil {
			mf := md.file.MUD
			fv.MUD = &mf
		}
		v.File = fv
	}
	v.Fetch = m.fetchView(d.MUDURL)
	return v
}

// fetchView is the state of fetching u, nil when nothing is known.
func (m *Manager) fetchView(u string) *FetchView {
	s := m.st
	fi, j := s.fetch[u], s.jobs[u]
	if u == "" || (fi == nil && j == nil && !s.fetching[u]) {
		return nil
	}
	v := &FetchView{URL: u, InFlight: s.fetching[u], Queued: j != nil}
	if j != nil {
		v.Waiting = m.waiting(j)
	}
	if fi != nil {
		v.Failures, v.NextAttempt = fi.failures, fi.next
		v.Attempts = slices.Clone(fi.attempts)
	}
	return v
}

// Devices lists every known device, by MAC.
func (m *Manager) Devices(ctx context.Context) ([]DeviceView, error) {
	var out []DeviceView
	err := m.do(ctx, func() error {
		for _, mac := range m.macs() {
			out = append(out, m.deviceView(m.st.devices[mac]))
		}
		return nil
	})
	return out, err
}

func (m *Manager) lookup(mac string) (*store.Device, error) {
	n, err := store.NormalizeMAC(mac)
	if err != nil {
		return nil, errorf(ErrInvalid, "MAC %q: %v", mac, err)
	}
	d := m.st.devices[n]
	if d == nil {
		return nil, errorf(ErrNotFound, "device %s", n)
	}
	return d, nil
}

// onDevice runs fn for a known device in the Run goroutine and returns the
// device's view afterwards.
func (m *Manager) onDevice(ctx context.Context, mac string, fn func(d *store.Device) error) (DeviceView, error) {
	var out DeviceView
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
		out = m.deviceView(m.st.devices[d.MAC])
		return nil
	})
	if err == nil {
		err = m.flowsEnded(ctx)
	}
	return out, err
}

// flowsEnded waits until the enforcer has ended the flows of the devices
// the last reconcile tightened, so that an administrator's command (say,
// quarantine) returns with the device's open connections already cut. The
// enforcer ends them right after its commit, in a goroutine of its own;
// the manager's loop never waits for it.
func (m *Manager) flowsEnded(ctx context.Context) error {
	if f, ok := m.cfg.Enforcer.(interface{ FlowsEnded(context.Context) error }); ok {
		if err := f.FlowsEnded(ctx); err != nil {
			return fmt.Errorf("waiting for the device's open flows to end: %w", err)
		}
	}
	return nil
}

// Device returns one device.
func (m *Manager) Device(ctx context.Context, mac string) (DeviceView, error) {
	var out DeviceView
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		out = m.deviceView(d)
		return nil
	})
	return out, err
}

// Policy returns the policy in force for a device with the kernel's
// per-rule counters (read outside the loop: the enforcer is safe for
// concurrent use); withNFT adds the device's ruleset in nft syntax.
func (m *Manager) Policy(ctx context.Context, mac string, withNFT bool) (PolicyView, error) {
	var (
		view PolicyView
		ed   enforcer.Device
	)
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		md := m.st.models[d.MUDURL]
		if md == nil || md.pol == nil {
			return errorf(ErrNotFound, "device %s has no compiled policy", d.MAC)
		}
		view = PolicyView{MAC: d.MAC, MUDURL: d.MUDURL, State: d.State, Policy: md.pol, Overrides: m.overridesOf(d.MAC)}
		hw, _ := net.ParseMAC(d.MAC)
		ed = enforcer.Device{MAC: hw, PolicyID: md.pol.ID, Overrides: view.Overrides}
		for _, a := range d.IPs {
			if a.Unmap().Is4() {
				ed.IPv4s = append(ed.IPv4s, a.Unmap())
			} else {
				ed.IPv6s = append(ed.IPv6s, a)
			}
		}
		return nil
	})
	if err != nil {
		return view, err
	}
	pol := view.Policy
	if cs, err := m.cfg.Enforcer.Counters(ctx); err == nil {
		view.CountersAt = m.now()
		view.Counts = map[policy.Direction]map[string]Count{policy.FromDevice: {}, policy.ToDevice: {}}
		view.Dropped = map[policy.Direction]Count{}
		for _, c := range cs {
			if c.PolicyID != pol.ID || view.Counts[c.Direction] == nil {
				continue
			}
			if c.Rule == "default-deny" {
				n := view.Dropped[c.Direction]
				n.add(c.Packets, c.Bytes)
				view.Dropped[c.Direction] = n
				continue
			}
			n := view.Counts[c.Direction][c.Rule]
			n.add(c.Packets, c.Bytes)
			view.Counts[c.Direction][c.Rule] = n
		}
	}
	if withNFT {
		txt, err := m.renderNFT(*pol, ed)
		if err != nil {
			return view, fmt.Errorf("rendering the policy of %s: %w", mac, err)
		}
		view.NFT = txt
	}
	return view, nil
}

// installedRenderer is what an enforcer that shows its installed ruleset
// offers (*enforcer.Enforcer).
type installedRenderer interface {
	RenderDevice(mac net.HardwareAddr) (string, error)
}

// renderNFT returns the device's ruleset as installed, ids included, when
// the enforcer holds it; otherwise (a device not enforced yet, an
// enforcer that cannot show it) what its policy would install, saying so.
func (m *Manager) renderNFT(pol policy.Policy, ed enforcer.Device) (string, error) {
	if r, ok := m.cfg.Enforcer.(installedRenderer); ok {
		txt, err := r.RenderDevice(ed.MAC)
		if err == nil {
			return txt, nil
		}
		would, rerr := enforcer.Render(pol, ed, m.cfg.Render)
		if rerr != nil {
			return "", rerr
		}
		return "# not in the kernel (" + err.Error() + "); what its policy would install:\n" + would, nil
	}
	return enforcer.Render(pol, ed, m.cfg.Render)
}

// Events returns up to limit events with Seq > since, oldest first (limit
// <= 0: all).
func (m *Manager) Events(ctx context.Context, since uint64, limit int) ([]store.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.cfg.Store.Events(since, limit)
}

// SubscribeEvents delivers every event appended from now on. The channel
// is closed when ctx ends (within one Tick), when the subscriber falls
// behind (it resumes through Events), or when Run returns.
func (m *Manager) SubscribeEvents(ctx context.Context) (<-chan store.Event, error) {
	s := &subscriber{ctx: ctx, ch: make(chan store.Event, 256)}
	err := m.do(ctx, func() error { m.subscribers = append(m.subscribers, s); return nil })
	if err != nil {
		return nil, err
	}
	return s.ch, nil
}

// Approve enforces a pending device's MUD file (RFC 8520 §13.2: processing
// continues once an administrator has given approval); by is who decided.
// The approval covers exactly the current file's digest. ErrConflict if
// the device is not pending approval.
func (m *Manager) Approve(ctx context.Context, by string, mac string, req Action) (DeviceView, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if c := m.st.candidate[d.MUDURL]; c != nil && d.State != store.StatePendingApproval {
			// An update of the file in force waits: approving it is for
			// every device of the URL.
			return m.adoptCandidate(d.MUDURL, by, req.Reason)
		}
		if d.State != store.StatePendingApproval && !(d.State == store.StateFailed && m.st.rejected[d.MAC] != "") {
			return errorf(ErrConflict, "device %s is %s, not pending approval", d.MAC, d.State)
		}
		md := m.modelFor(d.MUDURL)
		if md == nil || md.pol == nil {
			return errorf(ErrConflict, "device %s has no usable MUD file to approve", d.MAC)
		}
		a := store.Approval{MAC: d.MAC, MUDURL: d.MUDURL, Digest: md.digest, By: by, At: m.now(), Reason: req.Reason}
		err := m.update(func(tx *store.Tx) error {
			if req.AllWithURL {
				a.MAC = ""
				return tx.ApprovalsByURL().Put(a)
			}
			return tx.ApprovalsByMAC().Put(a)
		})
		if err != nil {
			return fmt.Errorf("recording the approval of %s: %w", d.MAC, err)
		}
		if req.AllWithURL {
			m.st.approvalsByURL[d.MUDURL] = a
		} else {
			m.st.approvalsByMAC[d.MAC] = a
		}
		_, wasRejected := m.st.rejected[d.MAC]
		m.dropRejection(d.MAC)
		delete(m.st.flags, d.MAC)
		if req.AllWithURL {
			m.share(FleetVerdictURL, d.MUDURL, fleetVerdict{Verdict: verdictApproved, Approval: &a})
			if wasRejected {
				m.share(FleetVerdictMAC, d.MAC, nil)
			}
		} else {
			m.share(FleetVerdictMAC, d.MAC, fleetVerdict{Verdict: verdictApproved, Approval: &a})
		}
		msg := "approved by " + by
		if req.AllWithURL {
			for _, o := range m.macsOf(d.MUDURL) {
				if od := m.st.devices[o]; od.State == store.StatePendingApproval && o != d.MAC {
					_ = m.settle(*od, "approved", msg)
				}
			}
		}
		return m.settle(*d, "approved", msg)
	})
}

// Reject refuses a pending device's MUD file: the device keeps the fallback
// treatment (state failed) until its file changes or an administrator
// approves.
func (m *Manager) Reject(ctx context.Context, by string, mac string, req Action) (DeviceView, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if d.State != store.StatePendingApproval {
			return errorf(ErrConflict, "device %s is %s, not pending approval", d.MAC, d.State)
		}
		md := m.modelFor(d.MUDURL)
		if md == nil {
			return errorf(ErrConflict, "device %s has no MUD file to reject", d.MAC)
		}
		r := store.Rejection{MAC: d.MAC, MUDURL: d.MUDURL, Digest: md.digest, By: by, At: m.now(), Reason: req.Reason}
		if err := m.storeVerdictMAC(d.MAC, nil, &r); err != nil {
			return err
		}
		m.share(FleetVerdictMAC, d.MAC, fleetVerdict{Verdict: verdictRejected, Rejection: &r})
		return m.settle(*d, "rejected", joinMsg("rejected by "+by, req.Reason))
	})
}

// Quarantine cuts a device to the quarantine policy (and flushes its
// conntrack entries).
func (m *Manager) Quarantine(ctx context.Context, by string, mac string, req Action) (DeviceView, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		// A removed device keeps the hold: it comes back quarantined.
		nd := *d
		nd.Quarantine = &store.Hold{By: by, At: m.now(), Reason: req.Reason}
		return m.settle(nd, "quarantined", req.Reason)
	})
}

// Release lifts a quarantine (ErrConflict if there is none).
func (m *Manager) Release(ctx context.Context, by string, mac string, req Action) (DeviceView, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if d.Quarantine == nil {
			return errorf(ErrConflict, "device %s is not quarantined", d.MAC)
		}
		nd := *d
		nd.Quarantine = nil
		return m.settle(nd, "released", joinMsg("released by "+by, req.Reason))
	})
}

// Bind assigns an administrator's MUD URL (an absolute https URL) to a
// device that emits none, with its static addresses ips; an empty mudURL
// removes the binding. A static address must be inside the LAN's prefixes
// and held by no other device (ErrInvalid, ErrConflict). Without
// addresses, the first address of each family the device uses while it
// has no DHCP lease is bound to it ("address-bound"). Binding again
// replaces the addresses.
func (m *Manager) Bind(ctx context.Context, by string, mac, mudURL, reason string, ips []netip.Addr) (DeviceView, error) {
	var out DeviceView
	err := m.do(ctx, func() error {
		n, err := store.NormalizeMAC(mac)
		if err != nil {
			return errorf(ErrInvalid, "MAC %q: %v", mac, err)
		}
		b := store.Binding{MAC: n, MUDURL: mudURL, IPs: ips, FirstUse: len(ips) == 0, By: by, CreatedAt: m.now()}
		if err := m.setBinding(b, reason, ""); err != nil {
			return err
		}
		m.shareBinding(n)
		out = m.deviceView(m.st.devices[n])
		return nil
	})
	return out, err
}

// setBinding applies a binding (an empty MUDURL removes the device's):
// its static addresses are checked and pinned, the store takes it, and
// the device is settled with a "bound-by-admin" event naming the URL, the
// reason and, when another gateway bound it, origin.
func (m *Manager) setBinding(b store.Binding, reason, origin string) error {
	n, mudURL := b.MAC, b.MUDURL
	if mudURL == "" && len(b.IPs) > 0 {
		return errorf(ErrInvalid, "static addresses need a MUD URL to bind")
	}
	ips, err := m.checkStatic(n, b.IPs)
	if err != nil {
		if errors.Is(err, ErrConflict) {
			m.event(n, "address-conflict", "", "", "static address refused: "+err.Error())
		}
		return err
	}
	var d store.Device
	if old := m.st.devices[n]; old != nil {
		d = *old
	} else {
		d = store.Device{MAC: n, State: store.StateDiscovered, FirstSeen: m.now()}
	}
	old := m.st.bindings[n].IPs
	if err := m.pin(n, ips, old); err != nil {
		m.event(n, "address-conflict", "", "", "static address refused: "+err.Error())
		return err
	}
	b.IPs = ips
	if len(ips) == 0 {
		b.IPs = nil
	}
	err = m.update(func(tx *store.Tx) error {
		if mudURL == "" {
			if err := tx.Bindings().Delete(n); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		}
		return tx.Bindings().Put(b)
	})
	if err != nil {
		m.unpin(n, ips, old)
		return fmt.Errorf("binding %s: %w", n, err)
	}
	m.unpin(n, old, ips)
	msg := mudURL
	if mudURL == "" {
		delete(m.st.bindings, n)
		if d.URLSource == store.SourceAdminBind {
			d.MUDURL, d.URLSource = "", ""
		}
	} else {
		m.st.bindings[n] = b
		d.MUDURL, d.URLSource = mudURL, store.SourceAdminBind
		m.staticTaken(n, ips)
		if len(ips) > 0 {
			msg += " with static addresses " + addrList(ips)
		}
	}
	m.markMAC(markDevice, n)
	if err := m.settle(d, "bound-by-admin", joinMsg(origin, joinMsg(msg, reason))); err != nil {
		return err
	}
	m.syncFirstUse(n)
	return nil
}

func addrList(ips []netip.Addr) string {
	s := make([]string, len(ips))
	for i, a := range ips {
		s[i] = a.String()
	}
	return strings.Join(s, ", ")
}

// AddOverride appends an administrator's allow/deny entry to a device's
// (its By and CreatedAt are set here) and returns them all.
func (m *Manager) AddOverride(ctx context.Context, by string, mac string, rule store.OverrideRule) (store.Overrides, error) {
	var out store.Overrides
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		o := m.st.overrides[d.MAC]
		o.MAC = d.MAC
		rule.By, rule.CreatedAt = by, m.now()
		o.Rules = append(slices.Clone(o.Rules), rule)
		if err := m.update(func(tx *store.Tx) error { return tx.Overrides().Put(o) }); err != nil {
			return fmt.Errorf("adding an override for %s: %w", d.MAC, err)
		}
		m.st.overrides[d.MAC] = o
		m.shareOverrides(d.MAC)
		m.markMAC(markOverrides, d.MAC)
		dir, r := OverridePolicyRule(rule)
		m.event(d.MAC, "override-added", "", "", policy.Describe(dir, r))
		out = o
		return nil
	})
	if err == nil {
		err = m.flowsEnded(ctx)
	}
	return out, err
}

// ClearOverrides removes all the device's entries.
func (m *Manager) ClearOverrides(ctx context.Context, by string, mac string) error {
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		err = m.update(func(tx *store.Tx) error {
			if err := tx.Overrides().Delete(d.MAC); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("clearing the overrides of %s: %w", d.MAC, err)
		}
		delete(m.st.overrides, d.MAC)
		m.shareOverrides(d.MAC)
		m.markMAC(markOverrides, d.MAC)
		m.event(d.MAC, "overrides-cleared", "", "", "by "+by)
		return nil
	})
	if err != nil {
		return err
	}
	return m.flowsEnded(ctx)
}

// Controllers lists the controller and my-controller mappings: the
// store's and the configuration's (which a store mapping of the same URI
// replaces), controllers first, each kind by URI.
func (m *Manager) Controllers(ctx context.Context) ([]Controller, error) {
	var out []Controller
	err := m.do(ctx, func() error {
		add := func(my bool, st map[string]store.ControllerMapping, cf map[string][]netip.Prefix) {
			for _, k := range sortedKeys(st) {
				c := st[k]
				out = append(out, Controller{URI: k, My: my, Prefixes: c.Prefixes, Source: c.Source, UpdatedAt: c.UpdatedAt})
			}
			for _, k := range sortedKeys(cf) {
				if _, ok := st[k]; !ok {
					out = append(out, Controller{URI: k, My: my, Prefixes: cf[k], Source: "config"})
				}
			}
		}
		add(false, m.st.controllers, m.cfg.Settings.Controllers)
		add(true, m.st.myControllers, m.cfg.Settings.MyControllers)
		return nil
	})
	return out, err
}

// SetController replaces the prefixes of an administrator's mapping of a
// controller class or my-controller (RFC 8520 §4.6, §4.7); no prefixes
// removes it. It returns the mapping as stored.
func (m *Manager) SetController(ctx context.Context, by string, c Controller) (Controller, error) {
	err := m.do(ctx, func() error {
		cm := store.ControllerMapping{Name: c.URI, Prefixes: c.Prefixes, Source: "mudctl", UpdatedAt: m.now()}
		err := m.update(func(tx *store.Tx) error {
			t := tx.Controllers()
			if c.My {
				t = tx.MyControllers()
			}
			if len(c.Prefixes) == 0 {
				if err := t.Delete(c.URI); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return nil
			}
			return t.Put(cm)
		})
		if err != nil {
			return fmt.Errorf("setting controller %s: %w", c.URI, err)
		}
		tbl, kind := m.st.controllers, "controller"
		if c.My {
			tbl, kind = m.st.myControllers, "my-controller"
		}
		fk := FleetController
		if c.My {
			fk = FleetMyController
		}
		if len(c.Prefixes) == 0 {
			delete(tbl, c.URI)
			m.share(fk, c.URI, nil)
		} else {
			tbl[c.URI] = cm
			m.share(fk, c.URI, cm)
		}
		m.markAll()
		c.Source, c.UpdatedAt = cm.Source, cm.UpdatedAt
		m.event("", "controller-set", "", "", fmt.Sprintf("%s %s: %v by %s", kind, c.URI, c.Prefixes, by))
		return nil
	})
	return c, err
}

// Refresh fetches MUD files again now (conditionally, with the cached
// validators), whatever their cache-validity says: one device's, or all
// when mac is "".
func (m *Manager) Refresh(ctx context.Context, by string, mac string) (RefreshCount, error) {
	var out RefreshCount
	err := m.do(ctx, func() error {
		urls := map[string]*store.Device{}
		for _, k := range m.macs() {
			d := m.st.devices[k]
			if d.MUDURL == "" || d.State == store.StateRemoved {
				continue
			}
			if mac != "" {
				if n, _ := store.NormalizeMAC(mac); n != k {
					continue
				}
			}
			out.Devices++
			if urls[d.MUDURL] == nil {
				urls[d.MUDURL] = d
			}
		}
		if mac != "" && out.Devices == 0 {
			if _, err := m.lookup(mac); err != nil {
				return err
			}
		}
		for _, u := range sortedKeys(urls) {
			if fi := m.st.fetch[u]; fi != nil {
				fi.next = time.Time{} // no waiting out a retry delay
			}
			m.enqueue(u, urls[u], true)
		}
		out.URLs = len(urls)
		return nil
	})
	return out, err
}

// Import takes a MUD file obtained out of band with its detached
// signature, verified like a fetched one and used only if it verifies
// (RFC 8520 §1.6).
func (m *Manager) Import(ctx context.Context, by string, file, signature []byte) (ImportOutcome, error) {
	var out ImportOutcome
	err := m.do(ctx, func() error {
		if len(file) == 0 {
			return errorf(ErrInvalid, "no file")
		}
		f, n, err := m.importFile(file, signature)
		if f != nil {
			out = ImportOutcome{URL: f.URL, Digest: f.Digest(), Verdict: f.Verdict, Signer: f.Signer, Reason: f.VerdictReason, DevicesUpdated: n}
		}
		if err == nil {
			m.event("", "imported", "", "", fmt.Sprintf("%s (%s) by %s", f.URL, f.Verdict, by))
		}
		return err
	})
	return out, err
}
