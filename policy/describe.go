package policy

import (
	"fmt"
	"strings"

	"github.com/openmud/mud/mudfile"
)

var protoNames = map[uint8]string{ProtoICMP: "ICMP", ProtoTCP: "TCP", ProtoUDP: "UDP", ProtoICMPv6: "ICMPv6"}

func protoName(p uint8) string {
	if n, ok := protoNames[p]; ok {
		return n
	}
	return fmt.Sprintf("IP protocol %d", p)
}

// PeerPhrase names a peer for a person.
func PeerPhrase(p Peer) string {
	switch p.Kind {
	case AnyPeer:
		return "any host"
	case DNSName:
		return p.Value
	case Manufacturer:
		return "devices of manufacturer " + p.Value
	case Model:
		return "devices of the model " + p.Value
	case Controller:
		switch p.Value {
		case ControllerDNS:
			return "the local DNS servers"
		case ControllerNTP:
			return "the local NTP servers"
		}
		return "the controllers of class " + p.Value + " (as the administrator maps them)"
	case MyController:
		return "its controller (as the administrator maps it)"
	case LocalNetworks:
		return "the local networks"
	case Prefix:
		if p.Prefix.IsSingleIP() {
			return "the address " + p.Prefix.Addr().String()
		}
		return "the addresses " + p.Prefix.String()
	}
	return p.String()
}

// portPhrase describes a port range: "port 443", "ports 8000-8080",
// "any port but 23".
func portPhrase(pr *PortRange) string {
	switch {
	case pr.Negate:
		return fmt.Sprintf("any port but %d", pr.First)
	case pr.First == pr.Last:
		return fmt.Sprintf("port %d", pr.First)
	case pr.First == 0 && pr.Last == 65535:
		return "any port"
	}
	return fmt.Sprintf("ports %d-%d", pr.First, pr.Last)
}

// Describe says in plain words what a rule of direction d permits or
// forbids, with the device as the subject, e.g. "may open TCP connections
// to port 443 of test.example.com".
func Describe(d Direction, r Rule) string {
	var b strings.Builder
	if r.Verdict == Drop {
		b.WriteString("may not ")
	} else {
		b.WriteString("may ")
	}
	peer := PeerPhrase(r.Peer)
	// remotePort is the port on the peer's side, localPort the device's.
	remotePort, localPort := r.DstPort, r.SrcPort
	if d == ToDevice {
		remotePort, localPort = r.SrcPort, r.DstPort
	}
	tcp := r.Protocol == ProtoTCP
	switch {
	case tcp && r.Initiated == InitiatedFromDevice && d == FromDevice:
		b.WriteString("open TCP connections to ")
	case tcp && r.Initiated == InitiatedFromDevice && d == ToDevice:
		b.WriteString("receive TCP replies, on connections it opened, from ")
	case tcp && r.Initiated == InitiatedToDevice && d == ToDevice:
		b.WriteString("accept TCP connections from ")
	case tcp && r.Initiated == InitiatedToDevice && d == FromDevice:
		b.WriteString("answer TCP connections opened by ")
	default:
		verb := "send "
		if d == ToDevice {
			verb = "receive "
		}
		b.WriteString(verb)
		switch {
		case r.Protocol == 0:
			b.WriteString("any traffic")
		default:
			b.WriteString(protoName(r.Protocol))
		}
		if r.ICMP != nil {
			fmt.Fprintf(&b, " type %d", r.ICMP.Type)
			if r.ICMP.Code != nil {
				fmt.Fprintf(&b, " code %d", *r.ICMP.Code)
			}
		}
		if d == ToDevice {
			b.WriteString(" from ")
		} else {
			b.WriteString(" to ")
		}
	}
	if remotePort != nil {
		b.WriteString(portPhrase(remotePort) + " of ")
	}
	b.WriteString(peer)
	if localPort != nil {
		fmt.Fprintf(&b, ", on its own %s", portPhrase(localPort))
	}
	if len(r.Fields) > 0 {
		var fs []string
		for _, f := range r.Fields {
			fs = append(fs, FieldPhrase(f))
		}
		b.WriteString(", with " + strings.Join(fs, ", "))
	}
	if r.Family != AnyFamily {
		fmt.Fprintf(&b, " (%s only)", map[Family]string{IPv4: "IPv4", IPv6: "IPv6"}[r.Family])
	}
	return b.String()
}

