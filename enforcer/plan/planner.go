package plan

import (
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"slices"
	"time"

	"github.com/openmud/mud/policy"
)

// Config is what the layout depends on besides the model: the
// configuration, and what the kernel can do.
type Config struct {
	// Priority of the inet base chains and BridgePriority of the bridge
	// base chain.
	Priority, BridgePriority int32
	// LogGroup is the NFLOG group of the rate-limited default-deny log;
	// NoLog leaves logging out.
	LogGroup uint16
	NoLog    bool
	// BridgeConntrack: the kernel tracks bridged traffic
	// (nf_conntrack_bridge). Without it, BridgeNF says what br_netfilter
	// passes to the inet hooks, and the bridge table remembers the flows
	// it accepted in flow sets of BridgeFlows elements each (reflexive
	// mode).
	BridgeConntrack bool
	BridgeNF        BridgeNF
	BridgeFlows     uint32
	// DirectDispatch makes the device maps verdict maps (no dispatch ids
	// in meta secmark); every policy is then a chain.
	DirectDispatch bool
	// RuleCounters gives the acl elements counters.
	RuleCounters bool
	// DeviceCounters, when not 0, counts each device's packets and bytes
	// in dynamic sets of this many elements each (see acct.go).
	DeviceCounters uint32
	// BridgeLAN lists the LAN's prefixes: the bridge table holds only
	// those addresses of DNS names inside them. Nil: all of them.
	BridgeLAN []netip.Prefix
	// Destroy says the kernel can delete an element if it is there
	// (NFT_MSG_DESTROYSETELEM, Linux 6.3): elements due to expire are
	// then deleted that way, instead of being left to expire.
	Destroy bool
}

// Planner is the one owner of every object of our tables. It holds the
// model (policies, devices, peers), the ids it allocated, and the pieces
// every object contributes as the kernel holds them; from a change it
// computes a Plan, the one transaction that brings the kernel from what it
// holds to what the changed model needs, and it adopts the change when
// told the kernel committed the plan. It never talks to the kernel.
//
// A Planner is not safe for concurrent use.
type Planner struct {
	cfg Config
	ids ids
	m   *model
	// owner is the device each address is bound to (MAC string).
	owner map[netip.Addr]string
	// inst are the pieces the kernel holds, by object (nil: nothing was
	// committed yet); groups indexes the address → group → acl layer.
	inst   *owners
	groups *derivedState
	// known: the kernel holds inst. Else the next plan rebuilds our
	// tables.
	known bool
	// stale: the configuration changed; the next plan replaces the fixed
	// chains.
	stale bool
	// inherited is what a previous process left in the from_dev map of
	// table inet mud, by MAC, before this planner's first commit.
	inherited map[MACKey]Elem
	// lingering are elements due to expire that a plan left in the kernel
	// instead of deleting them (kernels without NFT_MSG_DESTROYSETELEM).
	lingering map[SetRef]map[Key]*Elem
	gen       uint64 // generation of the latest plan
}

// New returns a Planner with an empty model. Its first plan rebuilds our
// tables.
func New(cfg Config) *Planner {
	return &Planner{cfg: cfg, ids: newIDs(), m: newModel(), owner: map[netip.Addr]string{}, groups: newDerivedState()}
}

// SetBridgeNF follows a change of br_netfilter's settings: the next plan
// replaces the fixed chains.
func (pl *Planner) SetBridgeNF(nf BridgeNF) {
	if nf != pl.cfg.BridgeNF {
		pl.cfg.BridgeNF, pl.stale = nf, true
	}
}

// SetBridgeLAN follows a change of the LAN's prefixes (Config.BridgeLAN):
// which addresses of DNS names the bridge table holds changes with them,
// so the next plan rebuilds our tables, in the one transaction of whatever
// else it carries. An unchanged list changes nothing.
func (pl *Planner) SetBridgeLAN(lan []netip.Prefix) {
	if slices.Equal(lan, pl.cfg.BridgeLAN) {
		return
	}
	pl.cfg.BridgeLAN = slices.Clone(lan)
	pl.known = false
}

