package policy

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"slices"
	"strings"

	"github.com/openmud/mud/mudfile"
)

// Registered controller classes of the RFC 8520 App. A defaults (§17.6).
const (
	ControllerDNS = "urn:ietf:params:mud:dns"
	ControllerNTP = "urn:ietf:params:mud:ntp"
)

// Context is what the compiler needs to know beyond the file.
type Context struct {
	// MUDURL is the URL the file was fetched from (or that the device
	// announced). Empty means the file's own mud-url, which is canonical
	// (acceptable-urls draft). same-manufacturer, model and my-controller
	// are relative to it.
	MUDURL string
}

// Compile turns a MUD file into a Policy. The file must have been validated
// (mudfile.Result.Valid): Compile trusts its structure but still never
// widens access when an ACE cannot be rendered exactly — such an accept is
// left out, such a drop is rendered without the unrenderable part (it
// drops more), and both are listed in Policy.Notes.
func Compile(f *mudfile.File, ctx Context) (*Policy, error) {
	if f == nil {
		return nil, errors.New("compile: no MUD file")
	}
	mudURL := ctx.MUDURL
	if mudURL == "" {
		mudURL = f.MUD.URL
	}
	u, err := url.Parse(mudURL)
	if err != nil || u.Host == "" {
		return nil, fmt.Errorf("compile: MUD URL %q is not an absolute URL", mudURL)
	}
	c := &compiler{file: f, url: mudURL, authority: strings.ToLower(u.Host)}
	p := &Policy{MUDURL: mudURL}
	p.FromDevice = c.direction(FromDevice, f.MUD.FromDevicePolicy)
	p.ToDevice = c.direction(ToDevice, f.MUD.ToDevicePolicy)
	if c.err != nil {
		return nil, c.err
	}
	p.FromDevice = append(p.FromDevice, defaultRules(FromDevice)...)
	p.ToDevice = append(p.ToDevice, defaultRules(ToDevice)...)
	p.Notes = c.notes
	if len(c.literals) > 0 {
		p.NeedsApproval = append(p.NeedsApproval, fmt.Sprintf("the file contains IP address literals (%s); RFC 8520 §2: not to be enforced without approval", strings.Join(c.literals, ", ")))
	}
	p.ID = policyID(p)
	return p, nil
}

