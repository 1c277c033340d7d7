package plan

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables/expr"
)

// Per-device accounting (Config.DeviceCounters): what each MUD device sent
// and was sent, as our tables judged it, and what of that they dropped,
// without an element or a rule per device. Each table has dynamic sets
// with a counter per element, which the packet path fills: the first
// packet of a device adds its element (its MAC, or for traffic to it in
// table inet, its address: the routed path has no Ethernet destination
// yet), the next ones count on it. Plans never touch them (so a full apply
// costs what it cost without them), repair does not compare them, and the
// kernel holds an element only for a device or address that sent or was
// sent something since the tables were last built.
//
// Counting points: the first rules of the base chains count every packet
// from a device (ether saddr in from_dev) and to one (the to-device maps)
// in acct_*, before the established fast path; the shared default-deny
// chains (deny_out, deny_in, which every policy's default deny, the
// quarantine and block chains and cage_in end in) and the source guard's
// drop count in dropc_*. A packet counts once per table that judges it: a
// bridged packet the bridge table hands to table inet (br_netfilter) is
// counted by inet only. Not counted as dropped: a drop ACE of a MUD file,
// conntrack's invalid packets, and a carrier-busy drop.

// acctSetDefs are the accounting sets of a table, each of at most size
// elements (a device or address beyond that is not counted).
func acctSetDefs(f Family, size uint32) []Set {
	set := func(name string, key KeyType, keyText string) Set {
		return Set{Name: name, Key: key, Counter: true, Dynamic: true, Size: size,
			decl: fmt.Sprintf("type %s; size %d; flags dynamic; counter", keyText, size)}
	}
	defs := []Set{set(setAcctOut, KeyMAC, "ether_addr"), set(setDropOut, KeyMAC, "ether_addr")}
	if f == Inet {
		return append(defs, set(setAcctIn4, KeyIPv4, "ipv4_addr"), set(setAcctIn6, KeyIPv6, "ipv6_addr"),
			set(setDropIn4, KeyIPv4, "ipv4_addr"), set(setDropIn6, KeyIPv6, "ipv6_addr"))
	}
	return append(defs, set(setAcctIn, KeyMAC, "ether_addr"), set(setDropIn, KeyMAC, "ether_addr"))
}

// fCount counts the packet on the element of set keyed by what load
// loaded into reg1 (adding the element if it is new).
func fCount(load *expr.Payload, keyText, set string) frag {
	return frag{fmt.Sprintf("update @%s { %s }", set, keyText), []expr.Any{
		load,
		&expr.Dynset{SrcRegKey: reg1, SetName: set, Operation: dynsetUpdate},
	}}
}

// acctRules count the packets of MUD devices at the start of a base
// chain: from a device always; to one in the forward hooks.
func acctRules(f Family, toDevice bool) []Rule {
	from := []frag{fInMap(loadEther(true, reg1), "ether saddr", setFromDev), fCount(loadEther(true, reg1), "ether saddr", setAcctOut)}
	if f == Inet {
		from = append([]frag{fIIFEther()}, from...)
	}
	rules := []Rule{{frags: from}}
	if !toDevice {
		return rules
	}
	if f == Bridge {
		// from_dev holds every device's MAC (to_dev, in direct mode, the same).
		return append(rules, Rule{frags: []frag{fInMap(loadEther(false, reg1), "ether daddr", setFromDev), fCount(loadEther(false, reg1), "ether daddr", setAcctIn)}})
	}
	for _, v := range []int{4, 6} {
		dev, acct := setToDev4, setAcctIn4
		if v == 6 {
			dev, acct = setToDev6, setAcctIn6
		}
		rules = append(rules, Rule{frags: []frag{fNfproto(f, v), fInMap(loadAddr(v, false, reg1), addrText(v, false), dev),
			fCount(loadAddr(v, false, reg1), addrText(v, false), acct)}})
	}
	return rules
}

// dropRules count a packet about to be dropped on its device: the sender
// (out) or the receiver.
func dropRules(f Family, out bool) []Rule {
	var fr []frag
	if out {
		if f == Inet {
			fr = append(fr, fIIFEther())
		}
		return []Rule{{frags: append(fr, fCount(loadEther(true, reg1), "ether saddr", setDropOut))}}
	}
	if f == Bridge {
		return []Rule{{frags: []frag{fCount(loadEther(false, reg1), "ether daddr", setDropIn)}}}
	}
	var rules []Rule
	for _, v := range []int{4, 6} {
		set := setDropIn4
		if v == 6 {
			set = setDropIn6
		}
		rules = append(rules, Rule{frags: []frag{fNfproto(f, v), fCount(loadAddr(v, false, reg1), addrText(v, false), set)}})
	}
	return rules
}

// DeviceCount is what our tables counted for one device: the packets and
// bytes it sent and was sent that they judged, and of those, what they
// dropped. Passed = Sent − SentDropped (and likewise received), but for
// the drops acctRules does not count.
type DeviceCount struct {
	Sent, SentBytes, SentDropped, SentDroppedBytes                 uint64
	Received, ReceivedBytes, ReceivedDropped, ReceivedDroppedBytes uint64
}

// DeviceCounted lists the sets whose element counters DeviceCounters
// needs; none without Config.DeviceCounters.
func (pl *Planner) DeviceCounted() []SetRef {
	if pl.cfg.DeviceCounters == 0 {
		return nil
	}
	var refs []SetRef
	for _, f := range Families {
		for _, s := range acctSetDefs(f, pl.cfg.DeviceCounters) {
			refs = append(refs, SetRef{f, s.Name})
		}
	}
	return refs
}

// DeviceCounters sums the accounting sets' counters (from the sets
// DeviceCounted names) per device of the model, by MAC string: a device's
// addresses count for it while they are bound to it. A device the model
// no longer holds, or an address bound to nobody, is left out.
func (pl *Planner) DeviceCounters(elems map[SetRef][]ElemCount) map[string]DeviceCount {
	out := map[string]DeviceCount{}
	for r, list := range elems {
		for _, ec := range list {
			var mac string
			switch k := ec.Key.(type) {
			case MACKey:
				mac = k.String()
			case AddrKey:
				mac = pl.owner[netip.Addr(k)]
			}
			if pl.m.devices[mac] == nil {
				continue
			}
			c := out[mac]
			switch r.Name {
			case setAcctOut:
				c.Sent += ec.Packets
				c.SentBytes += ec.Bytes
			case setDropOut:
				c.SentDropped += ec.Packets
				c.SentDroppedBytes += ec.Bytes
			case setAcctIn, setAcctIn4, setAcctIn6:
				c.Received += ec.Packets
				c.ReceivedBytes += ec.Bytes
			case setDropIn, setDropIn4, setDropIn6:
				c.ReceivedDropped += ec.Packets
				c.ReceivedDroppedBytes += ec.Bytes
			}
			out[mac] = c
		}
	}
	return out
}
