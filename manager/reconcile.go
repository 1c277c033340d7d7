package manager

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// desired is what the enforcer and the resolver should hold, derived from
// the state; pushed is the last one they accepted.
type desired struct {
	policies map[string]*policy.Policy
	devices  map[string]enforcer.Device
	devFP    map[string]string
	peers    map[string][]peerElem
	peerFP   map[string]string
	names    map[string][]string // policy ID → its DNS names (resolver watches)
	devNames map[string][]string // MAC → DNS names (resolver snooping)
}

type peerElem struct {
	prefix netip.Prefix
	exp    time.Time // zero: permanent
}

func emptyDesired() *desired {
	return &desired{policies: map[string]*policy.Policy{}, devices: map[string]enforcer.Device{}, devFP: map[string]string{},
		peers: map[string][]peerElem{}, peerFP: map[string]string{}, names: map[string][]string{}, devNames: map[string][]string{}}
}

func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// computeDesired derives the enforcer's and resolver's state.
func (m *Manager) computeDesired() *desired {
	now := m.now()
	ds := emptyDesired()
	s := m.st
	// Members of the live abstractions: enforced devices only (a device
	// pending approval is not trusted into a group, RFC 8520 §16).
	models := map[string]*members{}
	mfrs := map[string]*members{}
	for mac, d := range s.devices {
		mode, ok := modeOf(d)
		if !ok {
			continue
		}
		hw, err := net.ParseMAC(mac)
		if err != nil {
			continue
		}
		ed := enforcer.Device{MAC: hw, Mode: mode}
		for _, a := range d.IPs {
			if a.Unmap().Is4() {
				ed.IPv4s = append(ed.IPv4s, a.Unmap())
			} else {
				ed.IPv6s = append(ed.IPv6s, a)
			}
		}
		var pol *policy.Policy
		if md := s.models[d.MUDURL]; md != nil && md.pol != nil {
			pol = md.pol
		}
		if mode == enforcer.Enforce && (pol == nil || pol.ID != d.PolicyID) {
			m.log.Error("enforced device without its compiled policy (bug)", "mac", mac)
			if m.cfg.Settings.OnFailure != config.Block {
				continue
			}
			ed.Mode = enforcer.Block // never more than on_failure allows
		}
		if ed.Mode == enforcer.Enforce {
			ed.PolicyID = pol.ID
			ed.Overrides = m.overridesOf(mac)
			ds.policies[pol.ID] = pol
			strong := d.URLSource == store.SourceAdminBind
			for _, a := range d.IPs {
				if a.IsLinkLocalUnicast() {
					continue // not an address other hosts reach it by
				}
				addMember(models, d.MUDURL, strong, hostPrefix(a))
				addMember(mfrs, authority(d.MUDURL), strong, hostPrefix(a))
			}
			names := dnsNames(pol.Peers())
			names = append(names, dnsNames(overridePeers(ed.Overrides))...)
			if len(names) > 0 {
				ds.devNames[mac] = names
			}
		}
		ds.devices[mac] = ed
		ds.devFP[mac] = deviceFP(ed)
	}
	want := map[string]policy.Peer{}
	for id, p := range ds.policies {
		for _, pr := range p.Peers() {
			want[pr.Key()] = pr
		}
		if n := dnsNames(p.Peers()); len(n) > 0 {
			ds.names[id] = n
		}
	}
	for _, ed := range ds.devices {
		for _, pr := range overridePeers(ed.Overrides) {
			want[pr.Key()] = pr
		}
	}
	for key, pr := range want {
		var els []peerElem
		switch pr.Kind {
		case policy.DNSName:
			for a, exp := range s.dns[pr.Value] {
				if exp.After(now) {
					els = append(els, peerElem{prefix: hostPrefix(a), exp: exp})
				}
			}
		case policy.Model:
			els = models[pr.Value].elems()
		case policy.Manufacturer:
			els = mfrs[pr.Value].elems()
		case policy.Controller:
			els = prefixElems(m.controllerPrefixes(pr.Value, false))
		case policy.MyController:
			els = prefixElems(m.controllerPrefixes(pr.Value, true))
		case policy.LocalNetworks:
			els = prefixElems(m.cfg.Settings.LocalNetworks)
		default:
			continue // literal prefixes are inline in the rules
		}
		if len(els) == 0 {
			continue
		}
		els = dedupElems(els)
		ds.peers[key] = els
		ds.peerFP[key] = elemsFP(els)
	}
	return ds
}

// members are the addresses of a manufacturer or model class, by how
// strongly the member's MUD URL is bound to it: an administrator's binding
// is strong, a URL learnt from DHCP is weak (RFC 8520 §16).
type members struct{ strong, weak []peerElem }

