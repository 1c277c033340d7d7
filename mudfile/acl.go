package mudfile

import (
	"encoding/base64"
	"fmt"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"
)

// preRFCKeys are member names of the pre-RFC drafts. Their meaning differs
// in detail from RFC 8519/8520, so they are refused rather than guessed.
var preRFCKeys = map[string]bool{
	"acl-name": true, "acl-type": true, "access-list-entries": true, "rule-name": true,
	"ipv4-acl": true, "ipv6-acl": true, "ietf-mud:mud-acl": true, "ietf-mud:same-manufacturer": true,
	"source-port-range": true, "destination-port-range": true,
	"source-port-range-or-operator": true, "destination-port-range-or-operator": true,
}

func (p *parser) preRFC(path, key string) {
	p.errf(path, "pre-rfc-syntax", "%q is pre-RFC draft syntax, not RFC 8519/8520; the file must be regenerated", key)
}

func (p *parser) parseACLs(path string, v any) {
	lp, arr, ok := p.wrappedList(path, v, "acl")
	if !ok {
		return
	}
	if len(arr) > p.lim.MaxACLs {
		p.errf(lp, "too-many-acls", "%d ACLs, more than the limit of %d: refused", len(arr), p.lim.MaxACLs)
		return
	}
	seen := map[string]bool{}
	for i, e := range arr {
		if !p.parseACL(lp, i, e, seen) {
			return
		}
	}
}

// parseACL reads one acl entry; it returns false when a limit was hit and
// parsing must stop.
func (p *parser) parseACL(listPath string, i int, v any, seen map[string]bool) bool {
	o, ok := p.obj(fmt.Sprintf("%s[%d]", listPath, i+1), v)
	if !ok {
		return true
	}
	name, _ := o.m["name"].(string)
	path := listPath + keyPred("name", name, i+1)
	acl := ACL{Name: name}
	meta := aclMeta{path: path}
	if nv, has := o.get("name"); !has {
		p.errf(path, "missing-leaf", "ACL has no name")
	} else if _, ok := p.stringLeaf(path+"/name", nv); ok {
		p.checkName(path+"/name", "ACL", name)
		if seen[name] {
			p.errf(path, "duplicate", "ACL %q is defined twice", name)
		}
		seen[name] = true
	}
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch {
		case k == "name":
		case k == "type":
			acl.Type = p.aclType(kp, v)
		case k == "aces":
			lp, arr, ok := p.wrappedList(kp, v, "ace")
			if !ok {
				continue
			}
			aceSeen := map[string]bool{}
			for j, e := range arr {
				p.aces++
				if p.aces > p.lim.MaxACEs {
					p.errf(lp, "too-many-aces", "more than %d ACEs in the file: refused", p.lim.MaxACEs)
					return false
				}
				ace, acePath, ipKey := p.parseACE(lp, j, e, aceSeen)
				acl.ACEs = append(acl.ACEs, ace)
				meta.acePaths = append(meta.acePaths, acePath)
				meta.ipKeys = append(meta.ipKeys, ipKey)
			}
		case preRFCKeys[k]:
			p.preRFC(kp, k)
		default:
			p.unknownNode(kp, k)
		}
	}
	if _, has := o.get("type"); !has {
		p.warnf(path, "acl-type-missing", "ACL has no type; MUD ACLs should be ipv4-acl-type or ipv6-acl-type")
	}
	if len(acl.ACEs) == 0 {
		p.warnf(path, "acl-empty", "ACL has no entries; it permits nothing")
	}
	p.file.ACLs = append(p.file.ACLs, acl)
	p.meta = append(p.meta, meta)
	return true
}

// checkName checks an ACL or ACE name: 1..64 characters (RFC 8519).
func (p *parser) checkName(path, what, name string) {
	if n := utf8.RuneCountInString(name); n < 1 || n > 64 {
		p.errf(path, "name-length", "%s name %q must be 1..64 characters", what, name)
		return
	}
	if strings.IndexFunc(name, unicode.IsSpace) >= 0 {
		p.warnf(path, "name-space", "%s name %q contains white space, which many devices cannot handle (RFC 8519)", what, name)
	}
}

