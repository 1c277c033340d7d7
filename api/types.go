package api

import (
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"time"

	"github.com/openmud/mud/internal/dnsname"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// Device is one LAN device as the admin sees it: the persisted record
// (its JSON fields, flattened: mac, ips, hostname, port, mud_url, state,
// reason, enforcement, unenforced_reason, quarantine, ...) plus what the
// manager knows about its MUD file and fetching it.
//
// Enforcement is the field to watch: "unenforced" means the device
// announced a MUD URL but its file cannot be used, and with the default
// policy.on_failure "baseline" it is as unrestricted as a device without
// MUD; UnenforcedReason says why ("MUD server unreachable: …").
type Device struct {
	store.Device
	// MUD describes the device's MUD file when one has been fetched.
	MUD *MUDInfo `json:"mud,omitempty"`
	// Fetch is how getting the device's MUD file goes (attempts, the next
	// one, why it waits); nil when no fetch of its URL was needed since
	// mudd started.
	Fetch *FetchStatus `json:"fetch,omitempty"`
	// PendingReasons lists why the device awaits an admin's approval
	// (state pending-approval): signature missing or invalid, signer
	// changed, IP literals in the file, ...
	PendingReasons []string `json:"pending_reasons,omitempty"`
	// Overrides are the admin's allow/deny entries for the device, in
	// evaluation order.
	Overrides []store.OverrideRule `json:"overrides,omitempty"`
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
	CacheValidityHours int           `json:"cache_validity_hours,omitempty"`
	Digest             string        `json:"digest,omitempty"` // store.Digest of the body
	Signature          store.Verdict `json:"signature,omitempty"`
	SignatureReason    string        `json:"signature_reason,omitempty"`
	Signer             string        `json:"signer,omitempty"`
	FetchedAt          time.Time     `json:"fetched_at,omitzero"`
	VerifiedAt         time.Time     `json:"verified_at,omitzero"`
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

// Status is the daemon's health at a glance (mudctl status).
type Status struct {
	Version       string    `json:"version"`
	StartedAt     time.Time `json:"started_at,omitzero"`
	UptimeSeconds float64   `json:"uptime_seconds"`
	// Devices counts every known device; DevicesByState splits them.
	Devices        int                 `json:"devices"`
	DevicesByState map[store.State]int `json:"devices_by_state"`
	// DevicesUnenforced counts the devices whose MUD file cannot be used
	// and that are unrestricted for it (enforcement "unenforced").
	DevicesUnenforced int `json:"devices_unenforced"`
	// PoliciesInstalled is the number of distinct compiled policies in
	// the kernel (one per MUD URL, shared by devices of a model).
	PoliciesInstalled int            `json:"policies_installed"`
	Enforcer          EnforcerStatus `json:"enforcer"`
}

// EnforcerStatus says whether the kernel matches the desired state.
type EnforcerStatus struct {
	Healthy          bool      `json:"healthy"`
	LastApply        time.Time `json:"last_apply,omitzero"`
	LastApplyLatency float64   `json:"last_apply_latency_ms"`
	LastError        string    `json:"last_error,omitempty"`
	LastErrorAt      time.Time `json:"last_error_at,omitzero"`
	// Tables are our nftables tables found in the kernel, e.g.
	// "inet mud", "bridge mud".
	Tables []string `json:"tables"`
	// BridgeConntrack says whether nf_conntrack_bridge is available.
	BridgeConntrack bool `json:"bridge_conntrack"`
	// BridgeReplies says how replies of permitted bridged flows pass, per
	// IP version: conntrack, inet-conntrack or reflexive (enforcer
	// README.md), e.g. "ipv4 inet-conntrack, ipv6 inet-conntrack".
	BridgeReplies string `json:"bridge_replies,omitempty"`
	// Repairs counts tampering repaired since start.
	Repairs int `json:"repairs,omitempty"`
}

// PolicyView is the policy in force for one device, rule by rule, with the
// kernel's counters (mudctl policy show).
type PolicyView struct {
	MAC      string      `json:"mac"`
	PolicyID string      `json:"policy_id,omitempty"`
	MUDURL   string      `json:"mud_url,omitempty"`
	State    store.State `json:"state,omitempty"`
	// FromDevice and ToDevice hold the rules in evaluation order
	// (overrides first, then the file's rules, then the defaults).
	FromDevice DirectionView `json:"from_device"`
	ToDevice   DirectionView `json:"to_device"`
	// CountersAt is when the counters were read; zero means the counters
	// could not be read (and are all zero).
	CountersAt    time.Time `json:"counters_at,omitzero"`
	NeedsApproval []string  `json:"needs_approval,omitempty"`
	Notes         []string  `json:"notes,omitempty"`
	// NFT is the device's part of the ruleset in nft syntax, when asked
	// for (--nft).
	NFT string `json:"nft,omitempty"`
}

// DirectionView is one direction's rules and its final drop.
type DirectionView struct {
	Rules []RuleView `json:"rules"`
	// Dropped counts what no rule accepted (the final drop).
	Dropped Counters `json:"dropped"`
}

// Counters are packet and byte counts of a rule.
type Counters struct {
	Packets uint64 `json:"packets"`
	Bytes   uint64 `json:"bytes"`
}

// RuleView is one rule with a human text and its counters.
type RuleView struct {
	Name    string `json:"name"`
	Verdict string `json:"verdict"` // "accept" or "drop"
	// Text says in plain words what the rule does (policy.Describe).
	Text     string `json:"text"`
	Default  bool   `json:"default,omitempty"`
	Override bool   `json:"override,omitempty"`
	Counters
	Rule policy.Rule `json:"rule"`
}

// NewRuleView fills a RuleView's name, verdict and text from r; the caller
// adds the counters.
func NewRuleView(d policy.Direction, r policy.Rule) RuleView {
	return RuleView{
		Name:    r.Name,
		Verdict: r.Verdict.String(),
		Text:    policy.Describe(d, r),
		Default: r.Default,
		Rule:    r,
	}
}

// NewPolicyView builds the view of p for the device mac, with the device's
// overrides first (as the enforcer evaluates them) and zero counters.
func NewPolicyView(mac string, p *policy.Policy, overrides []store.OverrideRule) PolicyView {
	v := PolicyView{MAC: mac}
	if p != nil {
		v.PolicyID, v.MUDURL = p.ID, p.MUDURL
		v.NeedsApproval, v.Notes = p.NeedsApproval, p.Notes
	}
	for _, dir := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		dv := &v.FromDevice
		if dir == policy.ToDevice {
			dv = &v.ToDevice
		}
		dv.Rules = []RuleView{}
		for _, o := range overrides {
			if o.Direction == dir {
				rv := NewRuleView(dir, o.Rule)
				rv.Override = true
				dv.Rules = append(dv.Rules, rv)
			}
		}
		if p != nil {
			for _, r := range p.Rules(dir) {
				dv.Rules = append(dv.Rules, NewRuleView(dir, r))
			}
		}
	}
	return v
}

// Event is an event-log entry, as the store keeps it.
type Event = store.Event

// ControllerKind says which table a controller mapping belongs to.
type ControllerKind string

// Controller kinds (RFC 8520 §4.6, §4.7).
const (
	// KindController maps a controller class URI to addresses.
	KindController ControllerKind = "controller"
	// KindMyController maps a MUD URL's my-controller to addresses.
	KindMyController ControllerKind = "my-controller"
)

// Controller is one controller mapping: URI (or, for my-controller, MUD
// URL) → prefixes.
type Controller struct {
	URI       string         `json:"uri"`
	Kind      ControllerKind `json:"kind"`
	Prefixes  []netip.Prefix `json:"prefixes"`
	Source    string         `json:"source,omitempty"` // "config", "mudctl"
	UpdatedAt time.Time      `json:"updated_at,omitzero"`
}

// Caller is who sent a request, from the socket's peer credentials
// (SO_PEERCRED). Known is false when they could not be read.
type Caller struct {
	Known bool   `json:"known"`
	UID   uint32 `json:"uid"`
	GID   uint32 `json:"gid"`
	PID   int32  `json:"pid"`
	// User is the user name of UID, when it resolves.
	User string `json:"user,omitempty"`
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
	// AllWithURL, for approve and reject, applies the decision to every
	// device announcing the same MUD URL (and future ones), not only
	// this MAC.
	AllWithURL bool `json:"all_with_url,omitempty"`
}

// BindRequest assigns a MUD URL to a device that emits none (mudctl
// bind). An empty MUDURL removes the binding.
type BindRequest struct {
	MUDURL string `json:"mud_url"`
	Reason string `json:"reason,omitempty"`
}

// OverrideRequest is one admin allow/deny entry as typed on the command
// line (mudctl override MAC allow|deny ...). Rule turns it into the
// store's form.
type OverrideRequest struct {
	Verdict string `json:"verdict"` // "allow" or "deny"
	// Direction is "from-device" (default) or "to-device".
	Direction string `json:"direction,omitempty"`
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
	MUDURL         string        `json:"mud_url"`
	Digest         string        `json:"digest"`
	Signature      store.Verdict `json:"signature"`
	Signer         string        `json:"signer,omitempty"`
	Reason         string        `json:"reason,omitempty"`
	DevicesUpdated int           `json:"devices_updated"`
}

// Maximum field lengths the server accepts.
const (
	maxURLLen    = 2048
	maxTextLen   = 1024 // reasons, comments
	maxAddrs     = 256
	maxImportLen = 1 << 20
)

// Rule validates r and returns the store's form of it, with the name
// "override" (the manager numbers them). Errors wrap ErrInvalid.
func (r OverrideRequest) Rule() (store.OverrideRule, error) {
	var o store.OverrideRule
	bad := func(format string, a ...any) (store.OverrideRule, error) {
		return store.OverrideRule{}, fmt.Errorf("%w: override: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch r.Verdict {
	case "allow":
		o.Rule.Verdict = policy.Accept
	case "deny":
		o.Rule.Verdict = policy.Drop
	default:
		return bad("verdict %q: want allow or deny", r.Verdict)
	}
	switch r.Direction {
	case "", "from-device":
		o.Direction = policy.FromDevice
	case "to-device":
		o.Direction = policy.ToDevice
	default:
		return bad("direction %q: want from-device or to-device", r.Direction)
	}
	o.Rule.Name = "override"
	switch {
	case r.Peer != "" && r.DNSName != "":
		return bad("give a peer address or a DNS name, not both")
	case r.Peer != "":
		p, err := parsePrefix(r.Peer)
		if err != nil {
			return bad("%v", err)
		}
		o.Rule.Peer = policy.Peer{Kind: policy.Prefix, Prefix: p}
		o.Rule.Family = policy.IPv4
		if p.Addr().Is6() {
			o.Rule.Family = policy.IPv6
		}
	case r.DNSName != "":
		name, err := dnsname.Normalize(r.DNSName)
		if err != nil {
			return bad("%v", err)
		}
		o.Rule.Peer = policy.Peer{Kind: policy.DNSName, Value: name}
	}
	switch p := strings.ToLower(r.Protocol); p {
	case "":
	case "tcp":
		o.Rule.Protocol = policy.ProtoTCP
	case "udp":
		o.Rule.Protocol = policy.ProtoUDP
	case "icmp":
		o.Rule.Protocol = policy.ProtoICMP
	case "icmpv6":
		o.Rule.Protocol = policy.ProtoICMPv6
	default:
		n, err := strconv.ParseUint(p, 10, 8)
		if err != nil {
			return bad("protocol %q: want tcp, udp, icmp, icmpv6 or a number 0-255", r.Protocol)
		}
		o.Rule.Protocol = uint8(n)
	}
	if r.Port != "" {
		if o.Rule.Protocol != policy.ProtoTCP && o.Rule.Protocol != policy.ProtoUDP {
			return bad("a port needs protocol tcp or udp")
		}
		pr, err := parsePortRange(r.Port)
		if err != nil {
			return bad("%v", err)
		}
		o.Rule.DstPort = pr
	}
	if len(r.Comment) > maxTextLen {
		return bad("comment longer than %d bytes", maxTextLen)
	}
	o.Comment = r.Comment
	return o, nil
}

// parsePrefix accepts an address ("192.0.2.1", "2001:db8::1") or a
// prefix ("192.0.2.0/24") and returns it as a masked prefix.
func parsePrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
		}
		return p.Masked(), nil
	}
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an address or prefix", s)
	}
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen()), nil
}

func parsePortRange(s string) (*policy.PortRange, error) {
	first, last, isRange := strings.Cut(s, "-")
	f, err1 := strconv.ParseUint(first, 10, 16)
	l := f
	var err2 error
	if isRange {
		l, err2 = strconv.ParseUint(last, 10, 16)
	}
	if err1 != nil || err2 != nil || f == 0 || l < f {
		return nil, fmt.Errorf("port %q: want N or N-M with 1 <= N <= M <= 65535", s)
	}
	return &policy.PortRange{First: uint16(f), Last: uint16(l)}, nil
}