var fieldFormats = map[Field]string{
	FieldDSCP: "DSCP %d", FieldECN: "ECN %d", FieldIHL: "an IPv4 header of %d words",
	FieldIdentification: "IPv4 identification %d", FieldFlowLabel: "flow label %d",
	FieldTCPSeq: "TCP sequence number %d", FieldTCPAck: "TCP acknowledgement number %d",
	FieldTCPDataOffset: "a TCP header of %d words", FieldTCPReserved: "TCP reserved bits %d",
	FieldTCPWindow: "TCP window %d", FieldTCPUrgent: "TCP urgent pointer %d",
}

// FieldPhrase says what a header field match requires, e.g. "TCP flags
// exactly syn".
func FieldPhrase(f FieldMatch) string {
	bits := func(names []string) string {
		var set []string
		for i, n := range names {
			if f.Value&(1<<(len(names)-1-i)) != 0 {
				set = append(set, n)
			}
		}
		if len(set) == 0 {
			return "none"
		}
		return strings.Join(set, " ")
	}
	switch f.Field {
	case FieldIPv4Flags:
		return "IPv4 flags exactly " + bits([]string{"reserved", "fragment", "more", "", "", "", "", ""})
	case FieldTCPFlags:
		return "TCP flags exactly " + bits([]string{"cwr", "ece", "urg", "ack", "psh", "rst", "syn", "fin"})
	case FieldTCPOptions:
		return fmt.Sprintf("TCP options %x", f.Bytes)
	}
	if format, ok := fieldFormats[f.Field]; ok {
		return fmt.Sprintf(format, f.Value)
	}
	return fmt.Sprintf("%s %d", f.Field, f.Value)
}

// Explain gives the whole policy in plain words, with what the file says
// about the device (RFC 8520 §7: systeminfo, documentation, is-supported;
// documentation is shown, never fetched).
func Explain(f *mudfile.File, p *Policy) string {
	var b strings.Builder
	m := f.MUD
	title := m.SystemInfo
	if title == "" {
		title = "(no systeminfo)"
	}
	fmt.Fprintf(&b, "%s\n", title)
	fmt.Fprintf(&b, "  MUD URL:        %s\n", p.MUDURL)
	if m.MfgName != "" || m.ModelName != "" {
		fmt.Fprintf(&b, "  Made by:        %s\n", strings.TrimSpace(m.MfgName+" "+m.ModelName))
	}
	for _, kv := range [][2]string{{"Firmware", m.FirmwareRev}, {"Software", m.SoftwareRev}, {"Documentation", m.Documentation}, {"Signature", m.Signature}} {
		if kv[1] != "" {
			fmt.Fprintf(&b, "  %-15s %s\n", kv[0]+":", kv[1])
		}
	}
	if !m.LastUpdate.IsZero() {
		fmt.Fprintf(&b, "  Last update:    %s\n", m.LastUpdate.Format("2006-01-02 15:04:05 -07:00"))
	}
	fmt.Fprintf(&b, "  Cache validity: %d hours\n", m.CacheValidity)
	if m.IsSupported {
		b.WriteString("  Supported:      yes\n")
	} else {
		b.WriteString("  Supported:      NO: the manufacturer no longer updates this device or its MUD file\n")
	}
	if len(m.Extensions) > 0 {
		fmt.Fprintf(&b, "  Extensions:     %s\n", strings.Join(m.Extensions, ", "))
	}
	if t := m.Transparency; t != nil {
		b.WriteString("  Transparency (RFC 9472):\n")
		for _, s := range t.SBOMs {
			fmt.Fprintf(&b, "    SBOM for %s: %s\n", s.VersionInfo, s.SBOMURL)
		}
		for _, kv := range [][2]string{{"SBOM on the device (.well-known/sbom over)", t.SBOMLocalWellKnown}, {"SBOM contact", t.SBOMContactURI}, {"SBOM archive", t.SBOMArchiveList}, {"Vulnerability contact", t.VulnContactURI}} {
			if kv[1] != "" {
				fmt.Fprintf(&b, "    %s: %s\n", kv[0], kv[1])
			}
		}
		for _, u := range t.VulnURLs {
			fmt.Fprintf(&b, "    Vulnerability information: %s\n", u)
		}
	}
	if m.TLSProfileSupported != nil {
		fmt.Fprintf(&b, "  TLS profiles (RFC 9761): %v (not enforced)\n", *m.TLSProfileSupported)
	}
	b.WriteString("\nThe device:\n")
	for _, d := range []Direction{FromDevice, ToDevice} {
		for _, r := range p.Rules(d) {
			if r.Default {
				continue
			}
			fmt.Fprintf(&b, "  - %s  [%s]\n", Describe(d, r), r.Name)
		}
	}
	b.WriteString("  - may use the local DNS and NTP servers (RFC 8520 defaults, unless dropped above)\n")
	b.WriteString("  - may do nothing else: everything not listed is dropped\n")
	writeNotes(&b, p)
	return b.String()
}