// aclTypeSpellings maps the type spellings met in the field to the RFC 8519
// identity they clearly mean.
var aclTypeSpellings = map[string]ACLType{
	"ipv4": IPv4ACL, "ipv4-acl": IPv4ACL, "ipv6": IPv6ACL, "ipv6-acl": IPv6ACL,
	"ethernet-acl-type": EthACL, "eth-acl": EthACL, "eth": EthACL, "ethernet-acl": EthACL,
}

func (p *parser) aclType(path string, v any) ACLType {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return ""
	}
	local := identity(s, modACL)
	switch t := ACLType(local); t {
	case IPv4ACL, IPv6ACL:
		return t
	case EthACL, MixedEthIPv4ACL, MixedEthIPv6ACL, MixedAllACL:
		p.warnf(path, "acl-type-not-mud", "ACL type %q is not allowed in MUD files (only ipv4-acl-type and ipv6-acl-type, RFC 8520 §2)", s)
		return t
	}
	if t, ok := aclTypeSpellings[local]; ok {
		p.warnf(path, "acl-type-spelling", "non-standard ACL type %q; read as %q", s, t)
		if t == EthACL {
			p.warnf(path, "acl-type-not-mud", "Ethernet ACLs are not allowed in MUD files (RFC 8520 §2)")
		}
		return t
	}
	p.errf(path, "acl-type", "unknown ACL type %q", s)
	return ""
}

// parseACE reads one ACE. It returns the ACE, its path and the l3 member
// ("ipv4", "ipv6" or "") for the cross-checks.
func (p *parser) parseACE(listPath string, j int, v any, seen map[string]bool) (ACE, string, string) {
	var ace ACE
	o, ok := p.obj(fmt.Sprintf("%s[%d]", listPath, j+1), v)
	if !ok {
		return ace, fmt.Sprintf("%s[%d]", listPath, j+1), ""
	}
	ace.Name, _ = o.m["name"].(string)
	path := listPath + keyPred("name", ace.Name, j+1)
	if nv, has := o.get("name"); !has {
		p.errf(path, "missing-leaf", "ACE has no name")
	} else if _, ok := p.stringLeaf(path+"/name", nv); ok {
		p.checkName(path+"/name", "ACE", ace.Name)
		if seen[ace.Name] {
			p.errf(path, "duplicate", "ACE %q appears twice in this ACL", ace.Name)
		}
		seen[ace.Name] = true
	}
	ipKey := ""
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch {
		case k == "name":
		case k == "matches":
			ipKey = p.parseMatches(kp, v, &ace.Matches)
		case k == "actions":
			p.parseActions(kp, v, &ace)
		case k == "statistics":
			p.warnf(kp, "unknown-node", "statistics is state data, not configuration; ignored")
		case preRFCKeys[k]:
			p.preRFC(kp, k)
		default:
			p.unknownNode(kp, k)
		}
	}
	if _, has := o.get("matches"); !has {
		p.warnf(path, "match-all", "ACE has no matches: it applies to every packet")
	}
	if ace.Action == "" {
		if _, has := o.get("actions"); !has {
			p.errf(path, "missing-action", "ACE has no actions/forwarding (mandatory): what to do with matching packets is unknown")
		}
	}
	return ace, path, ipKey
}

func (p *parser) parseActions(path string, v any, ace *ACE) {
	o, ok := p.obj(path, v)
	if !ok {
		return
	}
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch k {
		case "forwarding":
			s, ok := p.stringLeaf(kp, v)
			if !ok {
				continue
			}
			local := identity(s, modACL)
			switch a := Action(strings.ToLower(local)); {
			case a == "deny":
				p.warnf(kp, "action-deny", "action %q is not an RFC 8519 action; read as \"drop\"", s)
				ace.Action = Drop
			case a == Accept || a == Drop || a == Reject:
				if string(a) != local {
					p.warnf(kp, "action-case", "action %q is not lower-case; read as %q", s, a)
				}
				ace.Action = a
			default:
				p.errf(kp, "action", "unknown forwarding action %q (accept, drop or reject)", s)
			}
		case "logging":
			if s, ok := p.stringLeaf(kp, v); ok {
				ace.Logging = identity(s, modACL)
			}
		default:
			p.warnf(kp, "action-extra", "action %q is not part of RFC 8519 or RFC 8520; ignored", k)
		}
	}
	if _, has := o.get("forwarding"); !has {
		p.errf(path, "missing-action", "actions has no forwarding (mandatory): what to do with matching packets is unknown")
	}
}

