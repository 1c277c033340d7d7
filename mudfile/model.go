package mudfile

import (
	"net/netip"
	"time"
)

// File is a decoded and normalised MUD file. Names of fields follow the YANG
// leaves; optional leaves that were absent are zero (pointers nil).
type File struct {
	MUD  MUD   `json:"mud"`
	ACLs []ACL `json:"acls"`
}

// MUD is the "ietf-mud:mud" container (RFC 8520 §2.1).
type MUD struct {
	Version    int       `json:"mud_version"`
	URL        string    `json:"mud_url"`
	LastUpdate time.Time `json:"last_update"`
	Signature  string    `json:"mud_signature,omitempty"`
	// CacheValidity is in hours; 48 when the file does not say (RFC 8520 §3.5).
	CacheValidity int    `json:"cache_validity"`
	IsSupported   bool   `json:"is_supported"`
	SystemInfo    string `json:"systeminfo,omitempty"`
	MfgName       string `json:"mfg_name,omitempty"`
	ModelName     string `json:"model_name,omitempty"`
	FirmwareRev   string `json:"firmware_rev,omitempty"`
	SoftwareRev   string `json:"software_rev,omitempty"`
	// Documentation is a URI for administrators; it is never fetched.
	Documentation string   `json:"documentation,omitempty"`
	Extensions    []string `json:"extensions,omitempty"`
	// FromDevicePolicy and ToDevicePolicy name ACLs of ACLs, in order.
	FromDevicePolicy []string `json:"from_device_policy,omitempty"`
	ToDevicePolicy   []string `json:"to_device_policy,omitempty"`

	// Transparency is the RFC 9472 SBOM/vulnerability data, if present.
	Transparency *Transparency `json:"transparency,omitempty"`
	// TLSProfileSupported is RFC 9761's is-tls-dtls-profile-supported.
	TLSProfileSupported *bool `json:"tls_profile_supported,omitempty"`
}

// Transparency is the RFC 9472 "transparency" container.
type Transparency struct {
	SBOMs              []SBOM   `json:"sboms,omitempty"`
	SBOMLocalWellKnown string   `json:"sbom_local_well_known,omitempty"`
	SBOMContactURI     string   `json:"sbom_contact_uri,omitempty"`
	SBOMArchiveList    string   `json:"sbom_archive_list,omitempty"`
	VulnURLs           []string `json:"vuln_url,omitempty"`
	VulnContactURI     string   `json:"vuln_contact_uri,omitempty"`
}

// SBOM is one entry of transparency/sboms.
type SBOM struct {
	VersionInfo string `json:"version_info"`
	SBOMURL     string `json:"sbom_url,omitempty"`
}

// ACL is one acls/acl entry.
type ACL struct {
	Name string  `json:"name"`
	Type ACLType `json:"type,omitempty"`
	ACEs []ACE   `json:"aces"`
}

// ACLType is the identity of an ACL's type, without module prefix.
type ACLType string

// The ACL types of RFC 8519. MUD allows only the first two (RFC 8520 §2).
const (
	IPv4ACL         ACLType = "ipv4-acl-type"
	IPv6ACL         ACLType = "ipv6-acl-type"
	EthACL          ACLType = "eth-acl-type"
	MixedEthIPv4ACL ACLType = "mixed-eth-ipv4-acl-type"
	MixedEthIPv6ACL ACLType = "mixed-eth-ipv6-acl-type"
	MixedAllACL     ACLType = "mixed-eth-ipv4-ipv6-acl-type"
)

// ACE is one access control entry.
type ACE struct {
	Name    string  `json:"name"`
	Matches Matches `json:"matches"`
	Action  Action  `json:"action"`
	// Logging is the RFC 8519 logging identity, if any (not enforced).
	Logging string `json:"logging,omitempty"`
}

// Action is an ACE's forwarding action.
type Action string

// The forwarding actions of RFC 8519.
const (
	Accept Action = "accept"
	Drop   Action = "drop"
	// Reject is enforced as drop (RFC 8520 §2).
	Reject Action = "reject"
)

