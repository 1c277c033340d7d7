// Package apigraph draws the policy the control API reports for a device
// (api.PolicyView, what `mudctl policy show` prints) with package graph: it
// turns the wire rules back into policy rules and the admin's entries into
// graph.Overrides. mudctl and the dashboard use it; package graph itself
// depends on nothing but package policy.
package apigraph

import (
	"fmt"
	"strconv"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/policy/graph"
)

// DOT is the graph of a device's policy in force, in Graphviz's DOT
// language (graph.DOT), the device labelled device (its MAC when empty).
// It is the function behind `mudctl graph MAC`.
func DOT(v api.PolicyView, device string) ([]byte, error) {
	g, err := Build(v, device)
	if err != nil {
		return nil, err
	}
	return g.DOT(), nil
}

// Build lays out a device's policy in force for drawing (graph.Build).
func Build(v api.PolicyView, device string) (*graph.Graph, error) {
	p, ov, err := FromView(v)
	if err != nil {
		return nil, err
	}
	if device == "" {
		device = v.MAC
	}
	return graph.Build(p, graph.Options{Device: device, Overrides: ov}), nil
}

// FromView splits a policy view into the compiled policy (nil when the
// device has none) and the admin's overrides. Header-field matches are not
// part of the wire form, so the rules carry none.
func FromView(v api.PolicyView) (*policy.Policy, graph.Overrides, error) {
	var ov graph.Overrides
	var p *policy.Policy
	if v.PolicyID != "" {
		p = &policy.Policy{ID: v.PolicyID, MUDURL: v.MUDURL, NeedsApproval: v.NeedsApproval, Notes: v.Notes}
	}
	for _, d := range []struct {
		rules []api.CountedRule
		ov    *[]policy.Rule
		pol   func() *[]policy.Rule
	}{
		{v.FromDevice.Rules, &ov.FromDevice, func() *[]policy.Rule { return &p.FromDevice }},
		{v.ToDevice.Rules, &ov.ToDevice, func() *[]policy.Rule { return &p.ToDevice }},
	} {
		for _, cr := range d.rules {
			r, err := Rule(cr.Rule)
			if err != nil {
				return nil, graph.Overrides{}, fmt.Errorf("rule %q: %w", cr.Name, err)
			}
			switch {
			case cr.Override:
				*d.ov = append(*d.ov, r)
			case p != nil:
				*d.pol() = append(*d.pol(), r)
			}
		}
	}
	return p, ov, nil
}

var (
	families  = map[api.Family]policy.Family{"": policy.AnyFamily, api.FamilyAny: policy.AnyFamily, api.FamilyIPv4: policy.IPv4, api.FamilyIPv6: policy.IPv6}
	verdicts  = map[api.Verdict]policy.Verdict{api.Accept: policy.Accept, api.Drop: policy.Drop}
	initiated = map[api.Initiator]policy.Initiator{"": policy.NoInitiator, api.InitiatedFromDevice: policy.InitiatedFromDevice, api.InitiatedToDevice: policy.InitiatedToDevice}
	peerKinds = map[api.PeerKind]policy.PeerKind{
		api.PeerAny: policy.AnyPeer, api.PeerDNSName: policy.DNSName, api.PeerManufacturer: policy.Manufacturer,
		api.PeerModel: policy.Model, api.PeerController: policy.Controller, api.PeerMyController: policy.MyController,
		api.PeerLocalNetworks: policy.LocalNetworks, api.PeerPrefix: policy.Prefix,
	}
	protocols = map[string]uint8{"": 0, "icmp": policy.ProtoICMP, "tcp": policy.ProtoTCP, "udp": policy.ProtoUDP, "icmpv6": policy.ProtoICMPv6}
)

// Rule is the policy rule a wire rule stands for; an enum value it does
// not know is an error.
func Rule(r api.Rule) (policy.Rule, error) {
	out := policy.Rule{Name: r.Name, Default: r.Default,
		Peer: policy.Peer{Value: r.Peer.Value, Prefix: r.Peer.Prefix}}
	var ok bool
	if out.Family, ok = families[r.Family]; !ok {
		return out, fmt.Errorf("unknown family %q", r.Family)
	}
	if out.Verdict, ok = verdicts[r.Verdict]; !ok {
		return out, fmt.Errorf("unknown verdict %q", r.Verdict)
	}
	if out.Initiated, ok = initiated[r.Initiated]; !ok {
		return out, fmt.Errorf("unknown initiator %q", r.Initiated)
	}
	if out.Peer.Kind, ok = peerKinds[r.Peer.Kind]; !ok {
		return out, fmt.Errorf("unknown peer kind %q", r.Peer.Kind)
	}
	if out.Protocol, ok = protocols[r.Protocol]; !ok {
		n, err := strconv.ParseUint(r.Protocol, 10, 8)
		if err != nil {
			return out, fmt.Errorf("unknown protocol %q", r.Protocol)
		}
		out.Protocol = uint8(n)
	}
	portRange := func(p *api.PortRange) *policy.PortRange {
		if p == nil {
			return nil
		}
		return &policy.PortRange{First: p.First, Last: p.Last, Negate: p.Negate}
	}
	out.SrcPort, out.DstPort = portRange(r.SrcPort), portRange(r.DstPort)
	if r.ICMP != nil {
		out.ICMP = &policy.ICMPMatch{Type: r.ICMP.Type}
		if r.ICMP.Code != nil {
			code := *r.ICMP.Code
			out.ICMP.Code = &code
		}
	}
	return out, nil
}
