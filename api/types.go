package api

import (
	"net/netip"
	"strconv"
	"time"
)

// The wire types: what the control API sends and receives as JSON, and
// what mudctl prints with -o json. They are the API's own, with string
// enums, so the daemon's internal types can change without changing the
// protocol; convert.go maps those to these. docs/api.md documents every
// field, and testdata/*.json holds each type's encoding, checked by the
// contract tests: rename a JSON field only on purpose.

// DeviceState is a device's lifecycle state.
type DeviceState string

// Device states.
const (
	StateDiscovered      DeviceState = "discovered"       // seen in DHCP, no MUD URL (yet)
	StateFetching        DeviceState = "fetching"         // its MUD file is being fetched
	StateEnforced        DeviceState = "enforced"         // its MUD policy is in force
	StatePendingApproval DeviceState = "pending-approval" // its file awaits an administrator
	StateFailed          DeviceState = "failed"           // its file cannot be used
	StateQuarantined     DeviceState = "quarantined"      // an administrator cut it off
	StateRemoved         DeviceState = "removed"          // its lease ended; rules removed
)

// Enforcement says what a device's traffic is held to now.
type Enforcement string

// Enforcement statuses; a device not evaluated yet has none (the field is
// omitted).
const (
	// EnforcementEnforced: the device's MUD policy is in force.
	EnforcementEnforced Enforcement = "enforced"
	// EnforcementUnenforced: the device announced a MUD URL but its file
	// cannot be used, and policy.on_failure is "baseline": it is as
	// unrestricted as a device without MUD.
	EnforcementUnenforced Enforcement = "unenforced"
	// EnforcementBlocked: as unenforced, but on_failure is "block": it can
	// do nothing but DHCP.
	EnforcementBlocked Enforcement = "blocked"
	// EnforcementQuarantined: an administrator quarantined it.
	EnforcementQuarantined Enforcement = "quarantined"
	// EnforcementNone: MUD does not apply (no MUD URL, or its lease ended).
	EnforcementNone Enforcement = "none"
)

// URLSource says where a device's MUD URL came from.
type URLSource string

// MUD URL sources; a device without a MUD URL has none (omitted).
const (
	SourceDHCPv4    URLSource = "dhcpv4"     // DHCPv4 option 161
	SourceDHCPv6    URLSource = "dhcpv6"     // DHCPv6 option 112
	SourceAdminBind URLSource = "admin-bind" // mudctl bind
)

// SignatureVerdict is how a MUD file's signature was judged.
type SignatureVerdict string

// Signature verdicts.
const (
	SignatureUnverified SignatureVerdict = "unverified" // not checked (yet)
	SignatureValid      SignatureVerdict = "valid"      // verifies and chains to a trust anchor
	SignatureUnsigned   SignatureVerdict = "unsigned"   // no signature available
	SignatureInvalid    SignatureVerdict = "invalid"    // does not verify
	SignatureUntrusted  SignatureVerdict = "untrusted"  // verifies, but no trust anchor
)

// Direction is the side of the device a rule applies to.
type Direction string

// Directions.
const (
	FromDevice Direction = "from-device" // packets the device sends
	ToDevice   Direction = "to-device"   // packets sent to the device
)

// Family restricts a rule to one IP version.
type Family string

// Families.
const (
	FamilyAny  Family = "any"
	FamilyIPv4 Family = "ipv4"
	FamilyIPv6 Family = "ipv6"
)

// Verdict is what a rule does with the packets it matches.
type Verdict string

// Verdicts (RFC 8520 §2: reject is treated as drop).
const (
	Accept Verdict = "accept"
	Drop   Verdict = "drop"
)

// Initiator restricts which side may open a TCP connection (RFC 8520 §4.8,
// direction-initiated); a rule without one (the field omitted) is
// stateless.
type Initiator string

// Initiators.
const (
	InitiatedFromDevice Initiator = "from-device"
	InitiatedToDevice   Initiator = "to-device"
)

// PeerKind says what the remote side of a rule stands for.
type PeerKind string

