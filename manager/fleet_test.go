package manager

import (
	"encoding/json"
	"errors"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/store"
)

// fakeHub stands for etcd between fake fleet clients: a decision one
// member submits is delivered to every member, the submitter included
// (as etcd's watch does), in order.
type fakeHub struct {
	mu      sync.Mutex
	members []*fakeFleet
	submits []fakeSubmit
	rev     int64
}

type fakeSubmit struct {
	from  string
	kind  FleetKind
	key   string
	value []byte
}

type fakeFleet struct {
	hub       *fakeHub
	id        string
	ch        chan FleetEvent
	mu        sync.Mutex
	cut       bool // partitioned: submissions wait in queued
	queued    []fakeSubmit
	summaries map[string][]byte
	known     map[fleetKey]int64
}

func (h *fakeHub) join(id string) *fakeFleet {
	f := &fakeFleet{hub: h, id: id, ch: make(chan FleetEvent, 1024), summaries: map[string][]byte{}, known: map[fleetKey]int64{}}
	h.mu.Lock()
	h.members = append(h.members, f)
	h.mu.Unlock()
	return f
}

func (h *fakeHub) deliver(s fakeSubmit) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.submits = append(h.submits, s)
	h.rev++
	for _, m := range h.members {
		m.mu.Lock()
		cut := m.cut
		if !cut {
			m.known[fleetKey{s.kind, s.key}] = h.rev
		}
		m.mu.Unlock()
		if !cut {
			m.ch <- FleetEvent{Type: FleetChanged, Kind: s.kind, Key: s.key, Value: s.value, Deleted: s.value == nil}
		}
	}
}

// count is how many submissions of kind came from member from.
func (h *fakeHub) count(from string, kind FleetKind) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, s := range h.submits {
		if s.from == from && s.kind == kind {
			n++
		}
	}
	return n
}

func (f *fakeFleet) Submit(ds ...FleetDecision) error {
	var ss []fakeSubmit
	for _, d := range ds {
		ss = append(ss, fakeSubmit{from: f.id, kind: d.Kind, key: d.Key, value: d.Value})
	}
	f.mu.Lock()
	if f.cut {
		f.queued = append(f.queued, ss...)
		f.mu.Unlock()
		return nil
	}
	f.mu.Unlock()
	go func() { // etcd answers later, in order
		for _, s := range ss {
			f.hub.deliver(s)
		}
	}()
	return nil
}

func (f *fakeFleet) Known(kind FleetKind, key string) int64 {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.known[fleetKey{kind, key}]
}

func (f *fakeFleet) PutDevices(m map[string][]byte) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	for k, v := range m {
		if v == nil {
			delete(f.summaries, k)
		} else {
			f.summaries[k] = v
		}
	}
	return nil
}

func (f *fakeFleet) Events() <-chan FleetEvent { return f.ch }

func (f *fakeFleet) Status() FleetStatus {
	f.mu.Lock()
	defer f.mu.Unlock()
	return FleetStatus{GatewayID: f.id, Partitioned: f.cut, Queued: len(f.queued)}
}

func (f *fakeFleet) partition() {
	f.mu.Lock()
	f.cut = true
	f.mu.Unlock()
	f.ch <- FleetEvent{Type: FleetPartition, Err: errors.New("context deadline exceeded")}
}

// heal delivers what was queued, and then what the others decided
// meanwhile (a resync).
func (f *fakeFleet) heal(missed []fakeSubmit) {
	f.mu.Lock()
	f.cut = false
	q := f.queued
	f.queued = nil
	f.mu.Unlock()
	f.ch <- FleetEvent{Type: FleetHeal}
	for _, s := range missed {
		f.ch <- FleetEvent{Type: FleetChanged, Kind: s.kind, Key: s.key, Value: s.value, Deleted: s.value == nil}
	}
	for _, s := range q {
		f.hub.deliver(s)
	}
}

func (f *fakeFleet) summary(mac string) (fleet.DeviceSummary, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	raw, ok := f.summaries[mac]
	var s fleet.DeviceSummary
	if ok {
		if err := json.Unmarshal(raw, &s); err != nil {
			panic(err)
		}
	}
	return s, ok
}

