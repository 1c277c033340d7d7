package apigraph

import (
	"bytes"
	"net/netip"
	"os"
	"reflect"
	"testing"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/policy/graph"
)

func port(n uint16) *policy.PortRange { return &policy.PortRange{First: n, Last: n} }

// view is the control API's view of p with the overrides first, as mudd
// sends it.
func view(p *policy.Policy, ov graph.Overrides) api.PolicyView {
	cp := api.NewCompiledPolicy(p)
	ovp := api.NewCompiledPolicy(&policy.Policy{FromDevice: ov.FromDevice, ToDevice: ov.ToDevice})
	v := api.PolicyView{MAC: "02:00:00:00:00:01", PolicyID: p.ID, MUDURL: p.MUDURL, NeedsApproval: p.NeedsApproval, Notes: p.Notes}
	for _, d := range []struct {
		dv      *api.DirectionView
		ov, pol []api.RuleView
	}{{&v.FromDevice, ovp.FromDevice, cp.FromDevice}, {&v.ToDevice, ovp.ToDevice, cp.ToDevice}} {
		for _, r := range d.ov {
			r.Override = true
			d.dv.Rules = append(d.dv.Rules, api.CountedRule{RuleView: r})
		}
		for _, r := range d.pol {
			d.dv.Rules = append(d.dv.Rules, api.CountedRule{RuleView: r, Counters: api.Counters{Packets: 1}})
		}
	}
	return v
}

// TestFromViewGivesBackThePolicy: the RFC 8520 example and a policy with
// every kind of peer, sent as the control API sends them, come back as the
// compiled rules and the overrides, and draw the same graph.
func TestFromViewGivesBackThePolicy(t *testing.T) {
	data, err := os.ReadFile("../../../mudfile/testdata/base.json")
	if err != nil {
		t.Fatal(err)
	}
	rfc, err := policy.Compile(mudfile.Parse(data).File, policy.Context{})
	if err != nil {
		t.Fatal(err)
	}
	code := uint8(3)
	kinds := &policy.Policy{ID: "k", MUDURL: "https://maker.example.com/thing",
		FromDevice: []policy.Rule{
			{Name: "a/1", Family: policy.IPv4, Peer: policy.Peer{Kind: policy.Manufacturer, Value: "maker.example.com"}, Protocol: policy.ProtoUDP, SrcPort: port(5), DstPort: &policy.PortRange{First: 1, Last: 9, Negate: true}, Verdict: policy.Drop},
			{Name: "a/2", Peer: policy.Peer{Kind: policy.Model, Value: "https://maker.example.com/thing"}, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 3, Code: &code}, Verdict: policy.Accept},
			{Name: "a/3", Peer: policy.Peer{Kind: policy.MyController, Value: "https://maker.example.com/thing"}, Protocol: 47, Verdict: policy.Accept},
			{Name: "a/4", Family: policy.IPv6, Peer: policy.Peer{Kind: policy.LocalNetworks}, Protocol: policy.ProtoICMPv6, Verdict: policy.Accept},
		},
		ToDevice: []policy.Rule{
			{Name: "b/1", Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("2001:db8::/32")}, Protocol: policy.ProtoTCP, Initiated: policy.InitiatedToDevice, Verdict: policy.Accept},
			{Name: "b/2", Peer: policy.Peer{Kind: policy.Controller, Value: "urn:example:ctl"}, Verdict: policy.Accept, Default: true},
		},
		NeedsApproval: []string{"literals"}, Notes: []string{"a note"},
	}
	ov := graph.Overrides{FromDevice: []policy.Rule{{Name: "override/1", Peer: policy.Peer{Kind: policy.DNSName, Value: "x.example.com"}, Protocol: policy.ProtoTCP, DstPort: port(22), Verdict: policy.Accept}}}
	for _, p := range []*policy.Policy{rfc, kinds} {
		gotP, gotOv, err := FromView(view(p, ov))
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(gotP, p) {
			t.Errorf("policy:\n got %+v\nwant %+v", gotP, p)
		}
		if !reflect.DeepEqual(gotOv, ov) {
			t.Errorf("overrides:\n got %+v\nwant %+v", gotOv, ov)
		}
		dot, err := DOT(view(p, ov), "")
		if err != nil {
			t.Fatal(err)
		}
		if want := graph.DOT(p, graph.Options{Device: "02:00:00:00:00:01", Overrides: ov}); !bytes.Equal(dot, want) {
			t.Errorf("DOT of the view differs from the policy's:\n%s\nwant\n%s", dot, want)
		}
	}
}

// TestFromViewWithoutPolicy: a device with only overrides (no policy
// installed) draws its overrides and the default deny.
func TestFromViewWithoutPolicy(t *testing.T) {
	v := api.PolicyView{MAC: "02:00:00:00:00:02", ToDevice: api.DirectionView{Rules: []api.CountedRule{{RuleView: api.RuleView{
		Name: "override/1", Override: true, Rule: api.Rule{Name: "override/1", Family: api.FamilyAny, Peer: api.Peer{Kind: api.PeerAny}, Verdict: api.Drop}}}}}}
	p, ov, err := FromView(v)
	if err != nil || p != nil || len(ov.ToDevice) != 1 || ov.ToDevice[0].Verdict != policy.Drop {
		t.Fatalf("FromView = %v, %+v, %v", p, ov, err)
	}
}

func TestFromViewRefusesUnknownEnums(t *testing.T) {
	for _, r := range []api.Rule{
		{Family: "ipv5", Verdict: api.Accept, Peer: api.Peer{Kind: api.PeerAny}},
		{Verdict: "maybe", Peer: api.Peer{Kind: api.PeerAny}},
		{Verdict: api.Accept, Peer: api.Peer{Kind: "friends"}},
		{Verdict: api.Accept, Peer: api.Peer{Kind: api.PeerAny}, Protocol: "sctp"},
		{Verdict: api.Accept, Peer: api.Peer{Kind: api.PeerAny}, Protocol: "300"},
		{Verdict: api.Accept, Peer: api.Peer{Kind: api.PeerAny}, Initiated: "both"},
	} {
		v := api.PolicyView{PolicyID: "p", FromDevice: api.DirectionView{Rules: []api.CountedRule{{RuleView: api.RuleView{Name: "x", Rule: r}}}}}
		if _, _, err := FromView(v); err == nil {
			t.Errorf("FromView accepted %+v", r)
		}
	}
}
