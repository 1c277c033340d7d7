package plan

import (
	"errors"
	"flag"
	"fmt"
	"maps"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// The property: whatever sequence of changes a planner is given (devices
// added, moved to other policies, readdressed, quarantined, removed;
// policies added, changed, removed; overrides; DNS answers rotating,
// shared between names, expiring; configured classes; rejected and lost
// batches; repairs; br_netfilter changing), the plans it makes, applied to
// an in-memory model of the kernel's tables (Tables, which refuses what
// the kernel refuses), leave exactly what a rebuild from scratch of the
// state the test asked for (its own model, not the planner's) installs.

// propSequences is how many random sequences TestIncrementalPlansEqualRebuild
// runs (fewer under the race detector, which slows them tenfold).
var propSequences = 2000

// Each sequence has propSteps steps; the kernel model is compared with a
// rebuild after every propCheckEvery steps and at the end.
const propSteps, propCheckEvery = 30, 5

// propRun is one random sequence.
type propRun struct {
	r      *rand.Rand
	seed   uint64
	pl     *Planner
	kernel *Tables
	w      *model // what the test asked for and the planner committed
	now    time.Time
	dirty  bool // the kernel's state is unknown to the planner
	log    []string
	fixed  map[string]*pieces // the reference's fixed pieces by configuration
}

var (
	propDNS = []policy.Peer{{Kind: policy.DNSName, Value: "a.example"}, {Kind: policy.DNSName, Value: "b.example"},
		{Kind: policy.DNSName, Value: "cdn.example"}, {Kind: policy.Manufacturer, Value: "vendor.example"},
		{Kind: policy.Model, Value: "https://vendor.example/lamp"}}
	propClasses = []policy.Peer{{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"},
		{Kind: policy.MyController, Value: "https://vendor.example/lamp"}, {Kind: policy.LocalNetworks}}
	propSingles = []string{"198.51.100.1", "198.51.100.2", "198.51.100.3", "198.51.100.9", "2001:db8:ff::1", "2001:db8:ff::2", "2001:db8:ff::3"}
	propNets    = []string{"192.0.2.0/24", "192.0.2.0/26", "192.0.2.53/32", "203.0.113.0/24", "203.0.113.128/25", "2001:db8:53::/48", "2001:db8::/32"}
	propPrefix  = []string{"192.0.2.64/26", "2001:db8:1::/64", "203.0.113.7/32"}
	propPolicy  = []string{"p1", "p2", "p3", "a-policy-id-with/odd:characters-and-more-than-forty-characters"}
)

func newPropRun(seed uint64) *propRun {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	cfg := Config{Priority: -5, BridgePriority: -205, LogGroup: 3, NoLog: r.IntN(5) == 0, BridgeConntrack: r.IntN(3) == 0,
		BridgeNF: propNF(r), BridgeFlows: 64, DirectDispatch: r.IntN(5) == 0, RuleCounters: r.IntN(4) == 0, Destroy: r.IntN(2) == 0}
	if r.IntN(3) == 0 {
		cfg.BridgeLAN = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/30"), netip.MustParsePrefix("2001:db8:ff::/126")}
	}
	return &propRun{r: r, seed: seed, pl: New(cfg), kernel: NewTables(), w: newModel(),
		now: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), dirty: true, fixed: map[string]*pieces{}}
}

func propNF(r *rand.Rand) BridgeNF {
	return BridgeNF{Inet: [2]bool{r.IntN(2) == 0, r.IntN(2) == 0}, VLAN: r.IntN(2) == 0, VLANBridge: r.IntN(3) == 0}
}

func (pr *propRun) pick(n int) int { return pr.r.IntN(n) }

func (pr *propRun) port() *policy.PortRange { return u16([]uint16{53, 443, 8080, 5683}[pr.pick(4)]) }

// rule is a random valid ACE.
func (pr *propRun) rule(d policy.Direction, i int) policy.Rule {
	r := policy.Rule{Name: fmt.Sprintf("acl/%c%d", "ft"[d-1], i), Verdict: policy.Accept}
	switch n := pr.pick(20); {
	case n < 12:
		r.Peer = propDNS[pr.pick(len(propDNS))]
	case n < 15:
		r.Peer = propClasses[pr.pick(len(propClasses))]
	case n < 17:
		r.Peer = policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix(propPrefix[pr.pick(len(propPrefix))])}
	}
	v6 := r.Peer.Kind == policy.Prefix && r.Peer.Prefix.Addr().Is6()
	v4 := r.Peer.Kind == policy.Prefix && r.Peer.Prefix.Addr().Is4()
	switch n := pr.pick(10); {
	case n < 4:
		r.Protocol = policy.ProtoTCP
	case n < 8:
		r.Protocol = policy.ProtoUDP
	case n < 9 && !v6:
		r.Protocol, r.Family, r.ICMP = policy.ProtoICMP, policy.IPv4, &policy.ICMPMatch{Type: 8}
	case n < 9:
		r.Protocol, r.Family = policy.ProtoICMPv6, policy.IPv6
	}
	if r.Family == policy.AnyFamily && !v4 && !v6 {
		r.Family = []policy.Family{policy.AnyFamily, policy.AnyFamily, policy.IPv4, policy.IPv6}[pr.pick(4)]
	}
	if r.Protocol == policy.ProtoTCP || r.Protocol == policy.ProtoUDP {
		remote := &r.DstPort
		local := &r.SrcPort
		if d == policy.ToDevice {
			remote, local = local, remote
		}
		switch n := pr.pick(10); {
		case n < 6:
			*remote = pr.port()
		case n < 7:
			*remote = &policy.PortRange{First: 8000, Last: 8100}
		case n < 8:
			*local = pr.port()
		}
		if r.Protocol == policy.ProtoTCP && pr.pick(3) == 0 {
			r.Initiated = []policy.Initiator{policy.InitiatedFromDevice, policy.InitiatedToDevice}[pr.pick(2)]
		}
	}
	if pr.pick(20) == 0 {
		if r.Family == policy.AnyFamily {
			r.Family = policy.IPv4
		}
		r.Fields = []policy.FieldMatch{{Field: policy.FieldDSCP, Value: 46}}
	}
	if pr.pick(12) == 0 {
		r.Verdict = policy.Drop
	}
	// An App. A default of its own: shared with the policies that have
	// the same defaults, when it has an element form.
	r.Default = pr.pick(6) == 0
	return r
}

