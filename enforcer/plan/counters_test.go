package plan

import (
	"fmt"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// Counters says which ACE each kernel counter counts: rule comments in
// chains, acl elements by (dispatch id, group, family, protocol, port),
// the default deny by its denyc element.
func TestCountersAttribution(t *testing.T) {
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	cdn := policy.Peer{Kind: policy.DNSName, Value: "cdn.example"}
	allow := policy.Policy{ID: "allow", FromDevice: []policy.Rule{
		{Name: "fr/cloud", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept},
		{Name: "fr/cdn", Peer: cdn, Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept},
		{Name: "fr/ping", Family: policy.IPv4, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 8}, Verdict: policy.Accept},
	}}
	chain := policy.Policy{ID: "chain", FromDevice: []policy.Rule{
		{Name: "fr/no-cdn", Peer: cdn, Verdict: policy.Drop},
		{Name: "fr/cloud", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept},
	}}
	cfg := goldenConfig()
	cfg.RuleCounters = true
	shared := addr("198.51.100.1", time.Hour)
	pl, _ := installed(t, cfg, Desired{Policies: []policy.Policy{allow, chain}, Devices: []Device{testDevice(1, "allow"), testDevice(2, "chain")},
		Peers: map[string][]Element{"dns:cloud.example": {shared, addr("198.51.100.2", time.Hour)}, "dns:cdn.example": {shared}}})
	chains, sets := pl.Counted()
	if got := fmt.Sprint(chains); got != "[inet mud pol_allow_out bridge mud pol_allow_out inet mud pol_chain_out inet mud pol_chain_in bridge mud pol_chain_out bridge mud pol_chain_in]" {
		t.Errorf("counted chains: %s", got)
	}
	if len(sets) != 8 {
		t.Errorf("counted sets: %v", sets)
	}
	pid := pl.ids.disp[polChain("allow", policy.FromDevice)]
	cloudID, group := pl.ids.peers["dns:cloud.example"], pl.ids.groupIDs["dns:cdn.example\ndns:cloud.example"]
	if cloudID == 0 || group == 0 {
		t.Fatalf("ids: cloud %d, shared group %d", cloudID, group)
	}
	got := pl.Counters(map[ChainRef][]RuleCount{
		{Inet, "pol_allow_out"}:   {{Comment: "fr/ping", Packets: 1, Bytes: 84}},
		{Bridge, "pol_allow_out"}: {{Comment: "fr/ping", Packets: 1, Bytes: 84}},
		{Inet, "pol_chain_out"}:   {{Comment: "fr/no-cdn", Packets: 2, Bytes: 120}, {Comment: "default-deny", Packets: 3, Bytes: 180}},
	}, map[SetRef][]ElemCount{
		{Inet, setDenyOut}: {{Key: MarkKey(pid), Packets: 5, Bytes: 300}},
		{Inet, setACLOut}: {
			{Key: ACLKey{Dispatch: pid, Group: cloudID, Proto: policy.ProtoTCP, Port: 443}, Packets: 7, Bytes: 700},
			// the shared address: both ACEs
			{Key: ACLKey{Dispatch: pid, Group: group, Proto: policy.ProtoTCP, Port: 443}, Packets: 11, Bytes: 1100},
			// another policy's element
			{Key: ACLKey{Dispatch: pid + 1, Group: cloudID, Proto: policy.ProtoTCP, Port: 443}, Packets: 100, Bytes: 100},
		},
	})
	want := map[string]uint64{
		"allow from-device fr/cloud": 18, "allow from-device fr/cdn": 11, "allow from-device fr/ping": 2, "allow from-device default-deny": 5,
		"allow to-device default-deny": 0,
		"chain from-device fr/no-cdn":  2, "chain from-device fr/cloud": 0, "chain from-device default-deny": 3, "chain to-device default-deny": 0,
	}
	if len(got) != len(want) {
		t.Errorf("%d counters, want %d: %+v", len(got), len(want), got)
	}
	for _, c := range got {
		k := fmt.Sprintf("%s %s %s", c.PolicyID, c.Direction, c.Rule)
		if w, ok := want[k]; !ok || c.Packets != w {
			t.Errorf("%s: %d packets, want %d", k, c.Packets, w)
		}
	}
}