// Peer kinds (RFC 8520 §4 for the abstractions).
const (
	PeerAny           PeerKind = "any"            // every remote address
	PeerDNSName       PeerKind = "dns-name"       // a DNS name (Value); its addresses are resolved
	PeerManufacturer  PeerKind = "manufacturer"   // devices whose MUD URL has the authority Value (§4.1, §4.2)
	PeerModel         PeerKind = "model"          // devices announcing the MUD URL Value (§4.4)
	PeerController    PeerKind = "controller"     // the controller class URI Value (§4.6)
	PeerMyController  PeerKind = "my-controller"  // the administrator's my-controller for MUD URL Value (§4.7)
	PeerLocalNetworks PeerKind = "local-networks" // the gateway's local networks (§4.5)
	PeerPrefix        PeerKind = "prefix"         // a literal address or prefix (Prefix)
)

// OverrideVerdict is what an administrator's override does.
type OverrideVerdict string

// Override verdicts.
const (
	Allow OverrideVerdict = "allow"
	Deny  OverrideVerdict = "deny"
)

// ControllerKind says which table a controller mapping belongs to.
type ControllerKind string

// Controller kinds (RFC 8520 §4.6, §4.7).
const (
	// KindController maps a controller class URI to addresses.
	KindController ControllerKind = "controller"
	// KindMyController maps a MUD URL's my-controller to addresses.
	KindMyController ControllerKind = "my-controller"
)

