package api_test

import (
	"context"
	"errors"
	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
	"net"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/store"
)

// TestClientRoundTrip calls every client method through the real server.
func TestClientRoundTrip(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	c, ctx := ts.client, context.Background()

	st, err := c.Status(ctx)
	if err != nil || st.Version != "test" || st.Devices != 2 || st.DevicesByState[api.StatePendingApproval] != 1 ||
		!st.Enforcer.Healthy || len(st.Enforcer.Tables) != 2 {
		t.Fatalf("Status: %+v %v", st, err)
	}
	ds, err := c.Devices(ctx)
	if err != nil || len(ds) != 2 || ds[0].MAC != apitest.MACEnforced || ds[0].IPs[1] != netip.MustParseAddr("2001:db8::10") {
		t.Fatalf("Devices: %+v %v", ds, err)
	}
	d, err := c.Device(ctx, "02:00:00:00:00:01")
	if err != nil || d.MUD == nil || d.MUD.ModelName != "Bulb 2000" || d.MUD.IsSupported == nil || !*d.MUD.IsSupported {
		t.Fatalf("Device: %+v %v", d, err)
	}
	p, err := c.Policy(ctx, apitest.MACEnforced, true)
	if err != nil || p.PolicyID != "p1" || len(p.FromDevice.Rules) != 1 || p.FromDevice.Rules[0].Packets != 7 ||
		!strings.Contains(p.FromDevice.Rules[0].Text, "443") || p.NFT == "" || p.FromDevice.Dropped.Packets != 3 {
		t.Fatalf("Policy: %+v %v", p, err)
	}
	if p, err = c.Policy(ctx, apitest.MACEnforced, false); err != nil || p.NFT != "" {
		t.Fatalf("Policy without nft: %+v %v", p, err)
	}

	if d, err = c.Approve(ctx, apitest.MACPending, api.ActionRequest{Reason: "ok", AllWithURL: true}); err != nil || d.State != api.StateEnforced {
		t.Fatalf("Approve: %+v %v", d, err)
	}
	if _, err = c.Reject(ctx, apitest.MACPending, api.ActionRequest{}); !errors.Is(err, api.ErrConflict) {
		t.Fatalf("Reject of an approved device: %v", err)
	}
	if d, err = c.Quarantine(ctx, apitest.MACEnforced, api.ActionRequest{Reason: "port scan"}); err != nil ||
		d.State != api.StateQuarantined || d.Quarantine == nil || d.Quarantine.Reason != "port scan" {
		t.Fatalf("Quarantine: %+v %v", d, err)
	}
	if d, err = c.Release(ctx, apitest.MACEnforced, api.ActionRequest{}); err != nil || d.Quarantine != nil {
		t.Fatalf("Release: %+v %v", d, err)
	}
	if d, err = c.Bind(ctx, apitest.MACPending, api.BindRequest{MUDURL: "https://cam.example.net/v2.json"}); err != nil || d.URLSource != api.SourceAdminBind {
		t.Fatalf("Bind: %+v %v", d, err)
	}
	o, err := c.AddOverride(ctx, apitest.MACEnforced, api.OverrideRequest{Verdict: "deny", Peer: "2001:db8::/32", Protocol: "udp", Port: "5000-5100"})
	if err != nil || len(o.Rules) != 1 || o.Rules[0].Verdict != api.Deny || o.Rules[0].Peer != netip.MustParsePrefix("2001:db8::/32") ||
		o.Rules[0].Port != "5000-5100" || o.Rules[0].Protocol != "udp" || o.Rules[0].By == "" || o.Rules[0].Text == "" {
		t.Fatalf("AddOverride: %+v %v", o, err)
	}
	if p, err = c.Policy(ctx, apitest.MACEnforced, false); err != nil || len(p.FromDevice.Rules) != 2 || !p.FromDevice.Rules[0].Override {
		t.Fatalf("Policy with override first: %+v %v", p, err)
	}
	if err = c.ClearOverrides(ctx, apitest.MACEnforced); err != nil {
		t.Fatalf("ClearOverrides: %v", err)
	}
	if d, _ = c.Device(ctx, apitest.MACEnforced); len(d.Overrides) != 0 {
		t.Fatalf("overrides after clear: %+v", d.Overrides)
	}
	ctl, err := c.SetController(ctx, api.ControllerRequest{URI: "urn:ietf:params:mud:dns", Addrs: []string{"192.0.2.53"}})
	if err != nil || ctl.Kind != api.KindController || ctl.Prefixes[0] != netip.MustParsePrefix("192.0.2.53/32") {
		t.Fatalf("SetController: %+v %v", ctl, err)
	}
	cs, err := c.Controllers(ctx)
	if err != nil || len(cs) != 1 || cs[0].Source != "mudctl" {
		t.Fatalf("Controllers: %+v %v", cs, err)
	}
	if r, err := c.Refresh(ctx, ""); err != nil || r.Devices != 2 {
		t.Fatalf("Refresh all: %+v %v", r, err)
	}
	if r, err := c.Refresh(ctx, apitest.MACEnforced); err != nil || r.Devices != 1 {
		t.Fatalf("Refresh one: %+v %v", r, err)
	}
	file := []byte(`{"ietf-mud:mud":{"mud-url":"https://x.example/m.json"}}`)
	res, err := c.Import(ctx, api.ImportRequest{File: file, Signature: []byte{1, 2, 3}})
	if err != nil || res.MUDURL != "https://x.example/m.json" || res.Digest != store.Digest(file) || res.Signature != api.SignatureValid {
		t.Fatalf("Import: %+v %v", res, err)
	}
	es, err := c.Events(ctx, api.EventsQuery{})
	if err != nil || len(es) != 3 { // approve, quarantine, release
		t.Fatalf("Events: %+v %v", es, err)
	}
	if es, err = c.Events(ctx, api.EventsQuery{Since: 1, Limit: 1}); err != nil || len(es) != 1 || es[0].Seq != 2 {
		t.Fatalf("Events since 1 limit 1: %+v %v", es, err)
	}
	if es, err = c.Events(ctx, api.EventsQuery{Tail: 1}); err != nil || len(es) != 1 || es[0].Seq != 3 {
		t.Fatalf("Events tail 1: %+v %v", es, err)
	}
}

