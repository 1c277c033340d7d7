package plan

import (
	"fmt"
	"time"

	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// Replies of bridged flows. Routed traffic meets conntrack in table inet
// mud: a flow's first packet is judged by the policies, its later packets
// and its replies pass the established fast path. Bridged traffic (device
// to device across the LAN bridge) must pass the same way, or a permitted
// connection times out because its replies are judged as new packets. How
// depends on the kernel, per IP version (README.md, "Bridged replies"):
//
//   - conntrack: nf_conntrack_bridge tracks bridged traffic; table bridge
//     mud has the fast path of table inet mud.
//   - inet-conntrack: br_netfilter passes bridged IP of this version to the
//     inet hooks (bridge-nf-call-iptables / -ip6tables is 1), so the forward
//     chain of table inet mud, which has conntrack, judges it; table bridge
//     mud lets the frames br_netfilter passes up go (it would judge them a
//     second time, statelessly) and judges the others (VLAN-tagged frames
//     unless bridge-nf-filter-vlan-tagged is 1).
//   - reflexive: table bridge mud remembers the flows it accepted in a
//     timeout set (flows4, flows6), and lets a packet of a remembered flow,
//     or a reply to one, pass after the source guard.
//
// The sysctls can change while mudd runs; Run re-reads them on every
// repair tick and changes the layout when they do.

// ReplyMode says how replies of permitted bridged flows pass, for one IP
// version.
type ReplyMode string

// The reply modes.
const (
	ReplyConntrack     ReplyMode = "conntrack"
	ReplyInetConntrack ReplyMode = "inet-conntrack"
	ReplyReflexive     ReplyMode = "reflexive"
)

// ReplyModes are the modes of both IP versions.
type ReplyModes struct {
	IPv4 ReplyMode `json:"ipv4"`
	IPv6 ReplyMode `json:"ipv6"`
}

func (m ReplyModes) String() string { return fmt.Sprintf("ipv4 %s, ipv6 %s", m.IPv4, m.IPv6) }

// ReplyModesOf tells how replies of bridged flows pass with or without
// nf_conntrack_bridge and with br_netfilter's settings nf.
func ReplyModesOf(bridgeCT bool, nf BridgeNF) ReplyModes {
	mode := func(i int) ReplyMode {
		switch {
		case bridgeCT:
			return ReplyConntrack
		case nf.toInet(i):
			return ReplyInetConntrack
		}
		return ReplyReflexive
	}
	return ReplyModes{IPv4: mode(0), IPv6: mode(1)}
}

// BridgeNF is what br_netfilter does in the enforcer's namespace.
type BridgeNF struct {
	Inet       [2]bool // bridged IPv4 / IPv6 go through the inet hooks
	VLAN       bool    // VLAN-tagged ones too
	VLANBridge bool    // a bridge of the namespace filters VLANs (or the links could not be read)
}

// toInet tells whether the bridge table leaves bridged IP of version
// index i (0: IPv4) to the inet table. br_netfilter decides at the bridge
// forward hook whether to pass a frame up, but only frames it saw at the
// bridge's input as IP: untagged ones, or tagged ones with
// bridge-nf-filter-vlan-tagged. A VLAN-filtering bridge can take the tag
// off a frame between the two, so there, without
// bridge-nf-filter-vlan-tagged, a frame untagged at the forward hook may
// not have been passed up, and the bridge table judges everything.
func (nf BridgeNF) toInet(i int) bool { return nf.Inet[i] && (nf.VLAN || !nf.VLANBridge) }

// Flow memory of the reflexive mode.
const (
	setFlows4       = "flows4" // ether saddr . ether daddr . ip saddr . ip daddr . l4proto . a . b
	setFlows6       = "flows6"
	chainFlowFast   = "flows_fast" // packets of remembered flows and replies to them
	chainFlowRecord = "flows_rec"  // remembers what the policies accepted
	chainToInet     = "to_inet"    // lets go what br_netfilter passes to table inet mud

	// DefaultBridgeFlows bounds the flow sets when Config.BridgeFlows is 0.
	DefaultBridgeFlows = 65536

	// Timeouts, refreshed by every packet of the flow in either direction.
	flowTCP   = 2 * time.Hour    // TCP's default keepalive interval
	flowClose = 30 * time.Second // after a FIN or RST
	flowUDP   = time.Minute
	flowICMP  = 30 * time.Second
)

type flowL4 uint8

const (
	flowPorts   flowL4 = iota // th sport . th dport
	flowEcho                  // icmp id . icmp type (an echo request)
	flowEchoRev               // icmp id . echo request type (from a reply)
)

func echoTypes(v int) (request, reply uint8) {
	if v == 6 {
		return 128, 129
	}
	return 8, 0
}

// flowKey loads the key of a packet's flow into the registers from reg32;
// rev loads the key of the reverse direction (source and destination
// swapped), under which the flow a reply answers is remembered.
func flowKey(v int, rev bool, l4 flowL4) ([]expr.Any, string) {
	src, dst := true, false
	if rev {
		src, dst = false, true
	}
	// registers from reg32: MACs 0-1 and 2-3, addresses from 4, protocol,
	// then the two 16-bit fields
	a2, proto := uint32(5), uint32(6)
	if v == 6 {
		a2, proto = 8, 12
	}
	ex := []expr.Any{
		loadEther(src, reg32), loadEther(dst, reg32+2),
		loadAddr(v, src, reg32+4), loadAddr(v, dst, reg32+a2),
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: reg32 + proto},
	}
	eth := func(s bool) string {
		if s {
			return "ether saddr"
		}
		return "ether daddr"
	}
	text := fmt.Sprintf("%s . %s . %s . %s . meta l4proto", eth(src), eth(dst), addrText(v, src), addrText(v, dst))
	th := func(off, l, r uint32) *expr.Payload {
		return &expr.Payload{DestRegister: r, Base: expr.PayloadBaseTransportHeader, Offset: off, Len: l}
	}
	icmp := "icmp"
	if v == 6 {
		icmp = "icmpv6"
	}
	switch l4 {
	case flowPorts:
		a, b := uint32(0), uint32(2)
		if rev {
			a, b = 2, 0
		}
		ex = append(ex, th(a, 2, reg32+proto+1), th(b, 2, reg32+proto+2))
		text += map[bool]string{false: " . th sport . th dport", true: " . th dport . th sport"}[rev]
	case flowEcho:
		ex = append(ex, th(4, 2, reg32+proto+1), th(0, 1, reg32+proto+2))
		text += fmt.Sprintf(" . %s id . %s type", icmp, icmp)
	case flowEchoRev:
		req, _ := echoTypes(v)
		ex = append(ex, th(4, 2, reg32+proto+1), &expr.Immediate{Register: reg32 + proto + 2, Data: []byte{req, 0, 0, 0}})
		text += fmt.Sprintf(" . %s id . %d", icmp, req)
	}
	return ex, text
}

