package plan

import (
	"strings"
	"testing"
)

// A VLAN-filtering bridge can take a frame's tag off after br_netfilter
// looked at it (tagged in, untagged out: not passed up, but untagged at
// the forward hook). Without bridge-nf-filter-vlan-tagged the bridge table
// then judges everything. (The lab kernel has no VLAN filtering, so this
// is checked on the layout.)
func TestVLANFilteringBridgeKeepsBridgeJudging(t *testing.T) {
	for _, tc := range []struct {
		nf   BridgeNF
		want ReplyModes
		rule string
	}{
		{BridgeNF{Inet: [2]bool{true, true}}, ReplyModes{ReplyInetConntrack, ReplyInetConntrack}, "ether type ip6 accept"},
		{BridgeNF{Inet: [2]bool{true, false}, VLAN: true}, ReplyModes{ReplyInetConntrack, ReplyReflexive}, "meta protocol ip accept"},
		{BridgeNF{Inet: [2]bool{true, true}, VLANBridge: true}, ReplyModes{ReplyReflexive, ReplyReflexive}, ""},
		{BridgeNF{Inet: [2]bool{true, true}, VLAN: true, VLANBridge: true}, ReplyModes{ReplyInetConntrack, ReplyInetConntrack}, "meta protocol ip6 accept"},
	} {
		if got := ReplyModesOf(false, tc.nf); got != tc.want {
			t.Errorf("%+v: modes %v, want %v", tc.nf, got, tc.want)
		}
		var rules []string
		for _, c := range fixedChains(Bridge, buildOpts{twoStage: true, bridgeNF: tc.nf, flowSize: 8}) {
			if c.ID.Name == chainToInet {
				for _, r := range c.Rules {
					rules = append(rules, r.Text())
				}
			}
		}
		if got := strings.Join(rules, "\n"); (tc.rule == "") != (got == "") || !strings.Contains(got, tc.rule) {
			t.Errorf("%+v: to_inet is %q, want it to have %q", tc.nf, got, tc.rule)
		}
	}
}