// Device is one LAN device as the admin sees it (mudctl devices, device
// show).
//
// Enforcement is the field to watch: "unenforced" means the device
// announced a MUD URL but its file cannot be used, and with the default
// policy.on_failure "baseline" it is as unrestricted as a device without
// MUD; UnenforcedReason says why ("MUD server unreachable: …").
type Device struct {
	MAC string `json:"mac"` // lower case, colon-separated
	// IPs are its current IPv4 and IPv6 addresses: its DHCP leases', then
	// its static ones.
	IPs       []netip.Addr `json:"ips,omitempty"`
	Hostname  string       `json:"hostname,omitempty"`
	Interface string       `json:"interface,omitempty"`
	// Port is the bridge port its frames last arrived on.
	Port      string    `json:"port,omitempty"`
	MUDURL    string    `json:"mud_url,omitempty"`
	URLSource URLSource `json:"mud_url_source,omitempty"`
	// InvalidMUDURL says why the MUD URL it announced last could not be
	// used, with the offending value (escaped).
	InvalidMUDURL string      `json:"invalid_mud_url,omitempty"`
	State         DeviceState `json:"state"`
	// Reason explains the state (e.g. why fetching failed).
	Reason           string      `json:"reason,omitempty"`
	PolicyID         string      `json:"policy_id,omitempty"`
	Enforcement      Enforcement `json:"enforcement,omitempty"`
	UnenforcedReason string      `json:"unenforced_reason,omitempty"`
	// Quarantine is set while the device is quarantined.
	Quarantine  *Hold     `json:"quarantine,omitempty"`
	LeaseExpiry time.Time `json:"lease_expiry,omitzero"`
	FirstSeen   time.Time `json:"first_seen,omitzero"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
	// MUD describes the device's MUD file when one has been fetched.
	MUD *MUDInfo `json:"mud,omitempty"`
	// Fetch is how getting the device's MUD file goes (attempts, the next
	// one, why it waits); absent when no fetch of its URL was needed
	// since mudd started.
	Fetch *FetchStatus `json:"fetch,omitempty"`
	// PendingReasons lists why the device awaits an admin's approval
	// (state pending-approval): signature missing or invalid, signer
	// changed, IP literals in the file, ...
	PendingReasons []string `json:"pending_reasons,omitempty"`
	// Overrides are the admin's allow/deny entries for the device, in
	// evaluation order.
	Overrides []Override `json:"overrides,omitempty"`
	// StaticIPs are the static addresses of its binding (mudctl bind
	// --ip, or bound on first use): bound to it like its leases'.
	StaticIPs []netip.Addr `json:"static_ips,omitempty"`
	// BindOnFirstUse says its binding was made without addresses: the
	// first address of each family it uses while it has no DHCP lease is
	// bound to it (an "address-bound" event) and joins StaticIPs.
	BindOnFirstUse bool `json:"bind_on_first_use,omitempty"`
	// Counters is what mudd's tables counted for the device since they
	// were last built, with nft.device_counters; absent without it, or
	// when the device has neither sent nor been sent anything since.
	Counters *DeviceCounters `json:"counters,omitempty"`
	// Gateway is the fleet gateway that reports the device
	// (store.etcd.gateway_id, WithGatewayID); absent when mudd is in no
	// fleet (store.backend bbolt).
	Gateway string `json:"gateway,omitempty"`
}

// DeviceCounters are the packets and bytes a device sent and was sent
// that mudd's nftables tables judged, and of those, what they dropped:
// the default deny of its policy (or of the receiver's, for traffic to
// it), the source guard, quarantine and block. What passed is the
// difference.
type DeviceCounters struct {
	SentPackets            uint64 `json:"sent_packets"`
	SentBytes              uint64 `json:"sent_bytes"`
	SentDroppedPackets     uint64 `json:"sent_dropped_packets"`
	SentDroppedBytes       uint64 `json:"sent_dropped_bytes"`
	ReceivedPackets        uint64 `json:"received_packets"`
	ReceivedBytes          uint64 `json:"received_bytes"`
	ReceivedDroppedPackets uint64 `json:"received_dropped_packets"`
	ReceivedDroppedBytes   uint64 `json:"received_dropped_bytes"`
}

// Hold is an administrative action: who, when, why.
type Hold struct {
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// MUDInfo is what the admin needs to know about a device's MUD file: its
// ietf-mud metadata (RFC 8520 §2.1) and how its signature was judged.
type MUDInfo struct {
	URL           string    `json:"url"`
	SystemInfo    string    `json:"systeminfo,omitempty"`
	MfgName       string    `json:"mfg_name,omitempty"`
	ModelName     string    `json:"model_name,omitempty"`
	FirmwareRev   string    `json:"firmware_rev,omitempty"`
	SoftwareRev   string    `json:"software_rev,omitempty"`
	Documentation string    `json:"documentation,omitempty"`
	IsSupported   *bool     `json:"is_supported,omitempty"`
	LastUpdate    time.Time `json:"last_update,omitzero"`
	// CacheValidityHours is the file's cache-validity (RFC 8520 §3.5).
	CacheValidityHours int `json:"cache_validity_hours,omitempty"`
	// Digest is "sha256:" and the hex SHA-256 of the file's bytes: what
	// an approval covers.
	Digest          string           `json:"digest,omitempty"`
	Signature       SignatureVerdict `json:"signature"`
	SignatureReason string           `json:"signature_reason,omitempty"`
	// Signer is the signing certificate's subject.
	Signer     string    `json:"signer,omitempty"`
	FetchedAt  time.Time `json:"fetched_at,omitzero"`
	VerifiedAt time.Time `json:"verified_at,omitzero"`
	// Transparency says where the manufacturer publishes the device's
	// software bills of materials and vulnerability information (RFC 9472,
	// the extension "transparency"), when the file says; mudd fetches
	// none of it.
	Transparency *Transparency `json:"transparency,omitempty"`
	// TLSProfileSupported is the file's is-tls-dtls-profile-supported (RFC
	// 9761 §5): whether the device supports the (D)TLS profile; absent
	// when the file does not say.
	TLSProfileSupported *bool `json:"tls_profile_supported,omitempty"`
}

// Transparency is a MUD file's RFC 9472 transparency container: where to
// find the device's SBOMs (the cloud, the device itself, or a contact)
// and its vulnerability information. Every URI is the manufacturer's, as
// written in the file.
type Transparency struct {
	// SBOMs are statically located SBOMs, one per software or hardware
	// version.
	SBOMs []SBOM `json:"sboms,omitempty"`
	// SBOMLocalWellKnown is the protocol (http, https, coap, coaps) to
	// ask the device itself for its SBOM at /.well-known/sbom (RFC 9472
	// §4.1).
	SBOMLocalWellKnown string `json:"sbom_local_well_known,omitempty"`
	// SBOMContactURI is a tel, http(s) or mailto URI to ask for SBOMs.
	SBOMContactURI string `json:"sbom_contact_uri,omitempty"`
	// SBOMArchiveList returns a JSON list of the URLs of earlier SBOMs.
	SBOMArchiveList string `json:"sbom_archive_list,omitempty"`
	// VulnURLs reference vulnerability information (e.g. CSAF).
	VulnURLs []string `json:"vuln_urls,omitempty"`
	// VulnContactURI is a tel, http(s) or mailto URI to ask for
	// vulnerability information.
	VulnContactURI string `json:"vuln_contact_uri,omitempty"`
}

// SBOM is one statically located SBOM of a MUD file.
type SBOM struct {
	// VersionInfo is the software or hardware version it describes.
	VersionInfo string `json:"version_info"`
	URL         string `json:"url,omitempty"`
}

// FetchStatus is the state of fetching one MUD URL.
type FetchStatus struct {
	URL string `json:"url"`
	// InFlight says a fetch is running now.
	InFlight bool `json:"in_flight,omitempty"`
	// Queued says a fetch waits to start; Waiting says for what (a free
	// fetch slot, the device's or its port's fetch budget).
	Queued  bool   `json:"queued,omitempty"`
	Waiting string `json:"waiting,omitempty"`
	// Failures counts the failed attempts since the last success: the
	// retry delay doubles with each (from fetch.retry_initial to
	// fetch.retry_max). NextAttempt is when the next one starts.
	Failures    int       `json:"failures,omitempty"`
	NextAttempt time.Time `json:"next_attempt,omitzero"`
	// Attempts are the latest attempts, oldest first.
	Attempts []FetchAttempt `json:"attempts,omitempty"`
}

// FetchAttempt is one fetch of a MUD URL.
type FetchAttempt struct {
	At      time.Time `json:"at"`
	Seconds float64   `json:"seconds"`
	// Port is the bridge port whose fetch budget the attempt used.
	Port string `json:"port,omitempty"`
	// OK says a file was obtained (verified or not); Error says why not.
	OK    bool   `json:"ok"`
	Error string `json:"error,omitempty"`
}

// Override is one admin allow/deny entry of a device (mudctl override),
// in the words of the OverrideRequest that added it, with who added it.
type Override struct {
	Direction Direction       `json:"direction"`
	Verdict   OverrideVerdict `json:"verdict"`
	// Peer is the remote address or prefix (an address as a full-length
	// prefix), or DNSName the remote's DNS name; neither: any remote.
	Peer    netip.Prefix `json:"peer,omitzero"`
	DNSName string       `json:"dns_name,omitempty"`
	// Protocol is tcp, udp, icmp, icmpv6 or another IP protocol number;
	// absent: any.
	Protocol string `json:"protocol,omitempty"`
	// Port is the destination port, "N" or "N-M".
	Port string `json:"port,omitempty"`
	// Text says in plain words what the entry does.
	Text      string    `json:"text"`
	Comment   string    `json:"comment,omitempty"`
	By        string    `json:"by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// Overrides are a device's admin entries, in evaluation order (the answer
// to adding one).
type Overrides struct {
	MAC   string     `json:"mac"`
	Rules []Override `json:"rules"`
}

// Status is the daemon's health at a glance (mudctl status).
type Status struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Devices counts every known device; DevicesByState splits them.
	Devices        int                 `json:"devices"`
	DevicesByState map[DeviceState]int `json:"devices_by_state"`
	// DevicesUnenforced counts the devices whose MUD file cannot be used
	// and that are unrestricted for it (enforcement "unenforced").
	DevicesUnenforced int `json:"devices_unenforced"`
	// DNSAnswersRefused counts snooped DNS answers that would have added
	// addresses to a device's allow-list but came from a source that is
	// not trusted (dns.trusted_sources), since mudd started.
	DNSAnswersRefused uint64 `json:"dns_answers_refused"`
	// PoliciesInstalled is the number of distinct compiled policies in
	// the kernel (one per MUD URL, shared by devices of a model).
	PoliciesInstalled int            `json:"policies_installed"`
	Enforcer          EnforcerStatus `json:"enforcer"`
	// LateralUnenforced are the places where traffic between LAN devices
	// may pass without mudd's rules: a bridge port whose traffic bypasses
	// the bridge, a Wi-Fi access point without client isolation, ports of
	// a hardware switch, a LAN interface that is not a bridge.
	LateralUnenforced []LateralGap `json:"lateral_unenforced,omitempty"`
	// Fleet is the connection to the site's other gateways (store.backend
	// etcd); absent for a lone gateway.
	Fleet *FleetStatus `json:"fleet,omitempty"`
}

