package api

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"github.com/openmud/mud/violations"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"sort"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/manager"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

var update = flag.Bool("update", false, "rewrite testdata/*.json from the fixed values")

// The contract tests pin the wire format: fixed values of every type the
// API sends or receives, the daemon's answers made from fixed domain
// values through convert.go, are encoded and compared with
// testdata/<name>.json. A renamed or retyped JSON field, or an enum whose
// name changed, fails here; -update rewrites the files after a change
// made on purpose (docs/api.md must then follow).

var (
	at    = time.Date(2026, 2, 1, 9, 30, 0, 0, time.UTC)
	later = at.Add(90 * time.Second)
	mac1  = "02:00:5e:00:53:01"
	url1  = "https://lighting.example.com/lightbulb2000"
)

func fixedOverrides() store.Overrides {
	return store.Overrides{MAC: mac1, Rules: []store.OverrideRule{
		{Direction: store.OverrideFromDevice, Verdict: store.OverrideAllow, Prefix: netip.MustParsePrefix("198.51.100.7/32"),
			Protocol: store.ProtoTCP, DstPort: &store.PortRange{First: 8443, Last: 8444}, Comment: "the vendor's relay", By: "root", CreatedAt: at},
		{Direction: store.OverrideToDevice, Verdict: store.OverrideDeny, DNSName: "scanner.example.net", By: "uid 1000", CreatedAt: later},
	}}
}

func fixedDeviceView() manager.DeviceView {
	yes := true
	return manager.DeviceView{
		Device: store.Device{
			MAC: mac1, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
			Hostname: "bulb", Interface: "br-lan", Port: "lan1", MUDURL: url1, URLSource: store.SourceDHCPv4,
			InvalidMUDURL: `invalid MUD URL "http://lighting.example.com/old": not https`,
			State:         store.StateQuarantined, Reason: "quarantined by root", PolicyID: "mud-76100",
			Enforcement: store.EnforcementQuarantined, UnenforcedReason: "its MUD file awaits an administrator's approval",
			Quarantine:  &store.Hold{By: "root", At: later, Reason: "port scan"},
			LeaseExpiry: at.Add(time.Hour), FirstSeen: at, LastSeen: later, UpdatedAt: later,
		},
		File: &manager.FileView{URL: url1, Digest: store.Digest([]byte("{}")), Verdict: store.VerdictUntrusted,
			VerdictReason: "no trust anchor for CN=Example Lighting signer", Signer: "CN=Example Lighting signer",
			FetchedAt: at, VerifiedAt: at, CacheValidity: 48 * time.Hour,
			MUD: &mudfile.MUD{SystemInfo: "The BMS Example Light Bulb", MfgName: "Example Lighting", ModelName: "Bulb 2000",
				FirmwareRev: "1.2", SoftwareRev: "3.4", Documentation: "https://lighting.example.com/doc", IsSupported: yes, LastUpdate: at,
				Transparency: &mudfile.Transparency{
					SBOMs:              []mudfile.SBOM{{VersionInfo: "3.4", SBOMURL: "https://lighting.example.com/sbom/bulb2000-3.4.cdx.json"}},
					SBOMLocalWellKnown: "https", SBOMContactURI: "mailto:psirt@lighting.example.com",
					SBOMArchiveList: "https://lighting.example.com/sbom/bulb2000-archive.json",
					VulnURLs:        []string{"https://lighting.example.com/csaf/bulb2000.json"}, VulnContactURI: "tel:+1-555-0100"},
				TLSProfileSupported: &yes}},
		Fetch: &manager.FetchView{URL: url1, InFlight: true, Queued: true, Waiting: "port lan1 has all its 4 fetch slots busy",
			Failures: 1, NextAttempt: later, Attempts: []manager.FetchAttempt{
				{At: at, Took: 1500 * time.Millisecond, Port: "lan1", Error: "MUD server unreachable: connection refused"},
				{At: later, Took: 250 * time.Millisecond, Port: "lan1", OK: true},
			}},
		PendingReasons: []string{"the signature does not chain to a trust anchor"},
		Overrides:      fixedOverrides().Rules,
		StaticIPs:      []netip.Addr{netip.MustParseAddr("192.0.2.60")},
		FirstUse:       true,
	}
}