// Stale tells whether the next plan has a configuration change to carry.
func (pl *Planner) Stale() bool { return pl.stale }

// Installed tells whether a plan has been committed.
func (pl *Planner) Installed() bool { return pl.inst != nil }

// Known tells whether the kernel holds what the planner planned (false
// before the first commit and after Invalidate: the next plan rebuilds).
func (pl *Planner) Known() bool { return pl.known }

// Invalidate says the kernel's tables are unknown (a batch whose outcome
// was lost, a change someone else made): the next plan rebuilds them.
func (pl *Planner) Invalidate() { pl.known = false }

// Inherit tells the planner, before its first commit, what the kernel's
// from_dev map of table inet mud holds (a previous process's tables): a
// device already installed there with the value it gets now keeps its
// flows.
func (pl *Planner) Inherit(fromDev map[MACKey]Elem) {
	if pl.inst == nil {
		pl.inherited = fromDev
	}
}

// buildOpts are the options of the current configuration and ids.
func (pl *Planner) opts(now time.Time) buildOpts {
	return optsOf(pl.cfg, pl.ids.peer, pl.ids.group, pl.ids.dispatch, now)
}

func optsOf(c Config, peerID, groupID, dispatchID func(string) uint32, now time.Time) buildOpts {
	o := buildOpts{prio: c.Priority, bridgePrio: c.BridgePriority, logGroup: c.LogGroup, log: !c.NoLog,
		bridgeCT: c.BridgeConntrack, bridgeNF: c.BridgeNF, twoStage: !c.DirectDispatch, ruleCounters: c.RuleCounters,
		acct: c.DeviceCounters, bridgeLAN: c.BridgeLAN, peerID: peerID, groupID: groupID, dispatchID: dispatchID, now: now}
	if !c.BridgeConntrack {
		o.flowSize = c.BridgeFlows
	}
	return o
}

// ids are the planner's ids: peers, groups of several peers, dispatch
// targets. They are allocated on first use and never reused while the
// planner lives, so a stale element can never grant another peer's
// addresses or dispatch to another policy.
type ids struct {
	peers, groupIDs, disp map[string]uint32
}

func newIDs() ids {
	return ids{peers: map[string]uint32{}, groupIDs: map[string]uint32{}, disp: map[string]uint32{}}
}

// peer is the id of a peer key (from 1).
func (x ids) peer(key string) uint32 {
	if id, ok := x.peers[key]; ok {
		return id
	}
	id := uint32(len(x.peers) + 1)
	x.peers[key] = id
	return id
}

// group is the id of a group of several peers (from multiGroupBase).
func (x ids) group(sig string) uint32 {
	if id, ok := x.groupIDs[sig]; ok {
		return id
	}
	id := multiGroupBase + uint32(len(x.groupIDs))
	x.groupIDs[sig] = id
	return id
}

// dispatch is the dispatch id of a target (its from-device chain): the
// fixed ids of quarantine and block, else from firstDispatchID.
func (x ids) dispatch(outChain string) uint32 {
	if id, ok := fixedDispatchID(outChain); ok {
		return id
	}
	if id, ok := x.disp[outChain]; ok {
		return id
	}
	id := firstDispatchID + uint32(len(x.disp))
	x.disp[outChain] = id
	return id
}

// peerNames maps group ids to the peers they stand for.
func (x ids) peerNames() map[uint32][]string {
	out := make(map[uint32][]string, len(x.peers)+len(x.groupIDs))
	for k, id := range x.peers {
		out[id] = []string{k}
	}
	for sig, id := range x.groupIDs {
		out[id] = sigPeers(sig)
	}
	return out
}

// change is a validated Update: new values by key, nil meaning removal. A
// full change holds the complete new state.
type change struct {
	full     bool
	policies map[string]*policy.Policy
	devices  map[string]*Device
	peers    map[string]map[netip.Prefix]time.Time
	// touched: for the peers of a ChangePeers, the addresses it changed;
	// their peers entry holds only those of them the peer keeps (the
	// others are as the model has them), not the peer's whole set
	touched map[string]map[netip.Prefix]struct{}
}

