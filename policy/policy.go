// Package policy compiles a validated MUD file, plus the context of the
// devices that announce it, into an enforcer-neutral Policy: ordered rules per
// direction whose remote side is a symbolic Peer (a DNS name, an abstraction
// such as "same manufacturer", a controller class, or a literal prefix).
//
// A Policy says what is allowed; it knows nothing of nftables. The enforcer
// renders it, the resolver and the manager fill the peers with addresses.
package policy

import (
	"fmt"
	"net/netip"
)

// Policy is the compiled form of one MUD file. All devices that announce the
// same MUD URL share one Policy (RFC 8520's "model").
type Policy struct {
	// ID identifies the policy among those installed; the enforcer derives
	// chain names from it. It is stable for the same URL and content.
	ID string `json:"id"`
	// MUDURL is the URL the file was fetched from (its canonical mud-url).
	MUDURL string `json:"mud_url"`
	// FromDevice and ToDevice are evaluated in order; the first rule that
	// matches decides. The RFC 8520 App. A DNS/NTP defaults are already
	// appended (marked Default). Anything that no rule accepts is dropped.
	FromDevice []Rule `json:"from_device"`
	ToDevice   []Rule `json:"to_device"`
	// NeedsApproval lists why this policy must not be enforced without an
	// administrator's approval (e.g. it contains IP literals, RFC 8520 §2).
	NeedsApproval []string `json:"needs_approval,omitempty"`
	// Notes says where the policy differs from the file because an ACE
	// could not be rendered exactly (always in the stricter direction).
	Notes []string `json:"notes,omitempty"`
}

// Direction is the side of the device a rule list applies to.
type Direction uint8

const (
	FromDevice Direction = iota + 1 // packets the device sends
	ToDevice                        // packets sent to the device
)

func (d Direction) String() string {
	switch d {
	case FromDevice:
		return "from-device"
	case ToDevice:
		return "to-device"
	}
	return fmt.Sprintf("direction(%d)", uint8(d))
}

// Family restricts a rule to one IP version.
type Family uint8

const (
	AnyFamily Family = iota
	IPv4
	IPv6
)

func (f Family) String() string {
	switch f {
	case IPv4:
		return "ipv4"
	case IPv6:
		return "ipv6"
	}
	return "any"
}

// Verdict is what happens to a packet a rule matches. RFC 8520 §2: reject is
// treated as drop.
type Verdict uint8

const (
	Accept Verdict = iota + 1
	Drop
)

func (v Verdict) String() string {
	switch v {
	case Accept:
		return "accept"
	case Drop:
		return "drop"
	}
	return fmt.Sprintf("verdict(%d)", uint8(v))
}

// Initiator restricts which side may open a TCP connection (RFC 8520 §4.8,
// direction-initiated). NoInitiator means the rule is stateless.
type Initiator uint8

const (
	NoInitiator Initiator = iota
	InitiatedFromDevice
	InitiatedToDevice
)

func (i Initiator) String() string {
	switch i {
	case InitiatedFromDevice:
		return "from-device"
	case InitiatedToDevice:
		return "to-device"
	}
	return "none"
}

// Well-known IP protocol numbers used by rules.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// PortRange is an inclusive range of ports; a single port has First == Last.
// RFC 8519's "neq" is expressed by Negate.
type PortRange struct {
	First  uint16 `json:"first"`
	Last   uint16 `json:"last"`
	Negate bool   `json:"negate,omitempty"`
}

// ICMPMatch restricts ICMP or ICMPv6 by type and, optionally, code.
type ICMPMatch struct {
	Type uint8  `json:"type"`
	Code *uint8 `json:"code,omitempty"`
}

// Rule is one ACE, reduced to what an enforcer needs. All set fields must
// match (they are ANDed); a zero field matches anything.
type Rule struct {
	// Name is "<acl>/<ace>" from the file, or "default/<what>" for the
	// App. A defaults; enforcers use it to report counters.
	Name     string     `json:"name"`
	Family   Family     `json:"family"`
	Peer     Peer       `json:"peer"`
	Protocol uint8      `json:"protocol,omitempty"` // 0 = any
	SrcPort  *PortRange `json:"src_port,omitempty"`
	DstPort  *PortRange `json:"dst_port,omitempty"`
	ICMP     *ICMPMatch `json:"icmp,omitempty"`
	// Fields are exact matches on other header fields, in a fixed order.
	Fields []FieldMatch `json:"fields,omitempty"`
	// Initiated applies to TCP only.
	Initiated Initiator `json:"initiated,omitempty"`
	Verdict   Verdict   `json:"verdict"`
	// Default marks the RFC 8520 App. A DNS/NTP rules appended after the
	// file's own rules.
	Default bool `json:"default,omitempty"`
}