func fixedPolicy() *policy.Policy {
	code := uint8(0)
	return &policy.Policy{ID: "mud-76100", MUDURL: url1,
		FromDevice: []policy.Rule{
			{Name: "cl0-frdev/cl0-frdev", Family: policy.IPv4, Peer: policy.Peer{Kind: policy.DNSName, Value: "cloud.example.com"},
				Protocol: policy.ProtoTCP, SrcPort: &policy.PortRange{First: 22, Last: 22, Negate: true},
				DstPort: &policy.PortRange{First: 443, Last: 443}, Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "cl0-frdev/ping", Family: policy.IPv6, Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("2001:db8::/32")},
				Protocol: policy.ProtoICMPv6, ICMP: &policy.ICMPMatch{Type: 128, Code: &code}, Verdict: policy.Accept},
			{Name: "default/dns", Family: policy.AnyFamily, Peer: policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"},
				Protocol: policy.ProtoUDP, DstPort: &policy.PortRange{First: 53, Last: 53}, Verdict: policy.Accept, Default: true},
		},
		ToDevice: []policy.Rule{
			{Name: "cl0-todev/mfg", Family: policy.IPv4, Peer: policy.Peer{Kind: policy.Manufacturer, Value: "lighting.example.com"},
				Protocol: policy.ProtoTCP, DstPort: &policy.PortRange{First: 8080, Last: 8080}, Initiated: policy.InitiatedToDevice, Verdict: policy.Accept},
		},
		NeedsApproval: []string{"the file names IP addresses (RFC 8520 §2)"},
		Notes:         []string{"ACE cl0-frdev/range: a port range was narrowed"},
	}
}

func fixedPolicyView() manager.PolicyView {
	p := fixedPolicy()
	return manager.PolicyView{MAC: mac1, MUDURL: url1, State: store.StateEnforced, Policy: p,
		Overrides: enforcer.Overrides{FromDevice: []policy.Rule{{Name: "override/1", Family: policy.IPv4, Verdict: policy.Drop,
			Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("203.0.113.0/24")}}}},
		Counts: map[policy.Direction]map[string]manager.Count{
			policy.FromDevice: {p.FromDevice[0].Name: {Packets: 12, Bytes: 3400}},
			policy.ToDevice:   {p.ToDevice[0].Name: {Packets: 2, Bytes: 120}},
		},
		Dropped:    map[policy.Direction]manager.Count{policy.FromDevice: {Packets: 3, Bytes: 180}, policy.ToDevice: {Packets: 1, Bytes: 60}},
		CountersAt: later, NFT: "table inet mud {\n}\n"}
}

func fixedStatus() manager.StatusView {
	return manager.StatusView{Version: "1.0.0", StartedAt: at, Uptime: 90 * time.Second, Devices: 3,
		DevicesByState: map[store.State]int{store.StateEnforced: 2, store.StateFailed: 1}, DevicesUnenforced: 1, PoliciesInstalled: 2, DNSAnswersRefused: 3,
		Enforcer: manager.EnforcerView{Healthy: true, LastApply: later, LastApplyLatency: 1250 * time.Microsecond,
			LastError: "netlink: device or resource busy", LastErrorAt: at, Tables: []string{"inet mud", "bridge mud"},
			BridgeConntrack: true, Repairs: 1, BridgeReplies: "ipv4 inet-conntrack, ipv6 reflexive"},
		LateralUnenforced: []manager.LateralGap{{LAN: "br-lan", Port: "lan1", Severity: "warning",
			Reason: "an XDP program is attached to lan1: it can forward or drop frames before the bridge and mudd's rules see them",
			Fix:    "check it with ip -d link show dev lan1 or bpftool net show dev lan1, or detach it"}},
		Fleet: &manager.FleetStatus{GatewayID: "gw1", Queued: 4}}
}

// fixedDevice is the fixed device with the enforcer's counters, as
// WithDeviceCounters adds them, and its gateway, as WithGatewayID does.
func fixedDevice() Device {
	d := deviceFrom(fixedDeviceView())
	d.Counters = CountersFrom(enforcer.DeviceCount{Sent: 1200, SentBytes: 180000, SentDropped: 3, SentDroppedBytes: 180,
		Received: 1100, ReceivedBytes: 1500000, ReceivedDropped: 1, ReceivedDroppedBytes: 60})
	d.Gateway = "gw1"
	return d
}