func writeNotes(b *strings.Builder, p *Policy) {
	if len(p.NeedsApproval) > 0 {
		b.WriteString("\nNeeds an administrator's approval before enforcement:\n")
		for _, s := range p.NeedsApproval {
			fmt.Fprintf(b, "  - %s\n", s)
		}
	}
	if len(p.Notes) > 0 {
		b.WriteString("\nDifferences from the file:\n")
		for _, s := range p.Notes {
			fmt.Fprintf(b, "  - %s\n", s)
		}
	}
}

// Text renders the policy as an enforcer would read it: one line per rule,
// in order, per direction, ending in the implicit drop.
func Text(p *Policy) string {
	var b strings.Builder
	fmt.Fprintf(&b, "policy %s  %s\n", p.ID, p.MUDURL)
	for _, d := range []Direction{FromDevice, ToDevice} {
		fmt.Fprintf(&b, "\n%s:\n", d)
		for i, r := range p.Rules(d) {
			fmt.Fprintf(&b, "  %3d  %s\n", i+1, ruleLine(r))
		}
		fmt.Fprintf(&b, "  %3s  drop  (everything else)\n", "-")
	}
	writeNotes(&b, p)
	return b.String()
}

func ruleLine(r Rule) string {
	parts := []string{fmt.Sprintf("%-6s", r.Verdict), r.Family.String(), "peer=" + r.Peer.String()}
	if r.Protocol != 0 {
		parts = append(parts, "proto="+strings.ToLower(protoName(r.Protocol)))
	}
	for _, pp := range []struct {
		name string
		pr   *PortRange
	}{{"sport", r.SrcPort}, {"dport", r.DstPort}} {
		if pp.pr == nil {
			continue
		}
		s := fmt.Sprintf("%d", pp.pr.First)
		if pp.pr.Last != pp.pr.First {
			s += fmt.Sprintf("-%d", pp.pr.Last)
		}
		if pp.pr.Negate {
			s = "!=" + s
		}
		parts = append(parts, pp.name+"="+s)
	}
	if r.ICMP != nil {
		s := fmt.Sprintf("icmp-type=%d", r.ICMP.Type)
		if r.ICMP.Code != nil {
			s += fmt.Sprintf(" icmp-code=%d", *r.ICMP.Code)
		}
		parts = append(parts, s)
	}
	if r.Initiated != NoInitiator {
		parts = append(parts, "initiated="+r.Initiated.String())
	}
	line := strings.Join(parts, " ") + "  [" + r.Name + "]"
	if r.Default {
		line += " (default)"
	}
	return line
}