// materialize turns the partial sets of ChangePeers into whole ones (a
// rebuild renders every peer whole).
func (ch *change) materialize(m *model) {
	for k, t := range ch.touched {
		n := maps.Clone(m.peers[k])
		if n == nil {
			n = map[netip.Prefix]time.Time{}
		}
		applyTouched(n, ch.peers[k], t)
		if len(n) == 0 {
			n = nil
		}
		ch.peers[k] = n
	}
	clear(ch.touched)
}

// applyTouched makes the touched addresses of dst what partial says.
func applyTouched(dst, partial map[netip.Prefix]time.Time, touched map[netip.Prefix]struct{}) {
	for p := range touched {
		if exp, ok := partial[p]; ok {
			dst[p] = exp
		} else {
			delete(dst, p)
		}
	}
}

func newChange(full bool) *change {
	return &change{full: full, policies: map[string]*policy.Policy{}, devices: map[string]*Device{}, peers: map[string]map[netip.Prefix]time.Time{},
		touched: map[string]map[netip.Prefix]struct{}{}}
}

// Update plans several changes in one transaction.
func (pl *Planner) Update(u Update, now time.Time) (*Plan, error) {
	ch, err := pl.prepare(u, false, now)
	if err != nil {
		return nil, err
	}
	return pl.plan(ch, now)
}

// Replace plans the whole desired state in one transaction that rebuilds
// our tables.
func (pl *Planner) Replace(d Desired, now time.Time) (*Plan, error) {
	ch, err := pl.prepare(Update{SetPolicies: d.Policies, UpsertDevices: d.Devices, SetPeers: d.Peers}, true, now)
	if err != nil {
		return nil, err
	}
	return pl.plan(ch, now)
}

// Sync plans the change from the model to the whole desired state d: the
// objects d holds that differ from the model's, and the removal of those it
// lacks. Unchanged objects cost a comparison; a peer whose addresses are
// the same and whose expiries moved by less than a second is unchanged.
// Before the first commit, or when the kernel's state is unknown, the plan
// rebuilds our tables.
func (pl *Planner) Sync(d Desired, now time.Time) (*Plan, error) {
	if !pl.known || pl.inst == nil {
		return pl.Replace(d, now)
	}
	u := Update{SetPeers: map[string][]Element{}}
	seen := make(map[string]bool, max(len(d.Policies), len(d.Devices)))
	for i := range d.Policies {
		p := &d.Policies[i]
		seen[p.ID] = true
		if op := pl.m.policies[p.ID]; op == nil || !samePolicy(op, p) {
			u.SetPolicies = append(u.SetPolicies, *p)
		}
	}
	for id := range pl.m.policies {
		if !seen[id] {
			u.RemovePolicies = append(u.RemovePolicies, id)
		}
	}
	clear(seen)
	for i := range d.Devices {
		dev := &d.Devices[i]
		mac := dev.MAC.String()
		seen[mac] = true
		if od := pl.m.devices[mac]; od == nil || !sameDevice(od, dev) {
			u.UpsertDevices = append(u.UpsertDevices, *dev)
		}
	}
	for mac, od := range pl.m.devices {
		if !seen[mac] {
			u.RemoveDevices = append(u.RemoveDevices, od.MAC)
		}
	}
	for k, els := range d.Peers {
		if op, ok := pl.m.peers[k]; !ok || !samePeerElements(op, els, now) {
			u.SetPeers[k] = els
		}
	}
	for k := range pl.m.peers {
		if _, ok := d.Peers[k]; !ok {
			u.SetPeers[k] = nil
		}
	}
	return pl.Update(u, now)
}

// Rebuild plans the model as it is in one transaction that rebuilds our
// tables (a repair).
func (pl *Planner) Rebuild(now time.Time) (*Plan, error) {
	pl.known = false
	return pl.plan(newChange(false), now)
}

// Refresh plans what the model needs and the kernel may lack: nothing if
// the kernel holds the plan and the configuration did not change, a
// replacement of the fixed chains if it did, a rebuild if the kernel's
// state is unknown.
func (pl *Planner) Refresh(now time.Time) (*Plan, error) {
	return pl.plan(newChange(false), now)
}

