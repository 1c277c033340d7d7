package enforcer

import (
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
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
// comes from the same code that builds the netlink batch. Peer lookups are
// printed as "0xID . ip daddr @peer4 /* key */": nft cannot parse a constant
// inside a concatenation, so the text documents rather than loads.
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
	ids := map[string]uint32{}
	var keys []string
	peerID := func(k string) uint32 {
		if id, ok := ids[k]; ok {
			return id
		}
		ids[k] = uint32(len(ids) + 1)
		keys = append(keys, k)
		return ids[k]
	}
	for _, pr := range p.Peers() {
		peerID(pr.Key())
	}
	now := time.Now()
	for k, el := range ro.Peers {
		n, err := normalizePeer(el, now)
		if err != nil {
			return "", fmt.Errorf("rendering: peer %q: %w", k, err)
		}
		m.peers[k] = n
	}
	dids := map[string]uint32{}
	dispatchID := func(out string) uint32 {
		if id, ok := fixedDispatchID(out); ok {
			return id
		}
		if _, ok := dids[out]; !ok {
			dids[out] = firstDispatchID + uint32(len(dids))
		}
		return dids[out]
	}
	gids := map[string]uint32{}
	groupID := func(sig string) uint32 {
		if _, ok := gids[sig]; !ok {
			gids[sig] = multiGroupBase + uint32(len(gids))
		}
		return gids[sig]
	}
	o := buildOpts{prio: -5, bridgePrio: -205, logGroup: ro.LogGroup, log: !ro.NoLog, bridgeCT: ro.BridgeConntrack,
		bridgeNF: bridgeNF{inet: [2]bool{ro.BridgeReplies.IPv4 == ReplyInetConntrack, ro.BridgeReplies.IPv6 == ReplyInetConntrack}},
		twoStage: !ro.DirectDispatch, ruleCounters: ro.RuleCounters, peerID: peerID, groupID: groupID, dispatchID: dispatchID, now: now}
	if ro.Priority != nil {
		o.prio = *ro.Priority
	}
	if ro.BridgePriority != nil {
		o.bridgePrio = *ro.BridgePriority
	}
	if !o.bridgeCT {
		o.flowSize = DefaultBridgeFlows
	}
	l, err := build(m, o)
	if err != nil {
		return "", fmt.Errorf("rendering: %w", err)
	}
	var b strings.Builder
	fmt.Fprintf(&b, "# MUD policy %q (%s) for device %s\n", p.ID, p.MUDURL, d.MAC)
	for _, k := range keys {
		fmt.Fprintf(&b, "# peer 0x%08x = %s\n", ids[k], k)
	}
	if pf := aclForms(&p, o); pf != nil {
		b.WriteString("# allow-only: these ACEs are elements of acl_out / acl_in (dispatch id . group . family . protocol . remote port),\n" +
			"# one per group holding the peer's addresses (a peer's own group id is its peer id); port 0: any\n")
		for _, f := range []tfam{famInet, famBridge} {
			for di, set := range []string{setACLOut, setACLIn} {
				for _, fm := range pf.forms[f][di] {
					fmt.Fprintf(&b, "#   %s %s: 0x%08x . <%s> . 0x%02x . %s . %d  /* %s */\n", familyName(f), set,
						dispatchID(polChain(p.ID, policy.FromDevice)), fm.peer, fm.fam, protoName(fm.proto), fm.port, fm.name)
				}
			}
		}
	}
	for _, f := range []tfam{famInet, famBridge} {
		fmt.Fprintf(&b, "table %s %s {\n", familyName(f), tableName)
		for _, sd := range setDefs(f, o.twoStage, o.ruleCounters, o.flowSize) {
			kind := "set"
			if sd.vmap || sd.dmap {
				kind = "map"
			}
			fmt.Fprintf(&b, "\t%s %s {\n\t\t%s\n", kind, sd.name, strings.ReplaceAll(sd.decl, "; ", "\n\t\t"))
			var elems []string
			for _, e := range l.elems[setRef{f, sd.name}] {
				elems = append(elems, elemText(sd.name, e, keys))
			}
			sort.Strings(elems)
			if len(elems) > 0 {
				fmt.Fprintf(&b, "\t\telements = { %s }\n", strings.Join(elems, ",\n\t\t\t     "))
			}
			b.WriteString("\t}\n")
		}
		var chains []*chainSpec
		for id, c := range l.chains {
			if id.fam == f {
				chains = append(chains, c)
			}
		}
		sort.Slice(chains, func(i, j int) bool {
			if (chains[i].hook != nil) != (chains[j].hook != nil) {
				return chains[i].hook != nil
			}
			return chains[i].id.name < chains[j].id.name
		})
		for _, c := range chains {
			fmt.Fprintf(&b, "\n\tchain %s {\n", c.id.name)
			if c.hook != nil {
				fmt.Fprintf(&b, "\t\t%s\n", c.hook.text)
			}
			for _, r := range c.rules {
				fmt.Fprintf(&b, "\t\t%s\n", r.text())
			}
			b.WriteString("\t}\n")
		}
		b.WriteString("}\n")
	}
	return b.String(), nil
}

// elemText prints an element in nft syntax from its key bytes.
func elemText(set string, e *elemSpec, peerKeys []string) string {
	addr := func(b []byte) netip.Addr { a, _ := netip.AddrFromSlice(b); return a }
	var s string
	switch set {
	case setFromDev, setToDev:
		s = net.HardwareAddr(e.key).String()
	case setToDev4, setToDev6:
		s = addr(e.key).String()
	case setOutVmap, setInVmap:
		s = fmt.Sprintf("0x%08x", nativeEndian.Uint32(e.key))

	case setGuard4, setGuard6:
		s = net.HardwareAddr(e.key[:6]).String() + " . " + addr(e.key[8:]).String()
	case setAddr4, setAddr6:
		s = addr(e.key).String()
	case setNet4, setNet6:
		first, last := addr(e.key[4:]), addr(e.keyEnd[4:])
		r := first.String() + "-" + last.String()
		for bits := first.BitLen(); bits >= 0; bits-- {
			if p := netip.PrefixFrom(first, bits); p.Masked().Addr() == first {
				if _, l := prefixRange(p); l == last {
					r = p.String()
					break
				}
			}
		}
		s = "0 . " + r
	case setPeerGrp:
		s = fmt.Sprintf("0x%08x . 0x%08x", nativeEndian.Uint32(e.key), nativeEndian.Uint32(e.key[4:]))
	case setACLOut, setACLIn:
		s = fmt.Sprintf("0x%08x . 0x%08x . 0x%02x . %s . %d", nativeEndian.Uint32(e.key), nativeEndian.Uint32(e.key[4:]),
			e.key[8], protoName(e.key[12]), binary.BigEndian.Uint16(e.key[16:]))
	case setDenyOut, setDenyIn:
		s = fmt.Sprintf("0x%08x", nativeEndian.Uint32(e.key))
	}
	if e.data != nil {
		s += fmt.Sprintf(" : 0x%08x", nativeEndian.Uint32(e.data))
		if id := nativeEndian.Uint32(e.data); (set == setAddr4 || set == setAddr6 || set == setNet4 || set == setNet6) && int(id) >= 1 && int(id) <= len(peerKeys) {
			s += " /* " + peerKeys[id-1] + " */"
		}
	}
	if e.verdict != nil {
		s += " : " + verdictText(*e.verdict)
	}
	return s
}
