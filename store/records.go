package store

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"
)

// The record types below are the store's own: they are what is persisted,
// JSON-encoded, one per key. Field names in JSON are part of the file format;
// rename only with a migration.

// State is a device's lifecycle state (the manager's state machine).
type State string

// Known states. The store refuses others so a typo cannot reach the file.
const (
	StateDiscovered      State = "discovered"
	StateFetching        State = "fetching"
	StateEnforced        State = "enforced"
	StatePendingApproval State = "pending-approval"
	StateFailed          State = "failed"
	StateQuarantined     State = "quarantined"
	StateRemoved         State = "removed"
)

// Valid reports whether s is a known state.
func (s State) Valid() bool {
	switch s {
	case StateDiscovered, StateFetching, StateEnforced, StatePendingApproval,
		StateFailed, StateQuarantined, StateRemoved:
		return true
	}
	return false
}

// Enforcement says what a device's traffic is held to now: the manager's
// summary of its state and the configured on_failure, kept with the device
// so that a change of it is noticed (and told) across restarts too.
type Enforcement string

// Known enforcement statuses; empty means not evaluated yet.
const (
	// EnforcementEnforced: the device's MUD policy is in force.
	EnforcementEnforced Enforcement = "enforced"
	// EnforcementUnenforced: the device announced a MUD URL, but its file
	// cannot be used (fetching, failed, pending approval, invalid URL) and
	// on_failure is "baseline": it is unrestricted, as a device without MUD.
	EnforcementUnenforced Enforcement = "unenforced"
	// EnforcementBlocked: as unenforced, but on_failure is "block": it can
	// do nothing but DHCP.
	EnforcementBlocked Enforcement = "blocked"
	// EnforcementQuarantined: an administrator quarantined it.
	EnforcementQuarantined Enforcement = "quarantined"
	// EnforcementNone: MUD does not apply — no MUD URL, or the lease ended
	// and the rules were removed.
	EnforcementNone Enforcement = "none"
)

// Valid reports whether e is a known status or empty.
func (e Enforcement) Valid() bool {
	switch e {
	case "", EnforcementEnforced, EnforcementUnenforced, EnforcementBlocked, EnforcementQuarantined, EnforcementNone:
		return true
	}
	return false
}

// URLSource says where a device's MUD URL came from.
type URLSource string

// Known URL sources; empty means the device has no MUD URL.
const (
	SourceDHCPv4    URLSource = "dhcpv4"
	SourceDHCPv6    URLSource = "dhcpv6"
	SourceAdminBind URLSource = "admin-bind"
)

// Valid reports whether s is a known source or empty.
func (s URLSource) Valid() bool {
	switch s {
	case "", SourceDHCPv4, SourceDHCPv6, SourceAdminBind:
		return true
	}
	return false
}