// FleetStatus is how this gateway shares decisions with the others of its
// site through etcd.
type FleetStatus struct {
	// GatewayID is this gateway's id (store.etcd.gateway_id).
	GatewayID string `json:"gateway_id"`
	// Connected: etcd answers. Not connected (partitioned), the gateway
	// enforces from its local store and queues its decisions.
	Connected bool `json:"connected"`
	// QueuedWrites counts the decisions and device summaries etcd has not
	// taken yet.
	QueuedWrites int `json:"queued_writes"`
}

// LateralGap is one place where lateral traffic may pass without mudd's
// rules, as the inspection of the LAN bridges' ports found it.
type LateralGap struct {
	// Interface is the LAN interface (mudd.yaml interfaces); Port its
	// bridge port, absent when the finding is about the interface itself.
	Interface string `json:"interface"`
	Port      string `json:"port,omitempty"`
	// Severity: "error" (lateral traffic passes without the rules) or
	// "warning" (it may).
	Severity LateralSeverity `json:"severity"`
	// Reason says what happens to lateral traffic there; Fix what to
	// configure instead.
	Reason string `json:"reason"`
	Fix    string `json:"fix,omitempty"`
}

// LateralSeverity ranks a LateralGap.
type LateralSeverity string

// Lateral severities.
const (
	LateralError   LateralSeverity = "error"   // lateral traffic passes without mudd's rules
	LateralWarning LateralSeverity = "warning" // it may: a program or a setting that can forward past the bridge, or one that could not be read
)

