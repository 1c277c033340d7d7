// Package graph draws a device's MUD policy as a picture of the peers it may
// talk to: the device in the middle, one node per peer (a DNS name, a
// controller class, its my-controller, the local networks, devices of its
// manufacturer or model, a literal prefix), edges labelled with protocol,
// port and who opens the connection (RFC 8520 §4.8, direction-initiated),
// and the default deny that drops everything no rule accepts.
//
// Build turns a compiled policy.Policy, and the administrator's overrides
// for the device, into a Graph; DOT writes it in Graphviz's language and
// SVG has Graphviz's dot draw it. The names in a policy come from MUD files,
// which are hostile: every string is escaped so that it stays inside its
// label, whatever quotes, backslashes, control characters or HTML-like
// markup it holds.
package graph

import (
	"fmt"
	"net/url"
	"strings"

	"github.com/openmud/mud/policy"
)

// Overrides are the administrator's entries for a device, by direction, in
// evaluation order; they are evaluated before the policy's rules.
type Overrides struct {
	FromDevice []policy.Rule
	ToDevice   []policy.Rule
}

// Options say what to draw beside the policy.
type Options struct {
	// Device names the device in the middle (its MAC, host name); empty:
	// "device".
	Device string
	// Overrides are drawn as edges of their own (blue).
	Overrides Overrides
}

// Graph is a policy as peers and edges, in a fixed order: the peers in the
// order the rules first name them, and each peer's edges in evaluation
// order.
type Graph struct {
	// Device is the label of the device; MUDURL the policy's URL.
	Device string
	MUDURL string
	// Peers are the remote sides the rules name.
	Peers []*Peer
	// Notes are the policy's notes and reasons for approval, verbatim.
	Notes []string
}

// Peer is one node around the device.
type Peer struct {
	// ID is the node's identifier in DOT: "peer1", "peer2", ...
	ID string
	// Kind is the peer's kind ("dns", "controller", ...); Title what it
	// is in words ("same manufacturer", "controller"), Value the name,
	// authority, URL or prefix it stands for (may be empty).
	Kind  policy.PeerKind
	Title string
	Value string
	// Edges are the rules that name this peer, in evaluation order:
	// from-device rules first, then to-device rules.
	Edges []Edge
}

// Edge is one rule between the device and a peer.
type Edge struct {
	Direction policy.Direction
	// Index is the rule's position in its direction's evaluation order,
	// from 1, overrides counted first: the first rule that matches
	// decides.
	Index    int
	Rule     string // the rule's name
	Verdict  policy.Verdict
	Override bool
	Default  bool
	// Label says what the rule matches: protocol, ports, family, who
	// opens the connection.
	Label string
}

// Build lays out a policy (nil: none, only the overrides) for drawing.
func Build(p *policy.Policy, o Options) *Graph {
	g := &Graph{Device: o.Device}
	if g.Device == "" {
		g.Device = "device"
	}
	var authority string
	if p != nil {
		g.MUDURL = p.MUDURL
		g.Notes = append(append(g.Notes, p.NeedsApproval...), p.Notes...)
		if u, err := url.Parse(p.MUDURL); err == nil {
			authority = strings.ToLower(u.Host)
		}
	}
	byKey := map[string]*Peer{}
	add := func(d policy.Direction, rules []policy.Rule, index *int, override bool) {
		for _, r := range rules {
			*index++
			key := r.Peer.Key()
			if r.Peer.Kind == policy.AnyPeer {
				key = "any"
			}
			n := byKey[key]
			if n == nil {
				n = &Peer{ID: fmt.Sprintf("peer%d", len(g.Peers)+1), Kind: r.Peer.Kind}
				n.Title, n.Value = peerTitle(r.Peer, authority, p)
				byKey[key] = n
				g.Peers = append(g.Peers, n)
			}
			n.Edges = append(n.Edges, Edge{Direction: d, Index: *index, Rule: r.Name, Verdict: r.Verdict,
				Override: override, Default: r.Default, Label: ruleLabel(d, r)})
		}
	}
	for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		index := 0
		ov := o.Overrides.FromDevice
		if d == policy.ToDevice {
			ov = o.Overrides.ToDevice
		}
		add(d, ov, &index, true)
		if p != nil {
			add(d, p.Rules(d), &index, false)
		}
	}
	return g
}