func addMember(mp map[string]*members, key string, strong bool, p netip.Prefix) {
	c := mp[key]
	if c == nil {
		c = &members{}
		mp[key] = c
	}
	if strong {
		c.strong = append(c.strong, peerElem{prefix: p})
	} else {
		c.weak = append(c.weak, peerElem{prefix: p})
	}
}

// elems never mixes strong and weak members in one class (RFC 8520 §16):
// when an administrator bound any member, the class holds only
// administrator-bound members.
func (c *members) elems() []peerElem {
	switch {
	case c == nil:
		return nil
	case len(c.strong) > 0:
		return c.strong
	}
	return c.weak
}

// controllerPrefixes is a controller class's (or a URL's my-controller)
// addresses: the store's mapping (mudctl controllers set) if there is one,
// else the configuration's (RFC 8520 §4.6, §4.7; URL-form controllers are
// never fetched).
func (m *Manager) controllerPrefixes(uri string, my bool) []netip.Prefix {
	if my {
		if c, ok := m.st.myControllers[uri]; ok {
			return c.Prefixes
		}
		return m.cfg.Settings.MyControllers[uri]
	}
	if c, ok := m.st.controllers[uri]; ok {
		return c.Prefixes
	}
	return m.cfg.Settings.Controllers[uri]
}

func prefixElems(ps []netip.Prefix) []peerElem {
	out := make([]peerElem, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, peerElem{prefix: p.Masked()})
		}
	}
	return out
}

func dedupElems(els []peerElem) []peerElem {
	best := map[netip.Prefix]time.Time{}
	perm := map[netip.Prefix]bool{}
	for _, e := range els {
		if e.exp.IsZero() {
			perm[e.prefix] = true
		}
		if e.exp.After(best[e.prefix]) {
			best[e.prefix] = e.exp
		} else if _, ok := best[e.prefix]; !ok {
			best[e.prefix] = e.exp
		}
	}
	out := make([]peerElem, 0, len(best))
	for p, exp := range best {
		if perm[p] {
			exp = time.Time{}
		}
		out = append(out, peerElem{prefix: p, exp: exp})
	}
	slices.SortFunc(out, func(a, b peerElem) int { return strings.Compare(a.prefix.String(), b.prefix.String()) })
	return out
}

func elemsFP(els []peerElem) string {
	var b strings.Builder
	for _, e := range els {
		b.WriteString(e.prefix.String())
		if !e.exp.IsZero() {
			fmt.Fprintf(&b, "@%d", e.exp.Unix())
		}
		b.WriteByte(' ')
	}
	return b.String()
}

func deviceFP(d enforcer.Device) string {
	b, _ := json.Marshal(d)
	return string(b)
}

func dnsNames(ps []policy.Peer) []string {
	var out []string
	for _, p := range ps {
		if p.Kind == policy.DNSName && !slices.Contains(out, p.Value) {
			out = append(out, p.Value)
		}
	}
	slices.Sort(out)
	return out
}

func overridePeers(o enforcer.Overrides) []policy.Peer {
	var out []policy.Peer
	for _, r := range append(append([]policy.Rule{}, o.FromDevice...), o.ToDevice...) {
		if r.Peer.Kind != policy.AnyPeer && r.Peer.Kind != policy.Prefix {
			out = append(out, r.Peer)
		}
	}
	return out
}

// OverridePolicyRule is the rule an administrator's override entry
// becomes, and the direction it applies to. The rule is named "override";
// a prefix limits it to the prefix's IP version.
func OverridePolicyRule(o store.OverrideRule) (policy.Direction, policy.Rule) {
	dir := policy.FromDevice
	if o.Direction == store.OverrideToDevice {
		dir = policy.ToDevice
	}
	r := policy.Rule{Name: "override", Protocol: o.Protocol, Verdict: policy.Drop}
	if o.Verdict == store.OverrideAllow {
		r.Verdict = policy.Accept
	}
	switch {
	case o.Prefix.IsValid():
		r.Peer = policy.Peer{Kind: policy.Prefix, Prefix: o.Prefix}
		r.Family = policy.IPv4
		if o.Prefix.Addr().Is6() {
			r.Family = policy.IPv6
		}
	case o.DNSName != "":
		r.Peer = policy.Peer{Kind: policy.DNSName, Value: o.DNSName}
	}
	if p := o.DstPort; p != nil {
		r.DstPort = &policy.PortRange{First: p.First, Last: p.Last}
	}
	return dir, r
}