// unknownMatch reports a match node this package does not know. Unlike
// unknown nodes elsewhere it is an error: ignoring a match criterion would
// widen the rule.
func (p *parser) unknownMatch(path, container, key string) {
	what := "match"
	if container != "" {
		what = container + " match"
	}
	p.errf(path, "unknown-match", "unknown %s %q: ignoring a match criterion would widen the rule, so the ACE is refused", what, key)
}

// members calls each for every member of the container at path, in
// document order; it reports false when v is not an object.
func (p *parser) members(path string, v any, each func(kp, k string, v any)) bool {
	o, ok := p.obj(path, v)
	if !ok {
		return false
	}
	for _, k := range o.keys {
		each(path+"/"+k, k, o.m[k])
	}
	return true
}

// unsupported records a match leaf that is valid YANG but not enforceable.
func (p *parser) unsupported(m *Matches, path, rel, why string) {
	m.Unsupported = append(m.Unsupported, rel)
	p.warnf(path, "not-renderable", "%s: this ACE cannot be enforced exactly (an accept is not installed; a drop drops more)", why)
}

// parseMatches reads matches and returns the l3 member name used.
func (p *parser) parseMatches(path string, v any, m *Matches) string {
	o, ok := p.obj(path, v)
	if !ok {
		return ""
	}
	var l3, l4 []string
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch k {
		case "eth":
			m.Eth = p.parseEth(kp, v)
			p.unsupported(m, kp, "eth", "MUD has no Ethernet matching (RFC 8520 §2)")
		case "ipv4":
			m.IPv4 = p.parseIP(kp, v, m, 4)
			l3 = append(l3, k)
		case "ipv6":
			m.IPv6 = p.parseIP(kp, v, m, 6)
			l3 = append(l3, k)
		case "tcp":
			m.TCP = p.parseTCP(kp, v, m)
			l4 = append(l4, k)
		case "udp":
			m.UDP = p.parseUDP(kp, v, m)
			l4 = append(l4, k)
		case "icmp":
			m.ICMP = p.parseICMP(kp, v, m)
			l4 = append(l4, k)
		case modMUD + ":mud":
			m.MUD = p.parseMUDMatch(kp, v)
		case "egress-interface", "ingress-interface":
			p.unsupported(m, kp, k, "interface matching has no meaning in a MUD file")
		case modTLSA + ":client-profiles":
			p.unsupported(m, kp, k, "(D)TLS profiles (RFC 9761) are not enforced by this manager")
		case "actions":
			p.errf(kp, "actions-in-matches", "actions is inside matches; it must be a sibling of matches. As written the ACE has no action and a match on a node named \"actions\"")
		default:
			if preRFCKeys[k] {
				p.preRFC(kp, k)
				continue
			}
			p.unknownMatch(kp, "", k)
		}
	}
	if len(l3) > 1 {
		p.errf(path, "l3-choice", "both ipv4 and ipv6 matches in one ACE; an ACE matches one IP version")
	}
	if len(l4) > 1 {
		p.errf(path, "l4-choice", "more than one of tcp, udp and icmp (%s) in one ACE; a packet has one transport", strings.Join(l4, ", "))
	}
	// The protocol leaf, when given, must agree with the l4 container.
	if len(l4) == 1 {
		for _, ip := range []*IPMatch{m.IPv4, m.IPv6} {
			if ip == nil || ip.Protocol == nil {
				continue
			}
			want := map[string]uint8{"tcp": 6, "udp": 17, "icmp": 1}[l4[0]]
			if l4[0] == "icmp" && m.IPv6 != nil {
				want = 58
			}
			if *ip.Protocol != want {
				p.errf(path+"/"+l3[0]+"/protocol", "protocol-mismatch", "protocol %d contradicts the %s match (protocol %d)", *ip.Protocol, l4[0], want)
			}
		}
	}
	if m.MUD != nil && m.MUD.Count() > 0 {
		for _, ip := range []*IPMatch{m.IPv4, m.IPv6} {
			if ip != nil && (ip.SrcDNSName != "" || ip.DstDNSName != "" || ip.SrcNetwork != nil || ip.DstNetwork != nil) {
				p.warnf(path, "peer-and-abstraction", "ACE names both an address or DNS name and a MUD abstraction; they are ANDed, which cannot be enforced exactly (an accept is not installed)")
			}
		}
	}
	if len(l3) == 0 {
		return ""
	}
	return l3[0]
}