// Hold records an administrative action: who, when, why.
type Hold struct {
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Device is one LAN device, keyed by its MAC.
type Device struct {
	// MAC is normalised to lower-case colon form on Put.
	MAC       string       `json:"mac"`
	IPs       []netip.Addr `json:"ips,omitempty"` // IPv4 and IPv6
	Hostname  string       `json:"hostname,omitempty"`
	Interface string       `json:"interface,omitempty"`
	// Port is the bridge port the device's frames last arrived on; empty
	// when unknown.
	Port string `json:"port,omitempty"`
	// MUDURL is the URL the device emitted or the admin bound.
	MUDURL    string    `json:"mud_url,omitempty"`
	URLSource URLSource `json:"mud_url_source,omitempty"`
	// InvalidMUDURL says why the MUD URL the device announced last could
	// not be used, with the offending value (escaped); empty otherwise.
	InvalidMUDURL string `json:"invalid_mud_url,omitempty"`
	State         State  `json:"state"`
	// Reason explains the state (e.g. why fetching failed).
	Reason   string `json:"reason,omitempty"`
	PolicyID string `json:"policy_id,omitempty"`
	// Enforcement is what the device's traffic is held to now, and
	// UnenforcedReason, when it is unenforced or blocked, why its MUD
	// policy is not in force.
	Enforcement      Enforcement `json:"enforcement,omitempty"`
	UnenforcedReason string      `json:"unenforced_reason,omitempty"`
	// Quarantine is set while the device is quarantined; it survives
	// state changes so a release knows there was a quarantine to lift.
	Quarantine  *Hold     `json:"quarantine,omitempty"`
	LeaseExpiry time.Time `json:"lease_expiry,omitzero"`
	FirstSeen   time.Time `json:"first_seen,omitzero"`
	LastSeen    time.Time `json:"last_seen,omitzero"`
	// UpdatedAt is set by the store on every Put.
	UpdatedAt time.Time `json:"updated_at,omitzero"`
}

func (d *Device) validate() error {
	if !d.State.Valid() {
		return fmt.Errorf("unknown device state %q", d.State)
	}
	if !d.URLSource.Valid() {
		return fmt.Errorf("unknown MUD URL source %q", d.URLSource)
	}
	if !d.Enforcement.Valid() {
		return fmt.Errorf("unknown enforcement status %q", d.Enforcement)
	}
	return nil
}

// Binding is an admin-assigned MUD URL for a device that emits none
// (mudctl bind), and the device's static addresses.
type Binding struct {
	MAC    string `json:"mac"`
	MUDURL string `json:"mud_url"`
	// IPs are the device's static addresses: given by the administrator
	// (mudctl bind --ip), or, with FirstUse, the first address of each
	// family the device was seen using.
	IPs []netip.Addr `json:"ips,omitempty"`
	// FirstUse: the binding was made without addresses, so the first
	// address of each family the device uses (ARP, neighbour discovery)
	// is bound to it and added to IPs.
	FirstUse  bool      `json:"first_use,omitempty"`
	By        string    `json:"by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

func (b *Binding) validate() error {
	if b.MUDURL == "" {
		return fmt.Errorf("binding for %s has no MUD URL", b.MAC)
	}
	seen := map[netip.Addr]bool{}
	for _, a := range b.IPs {
		if !a.IsValid() || a.Zone() != "" || a.Is4In6() {
			return fmt.Errorf("binding for %s: address %q is not a plain IPv4 or IPv6 address", b.MAC, a)
		}
		if seen[a] {
			return fmt.Errorf("binding for %s: address %s twice", b.MAC, a)
		}
		seen[a] = true
	}
	return nil
}

// Verdict is the outcome of verifying a MUD file's signature.
type Verdict string

// Known verdicts. The store keeps whatever mudfetch decided; it does not
// judge.
const (
	VerdictUnverified Verdict = ""          // not (yet) checked
	VerdictValid      Verdict = "valid"     // signature verifies, chains to an anchor
	VerdictUnsigned   Verdict = "unsigned"  // no signature available
	VerdictInvalid    Verdict = "invalid"   // signature does not verify
	VerdictUntrusted  Verdict = "untrusted" // verifies, but no trust anchor
)

// MUDFile is a cached MUD file and its signature, keyed by URL.
type MUDFile struct {
	URL          string    `json:"url"`
	Body         []byte    `json:"body"`
	Signature    []byte    `json:"signature,omitempty"`
	SignatureURL string    `json:"signature_url,omitempty"`
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	FetchedAt    time.Time `json:"fetched_at,omitzero"`
	VerifiedAt   time.Time `json:"verified_at,omitzero"`
	Verdict      Verdict   `json:"verdict,omitempty"`
	// VerdictReason explains a verdict other than valid.
	VerdictReason string `json:"verdict_reason,omitempty"`
	// Signer is the signing certificate's subject.
	Signer string `json:"signer,omitempty"`
	// CacheValidity is the file's cache-validity (RFC 8520 §3.5).
	CacheValidity time.Duration `json:"cache_validity,omitempty"`
	// RefreshDue is when the manager should fetch again.
	RefreshDue time.Time `json:"refresh_due,omitzero"`
}

// Digest is "sha256:" and the hex SHA-256 of the body: what an Approval
// names, so an approval covers exactly the bytes the admin saw.
func (f *MUDFile) Digest() string { return Digest(f.Body) }

// Digest returns "sha256:<hex>" of b.
func Digest(b []byte) string {
	sum := sha256.Sum256(b)
	return "sha256:" + hex.EncodeToString(sum[:])
}

// Pin is the signer and URL authority first seen (RFC 8520 §16), kept both
// per MUD URL and per MAC so a change of either can be noticed.
type Pin struct {
	MAC       string    `json:"mac,omitempty"` // key in PinsByMAC
	MUDURL    string    `json:"mud_url"`       // key in PinsByURL
	Signer    string    `json:"signer,omitempty"`
	Authority string    `json:"authority"`
	FirstSeen time.Time `json:"first_seen,omitzero"`
}

// Approval is an admin's approval of a MUD file that needed one, for one
// device (ApprovalsByMAC) or for every device announcing a URL
// (ApprovalsByURL).
type Approval struct {
	MAC    string `json:"mac,omitempty"`
	MUDURL string `json:"mud_url,omitempty"`
	// Digest is the approved file's Digest; a different file is not
	// covered.
	Digest string    `json:"digest"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// Rejection is an admin's refusal of one device's MUD file (mudctl
// reject): the device is held to the fallback treatment while it
// announces the file with this digest. Keyed by MAC.
type Rejection struct {
	MAC    string `json:"mac"`
	MUDURL string `json:"mud_url,omitempty"`
	// Digest is the rejected file's Digest; a different file is not
	// covered.
	Digest string    `json:"digest"`
	By     string    `json:"by,omitempty"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason,omitempty"`
}

// OverrideDirection is the traffic an override applies to.
type OverrideDirection string

// Override directions.
const (
	// OverrideFromDevice: packets the device sends; the remote side is
	// their destination.
	OverrideFromDevice OverrideDirection = "from-device"
	// OverrideToDevice: packets sent to the device; the remote side is
	// their source.
	OverrideToDevice OverrideDirection = "to-device"
)

// OverrideVerdict is what an override does with the packets it matches.
type OverrideVerdict string

// Override verdicts.
const (
	OverrideAllow OverrideVerdict = "allow"
	OverrideDeny  OverrideVerdict = "deny"
)

// IP protocol numbers (IANA) an override's port needs.
const (
	ProtoTCP uint8 = 6
	ProtoUDP uint8 = 17
)

// PortRange is an inclusive range of ports, First <= Last; one port has
// First == Last.
type PortRange struct {
	First uint16 `json:"first"`
	Last  uint16 `json:"last"`
}

// OverrideRule is one admin allow/deny entry (mudctl override): the store's
// own record, independent of how the manager compiles it. Every field that
// is unset matches anything; the set ones must all match.
//
// Encoded, e.g.:
//
//	{"direction":"from-device","verdict":"allow","prefix":"198.51.100.7/32",
//	 "protocol":6,"dst_port":{"first":443,"last":443},"by":"root",
//	 "created_at":"2026-02-01T09:30:00Z"}
type OverrideRule struct {
	// Direction is "from-device" or "to-device".
	Direction OverrideDirection `json:"direction"`
	// Verdict is "allow" or "deny".
	Verdict OverrideVerdict `json:"verdict"`
	// Prefix is the remote side's address or prefix (an address is a
	// full-length prefix), which also limits the entry to its IP version.
	// DNSName is the remote side's DNS name instead (lower case, no final
	// dot). Neither set: any remote, either IP version.
	Prefix  netip.Prefix `json:"prefix,omitzero"`
	DNSName string       `json:"dns_name,omitempty"`
	// Protocol is the IP protocol number (IANA: 1 icmp, 6 tcp, 17 udp,
	// 58 icmpv6, ...); 0 is any.
	Protocol uint8 `json:"protocol,omitempty"`
	// DstPort is the packets' destination port range: the remote's port
	// from the device, the device's port to it. Only with tcp or udp; nil
	// is any.
	DstPort *PortRange `json:"dst_port,omitempty"`
	// Comment is the admin's note; By and CreatedAt say who added the
	// entry and when.
	Comment   string    `json:"comment,omitempty"`
	By        string    `json:"by,omitempty"`
	CreatedAt time.Time `json:"created_at,omitzero"`
}

// validate reports why r is not a record the store accepts.
func (r *OverrideRule) validate() error {
	switch {
	case r.Direction != OverrideFromDevice && r.Direction != OverrideToDevice:
		return fmt.Errorf("direction %q: want from-device or to-device", r.Direction)
	case r.Verdict != OverrideAllow && r.Verdict != OverrideDeny:
		return fmt.Errorf("verdict %q: want allow or deny", r.Verdict)
	case r.Prefix.IsValid() && r.DNSName != "":
		return errors.New("both a prefix and a DNS name")
	case r.Prefix.IsValid() && r.Prefix != r.Prefix.Masked():
		return fmt.Errorf("prefix %s has host bits set", r.Prefix)
	case r.DstPort != nil && r.Protocol != ProtoTCP && r.Protocol != ProtoUDP:
		return fmt.Errorf("a destination port with protocol %d: ports need tcp or udp", r.Protocol)
	case r.DstPort != nil && (r.DstPort.First == 0 || r.DstPort.Last < r.DstPort.First):
		return fmt.Errorf("destination ports %d-%d: want 1 <= first <= last", r.DstPort.First, r.DstPort.Last)
	}
	return nil
}

// DNSName is what mudd learned a DNS name of a policy resolves to, from
// its own queries and the answers it snooped, each address with the expiry
// its answer gave it. It is kept so that a restarted mudd installs the
// addresses devices already hold answers for, rather than wait for them to
// ask again. Keyed by name.
type DNSName struct {
	Name  string    `json:"name"`
	Addrs []DNSAddr `json:"addrs"`
}

// DNSAddr is one address of a DNSName and when it expires.
type DNSAddr struct {
	Addr    netip.Addr `json:"addr"`
	Expires time.Time  `json:"expires"`
}

func (d *DNSName) validate() error {
	for _, a := range d.Addrs {
		if !a.Addr.IsValid() {
			return fmt.Errorf("%w: DNS name %s: an invalid address", ErrInvalid, d.Name)
		}
	}
	return nil
}

// LearnedAddrs are the addresses a device was seen using (IPv6 SLAAC and
// privacy addresses, from ARP and neighbour discovery), each with when it
// was last seen, kept so that a restarted mudd binds them again at once
// and lets them age from then. Keyed by MAC.
type LearnedAddrs struct {
	MAC   string        `json:"mac"`
	Addrs []LearnedAddr `json:"addrs"`
}

// LearnedAddr is one address of LearnedAddrs.
type LearnedAddr struct {
	Addr netip.Addr `json:"addr"`
	Seen time.Time  `json:"seen"`
}

func (l *LearnedAddrs) validate() error {
	for _, a := range l.Addrs {
		if !a.Addr.IsValid() {
			return fmt.Errorf("%w: learned addresses of %s: an invalid address", ErrInvalid, l.MAC)
		}
	}
	return nil
}

// Overrides are a device's admin entries, in evaluation order, keyed by
// MAC.
type Overrides struct {
	MAC   string         `json:"mac"`
	Rules []OverrideRule `json:"rules"`
}

func (o *Overrides) validate() error {
	for i := range o.Rules {
		if err := o.Rules[i].validate(); err != nil {
			return fmt.Errorf("override %d: %w", i+1, err)
		}
	}
	return nil
}

// ControllerMapping gives the addresses of a controller class (keyed by
// its URI, in Controllers) or of my-controller for a MUD URL (keyed by
// that URL, in MyControllers). Two tables, because a controller URI may
// itself be an https URL.
type ControllerMapping struct {
	Name      string         `json:"name"`
	Prefixes  []netip.Prefix `json:"prefixes"`
	Source    string         `json:"source,omitempty"` // e.g. "config", "mudctl"
	UpdatedAt time.Time      `json:"updated_at,omitzero"`
}

// NormalizeMAC returns an EUI-48 MAC in the store's key form,
// "aa:bb:cc:dd:ee:ff". It accepts what net.ParseMAC accepts.
func NormalizeMAC(s string) (string, error) {
	hw, err := net.ParseMAC(s)
	if err != nil || len(hw) != 6 {
		return "", fmt.Errorf("%w: %q is not an EUI-48 MAC address", ErrInvalid, s)
	}
	return hw.String(), nil
}
