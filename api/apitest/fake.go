// Package apitest provides a fake api.Backend and a helper that serves it
// on a unix socket, for tests of the control API, of mudctl and of
// anything else that talks to mudd without root or a kernel.
package apitest

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// Fake is an api.Backend that stands in for the manager, which needs root
// and the kernel: an in-memory device table with the manager's observable
// rules (approve only what is pending, release only what is quarantined,
// ...), an event log with subscribers, and a record of the last caller.
type Fake struct {
	mu          sync.Mutex
	devices     map[string]*api.Device
	controllers map[string]api.Controller
	events      []api.Event
	violations  []api.Violation
	subs        map[chan api.Event]struct{}
	lastCaller  api.Caller
	failStatus  error // returned by Status when set
}

// The devices a new Fake knows, and one it does not.
const (
	MACEnforced = "02:00:00:00:00:01" // enforced, with a MUD file and policy p1
	MACPending  = "02:00:00:00:00:02" // pending-approval, no policy
	MACUnknown  = "02:00:00:00:00:99"
)

// NewFake returns a Fake with two devices, MACEnforced and MACPending.
func NewFake() *Fake {
	t0 := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	yes := true
	f := &Fake{
		devices:     map[string]*api.Device{},
		controllers: map[string]api.Controller{},
		subs:        map[chan api.Event]struct{}{},
	}
	f.devices[MACEnforced] = &api.Device{
		MAC: MACEnforced, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		Hostname: "bulb", Port: "lan1", MUDURL: "https://lighting.example.com/lightbulb2000", URLSource: api.SourceDHCPv4,
		State: api.StateEnforced, PolicyID: "p1", Enforcement: api.EnforcementEnforced, FirstSeen: t0, LastSeen: t0,
		MUD: &api.MUDInfo{URL: "https://lighting.example.com/lightbulb2000", MfgName: "Example Lighting",
			ModelName: "Bulb 2000", SystemInfo: "The BMS Example Light Bulb", IsSupported: &yes,
			Signature: api.SignatureValid,
			Transparency: &api.Transparency{
				SBOMs:    []api.SBOM{{VersionInfo: "1.2", URL: "https://lighting.example.com/sbom/bulb2000-1.2.cdx.json"}},
				VulnURLs: []string{"https://lighting.example.com/csaf/bulb2000.json"}},
			TLSProfileSupported: &yes},
		Counters: &api.DeviceCounters{SentPackets: 1200, SentBytes: 180000, SentDroppedPackets: 3, SentDroppedBytes: 180,
			ReceivedPackets: 1100, ReceivedBytes: 1500000, ReceivedDroppedPackets: 1, ReceivedDroppedBytes: 60},
	}
	f.devices[MACPending] = &api.Device{
		MAC: MACPending, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.11")}, Hostname: "cam",
		Port: "lan2", MUDURL: "https://cam.example.net/cam.json", State: api.StatePendingApproval,
		Reason: "signature invalid", Enforcement: api.EnforcementUnenforced,
		UnenforcedReason: "its MUD file awaits an administrator's approval: signature invalid",
		PendingReasons:   []string{"signature invalid"},
		Fetch: &api.FetchStatus{URL: "https://cam.example.net/cam.json", Attempts: []api.FetchAttempt{
			{At: t0, Seconds: 0.5, Port: "lan2", Error: "GET \"https://cam.example.net/cam.json\": fetch failed: connection refused"},
			{At: t0.Add(5 * time.Second), Seconds: 0.25, Port: "lan2", OK: true},
		}},
	}
	f.violations = []api.Violation{{MAC: MACEnforced, DeviceAddress: netip.MustParseAddr("192.0.2.10"),
		Direction: api.FromDevice, Kind: api.ViolationDefaultDeny, Peer: netip.MustParseAddr("198.51.100.23"),
		PeerName: "telemetry.example.net", Protocol: "tcp", Port: 8443, Count: 3, FirstSeen: t0, LastSeen: t0.Add(time.Minute)}}
	return f
}

// Publish appends an event and hands it to every subscriber that has
// room (like the manager would: a slow follower is dropped, not waited
// for).
func (f *Fake) Publish(mac, kind, msg string) api.Event {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.publishLocked(mac, kind, msg)
}

func (f *Fake) publishLocked(mac, kind, msg string) api.Event {
	e := api.Event{Seq: uint64(len(f.events) + 1), Time: time.Now().UTC(), MAC: mac, Kind: kind, Message: msg}
	f.events = append(f.events, e)
	for ch := range f.subs {
		select {
		case ch <- e:
		default:
		}
	}
	return e
}

// Subscribers is the number of live event subscriptions.
func (f *Fake) Subscribers() int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return len(f.subs)
}

// LastCaller is the api.Caller of the last change.
func (f *Fake) LastCaller() api.Caller {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.lastCaller
}

