package plan

import (
	"flag"
	"fmt"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
)

// Golden plans: for representative MUD files and situations, the plans a
// planner makes, step by step, as nft text, in ../testdata/plans. A change
// to the layout or the diff shows there as a readable difference; run
//
//	go test ./enforcer/plan/ -run TestGoldenPlans -update
//
// to rewrite them after a deliberate one.

var update = flag.Bool("update", false, "rewrite the golden plans in ../testdata/plans")

// compiled is a MUD file compiled as mudd does.
func compiled(t *testing.T, path string) policy.Policy {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res := mudfile.Parse(b)
	if !res.Valid() {
		t.Fatalf("%s: %v", path, res.Findings)
	}
	p, err := policy.Compile(res.File, policy.Context{})
	if err != nil {
		t.Fatal(err)
	}
	p.ID = strings.TrimSuffix(filepath.Base(path), ".json")
	return *p
}

func goldenDevice(n byte, pol string) Device {
	return Device{MAC: net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, n}, PolicyID: pol,
		IPv4s: []netip.Addr{netip.AddrFrom4([4]byte{192, 0, 2, 10 + n})},
		IPv6s: []netip.Addr{netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%d", n))}}
}

func addr(s string, ttl time.Duration) Element {
	a := netip.MustParseAddr(s)
	return Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: ttl}
}

// appA are the addresses of the RFC 8520 App. A controllers.
var appA = map[string][]Element{
	"controller:urn:ietf:params:mud:dns": {{Prefix: netip.MustParsePrefix("192.0.2.1/32")}, {Prefix: netip.MustParsePrefix("2001:db8::1/128")}},
	"controller:urn:ietf:params:mud:ntp": {{Prefix: netip.MustParsePrefix("192.0.2.123/32")}},
}

func peers(extra map[string][]Element) map[string][]Element {
	out := map[string][]Element{}
	for k, v := range appA {
		out[k] = v
	}
	for k, v := range extra {
		out[k] = v
	}
	return out
}

type goldenStep struct {
	what  string
	after time.Duration // time passed since the previous step
	plan  func(pl *Planner, now time.Time) (*Plan, error)
	// render, if set, renders a device as installed instead
	render net.HardwareAddr
}

func replaceStep(what string, d Desired) goldenStep {
	return goldenStep{what: what, plan: func(pl *Planner, now time.Time) (*Plan, error) { return pl.Replace(d, now) }}
}

func updateStep(what string, after time.Duration, u Update) goldenStep {
	return goldenStep{what: what, after: after, plan: func(pl *Planner, now time.Time) (*Plan, error) { return pl.Update(u, now) }}
}

func goldenConfig() Config {
	return Config{Priority: -5, BridgePriority: -205, LogGroup: 1, BridgeFlows: DefaultBridgeFlows, Destroy: true}
}