// overridesOf turns the store's override entries into the enforcer's,
// numbered in evaluation order.
func (m *Manager) overridesOf(mac string) enforcer.Overrides {
	var o enforcer.Overrides
	for i, r := range m.st.overrides[mac].Rules {
		dir, rule := OverridePolicyRule(r)
		rule.Name = fmt.Sprintf("override/%d", i+1)
		if dir == policy.ToDevice {
			o.ToDevice = append(o.ToDevice, rule)
		} else {
			o.FromDevice = append(o.FromDevice, rule)
		}
	}
	return o
}

func (m *Manager) toElements(els []peerElem) []enforcer.Element {
	now := m.now()
	out := make([]enforcer.Element, 0, len(els))
	for _, e := range els {
		el := enforcer.Element{Prefix: e.prefix}
		if !e.exp.IsZero() {
			el.Timeout = e.exp.Sub(now)
			if el.Timeout < time.Second {
				continue
			}
		}
		out = append(out, el)
	}
	return out
}

// fullApply reconciles the kernel to the whole desired state in one
// transaction (start-up, and recovery after a failed incremental change).
func (m *Manager) fullApply(ctx context.Context) error {
	ds := m.computeDesired()
	d := enforcer.Desired{Peers: map[string][]enforcer.Element{}}
	for _, p := range ds.policies {
		d.Policies = append(d.Policies, *p)
	}
	slices.SortFunc(d.Policies, func(a, b policy.Policy) int { return strings.Compare(a.ID, b.ID) })
	for _, mac := range sortedKeys(ds.devices) {
		d.Devices = append(d.Devices, ds.devices[mac])
	}
	for k, els := range ds.peers {
		d.Peers[k] = m.toElements(els)
	}
	start := time.Now()
	err := m.cfg.Enforcer.Apply(ctx, d)
	m.noteApply(time.Since(start), err)
	if err != nil {
		m.needFull = true
		return err
	}
	m.needFull = false
	m.syncResolver(ds)
	m.pushed = ds
	return nil
}

func sortedKeys[V any](mp map[string]V) []string {
	out := make([]string, 0, len(mp))
	for k := range mp {
		out = append(out, k)
	}
	slices.Sort(out)
	return out
}

func (m *Manager) noteApply(took time.Duration, err error) {
	m.metrics.applies.Add(1)
	m.metrics.applySeconds.observe(took.Seconds())
	m.lastApply, m.lastLatency = m.now(), took
	if err != nil {
		m.metrics.applyErrors.Add(1)
		m.lastErr, m.lastErrAt = err, m.now()
		m.log.Error("driving the enforcer", "err", err)
	} else {
		m.lastErr = nil
	}
}

// reconcile drives the enforcer and the resolver from what was pushed last
// to the desired state, with incremental changes in a safe order (policies
// and peers before the devices that use them; devices leave before their
// policies). A failure makes the next reconcile a full Apply.
func (m *Manager) reconcile(ctx context.Context) {
	if m.pushed == nil {
		return
	}
	if m.needFull {
		if err := m.fullApply(ctx); err == nil {
			m.observe()
		}
		return
	}
	ds := m.computeDesired()
	p := m.pushed
	e := m.cfg.Enforcer
	start := time.Now()
	calls := 0
	fail := func(err error) {
		m.noteApply(time.Since(start), err)
		m.needFull = true
	}
	for _, id := range sortedKeys(ds.policies) {
		if _, ok := p.policies[id]; !ok {
			calls++
			if err := e.SetPolicy(ctx, *ds.policies[id]); err != nil {
				fail(fmt.Errorf("installing policy %s: %w", id, err))
				return
			}
			p.policies[id] = ds.policies[id]
		}
	}
	for _, k := range sortedKeys(ds.peers) {
		if p.peerFP[k] != ds.peerFP[k] {
			calls++
			if err := e.SetPeer(ctx, k, m.toElements(ds.peers[k])); err != nil {
				fail(fmt.Errorf("setting peer %s: %w", k, err))
				return
			}
			p.peers[k], p.peerFP[k] = ds.peers[k], ds.peerFP[k]
		}
	}
	for _, mac := range sortedKeys(ds.devices) {
		if p.devFP[mac] != ds.devFP[mac] {
			calls++
			if err := e.UpsertDevice(ctx, ds.devices[mac]); err != nil {
				fail(fmt.Errorf("updating device %s: %w", mac, err))
				return
			}
			p.devices[mac], p.devFP[mac] = ds.devices[mac], ds.devFP[mac]
		}
	}
	for _, mac := range sortedKeys(p.devices) {
		if _, ok := ds.devices[mac]; !ok {
			calls++
			if err := e.RemoveDevice(ctx, p.devices[mac].MAC); err != nil {
				fail(fmt.Errorf("removing device %s: %w", mac, err))
				return
			}
			delete(p.devices, mac)
			delete(p.devFP, mac)
		}
	}
	for _, id := range sortedKeys(p.policies) {
		if _, ok := ds.policies[id]; !ok {
			calls++
			if err := e.RemovePolicy(ctx, id); err != nil {
				fail(fmt.Errorf("removing policy %s: %w", id, err))
				return
			}
			delete(p.policies, id)
		}
	}
	for _, k := range sortedKeys(p.peers) {
		if _, ok := ds.peers[k]; !ok {
			calls++
			if err := e.SetPeer(ctx, k, nil); err != nil {
				fail(fmt.Errorf("removing peer %s: %w", k, err))
				return
			}
			delete(p.peers, k)
			delete(p.peerFP, k)
		}
	}
	if calls > 0 {
		m.noteApply(time.Since(start), nil)
	}
	m.syncResolver(ds)
	m.pushed.names, m.pushed.devNames = ds.names, ds.devNames
	m.observe()
}