// wireValues are the fixed values, by the name of their golden file.
func wireValues() map[string]any {
	return map[string]any{
		"device":          fixedDevice(),
		"status":          statusFrom(fixedStatus()),
		"policy_view":     policyViewFrom(fixedPolicyView()),
		"compiled_policy": NewCompiledPolicy(fixedPolicy()),
		"event": eventFrom(store.Event{Seq: 7, Time: at, MAC: mac1, Kind: "state", From: store.StateFetching,
			To: store.StateEnforced, Message: "verified"}),
		"controller": controllerFrom(manager.Controller{URI: url1, My: true,
			Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.5/32"), netip.MustParsePrefix("2001:db8::5/128")}, Source: "mudctl", UpdatedAt: at}),
		"violation": violationFrom(violations.Violation{MAC: net.HardwareAddr{2, 0, 0x5e, 0, 0x53, 1},
			DeviceAddr: netip.MustParseAddr("192.0.2.10"), Direction: violations.Out, Kind: violations.DefaultDeny,
			Peer: netip.MustParseAddr("198.51.100.23"), PeerName: "telemetry.example.net", Protocol: 6, Port: 8443,
			Count: 3, FirstSeen: at, LastSeen: later}),
		"overrides":      overridesFrom(fixedOverrides()),
		"refresh_result": RefreshResult{Devices: 2, URLs: 1},
		"import_result": importResultFrom(manager.ImportOutcome{URL: url1, Digest: store.Digest([]byte("{}")), Verdict: store.VerdictInvalid,
			Signer: "CN=Example Lighting signer", Reason: "the signature does not verify", DevicesUpdated: 2}),
		"action_request": ActionRequest{Reason: "checked the file", AllWithURL: true},
		"bind_request": BindRequest{MUDURL: url1, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.60"), netip.MustParseAddr("2001:db8::60")},
			Reason: "label on the box"},
		"override_request": OverrideRequest{Verdict: Allow, Direction: FromDevice, Peer: "198.51.100.7", Protocol: "tcp",
			Port: "8443-8444", Comment: "the vendor's relay"},
		"override_request_dns": OverrideRequest{Verdict: Deny, Direction: ToDevice, DNSName: "scanner.example.net"},
		"controller_request":   ControllerRequest{URI: url1, MyController: true, Addrs: []string{"192.0.2.123", "2001:db8::/64"}},
		"import_request":       ImportRequest{File: []byte(`{"ietf-mud:mud":{}}`), Signature: []byte{0x30, 0x82, 0x01}, Reason: "from the vendor's USB stick"},
		"error":                errorBody{Error: "not found: device 02:00:5e:00:53:09"},
	}
}

func TestWireGolden(t *testing.T) {
	for name, v := range wireValues() {
		got, err := json.MarshalIndent(v, "", "  ")
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got = append(got, '\n')
		path := filepath.Join("testdata", name+".json")
		if *update {
			if err := os.WriteFile(path, got, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		want, err := os.ReadFile(path)
		if err != nil {
			t.Fatalf("%s (run with -update to write it): %v", name, err)
		}
		if !bytes.Equal(got, want) {
			t.Errorf("%s: the encoding changed (a renamed field or enum?); if on purpose, run with -update and update docs/api.md\n got %s\nwant %s", path, got, want)
		}
	}
}

// The golden files show every field: each field of each wire type is set
// in at least one fixed value, so a renamed field cannot hide in an
// omitted one.
func TestWireValuesSetEveryField(t *testing.T) {
	set, all := map[string]bool{}, map[string]bool{}
	for _, v := range wireValues() {
		markFields(reflect.ValueOf(v), set, all)
	}
	var missing []string
	for f := range all {
		if !set[f] {
			missing = append(missing, f)
		}
	}
	sort.Strings(missing)
	if len(missing) > 0 || len(all) < 100 {
		t.Errorf("fields never set in the fixed values (of %d): %v", len(all), missing)
	}
}

// leaves are struct types encoded as text.
var leaves = map[reflect.Type]bool{
	reflect.TypeFor[time.Time](): true, reflect.TypeFor[netip.Addr](): true, reflect.TypeFor[netip.Prefix](): true,
}

// markFields records, as Type.Field, every field of every struct reachable
// from v (all), and those that are not zero somewhere (set).
func markFields(v reflect.Value, set, all map[string]bool) {
	switch v.Kind() {
	case reflect.Pointer, reflect.Interface:
		if !v.IsNil() {
			markFields(v.Elem(), set, all)
		}
	case reflect.Slice, reflect.Array:
		for i := range v.Len() {
			markFields(v.Index(i), set, all)
		}
	case reflect.Map:
		for _, k := range v.MapKeys() {
			markFields(v.MapIndex(k), set, all)
		}
	case reflect.Struct:
		if leaves[v.Type()] {
			return
		}
		for i := range v.NumField() {
			f := v.Type().Field(i)
			key := v.Type().Name() + "." + f.Name
			all[key] = true
			if !v.Field(i).IsZero() {
				set[key] = true
			}
			markFields(v.Field(i), set, all)
		}
	}
}

// fixedBackend answers every call with the fixed values and records the
// requests it gets.
type fixedBackend struct {
	mu   sync.Mutex
	got  map[string]any // method → request
	by   Caller
	vals map[string]any
}

func (b *fixedBackend) record(method string, by Caller, req any) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.got[method], b.by = req, by
}

func (b *fixedBackend) device() Device { return b.vals["device"].(Device) }

func (b *fixedBackend) Status(context.Context) (Status, error) { return b.vals["status"].(Status), nil }
func (b *fixedBackend) Devices(context.Context) ([]Device, error) {
	return []Device{b.device()}, nil
}
func (b *fixedBackend) Device(context.Context, string) (Device, error) { return b.device(), nil }
func (b *fixedBackend) Policy(_ context.Context, _ string, withNFT bool) (PolicyView, error) {
	b.record("policy", Caller{}, withNFT)
	return b.vals["policy_view"].(PolicyView), nil
}
func (b *fixedBackend) Events(context.Context, uint64, int) ([]Event, error) {
	return []Event{b.vals["event"].(Event)}, nil
}
func (b *fixedBackend) SubscribeEvents(ctx context.Context) (<-chan Event, error) {
	ch := make(chan Event)
	context.AfterFunc(ctx, func() { close(ch) })
	return ch, nil
}
func (b *fixedBackend) act(name string, by Caller, req ActionRequest) (Device, error) {
	b.record(name, by, req)
	return b.device(), nil
}
func (b *fixedBackend) Approve(_ context.Context, by Caller, _ string, req ActionRequest) (Device, error) {
	return b.act("approve", by, req)
}
func (b *fixedBackend) Reject(_ context.Context, by Caller, _ string, req ActionRequest) (Device, error) {
	return b.act("reject", by, req)
}
func (b *fixedBackend) Quarantine(_ context.Context, by Caller, _ string, req ActionRequest) (Device, error) {
	return b.act("quarantine", by, req)
}
func (b *fixedBackend) Release(_ context.Context, by Caller, _ string, req ActionRequest) (Device, error) {
	return b.act("release", by, req)
}
func (b *fixedBackend) Bind(_ context.Context, by Caller, _ string, req BindRequest) (Device, error) {
	b.record("bind", by, req)
	return b.device(), nil
}
func (b *fixedBackend) AddOverride(_ context.Context, by Caller, _ string, req OverrideRequest) (Overrides, error) {
	b.record("override", by, req)
	return b.vals["overrides"].(Overrides), nil
}
func (b *fixedBackend) ClearOverrides(_ context.Context, by Caller, mac string) error {
	b.record("clear", by, mac)
	return nil
}
func (b *fixedBackend) Violations(_ context.Context, mac string) ([]Violation, error) {
	b.record("violations", Caller{}, mac)
	return []Violation{b.vals["violation"].(Violation)}, nil
}
func (b *fixedBackend) Controllers(context.Context) ([]Controller, error) {
	return []Controller{b.vals["controller"].(Controller)}, nil
}
func (b *fixedBackend) SetController(_ context.Context, by Caller, c Controller) (Controller, error) {
	b.record("controller", by, c)
	return b.vals["controller"].(Controller), nil
}
func (b *fixedBackend) Refresh(_ context.Context, by Caller, mac string) (RefreshResult, error) {
	b.record("refresh", by, mac)
	return b.vals["refresh_result"].(RefreshResult), nil
}
func (b *fixedBackend) Import(_ context.Context, by Caller, req ImportRequest) (ImportResult, error) {
	b.record("import", by, req)
	return b.vals["import_result"].(ImportResult), nil
}

func serveFixed(t *testing.T) (*fixedBackend, *Client) {
	t.Helper()
	b := &fixedBackend{got: map[string]any{}, vals: wireValues()}
	sock := filepath.Join(t.TempDir(), "mudd.sock")
	ln, err := Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- NewServer(b, ServerOptions{}).Serve(ctx, ln) }()
	c := NewClient(sock)
	t.Cleanup(func() {
		c.Close()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return b, c
}

// Every wire value survives the trip through the server and the client
// as it is, answers and requests alike.
func TestWireRoundTrip(t *testing.T) {
	b, c := serveFixed(t)
	ctx := context.Background()
	vals := wireValues()
	same := func(what string, got, want any, err error) {
		t.Helper()
		if err != nil {
			t.Errorf("%s: %v", what, err)
		} else if !reflect.DeepEqual(got, want) {
			t.Errorf("%s: after the round trip\n got %+v\nwant %+v", what, got, want)
		}
	}
	requested := func(method string, want any) {
		t.Helper()
		b.mu.Lock()
		got, by := b.got[method], b.by
		b.mu.Unlock()
		// A change comes with the caller's credentials; a query has none.
		query := method == "policy" || method == "violations"
		if !reflect.DeepEqual(got, want) || by.Known != !query {
			t.Errorf("%s: the backend got %+v from %+v, want %+v", method, got, by, want)
		}
	}
	dev, st := vals["device"].(Device), vals["status"].(Status)

	got, err := c.Status(ctx)
	same("status", got, st, err)
	ds, err := c.Devices(ctx)
	same("devices", ds, []Device{dev}, err)
	d, err := c.Device(ctx, mac1)
	same("device", d, dev, err)
	pv, err := c.Policy(ctx, mac1, true)
	same("policy", pv, vals["policy_view"], err)
	requested("policy", true)
	es, err := c.Events(ctx, EventsQuery{})
	same("events", es, []Event{vals["event"].(Event)}, err)

	action := vals["action_request"].(ActionRequest)
	for name, call := range map[string]func(context.Context, string, ActionRequest) (Device, error){
		"approve": c.Approve, "reject": c.Reject, "quarantine": c.Quarantine, "release": c.Release,
	} {
		d, err := call(ctx, mac1, action)
		same(name, d, dev, err)
		requested(name, action)
	}
	bind := vals["bind_request"].(BindRequest)
	d, err = c.Bind(ctx, mac1, bind)
	same("bind", d, dev, err)
	requested("bind", bind)
	for _, name := range []string{"override_request", "override_request_dns"} {
		req := vals[name].(OverrideRequest)
		o, err := c.AddOverride(ctx, mac1, req)
		same(name, o, vals["overrides"], err)
		requested("override", req)
	}
	same("clear overrides", nil, nil, c.ClearOverrides(ctx, mac1))
	requested("clear", mac1)
	for _, m := range []string{mac1, ""} {
		vs, err := c.Violations(ctx, m)
		same("violations", vs, []Violation{vals["violation"].(Violation)}, err)
		requested("violations", m)
	}
	cs, err := c.Controllers(ctx)
	same("controllers", cs, []Controller{vals["controller"].(Controller)}, err)
	ctl, err := c.SetController(ctx, vals["controller_request"].(ControllerRequest))
	same("set controller", ctl, vals["controller"], err)
	requested("controller", Controller{URI: url1, Kind: KindMyController,
		Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.123/32"), netip.MustParsePrefix("2001:db8::/64")}})
	r, err := c.Refresh(ctx, mac1)
	same("refresh", r, vals["refresh_result"], err)
	requested("refresh", mac1)
	imp := vals["import_request"].(ImportRequest)
	res, err := c.Import(ctx, imp)
	same("import", res, vals["import_result"], err)
	requested("import", imp)
}