func TestClientErrorsIs(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	c, ctx := ts.client, context.Background()
	_, err := c.Device(ctx, apitest.MACUnknown)
	if !errors.Is(err, api.ErrNotFound) || errors.Is(err, api.ErrConflict) || !strings.Contains(err.Error(), apitest.MACUnknown) {
		t.Errorf("unknown device: %v", err)
	}
	if _, err := c.Device(ctx, "not-a-mac"); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("bad MAC: %v", err)
	}
	if _, err := c.Release(ctx, apitest.MACEnforced, api.ActionRequest{}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("release without quarantine: %v", err)
	}
	if _, err := c.AddOverride(ctx, apitest.MACEnforced, api.OverrideRequest{Verdict: "allow", Protocol: "sctp"}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("bad override: %v", err)
	}
	if _, err := c.Import(ctx, api.ImportRequest{File: make([]byte, api.DefaultMaxImport)}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("oversize import: %v", err)
	}
	var apiErr *api.Error
	if _, err := c.Approve(ctx, apitest.MACUnknown, api.ActionRequest{}); !errors.As(err, &apiErr) || apiErr.Status != 404 {
		t.Errorf("Approve unknown: %v", err)
	}
}

func TestClientUnavailable(t *testing.T) {
	dir := t.TempDir()
	missing := filepath.Join(dir, "missing.sock")
	_, err := api.NewClient(missing).Status(context.Background())
	if !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "is mudd running?") || !strings.Contains(err.Error(), missing) {
		t.Errorf("missing socket: %v", err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: stale, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	_, err = api.NewClient(stale).Devices(context.Background())
	if !errors.Is(err, api.ErrUnavailable) || !strings.Contains(err.Error(), "nothing answers") {
		t.Errorf("stale socket: %v", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if _, err := api.NewClient(missing).Status(ctx); !errors.Is(err, context.Canceled) {
		t.Errorf("cancelled: %v", err)
	}
}

func TestOverrideRequestValidate(t *testing.T) {
	good := []api.OverrideRequest{
		{Verdict: "allow"},
		{Verdict: "allow", Peer: "::ffff:192.0.2.1", Protocol: "ICMP"},
		{Verdict: "deny", Direction: "to-device", Peer: "10.0.0.0/8", Protocol: "6", Port: "22"},
		{Verdict: "allow", DNSName: "time.example.org", Protocol: "udp", Port: "123-124"},
	}
	for _, r := range good {
		if err := r.Validate(); err != nil {
			t.Errorf("%+v: %v", r, err)
		}
	}
	o, _ := good[1].Override()
	if o.Peer != netip.MustParsePrefix("192.0.2.1/32") || o.Protocol != "icmp" || o.Direction != api.FromDevice {
		t.Errorf("mapped v4 not unmapped, or names not canonical: %+v", o)
	}
	if o, _ := good[2].Override(); o.Protocol != "tcp" || o.Port != "22" || o.Direction != api.ToDevice || o.Verdict != api.Deny {
		t.Errorf("protocol number not named: %+v", o)
	}
	bad := []api.OverrideRequest{
		{},
		{Verdict: "accept"},
		{Verdict: "allow", Direction: "sideways"},
		{Verdict: "allow", Peer: "192.0.2.1", DNSName: "x.example"},
		{Verdict: "allow", DNSName: "bad name"},
		{Verdict: "allow", Protocol: "256"},
		{Verdict: "allow", Protocol: "tcp", Port: "0"},
		{Verdict: "allow", Protocol: "tcp", Port: "9-8"},
		{Verdict: "allow", Protocol: "tcp", Port: "65536"},
		{Verdict: "allow", Protocol: "icmp", Port: "80"},
		{Verdict: "allow", Peer: "fe80::1%eth0"},
		{Verdict: "allow", Comment: strings.Repeat("c", 1025)},
	}
	for _, r := range bad {
		if err := r.Validate(); !errors.Is(err, api.ErrInvalid) {
			t.Errorf("%+v: %v, want api.ErrInvalid", r, err)
		}
	}
}