// peerTitle says what a peer is, and the value it stands for.
func peerTitle(pe policy.Peer, authority string, p *policy.Policy) (title, value string) {
	switch pe.Kind {
	case policy.AnyPeer:
		return "any host", ""
	case policy.DNSName:
		return "host", pe.Value
	case policy.Manufacturer:
		if authority != "" && strings.EqualFold(pe.Value, authority) {
			return "same manufacturer", pe.Value
		}
		return "manufacturer", pe.Value
	case policy.Model:
		if p != nil && pe.Value == p.MUDURL {
			return "same model", pe.Value
		}
		return "model", pe.Value
	case policy.Controller:
		switch pe.Value {
		case policy.ControllerDNS:
			return "local DNS servers", pe.Value
		case policy.ControllerNTP:
			return "local NTP servers", pe.Value
		}
		return "controller", pe.Value
	case policy.MyController:
		return "my-controller", pe.Value
	case policy.LocalNetworks:
		return "local networks", ""
	case policy.Prefix:
		if pe.Prefix.IsSingleIP() {
			return "address", pe.Prefix.Addr().String()
		}
		return "addresses", pe.Prefix.String()
	}
	return pe.Kind.String(), pe.Value
}

var protoNames = map[uint8]string{policy.ProtoICMP: "ICMP", policy.ProtoTCP: "TCP", policy.ProtoUDP: "UDP", policy.ProtoICMPv6: "ICMPv6"}

func portText(pr *policy.PortRange) string {
	switch {
	case pr.Negate:
		return fmt.Sprintf("not %d", pr.First)
	case pr.First == pr.Last:
		return fmt.Sprintf("%d", pr.First)
	}
	return fmt.Sprintf("%d-%d", pr.First, pr.Last)
}

// ruleLabel says in a few words what a rule matches, e.g. "TCP port 443,
// device opens" or "UDP port 123".
func ruleLabel(d policy.Direction, r policy.Rule) string {
	var parts []string
	if r.Verdict == policy.Drop {
		parts = append(parts, "DROP")
	}
	switch {
	case r.Protocol == 0:
		parts = append(parts, "any protocol")
	case protoNames[r.Protocol] != "":
		parts = append(parts, protoNames[r.Protocol])
	default:
		parts = append(parts, fmt.Sprintf("protocol %d", r.Protocol))
	}
	if r.ICMP != nil {
		s := fmt.Sprintf("type %d", r.ICMP.Type)
		if r.ICMP.Code != nil {
			s += fmt.Sprintf(" code %d", *r.ICMP.Code)
		}
		parts = append(parts, s)
	}
	// The peer's port and the device's own, whichever way the packet goes.
	remote, local := r.DstPort, r.SrcPort
	if d == policy.ToDevice {
		remote, local = r.SrcPort, r.DstPort
	}
	if remote != nil {
		parts = append(parts, "port "+portText(remote))
	}
	if local != nil {
		parts = append(parts, "device port "+portText(local))
	}
	if r.Family != policy.AnyFamily {
		parts = append(parts, map[policy.Family]string{policy.IPv4: "IPv4", policy.IPv6: "IPv6"}[r.Family])
	}
	label := strings.Join(parts, " ")
	switch r.Initiated {
	case policy.InitiatedFromDevice:
		label += ", device opens"
	case policy.InitiatedToDevice:
		label += ", peer opens"
	}
	if len(r.Fields) > 0 {
		label += fmt.Sprintf(", %d header field(s)", len(r.Fields))
	}
	return label
}