func (pr *propRun) policy(id string) policy.Policy {
	p := policy.Policy{ID: id, MUDURL: "https://vendor.example/" + id}
	for i := range 1 + pr.pick(4) {
		p.FromDevice = append(p.FromDevice, pr.rule(policy.FromDevice, i))
	}
	for i := range pr.pick(4) {
		p.ToDevice = append(p.ToDevice, pr.rule(policy.ToDevice, i))
	}
	if pr.pick(2) == 0 {
		// the App. A DNS defaults most policies have in common
		dns := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"}
		p.FromDevice = append(p.FromDevice, policy.Rule{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, DstPort: u16(53), Verdict: policy.Accept, Default: true})
		p.ToDevice = append(p.ToDevice, policy.Rule{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, SrcPort: u16(53), Verdict: policy.Accept, Default: true})
	}
	return p
}

func (pr *propRun) mac() net.HardwareAddr {
	return net.HardwareAddr{2, 0, 0, 0, 0, byte(1 + pr.pick(6))}
}

func (pr *propRun) device() Device {
	d := Device{MAC: pr.mac()}
	for range pr.pick(3) {
		d.IPv4s = append(d.IPv4s, netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + pr.pick(9))}))
	}
	for range pr.pick(2) {
		d.IPv6s = append(d.IPv6s, netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%d", 1+pr.pick(9))))
	}
	switch n := pr.pick(10); {
	case n < 1:
		d.Mode = Quarantine
	case n < 2:
		d.Mode = Block
	}
	if d.Mode == Enforce || pr.pick(2) == 0 {
		ids := slices.Sorted(maps.Keys(pr.w.policies))
		if len(ids) == 0 || pr.pick(8) == 0 {
			d.PolicyID = propPolicy[pr.pick(len(propPolicy))]
		} else {
			d.PolicyID = ids[pr.pick(len(ids))]
		}
	}
	if pr.pick(4) == 0 {
		d.Overrides.FromDevice = []policy.Rule{pr.rule(policy.FromDevice, 90)}
		if pr.pick(2) == 0 {
			d.Overrides.ToDevice = []policy.Rule{pr.rule(policy.ToDevice, 91)}
		}
	}
	return d
}