// syncResolver tells the resolver which names to watch (owner: the policy
// ID) and which names matter for which device (snooping).
func (m *Manager) syncResolver(ds *desired) {
	r := m.cfg.Resolver
	if r == nil {
		return
	}
	old := m.pushed
	if old == nil {
		old = emptyDesired()
	}
	for id, names := range ds.names {
		for _, n := range names {
			if !slices.Contains(old.names[id], n) {
				if _, err := r.Watch(n, id); err != nil {
					m.log.Warn("watching a DNS name", "name", n, "policy", id, "err", err)
				}
			}
		}
	}
	for id, names := range old.names {
		for _, n := range names {
			if !slices.Contains(ds.names[id], n) {
				r.Unwatch(n, id)
			}
		}
	}
	for mac, names := range ds.devNames {
		if !slices.Equal(old.devNames[mac], names) {
			m.setDeviceNames(mac, names)
		}
	}
	for mac := range old.devNames {
		if _, ok := ds.devNames[mac]; !ok {
			m.setDeviceNames(mac, nil)
		}
	}
}

func (m *Manager) setDeviceNames(mac string, names []string) {
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return
	}
	if err := m.cfg.Resolver.SetDeviceNames(hw, names); err != nil {
		m.log.Warn("setting a device's DNS names", "mac", mac, "err", err)
	}
}

// onDNS records a resolver update: every address is allowed until the
// update's expiry; addresses are never withdrawn early, they expire.
func (m *Manager) onDNS(u resolver.Update) {
	if len(u.Addrs) == 0 {
		if u.Err != nil {
			m.log.Debug("DNS update without addresses", "name", u.Name, "err", u.Err)
		}
		return
	}
	now := m.now()
	set := m.st.dns[u.Name]
	if set == nil {
		set = map[netip.Addr]time.Time{}
		m.st.dns[u.Name] = set
	}
	for a, exp := range set {
		if !exp.After(now) {
			delete(set, a)
		}
	}
	for _, a := range u.Addrs {
		if u.Expires.After(set[a]) {
			set[a] = u.Expires
		}
	}
}

// observe logs the bound-to-enforced latency of devices that just got
// their policy into the kernel, and refreshes the state gauges.
func (m *Manager) observe() {
	now := m.now()
	for mac, at := range m.latencyTarget {
		d := m.st.devices[mac]
		if d == nil {
			delete(m.latencyTarget, mac)
			continue
		}
		switch d.State {
		case store.StateEnforced:
			if _, ok := m.pushed.devices[mac]; !ok {
				continue
			}
			lat := now.Sub(at)
			m.metrics.boundToEnforced.observe(lat.Seconds())
			m.log.Info("policy active", "mac", mac, "policy", d.PolicyID, "latency_ms", float64(lat.Microseconds())/1000)
			delete(m.latencyTarget, mac)
		case store.StatePendingApproval, store.StateFailed, store.StateQuarantined, store.StateRemoved:
			m.log.Info("fallback active", "mac", mac, "state", d.State, "latency_ms", float64(now.Sub(at).Microseconds())/1000)
			delete(m.latencyTarget, mac)
		}
	}
	counts := map[store.State]int{}
	unenforced := 0
	for _, d := range m.st.devices {
		counts[d.State]++
		if d.Enforcement == store.EnforcementUnenforced {
			unenforced++
		}
	}
	m.metrics.setStates(counts, len(m.pushed.policies), unenforced, len(m.st.jobs))
}
