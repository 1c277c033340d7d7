package manager

import (
	"bytes"
	"context"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// desired is what the enforcer and the resolver should hold, derived from
// the state; pushed is the last one they accepted. Besides the entries it
// keeps the reference counts that decide what is installed: a policy while
// an enforced device uses it, a peer while an installed policy or an
// enforced device's overrides name it.
type desired struct {
	devices  map[string]*devEntry      // MAC → entry, for the devices in the enforcer's maps
	policies map[string]*policy.Policy // installed policies by ID
	polRefs  map[string]int            // policy ID → enforced devices using it
	peers    map[string][]peerElem     // key → elements (sorted), for the peers that have some
	peerRefs map[string]int            // key → installed policies and enforced devices' overrides naming it
	peerOf   map[string]policy.Peer    // key → the peer, while named
	names    map[string][]string       // policy ID → its DNS names (resolver watches)
	classes  map[string]*classSet      // class peer key → its members' addresses
}

// devEntry is what the enforcer and the resolver hold for one device.
type devEntry struct {
	dev enforcer.Device
	// Set for enforced devices only: the policy; the MUD URL and
	// authority of its model and manufacturer classes, and whether an
	// administrator bound that URL (RFC 8520 §16); the addresses other
	// hosts reach it by (its class elements); the DNS names that matter
	// for it (snooping); the peers its overrides name.
	pol     *policy.Policy
	url     string
	auth    string
	strong  bool
	hosts   []netip.Prefix
	names   []string
	ovPeers []policy.Peer
}

// member says whether the device belongs to its model and manufacturer
// classes: enforced devices only (a device pending approval is not
// trusted into a group, RFC 8520 §16).
func (e *devEntry) member() bool { return e.dev.Mode == enforcer.Enforce }

// snoopNames are the DNS names given to snooping for the device.
func (e *devEntry) snoopNames() []string {
	if e == nil {
		return nil
	}
	return e.names
}

type peerElem struct {
	prefix netip.Prefix
	exp    time.Time // zero: permanent
}

func emptyDesired() *desired {
	return &desired{devices: map[string]*devEntry{}, policies: map[string]*policy.Policy{}, polRefs: map[string]int{},
		peers: map[string][]peerElem{}, peerRefs: map[string]int{}, peerOf: map[string]policy.Peer{},
		names: map[string][]string{}, classes: map[string]*classSet{}}
}

func hostPrefix(a netip.Addr) netip.Prefix {
	a = a.Unmap()
	return netip.PrefixFrom(a, a.BitLen())
}

// entryOf derives a device's entry from its record; nil when the device
// is in no map of the enforcer (unenforced, or no MUD at all).
func (m *Manager) entryOf(mac string, d *store.Device) *devEntry {
	mode, ok := modeOf(d)
	if !ok {
		return nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil
	}
	e := &devEntry{dev: enforcer.Device{MAC: hw, Mode: mode}}
	ips := m.addrsOf(mac, d)
	for _, a := range ips {
		if a.Unmap().Is4() {
			e.dev.IPv4s = append(e.dev.IPv4s, a.Unmap())
		} else {
			e.dev.IPv6s = append(e.dev.IPv6s, a)
		}
	}
	var pol *policy.Policy
	if md := m.st.models[d.MUDURL]; md != nil && md.pol != nil {
		pol = md.pol
	}
	if mode == enforcer.Enforce && (pol == nil || pol.ID != d.PolicyID) {
		m.log.Error("enforced device without its compiled policy (bug)", "mac", mac)
		if m.cfg.Settings.OnFailure != config.Block {
			return nil
		}
		e.dev.Mode = enforcer.Block // never more than on_failure allows
	}
	if e.dev.Mode != enforcer.Enforce {
		return e
	}
	e.dev.PolicyID = pol.ID
	e.dev.Overrides = m.overridesOf(mac)
	e.pol, e.url, e.auth, e.strong = pol, d.MUDURL, authority(d.MUDURL), d.URLSource == store.SourceAdminBind
	for _, a := range ips {
		if !a.IsLinkLocalUnicast() { // not an address other hosts reach it by
			e.hosts = append(e.hosts, hostPrefix(a))
		}
	}
	ov := overridePeers(e.dev.Overrides)
	e.names = append(dnsNames(pol.Peers()), dnsNames(ov)...)
	e.ovPeers = setPeers(ov)
	return e
}

// setPeers are the distinct peers, by key, that have an address set of
// their own (not literal prefixes, which are inline in the rules).
func setPeers(ps []policy.Peer) []policy.Peer {
	var out []policy.Peer
	for _, p := range ps {
		switch p.Kind {
		case policy.DNSName, policy.Model, policy.Manufacturer, policy.Controller, policy.MyController, policy.LocalNetworks:
			if !slices.ContainsFunc(out, func(q policy.Peer) bool { return q.Key() == p.Key() }) {
				out = append(out, p)
			}
		}
	}
	return out
}

// add records an entry and what it uses (computeDesired).
func (ds *desired) add(mac string, e *devEntry) {
	ds.devices[mac] = e
	if !e.member() {
		return
	}
	id := e.pol.ID
	if ds.polRefs[id] == 0 {
		ds.policies[id] = e.pol
		if n := dnsNames(e.pol.Peers()); len(n) > 0 {
			ds.names[id] = n
		}
		for _, pr := range setPeers(e.pol.Peers()) {
			ds.ref(pr)
		}
	}
	ds.polRefs[id]++
	for _, pr := range e.ovPeers {
		ds.ref(pr)
	}
}

func (ds *desired) ref(pr policy.Peer) {
	ds.peerRefs[pr.Key()]++
	ds.peerOf[pr.Key()] = pr
}

// computeDesired derives the enforcer's and resolver's state from scratch,
// going through every device (start-up and recovery; the incremental
// reconcile must always arrive at the same).
func (m *Manager) computeDesired() *desired {
	ds := emptyDesired()
	models := map[string]*members{}
	mfrs := map[string]*members{}
	for mac, d := range m.st.devices {
		e := m.entryOf(mac, d)
		if e == nil {
			continue
		}
		ds.add(mac, e)
		if e.member() {
			ds.addClassMember(e)
			for _, h := range e.hosts {
				addMember(models, e.url, e.strong, h)
				addMember(mfrs, e.auth, e.strong, h)
			}
		}
	}
	class := func(k policy.PeerKind, v string) []peerElem {
		if k == policy.Model {
			return models[v].elems()
		}
		return mfrs[v].elems()
	}
	for key, pr := range ds.peerOf {
		if els := m.peerElems(pr, class); len(els) > 0 {
			ds.peers[key] = els
		}
	}
	return ds
}

// peerElems are a peer's elements now, sorted; class gives the members
// of a model or manufacturer class.
func (m *Manager) peerElems(pr policy.Peer, class func(policy.PeerKind, string) []peerElem) []peerElem {
	var els []peerElem
	switch pr.Kind {
	case policy.DNSName:
		now := m.now()
		for a, exp := range m.st.dns[pr.Value] {
			if exp.After(now) {
				els = append(els, peerElem{prefix: hostPrefix(a), exp: exp})
			}
		}
	case policy.Model, policy.Manufacturer:
		els = class(pr.Kind, pr.Value)
	case policy.Controller:
		els = prefixElems(m.controllerPrefixes(pr.Value, false))
	case policy.MyController:
		els = prefixElems(m.controllerPrefixes(pr.Value, true))
	case policy.LocalNetworks:
		els = prefixElems(m.localNetworks())
	}
	if len(els) == 0 {
		return nil
	}
	return dedupElems(els)
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
	c.add(strong, p)
}

func (c *members) add(strong bool, p netip.Prefix) {
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

// dedupElems sorts the elements by prefix and keeps one per prefix: a
// permanent one, else the one that expires last.
func dedupElems(els []peerElem) []peerElem {
	out := slices.Clone(els)
	slices.SortFunc(out, func(a, b peerElem) int {
		if c := a.prefix.Addr().Compare(b.prefix.Addr()); c != 0 {
			return c
		}
		if c := a.prefix.Bits() - b.prefix.Bits(); c != 0 {
			return c
		}
		// A permanent element first, then the one that expires last.
		switch az, bz := a.exp.IsZero(), b.exp.IsZero(); {
		case az && bz:
			return 0
		case az:
			return -1
		case bz:
			return 1
		}
		return b.exp.Compare(a.exp)
	})
	return slices.CompactFunc(out, func(a, b peerElem) bool { return a.prefix == b.prefix })
}

// sameElems says whether two sorted element lists are equal.
func sameElems(a, b []peerElem) bool {
	return slices.EqualFunc(a, b, func(x, y peerElem) bool { return x.prefix == y.prefix && x.exp.Equal(y.exp) })
}

// sameDeviceEntry says whether the enforcer holds a as b, field by field.
// Overrides are compared deeply: few devices have any, and the comparison
// follows the rule type as it grows.
func sameDeviceEntry(a, b enforcer.Device) bool {
	return bytes.Equal(a.MAC, b.MAC) && a.Mode == b.Mode && a.PolicyID == b.PolicyID &&
		slices.Equal(a.IPv4s, b.IPv4s) && slices.Equal(a.IPv6s, b.IPv6s) &&
		(len(a.Overrides.FromDevice)+len(a.Overrides.ToDevice)+len(b.Overrides.FromDevice)+len(b.Overrides.ToDevice) == 0 ||
			reflect.DeepEqual(a.Overrides, b.Overrides))
}

// sameEntry says whether nothing the enforcer, the resolver or a class
// holds of a device changed.
func sameEntry(a, b *devEntry) bool {
	if a == nil || b == nil {
		return a == b
	}
	return sameDeviceEntry(a.dev, b.dev) && sameClass(a, b) && slices.Equal(a.names, b.names)
}

// sameClass says whether the device's part in its classes is unchanged.
func sameClass(a, b *devEntry) bool {
	am, bm := a != nil && a.member(), b != nil && b.member()
	if !am || !bm {
		return am == bm
	}
	return a.url == b.url && a.strong == b.strong && slices.Equal(a.hosts, b.hosts)
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
// transaction (start-up, and recovery after a failed change).
func (m *Manager) fullApply(ctx context.Context) error {
	m.dirty.reset()
	ds := m.computeDesired()
	d := enforcer.Desired{Peers: map[string][]enforcer.Element{}}
	for _, id := range sortedKeys(ds.policies) {
		d.Policies = append(d.Policies, *ds.policies[id])
	}
	for _, mac := range sortedKeys(ds.devices) {
		d.Devices = append(d.Devices, ds.devices[mac].dev)
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
// to the desired state: it recomputes what the dirty set says may have
// changed and hands the enforcer all of it in one transaction. A failure
// makes the next reconcile a full Apply. It commits nothing: Run does,
// beside it or after it.
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
	if !m.dirty.empty() || m.lanDirty {
		c := m.plan()
		m.dirty.reset()
		if !m.send(ctx, c) {
			return
		}
	}
	m.observe()
}

// change is what one reconcile changes, staged over pushed until the
// enforcer has taken it.
type change struct {
	pushed   *desired
	devs     map[string]*devEntry      // MAC → new entry; nil: out of the maps
	polRefs  map[string]int            // policy ID → new count
	pols     map[string]*policy.Policy // policy ID → the policy, when used anew
	peerRefs map[string]int            // key → new count
	peerOf   map[string]policy.Peer    // key → the peer, when named anew
	peers    map[string][]peerElem     // key → new elements; nil: none
	// classDeltas: what the change does to the classes' counts;
	// classEdits: the class peers it changes by address (classes.go)
	classDeltas map[string]classDelta
	classEdits  map[string]classEdit
	upd         enforcer.Update
}

func newChange(pu *desired) *change {
	return &change{pushed: pu, devs: map[string]*devEntry{}, polRefs: map[string]int{}, pols: map[string]*policy.Policy{},
		peerRefs: map[string]int{}, peerOf: map[string]policy.Peer{}, peers: map[string][]peerElem{},
		classDeltas: map[string]classDelta{}, classEdits: map[string]classEdit{}}
}

// dev is a device's entry after the change.
func (c *change) dev(mac string) *devEntry {
	if e, ok := c.devs[mac]; ok {
		return e
	}
	return c.pushed.devices[mac]
}

func (c *change) peerRefsOf(k string) int {
	if n, ok := c.peerRefs[k]; ok {
		return n
	}
	return c.pushed.peerRefs[k]
}

func (c *change) peerOfKey(k string) policy.Peer {
	if pr, ok := c.peerOf[k]; ok {
		return pr
	}
	return c.pushed.peerOf[k]
}

func (c *change) peerRef(pr policy.Peer, n int) {
	k := pr.Key()
	c.peerRefs[k] = c.peerRefsOf(k) + n
	if n > 0 {
		c.peerOf[k] = pr
	}
}

// use counts (n = 1) or uncounts (n = -1) what an entry uses.
func (c *change) use(e *devEntry, n int) {
	if e == nil || !e.member() {
		return
	}
	id := e.pol.ID
	cur, ok := c.polRefs[id]
	if !ok {
		cur = c.pushed.polRefs[id]
	}
	c.polRefs[id] = cur + n
	if n > 0 {
		c.pols[id] = e.pol
	}
	for _, pr := range e.ovPeers {
		c.peerRef(pr, n)
	}
}

func (c *change) empty() bool {
	u := &c.upd
	return len(u.SetPolicies)+len(u.RemovePolicies)+len(u.UpsertDevices)+len(u.RemoveDevices)+len(u.SetPeers)+len(u.ChangePeers) == 0
}

// plan stages what the dirty set changes: the marked devices' entries,
// the policies whose use starts or ends, and the peers whose elements
// can have changed.
func (m *Manager) plan() *change {
	pu, d := m.pushed, &m.dirty
	c := newChange(pu)
	if d.all {
		for mac := range m.st.devices {
			d.macs[mac] = struct{}{}
		}
		for mac := range pu.devices {
			d.macs[mac] = struct{}{}
		}
		for k := range pu.peerRefs {
			d.peers[k] = struct{}{}
		}
		for k := range pu.peers {
			d.peers[k] = struct{}{}
		}
	}
	for u := range d.urls {
		for mac := range m.st.byURL[u] {
			d.macs[mac] = struct{}{}
		}
	}
	for _, mac := range sortedKeys(d.macs) {
		old := pu.devices[mac]
		var ne *devEntry
		if sd := m.st.devices[mac]; sd != nil {
			ne = m.entryOf(mac, sd)
		}
		if sameEntry(old, ne) {
			continue
		}
		c.devs[mac] = ne
		c.use(old, -1)
		c.use(ne, 1)
		if !sameClass(old, ne) {
			c.classMove(old, -1)
			c.classMove(ne, 1)
			for _, k := range append(classKeys(old), classKeys(ne)...) {
				d.peers[k] = struct{}{}
			}
		}
		switch {
		case ne == nil:
			c.upd.RemoveDevices = append(c.upd.RemoveDevices, old.dev.MAC)
		case old == nil || !sameDeviceEntry(old.dev, ne.dev):
			c.upd.UpsertDevices = append(c.upd.UpsertDevices, ne.dev)
		}
	}
	for _, id := range sortedKeys(c.polRefs) {
		was, n := pu.polRefs[id], c.polRefs[id]
		switch {
		case n < 0:
			m.log.Error("policy reference count below zero (bug)", "policy", id)
		case was == 0 && n > 0:
			p := c.pols[id]
			c.upd.SetPolicies = append(c.upd.SetPolicies, *p)
			for _, pr := range setPeers(p.Peers()) {
				c.peerRef(pr, 1)
			}
		case was > 0 && n == 0:
			c.upd.RemovePolicies = append(c.upd.RemovePolicies, id)
			for _, pr := range setPeers(pu.policies[id].Peers()) {
				c.peerRef(pr, -1)
			}
		}
	}
	for k := range c.peerRefs {
		d.peers[k] = struct{}{}
	}
	for _, k := range sortedKeys(d.peers) {
		m.stagePeer(c, k)
	}
	return c
}

// stagePeer recomputes a peer's elements (none when nothing names it) and
// stages them when they changed. A class is recomputed from its members.
func (m *Manager) stagePeer(c *change, k string) {
	if m.stageClassEdit(c, k) {
		return
	}
	var els []peerElem
	if n := c.peerRefsOf(k); n > 0 {
		els = m.peerElems(c.peerOfKey(k), func(kind policy.PeerKind, v string) []peerElem {
			idx := m.st.byURL
			if kind == policy.Manufacturer {
				idx = m.st.byAuth
			}
			var cl members
			for mac := range idx[v] {
				e := c.dev(mac)
				if e == nil || !e.member() || (kind == policy.Model && e.url != v) || (kind == policy.Manufacturer && e.auth != v) {
					continue
				}
				for _, h := range e.hosts {
					cl.add(e.strong, h)
				}
			}
			return cl.elems()
		})
	} else if n < 0 {
		m.log.Error("peer reference count below zero (bug)", "peer", k)
	}
	if sameElems(els, c.pushed.peers[k]) {
		return
	}
	c.peers[k] = els
	if c.upd.SetPeers == nil {
		c.upd.SetPeers = map[string][]enforcer.Element{}
	}
	c.upd.SetPeers[k] = m.toElements(els)
}

// send hands a staged change to the enforcer in one transaction and, once
// it took it, records it as pushed and tells the resolver. It reports
// whether the enforcer took it; if not, the next reconcile is a full Apply.
func (m *Manager) send(ctx context.Context, c *change) bool {
	lanUp, _ := m.cfg.Enforcer.(LANUpdater)
	withLAN := m.lanDirty && lanUp != nil
	if !c.empty() || withLAN {
		start := time.Now()
		var err error
		if withLAN {
			err = lanUp.UpdateLAN(ctx, m.lan, c.upd)
		} else {
			err = m.cfg.Enforcer.Update(ctx, c.upd)
		}
		if err != nil {
			u := &c.upd
			err = fmt.Errorf("updating the enforcer (%d policies set, %d removed, %d devices set, %d removed, %d peers set, %d changed): %w",
				len(u.SetPolicies), len(u.RemovePolicies), len(u.UpsertDevices), len(u.RemoveDevices), len(u.SetPeers), len(u.ChangePeers), err)
		}
		m.noteApply(time.Since(start), err)
		if err != nil {
			m.needFull = true
			return false
		}
	}
	m.lanDirty = false
	m.commit(c)
	return true
}

// commit records a change the enforcer took as pushed, and tells the
// resolver the names to watch and to snoop that changed with it.
func (m *Manager) commit(c *change) {
	pu := m.pushed
	for mac, e := range c.devs {
		old := pu.devices[mac]
		if e == nil {
			delete(pu.devices, mac)
		} else {
			pu.devices[mac] = e
		}
		if m.cfg.Resolver != nil && !slices.Equal(old.snoopNames(), e.snoopNames()) {
			m.setDeviceNames(mac, e.snoopNames())
		}
	}
	for id, n := range c.polRefs {
		was := pu.polRefs[id]
		if n > 0 {
			pu.polRefs[id] = n
		} else {
			delete(pu.polRefs, id)
		}
		switch {
		case was == 0 && n > 0:
			p := c.pols[id]
			pu.policies[id] = p
			if names := dnsNames(p.Peers()); len(names) > 0 {
				pu.names[id] = names
				m.watch(id, names)
			}
		case was > 0 && n <= 0:
			m.unwatch(id, pu.names[id])
			delete(pu.policies, id)
			delete(pu.names, id)
		}
	}
	for k, n := range c.peerRefs {
		if n > 0 {
			pu.peerRefs[k] = n
			if pr, ok := c.peerOf[k]; ok {
				pu.peerOf[k] = pr
			}
		} else {
			delete(pu.peerRefs, k)
			delete(pu.peerOf, k)
		}
	}
	for k, els := range c.peers {
		if len(els) == 0 {
			delete(pu.peers, k)
		} else {
			pu.peers[k] = els
		}
	}
	c.commitClasses(pu)
}

// pushPeer hands the enforcer a dirty peer's new elements at once, alone,
// if the kernel holds that peer: what a snooped DNS answer needs before
// it is released to the device, without waiting for the other changes of
// the batch. A peer the kernel does not hold yet is left to the batch's
// reconcile.
func (m *Manager) pushPeer(ctx context.Context, key string) {
	if _, ok := m.dirty.peers[key]; !ok || m.pushed == nil || m.needFull || m.pushed.peerRefs[key] == 0 {
		return
	}
	delete(m.dirty.peers, key)
	c := newChange(m.pushed)
	m.stagePeer(c, key)
	m.send(ctx, c)
}

// syncResolver tells the resolver which names to watch (owner: the policy
// ID) and which names matter for which device (snooping), from what was
// pushed to ds.
func (m *Manager) syncResolver(ds *desired) {
	if m.cfg.Resolver == nil {
		return
	}
	old := m.pushed
	if old == nil {
		old = emptyDesired()
	}
	for id, names := range ds.names {
		var add []string
		for _, n := range names {
			if !slices.Contains(old.names[id], n) {
				add = append(add, n)
			}
		}
		m.watch(id, add)
	}
	for id, names := range old.names {
		var gone []string
		for _, n := range names {
			if !slices.Contains(ds.names[id], n) {
				gone = append(gone, n)
			}
		}
		m.unwatch(id, gone)
	}
	for mac, e := range ds.devices {
		if !slices.Equal(old.devices[mac].snoopNames(), e.names) {
			m.setDeviceNames(mac, e.names)
		}
	}
	for mac, e := range old.devices {
		if len(e.names) > 0 && len(ds.devices[mac].snoopNames()) == 0 {
			m.setDeviceNames(mac, nil)
		}
	}
}

func (m *Manager) watch(id string, names []string) {
	if m.cfg.Resolver == nil {
		return
	}
	for _, n := range names {
		if _, err := m.cfg.Resolver.Watch(n, id); err != nil {
			m.log.Warn("watching a DNS name", "name", n, "policy", id, "err", err)
		}
	}
}

func (m *Manager) unwatch(id string, names []string) {
	if m.cfg.Resolver == nil {
		return
	}
	for _, n := range names {
		m.cfg.Resolver.Unwatch(n, id)
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
// Expiries are kept in whole seconds, rounded up (the resolution at which
// a change reaches the enforcer): the kernel never drops an address before
// its answer expires, and an answer repeated within the same second
// changes nothing.
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
	exp := u.Expires.Truncate(time.Second)
	if exp.Before(u.Expires) {
		exp = exp.Add(time.Second)
	}
	for _, a := range u.Addrs {
		if exp.After(set[a]) {
			set[a] = exp
		}
	}
	m.st.dnsUnsaved[u.Name] = true
	m.markPeer(markDNS, dnsKey(u.Name))
}

func dnsKey(name string) string { return policy.Peer{Kind: policy.DNSName, Value: name}.Key() }

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
		case store.StateDiscovered:
			// Without a MUD URL there is no policy to wait for; keeping
			// the target would make every reconcile visit every such
			// device.
			if d.MUDURL == "" {
				delete(m.latencyTarget, mac)
			}
		case store.StatePendingApproval, store.StateFailed, store.StateQuarantined, store.StateRemoved:
			m.log.Info("fallback active", "mac", mac, "state", d.State, "latency_ms", float64(now.Sub(at).Microseconds())/1000)
			delete(m.latencyTarget, mac)
		}
	}
	m.metrics.setStates(maps.Clone(m.st.counts), len(m.pushed.policies), m.st.unenforced, len(m.st.jobs))
}