// peer is a random answer for a peer: single addresses for names,
// prefixes for classes, with and without TTLs.
func (pr *propRun) peer() (string, []Element) {
	ttl := func() time.Duration {
		if pr.pick(3) == 0 {
			return 0
		}
		return time.Duration(1+pr.pick(90)) * time.Second
	}
	var els []Element
	if pr.pick(3) > 0 {
		return pr.peerOf(propDNS[pr.pick(len(propDNS))].Key())
	}
	k := propClasses[pr.pick(len(propClasses))].Key()
	for range pr.pick(3) {
		els = append(els, Element{Prefix: netip.MustParsePrefix(propNets[pr.pick(len(propNets))]), Timeout: ttl()})
	}
	return k, els
}

// peerOf is a random list of single addresses for the DNS peer k.
func (pr *propRun) peerOf(k string) (string, []Element) {
	var els []Element
	for range pr.pick(4) {
		a := netip.MustParseAddr(propSingles[pr.pick(len(propSingles))])
		ttl := time.Duration(0)
		if pr.pick(3) > 0 {
			ttl = time.Duration(1+pr.pick(90)) * time.Second
		}
		els = append(els, Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: ttl})
	}
	return k, els
}

// update is a random change of one to four parts.
func (pr *propRun) update() Update {
	u := Update{SetPeers: map[string][]Element{}}
	for range 1 + pr.pick(4) {
		switch n := pr.pick(20); {
		case n < 5:
			u.UpsertDevices = append(u.UpsertDevices, pr.device())
		case n < 7:
			u.RemoveDevices = append(u.RemoveDevices, pr.mac())
		case n < 10:
			u.SetPolicies = append(u.SetPolicies, pr.policy(propPolicy[pr.pick(len(propPolicy))]))
		case n < 11:
			u.RemovePolicies = append(u.RemovePolicies, propPolicy[pr.pick(len(propPolicy))])
		case n < 12 && len(pr.w.devices) > 0:
			// the same device, moved to another policy or readdressed
			macs := slices.Sorted(maps.Keys(pr.w.devices))
			d := *pr.w.devices[macs[pr.pick(len(macs))]]
			nd := pr.device()
			if pr.pick(2) == 0 {
				d.IPv4s, d.IPv6s = nd.IPv4s, nd.IPv6s
			} else {
				d.PolicyID, d.Mode = nd.PolicyID, nd.Mode
			}
			u.UpsertDevices = append(u.UpsertDevices, d)
		case n < 14:
			// some addresses of a DNS peer, without restating the others
			k := propDNS[pr.pick(len(propDNS))].Key()
			if _, set := u.SetPeers[k]; set {
				continue
			}
			if u.ChangePeers == nil {
				u.ChangePeers = map[string]PeerChange{}
			}
			pc := u.ChangePeers[k]
			for range pr.pick(3) {
				a := netip.MustParseAddr(propSingles[pr.pick(len(propSingles))])
				pc.Remove = append(pc.Remove, netip.PrefixFrom(a, a.BitLen()))
			}
			_, els := pr.peerOf(k)
			pc.Add = append(pc.Add, els...)
			u.ChangePeers[k] = pc
		default:
			k, els := pr.peer()
			if _, changed := u.ChangePeers[k]; changed {
				continue
			}
			u.SetPeers[k] = els
		}
	}
	return u
}

