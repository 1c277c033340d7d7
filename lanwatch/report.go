package lanwatch

import (
	"fmt"
	"slices"
	"strings"
)

// Severity ranks a finding.
type Severity string

const (
	// Info is a fact about a port that costs no enforcement: traffic the
	// kernel drops before mudd's rules see it, a flag worth knowing.
	Info Severity = "info"
	// Warning is traffic that may pass without mudd's rules, or a setting
	// that could not be read: lateral rules may not apply.
	Warning Severity = "warning"
	// Error is traffic that passes without mudd's rules: lateral rules do
	// not apply to it.
	Error Severity = "error"
)

func (s Severity) rank() int {
	switch s {
	case Error:
		return 2
	case Warning:
		return 1
	}
	return 0
}

// Finding is one thing found about a LAN interface or one of its bridge
// ports: what it means for lateral enforcement, and how to change it.
type Finding struct {
	Severity Severity `json:"severity"`
	// Text says what happens to lateral traffic, naming the interface.
	Text string `json:"text"`
	// Fix says what to configure instead; empty when nothing needs to
	// change.
	Fix string `json:"fix,omitempty"`
}

// String is the finding on one line: the text, and the fix in parentheses.
func (f Finding) String() string {
	if f.Fix == "" {
		return f.Text
	}
	return f.Text + " (" + f.Fix + ")"
}

// Kind is what a bridge port is.
type Kind string

// Port kinds. Link kinds the package does not name (IFLA_INFO_KIND, such as
// "vxlan" or "gretap") are reported as they are.
const (
	KindEthernet  Kind = "ethernet"     // a network card of its own
	KindVeth      Kind = "veth"         // one end of a virtual Ethernet pair
	KindVLAN      Kind = "vlan"         // an 802.1Q device on top of another
	KindBond      Kind = "bond"         // several links bonded into one
	KindDSA       Kind = "dsa"          // a port of a DSA switch
	KindSwitchdev Kind = "switchdev"    // a port of another hardware switch
	KindWiFiAP    Kind = "wifi-ap"      // a Wi-Fi access point (or P2P group owner)
	KindWiFiAPVLN Kind = "wifi-ap-vlan" // one station, or a 4-address peer, of an access point
	KindWiFiSTA   Kind = "wifi-station" // a Wi-Fi client of another access point
	KindWiFiMesh  Kind = "wifi-mesh"    // an 802.11s mesh point
	KindWiFiAdhoc Kind = "wifi-adhoc"   // an IBSS (ad-hoc) member
	KindWiFiWDS   Kind = "wifi-wds"     // a WDS peer link
	KindWiFi      Kind = "wifi"         // another Wi-Fi interface type
	KindOther     Kind = "other"        // neither Ethernet nor a named link kind
)

// Port is one bridge port as inspected.
type Port struct {
	Name string `json:"name"`
	Kind Kind   `json:"kind"`
	// Flags are the bridge port flags that matter for lateral traffic and
	// are on (isolated, hairpin, proxy_arp, proxy_arp_wifi) or off
	// (learning off, flood off), as `bridge -d link` would name them.
	Flags    []string  `json:"flags,omitempty"`
	Findings []Finding `json:"findings,omitempty"`
}

// LAN is one configured LAN interface: a bridge and its ports, or a plain
// interface.
type LAN struct {
	Name     string    `json:"name"`
	Exists   bool      `json:"exists"`
	Bridge   bool      `json:"bridge"`
	Findings []Finding `json:"findings,omitempty"`
	Ports    []Port    `json:"ports,omitempty"`
}

// Report is what the inspection of the LAN interfaces found.
type Report struct {
	LANs []LAN `json:"lans"`
}

// Worst is the highest severity of any finding (Info when there is none).
func (r Report) Worst() Severity {
	worst := Info
	r.each(func(f Finding) {
		if f.Severity.rank() > worst.rank() {
			worst = f.Severity
		}
	})
	return worst
}

// Summary is one line for each warning and error, worst first: what is not
// enforced, and how to fix it.
func (r Report) Summary() []string {
	var errs, warns []string
	r.each(func(f Finding) {
		switch f.Severity {
		case Error:
			errs = append(errs, f.String())
		case Warning:
			warns = append(warns, f.String())
		}
	})
	return append(errs, warns...)
}

func (r Report) each(fn func(Finding)) {
	for _, l := range r.LANs {
		for _, f := range l.Findings {
			fn(f)
		}
		for _, p := range l.Ports {
			for _, f := range p.Findings {
				fn(f)
			}
		}
	}
}

// String is the report as text: each LAN, each port with its kind and
// flags, each finding on a line of its own.
func (r Report) String() string {
	var b strings.Builder
	for _, l := range r.LANs {
		switch {
		case !l.Exists:
			fmt.Fprintf(&b, "%s: missing\n", l.Name)
		case l.Bridge:
			plural := "s"
			if len(l.Ports) == 1 {
				plural = ""
			}
			fmt.Fprintf(&b, "%s: bridge, %d port%s\n", l.Name, len(l.Ports), plural)
		default:
			fmt.Fprintf(&b, "%s: not a bridge\n", l.Name)
		}
		for _, f := range l.Findings {
			fmt.Fprintf(&b, "  %s: %s\n", f.Severity, f)
		}
		for _, p := range l.Ports {
			fmt.Fprintf(&b, "  %s (%s", p.Name, p.Kind)
			if len(p.Flags) > 0 {
				fmt.Fprintf(&b, "; %s", strings.Join(p.Flags, ", "))
			}
			b.WriteString(")\n")
			for _, f := range p.Findings {
				fmt.Fprintf(&b, "    %s: %s\n", f.Severity, f)
			}
		}
	}
	return b.String()
}

// Equal reports whether two reports say the same.
func (r Report) Equal(o Report) bool {
	return slices.EqualFunc(r.LANs, o.LANs, func(a, b LAN) bool {
		return a.Name == b.Name && a.Exists == b.Exists && a.Bridge == b.Bridge &&
			slices.Equal(a.Findings, b.Findings) &&
			slices.EqualFunc(a.Ports, b.Ports, func(p, q Port) bool {
				return p.Name == q.Name && p.Kind == q.Kind && slices.Equal(p.Flags, q.Flags) &&
					slices.Equal(p.Findings, q.Findings)
			})
	})
}