func (p *parser) parseEth(path string, v any) *EthMatch {
	e := &EthMatch{}
	if !p.members(path, v, func(kp, k string, v any) {
		switch k {
		case "destination-mac-address", "source-mac-address", "destination-mac-address-mask", "source-mac-address-mask":
			s, ok := p.stringLeaf(kp, v)
			if !ok {
				return
			}
			if !validMAC(s) {
				p.errf(kp, "mac-address", "%q is not a MAC address", s)
			}
			switch k {
			case "destination-mac-address":
				e.DstMAC = s
			case "source-mac-address":
				e.SrcMAC = s
			}
		case "ethertype":
			e.Ethertype = p.ethertype(kp, v)
		default:
			p.unknownMatch(kp, "eth", k)
		}
	}) {
		return nil
	}
	return e
}

func validMAC(s string) bool {
	parts := strings.Split(s, ":")
	if len(parts) != 6 {
		return false
	}
	for _, x := range parts {
		if _, err := strconv.ParseUint(x, 16, 8); err != nil || len(x) != 2 {
			return false
		}
	}
	return true
}

// ethertype reads an ethertype: a number, or (a MUDgee quirk) a hex string.
func (p *parser) ethertype(path string, v any) *uint16 {
	if s, ok := v.(string); ok && (strings.HasPrefix(s, "0x") || strings.HasPrefix(s, "0X")) {
		n, err := strconv.ParseUint(s[2:], 16, 16)
		if err != nil {
			p.errf(path, "ethertype", "%q is not an ethertype", s)
			return nil
		}
		p.warnf(path, "ethertype-hex", "ethertype written as the hex string %q; read as %d", s, n)
		if n < 0x0600 {
			p.warnf(path, "ethertype-bogus", "ethertype %#04x is below 0x0600, so it is a frame length, not an ethertype", n)
		}
		u := uint16(n)
		return &u
	}
	n, ok := p.uintLeaf(path, v, 0, 65535)
	if !ok {
		return nil
	}
	u := uint16(n)
	return &u
}

func (p *parser) parseIP(path string, v any, m *Matches, family int) *IPMatch {
	o, ok := p.obj(path, v)
	if !ok {
		return nil
	}
	ip := &IPMatch{}
	fam := "ipv" + strconv.Itoa(family)
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch k {
		case "protocol":
			ip.Protocol, _ = p.uint8Leaf(kp, v, 0, 255)
			if ip.Protocol != nil && *ip.Protocol == 0 {
				p.unsupported(m, kp, fam+"/protocol", "protocol 0 is IPv6 hop-by-hop, not \"any protocol\" (omit the leaf to match any)")
			}
		case "destination-" + fam + "-network":
			ip.DstNetwork = p.prefix(kp, v, family)
		case "source-" + fam + "-network":
			ip.SrcNetwork = p.prefix(kp, v, family)
		case modDNS + ":src-dnsname":
			ip.SrcDNSName, _ = p.hostLeaf(kp, v)
		case modDNS + ":dst-dnsname":
			ip.DstDNSName, _ = p.hostLeaf(kp, v)
		case "dscp", "ecn", "length", "ttl", "ihl", "flags", "offset", "identification", "flow-label":
			p.ipHeaderField(kp, k, v, family, ip, m)
		default:
			if preRFCKeys[k] {
				p.preRFC(kp, k)
				continue
			}
			p.unknownMatch(kp, fam, k)
		}
	}
	if ip.DstDNSName != "" && ip.DstNetwork != nil {
		p.warnf(path, "two-peers", "both a destination DNS name and a destination network; they are ANDed, which cannot be enforced exactly (an accept is not installed)")
	}
	if ip.SrcDNSName != "" && ip.SrcNetwork != nil {
		p.warnf(path, "two-peers", "both a source DNS name and a source network; they are ANDed, which cannot be enforced exactly (an accept is not installed)")
	}
	return ip
}