// after is the test's model after an update, and whether the planner must
// accept it (enforced devices have their policy, no address is bound to
// two devices).
func (pr *propRun) after(u Update, base *model) (*model, bool) {
	m := &model{policies: maps.Clone(base.policies), devices: maps.Clone(base.devices), peers: maps.Clone(base.peers)}
	for i := range u.SetPolicies {
		p := u.SetPolicies[i]
		m.policies[p.ID] = &p
	}
	for _, id := range u.RemovePolicies {
		delete(m.policies, id)
	}
	for _, d := range u.UpsertDevices {
		n, err := normDevice(d)
		if err != nil {
			panic(err)
		}
		m.devices[n.MAC.String()] = n
	}
	for _, mac := range u.RemoveDevices {
		delete(m.devices, mac.String())
	}
	for k, els := range u.SetPeers {
		n, err := normalizePeer(els, pr.now)
		if err != nil {
			panic(err)
		}
		if len(n) == 0 {
			delete(m.peers, k)
		} else {
			m.peers[k] = n
		}
	}
	for k, pc := range u.ChangePeers {
		n := maps.Clone(m.peers[k])
		if n == nil {
			n = map[netip.Prefix]time.Time{}
		}
		for _, p := range pc.Remove {
			delete(n, p)
		}
		for _, e := range pc.Add {
			var exp time.Time
			if e.Timeout > 0 {
				exp = pr.now.Add(e.Timeout)
			}
			n[e.Prefix] = exp
		}
		if len(n) == 0 {
			delete(m.peers, k)
		} else {
			m.peers[k] = n
		}
	}
	bound := map[netip.Addr]bool{}
	for _, d := range m.devices {
		if d.Mode == Enforce && m.policies[d.PolicyID] == nil {
			return m, false
		}
		for _, a := range devAddrs(d) {
			if bound[a] {
				return m, false
			}
			bound[a] = true
		}
	}
	return m, true
}

func (pr *propRun) desired(m *model) Desired {
	d := Desired{Peers: map[string][]Element{}}
	for _, id := range slices.Sorted(maps.Keys(m.policies)) {
		d.Policies = append(d.Policies, *m.policies[id])
	}
	for _, mac := range slices.Sorted(maps.Keys(m.devices)) {
		d.Devices = append(d.Devices, *m.devices[mac])
	}
	for k, ps := range m.peers {
		for p, exp := range ps {
			el := Element{Prefix: p}
			if !exp.IsZero() {
				if el.Timeout = exp.Sub(pr.now); el.Timeout <= 0 {
					continue // expired: not handed over again
				}
			}
			d.Peers[k] = append(d.Peers[k], el)
		}
	}
	return d
}

var propDebug func(*Plan)

// commit applies a plan to the kernel model and commits it.
func (pr *propRun) commit(p *Plan, w *model) error {
	if propDebug != nil {
		propDebug(p)
	}
	if err := pr.kernel.Apply(p); err != nil {
		return fmt.Errorf("the kernel refuses the plan: %w\n%s", err, p)
	}
	if err := pr.pl.Commit(p); err != nil {
		return err
	}
	pr.w, pr.dirty = w, false
	return nil
}

