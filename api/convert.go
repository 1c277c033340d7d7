package api

import (
	"fmt"
	"github.com/openmud/mud/internal/dnsname"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/manager"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
	"github.com/openmud/mud/violations"
)

// This file is the one place where the daemon's types (store records,
// the manager's views, compiled policies, the enforcer's counters) become
// wire types, and requests become the daemon's types. Every enum is
// mapped value by value, so that renaming or renumbering one inside the
// daemon cannot change the protocol unnoticed.

// --- enums

// stateFrom maps a device state; the store's states are already the
// protocol's names.
func stateFrom(s store.State) DeviceState { return DeviceState(s) }

func signatureFrom(v store.Verdict) SignatureVerdict {
	switch v {
	case store.VerdictUnverified:
		return SignatureUnverified
	case store.VerdictValid:
		return SignatureValid
	case store.VerdictUnsigned:
		return SignatureUnsigned
	case store.VerdictInvalid:
		return SignatureInvalid
	case store.VerdictUntrusted:
		return SignatureUntrusted
	}
	return SignatureVerdict(v)
}

func familyFrom(f policy.Family) Family {
	switch f {
	case policy.IPv4:
		return FamilyIPv4
	case policy.IPv6:
		return FamilyIPv6
	}
	return FamilyAny
}

func verdictFrom(v policy.Verdict) Verdict {
	if v == policy.Accept {
		return Accept
	}
	return Drop
}

func initiatorFrom(i policy.Initiator) Initiator {
	switch i {
	case policy.InitiatedFromDevice:
		return InitiatedFromDevice
	case policy.InitiatedToDevice:
		return InitiatedToDevice
	}
	return ""
}

var peerKinds = map[policy.PeerKind]PeerKind{
	policy.AnyPeer:       PeerAny,
	policy.DNSName:       PeerDNSName,
	policy.Manufacturer:  PeerManufacturer,
	policy.Model:         PeerModel,
	policy.Controller:    PeerController,
	policy.MyController:  PeerMyController,
	policy.LocalNetworks: PeerLocalNetworks,
	policy.Prefix:        PeerPrefix,
}

func peerKindFrom(k policy.PeerKind) PeerKind {
	if n, ok := peerKinds[k]; ok {
		return n
	}
	return PeerKind(k.String())
}

// protocols are the IP protocols known by name; others are numbers.
var protocols = map[string]uint8{
	"icmp":   policy.ProtoICMP,
	"tcp":    policy.ProtoTCP,
	"udp":    policy.ProtoUDP,
	"icmpv6": policy.ProtoICMPv6,
}

// protocolName is a protocol's name, or its number in decimal; "" for 0
// (any).
func protocolName(p uint8) string {
	if p == 0 {
		return ""
	}
	for name, n := range protocols {
		if n == p {
			return name
		}
	}
	return strconv.Itoa(int(p))
}

// --- devices

func holdFrom(h *store.Hold) *Hold {
	if h == nil {
		return nil
	}
	return &Hold{By: h.By, At: h.At, Reason: h.Reason}
}

func deviceFrom(v manager.DeviceView) Device {
	d := v.Device
	out := Device{
		MAC: d.MAC, IPs: slices.Clone(d.IPs), Hostname: d.Hostname, Interface: d.Interface, Port: d.Port,
		MUDURL: d.MUDURL, URLSource: URLSource(d.URLSource), InvalidMUDURL: d.InvalidMUDURL,
		State: stateFrom(d.State), Reason: d.Reason, PolicyID: d.PolicyID,
		Enforcement: Enforcement(d.Enforcement), UnenforcedReason: d.UnenforcedReason,
		Quarantine: holdFrom(d.Quarantine), LeaseExpiry: d.LeaseExpiry, FirstSeen: d.FirstSeen,
		LastSeen: d.LastSeen, UpdatedAt: d.UpdatedAt,
		MUD: mudInfoFrom(v.File), Fetch: fetchFrom(v.Fetch), PendingReasons: v.PendingReasons,
		StaticIPs: v.StaticIPs, BindOnFirstUse: v.FirstUse,
	}
	for _, o := range v.Overrides {
		out.Overrides = append(out.Overrides, overrideFrom(o))
	}
	for _, a := range v.StaticIPs {
		if !slices.Contains(out.IPs, a) {
			out.IPs = append(out.IPs, a)
		}
	}
	return out
}

// CountersFrom converts what the enforcer counted for a device.
func CountersFrom(c enforcer.DeviceCount) *DeviceCounters {
	return &DeviceCounters{SentPackets: c.Sent, SentBytes: c.SentBytes, SentDroppedPackets: c.SentDropped,
		SentDroppedBytes: c.SentDroppedBytes, ReceivedPackets: c.Received, ReceivedBytes: c.ReceivedBytes,
		ReceivedDroppedPackets: c.ReceivedDropped, ReceivedDroppedBytes: c.ReceivedDroppedBytes}
}