func TestGoldenPlans(t *testing.T) {
	bulb := compiled(t, "../../mudfile/testdata/base.json") // RFC 8520 §9
	bulb.ID = "lightbulb2000"
	thermo := compiled(t, "../testdata/mud/thermostat.json")
	cam := compiled(t, "../testdata/mud/camera.json")
	camAllow := cam
	camAllow.FromDevice = cam.FromDevice[1:] // without the drop: allow-only
	lamp1, lamp2 := goldenDevice(1, bulb.ID), goldenDevice(2, bulb.ID)
	th1, th2 := goldenDevice(3, thermo.ID), goldenDevice(4, thermo.ID)
	cam1 := goldenDevice(5, cam.ID)
	withOverrides := lamp1
	withOverrides.Overrides = Overrides{
		FromDevice: []policy.Rule{{Name: "override/1", Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("198.51.100.0/24")},
			Protocol: policy.ProtoTCP, DstPort: u16(22), Verdict: policy.Accept}},
		ToDevice: []policy.Rule{{Name: "override/2", Peer: policy.Peer{Kind: policy.DNSName, Value: "admin.example"},
			Protocol: policy.ProtoTCP, DstPort: u16(22), Verdict: policy.Accept}},
	}
	bulbPeers := peers(map[string][]Element{"dns:test.example.com": {addr("2001:db8::80", time.Hour)}})
	quarantined, blocked := lamp1, lamp1
	quarantined.Mode, blocked.Mode = Quarantine, Block
	direct := goldenConfig()
	direct.DirectDispatch = true
	cases := []struct {
		name  string
		cfg   Config
		steps []goldenStep
	}{
		{"lightbulb", goldenConfig(), []goldenStep{
			replaceStep("the RFC 8520 §9 light bulb, one device, the addresses of its name and of the App. A controllers",
				Desired{Policies: []policy.Policy{bulb}, Devices: []Device{lamp1}, Peers: bulbPeers}),
			updateStep("the name resolves to another address: address elements only", time.Minute,
				Update{SetPeers: map[string][]Element{"dns:test.example.com": {addr("2001:db8::81", time.Hour)}}}),
			updateStep("a second light bulb: its device elements only", time.Second, Update{UpsertDevices: []Device{lamp2}}),
			updateStep("the first light bulb leaves: its elements go, its flows end", time.Second, Update{RemoveDevices: []net.HardwareAddr{lamp1.MAC}}),
			{what: "the second light bulb as installed", render: lamp2.MAC},
		}},
		{"same-manufacturer", goldenConfig(), []goldenStep{
			replaceStep("a thermostat whose MUD file allows its vendor's cloud and devices of the same manufacturer",
				Desired{Policies: []policy.Policy{thermo}, Devices: []Device{th1}, Peers: peers(map[string][]Element{
					"dns:cloud.vendor.example":    {addr("203.0.113.80", 5*time.Minute)},
					"manufacturer:vendor.example": {{Prefix: netip.PrefixFrom(th1.IPv4s[0], 32)}},
				})}),
			updateStep("a second thermostat: its elements, and its address joins the manufacturer's", time.Second, Update{
				UpsertDevices: []Device{th2},
				SetPeers: map[string][]Element{"manufacturer:vendor.example": {
					{Prefix: netip.PrefixFrom(th1.IPv4s[0], 32)}, {Prefix: netip.PrefixFrom(th2.IPv4s[0], 32)}}},
			}),
		}},
		{"drops", goldenConfig(), []goldenStep{
			replaceStep("a camera whose MUD file drops DNS to one name before it allows its stream: an ordered chain",
				Desired{Policies: []policy.Policy{cam}, Devices: []Device{cam1}, Peers: peers(map[string][]Element{
					"dns:stream.cams.example":   {addr("203.0.113.20", time.Hour)},
					"dns:resolver.cams.example": {addr("203.0.113.53", time.Hour)},
				})}),
			updateStep("the dropped name's address changes: elements only", time.Minute, Update{SetPeers: map[string][]Element{
				"dns:resolver.cams.example": {addr("203.0.113.54", time.Hour)}}}),
			updateStep("a new version of the file without the drop: the chain goes, elements come, the camera's flows end", time.Minute,
				Update{SetPolicies: []policy.Policy{camAllow}}),
		}},
		{"quarantine-and-block", goldenConfig(), []goldenStep{
			replaceStep("a light bulb, enforced", Desired{Policies: []policy.Policy{bulb}, Devices: []Device{lamp1}, Peers: bulbPeers}),
			updateStep("quarantined: the fixed quarantine id, the cage", time.Second, Update{UpsertDevices: []Device{quarantined}}),
			updateStep("blocked, waiting for approval", time.Second, Update{UpsertDevices: []Device{blocked}}),
			updateStep("approved: enforced again", time.Second, Update{UpsertDevices: []Device{lamp1}}),
		}},
		{"overrides", goldenConfig(), []goldenStep{
			replaceStep("a light bulb an administrator lets SSH in and out: its own chains and dispatch id before the policy",
				Desired{Policies: []policy.Policy{bulb}, Devices: []Device{withOverrides}, Peers: peers(map[string][]Element{
					"dns:test.example.com": {addr("2001:db8::80", time.Hour)},
					"dns:admin.example":    {addr("198.51.100.22", time.Hour)},
				})}),
			{what: "the light bulb as installed", render: lamp1.MAC},
			updateStep("the overrides removed: back to the policy's id", time.Second, Update{UpsertDevices: []Device{lamp1}}),
		}},
		{"direct-dispatch", direct, []goldenStep{
			replaceStep("direct dispatch (no secmark): device maps are verdict maps, every policy a chain",
				Desired{Policies: []policy.Policy{bulb}, Devices: []Device{lamp1}, Peers: bulbPeers}),
			updateStep("a second light bulb: jump elements", time.Second, Update{UpsertDevices: []Device{lamp2}}),
		}},
		{"shared-address", goldenConfig(), []goldenStep{
			replaceStep("a light bulb and a thermostat whose names resolve to different addresses",
				Desired{Policies: []policy.Policy{bulb, thermo}, Devices: []Device{lamp1, th1}, Peers: peers(map[string][]Element{
					"dns:test.example.com":     {addr("2001:db8::80", time.Hour)},
					"dns:cloud.vendor.example": {addr("2001:db8::90", time.Hour)},
				})}),
			updateStep("both names on one CDN address: a group of two peers appears, bound to both policies", time.Minute, Update{SetPeers: map[string][]Element{
				"dns:cloud.vendor.example": {addr("2001:db8::80", time.Hour)}}}),
			updateStep("the thermostat's name moves away: the group vanishes", time.Minute, Update{SetPeers: map[string][]Element{
				"dns:cloud.vendor.example": {addr("2001:db8::91", time.Hour)}}}),
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			pl := New(c.cfg)
			kernel := NewTables()
			now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
			var b strings.Builder
			b.WriteString("# Plans of the planner, step by step (enforcer/plan, TestGoldenPlans).\n")
			for _, st := range c.steps {
				b.WriteString("\n## " + st.what + "\n")
				if st.render != nil {
					text, err := pl.RenderDevice(st.render)
					if err != nil {
						t.Fatal(err)
					}
					b.WriteString(text)
					continue
				}
				now = now.Add(st.after)
				p, err := st.plan(pl, now)
				if err != nil {
					t.Fatalf("%s: %v", st.what, err)
				}
				if err := kernel.Apply(p); err != nil {
					t.Fatalf("%s: the kernel refuses the plan: %v\n%s", st.what, err, p)
				}
				if err := pl.Commit(p); err != nil {
					t.Fatal(err)
				}
				b.WriteString(p.String())
			}
			if d := pl.Tables().Diff(kernel, now); len(d) > 0 {
				t.Errorf("the kernel differs from the planner's tables: %v", d)
			}
			path := filepath.Join("..", "testdata", "plans", c.name+".plan")
			if *update {
				if err := os.WriteFile(path, []byte(b.String()), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to write it)", err)
			}
			if got := b.String(); got != string(want) {
				t.Errorf("the plans differ from %s (run with -update after a deliberate change):\n%s", path, lineDiff(string(want), got))
			}
		})
	}
}

// lineDiff shows the first line where two texts differ.
func lineDiff(want, got string) string {
	w, g := strings.Split(want, "\n"), strings.Split(got, "\n")
	for i := 0; i < len(w) || i < len(g); i++ {
		var a, b string
		if i < len(w) {
			a = w[i]
		}
		if i < len(g) {
			b = g[i]
		}
		if a != b {
			return fmt.Sprintf("line %d:\n  want: %s\n  got:  %s", i+1, a, b)
		}
	}
	return "(equal)"
}
