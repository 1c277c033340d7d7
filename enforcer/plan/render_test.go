package plan

import (
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// The offline rendering (mudctl compile --nft) shows what a planner
// installs for the same policy and device: the same tables, chains and
// elements; only its ids are illustrative, and its header says so.
func TestRenderIsWhatIsInstalled(t *testing.T) {
	p := testPolicy("cam")
	p.FromDevice = append(p.FromDevice, policy.Rule{Name: "fr/ping", Family: policy.IPv4, Protocol: policy.ProtoICMP,
		ICMP: &policy.ICMPMatch{Type: 8}, Verdict: policy.Accept})
	dev := testDevice(1, "cam")
	peers := map[string][]Element{"dns:cloud.example": {addr("198.51.100.1", time.Hour)}}
	for _, direct := range []bool{false, true} {
		cfg := Config{Priority: -5, BridgePriority: -205, LogGroup: 4, BridgeFlows: DefaultBridgeFlows, DirectDispatch: direct}
		pl, _ := installed(t, cfg, Desired{Policies: []policy.Policy{p}, Devices: []Device{dev}, Peers: peers})
		live, err := pl.RenderDevice(dev.MAC)
		if err != nil {
			t.Fatal(err)
		}
		offline, err := Render(p, dev, RenderOptions{LogGroup: 4, DirectDispatch: direct, Peers: peers})
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(offline, "# ids are illustrative") || strings.Contains(live, "illustrative") {
			t.Error("only the offline rendering says its ids are illustrative")
		}
		body := func(s string) string { return s[strings.Index(s, "# peer "):] }
		if body(live) != body(offline) {
			t.Errorf("direct %v: rendered offline:\n%s\ninstalled:\n%s", direct, body(offline), body(live))
		}
	}
	if _, err := New(goldenConfig()).RenderDevice(dev.MAC); err == nil {
		t.Error("a planner with nothing installed rendered a device")
	}
	pl, _ := installed(t, goldenConfig(), Desired{Policies: []policy.Policy{p}})
	if _, err := pl.RenderDevice(dev.MAC); err == nil {
		t.Error("a device that is not installed was rendered")
	}
}