func (pl *Planner) prepare(u Update, full bool, now time.Time) (*change, error) {
	ch := newChange(full)
	// Sized: a full change holds the whole state.
	ch.policies = make(map[string]*policy.Policy, len(u.SetPolicies)+len(u.RemovePolicies))
	ch.devices = make(map[string]*Device, len(u.UpsertDevices)+len(u.RemoveDevices))
	ch.peers = make(map[string]map[netip.Prefix]time.Time, len(u.SetPeers)+len(u.ChangePeers))
	setPeers := func() error {
		for k, elems := range u.SetPeers {
			n, err := normalizePeer(elems, now)
			if err != nil {
				return fmt.Errorf("setting peer %q: %w", k, err)
			}
			if exactPeer(k) {
				for p := range n {
					if !p.IsSingleIP() {
						return fmt.Errorf("setting peer %q: %s is not a single address (DNS, manufacturer and model peers hold addresses)", k, p)
					}
				}
			}
			if len(n) == 0 {
				n = nil
			}
			ch.peers[k] = n
		}
		return nil
	}
	// Many peers (a whole state) are normalized on the other core
	// meanwhile: ch.peers is the goroutine's until peersErr is received.
	peersErr := make(chan error, 1)
	if len(u.SetPeers) >= 1000 {
		go func() { peersErr <- setPeers() }()
	} else {
		peersErr <- setPeers()
	}
	if err := prepareObjects(ch, u); err != nil {
		<-peersErr
		return nil, err
	}
	if err := <-peersErr; err != nil {
		return nil, err
	}
	for k, pc := range u.ChangePeers {
		if err := pl.changePeer(ch, k, pc, full, now); err != nil {
			return nil, err
		}
	}
	// The result must be consistent: enforced devices have their policy,
	// and no address is bound to two devices.
	policyAfter := func(id string) bool {
		if p, ok := ch.policies[id]; ok {
			return p != nil
		}
		return !full && pl.m.policies[id] != nil
	}
	deviceAfter := func(mac string) *Device {
		if d, ok := ch.devices[mac]; ok || full {
			return d
		}
		return pl.m.devices[mac]
	}
	claimed := map[netip.Addr]string{}
	for _, mac := range slices.Sorted(maps.Keys(ch.devices)) {
		d := ch.devices[mac]
		if d == nil {
			continue
		}
		if d.Mode == Enforce && !policyAfter(d.PolicyID) {
			return nil, fmt.Errorf("device %s: policy %q is not installed", mac, d.PolicyID)
		}
		for _, a := range devAddrs(d) {
			if other, ok := claimed[a]; ok {
				return nil, fmt.Errorf("address %s bound to both %s and %s", a, other, mac)
			}
			claimed[a] = mac
			if !full {
				if other, ok := pl.owner[a]; ok && other != mac {
					if od := deviceAfter(other); od != nil && hasAddr(od, a) {
						return nil, fmt.Errorf("address %s of device %s is still bound to device %s", a, mac, other)
					}
				}
			}
		}
	}
	if !full {
		for id, p := range ch.policies {
			if p != nil || pl.m.policies[id] == nil {
				continue
			}
			for mac := range pl.m.devices {
				if d := deviceAfter(mac); d != nil && d.Mode == Enforce && d.PolicyID == id {
					return nil, fmt.Errorf("removing policy %q: device %s still uses it", id, mac)
				}
			}
		}
	}
	return ch, nil
}

// prepareObjects stages an update's policies and devices.
func prepareObjects(ch *change, u Update) error {
	for i := range u.SetPolicies {
		p := u.SetPolicies[i]
		if p.ID == "" {
			return errors.New("setting policy: empty ID")
		}
		ch.policies[p.ID] = &p
	}
	for _, id := range u.RemovePolicies {
		ch.policies[id] = nil
	}
	for _, d := range u.UpsertDevices {
		n, err := normDevice(d)
		if err != nil {
			return fmt.Errorf("upserting device: %w", err)
		}
		ch.devices[n.MAC.String()] = n
	}
	for _, mac := range u.RemoveDevices {
		ch.devices[mac.String()] = nil
	}
	return nil
}