// step makes one random change.
func (pr *propRun) step() error {
	switch n := pr.pick(40); {
	case n < 22: // an update, committed
		u := pr.update()
		w, ok := pr.after(u, pr.w)
		pr.logf("update %s", describeUpdate(u))
		p, err := pr.pl.Update(u, pr.now)
		if ok != (err == nil) {
			return fmt.Errorf("update accepted %v, want %v (err %v)", err == nil, ok, err)
		}
		if err != nil {
			return nil
		}
		return pr.commit(p, w)
	case n < 25: // the whole desired state, diffed
		u := pr.update()
		w, ok := pr.after(u, pr.w)
		if !ok {
			return nil
		}
		d := pr.desired(w)
		// What Sync keeps: a peer's expiries moved by less than a second
		// are not a change.
		w2, _ := pr.after(Update{SetPeers: d.Peers}, newModel())
		w.peers = w2.peers
		for k, ps := range w.peers {
			if old, ok := pr.w.peers[k]; ok && samePeer(old, ps) {
				w.peers[k] = old
			}
		}
		pr.logf("sync %s", describeUpdate(u))
		p, err := pr.pl.Sync(d, pr.now)
		if err != nil {
			return fmt.Errorf("sync refused: %v", err)
		}
		return pr.commit(p, w)
	case n < 26: // the whole desired state, rebuilt
		w, ok := pr.after(pr.update(), pr.w)
		if !ok {
			return nil
		}
		d := pr.desired(w)
		w, _ = pr.after(Update{SetPolicies: d.Policies, UpsertDevices: d.Devices, SetPeers: d.Peers}, newModel())
		pr.logf("replace")
		p, err := pr.pl.Replace(d, pr.now)
		if err != nil {
			return fmt.Errorf("replace refused: %v", err)
		}
		return pr.commit(p, w)
	case n < 29: // time passes; DNS answers expire
		d := time.Duration(pr.pick(4000)) * time.Millisecond
		if pr.pick(2) == 0 {
			d = time.Duration(pr.pick(40)) * time.Second
		}
		pr.now = pr.now.Add(d)
		pr.logf("%v later", d)
	case n < 31: // a batch the kernel rejects: nothing changes
		u := pr.update()
		if _, err := pr.pl.Update(u, pr.now); err == nil {
			pr.logf("rejected: update %s", describeUpdate(u))
		}
	case n < 32: // a batch whose outcome is lost
		u := pr.update()
		if p, err := pr.pl.Update(u, pr.now); err == nil {
			applied := pr.pick(2) == 0
			if applied {
				if err := pr.kernel.Apply(p); err != nil {
					return fmt.Errorf("the kernel refuses the plan: %w\n%s", err, p)
				}
			}
			pr.logf("lost (applied %v): update %s", applied, describeUpdate(u))
			pr.pl.Invalidate()
			pr.dirty = true
		}
	case n < 34: // someone else changes our tables; a repair follows
		pr.tamper()
		pr.logf("tampered; rebuild")
		p, err := pr.pl.Rebuild(pr.now)
		if err != nil {
			return err
		}
		return pr.commit(p, pr.w)
	case n < 36: // br_netfilter changes
		pr.pl.SetBridgeNF(propNF(pr.r))
		pr.logf("br_netfilter %+v; refresh", pr.pl.cfg.BridgeNF)
		p, err := pr.pl.Refresh(pr.now)
		if err != nil {
			return err
		}
		return pr.commit(p, pr.w)
	default: // an update that names an unknown policy: refused
		d := pr.device()
		d.Mode, d.PolicyID = Enforce, "never-installed"
		if _, err := pr.pl.Update(Update{UpsertDevices: []Device{d}}, pr.now); err == nil {
			return errors.New("a device with an unknown policy was accepted")
		}
	}
	return nil
}

// tamper changes the kernel model behind the planner's back.
func (pr *propRun) tamper() {
	for _, f := range Families {
		t := pr.kernel.t[f]
		if t == nil {
			continue
		}
		for _, name := range slices.Sorted(maps.Keys(t.Sets)) {
			s := t.Sets[name]
			if len(s.Elems) > 0 && pr.pick(3) == 0 {
				delete(s.Elems, sortedKeys(s.Elems)[0])
			}
		}
		if pr.pick(4) == 0 {
			delete(pr.kernel.t, f)
		}
	}
}

func (pr *propRun) logf(format string, args ...any) {
	pr.log = append(pr.log, fmt.Sprintf("%s: %s", pr.now.Format("15:04:05.000"), fmt.Sprintf(format, args...)))
}

func describeUpdate(u Update) string {
	var parts []string
	for _, p := range u.SetPolicies {
		parts = append(parts, fmt.Sprintf("policy %s (%d+%d rules)", p.ID, len(p.FromDevice), len(p.ToDevice)))
	}
	for _, id := range u.RemovePolicies {
		parts = append(parts, "remove policy "+id)
	}
	for _, d := range u.UpsertDevices {
		parts = append(parts, fmt.Sprintf("device %s %s %q %v %v overrides %d+%d", d.MAC, d.Mode, d.PolicyID, d.IPv4s, d.IPv6s,
			len(d.Overrides.FromDevice), len(d.Overrides.ToDevice)))
	}
	for _, m := range u.RemoveDevices {
		parts = append(parts, "remove device "+m.String())
	}
	for _, k := range slices.Sorted(maps.Keys(u.SetPeers)) {
		var els []string
		for _, e := range u.SetPeers[k] {
			els = append(els, fmt.Sprintf("%s/%v", e.Prefix, e.Timeout))
		}
		parts = append(parts, fmt.Sprintf("peer %s %v", k, els))
	}
	for _, k := range slices.Sorted(maps.Keys(u.ChangePeers)) {
		pc := u.ChangePeers[k]
		var els []string
		for _, e := range pc.Add {
			els = append(els, fmt.Sprintf("%s/%v", e.Prefix, e.Timeout))
		}
		parts = append(parts, fmt.Sprintf("peer %s +%v -%v", k, els, pc.Remove))
	}
	return strings.Join(parts, "; ")
}