func mudInfoFrom(f *manager.FileView) *MUDInfo {
	if f == nil {
		return nil
	}
	info := &MUDInfo{URL: f.URL, Digest: f.Digest, Signature: signatureFrom(f.Verdict), SignatureReason: f.VerdictReason,
		Signer: f.Signer, FetchedAt: f.FetchedAt, VerifiedAt: f.VerifiedAt, CacheValidityHours: int(f.CacheValidity / time.Hour)}
	if m := f.MUD; m != nil {
		info.SystemInfo, info.MfgName, info.ModelName = m.SystemInfo, m.MfgName, m.ModelName
		info.FirmwareRev, info.SoftwareRev, info.Documentation = m.FirmwareRev, m.SoftwareRev, m.Documentation
		supported := m.IsSupported
		info.IsSupported, info.LastUpdate = &supported, m.LastUpdate
		info.Transparency = transparencyFrom(m.Transparency)
		if m.TLSProfileSupported != nil {
			tls := *m.TLSProfileSupported
			info.TLSProfileSupported = &tls
		}
	}
	return info
}

func transparencyFrom(t *mudfile.Transparency) *Transparency {
	if t == nil {
		return nil
	}
	out := &Transparency{SBOMLocalWellKnown: t.SBOMLocalWellKnown, SBOMContactURI: t.SBOMContactURI,
		SBOMArchiveList: t.SBOMArchiveList, VulnURLs: slices.Clone(t.VulnURLs), VulnContactURI: t.VulnContactURI}
	for _, s := range t.SBOMs {
		out.SBOMs = append(out.SBOMs, SBOM{VersionInfo: s.VersionInfo, URL: s.SBOMURL})
	}
	return out
}

func fetchFrom(f *manager.FetchView) *FetchStatus {
	if f == nil {
		return nil
	}
	out := &FetchStatus{URL: f.URL, InFlight: f.InFlight, Queued: f.Queued, Waiting: f.Waiting,
		Failures: f.Failures, NextAttempt: f.NextAttempt}
	for _, a := range f.Attempts {
		out.Attempts = append(out.Attempts, FetchAttempt{At: a.At, Seconds: a.Took.Seconds(), Port: a.Port, OK: a.OK, Error: a.Error})
	}
	return out
}

// --- overrides

// overrideFrom is an override entry in the words of the request that
// added it.
func overrideFrom(o store.OverrideRule) Override {
	dir, r := manager.OverridePolicyRule(o)
	out := Override{Direction: FromDevice, Verdict: Deny, Peer: o.Prefix, DNSName: o.DNSName, Protocol: protocolName(o.Protocol),
		Text: policy.Describe(dir, r), Comment: o.Comment, By: o.By, CreatedAt: o.CreatedAt}
	if o.Direction == store.OverrideToDevice {
		out.Direction = ToDevice
	}
	if o.Verdict == store.OverrideAllow {
		out.Verdict = Allow
	}
	if p := o.DstPort; p != nil {
		out.Port = strconv.Itoa(int(p.First))
		if p.Last != p.First {
			out.Port += "-" + strconv.Itoa(int(p.Last))
		}
	}
	return out
}

func overridesFrom(o store.Overrides) Overrides {
	out := Overrides{MAC: o.MAC, Rules: []Override{}}
	for _, r := range o.Rules {
		out.Rules = append(out.Rules, overrideFrom(r))
	}
	return out
}

// Validate reports whether the daemon would accept r; its errors wrap
// ErrInvalid.
func (r OverrideRequest) Validate() error {
	_, err := overrideRecord(r)
	return err
}

// Override is the entry r asks for, as a device's Overrides list it (By
// and CreatedAt are the daemon's to fill). Errors wrap ErrInvalid.
func (r OverrideRequest) Override() (Override, error) {
	rec, err := overrideRecord(r)
	if err != nil {
		return Override{}, err
	}
	return overrideFrom(rec), nil
}