// policyID hashes what an enforcer installs: the URL and the rules. Two
// files that differ only in systeminfo share chains; any change to what is
// allowed gives a new ID.
func policyID(p *Policy) string {
	h := sha256.New()
	fmt.Fprintf(h, "%s\n", p.MUDURL)
	// Marshalling plain structs is deterministic, and cannot fail for them.
	b, _ := json.Marshal([2][]Rule{p.FromDevice, p.ToDevice})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

type compiler struct {
	file      *mudfile.File
	url       string
	authority string
	notes     []string
	literals  []string
	seenLit   map[string]bool
	err       error
}

func (c *compiler) note(format string, args ...any) {
	c.notes = append(c.notes, fmt.Sprintf(format, args...))
}

func (c *compiler) direction(d Direction, names []string) []Rule {
	var out []Rule
	for _, name := range names {
		acl := c.file.ACL(name)
		if acl == nil {
			c.err = fmt.Errorf("compile: %s policy names ACL %q, which the file does not define", d, name)
			return nil
		}
		for _, ace := range acl.ACEs {
			out = append(out, c.ace(d, acl, ace)...)
		}
	}
	return out
}

// ace compiles one ACE into zero, one or two rules (two when an ICMP match
// does not say which IP version it is for).
func (c *compiler) ace(d Direction, acl *mudfile.ACL, ace mudfile.ACE) []Rule {
	name := acl.Name + "/" + ace.Name
	m := ace.Matches
	r := Rule{Name: name, Verdict: Accept}
	switch ace.Action {
	case mudfile.Accept:
	case mudfile.Drop, mudfile.Reject:
		r.Verdict = Drop
	default:
		c.note("%s: no usable action; not installed", name)
		return nil
	}
	var inexact []string
	inexact = append(inexact, m.Unsupported...)

	ip := m.IPv4
	switch {
	case m.IPv4 != nil:
		r.Family = IPv4
	case m.IPv6 != nil:
		r.Family, ip = IPv6, m.IPv6
	case acl.Type == mudfile.IPv4ACL:
		r.Family = IPv4
	case acl.Type == mudfile.IPv6ACL:
		r.Family = IPv6
	}

	// The remote side: destination of packets from the device, source of
	// packets to it.
	var peers []Peer
	if ip != nil {
		remoteName, remoteNet, localNet := ip.DstDNSName, ip.DstNetwork, ip.SrcNetwork
		if d == ToDevice {
			remoteName, remoteNet, localNet = ip.SrcDNSName, ip.SrcNetwork, ip.DstNetwork
		}
		if remoteName != "" {
			if a, err := netip.ParseAddr(remoteName); err == nil {
				peers = append(peers, c.prefixPeer(netip.PrefixFrom(a, a.BitLen())))
			} else {
				peers = append(peers, Peer{Kind: DNSName, Value: remoteName})
			}
		}
		if remoteNet != nil {
			peers = append(peers, c.prefixPeer(*remoteNet))
		}
		if localNet != nil {
			inexact = append(inexact, "the device's own address")
		}
		// Protocol 0 is already listed as unsupported by mudfile: in a
		// Rule, 0 means any protocol.
		if ip.Protocol != nil && *ip.Protocol != 0 {
			r.Protocol = *ip.Protocol
		}
	}
	if mm := m.MUD; mm != nil {
		if mm.Manufacturer != "" {
			peers = append(peers, Peer{Kind: Manufacturer, Value: mm.Manufacturer})
		}
		if mm.SameManufacturer {
			peers = append(peers, Peer{Kind: Manufacturer, Value: c.authority})
		}
		if mm.Model != "" {
			peers = append(peers, Peer{Kind: Model, Value: mm.Model})
		}
		if mm.LocalNetworks {
			peers = append(peers, Peer{Kind: LocalNetworks})
		}
		if mm.Controller != "" {
			peers = append(peers, Peer{Kind: Controller, Value: mm.Controller})
		}
		if mm.MyController {
			peers = append(peers, Peer{Kind: MyController, Value: c.url})
		}
	}
	if len(peers) > 0 {
		r.Peer = peers[0]
	}
	if len(peers) > 1 {
		inexact = append(inexact, fmt.Sprintf("%d remote peers that must all match", len(peers)))
	}

	switch {
	case m.TCP != nil:
		r.Protocol = ProtoTCP
		r.SrcPort, r.DstPort = portRange(m.TCP.SrcPort), portRange(m.TCP.DstPort)
		switch m.TCP.DirectionInitiated {
		case mudfile.FromDevice:
			r.Initiated = InitiatedFromDevice
		case mudfile.ToDevice:
			r.Initiated = InitiatedToDevice
		}
	case m.UDP != nil:
		r.Protocol = ProtoUDP
		r.SrcPort, r.DstPort = portRange(m.UDP.SrcPort), portRange(m.UDP.DstPort)
	case m.ICMP != nil:
		if m.ICMP.Type != nil {
			r.ICMP = &ICMPMatch{Type: *m.ICMP.Type, Code: m.ICMP.Code}
		}
		switch r.Family {
		case IPv4:
			r.Protocol = ProtoICMP
		case IPv6:
			r.Protocol = ProtoICMPv6
		}
	}

	r.Fields = headerFields(m, ip)

	if len(inexact) > 0 {
		if r.Verdict == Accept {
			c.note("%s: not installed: it matches on %s, which cannot be enforced exactly, and installing it without would allow more than the file says", name, strings.Join(inexact, ", "))
			return nil
		}
		c.note("%s: installed without its match on %s, so it drops more than the file says", name, strings.Join(inexact, ", "))
	}
	if m.ICMP != nil && r.Family == AnyFamily {
		v4, v6 := r, r
		v4.Family, v4.Protocol = IPv4, ProtoICMP
		v6.Family, v6.Protocol = IPv6, ProtoICMPv6
		return []Rule{v4, v6}
	}
	return []Rule{r}
}

// headerFields lists the header fields of an ACE's match that are
// enforced (mudfile lists the others in Unsupported, with the reason).
func headerFields(m mudfile.Matches, ip *mudfile.IPMatch) []FieldMatch {
	var out []FieldMatch
	add := func(rel string, f Field, v *uint32, b []byte) {
		if (v == nil && b == nil) || slices.Contains(m.Unsupported, rel) {
			return
		}
		fm := FieldMatch{Field: f, Bytes: b}
		if v != nil {
			fm.Value = *v
		}
		out = append(out, fm)
	}
	u8 := func(p *uint8) *uint32 {
		if p == nil {
			return nil
		}
		v := uint32(*p)
		return &v
	}
	u16 := func(p *uint16) *uint32 {
		if p == nil {
			return nil
		}
		v := uint32(*p)
		return &v
	}
	if ip != nil {
		fam := "ipv4"
		if ip == m.IPv6 {
			fam = "ipv6"
		}
		add(fam+"/dscp", FieldDSCP, u8(ip.DSCP), nil)
		add(fam+"/ecn", FieldECN, u8(ip.ECN), nil)
		add(fam+"/ihl", FieldIHL, u8(ip.IHL), nil)
		add(fam+"/flags", FieldIPv4Flags, u8(ip.Flags), nil)
		add(fam+"/identification", FieldIdentification, u16(ip.Identification), nil)
		add(fam+"/flow-label", FieldFlowLabel, ip.FlowLabel, nil)
		// ttl, length and offset are never enforced (mudfile says why).
	}
	if t := m.TCP; t != nil {
		add("tcp/sequence-number", FieldTCPSeq, t.Seq, nil)
		add("tcp/acknowledgement-number", FieldTCPAck, t.Ack, nil)
		add("tcp/data-offset", FieldTCPDataOffset, u8(t.DataOffset), nil)
		add("tcp/reserved", FieldTCPReserved, u8(t.Reserved), nil)
		add("tcp/flags", FieldTCPFlags, u8(t.Flags), nil)
		add("tcp/window-size", FieldTCPWindow, u16(t.Window), nil)
		add("tcp/urgent-pointer", FieldTCPUrgent, u16(t.Urgent), nil)
		add("tcp/options", FieldTCPOptions, nil, t.Options)
	}
	return out
}

func (c *compiler) prefixPeer(p netip.Prefix) Peer {
	if c.seenLit == nil {
		c.seenLit = map[string]bool{}
	}
	if s := p.String(); !c.seenLit[s] {
		c.seenLit[s] = true
		c.literals = append(c.literals, s)
	}
	return Peer{Kind: Prefix, Prefix: p}
}

func portRange(p *mudfile.PortMatch) *PortRange {
	if p == nil {
		return nil
	}
	lo, hi, neg := p.Bounds()
	return &PortRange{First: lo, Last: hi, Negate: neg}
}

// defaultRules are RFC 8520 App. A: local DNS and NTP, for both IP
// versions, appended after the file's rules so an explicit drop wins.
func defaultRules(d Direction) []Rule {
	var out []Rule
	for _, svc := range []struct {
		name, uri string
		port      uint16
	}{{"dns", ControllerDNS, 53}, {"ntp", ControllerNTP, 123}} {
		for _, fam := range []Family{IPv4, IPv6} {
			r := Rule{
				Name:     fmt.Sprintf("default/%s-%s", svc.name, fam),
				Family:   fam,
				Peer:     Peer{Kind: Controller, Value: svc.uri},
				Protocol: ProtoUDP,
				Verdict:  Accept,
				Default:  true,
			}
			pr := &PortRange{First: svc.port, Last: svc.port}
			if d == FromDevice {
				r.DstPort = pr
			} else {
				r.SrcPort = pr
			}
			out = append(out, r)
		}
	}
	return out
}