// changePeer stages a ChangePeers entry: the model's addresses of the
// peer with the change applied, and which addresses it touched.
func (pl *Planner) changePeer(ch *change, k string, pc PeerChange, full bool, now time.Time) error {
	if full {
		return fmt.Errorf("changing peer %q: a full state sets peers whole", k)
	}
	if !exactPeer(k) {
		return fmt.Errorf("changing peer %q: only DNS, manufacturer and model peers change by address", k)
	}
	if _, ok := ch.peers[k]; ok {
		return fmt.Errorf("changing peer %q: it is also set whole", k)
	}
	single := func(p netip.Prefix) (netip.Prefix, error) {
		if !p.IsValid() || !p.IsSingleIP() {
			return p, fmt.Errorf("changing peer %q: %v is not a single address", k, p)
		}
		a := p.Addr().Unmap()
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	// Only what changes is staged: a copy of a class of 10,000 would
	// cost more than the rest of the plan.
	base := pl.m.peers[k]
	n := map[netip.Prefix]time.Time{} // the touched addresses the peer keeps
	touched := map[netip.Prefix]struct{}{}
	for _, r := range pc.Remove {
		p, err := single(r)
		if err != nil {
			return err
		}
		if _, ok := base[p]; ok {
			touched[p] = struct{}{}
		}
		delete(n, p)
	}
	for _, e := range pc.Add {
		p, err := single(e.Prefix)
		if err != nil {
			return err
		}
		var exp time.Time
		if e.Timeout > 0 {
			exp = now.Add(e.Timeout)
		}
		if old, ok := base[p]; ok && old.Equal(exp) {
			if _, t := touched[p]; !t {
				continue
			}
		}
		n[p] = exp
		touched[p] = struct{}{}
	}
	ch.peers[k] = n
	ch.touched[k] = touched
	return nil
}

func hasAddr(d *Device, a netip.Addr) bool {
	return slices.Contains(d.IPv4s, a) || slices.Contains(d.IPv6s, a)
}

func devAddrs(d *Device) []netip.Addr {
	return append(append([]netip.Addr{}, d.IPv4s...), d.IPv6s...)
}

func normDevice(d Device) (*Device, error) {
	if len(d.MAC) != 6 {
		return nil, fmt.Errorf("device MAC %q is not an Ethernet address", d.MAC)
	}
	if d.Mode == Enforce && d.PolicyID == "" {
		return nil, fmt.Errorf("device %s: enforce mode needs a policy", d.MAC)
	}
	c := d
	c.MAC = append(net.HardwareAddr{}, d.MAC...)
	c.IPv4s, c.IPv6s = nil, nil
	seen := map[netip.Addr]bool{}
	for _, a := range devAddrs(&d) {
		a = a.Unmap()
		if !a.IsValid() || seen[a] {
			continue
		}
		seen[a] = true
		if a.Is4() {
			c.IPv4s = append(c.IPv4s, a)
		} else if !a.IsLinkLocalUnicast() {
			c.IPv6s = append(c.IPv6s, a)
		}
	}
	return &c, nil
}

// pending is what a plan changes in the planner once committed.
type pending struct {
	gen     uint64
	ch      *change
	delta   *owners // the new pieces (all of them on a rebuild)
	dd      *derivedDelta
	rebuild bool
	// groups: a rebuild's derived state, computed while the plan is
	// encoded and sent (Commit takes it)
	groups <-chan *derivedState
	// linger: elements the plan leaves to expire; unlinger: those it
	// deletes after all
	linger, unlinger []elemAt
}

// plan computes the transaction of a change. Only the objects the change
// touches are rendered and diffed against what the kernel holds — or, for
// a full change, before the first commit, after Invalidate, every object
// is, and the plan rebuilds our tables.
func (pl *Planner) plan(ch *change, now time.Time) (*Plan, error) {
	o := pl.opts(now)
	o.forms, o.sharedKeys = map[*policy.Policy]*policyForms{}, map[string]string{}
	rebuild := ch.full || !pl.known || pl.inst == nil
	if rebuild {
		ch.materialize(pl.m)
	}
	delta := newOwners()
	if ch.full {
		delta.policies = make(map[string]*pieces, len(ch.policies))
		delta.devices = make(map[string]*pieces, len(ch.devices))
	}
	switch {
	case pl.stale || pl.inst == nil:
		delta.fixed = fixedPieces(o)
	case rebuild:
		delta.fixed = pl.inst.fixed // the configuration's: unchanged
	}
	// Dispatch ids in a reproducible order (policy ids, then MACs), not in
	// map order: a restarted mudd that installs the same state gives every
	// device the id it had, so its flows are left alone and the tables
	// are identical.
	// So are peer ids, in the policies' and overrides' rule order.
	for _, id := range slices.Sorted(maps.Keys(ch.policies)) {
		if p := ch.policies[id]; p != nil {
			o.dispatchID(polChain(id, policy.FromDevice))
			if pf := o.formsOf(p); pf != nil && pf.sharedKey != "" {
				o.dispatchID(dispatchName(pf.sharedKey))
			}
			peerIDs(o, p.FromDevice, p.ToDevice)
		}
	}
	var withOverrides []string
	for mac, d := range ch.devices {
		if d != nil && d.Mode == Enforce && !d.Overrides.empty() {
			withOverrides = append(withOverrides, mac)
		}
	}
	slices.Sort(withOverrides)
	for _, mac := range withOverrides {
		d := ch.devices[mac]
		o.dispatchID(devChain(d.MAC, policy.FromDevice))
		peerIDs(o, d.Overrides.FromDevice, d.Overrides.ToDevice)
	}
	if err := piecesOf(ch.policies, delta.policies, func(p *policy.Policy) (*pieces, error) { return policyPieces(p, o) }); err != nil {
		return nil, err
	}
	o.isElement = func(id string) bool {
		p, ok := ch.policies[id]
		if !ok && !ch.full {
			p = pl.m.policies[id]
		}
		return p != nil && elementPolicy(p, o)
	}
	if !ch.full {
		// A device with overrides continues into its policy's entry, which
		// depends on how the policy renders: recompute it when that changes.
		for id, np := range ch.policies {
			op := pl.m.policies[id]
			if (op != nil && elementPolicy(op, o)) == (np != nil && elementPolicy(np, o)) {
				continue
			}
			for mac, d := range pl.m.devices {
				if _, touched := ch.devices[mac]; !touched && d.PolicyID == id && !d.Overrides.empty() {
					ch.devices[mac] = d
				}
			}
		}
	}
	// A rebuild renders the devices without overrides (nearly all) on the
	// other core while it derives the layer below. Their only id is their
	// dispatch target's, looked up here: the ids are not shared with the
	// goroutine, whose options know only those.
	type macDevice struct {
		mac string
		d   *Device
	}
	var plain []macDevice
	targets := map[string]uint32{}
	for mac, d := range ch.devices {
		if d == nil {
			delta.devices[mac] = nil
			continue
		}
		if rebuild && d.Overrides.empty() {
			if out, _ := deviceChains(d); o.twoStage {
				targets[out] = o.dispatchID(out)
			}
			plain = append(plain, macDevice{mac, d})
			continue
		}
		pc, err := devicePieces(d, o)
		if err != nil {
			return nil, err
		}
		delta.devices[mac] = pc
	}
	devs := make(chan error, 1)
	if len(plain) > 0 {
		od := o
		od.dispatchID = func(c string) uint32 {
			id, ok := targets[c]
			if !ok {
				panic("plan: device's dispatch target " + c + " not looked up")
			}
			return id
		}
		od.peerID, od.groupID, od.isElement = nil, nil, nil
		go func() {
			// delta.devices is the goroutine's until devs is received
			for _, x := range plain {
				pc, err := devicePieces(x.d, od)
				if err != nil {
					devs <- err
					return
				}
				delta.devices[x.mac] = pc
			}
			devs <- nil
		}()
	} else {
		devs <- nil
	}
	// The address → group → acl layer: recomputed whole on a rebuild,
	// else only what the changed policies and peers touch.
	var dd *derivedDelta
	if rebuild {
		pols, peers := ch.policies, ch.peers
		if !ch.full {
			pols, peers = overlay(pl.m.policies, ch.policies), overlay(pl.m.peers, ch.peers)
		}
		dd = deriveChange(o, newDerivedState(), delta, true, pols, func(id string) *policy.Policy { return pols[id] },
			peers, func(string) map[netip.Prefix]time.Time { return nil },
			func() map[string]map[netip.Prefix]time.Time { return peers }, nil)
		if err := <-devs; err != nil {
			return nil, err
		}
		if !ch.full && pl.inst != nil {
			// Objects the change leaves alone keep their pieces.
			keep(delta.policies, pl.inst.policies, ch.policies)
			keep(delta.devices, pl.inst.devices, ch.devices)
		}
	} else {
		policyAfter := func(id string) *policy.Policy {
			if p, ok := ch.policies[id]; ok {
				return p
			}
			return pl.m.policies[id]
		}
		dd = deriveChange(o, pl.groups, delta, false, ch.policies, policyAfter,
			ch.peers, func(k string) map[netip.Prefix]time.Time { return pl.m.peers[k] },
			func() map[string]map[netip.Prefix]time.Time { return overlay(pl.m.peers, ch.peers) }, ch.touched)
		<-devs // none: not a rebuild
	}
	var p *Plan
	var linger, unlinger []elemAt
	if rebuild {
		// endFlows only reads what rebuildPlan reads: on the other core.
		flows := make(chan Flows, 1)
		go func() { flows <- pl.endFlows(ch, delta) }()
		p = pl.rebuildPlan(delta, dd, o)
		p.EndFlows = <-flows
	} else {
		p, linger, unlinger = pl.diff(delta, now)
		p.EndFlows = pl.endFlows(ch, delta)
	}
	pl.gen++
	p.pending = &pending{gen: pl.gen, ch: ch, delta: delta, dd: dd, rebuild: rebuild, linger: linger, unlinger: unlinger}
	if rebuild {
		// Nothing reads or changes dd, nor delta's addresses and binds,
		// from here on but this goroutine until Commit has received its
		// result: the maps it fills and the state it leaves are ready, on
		// the other core, by the time the kernel has loaded the batch.
		groups := make(chan *derivedState, 1)
		go func() { groups <- derivedStateOf(dd) }()
		p.pending.groups = groups
	}
	return p, nil
}

// peerIDs allocates the ids of the peers rules name, in order.
func peerIDs(o buildOpts, lists ...[]policy.Rule) {
	var seen peerKeyCache
	for _, l := range lists {
		for _, r := range l {
			if r.Peer.Kind != policy.AnyPeer && r.Peer.Kind != policy.Prefix {
				if k, fresh := seen.key(r.Peer); fresh {
					o.peerID(k)
				}
			}
		}
	}
}

// peerKeyCache remembers the keys of the first peers one policy's rules name:
// its rules name a few peers, most several times, and a key is built
// anew on every call of policy.Peer.Key.
type peerKeyCache struct {
	n     int
	peers [8]policy.Peer
	keys  [8]string
}

// key is p's key; fresh: p was not seen before (or is past the first 8).
func (c *peerKeyCache) key(p policy.Peer) (k string, fresh bool) {
	for i := range c.n {
		if c.peers[i] == p {
			return c.keys[i], false
		}
	}
	k = p.Key()
	if c.n < len(c.peers) {
		c.peers[c.n], c.keys[c.n] = p, k
		c.n++
	}
	return k, true
}

// overlay is base with a change's values, as a new map (a change holds nil
// for a removal).
func overlay[V any](base map[string]V, changed map[string]V) map[string]V {
	out := make(map[string]V, len(base)+len(changed))
	maps.Copy(out, base)
	for k, v := range changed {
		if isNil(v) {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// isNil tells a removal in a change.
func isNil[V any](v V) bool {
	switch x := any(v).(type) {
	case *policy.Policy:
		return x == nil
	case *Device:
		return x == nil
	case map[netip.Prefix]time.Time:
		return x == nil
	}
	panic(fmt.Sprintf("plan: no removal of %T", v))
}

// piecesOf computes the pieces of the changed (non-nil) objects; removed
// ones get nil pieces.
func piecesOf[T any](changed map[string]*T, dst map[string]*pieces, f func(*T) (*pieces, error)) error {
	for k, v := range changed {
		if v == nil {
			dst[k] = nil
			continue
		}
		pc, err := f(v)
		if err != nil {
			return err
		}
		dst[k] = pc
	}
	return nil
}

// keep fills dst with the installed pieces of objects the change leaves
// alone, and drops the removed ones.
func keep[T any](dst, inst map[string]*pieces, changed map[string]T) {
	for k, p := range inst {
		if _, ok := changed[k]; !ok {
			dst[k] = p
		}
	}
	for k, p := range dst {
		if p == nil {
			delete(dst, k)
		}
	}
}

// ErrStalePlan is returned by Commit for a plan that is not the latest, or
// was committed already.
var ErrStalePlan = errors.New("plan: not the latest plan")

// Commit adopts a plan the kernel accepted: the model, the ids' owners and
// the installed pieces become what the plan made them. A plan the kernel
// rejected is simply not committed: the planner stays as it was.
func (pl *Planner) Commit(p *Plan) error {
	pd := p.pending
	if pd == nil || pd.gen != pl.gen {
		return ErrStalePlan
	}
	p.pending = nil
	pl.gen++
	ch := pd.ch
	if ch.full {
		pl.m = &model{policies: ch.policies, devices: ch.devices, peers: ch.peers}
		pl.owner = map[netip.Addr]string{}
		for mac, d := range pl.m.devices {
			for _, a := range devAddrs(d) {
				pl.owner[a] = mac
			}
		}
	} else {
		for mac, nd := range ch.devices {
			if od := pl.m.devices[mac]; od != nil {
				for _, a := range devAddrs(od) {
					if pl.owner[a] == mac {
						delete(pl.owner, a)
					}
				}
			}
			if nd != nil {
				for _, a := range devAddrs(nd) {
					pl.owner[a] = mac
				}
			}
		}
		applyMap(pl.m.policies, ch.policies)
		applyMap(pl.m.devices, ch.devices)
		for k, t := range ch.touched {
			n := pl.m.peers[k]
			if n == nil {
				n = map[netip.Prefix]time.Time{}
				pl.m.peers[k] = n
			}
			applyTouched(n, ch.peers[k], t)
			if len(n) == 0 {
				delete(pl.m.peers, k)
			}
		}
		for k, v := range ch.peers {
			switch _, partial := ch.touched[k]; {
			case partial:
			case v == nil:
				delete(pl.m.peers, k)
			default:
				pl.m.peers[k] = v
			}
		}
	}
	if pd.rebuild {
		pl.groups = <-pd.groups // delta is complete once it is
		pd.delta.nets = orEmpty(pd.delta.nets)
		pl.inst = pd.delta
		pl.lingering = nil
	} else {
		pl.inst.apply(pd.delta)
		pl.groups.apply(pd.dd)
		pl.linger(pd.linger, pd.unlinger, p.Now)
	}
	pl.known, pl.stale, pl.inherited = true, false, nil
	return nil
}

// linger records the elements a committed plan left to expire, and
// forgets those it deleted and those expired by now.
func (pl *Planner) linger(add, del []elemAt, now time.Time) {
	for _, x := range del {
		delete(pl.lingering[x.ref], x.elem.Key)
	}
	for r, m := range pl.lingering {
		for k, e := range m {
			if !e.Expires.After(now) {
				delete(m, k)
			}
		}
		if len(m) == 0 {
			delete(pl.lingering, r)
		}
	}
	for _, x := range add {
		if pl.lingering == nil {
			pl.lingering = map[SetRef]map[Key]*Elem{}
		}
		if pl.lingering[x.ref] == nil {
			pl.lingering[x.ref] = map[Key]*Elem{}
		}
		pl.lingering[x.ref][x.elem.Key] = x.elem
	}
}

func orEmpty(p *pieces) *pieces {
	if p == nil {
		return &pieces{}
	}
	return p
}

func applyMap[T any](dst, src map[string]T) {
	for k, v := range src {
		if isNil(v) {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}