func flowSet(v int) string {
	if v == 6 {
		return setFlows6
	}
	return setFlows4
}

// nft's way of writing a timeout.
func durText(d time.Duration) string {
	switch {
	case d%time.Second != 0:
		return fmt.Sprintf("%dms", d/time.Millisecond)
	case d%time.Hour == 0:
		return fmt.Sprintf("%dh", d/time.Hour)
	case d%time.Minute == 0:
		return fmt.Sprintf("%dm", d/time.Minute)
	}
	return fmt.Sprintf("%ds", d/time.Second)
}

const dynsetUpdate = 1 // NFT_DYNSET_OP_UPDATE: add, or refresh the timeout

// fFlowHit matches a packet whose flow key (rev: reverse key) is in the
// flow set, and refreshes that element's timeout.
func fFlowHit(v int, rev bool, l4 flowL4, timeout time.Duration) frag {
	set := flowSet(v)
	ex, key := flowKey(v, rev, l4)
	ex = append(ex,
		&expr.Lookup{SourceRegister: reg32, SetName: set},
		&expr.Dynset{SrcRegKey: reg32, SetName: set, Operation: dynsetUpdate, Timeout: timeout})
	return frag{fmt.Sprintf("%s @%s update @%s { %s timeout %s }", key, set, set, key, durText(timeout)), ex}
}

// fFlowRecord remembers the packet's flow (or refreshes it).
func fFlowRecord(v int, l4 flowL4, timeout time.Duration) frag {
	set := flowSet(v)
	ex, key := flowKey(v, false, l4)
	ex = append(ex, &expr.Dynset{SrcRegKey: reg32, SetName: set, Operation: dynsetUpdate, Timeout: timeout})
	return frag{fmt.Sprintf("update @%s { %s timeout %s }", set, key, durText(timeout)), ex}
}

// fTCPFlagsMask matches TCP segments whose flags & mask == val.
func fTCPFlagsMask(mask, val byte, text string) frag {
	return frag{text, []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{mask}, Xor: []byte{0}},
		cmpEq(reg1, []byte{val}),
	}}
}

const tcpFIN, tcpSYN, tcpRST, tcpACK = 0x01, 0x02, 0x04, 0x10

