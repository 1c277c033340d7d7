package manager_test

import (
	"context"
	"encoding/json"
	"errors"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/manager"
)

// The control API end to end over its unix socket, served by the manager
// through api.NewManagerBackend: what mudctl shows and does.
func TestAPIOverSocket(t *testing.T) {
	m := manager.EnforcedCamera(t)
	bg := context.Background()
	sock := filepath.Join(t.TempDir(), "mudd.sock")
	ln, err := api.Listen(sock, "")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(bg)
	done := make(chan error, 1)
	go func() { done <- api.NewServer(api.NewManagerBackend(m), api.ServerOptions{}).Serve(ctx, ln) }()
	defer func() { cancel(); <-done }()
	c := api.NewClient(sock)
	defer c.Close()
	mac := manager.CameraMAC

	devs, err := c.Devices(bg)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(devs)
	var raw []map[string]any
	if err := json.Unmarshal(b, &raw); err != nil || len(raw) != 1 {
		t.Fatalf("devices: %s (%v)", b, err)
	}
	for k, want := range map[string]any{"mac": mac, "state": "enforced", "enforcement": "enforced", "mud_url_source": "dhcpv4"} {
		if raw[0][k] != want {
			t.Errorf("devices JSON %q = %v, want %v: %s", k, raw[0][k], want, b)
		}
	}
	if mud, _ := raw[0]["mud"].(map[string]any); mud == nil || mud["signature"] != "valid" || mud["mfg_name"] == nil {
		t.Errorf("devices JSON mud: %s", b)
	}

	// Following the event log through the adapter's relay.
	evs := make(chan api.Event, 16)
	followed := make(chan error, 1)
	fctx, stopFollow := context.WithCancel(bg)
	go func() {
		followed <- c.FollowEvents(fctx, api.EventsQuery{Tail: 1}, func(e api.Event) error { evs <- e; return nil })
	}()
	<-evs // the backlog's last event: the subscription is in place

	o, err := c.AddOverride(bg, mac, api.OverrideRequest{Verdict: api.Deny, Peer: "198.51.100.7", Protocol: "tcp", Port: "443", Comment: "old cloud"})
	if err != nil || len(o.Rules) != 1 || o.Rules[0].By == "" || o.Rules[0].Peer.String() != "198.51.100.7/32" ||
		o.Rules[0].Protocol != "tcp" || o.Rules[0].Port != "443" || !strings.Contains(o.Rules[0].Text, "198.51.100.7") {
		t.Fatalf("AddOverride: %+v %v", o, err)
	}
	select {
	case e := <-evs:
		if e.Kind != "override-added" || e.MAC != mac {
			t.Errorf("followed event %+v, want override-added", e)
		}
	case <-time.After(5 * time.Second):
		t.Error("the override's event was not followed")
	}
	stopFollow()
	if err := <-followed; !errors.Is(err, context.Canceled) {
		t.Errorf("FollowEvents: %v", err)
	}

	pv, err := c.Policy(bg, mac, true)
	if err != nil {
		t.Fatal(err)
	}
	first := pv.FromDevice.Rules[0]
	if !first.Override || first.Name != "override/1" || first.Verdict != api.Drop || first.Rule.Peer.Kind != api.PeerPrefix ||
		first.Rule.Family != api.FamilyIPv4 || first.Rule.Protocol != "tcp" {
		t.Errorf("policy view's first rule: %+v", first)
	}
	if len(pv.FromDevice.Rules) < 2 || !strings.Contains(pv.NFT, "go on to allow_out") || pv.FromDevice.Dropped.Packets != 3 ||
		pv.CountersAt.IsZero() || pv.State != api.StateEnforced {
		t.Errorf("policy view: %+v", pv)
	}
	if _, err := c.Approve(bg, mac, api.ActionRequest{}); !errors.Is(err, api.ErrConflict) {
		t.Errorf("approve of an enforced device: %v, want ErrConflict", err)
	}
	if _, err := c.Device(bg, "02:00:00:00:09:09"); !errors.Is(err, api.ErrNotFound) {
		t.Errorf("unknown device: %v, want ErrNotFound", err)
	}
	if _, err := c.Import(bg, api.ImportRequest{File: []byte(`{"not":"mud"}`)}); !errors.Is(err, api.ErrInvalid) {
		t.Errorf("import of a non-MUD file: %v, want ErrInvalid", err)
	}
	st, err := c.Status(bg)
	if err != nil || st.DevicesByState[api.StateEnforced] != 1 || st.PoliciesInstalled != 1 || !st.Enforcer.Healthy {
		t.Errorf("status %+v %v", st, err)
	}
	ctl, err := c.SetController(bg, api.ControllerRequest{URI: "urn:ietf:params:mud:ntp", Addrs: []string{"192.0.2.123"}})
	if err != nil || ctl.Kind != api.KindController || ctl.Source != "mudctl" || ctl.UpdatedAt.IsZero() {
		t.Errorf("SetController: %+v %v", ctl, err)
	}
	d, err := c.Quarantine(bg, mac, api.ActionRequest{Reason: "scanning"})
	if err != nil || d.State != api.StateQuarantined || d.Quarantine == nil || d.Quarantine.Reason != "scanning" ||
		len(d.Overrides) != 1 || d.Overrides[0].Comment != "old cloud" {
		t.Errorf("Quarantine: %+v %v", d, err)
	}
}