// EnforcerStatus says whether the kernel matches the desired state.
type EnforcerStatus struct {
	Healthy   bool      `json:"healthy"`
	LastApply time.Time `json:"last_apply,omitzero"`
	// LastApplyLatency is how long the last change took to reach the
	// kernel, in milliseconds.
	LastApplyLatency float64   `json:"last_apply_latency_ms"`
	LastError        string    `json:"last_error,omitempty"`
	LastErrorAt      time.Time `json:"last_error_at,omitzero"`
	// Tables are our nftables tables found in the kernel, e.g.
	// "inet mud", "bridge mud".
	Tables []string `json:"tables"`
	// BridgeConntrack says whether nf_conntrack_bridge is available.
	BridgeConntrack bool `json:"bridge_conntrack"`
	// Repairs counts tampering repaired since start.
	Repairs int `json:"repairs,omitempty"`
	// BridgeReplies says how replies of permitted bridged flows pass, per
	// IP version: "conntrack" (nf_conntrack_bridge), "inet-conntrack"
	// (br_netfilter passes bridged IP to the inet table) or "reflexive"
	// (the bridge table's own flow sets), e.g. "ipv4 inet-conntrack, ipv6
	// reflexive".
	BridgeReplies string `json:"bridge_replies,omitempty"`
}

// Rule is one rule of a compiled policy: all set fields must match (a
// missing field matches anything), and the first rule that matches
// decides.
type Rule struct {
	// Name is "<acl>/<ace>" from the MUD file, "default/<what>" for the
	// RFC 8520 App. A DNS/NTP defaults, "override/N" for an admin's entry.
	Name   string `json:"name"`
	Family Family `json:"family"`
	Peer   Peer   `json:"peer"`
	// Protocol is tcp, udp, icmp, icmpv6 or another IP protocol number in
	// decimal; absent: any.
	Protocol string     `json:"protocol,omitempty"`
	SrcPort  *PortRange `json:"src_port,omitempty"`
	DstPort  *PortRange `json:"dst_port,omitempty"`
	ICMP     *ICMPMatch `json:"icmp,omitempty"`
	// Initiated applies to TCP only.
	Initiated Initiator `json:"initiated,omitempty"`
	Verdict   Verdict   `json:"verdict"`
	// Default marks the RFC 8520 App. A rules appended after the file's.
	Default bool `json:"default,omitempty"`
}

// Peer is the remote side of a rule.
type Peer struct {
	Kind PeerKind `json:"kind"`
	// Value is the DNS name, authority, MUD URL or URI the kind needs.
	Value string `json:"value,omitempty"`
	// Prefix is the address or prefix of kind "prefix".
	Prefix netip.Prefix `json:"prefix,omitzero"`
}

// PortRange is an inclusive range of ports; one port has First == Last.
// Negate inverts it (RFC 8519 "neq").
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

// RuleView is one rule with what it does in plain words.
type RuleView struct {
	Name    string  `json:"name"`
	Verdict Verdict `json:"verdict"`
	// Text says in plain words what the rule does.
	Text     string `json:"text"`
	Default  bool   `json:"default,omitempty"`
	Override bool   `json:"override,omitempty"`
	Rule     Rule   `json:"rule"`
}