func fTCPOpen() frag { return fTCPFlagsMask(tcpFIN|tcpRST, 0, "tcp flags & (fin | rst) == 0x0") }

func fICMPType(v int, t uint8) frag {
	name := "icmp"
	if v == 6 {
		name = "icmpv6"
	}
	return frag{fmt.Sprintf("%s type %d", name, t), []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		cmpEq(reg1, []byte{t}),
	}}
}

func icmpProto(v int) uint8 {
	if v == 6 {
		return 58
	}
	return 1
}

// flowChains are the fast path and the recording of the reflexive mode
// (bridge table without nf_conntrack_bridge).
func flowChains(o buildOpts) []*Chain {
	var fast, rec []Rule
	done := accept()
	for _, v := range []int{4, 6} {
		ip := fNfproto(Bridge, v)
		req, reply := echoTypes(v)
		hit := func(fr ...frag) Rule {
			if o.twoStage {
				// the dispatch id of the sender is in the secmark: put
				// the packet's back
				fr = append(fr, fSetSecmark0())
			}
			return Rule{frags: append([]frag{ip}, fr...), verdict: done}
		}
		fast = append(fast,
			hit(fL4proto(6), fTCPOpen(), fFlowHit(v, true, flowPorts, flowTCP)),
			hit(fL4proto(6), fTCPOpen(), fFlowHit(v, false, flowPorts, flowTCP)),
			hit(fL4proto(6), fFlowHit(v, true, flowPorts, flowClose)),
			hit(fL4proto(6), fFlowHit(v, false, flowPorts, flowClose)),
			hit(fL4proto(17), fFlowHit(v, true, flowPorts, flowUDP)),
			hit(fL4proto(17), fFlowHit(v, false, flowPorts, flowUDP)),
			hit(fL4proto(icmpProto(v)), fICMPType(v, reply), fFlowHit(v, true, flowEchoRev, flowICMP)),
			hit(fL4proto(icmpProto(v)), fICMPType(v, req), fFlowHit(v, false, flowEcho, flowICMP)),
		)
		rec = append(rec,
			Rule{frags: []frag{ip, fL4proto(6), fTCPOpen(), fFlowRecord(v, flowPorts, flowTCP)}},
			Rule{frags: []frag{ip, fL4proto(17), fFlowRecord(v, flowPorts, flowUDP)}},
			Rule{frags: []frag{ip, fL4proto(icmpProto(v)), fICMPType(v, req), fFlowRecord(v, flowEcho, flowICMP)}},
		)
	}
	return []*Chain{
		{ID: ChainRef{Bridge, chainFlowFast}, Rules: fast},
		{ID: ChainRef{Bridge, chainFlowRecord}, Rules: rec},
	}
}

// fEtherType matches the frame's own ethertype: a VLAN-tagged frame has
// the tag's (nft reads the tag back even when the NIC took it off).
func fEtherType(v int) frag {
	et, name := uint16(unix.ETH_P_IP), "ip"
	if v == 6 {
		et, name = unix.ETH_P_IPV6, "ip6"
	}
	return frag{"ether type " + name, []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		cmpEq(reg1, []byte{byte(et >> 8), byte(et)}),
	}}
}

// toInetChain lets go the bridged IP frames br_netfilter passes to the
// inet forward hook, where table inet mud judges them with conntrack (see
// bridgeNF.toInet): those of an IP version left to the inet table,
// untagged at the forward hook (tagged or not with
// bridge-nf-filter-vlan-tagged).
func toInetChain(o buildOpts) *Chain {
	var rules []Rule
	for i, v := range []int{4, 6} {
		if !o.bridgeNF.toInet(i) {
			continue
		}
		f := fEtherType(v)
		if o.bridgeNF.VLAN {
			f = fNfproto(Bridge, v)
		}
		rules = append(rules, Rule{frags: []frag{f}, verdict: accept()})
	}
	return &Chain{ID: ChainRef{Bridge, chainToInet}, Rules: rules}
}

// flowSetDefs are the flow sets of the bridge table (reflexive mode).
func flowSetDefs(size uint32) []Set {
	var defs []Set
	for _, v := range []int{4, 6} {
		ip, key := "ipv4_addr", KeyFlow4
		if v == 6 {
			ip, key = "ipv6_addr", KeyFlow6
		}
		defs = append(defs, Set{Name: flowSet(v), Key: key, Dynamic: true, Timeout: true, Size: size,
			decl: fmt.Sprintf("type ether_addr . ether_addr . %s . %s . inet_proto . inet_service . inet_service /* listed as raw bytes */; size %d; flags dynamic, timeout", ip, ip, size)})
	}
	return defs
}