// ipHeaderField reads the IP header leaves other than addresses and
// protocol. A gateway matches most of them as they are on the wire; those
// it cannot match as the file means them are recorded as unsupported
// (with the reason), the others are enforced.
func (p *parser) ipHeaderField(path, k string, v any, family int, ip *IPMatch, m *Matches) {
	v4only := map[string]bool{"ihl": true, "flags": true, "offset": true, "identification": true}
	if (family == 6 && v4only[k]) || (family == 4 && k == "flow-label") {
		p.errf(path, "unknown-match", "%q is not a field of ipv%d matches", k, family)
		return
	}
	fam := "ipv" + strconv.Itoa(family)
	refuse := func(format string, args ...any) {
		p.unsupported(m, path, fam+"/"+k, fam+" "+k+": "+fmt.Sprintf(format, args...))
	}
	if k == "flags" {
		bits, ok := p.bitsLeaf(path, v, ipv4FlagBits)
		if !ok {
			return
		}
		ip.Flags = &bits
		if bits&IPv4DontFragment == 0 || bits&IPv4MoreFragments != 0 {
			refuse(`without "fragment" (do not fragment), or with "more", the flags describe fragments, which the gateway's routed path sees reassembled (conntrack) and its bridged path sees as they are`)
		}
		return
	}
	never := func(why string) func(uint64) string { return func(uint64) string { return why } }
	f := map[string]numField{
		"dscp": {0, 63, func(n uint64) { ip.DSCP = ptr8(n) }, nil},
		"ecn":  {0, 3, func(n uint64) { ip.ECN = ptr8(n) }, nil},
		"length": {0, 65535, func(n uint64) { ip.Length = ptr16(n) },
			never("the length the gateway's filter sees is not always the one on the wire: fragments are reassembled, and received segments coalesced (GRO), before it")},
		"ttl": {0, 255, func(n uint64) { ip.TTL = ptr8(n) },
			never("the gateway decrements the TTL (hop limit) of a routed packet before its filter sees it, but not that of a bridged one or of one to the gateway itself, so no one value means what the file says")},
		"ihl": {5, 60, func(n uint64) { ip.IHL = ptr8(n) }, func(n uint64) string {
			if n > 15 {
				return fmt.Sprintf("%d is more than a 4-bit header length in 32-bit words can be (RFC 8519's range 5..60 leaves open whether it counts bytes)", n)
			}
			return ""
		}},
		"offset": {20, 65535, func(n uint64) { ip.Offset = ptr16(n) },
			never("the gateway's routed path sees fragments reassembled (conntrack), so it cannot match a fragment offset")},
		"identification": {0, 65535, func(n uint64) { ip.Identification = ptr16(n) }, nil},
		"flow-label":     {0, 1048575, func(n uint64) { v := uint32(n); ip.FlowLabel = &v }, nil},
	}[k]
	p.numField(path, v, f, refuse)
}

// numField is a numeric header leaf: its range, where it goes, and why a
// value cannot be enforced ("": it can; nil: every value can).
type numField struct {
	lo, hi uint64
	set    func(n uint64)
	refuse func(n uint64) string
}

func (p *parser) numField(path string, v any, f numField, refuse func(format string, args ...any)) {
	n, ok := p.uintLeaf(path, v, f.lo, f.hi)
	if !ok {
		return
	}
	f.set(n)
	if f.refuse != nil {
		if why := f.refuse(n); why != "" {
			refuse("%s", why)
		}
	}
}

