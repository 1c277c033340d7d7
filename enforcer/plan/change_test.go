package plan

import (
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// testPolicy is an allow-only policy with ports (pointers in its rules).
func testPolicy(id string) policy.Policy {
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	return policy.Policy{ID: id, MUDURL: "https://vendor.example/" + id,
		FromDevice: []policy.Rule{{Name: "fr/cloud", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept}},
		ToDevice:   []policy.Rule{{Name: "to/cloud", Peer: cloud, Protocol: policy.ProtoTCP, SrcPort: u16(443), Verdict: policy.Accept}}}
}

func testDevice(n byte, pol string) Device {
	return Device{MAC: net.HardwareAddr{2, 0, 0, 0, 0, n}, PolicyID: pol,
		IPv4s: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, n})}}
}

// installed is a planner whose first plan is committed.
func installed(t *testing.T, cfg Config, d Desired) (*Planner, *Tables) {
	t.Helper()
	pl := New(cfg)
	k := NewTables()
	commit(t, pl, k, func() (*Plan, error) { return pl.Replace(d, t0) })
	return pl, k
}

func commit(t *testing.T, pl *Planner, k *Tables, mk func() (*Plan, error)) *Plan {
	t.Helper()
	p, err := mk()
	if err != nil {
		t.Fatal(err)
	}
	if err := k.Apply(p); err != nil {
		t.Fatalf("the kernel refuses the plan: %v\n%s", err, p)
	}
	if err := pl.Commit(p); err != nil {
		t.Fatal(err)
	}
	return p
}

func flowsText(f Flows) string {
	var s []string
	for _, m := range f.MACs {
		s = append(s, m.String())
	}
	for _, a := range f.Addrs {
		s = append(s, a.String())
	}
	slices.Sort(s)
	return strings.Join(s, " ")
}

// A policy handed over again, equal but freshly compiled (other pointers),
// is no change: no element, no chain, no flow ends. A policy whose rules
// changed ends the flows of the devices using it.
func TestSamePolicyEndsNoFlows(t *testing.T) {
	pl, k := installed(t, goldenConfig(), Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p"), testDevice(2, "p")},
		Peers: map[string][]Element{"dns:cloud.example": {addr("198.51.100.1", time.Hour)}}})
	p := commit(t, pl, k, func() (*Plan, error) { return pl.Update(Update{SetPolicies: []policy.Policy{testPolicy("p")}}, t0) })
	if !p.Empty() || flowsText(p.EndFlows) != "" {
		t.Errorf("an equal policy planned:\n%s", p)
	}
	changed := testPolicy("p")
	changed.FromDevice[0].DstPort = u16(8443)
	p = commit(t, pl, k, func() (*Plan, error) { return pl.Update(Update{SetPolicies: []policy.Policy{changed}}, t0) })
	if got, want := flowsText(p.EndFlows), "02:00:00:00:00:01 02:00:00:00:00:02 192.0.2.1 192.0.2.2"; got != want {
		t.Errorf("flows ended: %q, want %q", got, want)
	}
	if p.Empty() {
		t.Error("a changed policy planned nothing")
	}
}