// fleetGateway is a manager joined to a hub.
func fleetGateway(t *testing.T, srv *mudServer, hub *fakeHub, id, dir string) (*harness, *fakeEnforcer, *fakeFleet) {
	t.Helper()
	fe := newFakeEnforcer()
	ff := hub.join(id)
	h := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.Fleet = ff }})
	return h, fe, ff
}

// hasEvent waits until the manager has an event of kind whose message
// contains msg.
func (h *harness) hasEvent(kind, msg string) store.Event {
	h.t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	var seen []string
	for time.Now().Before(deadline) {
		evs, err := h.m.Events(bg, 0, 0)
		if err != nil {
			h.t.Fatal(err)
		}
		seen = seen[:0]
		for _, e := range evs {
			if e.Kind == kind && strings.Contains(e.Message, msg) {
				return e
			}
			seen = append(seen, e.Kind+": "+e.Message)
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("no event %s with %q among:\n%s", kind, msg, strings.Join(seen, "\n"))
	return store.Event{}
}

// RFC 8520 §13.2 across gateways: an approval made on one gateway
// enforces the device on the other, with an event naming the fleet as
// its origin, and nothing the other received is sent back.
func TestFleetApprovalReachesOtherGateway(t *testing.T) {
	srv, u := camServer(t, literalACE, false)
	hub := &fakeHub{}
	a, _, _ := fleetGateway(t, srv, hub, "gw-a", "")
	b, feB, _ := fleetGateway(t, srv, hub, "gw-b", "")
	a.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	b.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	a.waitState(mac(1), store.StatePendingApproval)
	b.waitState(mac(1), store.StatePendingApproval)

	if _, err := a.m.Approve(bg, adm, mac(1).String(), Action{Reason: "checked"}); err != nil {
		t.Fatal(err)
	}
	b.waitState(mac(1), store.StateEnforced)
	b.hasEvent("approved", "approval from the fleet: approved by "+adm)
	if d, ok := feB.device(mac(1)); !ok || d.Mode != enforcer.Enforce {
		t.Errorf("gateway b's enforcer: %+v (present %v)", d, ok)
	}
	// The approval is in b's store, so it survives b's restart.
	if err := b.st.View(func(tx *store.Tx) error {
		ap, err := tx.ApprovalsByMAC().Get(mac(1).String())
		if err == nil && ap.By != adm {
			t.Errorf("stored approval by %q", ap.By)
		}
		return err
	}); err != nil {
		t.Errorf("gateway b's store: %v", err)
	}
	if err := a.m.Sync(bg); err != nil {
		t.Fatal(err)
	}
	if err := b.m.Sync(bg); err != nil {
		t.Fatal(err)
	}
	if n := hub.count("gw-b", FleetVerdictMAC); n != 0 {
		t.Errorf("gateway b sent %d verdicts back: an echo", n)
	}
	if n := hub.count("gw-a", FleetVerdictMAC); n != 1 {
		t.Errorf("gateway a sent %d verdicts, want 1", n)
	}
	// a's own approval came back from the fleet: no second "approved"
	// event on a.
	evs, _ := a.m.Events(bg, 0, 0)
	n := 0
	for _, e := range evs {
		if e.Kind == "approved" {
			n++
		}
	}
	if n != 1 {
		t.Errorf("gateway a has %d approved events, want 1", n)
	}
}

// A rejection is a store record: shared, and still in force after the
// receiving gateway restarts.
func TestFleetRejectionPersists(t *testing.T) {
	srv, u := camServer(t, literalACE, false)
	hub := &fakeHub{}
	a, _, _ := fleetGateway(t, srv, hub, "gw-a", "")
	dirB := t.TempDir()
	b, _, _ := fleetGateway(t, srv, hub, "gw-b", dirB)
	a.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	b.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	a.waitState(mac(1), store.StatePendingApproval)
	b.waitState(mac(1), store.StatePendingApproval)
	if _, err := a.m.Reject(bg, adm, mac(1).String(), Action{Reason: "unknown vendor"}); err != nil {
		t.Fatal(err)
	}
	d := b.waitState(mac(1), store.StateFailed)
	if !strings.Contains(d.Reason, "rejected") {
		t.Errorf("reason %q", d.Reason)
	}
	b.hasEvent("rejected", "rejection from the fleet")
	b.stop()
	b2, fe2, _ := fleetGateway(t, srv, hub, "gw-b", dirB)
	d = b2.waitState(mac(1), store.StateFailed)
	if _, ok := fe2.device(mac(1)); ok {
		t.Error("after restart the rejected device is in the enforcer")
	}
	// An approval elsewhere replaces the rejection.
	if _, err := a.m.Approve(bg, adm, mac(1).String(), Action{}); err != nil {
		t.Fatal(err)
	}
	b2.waitState(mac(1), store.StateEnforced)
	if err := b2.st.View(func(tx *store.Tx) error {
		if ok, _ := tx.Rejections().Has(mac(1).String()); ok {
			t.Error("the rejection is still stored after the fleet's approval")
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
}

// While partitioned a gateway keeps enforcing from its store; what it
// decided meanwhile reaches the others on heal, and what they decided
// reaches it.
func TestFleetPartitionKeepsEnforcingAndConverges(t *testing.T) {
	srv, u := camServer(t, literalACE, false)
	hub := &fakeHub{}
	a, feA, fa := fleetGateway(t, srv, hub, "gw-a", "")
	b, _, _ := fleetGateway(t, srv, hub, "gw-b", "")
	ip2 := netip.MustParseAddr("192.0.2.12")
	for _, g := range []*harness{a, b} {
		g.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
		g.lease(dhcpsnoop.KindBound, mac(2), ip2, u)
		g.waitState(mac(1), store.StatePendingApproval)
		g.waitState(mac(2), store.StatePendingApproval)
	}
	if _, err := b.m.Approve(bg, adm, mac(1).String(), Action{}); err != nil {
		t.Fatal(err)
	}
	a.waitState(mac(1), store.StateEnforced)

	fa.partition()
	a.hasEvent("fleet-partition", "enforcing from the local store")
	st, err := a.m.Status(bg)
	if err != nil || st.Fleet == nil || !st.Fleet.Partitioned {
		t.Fatalf("status during the partition: %+v, %v", st.Fleet, err)
	}
	if d, ok := feA.device(mac(1)); !ok || d.Mode != enforcer.Enforce {
		t.Errorf("partitioned gateway stopped enforcing: %+v", d)
	}
	// Decided here during the partition, and elsewhere.
	if _, err := a.m.Reject(bg, adm, mac(2).String(), Action{Reason: "offline decision"}); err != nil {
		t.Fatal(err)
	}
	mac3 := mac(3)
	ip3 := netip.MustParseAddr("192.0.2.13")
	b.lease(dhcpsnoop.KindBound, mac3, ip3, u)
	a.lease(dhcpsnoop.KindBound, mac3, ip3, u)
	b.waitState(mac3, store.StatePendingApproval)
	if _, err := b.m.Approve(bg, adm, mac3.String(), Action{}); err != nil {
		t.Fatal(err)
	}
	if s := fa.Status(); s.Queued == 0 {
		t.Error("the partitioned gateway's decision is not queued")
	}
	a.waitState(mac3, store.StatePendingApproval)

	hub.mu.Lock()
	var missed []fakeSubmit
	for _, s := range hub.submits {
		if s.from == "gw-b" && s.kind == FleetVerdictMAC && s.key == mac3.String() {
			missed = append(missed, s)
		}
	}
	hub.mu.Unlock()
	fa.heal(missed)
	a.hasEvent("fleet-heal", "reachable again")
	a.waitState(mac3, store.StateEnforced)
	b.waitState(mac(2), store.StateFailed)
}

// A decision of this gateway that lost a compare-and-swap gives way to
// the winner.
func TestFleetConflictAppliesWinner(t *testing.T) {
	srv, u := camServer(t, literalACE, false)
	hub := &fakeHub{}
	a, _, fa := fleetGateway(t, srv, hub, "gw-a", "")
	a.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	a.waitState(mac(1), store.StatePendingApproval)
	dv, err := a.m.Device(bg, mac(1).String())
	if err != nil {
		t.Fatal(err)
	}
	win, _ := json.Marshal(fleetVerdict{Verdict: verdictApproved, Approval: &store.Approval{MAC: mac(1).String(), MUDURL: u,
		Digest: dv.File.Digest, By: "alice", At: time.Now()}})
	fa.ch <- FleetEvent{Type: FleetConflict, Kind: FleetVerdictMAC, Key: mac(1).String(), Value: win}
	a.waitState(mac(1), store.StateEnforced)
	a.hasEvent("fleet-conflict", "another gateway decided first")
}

// Values that do not fit their key are refused with an event, and the
// gateway keeps running.
func TestFleetRefusesBadValues(t *testing.T) {
	srv, _ := camServer(t, "", false)
	hub := &fakeHub{}
	a, _, fa := fleetGateway(t, srv, hub, "gw-a", "")
	fa.ch <- FleetEvent{Type: FleetChanged, Kind: FleetVerdictMAC, Key: "not-a-mac", Value: []byte(`{}`)}
	fa.ch <- FleetEvent{Type: FleetChanged, Kind: FleetOverrides, Key: mac(1).String(), Value: []byte(`{"mac":"02:00:00:00:01:02","rules":[]}`)}
	fa.ch <- FleetEvent{Type: FleetChanged, Kind: FleetBinding, Key: mac(1).String(), Value: []byte(`{"mac":`)}
	a.hasEvent("fleet-refused", "not-a-mac")
	a.hasEvent("fleet-refused", `the record names "02:00:00:00:01:02"`)
	a.hasEvent("fleet-refused", "bindings")
	if err := a.m.Sync(bg); err != nil {
		t.Fatal(err)
	}
}

// Overrides, controller mappings and bindings reach the other gateway.
func TestFleetSharesOverridesControllersBindings(t *testing.T) {
	srv, u := camServer(t, "", false)
	hub := &fakeHub{}
	a, _, _ := fleetGateway(t, srv, hub, "gw-a", "")
	b, _, _ := fleetGateway(t, srv, hub, "gw-b", "")
	a.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	b.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	a.waitState(mac(1), store.StateEnforced)
	b.waitState(mac(1), store.StateEnforced)
	rule := store.OverrideRule{Direction: store.OverrideFromDevice, Verdict: store.OverrideDeny, Prefix: netip.MustParsePrefix("203.0.113.0/24")}
	if _, err := a.m.AddOverride(bg, adm, mac(1).String(), rule); err != nil {
		t.Fatal(err)
	}
	if _, err := a.m.SetController(bg, adm, Controller{URI: "urn:ietf:params:mud:dns", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.53/32")}}); err != nil {
		t.Fatal(err)
	}
	bound := mac(9)
	if _, err := a.m.Bind(bg, adm, bound.String(), u, "no DHCP option", nil); err != nil {
		t.Fatal(err)
	}
	b.hasEvent("overrides-set", "from the fleet: 1 entries")
	b.hasEvent("controller-set", "from the fleet")
	b.hasEvent("bound-by-admin", "binding from the fleet")
	dv, err := b.m.Device(bg, mac(1).String())
	if err != nil || len(dv.Overrides) != 1 || dv.Overrides[0].Prefix != rule.Prefix {
		t.Errorf("b's overrides: %+v, %v", dv.Overrides, err)
	}
	cs, _ := b.m.Controllers(bg)
	if !slices.ContainsFunc(cs, func(c Controller) bool { return c.URI == "urn:ietf:params:mud:dns" && c.Source == "mudctl" }) {
		t.Errorf("b's controllers: %+v", cs)
	}
	if dv, err := b.m.Device(bg, bound.String()); err != nil || dv.MUDURL != u || dv.URLSource != store.SourceAdminBind {
		t.Errorf("b's bound device: %+v, %v", dv.Device, err)
	}
	if err := a.m.ClearOverrides(bg, adm, mac(1).String()); err != nil {
		t.Fatal(err)
	}
	b.hasEvent("overrides-cleared", "from the fleet")
	for _, k := range []FleetKind{FleetOverrides, FleetController, FleetBinding} {
		if n := hub.count("gw-b", k); n != 0 {
			t.Errorf("gateway b sent %d %s back", n, k)
		}
	}
}

// Device summaries follow state changes, encoded as fleet.DeviceSummary,
// and are not rewritten for a device that was only seen again.
func TestFleetDeviceSummaries(t *testing.T) {
	srv, u := camServer(t, "", false)
	hub := &fakeHub{}
	a, _, fa := fleetGateway(t, srv, hub, "gw-a", "")
	a.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	a.waitState(mac(1), store.StateEnforced)
	deadline := time.Now().Add(5 * time.Second)
	var s fleet.DeviceSummary
	for time.Now().Before(deadline) {
		var ok bool
		if s, ok = fa.summary(mac(1).String()); ok && s.State == string(store.StateEnforced) {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	if s.MAC != mac(1).String() || s.State != "enforced" || s.Enforcement != "enforced" || s.MUDURL != u ||
		!slices.Equal(s.IPs, []string{ip1.String()}) || s.PolicyID == "" || s.UpdatedAt.IsZero() {
		t.Fatalf("summary %+v", s)
	}
	at := s.UpdatedAt
	a.lease(dhcpsnoop.KindRenewed, mac(1), ip1, u)
	time.Sleep(150 * time.Millisecond) // three ticks
	if s, _ := fa.summary(mac(1).String()); !s.UpdatedAt.Equal(at) {
		t.Errorf("a renewal without change rewrote the summary (%v, was %v)", s.UpdatedAt, at)
	}
}

// The manager's kinds are package fleet's.
func TestFleetKindsMatch(t *testing.T) {
	var want []string
	for _, k := range fleet.Kinds() {
		want = append(want, string(k))
	}
	var got []string
	for _, k := range FleetKinds() {
		got = append(got, string(k))
	}
	if !slices.Equal(got, want) {
		t.Errorf("manager kinds %v, fleet kinds %v", got, want)
	}
}

// A gateway joining the fleet hands it what it decided alone before
// (store.backend bbolt until then); the others apply it.
func TestFleetJoinPublishesLocalDecisions(t *testing.T) {
	srv, u := camServer(t, literalACE, false)
	dirA := t.TempDir()
	alone := startManager(t, harnessOpts{dir: dirA, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	alone.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	alone.waitState(mac(1), store.StatePendingApproval)
	if _, err := alone.m.Approve(bg, adm, mac(1).String(), Action{Reason: "before the fleet"}); err != nil {
		t.Fatal(err)
	}
	rule := store.OverrideRule{Direction: store.OverrideFromDevice, Verdict: store.OverrideDeny, Prefix: netip.MustParsePrefix("203.0.113.0/24")}
	if _, err := alone.m.AddOverride(bg, adm, mac(1).String(), rule); err != nil {
		t.Fatal(err)
	}
	alone.stop()

	hub := &fakeHub{}
	b, _, _ := fleetGateway(t, srv, hub, "gw-b", "")
	b.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	b.waitState(mac(1), store.StatePendingApproval)
	a, _, _ := fleetGateway(t, srv, hub, "gw-a", dirA)
	a.waitState(mac(1), store.StateEnforced)
	b.waitState(mac(1), store.StateEnforced)
	b.hasEvent("approved", "approval from the fleet")
	b.hasEvent("overrides-set", "from the fleet: 1 entries")
	for _, k := range []FleetKind{FleetVerdictMAC, FleetOverrides, FleetPinMAC, FleetPinURL} {
		if n := hub.count("gw-a", k); n != 1 {
			t.Errorf("gateway a handed the fleet %d %s on joining, want 1", n, k)
		}
	}
}