func (f *Fake) Status(ctx context.Context) (api.Status, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.failStatus != nil {
		return api.Status{}, f.failStatus
	}
	st := api.Status{Version: "test", UptimeSeconds: 12.5, DevicesByState: map[api.DeviceState]int{},
		PoliciesInstalled: 1, Enforcer: api.EnforcerStatus{Healthy: true, Tables: []string{"inet mud", "bridge mud"}, LastApplyLatency: 1.25}}
	for _, d := range f.devices {
		st.Devices++
		st.DevicesByState[d.State]++
		if d.Enforcement == api.EnforcementUnenforced {
			st.DevicesUnenforced++
		}
	}
	return st, nil
}

func (f *Fake) Devices(ctx context.Context) ([]api.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Device
	for _, d := range f.devices {
		out = append(out, *d)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].MAC < out[j].MAC })
	return out, nil
}

func (f *Fake) get(mac string) (*api.Device, error) {
	d, ok := f.devices[mac]
	if !ok {
		return nil, fmt.Errorf("device %s: %w", mac, api.ErrNotFound)
	}
	return d, nil
}

func (f *Fake) Device(ctx context.Context, mac string) (api.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get(mac)
	if err != nil {
		return api.Device{}, err
	}
	return *d, nil
}

func (f *Fake) Policy(ctx context.Context, mac string, withNFT bool) (api.PolicyView, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, err := f.get(mac)
	if err != nil {
		return api.PolicyView{}, err
	}
	if d.PolicyID == "" {
		return api.PolicyView{}, fmt.Errorf("policy of %s: %w: no policy installed", mac, api.ErrNotFound)
	}
	p := api.NewCompiledPolicy(&policy.Policy{ID: d.PolicyID, MUDURL: d.MUDURL,
		FromDevice: []policy.Rule{{Name: "acl/ace1", Family: policy.IPv4, Protocol: policy.ProtoTCP,
			Peer:    policy.Peer{Kind: policy.DNSName, Value: "service.example.com"},
			DstPort: &policy.PortRange{First: 443, Last: 443}, Verdict: policy.Accept}},
	})
	v := api.PolicyView{MAC: mac, PolicyID: p.ID, MUDURL: p.MUDURL, State: d.State,
		FromDevice: api.DirectionView{Rules: []api.CountedRule{}, Dropped: api.Counters{Packets: 3, Bytes: 180}},
		ToDevice:   api.DirectionView{Rules: []api.CountedRule{}}}
	// Overrides come first. Their rules here are only named and given a
	// verdict: the manager's are the compiled entries.
	for i, o := range d.Overrides {
		name := fmt.Sprintf("override/%d", i+1)
		verdict := api.Accept
		if o.Verdict == api.Deny {
			verdict = api.Drop
		}
		rv := api.RuleView{Name: name, Verdict: verdict, Text: o.Text, Override: true,
			Rule: api.Rule{Name: name, Family: api.FamilyAny, Peer: api.Peer{Kind: api.PeerAny}, Verdict: verdict}}
		dv := &v.FromDevice
		if o.Direction == api.ToDevice {
			dv = &v.ToDevice
		}
		dv.Rules = append(dv.Rules, api.CountedRule{RuleView: rv})
	}
	v.FromDevice.Rules = append(v.FromDevice.Rules, api.CountedRule{RuleView: p.FromDevice[0], Counters: api.Counters{Packets: 7, Bytes: 700}})
	v.CountersAt = time.Now()
	if withNFT {
		v.NFT = "chain pol_p1_out {\n}\n"
	}
	return v, nil
}

func (f *Fake) Events(ctx context.Context, since uint64, limit int) ([]api.Event, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Event
	for _, e := range f.events {
		if e.Seq > since && (limit <= 0 || len(out) < limit) {
			out = append(out, e)
		}
	}
	return out, nil
}

func (f *Fake) SubscribeEvents(ctx context.Context) (<-chan api.Event, error) {
	ch := make(chan api.Event, 16)
	f.mu.Lock()
	f.subs[ch] = struct{}{}
	f.mu.Unlock()
	context.AfterFunc(ctx, func() {
		f.mu.Lock()
		defer f.mu.Unlock()
		delete(f.subs, ch)
		close(ch)
	})
	return ch, nil
}

// change runs fn on a device under the lock, records the caller and
// logs a state event when the state changed.
func (f *Fake) change(by api.Caller, mac string, fn func(d *api.Device) error) (api.Device, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCaller = by
	d, err := f.get(mac)
	if err != nil {
		return api.Device{}, err
	}
	from := d.State
	if err := fn(d); err != nil {
		return api.Device{}, err
	}
	if d.State != from {
		f.publishLocked(mac, "state", string(from)+" -> "+string(d.State))
	}
	return *d, nil
}

func (f *Fake) Approve(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return f.change(by, mac, func(d *api.Device) error {
		if d.State != api.StatePendingApproval {
			return fmt.Errorf("approve %s: %w: state is %s, not pending-approval", mac, api.ErrConflict, d.State)
		}
		d.State, d.PolicyID, d.PendingReasons = api.StateEnforced, "p2", nil
		d.Enforcement, d.UnenforcedReason = api.EnforcementEnforced, ""
		return nil
	})
}