func ptr8(n uint64) *uint8   { v := uint8(n); return &v }
func ptr16(n uint64) *uint16 { v := uint16(n); return &v }
func ptr32(n uint64) *uint32 { v := uint32(n); return &v }

// Bit names of the bits-typed leaves, with their bits in the header.
var (
	ipv4FlagBits = map[string]uint8{"reserved": IPv4Reserved, "fragment": IPv4DontFragment, "more": IPv4MoreFragments}
	tcpFlagBits  = map[string]uint8{"cwr": TCPCwr, "ece": TCPEce, "urg": TCPUrg, "ack": TCPAck, "psh": TCPPsh, "rst": TCPRst, "syn": TCPSyn, "fin": TCPFin}
)

// bitsLeaf reads a YANG bits leaf (RFC 7951: the names of the bits that
// are set, separated by spaces; "" for none).
func (p *parser) bitsLeaf(path string, v any, names map[string]uint8) (uint8, bool) {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return 0, false
	}
	var bits uint8
	for _, name := range strings.Fields(s) {
		b, known := names[name]
		switch {
		case !known:
			known := make([]string, 0, len(names))
			for n := range names {
				known = append(known, n)
			}
			sort.Strings(known)
			p.errf(path, "bits", "unknown bit %q (%s)", name, strings.Join(known, ", "))
			return 0, false
		case bits&b != 0:
			p.errf(path, "bits", "bit %q is named twice", name)
			return 0, false
		}
		bits |= b
	}
	return bits, true
}

// binaryLeaf reads a YANG binary leaf (RFC 7951: base64) of lo..hi bytes
// (hi 0: unbounded).
func (p *parser) binaryLeaf(path string, v any, lo, hi int) ([]byte, bool) {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return nil, false
	}
	b, err := base64.StdEncoding.DecodeString(s)
	if err != nil {
		p.errf(path, "binary", "%q is not base64 (RFC 7951 binary): %v", s, err)
		return nil, false
	}
	if len(b) < lo || (hi > 0 && len(b) > hi) {
		p.errf(path, "range", "%d bytes; the length must be %d..%d", len(b), lo, hi)
		return nil, false
	}
	return b, true
}

// prefix reads an inet:ipv4-prefix or ipv6-prefix. Host bits set after the
// prefix length are cleared with a warning (the YANG type canonicalises so).
func (p *parser) prefix(path string, v any, family int) *netip.Prefix {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return nil
	}
	pfx, err := netip.ParsePrefix(s)
	if a, aerr := netip.ParseAddr(s); err != nil && aerr == nil && a.Zone() == "" {
		// A bare address (MUDgee writes these) clearly means that host.
		pfx = netip.PrefixFrom(a, a.BitLen())
		err = nil
		p.warnf(path, "prefix-no-length", "address %q has no prefix length; read as %s", s, pfx)
	}
	if err != nil {
		p.errf(path, "prefix", "%q is not an IPv%d prefix such as 192.0.2.0/24: %v", s, family, err)
		return nil
	}
	if (family == 4) != pfx.Addr().Is4() {
		p.errf(path, "prefix", "%q is not an IPv%d prefix", s, family)
		return nil
	}
	if m := pfx.Masked(); m != pfx {
		p.warnf(path, "prefix-host-bits", "prefix %q has host bits set; read as %s", s, m)
		pfx = m
	}
	return &pfx
}

