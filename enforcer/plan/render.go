package plan

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/openmud/mud/policy"
)

// RenderOptions tune Render; the zero value renders what New's defaults
// install (priorities -5 and -205, log group 0, bridge without conntrack,
// bridged replies reflexive).
type RenderOptions struct {
	Priority, BridgePriority *int32
	LogGroup                 uint16
	NoLog                    bool
	BridgeConntrack          bool
	// BridgeReplies renders the layout of these modes (Enforcer.BridgeReplies);
	// an IP version whose mode is ReplyInetConntrack is left to the inet
	// table in the bridge table. BridgeConntrack wins over it.
	BridgeReplies ReplyModes
	// DirectDispatch renders the direct verdict-map dispatch
	// (Enforcer.SecmarkDispatch() false) instead of the two-stage one.
	DirectDispatch bool
	// RuleCounters renders acl sets with per-element counters.
	RuleCounters bool
	// Peers gives sample addresses for peers (by policy.Peer.Key()); peers
	// without addresses render with no elements (the resolver fills them).
	Peers map[string][]Element
}

// SampleDevice is the device Render uses when none is given.
var sampleMAC = net.HardwareAddr{0x02, 0x00, 0x5e, 0x00, 0x53, 0x01}

// Render returns, in nft syntax, what the enforcer would install for policy
// p and one device using it (dev; a sample device when dev.MAC is nil). It
// comes from the same code that builds the netlink batch. Its ids (peers,
// groups, dispatch) are illustrative: a running enforcer allocates its own
// (Planner.RenderDevice shows those). Peer lookups are printed as "0xID .
// ip daddr @peer4 /* key */": nft cannot parse a constant inside a
// concatenation, so the text documents rather than loads.
func Render(p policy.Policy, dev Device, ro RenderOptions) (string, error) {
	if p.ID == "" {
		p.ID = "sample"
	}
	if dev.MAC == nil {
		dev.MAC = sampleMAC
		dev.IPv4s = []netip.Addr{netip.MustParseAddr("192.0.2.10")}
		dev.IPv6s = []netip.Addr{netip.MustParseAddr("2001:db8:1::10")}
	}
	dev.PolicyID = p.ID
	d, err := normDevice(dev)
	if err != nil {
		return "", fmt.Errorf("rendering: %w", err)
	}
	m := newModel()
	m.policies[p.ID] = &p
	m.devices[d.MAC.String()] = d
	x := newIDs()
	for _, pr := range p.Peers() {
		x.peer(pr.Key())
	}
	now := time.Now()
	for k, el := range ro.Peers {
		n, err := normalizePeer(el, now)
		if err != nil {
			return "", fmt.Errorf("rendering: peer %q: %w", k, err)
		}
		m.peers[k] = n
	}
	cfg := Config{Priority: -5, BridgePriority: -205, LogGroup: ro.LogGroup, NoLog: ro.NoLog, BridgeConntrack: ro.BridgeConntrack,
		BridgeNF:       BridgeNF{Inet: [2]bool{ro.BridgeReplies.IPv4 == ReplyInetConntrack, ro.BridgeReplies.IPv6 == ReplyInetConntrack}},
		BridgeFlows:    DefaultBridgeFlows,
		DirectDispatch: ro.DirectDispatch, RuleCounters: ro.RuleCounters}
	if ro.Priority != nil {
		cfg.Priority = *ro.Priority
	}
	if ro.BridgePriority != nil {
		cfg.BridgePriority = *ro.BridgePriority
	}
	o := optsOf(cfg, x.peer, x.group, x.dispatch, now)
	l, err := build(m, o)
	if err != nil {
		return "", fmt.Errorf("rendering: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# MUD policy %q (%s) for device %s\n", p.ID, p.MUDURL, d.MAC)
	b.WriteString("# ids are illustrative: a running mudd allocates its own peer, group and dispatch ids\n")
	writeRendering(&b, &p, peerKeys(p.FromDevice, p.ToDevice), l, o, x)
	return b.String(), nil
}

// peerKeys are the keys of the peers rules name, in order, once each.
func peerKeys(lists ...[]policy.Rule) []string {
	var out []string
	for _, l := range lists {
		for _, r := range l {
			if k := r.Peer.Key(); r.Peer.Kind != policy.AnyPeer && r.Peer.Kind != policy.Prefix && !slices.Contains(out, k) {
				out = append(out, k)
			}
		}
	}
	return out
}

// RenderDevice returns, in nft syntax, what our tables hold for one
// device, with the ids as installed: the fixed chains, the device's
// elements and chains, its policy's chains and elements, and the elements
// of the peers its policy and overrides name.
func (pl *Planner) RenderDevice(mac net.HardwareAddr) (string, error) {
	if pl.inst == nil {
		return "", errors.New("rendering: nothing is installed")
	}
	d := pl.m.devices[mac.String()]
	if d == nil {
		return "", fmt.Errorf("rendering: device %s is not installed", mac)
	}
	l := newLayout()
	l.add(pl.inst.fixed)
	l.add(pl.inst.devices[d.MAC.String()])
	var p *policy.Policy
	var lists [][]policy.Rule
	if d.Mode == Enforce {
		p = pl.m.policies[d.PolicyID]
		l.add(pl.inst.policies[d.PolicyID])
		lists = append(lists, p.FromDevice, p.ToDevice)
	}
	keys := peerKeys(append(lists, d.Overrides.FromDevice, d.Overrides.ToDevice)...)
	named := map[string]bool{}
	for _, k := range keys {
		named[k] = true
	}
	if d.Mode == Enforce {
		for k, pc := range pl.inst.binds {
			if k.policy == d.PolicyID || k.policy == pl.groups.policyShared[d.PolicyID] {
				l.add(pc)
			}
		}
	}
	namesAny := func(sig string) bool {
		for _, k := range sigPeers(sig) {
			if named[k] {
				return true
			}
		}
		return false
	}
	for a, pc := range pl.inst.addrs {
		if info := pl.groups.addrPeers[a]; info != nil && namesAny(info.sig()) {
			l.add(pc)
		}
	}
	for k, pc := range pl.inst.groups {
		if namesAny(k.sig) {
			l.add(pc)
		}
	}
	if pl.inst.nets != nil {
		names := pl.ids.peerNames()
		for _, x := range pl.inst.nets.elems {
			for _, k := range names[x.elem.Mark] {
				if named[k] {
					l.add(&pieces{elems: []elemAt{x}})
					break
				}
			}
		}
	}
	o := pl.opts(time.Now())
	var b strings.Builder
	fmt.Fprintf(&b, "# device %s (%s", d.MAC, d.Mode)
	if p != nil {
		fmt.Fprintf(&b, ", MUD policy %q, %s", p.ID, p.MUDURL)
	}
	b.WriteString("), as installed\n")
	if !d.Overrides.empty() && d.Mode == Enforce {
		fmt.Fprintf(&b, "# overrides: chains %s, %s (dispatch id 0x%08x)\n", devChain(d.MAC, policy.FromDevice), devChain(d.MAC, policy.ToDevice),
			pl.ids.disp[devChain(d.MAC, policy.FromDevice)])
	}
	writeRendering(&b, p, keys, l, o, pl.ids)
	return b.String(), nil
}

// writeRendering prints the ids of the peers keys names, an allow-only
// policy's element forms and the layout's tables.
func writeRendering(b *strings.Builder, p *policy.Policy, keys []string, l *layout, o buildOpts, x ids) {
	names := map[uint32]string{}
	for _, k := range keys {
		if id, ok := x.peers[k]; ok {
			names[id] = k
			fmt.Fprintf(b, "# peer 0x%08x = %s\n", id, k)
		}
	}
	if p != nil {
		if pf := aclForms(p, o); pf != nil {
			fmt.Fprintf(b, "# allow-only: dispatch id 0x%08x is in neither out_chain nor in_chain, so policy_out / policy_in go on to allow_out / allow_in\n",
				x.disp[polChain(p.ID, policy.FromDevice)])
			b.WriteString("# allow-only: these ACEs are elements of acl_out / acl_in (dispatch id . group . family . protocol . remote port),\n" +
				"# one per group holding the peer's addresses (a peer's own group id is its peer id); port 0: any\n")
			for _, f := range Families {
				for di, set := range []string{setACLOut, setACLIn} {
					for _, fm := range pf.forms[f][di] {
						fmt.Fprintf(b, "#   %s %s: 0x%08x . <%s> . 0x%02x . %s . %d  /* %s */\n", f, set,
							x.disp[polChain(p.ID, policy.FromDevice)], fm.peer, fm.fam, protoName(fm.proto), fm.port, fm.name)
					}
					for _, fm := range pf.shared[f][di] {
						fmt.Fprintf(b, "#   %s %s: 0x%08x . <%s> . 0x%02x . %s . %d  /* App. A default, shared: app_a maps 0x%08x to it */\n", f, set,
							x.disp[dispatchName(pf.sharedKey)], fm.peer, fm.fam, protoName(fm.proto), fm.port,
							x.disp[polChain(p.ID, policy.FromDevice)])
					}
				}
			}
		}
	}
	for _, f := range Families {
		fmt.Fprintf(b, "table %s %s {\n", f, tableName)
		for _, sd := range setDefs(f, o.twoStage, o.ruleCounters, o.flowSize, o.acct) {
			kind := "set"
			if sd.Value != ValueNone {
				kind = "map"
			}
			fmt.Fprintf(b, "\t%s %s {\n\t\t%s\n", kind, sd.Name, strings.ReplaceAll(sd.decl, "; ", "\n\t\t"))
			var elems []string
			for _, e := range l.elems[SetRef{f, sd.Name}] {
				elems = append(elems, renderElem(sd, e, names))
			}
			sort.Strings(elems)
			if len(elems) > 0 {
				fmt.Fprintf(b, "\t\telements = { %s }\n", strings.Join(elems, ",\n\t\t\t     "))
			}
			b.WriteString("\t}\n")
		}
		var chains []*Chain
		for id, c := range l.chains {
			if id.Family == f {
				chains = append(chains, c)
			}
		}
		sort.Slice(chains, func(i, j int) bool {
			if (chains[i].Hook != nil) != (chains[j].Hook != nil) {
				return chains[i].Hook != nil
			}
			return chains[i].ID.Name < chains[j].ID.Name
		})
		for _, c := range chains {
			fmt.Fprintf(b, "\n\tchain %s {\n", c.ID.Name)
			if c.Hook != nil {
				fmt.Fprintf(b, "\t\t%s\n", c.Hook.Text())
			}
			for _, r := range c.Rules {
				fmt.Fprintf(b, "\t\t%s\n", r.Text())
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
}

// renderElem prints an element in nft syntax, naming the peer an address's
// group id stands for.
func renderElem(s Set, e *Elem, names map[uint32]string) string {
	out := e.Key.String()
	switch s.Value {
	case ValueMark:
		out += fmt.Sprintf(" : 0x%08x", e.Mark)
		if n, ok := names[e.Mark]; ok && (s.Name == setAddr4 || s.Name == setAddr6 || s.Name == setNet4 || s.Name == setNet6) {
			out += " /* " + n + " */"
		}
	case ValueVerdict:
		out += " : " + e.Verdict.String()
	}
	return out
}