func (f *Fake) Reject(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return f.change(by, mac, func(d *api.Device) error {
		if d.State != api.StatePendingApproval {
			return fmt.Errorf("reject %s: %w: not pending approval", mac, api.ErrConflict)
		}
		d.Reason = "rejected: " + req.Reason
		return nil
	})
}

func (f *Fake) Quarantine(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return f.change(by, mac, func(d *api.Device) error {
		if d.Quarantine != nil {
			return fmt.Errorf("quarantine %s: %w: already quarantined", mac, api.ErrConflict)
		}
		d.Quarantine = &api.Hold{By: by.String(), At: time.Now().UTC(), Reason: req.Reason}
		d.State, d.Enforcement, d.UnenforcedReason = api.StateQuarantined, api.EnforcementQuarantined, ""
		return nil
	})
}

func (f *Fake) Release(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return f.change(by, mac, func(d *api.Device) error {
		if d.Quarantine == nil {
			return fmt.Errorf("release %s: %w: not quarantined", mac, api.ErrConflict)
		}
		d.Quarantine, d.State, d.Enforcement = nil, api.StateEnforced, api.EnforcementEnforced
		return nil
	})
}

func (f *Fake) Bind(ctx context.Context, by api.Caller, mac string, req api.BindRequest) (api.Device, error) {
	return f.change(by, mac, func(d *api.Device) error {
		d.MUDURL, d.URLSource = req.MUDURL, api.SourceAdminBind
		if req.MUDURL == "" {
			d.URLSource = ""
		}
		return nil
	})
}

func (f *Fake) AddOverride(ctx context.Context, by api.Caller, mac string, req api.OverrideRequest) (api.Overrides, error) {
	d, err := f.change(by, mac, func(d *api.Device) error {
		o, err := req.Override()
		if err != nil {
			return err
		}
		o.By, o.CreatedAt = by.String(), time.Now().UTC()
		d.Overrides = append(d.Overrides, o)
		return nil
	})
	return api.Overrides{MAC: mac, Rules: d.Overrides}, err
}

func (f *Fake) ClearOverrides(ctx context.Context, by api.Caller, mac string) error {
	_, err := f.change(by, mac, func(d *api.Device) error {
		d.Overrides = nil
		return nil
	})
	return err
}

// Violations returns the Fake's one violation record (of MACEnforced) when
// mac is it or "".
func (f *Fake) Violations(ctx context.Context, mac string) ([]api.Violation, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if mac != "" && f.devices[mac] == nil {
		return nil, fmt.Errorf("device %s: %w", mac, api.ErrNotFound)
	}
	var out []api.Violation
	for _, v := range f.violations {
		if mac == "" || v.MAC == mac {
			out = append(out, v)
		}
	}
	return out, nil
}

func (f *Fake) Controllers(ctx context.Context) ([]api.Controller, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []api.Controller
	for _, c := range f.controllers {
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].URI < out[j].URI })
	return out, nil
}

func (f *Fake) SetController(ctx context.Context, by api.Caller, c api.Controller) (api.Controller, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCaller = by
	if len(c.Prefixes) == 0 {
		if _, ok := f.controllers[c.URI]; !ok {
			return api.Controller{}, fmt.Errorf("controller %s: %w", c.URI, api.ErrNotFound)
		}
		delete(f.controllers, c.URI)
		return c, nil
	}
	c.Source = "mudctl"
	f.controllers[c.URI] = c
	return c, nil
}

func (f *Fake) Refresh(ctx context.Context, by api.Caller, mac string) (api.RefreshResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCaller = by
	if mac == "" {
		return api.RefreshResult{Devices: len(f.devices), URLs: len(f.devices)}, nil
	}
	if _, err := f.get(mac); err != nil {
		return api.RefreshResult{}, err
	}
	return api.RefreshResult{Devices: 1, URLs: 1}, nil
}

func (f *Fake) Import(ctx context.Context, by api.Caller, req api.ImportRequest) (api.ImportResult, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.lastCaller = by
	var doc struct {
		MUD struct {
			URL string `json:"mud-url"`
		} `json:"ietf-mud:mud"`
	}
	if err := json.Unmarshal(req.File, &doc); err != nil || doc.MUD.URL == "" {
		return api.ImportResult{}, fmt.Errorf("import: %w: not a MUD file", api.ErrInvalid)
	}
	res := api.ImportResult{MUDURL: doc.MUD.URL, Digest: store.Digest(req.File), Signature: api.SignatureUnsigned}
	if len(req.Signature) > 0 {
		res.Signature, res.Signer = api.SignatureValid, "CN=lab signer"
	}
	return res, nil
}

// SetStatusError makes Status fail with err (nil: succeed again).
func (f *Fake) SetStatusError(err error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.failStatus = err
}

// Serve serves b on a new socket in a temporary directory until the test
// ends, and returns the socket's path.
func Serve(t testing.TB, b api.Backend, opts api.ServerOptions) string {
	t.Helper()
	sock := filepath.Join(t.TempDir(), "mudd.sock")
	ln, err := api.Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(b, opts).Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("api.Server.Serve: %v", err)
		}
	})
	return sock
}

var _ api.Backend = (*Fake)(nil)