// overrideRecord validates r and returns the store's record of it.
func overrideRecord(r OverrideRequest) (store.OverrideRule, error) {
	var o store.OverrideRule
	bad := func(format string, a ...any) (store.OverrideRule, error) {
		return store.OverrideRule{}, fmt.Errorf("%w: override: %s", ErrInvalid, fmt.Sprintf(format, a...))
	}
	switch r.Verdict {
	case Allow:
		o.Verdict = store.OverrideAllow
	case Deny:
		o.Verdict = store.OverrideDeny
	default:
		return bad("verdict %q: want allow or deny", r.Verdict)
	}
	switch r.Direction {
	case "", FromDevice:
		o.Direction = store.OverrideFromDevice
	case ToDevice:
		o.Direction = store.OverrideToDevice
	default:
		return bad("direction %q: want from-device or to-device", r.Direction)
	}
	switch {
	case r.Peer != "" && r.DNSName != "":
		return bad("give a peer address or a DNS name, not both")
	case r.Peer != "":
		p, err := parsePrefix(r.Peer)
		if err != nil {
			return bad("%v", err)
		}
		o.Prefix = p
	case r.DNSName != "":
		name, err := dnsname.Normalize(r.DNSName)
		if err != nil {
			return bad("%v", err)
		}
		o.DNSName = name
	}
	proto, err := parseProtocol(r.Protocol)
	if err != nil {
		return bad("%v", err)
	}
	o.Protocol = proto
	if r.Port != "" {
		if proto != store.ProtoTCP && proto != store.ProtoUDP {
			return bad("a port needs protocol tcp or udp")
		}
		first, last, err := parsePortRange(r.Port)
		if err != nil {
			return bad("%v", err)
		}
		o.DstPort = &store.PortRange{First: first, Last: last}
	}
	if len(r.Comment) > maxTextLen {
		return bad("comment longer than %d bytes", maxTextLen)
	}
	o.Comment = r.Comment
	return o, nil
}

// parseProtocol accepts a protocol name (any case) or number; "" is 0.
func parseProtocol(s string) (uint8, error) {
	if s == "" {
		return 0, nil
	}
	if n, ok := protocols[strings.ToLower(s)]; ok {
		return n, nil
	}
	n, err := strconv.ParseUint(s, 10, 8)
	if err != nil {
		return 0, fmt.Errorf("protocol %q: want tcp, udp, icmp, icmpv6 or a number 0-255", s)
	}
	return uint8(n), nil
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

func parsePortRange(s string) (first, last uint16, err error) {
	fs, ls, isRange := strings.Cut(s, "-")
	f, err1 := strconv.ParseUint(fs, 10, 16)
	l := f
	var err2 error
	if isRange {
		l, err2 = strconv.ParseUint(ls, 10, 16)
	}
	if err1 != nil || err2 != nil || f == 0 || l < f {
		return 0, 0, fmt.Errorf("port %q: want N or N-M with 1 <= N <= M <= 65535", s)
	}
	return uint16(f), uint16(l), nil
}

// --- policies

func ruleFrom(r policy.Rule) Rule {
	out := Rule{Name: r.Name, Family: familyFrom(r.Family), Protocol: protocolName(r.Protocol),
		Initiated: initiatorFrom(r.Initiated), Verdict: verdictFrom(r.Verdict), Default: r.Default,
		Peer: Peer{Kind: peerKindFrom(r.Peer.Kind), Value: r.Peer.Value, Prefix: r.Peer.Prefix}}
	portRange := func(p *policy.PortRange) *PortRange {
		if p == nil {
			return nil
		}
		return &PortRange{First: p.First, Last: p.Last, Negate: p.Negate}
	}
	out.SrcPort, out.DstPort = portRange(r.SrcPort), portRange(r.DstPort)
	if r.ICMP != nil {
		out.ICMP = &ICMPMatch{Type: r.ICMP.Type}
		if r.ICMP.Code != nil {
			code := *r.ICMP.Code
			out.ICMP.Code = &code
		}
	}
	return out
}

func ruleViewFrom(d policy.Direction, r policy.Rule) RuleView {
	return RuleView{Name: r.Name, Verdict: verdictFrom(r.Verdict), Text: policy.Describe(d, r), Default: r.Default, Rule: ruleFrom(r)}
}

// NewCompiledPolicy is the wire form of a compiled policy.
func NewCompiledPolicy(p *policy.Policy) CompiledPolicy {
	out := CompiledPolicy{ID: p.ID, MUDURL: p.MUDURL, FromDevice: []RuleView{}, ToDevice: []RuleView{},
		NeedsApproval: p.NeedsApproval, Notes: p.Notes}
	for _, r := range p.FromDevice {
		out.FromDevice = append(out.FromDevice, ruleViewFrom(policy.FromDevice, r))
	}
	for _, r := range p.ToDevice {
		out.ToDevice = append(out.ToDevice, ruleViewFrom(policy.ToDevice, r))
	}
	return out
}

// policyViewFrom lays out a device's policy in evaluation order: its
// overrides, then the policy's rules with their counters.
func policyViewFrom(v manager.PolicyView) PolicyView {
	out := PolicyView{MAC: v.MAC, MUDURL: v.MUDURL, State: stateFrom(v.State), CountersAt: v.CountersAt, NFT: v.NFT}
	p := v.Policy
	if p != nil {
		out.PolicyID, out.NeedsApproval, out.Notes = p.ID, p.NeedsApproval, p.Notes
		if out.MUDURL == "" {
			out.MUDURL = p.MUDURL
		}
	}
	for _, dir := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
		dv := &out.FromDevice
		overrides := v.Overrides.FromDevice
		if dir == policy.ToDevice {
			dv, overrides = &out.ToDevice, v.Overrides.ToDevice
		}
		dv.Rules = []CountedRule{}
		for _, r := range overrides {
			rv := ruleViewFrom(dir, r)
			rv.Override = true
			dv.Rules = append(dv.Rules, CountedRule{RuleView: rv})
		}
		if p != nil {
			for _, r := range p.Rules(dir) {
				n := v.Counts[dir][r.Name]
				dv.Rules = append(dv.Rules, CountedRule{RuleView: ruleViewFrom(dir, r), Counters: Counters(n)})
			}
		}
		n := v.Dropped[dir]
		dv.Dropped = Counters(n)
	}
	return out
}