// reference is what a rebuild of the test's model installs, with the
// planner's ids (every object of the model got its ids when planned).
func (pr *propRun) reference() (*Tables, error) {
	var missing []string
	lookup := func(what string, m map[string]uint32) func(string) uint32 {
		return func(k string) uint32 {
			if id, ok := m[k]; ok {
				return id
			}
			if id, ok := fixedDispatchID(k); ok && what == "dispatch" {
				return id
			}
			missing = append(missing, what+" "+k)
			return 0
		}
	}
	x := pr.pl.ids
	o := optsOf(pr.pl.cfg, lookup("peer", x.peers), lookup("group", x.groupIDs), lookup("dispatch", x.disp), pr.now)
	fk := fmt.Sprintf("%+v", pr.pl.cfg)
	fixed := pr.fixed[fk]
	if fixed == nil {
		fixed = fixedPieces(o)
		pr.fixed[fk] = fixed
	}
	all, err := buildOwnersWith(pr.w, o, fixed)
	if err != nil {
		return nil, err
	}
	if len(missing) > 0 {
		return nil, fmt.Errorf("the rebuild needs ids the planner never allocated: %v", missing)
	}
	return tablesOf(all, o), nil
}

// check compares the kernel model with the reference.
func (pr *propRun) check() error {
	if pr.dirty {
		return nil
	}
	pr.kernel.Expire(pr.now)
	ref, err := pr.reference()
	if err != nil {
		return err
	}
	if d := ref.Diff(pr.kernel, pr.now); len(d) > 0 {
		return fmt.Errorf("the kernel after the incremental plans differs from a rebuild:\n  %s", strings.Join(d, "\n  "))
	}
	if d := pr.pl.Tables().Diff(pr.kernel, pr.now); len(d) > 0 {
		return fmt.Errorf("the kernel differs from what the planner thinks it holds:\n  %s", strings.Join(d, "\n  "))
	}
	return nil
}

// run runs one sequence; the error names the seed and the steps.
func runProperty(seed uint64) error {
	pr := newPropRun(seed)
	for i := range propSteps {
		err := pr.step()
		if err == nil && (i%propCheckEvery == propCheckEvery-1 || i == propSteps-1) {
			err = pr.check()
		}
		if err != nil {
			return fmt.Errorf("seed %d, step %d: %w\nsteps:\n  %s\nconfig %+v", seed, i+1, err, strings.Join(pr.log, "\n  "), pr.pl.cfg)
		}
	}
	return nil
}

var propSeed = flag.Int64("prop.seed", -1, "run only this sequence of the property test, logging its plans")

func TestIncrementalPlansEqualRebuild(t *testing.T) {
	if *propSeed >= 0 {
		propDebug = func(p *Plan) { t.Logf("plan:\n%s", p) }
		defer func() { propDebug = nil }()
		if err := runProperty(uint64(*propSeed)); err != nil {
			t.Fatal(err)
		}
		return
	}
	n := propSequences
	if testing.Short() {
		n /= 10
	}
	for seed := range uint64(n) {
		if err := runProperty(seed); err != nil {
			t.Fatal(err)
		}
	}
}

// Each kind of deletion the diff makes is needed: with the deletions of
// the elements of one set, or of one kind of chain, dropped
// (keepDeletedIn), the property fails.
func TestPropertyCatchesMissingDeletions(t *testing.T) {
	for _, set := range []string{setGuard4, setGuard6, setFromDev, setToDev4, setToDev6, setAddr4, setAddr6, setNet4,
		setPeerGrp, setACLOut, setACLIn, setOutVmap, setResOut, setAppA, setCaged, "pol_", "dev_"} {
		t.Run(set, func(t *testing.T) {
			keepDeletedIn = set
			t.Cleanup(func() { keepDeletedIn = "" })
			for seed := range uint64(propSequences) {
				if err := runProperty(seed); err != nil {
					t.Logf("caught after %d sequences: %s", seed+1, strings.SplitN(err.Error(), "\n", 3)[:2])
					return
				}
			}
			t.Errorf("%d random sequences never noticed that elements of %s are not deleted", propSequences, set)
		})
	}
}