// Matches holds an ACE's match criteria; all present ones are ANDed.
type Matches struct {
	Eth  *EthMatch  `json:"eth,omitempty"`
	IPv4 *IPMatch   `json:"ipv4,omitempty"`
	IPv6 *IPMatch   `json:"ipv6,omitempty"`
	TCP  *TCPMatch  `json:"tcp,omitempty"`
	UDP  *UDPMatch  `json:"udp,omitempty"`
	ICMP *ICMPMatch `json:"icmp,omitempty"`
	MUD  *MUDMatch  `json:"mud,omitempty"`
	// Unsupported names the match leaves that are valid YANG but that a
	// MUD manager does not enforce exactly (eth, ttl, lengths, fragments,
	// interfaces, TLS profiles...), as paths relative to matches (e.g.
	// "ipv4/ttl"). An ACE with any of them cannot be rendered exactly
	// (RFC 8520 §2).
	Unsupported []string `json:"unsupported,omitempty"`
}

// EthMatch is the l2 "eth" container, kept as data: MUD has no Ethernet
// matching, so it is never enforced.
type EthMatch struct {
	DstMAC    string  `json:"destination_mac_address,omitempty"`
	SrcMAC    string  `json:"source_mac_address,omitempty"`
	Ethertype *uint16 `json:"ethertype,omitempty"`
}

// IPMatch is the ipv4 or ipv6 container (the same fields matter for both).
type IPMatch struct {
	Protocol *uint8 `json:"protocol,omitempty"`
	// SrcNetwork and DstNetwork are literal prefixes (canonical form).
	SrcNetwork *netip.Prefix `json:"source_network,omitempty"`
	DstNetwork *netip.Prefix `json:"destination_network,omitempty"`
	// SrcDNSName and DstDNSName are ietf-acldns names, lower-cased
	// without trailing dot.
	SrcDNSName string `json:"src_dnsname,omitempty"`
	DstDNSName string `json:"dst_dnsname,omitempty"`

	// The other header fields of RFC 8519 (ietf-packet-fields); nil when
	// absent. Those a gateway cannot match as the file means them are
	// also listed in Matches.Unsupported.
	DSCP   *uint8  `json:"dscp,omitempty"`
	ECN    *uint8  `json:"ecn,omitempty"`
	Length *uint16 `json:"length,omitempty"`
	TTL    *uint8  `json:"ttl,omitempty"`
	// IPv4 only.
	IHL            *uint8  `json:"ihl,omitempty"`
	Flags          *uint8  `json:"flags,omitempty"` // IPv4Reserved | IPv4DontFragment | IPv4More
	Offset         *uint16 `json:"offset,omitempty"`
	Identification *uint16 `json:"identification,omitempty"`
	// IPv6 only.
	FlowLabel *uint32 `json:"flow_label,omitempty"`
}

// The bits of the IPv4 flags leaf (RFC 8519: reserved, fragment, more), as
// they are in the header's flags field (the top bits of byte 6).
const (
	IPv4Reserved      uint8 = 0x80
	IPv4DontFragment  uint8 = 0x40 // "fragment": 1 means do not fragment
	IPv4MoreFragments uint8 = 0x20 // "more"
)

// The bits of the TCP flags leaf (RFC 8519: cwr … fin), as they are in the
// header's flags byte (byte 13).
const (
	TCPFin uint8 = 1 << iota
	TCPSyn
	TCPRst
	TCPPsh
	TCPAck
	TCPUrg
	TCPEce
	TCPCwr
)

// PortOp is a port comparison.
type PortOp string

// Port operators (RFC 8519); Range is the lower-port/upper-port case.
const (
	PortEq    PortOp = "eq"
	PortLte   PortOp = "lte"
	PortGte   PortOp = "gte"
	PortNeq   PortOp = "neq"
	PortRange PortOp = "range"
)