// --- the rest

func statusFrom(s manager.StatusView) Status {
	out := Status{Version: s.Version, StartedAt: s.StartedAt, UptimeSeconds: s.Uptime.Seconds(), Devices: s.Devices,
		DevicesByState: map[DeviceState]int{}, DevicesUnenforced: s.DevicesUnenforced, PoliciesInstalled: s.PoliciesInstalled,
		DNSAnswersRefused: s.DNSAnswersRefused}
	for st, n := range s.DevicesByState {
		out.DevicesByState[stateFrom(st)] = n
	}
	e := s.Enforcer
	out.Enforcer = EnforcerStatus{Healthy: e.Healthy, LastApply: e.LastApply,
		LastApplyLatency: float64(e.LastApplyLatency.Microseconds()) / 1000, LastError: e.LastError, LastErrorAt: e.LastErrorAt,
		Tables: e.Tables, BridgeConntrack: e.BridgeConntrack, Repairs: e.Repairs, BridgeReplies: e.BridgeReplies}
	if out.Enforcer.Tables == nil {
		out.Enforcer.Tables = []string{}
	}
	for _, g := range s.LateralUnenforced {
		out.LateralUnenforced = append(out.LateralUnenforced, LateralGap{Interface: g.LAN, Port: g.Port,
			Severity: LateralSeverity(g.Severity), Reason: g.Reason, Fix: g.Fix})
	}
	if f := s.Fleet; f != nil {
		out.Fleet = &FleetStatus{GatewayID: f.GatewayID, Connected: !f.Partitioned, QueuedWrites: f.Queued}
	}
	return out
}

func eventFrom(e store.Event) Event {
	return Event{Seq: e.Seq, Time: e.Time, MAC: e.MAC, Kind: e.Kind, From: stateFrom(e.From), To: stateFrom(e.To), Message: e.Message}
}

func violationFrom(v violations.Violation) Violation {
	out := Violation{DeviceAddress: v.DeviceAddr, Direction: FromDevice, Kind: ViolationDefaultDeny,
		Peer: v.Peer, PeerName: v.PeerName, Protocol: protocolName(v.Protocol), Port: v.Port,
		Count: v.Count, FirstSeen: v.FirstSeen, LastSeen: v.LastSeen}
	if v.MAC != nil {
		out.MAC = v.MAC.String()
	}
	if v.Direction == violations.In {
		out.Direction = ToDevice
	}
	if v.Kind == violations.SourceGuard {
		out.Kind = ViolationSourceGuard
	}
	return out
}

func controllerFrom(c manager.Controller) Controller {
	out := Controller{URI: c.URI, Kind: KindController, Prefixes: c.Prefixes, Source: c.Source, UpdatedAt: c.UpdatedAt}
	if c.My {
		out.Kind = KindMyController
	}
	if out.Prefixes == nil {
		out.Prefixes = []netip.Prefix{}
	}
	return out
}

func controllerTo(c Controller) manager.Controller {
	return manager.Controller{URI: c.URI, My: c.Kind == KindMyController, Prefixes: c.Prefixes}
}

func actionTo(r ActionRequest) manager.Action {
	return manager.Action{Reason: r.Reason, AllWithURL: r.AllWithURL}
}

func importResultFrom(o manager.ImportOutcome) ImportResult {
	return ImportResult{MUDURL: o.URL, Digest: o.Digest, Signature: signatureFrom(o.Verdict), Signer: o.Signer,
		Reason: o.Reason, DevicesUpdated: o.DevicesUpdated}
}

// mapAll converts a list.
func mapAll[T, W any](xs []T, f func(T) W) []W {
	out := make([]W, 0, len(xs))
	for _, x := range xs {
		out = append(out, f(x))
	}
	return out
}