func (p *parser) parsePort(path string, v any) *PortMatch {
	o, ok := p.obj(path, v)
	if !ok {
		return nil
	}
	var op string
	var port, lower, upper *uint16
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch k {
		case "operator":
			op, _ = p.stringLeaf(kp, v)
		case "port", "lower-port", "upper-port":
			n, ok := p.uintLeaf(kp, v, 0, 65535)
			if !ok {
				return nil
			}
			u := uint16(n)
			switch k {
			case "port":
				port = &u
			case "lower-port":
				lower = &u
			default:
				upper = &u
			}
		default:
			p.errf(kp, "unknown-match", "unknown port match %q (operator and port, or lower-port and upper-port)", k)
			return nil
		}
	}
	switch {
	case port != nil && (lower != nil || upper != nil):
		p.errf(path, "port-choice", "both port and lower-port/upper-port: which one applies is ambiguous")
		return nil
	case lower != nil || upper != nil:
		if lower == nil || upper == nil {
			p.errf(path, "port-range", "a port range needs both lower-port and upper-port")
			return nil
		}
		if *lower > *upper {
			p.errf(path, "port-range", "lower-port %d is above upper-port %d", *lower, *upper)
			return nil
		}
		switch op {
		case "":
		case "range":
			p.warnf(path+"/operator", "operator-range", "\"operator\": \"range\" is not an RFC 8519 operator; a range is given by lower-port and upper-port alone")
		default:
			p.errf(path+"/operator", "port-choice", "operator %q together with lower-port/upper-port is ambiguous", op)
			return nil
		}
		return &PortMatch{Op: PortRange, Port: *lower, Upper: *upper}
	case port == nil:
		p.errf(path, "port-missing", "port match has no port")
		return nil
	}
	if op == "" {
		op = string(PortEq) // the YANG default
	}
	switch PortOp(op) {
	case PortEq, PortLte, PortGte, PortNeq:
		return &PortMatch{Op: PortOp(op), Port: *port}
	}
	p.errf(path+"/operator", "operator", "unknown port operator %q (eq, lte, gte or neq)", op)
	return nil
}

func (p *parser) parseTCP(path string, v any, m *Matches) *TCPMatch {
	t := &TCPMatch{}
	if !p.members(path, v, func(kp, k string, v any) {
		switch k {
		case "source-port":
			t.SrcPort = p.parsePort(kp, v)
		case "destination-port":
			t.DstPort = p.parsePort(kp, v)
		case modMUD + ":direction-initiated":
			s, ok := p.stringLeaf(kp, v)
			if !ok {
				return
			}
			switch Initiation(s) {
			case FromDevice, ToDevice:
				t.DirectionInitiated = Initiation(s)
			default:
				p.errf(kp, "direction-initiated", "direction-initiated is %q; it must be from-device or to-device", s)
			}
		case "sequence-number", "acknowledgement-number", "data-offset", "reserved", "flags", "window-size", "urgent-pointer", "options":
			p.tcpHeaderField(kp, k, v, t, m)
		default:
			p.unknownMatch(kp, "tcp", k)
		}
	}) {
		return nil
	}
	return t
}

// tcpHeaderField reads the TCP header leaves other than the ports.
func (p *parser) tcpHeaderField(path, k string, v any, t *TCPMatch, m *Matches) {
	refuse := func(format string, args ...any) {
		p.unsupported(m, path, "tcp/"+k, "tcp "+k+": "+fmt.Sprintf(format, args...))
	}
	switch k {
	case "flags":
		if bits, ok := p.bitsLeaf(path, v, tcpFlagBits); ok {
			t.Flags = &bits
		}
		return
	case "options":
		b, ok := p.binaryLeaf(path, v, 1, 40)
		if !ok {
			return
		}
		t.Options = b
		if len(b)%4 != 0 {
			refuse("%d bytes cannot be a segment's whole options, whose length is a multiple of 4 (padded)", len(b))
		}
		return
	}
	f := map[string]numField{
		"sequence-number":        {0, 1<<32 - 1, func(n uint64) { t.Seq = ptr32(n) }, nil},
		"acknowledgement-number": {0, 1<<32 - 1, func(n uint64) { t.Ack = ptr32(n) }, nil},
		"data-offset":            {5, 15, func(n uint64) { t.DataOffset = ptr8(n) }, nil},
		"reserved": {0, 255, func(n uint64) { t.Reserved = ptr8(n) }, func(n uint64) string {
			if n > 15 {
				return fmt.Sprintf("the TCP header has 4 reserved bits (RFC 9293); %d does not fit in them", n)
			}
			return ""
		}},
		"window-size":    {0, 65535, func(n uint64) { t.Window = ptr16(n) }, nil},
		"urgent-pointer": {0, 65535, func(n uint64) { t.Urgent = ptr16(n) }, nil},
	}[k]
	p.numField(path, v, f, refuse)
}