// Counters are packet and byte counts.
type Counters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// CountedRule is a rule of the policy in force with the kernel's counters.
type CountedRule struct {
	RuleView
	Counters
}

// CompiledPolicy is what a MUD file compiles to, before any device: the
// rules of each direction in evaluation order (mudctl compile -o json).
type CompiledPolicy struct {
	ID         string     `json:"id"`
	MUDURL     string     `json:"mud_url"`
	FromDevice []RuleView `json:"from_device"`
	ToDevice   []RuleView `json:"to_device"`
	// NeedsApproval lists why the policy must not be enforced without an
	// administrator's approval; Notes where it is stricter than the file
	// because an ACE could not be rendered exactly.
	NeedsApproval []string `json:"needs_approval,omitempty"`
	Notes         []string `json:"notes,omitempty"`
}

// PolicyView is the policy in force for one device, rule by rule, with the
// kernel's counters (mudctl policy show).
type PolicyView struct {
	MAC      string      `json:"mac"`
	PolicyID string      `json:"policy_id,omitempty"`
	MUDURL   string      `json:"mud_url,omitempty"`
	State    DeviceState `json:"state,omitempty"`
	// FromDevice and ToDevice hold the rules in evaluation order
	// (overrides first, then the file's rules, then the defaults).
	FromDevice DirectionView `json:"from_device"`
	ToDevice   DirectionView `json:"to_device"`
	// CountersAt is when the counters were read; absent means the
	// counters could not be read (and are all zero).
	CountersAt    time.Time `json:"counters_at,omitzero"`
	NeedsApproval []string  `json:"needs_approval,omitempty"`
	Notes         []string  `json:"notes,omitempty"`
	// NFT is the device's part of the ruleset in nft syntax, when asked
	// for (nft=true).
	NFT string `json:"nft,omitempty"`
}

// DirectionView is one direction's rules and its final drop.
type DirectionView struct {
	Rules []CountedRule `json:"rules"`
	// Dropped counts what no rule accepted (the final drop).
	Dropped Counters `json:"dropped"`
}

// Event is an event-log entry (mudctl events): usually a device's state
// transition or an admin's action.
type Event struct {
	// Seq numbers events 1, 2, 3, ... for the life of the database,
	// never reused.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// MAC is the device concerned; absent for gateway-wide events.
	MAC string `json:"mac,omitempty"`
	// Kind is what happened: "state", "approved", "override-added",
	// "fetch-failed", "unenforced", ... (docs/api.md lists them).
	Kind string `json:"kind"`
	// From and To are the states of a transition.
	From    DeviceState `json:"from,omitempty"`
	To      DeviceState `json:"to,omitempty"`
	Message string      `json:"message,omitempty"`
}

// Violation is what a device tried and was refused: the logged drops of
// one device, in one direction and of one kind, to or from one peer,
// protocol and port (mudctl violations).
type Violation struct {
	// MAC is the device's; absent when it is not known (a routed packet to
	// an address no device holds).
	MAC string `json:"mac,omitempty"`
	// DeviceAddress is the device's address in the latest drop (for a
	// source-guard drop, the address it may not send from).
	DeviceAddress netip.Addr `json:"device_address,omitzero"`
	// Direction is from-device (the device sent it) or to-device.
	Direction Direction     `json:"direction"`
	Kind      ViolationKind `json:"kind"`
	// Peer is the other side; PeerName the DNS name of the device's
	// policy it was an answer for, when there is one.
	Peer     netip.Addr `json:"peer,omitzero"`
	PeerName string     `json:"peer_name,omitempty"`
	// Protocol is tcp, udp, icmp, icmpv6 or another IP protocol number;
	// Port the destination port, or the ICMP type.
	Protocol string `json:"protocol"`
	Port     uint16 `json:"port,omitempty"`
	// Count is how many drops were logged (the log is rate-limited, so
	// the policy's default-deny counter may hold more).
	Count     uint64    `json:"count"`
	FirstSeen time.Time `json:"first_seen"`
	LastSeen  time.Time `json:"last_seen"`
}

// ViolationKind is the rule that refused the packets.
type ViolationKind string