// A device readdressed keeps its flows except those of the address it
// lost; a device moved to another mode loses all.
func TestEndFlowsOfChangedDevices(t *testing.T) {
	pl, k := installed(t, goldenConfig(), Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p")}})
	d := testDevice(1, "p")
	d.IPv4s = []netip.Addr{netip.MustParseAddr("192.0.2.100")}
	p := commit(t, pl, k, func() (*Plan, error) { return pl.Update(Update{UpsertDevices: []Device{d}}, t0) })
	if got := flowsText(p.EndFlows); got != "02:00:00:00:00:01 192.0.2.1" {
		t.Errorf("readdressed: flows ended %q", got)
	}
	d.Mode = Quarantine
	p = commit(t, pl, k, func() (*Plan, error) { return pl.Update(Update{UpsertDevices: []Device{d}}, t0) })
	if got := flowsText(p.EndFlows); got != "02:00:00:00:00:01 192.0.2.100" {
		t.Errorf("quarantined: flows ended %q", got)
	}
	p = commit(t, pl, k, func() (*Plan, error) { return pl.Update(Update{RemoveDevices: []net.HardwareAddr{d.MAC}}, t0) })
	if got := flowsText(p.EndFlows); got != "02:00:00:00:00:01 192.0.2.100" {
		t.Errorf("removed: flows ended %q", got)
	}
}

// After a restart, a device the kernel already held with the value it
// gets now keeps its flows; a device it held otherwise, or not at all,
// loses them. With conntrack for bridged traffic there are no remembered
// flows to forget (no MACs).
func TestInheritedDevicesKeepTheirFlows(t *testing.T) {
	d := Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p"), testDevice(2, "p"), testDevice(3, "p")}}
	cfg := goldenConfig()
	cfg.BridgeConntrack = true
	pl := New(cfg)
	pl.Inherit(map[MACKey]Elem{
		{2, 0, 0, 0, 0, 1}: {Key: MACKey{2, 0, 0, 0, 0, 1}, Mark: firstDispatchID},
		{2, 0, 0, 0, 0, 2}: {Key: MACKey{2, 0, 0, 0, 0, 2}, Mark: firstDispatchID + 1},
	})
	p, err := pl.Replace(d, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got := flowsText(p.EndFlows); got != "192.0.2.2 192.0.2.3" {
		t.Errorf("flows ended after a restart: %q, want those of devices 2 and 3", got)
	}
}

// Sync of the installed state plans nothing; of a state with one changed
// device, that device's elements only; of a state without a policy and its
// device, their removal.
func TestSyncPlansTheDifference(t *testing.T) {
	cloud := map[string][]Element{"dns:cloud.example": {addr("198.51.100.1", time.Hour)}}
	d := Desired{Policies: []policy.Policy{testPolicy("p"), testPolicy("q")}, Devices: []Device{testDevice(1, "p"), testDevice(2, "q")}, Peers: cloud}
	pl, k := installed(t, goldenConfig(), d)
	// The same state half a second later: the TTLs moved by half a second.
	p := commit(t, pl, k, func() (*Plan, error) { return pl.Sync(d, t0.Add(500*time.Millisecond)) })
	if !p.Empty() {
		t.Errorf("Sync of the installed state planned:\n%s", p)
	}
	d.Devices[0].IPv4s = []netip.Addr{netip.MustParseAddr("192.0.2.50")}
	p = commit(t, pl, k, func() (*Plan, error) { return pl.Sync(d, t0) })
	for _, l := range strings.Split(strings.TrimSpace(p.String()), "\n") {
		if !strings.Contains(l, "192.0.2.1") && !strings.Contains(l, "192.0.2.50") && !strings.HasPrefix(l, "#") {
			t.Errorf("Sync of one readdressed device planned %q", l)
		}
	}
	d = Desired{Policies: d.Policies[:1], Devices: d.Devices[:1], Peers: cloud}
	p = commit(t, pl, k, func() (*Plan, error) { return pl.Sync(d, t0) })
	if s := p.String(); !strings.Contains(s, "delete element inet mud from_dev { 02:00:00:00:00:02 }") || !strings.Contains(s, "delete element inet mud acl_out { 0x00000011 ") {
		t.Errorf("Sync without policy q and its device planned:\n%s", s)
	}
	if _, ok := pl.Policy("q"); ok {
		t.Error("policy q still installed")
	}
}

// A plan that is not committed (the kernel refused it) leaves the planner
// as it was: the next plan is what it would have been without it. Only
// the latest plan can be committed, once.
func TestUncommittedPlanChangesNothing(t *testing.T) {
	d := Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p")}}
	pl, _ := installed(t, goldenConfig(), d)
	ref, _ := installed(t, goldenConfig(), d)
	rejected, err := pl.Update(Update{SetPolicies: []policy.Policy{testPolicy("q")}, UpsertDevices: []Device{testDevice(2, "q")},
		RemoveDevices: []net.HardwareAddr{testDevice(1, "").MAC}}, t0)
	if err != nil {
		t.Fatal(err)
	}
	u := Update{UpsertDevices: []Device{testDevice(3, "p")}}
	got, err := pl.Update(u, t0)
	if err != nil {
		t.Fatal(err)
	}
	want, _ := ref.Update(u, t0)
	if got.String() != want.String() {
		t.Errorf("after a rejected plan:\n%s\nwant:\n%s", got, want)
	}
	if err := pl.Commit(rejected); !errors.Is(err, ErrStalePlan) {
		t.Errorf("committing an older plan: %v", err)
	}
	if err := pl.Commit(got); err != nil {
		t.Fatal(err)
	}
	if err := pl.Commit(got); !errors.Is(err, ErrStalePlan) {
		t.Errorf("committing a plan twice: %v", err)
	}
}

// Invalid changes are refused before anything is planned.
func TestRefusedChanges(t *testing.T) {
	pl, _ := installed(t, goldenConfig(), Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p")}})
	other := testDevice(2, "p")
	other.IPv4s = testDevice(1, "").IPv4s
	twin := testDevice(3, "p")
	twin.IPv4s = testDevice(2, "").IPv4s
	for _, c := range []struct {
		u    Update
		want string
	}{
		{Update{UpsertDevices: []Device{testDevice(2, "nosuch")}}, `policy "nosuch" is not installed`},
		{Update{UpsertDevices: []Device{other}}, "still bound to device 02:00:00:00:00:01"},
		{Update{UpsertDevices: []Device{testDevice(2, "p"), twin}}, "bound to both"},
		{Update{RemovePolicies: []string{"p"}}, "device 02:00:00:00:00:01 still uses it"},
		{Update{SetPolicies: []policy.Policy{{}}}, "empty ID"},
		{Update{UpsertDevices: []Device{{MAC: net.HardwareAddr{1, 2}}}}, "not an Ethernet address"},
		{Update{UpsertDevices: []Device{{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 9}}}}, "enforce mode needs a policy"},
		{Update{SetPeers: map[string][]Element{"dns:x.example": {{Prefix: netip.MustParsePrefix("192.0.2.0/24")}}}}, "not a single address"},
		{Update{SetPeers: map[string][]Element{"dns:x.example": {{}}}}, "invalid prefix"},
	} {
		if _, err := pl.Update(c.u, t0); err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%+v: error %v, want %q", c.u, err, c.want)
		}
	}
}

// When br_netfilter's settings change, the next plan replaces the fixed
// chains that depend on them, and nothing else.
func TestBridgeNFChangeReplacesFixedChains(t *testing.T) {
	pl, k := installed(t, goldenConfig(), Desired{Policies: []policy.Policy{testPolicy("p")}, Devices: []Device{testDevice(1, "p")}})
	pl.SetBridgeNF(BridgeNF{Inet: [2]bool{true, true}})
	if !pl.Stale() {
		t.Fatal("not stale after a change of br_netfilter's settings")
	}
	p := commit(t, pl, k, func() (*Plan, error) { return pl.Refresh(t0) })
	if p.Rebuild() || len(p.AddElems)+len(p.DelElems) != 0 {
		t.Errorf("a change of br_netfilter's settings planned more than chains:\n%s", p)
	}
	if s := p.String(); !strings.Contains(s, "add chain bridge mud to_inet") || !strings.Contains(s, "flush chain bridge mud forward") {
		t.Errorf("the bridge table does not leave IP to the inet table:\n%s", s)
	}
	if p := commit(t, pl, k, func() (*Plan, error) { return pl.Refresh(t0) }); !p.Empty() {
		t.Errorf("a second refresh planned:\n%s", p)
	}
	pl.Invalidate()
	if p := commit(t, pl, k, func() (*Plan, error) { return pl.Refresh(t0) }); !p.Rebuild() {
		t.Error("a refresh after Invalidate does not rebuild")
	}
}