// PortMatch is a source-port or destination-port container. For Range,
// Port is the lower and Upper the upper bound; otherwise Upper is unused.
type PortMatch struct {
	Op    PortOp `json:"operator"`
	Port  uint16 `json:"port"`
	Upper uint16 `json:"upper_port,omitempty"`
}

// Bounds returns the inclusive range of ports matched, and whether the match
// is negated (neq).
func (p PortMatch) Bounds() (lo, hi uint16, negate bool) {
	switch p.Op {
	case PortLte:
		return 0, p.Port, false
	case PortGte:
		return p.Port, 65535, false
	case PortNeq:
		return p.Port, p.Port, true
	case PortRange:
		return p.Port, p.Upper, false
	}
	return p.Port, p.Port, false
}

// Initiation is ietf-mud:direction-initiated.
type Initiation string

// Values of direction-initiated (RFC 8520 §4.8).
const (
	FromDevice Initiation = "from-device"
	ToDevice   Initiation = "to-device"
)

// TCPMatch is the tcp container.
type TCPMatch struct {
	SrcPort            *PortMatch `json:"source_port,omitempty"`
	DstPort            *PortMatch `json:"destination_port,omitempty"`
	DirectionInitiated Initiation `json:"direction_initiated,omitempty"`

	// The other header fields (nil when absent).
	Seq        *uint32 `json:"sequence_number,omitempty"`
	Ack        *uint32 `json:"acknowledgement_number,omitempty"`
	DataOffset *uint8  `json:"data_offset,omitempty"`
	Reserved   *uint8  `json:"reserved,omitempty"`
	Flags      *uint8  `json:"flags,omitempty"` // TCPFin … TCPCwr; the match is on all eight
	Window     *uint16 `json:"window_size,omitempty"`
	Urgent     *uint16 `json:"urgent_pointer,omitempty"`
	Options    []byte  `json:"options,omitempty"`
}

// UDPMatch is the udp container.
type UDPMatch struct {
	SrcPort *PortMatch `json:"source_port,omitempty"`
	DstPort *PortMatch `json:"destination_port,omitempty"`
	Length  *uint16    `json:"length,omitempty"`
}

// ICMPMatch is the icmp container (ICMP in IPv4 ACEs, ICMPv6 in IPv6 ones).
type ICMPMatch struct {
	Type         *uint8 `json:"type,omitempty"`
	Code         *uint8 `json:"code,omitempty"`
	RestOfHeader []byte `json:"rest_of_header,omitempty"`
}

// MUDMatch is the "ietf-mud:mud" augment of matches (RFC 8520 §4).
type MUDMatch struct {
	Manufacturer     string `json:"manufacturer,omitempty"`
	SameManufacturer bool   `json:"same_manufacturer,omitempty"`
	Model            string `json:"model,omitempty"`
	LocalNetworks    bool   `json:"local_networks,omitempty"`
	Controller       string `json:"controller,omitempty"`
	MyController     bool   `json:"my_controller,omitempty"`
}

// Count returns how many abstractions the match names.
func (m *MUDMatch) Count() int {
	n := 0
	for _, b := range []bool{m.Manufacturer != "", m.SameManufacturer, m.Model != "", m.LocalNetworks, m.Controller != "", m.MyController} {
		if b {
			n++
		}
	}
	return n
}

// ACL returns the ACL with the given name, or nil.
func (f *File) ACL(name string) *ACL {
	for i := range f.ACLs {
		if f.ACLs[i].Name == name {
			return &f.ACLs[i]
		}
	}
	return nil
}

// HasIPLiterals reports whether any ACE names a literal address or prefix:
// such files should not be enforced without approval (RFC 8520 §2).
func (f *File) HasIPLiterals() bool {
	for _, acl := range f.ACLs {
		for _, ace := range acl.ACEs {
			for _, ip := range []*IPMatch{ace.Matches.IPv4, ace.Matches.IPv6} {
				if ip != nil && (ip.SrcNetwork != nil || ip.DstNetwork != nil) {
					return true
				}
			}
		}
	}
	return false
}