// Field names a header field of RFC 8519 (ietf-packet-fields) that a rule
// matches exactly, beyond protocol, ports and ICMP type and code. Fields of
// the IP header need the rule's Family; TCP fields protocol 6.
type Field string

// The header fields rules match.
const (
	FieldDSCP           Field = "dscp" // IPv4 and IPv6
	FieldECN            Field = "ecn"  // IPv4 and IPv6
	FieldIHL            Field = "ipv4-ihl"
	FieldIPv4Flags      Field = "ipv4-flags" // the three flag bits, as mudfile.IPv4DontFragment etc.
	FieldIdentification Field = "ipv4-identification"
	FieldFlowLabel      Field = "ipv6-flow-label"
	FieldTCPSeq         Field = "tcp-sequence-number"
	FieldTCPAck         Field = "tcp-acknowledgement-number"
	FieldTCPDataOffset  Field = "tcp-data-offset"
	FieldTCPReserved    Field = "tcp-reserved" // the 4 bits before the flags
	FieldTCPFlags       Field = "tcp-flags"    // all eight (cwr … fin), as mudfile.TCPSyn etc.
	FieldTCPWindow      Field = "tcp-window-size"
	FieldTCPUrgent      Field = "tcp-urgent-pointer"
	FieldTCPOptions     Field = "tcp-options" // Bytes: the whole options area
)

// FieldMatch is one header field and the value it must have.
type FieldMatch struct {
	Field Field  `json:"field"`
	Value uint32 `json:"value"`
	Bytes []byte `json:"bytes,omitempty"`
}

// PeerKind says what a Peer stands for.
type PeerKind uint8

const (
	// AnyPeer matches every remote address.
	AnyPeer PeerKind = iota
	// DNSName is a name from ietf-acldns; the resolver fills its addresses.
	DNSName
	// Manufacturer is every device whose MUD URL has this authority
	// (RFC 8520 §4.1). same-manufacturer compiles to this kind with the
	// device's own authority (§4.2).
	Manufacturer
	// Model is every device announcing exactly this MUD URL (§4.4).
	Model
	// Controller is an administrator-populated class named by URI (§4.6),
	// including urn:ietf:params:mud:dns and urn:ietf:params:mud:ntp.
	Controller
	// MyController is the administrator's mapping for this MUD URL (§4.7).
	MyController
	// LocalNetworks is the gateway's local networks (§4.5).
	LocalNetworks
	// Prefix is a literal address or prefix from the file.
	Prefix
)

var peerKindNames = [...]string{"any", "dns", "manufacturer", "model", "controller", "my-controller", "local-networks", "prefix"}

func (k PeerKind) String() string {
	if int(k) < len(peerKindNames) {
		return peerKindNames[k]
	}
	return fmt.Sprintf("peer-kind(%d)", uint8(k))
}

// Peer is the remote side of a rule, symbolically.
type Peer struct {
	Kind PeerKind `json:"kind"`
	// Value is the DNS name, authority, URL or URI; empty for AnyPeer and
	// LocalNetworks and Prefix.
	Value  string       `json:"value,omitempty"`
	Prefix netip.Prefix `json:"prefix,omitzero"`
}

// Key names the peer's address set uniquely across all policies: equal keys
// mean the same addresses, so enforcers and resolvers may share one set per
// key (e.g. "dns:test.example.com", "controller:urn:ietf:params:mud:ntp").
// AnyPeer has the empty key.
func (p Peer) Key() string {
	switch p.Kind {
	case AnyPeer:
		return ""
	case LocalNetworks:
		return "local-networks"
	case Prefix:
		return "prefix:" + p.Prefix.String()
	}
	return p.Kind.String() + ":" + p.Value
}

func (p Peer) String() string {
	if p.Kind == AnyPeer {
		return "any"
	}
	return p.Key()
}

// Rules returns the rule list for a direction.
func (p *Policy) Rules(d Direction) []Rule {
	if d == FromDevice {
		return p.FromDevice
	}
	return p.ToDevice
}

// Peers returns the distinct non-trivial peers the policy refers to, in
// first-use order: what the resolver and the manager must fill.
func (p *Policy) Peers() []Peer {
	seen := map[string]bool{}
	var out []Peer
	for _, rules := range [][]Rule{p.FromDevice, p.ToDevice} {
		for _, r := range rules {
			k := r.Peer.Key()
			if k == "" || seen[k] {
				continue
			}
			seen[k] = true
			out = append(out, r.Peer)
		}
	}
	return out
}
