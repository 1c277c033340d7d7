package lanwatch

import (
	"fmt"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// Tristate is a setting that may not be known.
type Tristate int8

const (
	Unknown Tristate = iota
	Off
	On
)

func (t Tristate) String() string {
	switch t {
	case Off:
		return "off"
	case On:
		return "on"
	}
	return "unknown"
}

// WiFiFacts is what nl80211 and the access point's configuration say about
// a Wi-Fi interface.
type WiFiFacts struct {
	// IfType is the nl80211 interface type (NL80211_IFTYPE_*); 0 when the
	// interface is not a Wi-Fi interface (or nl80211 is absent).
	IfType uint32
	// Isolate is client isolation of an access point: On when it passes
	// frames between its stations up to the bridge instead of forwarding
	// them itself (hostapd ap_isolate=1; mac80211's DONT_BRIDGE_PACKETS).
	Isolate Tristate
	// IsolateSource names where Isolate was read (a file), for the report.
	IsolateSource string
}

// PortFacts is what the kernel says about one bridge port: the input of
// the decisions, gathered by Watcher (or given by a test).
type PortFacts struct {
	Name     string
	Index    int
	LinkKind string // IFLA_INFO_KIND ("veth", "vlan", "dsa", ...); "" for a plain device
	Ether    bool   // link type Ethernet (ARPHRD_ETHER)
	// SwitchID is the hardware switch the port belongs to
	// (IFLA_PHYS_SWITCH_ID, hex); "" when it belongs to none.
	SwitchID string
	WiFi     WiFiFacts
	// Bridge port flags (IFLA_PROTINFO).
	Isolated, Hairpin, Learning, UnicastFlood, ProxyARP, ProxyARPWiFi bool
	// XDP is true when an XDP program is attached to the port.
	XDP bool
	// TCIngress counts the tc filters on the port's ingress (an ingress or
	// clsact qdisc).
	TCIngress int
	// MACs counts the distinct unicast addresses the bridge learnt behind
	// the port (dynamic forwarding entries).
	MACs int
}

// LANFacts is one configured LAN interface and, if it is a bridge, its
// ports.
type LANFacts struct {
	Name   string
	Exists bool
	Bridge bool
	Ports  []PortFacts
}

// Kind classifies the port.
func (p PortFacts) Kind() Kind {
	if p.WiFi.IfType != unix.NL80211_IFTYPE_UNSPECIFIED {
		switch p.WiFi.IfType {
		case unix.NL80211_IFTYPE_AP, unix.NL80211_IFTYPE_P2P_GO:
			return KindWiFiAP
		case unix.NL80211_IFTYPE_AP_VLAN:
			return KindWiFiAPVLN
		case unix.NL80211_IFTYPE_STATION, unix.NL80211_IFTYPE_P2P_CLIENT:
			return KindWiFiSTA
		case unix.NL80211_IFTYPE_MESH_POINT:
			return KindWiFiMesh
		case unix.NL80211_IFTYPE_ADHOC:
			return KindWiFiAdhoc
		case unix.NL80211_IFTYPE_WDS:
			return KindWiFiWDS
		}
		return KindWiFi
	}
	switch p.LinkKind {
	case "dsa":
		return KindDSA
	case "veth":
		return KindVeth
	case "vlan":
		return KindVLAN
	case "bond":
		return KindBond
	case "":
		switch {
		case p.SwitchID != "":
			return KindSwitchdev
		case p.Ether:
			return KindEthernet
		}
		return KindOther
	}
	return Kind(p.LinkKind)
}

// switchPort reports whether the port is a port of a hardware switch.
func (p PortFacts) switchPort() bool { return p.SwitchID != "" || p.LinkKind == "dsa" }

func (p PortFacts) flags() []string {
	var f []string
	add := func(on bool, name string) {
		if on {
			f = append(f, name)
		}
	}
	add(p.Isolated, "isolated")
	add(p.Hairpin, "hairpin")
	add(p.ProxyARP, "proxy_arp")
	add(p.ProxyARPWiFi, "proxy_arp_wifi")
	add(!p.Learning, "learning off")
	add(!p.UnicastFlood, "flood off")
	return f
}

// Decide turns the facts about one LAN interface into its part of the
// Report. It is the whole of the package's judgement, and depends on
// nothing but its argument.
func Decide(l LANFacts) LAN {
	out := LAN{Name: l.Name, Exists: l.Exists, Bridge: l.Bridge}
	switch {
	case !l.Exists:
		out.Findings = append(out.Findings, Finding{Severity: Warning,
			Text: fmt.Sprintf("LAN interface %s does not exist: it has no prefixes and no ports to inspect", l.Name),
			Fix:  "create it, or remove it from interfaces in mudd.yaml"})
		return out
	case !l.Bridge:
		out.Findings = append(out.Findings, Finding{Severity: Warning,
			Text: fmt.Sprintf("lateral traffic on %s is not enforced: %s is not a bridge, so devices on it reach each other "+
				"through what it is plugged into (a switch, an access point), never through the gateway", l.Name, l.Name),
			Fix: "make the LAN a bridge on the gateway, with each device, or each access point with client isolation, on a port of its own"})
		return out
	case len(l.Ports) == 0:
		out.Findings = append(out.Findings, Finding{Severity: Info, Text: fmt.Sprintf("bridge %s has no ports", l.Name)})
		return out
	}
	ports := slices.Clone(l.Ports)
	slices.SortFunc(ports, func(a, b PortFacts) int { return strings.Compare(a.Name, b.Name) })
	out.Findings = append(out.Findings, switchFindings(ports)...)
	var isolated []string
	for _, p := range ports {
		if p.Isolated {
			isolated = append(isolated, p.Name)
		}
	}
	for _, p := range ports {
		out.Ports = append(out.Ports, Port{Name: p.Name, Kind: p.Kind(), Flags: p.flags(), Findings: portFindings(p, isolated)})
	}
	return out
}

// switchFindings: ports of one hardware switch forward between themselves
// in the switch, unless both are isolated.
func switchFindings(ports []PortFacts) []Finding {
	groups := map[string][]PortFacts{}
	var ids []string
	for _, p := range ports {
		if !p.switchPort() {
			continue
		}
		if _, ok := groups[p.SwitchID]; !ok {
			ids = append(ids, p.SwitchID)
		}
		groups[p.SwitchID] = append(groups[p.SwitchID], p)
	}
	slices.Sort(ids)
	var out []Finding
	for _, id := range ids {
		g := groups[id]
		if len(g) < 2 {
			continue
		}
		var names, open []string
		for _, p := range g {
			names = append(names, p.Name)
			if !p.Isolated {
				open = append(open, p.Name)
			}
		}
		which := "their switch (switch id " + id + ")"
		if id == "" {
			which = "their DSA switch (the kernel gives no switch id, so one switch is assumed)"
		}
		if len(open) == 0 {
			out = append(out, Finding{Severity: Info,
				Text: fmt.Sprintf("traffic between %s is dropped by %s: the ports are isolated, so MUD rules that allow it cannot take effect "+
					"(DSA drivers refuse isolation they cannot do in hardware; other switch drivers may only isolate in software)", list(names), which)})
			continue
		}
		out = append(out, Finding{Severity: Error,
			Text: fmt.Sprintf("lateral traffic between %s is not enforced: %s forwards it in hardware without the bridge", list(names), which),
			Fix: fmt.Sprintf("isolate %s so that the switch drops that traffic instead: bridge link set dev PORT isolated on, "+
				"OpenWrt option isolate '1' in each port's device section; devices that may talk to each other under MUD rules "+
				"need ports on different switches", list(open))})
	}
	return out
}

func portFindings(p PortFacts, isolated []string) []Finding {
	var out []Finding
	add := func(s Severity, fix, format string, args ...any) {
		out = append(out, Finding{Severity: s, Text: fmt.Sprintf(format, args...), Fix: fix})
	}
	n := p.Name
	kind := p.Kind()
	switch kind {
	case KindWiFiAP:
		out = append(out, apFindings(p)...)
	case KindWiFiAPVLN:
		add(Info, "", "%s carries one station (or one 4-address peer) of an access point: its traffic to other ports crosses the bridge", n)
	case KindWiFiSTA:
		add(Warning, "connect MUD devices to an access point of this gateway",
			"lateral traffic behind %s is not enforced: %s is a Wi-Fi client of another access point, whose devices reach each other there", n, n)
	case KindWiFiMesh:
		add(Warning, "enforce on each mesh node, or keep MUD devices off the mesh",
			"lateral traffic behind %s is not enforced: it is an 802.11s mesh point, and mesh nodes forward between their clients without this bridge", n)
	case KindWiFiAdhoc, KindWiFiWDS:
		add(Warning, "keep MUD devices off it",
			"lateral traffic behind %s is not enforced: it is a %s link, whose peers reach each other directly", n, kind)
	}
	if p.Isolated {
		if others := slices.DeleteFunc(slices.Clone(isolated), func(s string) bool { return s == n }); len(others) > 0 {
			add(Info, "", "%s is isolated: the bridge drops traffic between it and %s before mudd's rules see it, "+
				"so MUD rules that allow such traffic cannot take effect", n, list(others))
		} else {
			add(Info, "", "%s is isolated, but no other port is: the isolation has no effect", n)
		}
	}
	if !p.Learning {
		add(Info, "", "%s does not learn addresses: the bridge floods frames to it, and which devices are behind it is unknown", n)
	}
	if p.XDP {
		add(Warning, fmt.Sprintf("check it with ip -d link show dev %s or bpftool net show dev %s, or detach it", n, n),
			"an XDP program is attached to %s: it can forward or drop frames before the bridge and mudd's rules see them", n)
	}
	if p.TCIngress > 0 {
		add(Warning, fmt.Sprintf("check them with tc filter show dev %s ingress", n),
			"%s has tc ingress filters: they can redirect frames past the bridge and mudd's rules (OpenWrt's bridger offload does)", n)
	}
	if p.MACs > 1 && kind != KindWiFiAP {
		add(Warning, "give each MUD device a bridge port of its own, or isolate the devices on the switch or access point behind this port",
			"lateral traffic behind %s is not enforced: more than one device was seen behind it, and traffic between them stays "+
				"on their own segment (a switch or access point beyond the gateway) without reaching the bridge", n)
	}
	return out
}

func apFindings(p PortFacts) []Finding {
	n := p.Name
	isolation := "enable client isolation: hostapd ap_isolate=1, OpenWrt option isolate '1' in the wifi-iface"
	hairpin := fmt.Sprintf("hairpin on the bridge port: bridge link set dev %s hairpin on", n)
	fix := isolation + "; and " + hairpin
	if p.Hairpin {
		fix = isolation
	}
	switch p.WiFi.Isolate {
	case Off:
		return []Finding{{Severity: Error, Fix: fix,
			Text: fmt.Sprintf("lateral traffic between clients of %s is not enforced: the access point forwards it itself", n)}}
	case Unknown:
		return []Finding{{Severity: Warning, Fix: fix,
			Text: fmt.Sprintf("lateral traffic between clients of %s may not be enforced: whether the access point forwards it itself "+
				"(client isolation) could not be read from mac80211's debugfs or a hostapd configuration file", n)}}
	}
	if p.Hairpin {
		return []Finding{{Severity: Info,
			Text: fmt.Sprintf("lateral traffic between clients of %s goes through the bridge: the access point isolates its clients "+
				"(%s) and the port has hairpin on", n, p.WiFi.IsolateSource)}}
	}
	return []Finding{{Severity: Info, Fix: "to enforce it rather than drop it: " + hairpin,
		Text: fmt.Sprintf("traffic between clients of %s is dropped: the access point isolates them (%s) and the bridge port has hairpin off, "+
			"so MUD rules that allow it cannot take effect", n, p.WiFi.IsolateSource)}}
}

// list joins names as "a", "a and b", "a, b and c".
func list(names []string) string {
	switch len(names) {
	case 0:
		return ""
	case 1:
		return names[0]
	}
	return strings.Join(names[:len(names)-1], ", ") + " and " + names[len(names)-1]
}