// Violation kinds.
const (
	// ViolationDefaultDeny: no rule of the device's policy allowed them.
	ViolationDefaultDeny ViolationKind = "default-deny"
	// ViolationSourceGuard: the device sent from an address not bound to
	// it.
	ViolationSourceGuard ViolationKind = "source-guard"
)

// Controller is one controller mapping: URI (or, for my-controller, MUD
// URL) → prefixes.
type Controller struct {
	URI      string         `json:"uri"`
	Kind     ControllerKind `json:"kind"`
	Prefixes []netip.Prefix `json:"prefixes"`
	// Source is "config" (mudd.yaml) or "mudctl".
	Source    string    `json:"source,omitempty"`
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

// Caller is who sent a request, from the socket's peer credentials
// (SO_PEERCRED); the server hands it to the Backend, it is not sent on
// the wire. Known is false when they could not be read.
type Caller struct {
	Known bool
	UID   uint32
	GID   uint32
	PID   int32
	// User is the user name of UID, when it resolves.
	User string
}

// String is what records of admin actions keep as "by": the user name, or
// "uid N".
func (c Caller) String() string {
	switch {
	case !c.Known:
		return "unknown"
	case c.User != "":
		return c.User
	}
	return "uid " + strconv.FormatUint(uint64(c.UID), 10)
}

// ActionRequest is the body of approve, reject, quarantine and release.
type ActionRequest struct {
	Reason string `json:"reason,omitempty"`
	// AllWithURL, for approve, applies the decision to every device
	// announcing the same MUD URL (and future ones), not only this MAC.
	AllWithURL bool `json:"all_with_url,omitempty"`
}

// BindRequest assigns a MUD URL to a device that emits none (mudctl
// bind), with its static addresses. An empty MUDURL removes the binding.
type BindRequest struct {
	MUDURL string `json:"mud_url"`
	// IPs are the device's static addresses (mudctl bind --ip): each
	// inside a LAN prefix and held by no other device. Without them, the
	// first address of each family the device uses (ARP, neighbour
	// discovery) while it has no DHCP lease is bound to it. Binding again
	// replaces them.
	IPs    []netip.Addr `json:"ips,omitempty"`
	Reason string       `json:"reason,omitempty"`
}

// OverrideRequest is one admin allow/deny entry as typed on the command
// line (mudctl override MAC allow|deny ...).
type OverrideRequest struct {
	Verdict OverrideVerdict `json:"verdict"`
	// Direction is "from-device" (default) or "to-device".
	Direction Direction `json:"direction,omitempty"`
	// Peer is the remote address or prefix; empty (and no DNSName)
	// means any.
	Peer    string `json:"peer,omitempty"`
	DNSName string `json:"dns_name,omitempty"`
	// Protocol is tcp, udp, icmp, icmpv6 or a protocol number; empty
	// means any.
	Protocol string `json:"protocol,omitempty"`
	// Port is "N" or "N-M": the destination port of the packets in that
	// direction (the remote's port from the device, the device's port
	// to it). Needs tcp or udp.
	Port    string `json:"port,omitempty"`
	Comment string `json:"comment,omitempty"`
}

// ControllerRequest sets the addresses of a controller class (or of a MUD
// URL's my-controller). An empty Addrs removes the mapping.
type ControllerRequest struct {
	URI          string   `json:"uri"`
	MyController bool     `json:"my_controller,omitempty"`
	Addrs        []string `json:"addrs"`
}

// RefreshResult says what a refresh queued.
type RefreshResult struct {
	Devices int `json:"devices"`
	URLs    int `json:"urls"`
}

// ImportRequest carries a MUD file obtained out of band, with its
// detached CMS signature; the daemon verifies it as if it had fetched it.
// In JSON, File and Signature are base64.
type ImportRequest struct {
	File      []byte `json:"file"`
	Signature []byte `json:"signature,omitempty"`
	Reason    string `json:"reason,omitempty"`
}

// ImportResult says what the daemon made of an imported file.
type ImportResult struct {
	MUDURL         string           `json:"mud_url"`
	Digest         string           `json:"digest"`
	Signature      SignatureVerdict `json:"signature"`
	Signer         string           `json:"signer,omitempty"`
	Reason         string           `json:"reason,omitempty"`
	DevicesUpdated int              `json:"devices_updated"`
}