func (p *parser) parseUDP(path string, v any, m *Matches) *UDPMatch {
	u := &UDPMatch{}
	if !p.members(path, v, func(kp, k string, v any) {
		switch k {
		case "source-port":
			u.SrcPort = p.parsePort(kp, v)
		case "destination-port":
			u.DstPort = p.parsePort(kp, v)
		case "length":
			if n, ok := p.uintLeaf(kp, v, 0, 65535); ok {
				l := uint16(n)
				u.Length = &l
				p.unsupported(m, kp, "udp/length", "udp length: received datagrams can be coalesced (UDP GRO) before the gateway's filter sees them, so the length it sees is not always the one on the wire")
			}
		case modMUD + ":direction-initiated":
			p.errf(kp, "direction-initiated-udp", "direction-initiated applies to TCP only (RFC 8520 §4.8); UDP has no connection to initiate")
		default:
			p.unknownMatch(kp, "udp", k)
		}
	}) {
		return nil
	}
	return u
}

func (p *parser) parseICMP(path string, v any, m *Matches) *ICMPMatch {
	ic := &ICMPMatch{}
	if !p.members(path, v, func(kp, k string, v any) {
		switch k {
		case "type":
			ic.Type, _ = p.uint8Leaf(kp, v, 0, 255)
		case "code":
			ic.Code, _ = p.uint8Leaf(kp, v, 0, 255)
		case "rest-of-header":
			if b, ok := p.binaryLeaf(kp, v, 0, 0); ok {
				ic.RestOfHeader = b
				p.unsupported(m, kp, "icmp/rest-of-header", "icmp rest-of-header: RFC 8519 does not say how many bytes of the message it covers, so what it matches is not defined")
			}
		default:
			p.unknownMatch(kp, "icmp", k)
		}
	}) {
		return nil
	}
	if ic.Code != nil && ic.Type == nil {
		p.errf(path, "icmp-code-without-type", "an ICMP code without a type is meaningless")
	}
	return ic
}

func (p *parser) parseMUDMatch(path string, v any) *MUDMatch {
	mm := &MUDMatch{}
	if !p.members(path, v, func(kp, k string, v any) {
		switch k {
		case "manufacturer":
			mm.Manufacturer, _ = p.hostLeaf(kp, v)
		case "same-manufacturer":
			mm.SameManufacturer = p.emptyLeaf(kp, v)
		case "model":
			mm.Model, _ = p.uriLeaf(kp, v, true)
		case "local-networks":
			mm.LocalNetworks = p.emptyLeaf(kp, v)
		case "controller":
			mm.Controller = p.controller(kp, v)
		case "my-controller":
			mm.MyController = p.emptyLeaf(kp, v)
		default:
			p.unknownMatch(kp, "ietf-mud", k)
		}
	}) {
		return nil
	}
	if n := mm.Count(); n > 1 {
		p.warnf(path, "several-abstractions", "%d abstractions in one match are ANDed, which cannot be enforced exactly (an accept is not installed); RFC 8520 advises one per ACE", n)
	}
	return mm
}

// controller reads a controller class URI (RFC 8520 §4.6). It is only ever
// a name: URL-form values are never fetched.
func (p *parser) controller(path string, v any) string {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return ""
	}
	switch {
	case s == "":
		p.errf(path, "controller", "controller is empty")
		return ""
	case s == "urn:ietf:params:mud:dns" || s == "urn:ietf:params:mud:ntp":
	case strings.HasPrefix(s, "urn:ietf:params:mud:"):
		p.warnf(path, "controller-unregistered", "controller %q is not a registered MUD class (only urn:ietf:params:mud:dns and urn:ietf:params:mud:ntp are); an administrator must map it", s)
	case !strings.Contains(s, ":"):
		p.warnf(path, "controller-not-uri", "controller %q is not a URI; read as the name of an administrator-defined class", s)
	case strings.HasPrefix(s, "http://"):
		p.warnf(path, "controller-http", "controller %q is an http URL; it is only a class name and is never fetched", s)
	}
	return s
}
