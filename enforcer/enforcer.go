package enforcer

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/internal/nftbatch"
	"github.com/openmud/mud/internal/nftmon"
	"github.com/openmud/mud/policy"
	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config configures an Enforcer.
type Config struct {
	// NetNS is the path of the network namespace to enforce in (e.g.
	// /var/run/netns/gw); empty means the current one. NetNSFd, if
	// non-zero, is an already open namespace handle and wins over NetNS.
	NetNS   string
	NetNSFd int
	// Priority of the inet base chains; nil means -5 (before the usual
	// filter at 0). BridgePriority of the bridge base chain; nil means -205
	// (before the bridge filter priority -200).
	Priority       *int32
	BridgePriority *int32
	// LogGroup is the NFLOG group of the rate-limited default-deny log;
	// NoLog turns logging off.
	LogGroup uint16
	NoLog    bool
	// RepairInterval is how often Run re-reads br_netfilter's settings and
	// retries a rebuild that failed; without nftables notifications it
	// also polls our base chains then (default 500 ms).
	RepairInterval time.Duration
	// VerifyInterval is how often Run compares the kernel's tables with
	// the plan, a backstop to the notifications (default
	// DefaultVerifyInterval).
	VerifyInterval time.Duration
	// OnTamper, if set, is told of every change to our tables someone else
	// made, after Run undid it (from Run's goroutine).
	OnTamper func(Tamper)
	// Logger receives repair and conntrack messages (default slog.Default()).
	Logger *slog.Logger
	// RuleCounters gives the elements of allow-only policies counters, so
	// that Counters reports every ACE (one counter per element costs ~70
	// bytes of kernel memory). Without it, such policies report their
	// default deny and the ACEs rendered as rules.
	RuleCounters bool
	// BridgeLAN lists the prefixes LAN hosts use. When set, the bridge
	// table holds only those addresses of DNS names that fall inside them:
	// bridged traffic is between LAN hosts, so other addresses never appear
	// there. Nil installs every address in both tables.
	BridgeLAN []netip.Prefix
	// DirectDispatch makes the device maps verdict maps that jump straight
	// to the policy chains, instead of the two-stage dispatch through meta
	// secmark (README.md). It is also what kernels without secmark support
	// get. Adding a device then costs the kernel a walk of every device's
	// jump elements (milliseconds at 10,000 devices).
	DirectDispatch bool
	// BridgeFlows bounds each flow set of the bridge table's reflexive mode
	// (bridged replies without conntrack; README.md): 0 means
	// DefaultBridgeFlows. When a set is full, the replies of further new
	// flows are judged by the policies alone (statelessly), which fails
	// closed.
	BridgeFlows uint32
}

// Enforcer installs MUD policies into nftables. All methods are safe for
// concurrent use; they serialise on one mutex, so exactly one goroutine at a
// time owns the netlink connections (google/nftables' state is not safe to
// share, and batches must not interleave).
type Enforcer struct {
	cfg      Config
	log      *slog.Logger
	nsFd     int // -1: current namespace
	ownNS    bool
	bridgeCT bool
	twoStage bool        // dispatch through ids in meta secmark (else: direct)
	nfFiles  [3]*os.File // br_netfilter's sysctls in the namespace (readBridgeNF)

	mu       sync.Mutex
	cap      *nftbatch.Capture
	raw      *nftbatch.Conn
	rd       *nftables.Conn
	rt       *vnl.Handle // links (VLAN filtering of bridges)
	setID    uint32
	peerIDs  map[string]uint32
	groupIDs map[string]uint32     // groups of several peers
	derived  *derivedState         // the address → group → acl layer the kernel holds
	dispIDs  map[string]uint32     // dispatch target (out chain) → id
	model    *model                // what the kernel holds
	objs     *objects              // its pieces (nil: nothing applied yet)
	owner    map[netip.Addr]string // address → MAC of the device it is bound to
	needFull bool                  // the kernel's state is unknown: next commit rebuilds
	nf       bridgeNF              // br_netfilter's settings the layout was built for
	nfStale  bool                  // they changed: the next commit replaces the fixed chains
	repairs  int
	closed   bool

	ender    *ender          // ends flows after the commits that tightened treatment
	mon      *nftmon.Monitor // while Run watches notifications
	ownPorts []uint32        // netlink ports of our batch sockets (newest first)

	fault func(*nftables.Conn) // test hook, see emit
}

// New opens netlink connections in the configured namespace. It does not
// touch the ruleset: call Apply (or any mutation) to install our tables.
func New(cfg Config) (*Enforcer, error) {
	e := &Enforcer{cfg: cfg, log: cfg.Logger, nsFd: -1, peerIDs: map[string]uint32{}, dispIDs: map[string]uint32{},
		groupIDs: map[string]uint32{}, derived: newDerivedState(),
		model: newModel(), owner: map[netip.Addr]string{}}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.cfg.RepairInterval <= 0 {
		e.cfg.RepairInterval = 500 * time.Millisecond
	}
	if e.cfg.VerifyInterval <= 0 {
		e.cfg.VerifyInterval = DefaultVerifyInterval
	}
	switch {
	case cfg.NetNSFd != 0:
		e.nsFd = cfg.NetNSFd
	case cfg.NetNS != "":
		h, err := netns.GetFromPath(cfg.NetNS)
		if err != nil {
			return nil, fmt.Errorf("opening network namespace %s: %w", cfg.NetNS, err)
		}
		e.nsFd, e.ownNS = int(h), true
	}
	if err := e.open(); err != nil {
		e.Close()
		return nil, err
	}
	e.bridgeCT = e.probeBridgeConntrack()
	e.twoStage = !cfg.DirectDispatch && e.probeSecmark()
	if e.cfg.BridgeFlows == 0 {
		e.cfg.BridgeFlows = DefaultBridgeFlows
	}
	e.nf = e.readBridgeNF()
	e.startEnder()
	return e, nil
}

func (e *Enforcer) open() error {
	var err error
	if e.cap, err = nftbatch.NewCapture(); err != nil {
		return err
	}
	if e.raw, err = nftbatch.Open(e.nsFd); err != nil {
		return err
	}
	opts := []nftables.ConnOption{nftables.AsLasting(), nftables.WithSockOptions(func(c *netlink.Conn) error {
		// Reads of large chains (counters) come back in big dumps.
		_ = c.SetReadBuffer(8 << 20)
		return nil
	})}
	if e.nsFd >= 0 {
		opts = append(opts, nftables.WithNetNSFd(e.nsFd))
	}
	if e.rd, err = nftables.New(opts...); err != nil {
		return fmt.Errorf("opening nftables netlink connection: %w", err)
	}
	if e.rt, err = e.netlinkHandle(unix.NETLINK_ROUTE); err != nil {
		return fmt.Errorf("opening route netlink handle: %w", err)
	}
	return nil
}

// netlinkHandle opens a netlink handle of a protocol in the namespace.
func (e *Enforcer) netlinkHandle(proto int) (*vnl.Handle, error) {
	if e.nsFd >= 0 {
		return vnl.NewHandleAt(netns.NsHandle(e.nsFd), proto)
	}
	return vnl.NewHandle(proto)
}

// Close releases the netlink connections; the installed ruleset stays
// (enforcement must survive a daemon restart; the next Apply reconciles).
func (e *Enforcer) Close() error {
	e.stopEnder()
	e.mu.Lock()
	defer e.mu.Unlock()
	e.closed = true
	if e.raw != nil {
		e.raw.Close()
	}
	if e.rd != nil {
		_ = e.rd.CloseLasting()
	}
	if e.rt != nil {
		e.rt.Close()
	}
	e.closeBridgeNF()
	if e.ownNS {
		unix.Close(e.nsFd)
	}
	return nil
}

// BridgeConntrack reports whether bridged traffic is tracked by
// nf_conntrack_bridge. Without it, BridgeReplies says how replies of
// bridged flows pass.
func (e *Enforcer) BridgeConntrack() bool { return e.bridgeCT }

// flowSize is the size of the flow sets (0: none, nf_conntrack_bridge).
func (e *Enforcer) flowSize() uint32 {
	if e.bridgeCT {
		return 0
	}
	return e.cfg.BridgeFlows
}

// probeBridgeConntrack tries a ct expression in a bridge table inside a batch
// that deletes it again: the kernel refuses it without nf_conntrack_bridge.
func (e *Enforcer) probeBridgeConntrack() bool {
	t := &nftables.Table{Family: nftables.TableFamilyBridge, Name: "mud_ct_probe"}
	c := e.cap.Conn
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Table: t, Name: "probe", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(0)})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: irRule{frags: []frag{ctEstRel}, verdict: accept()}.exprs()})
	c.DelTable(t)
	msgs, err := e.cap.Take()
	if err != nil {
		return false
	}
	return e.raw.Send(msgs) == nil
}

// SecmarkDispatch reports whether devices are dispatched in two stages
// through meta secmark (the default); false means direct verdict maps
// (Config.DirectDispatch, or a kernel without CONFIG_NETWORK_SECMARK).
func (e *Enforcer) SecmarkDispatch() bool { return e.twoStage }

// probeSecmark tries `meta secmark set 0` in a table the same batch deletes:
// kernels built without CONFIG_NETWORK_SECMARK refuse it.
func (e *Enforcer) probeSecmark() bool {
	t := &nftables.Table{Family: nftables.TableFamilyINet, Name: "mud_secmark_probe"}
	c := e.cap.Conn
	c.AddTable(t)
	ch := c.AddChain(&nftables.Chain{Table: t, Name: "probe"})
	c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: irRule{frags: []frag{fSecmarkIs(false), fSetSecmark0()}}.exprs()})
	c.DelTable(t)
	msgs, err := e.cap.Take()
	if err != nil {
		return false
	}
	return e.raw.Send(msgs) == nil
}

func (e *Enforcer) opts() buildOpts {
	o := buildOpts{prio: -5, bridgePrio: -205, logGroup: e.cfg.LogGroup, log: !e.cfg.NoLog,
		bridgeCT: e.bridgeCT, bridgeNF: e.nf, flowSize: e.flowSize(), twoStage: e.twoStage, ruleCounters: e.cfg.RuleCounters, bridgeLAN: e.cfg.BridgeLAN,
		peerID: e.peerID, groupID: e.groupID, dispatchID: e.dispatchID, now: time.Now()}
	if e.cfg.Priority != nil {
		o.prio = *e.cfg.Priority
	}
	if e.cfg.BridgePriority != nil {
		o.bridgePrio = *e.cfg.BridgePriority
	}
	return o
}

// peerID returns the 32-bit id of a peer key, allocating one on first use.
// Ids are never reused while the process runs, so a stale element can never
// grant another peer's addresses.
func (e *Enforcer) peerID(key string) uint32 {
	if id, ok := e.peerIDs[key]; ok {
		return id
	}
	id := uint32(len(e.peerIDs) + 1)
	e.peerIDs[key] = id
	return id
}

// groupID returns the id of a group of several peers (an address they
// share), allocating one on first use; never reused while the process runs.
func (e *Enforcer) groupID(sig string) uint32 {
	if id, ok := e.groupIDs[sig]; ok {
		return id
	}
	id := multiGroupBase + uint32(len(e.groupIDs))
	e.groupIDs[sig] = id
	return id
}

// dispatchID returns the dispatch id of a target (its from-device chain),
// allocating one on first use. Like peer ids, ids are not reused while the
// process runs.
func (e *Enforcer) dispatchID(outChain string) uint32 {
	if id, ok := fixedDispatchID(outChain); ok {
		return id
	}
	if id, ok := e.dispIDs[outChain]; ok {
		return id
	}
	id := firstDispatchID + uint32(len(e.dispIDs))
	e.dispIDs[outChain] = id
	return id
}

// Update is a set of changes applied in one transaction, e.g. a new device
// together with its new policy and the addresses of its peers.
type Update struct {
	SetPolicies    []policy.Policy
	RemovePolicies []string
	UpsertDevices  []Device
	RemoveDevices  []net.HardwareAddr
	// SetPeers replaces the addresses of peers (by policy.Peer.Key()); an
	// empty list removes them.
	SetPeers map[string][]Element
}

// Apply replaces the whole desired state and reconciles the kernel to it in
// one transaction that rebuilds our tables (start-up, or after the manager
// reloaded its store).
func (e *Enforcer) Apply(ctx context.Context, d Desired) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	u := Update{SetPolicies: d.Policies, UpsertDevices: d.Devices, SetPeers: d.Peers}
	ch, err := e.prepare(u, true)
	if err != nil {
		return fmt.Errorf("applying desired state: %w", err)
	}
	return e.commit(ctx, ch)
}

// Update applies several changes in one transaction.
func (e *Enforcer) Update(ctx context.Context, u Update) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	ch, err := e.prepare(u, false)
	if err != nil {
		return err
	}
	return e.commit(ctx, ch)
}

// SetPolicy installs or replaces one policy. Devices using it follow at once;
// if its rules changed, their conntrack entries are flushed.
func (e *Enforcer) SetPolicy(ctx context.Context, p policy.Policy) error {
	return e.Update(ctx, Update{SetPolicies: []policy.Policy{p}})
}

// RemovePolicy removes a policy that no device uses any more.
func (e *Enforcer) RemovePolicy(ctx context.Context, id string) error {
	return e.Update(ctx, Update{RemovePolicies: []string{id}})
}

// UpsertDevice adds a device or changes its addresses, policy, mode or
// overrides. Its policy must be installed (or set in the same Update).
func (e *Enforcer) UpsertDevice(ctx context.Context, d Device) error {
	return e.Update(ctx, Update{UpsertDevices: []Device{d}})
}

// RemoveDevice removes a device: its traffic is no longer MUD-filtered.
func (e *Enforcer) RemoveDevice(ctx context.Context, mac net.HardwareAddr) error {
	return e.Update(ctx, Update{RemoveDevices: []net.HardwareAddr{mac}})
}

// SetPeer replaces the addresses of one peer (policy.Peer.Key()), e.g. the
// resolver's answer for a DNS name. Only set elements change, never rules.
func (e *Enforcer) SetPeer(ctx context.Context, key string, elems []Element) error {
	return e.Update(ctx, Update{SetPeers: map[string][]Element{key: elems}})
}

// change is a validated Update: new values by key, nil meaning removal. A
// full change holds the complete new state.
type change struct {
	full     bool
	policies map[string]*policy.Policy
	devices  map[string]*Device
	peers    map[string]map[netip.Prefix]time.Time
}

func (e *Enforcer) prepare(u Update, full bool) (*change, error) {
	ch := &change{full: full, policies: map[string]*policy.Policy{}, devices: map[string]*Device{}, peers: map[string]map[netip.Prefix]time.Time{}}
	now := time.Now()
	for i := range u.SetPolicies {
		p := u.SetPolicies[i]
		if p.ID == "" {
			return nil, errors.New("setting policy: empty ID")
		}
		ch.policies[p.ID] = &p
	}
	for _, id := range u.RemovePolicies {
		ch.policies[id] = nil
	}
	for _, d := range u.UpsertDevices {
		n, err := normDevice(d)
		if err != nil {
			return nil, fmt.Errorf("upserting device: %w", err)
		}
		ch.devices[n.MAC.String()] = n
	}
	for _, mac := range u.RemoveDevices {
		ch.devices[mac.String()] = nil
	}
	for k, elems := range u.SetPeers {
		n, err := normalizePeer(elems, now)
		if err != nil {
			return nil, fmt.Errorf("setting peer %q: %w", k, err)
		}
		if exactPeer(k) {
			for p := range n {
				if !p.IsSingleIP() {
					return nil, fmt.Errorf("setting peer %q: %s is not a single address (DNS, manufacturer and model peers hold addresses)", k, p)
				}
			}
		}
		if len(n) == 0 {
			n = nil
		}
		ch.peers[k] = n
	}
	// The result must be consistent: enforced devices have their policy,
	// and no address is bound to two devices.
	policyAfter := func(id string) bool {
		if p, ok := ch.policies[id]; ok {
			return p != nil
		}
		return !full && e.model.policies[id] != nil
	}
	deviceAfter := func(mac string) *Device {
		if d, ok := ch.devices[mac]; ok || full {
			return d
		}
		return e.model.devices[mac]
	}
	claimed := map[netip.Addr]string{}
	for mac, d := range ch.devices {
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
				if other, ok := e.owner[a]; ok && other != mac {
					if od := deviceAfter(other); od != nil && hasAddr(od, a) {
						return nil, fmt.Errorf("address %s of device %s is still bound to device %s", a, mac, other)
					}
				}
			}
		}
	}
	if !full {
		for id, p := range ch.policies {
			if p != nil || e.model.policies[id] == nil {
				continue
			}
			for mac := range e.model.devices {
				if d := deviceAfter(mac); d != nil && d.Mode == Enforce && d.PolicyID == id {
					return nil, fmt.Errorf("removing policy %q: device %s still uses it", id, mac)
				}
			}
		}
	}
	return ch, nil
}

func hasAddr(d *Device, a netip.Addr) bool {
	for _, b := range devAddrs(d) {
		if a == b {
			return true
		}
	}
	return false
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

// objects caches the pieces each object of the applied model contributes.
type objects struct {
	fixed    *pieces
	policies map[string]*pieces
	devices  map[string]*pieces
	derived  *derivedObjects
}

func newObjects() *objects {
	return &objects{policies: map[string]*pieces{}, devices: map[string]*pieces{}, derived: newDerivedObjects()}
}

func (ob *objects) all() []*pieces {
	out := []*pieces{ob.fixed}
	for _, m := range []map[string]*pieces{ob.policies, ob.devices} {
		for _, p := range m {
			out = append(out, p)
		}
	}
	return ob.derived.all(out)
}

// commit is the one code path of every change. It computes the pieces of
// the changed objects and diffs them against the cached pieces of what the
// kernel holds — or, for a full change, a repair, or when the kernel's state
// is unknown, rebuilds our tables from all pieces —, sends one batch, and
// adopts the change into the model only when the kernel accepted it: a
// rejected batch leaves kernel and model as they were.
func (e *Enforcer) commit(ctx context.Context, ch *change) error {
	if e.closed {
		return errors.New("enforcer is closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	o := e.opts()
	rebuild := ch.full || e.needFull || e.objs == nil
	next := newObjects()
	if e.objs != nil && !rebuild && !e.nfStale {
		next.fixed = e.objs.fixed // depends on the configuration only
	} else {
		next.fixed = fixedPieces(o)
	}
	// Dispatch ids in a reproducible order (policy ids, then MACs), not in
	// map order: a restarted mudd that installs the same state gives every
	// device the id it had, so its flows are left alone (adopt) and the
	// tables are identical.
	for _, id := range slices.Sorted(maps.Keys(ch.policies)) {
		if ch.policies[id] != nil {
			e.dispatchID(polChain(id, policy.FromDevice))
		}
	}
	for _, mac := range slices.Sorted(maps.Keys(ch.devices)) {
		if d := ch.devices[mac]; d != nil && d.Mode == Enforce && !d.Overrides.empty() {
			e.dispatchID(devChain(d.MAC, policy.FromDevice))
		}
	}
	if err := piecesOf(ch.policies, next.policies, func(p *policy.Policy) (*pieces, error) { return policyPieces(p, o) }); err != nil {
		return err
	}
	o.isElement = func(id string) bool {
		p, ok := ch.policies[id]
		if !ok && !ch.full {
			p = e.model.policies[id]
		}
		return p != nil && elementPolicy(p, o)
	}
	if !rebuild {
		// A device with overrides continues into its policy's entry, which
		// depends on how the policy renders: recompute it when that changes.
		for id, np := range ch.policies {
			op := e.model.policies[id]
			if (op != nil && elementPolicy(op, o)) == (np != nil && elementPolicy(np, o)) {
				continue
			}
			for mac, d := range e.model.devices {
				if _, touched := ch.devices[mac]; !touched && d.PolicyID == id && !d.Overrides.empty() {
					ch.devices[mac] = d
				}
			}
		}
	}
	if err := piecesOf(ch.devices, next.devices, func(d *Device) (*pieces, error) { return devicePieces(d, o) }); err != nil {
		return err
	}
	// The address → group → acl layer: recomputed whole on a rebuild,
	// else only what the changed policies and peers touch.
	var dd *derivedDelta
	var oldP, newP []*pieces
	if rebuild {
		pols, peers := ch.policies, ch.peers
		if !ch.full {
			pols, peers = overlay(e.model.policies, ch.policies, policyGone), overlay(e.model.peers, ch.peers, peerGone)
		}
		dd = deriveChange(o, newDerivedState(), next.derived, true, pols, func(id string) *policy.Policy { return pols[id] },
			peers, func(string) map[netip.Prefix]time.Time { return nil },
			func() map[string]map[netip.Prefix]time.Time { return peers })
		next.derived.apply(dd)
		if !ch.full && e.objs != nil {
			// Objects the change leaves alone keep their cached pieces.
			merge(next.policies, e.objs.policies, ch.policies)
			merge(next.devices, e.objs.devices, ch.devices)
		}
		newP = next.all()
	} else {
		policyAfter := func(id string) *policy.Policy {
			if p, ok := ch.policies[id]; ok {
				return p
			}
			return e.model.policies[id]
		}
		dd = deriveChange(o, e.derived, e.objs.derived, false, ch.policies, policyAfter,
			ch.peers, func(k string) map[netip.Prefix]time.Time { return e.model.peers[k] },
			func() map[string]map[netip.Prefix]time.Time { return overlay(e.model.peers, ch.peers, peerGone) })
		oldP, newP = dd.diff(e.objs.derived)
		for id := range ch.policies {
			oldP, newP = appendIf(oldP, e.objs.policies[id]), appendIf(newP, next.policies[id])
		}
		for mac := range ch.devices {
			oldP, newP = appendIf(oldP, e.objs.devices[mac]), appendIf(newP, next.devices[mac])
		}
		if next.fixed != e.objs.fixed {
			oldP, newP = append(oldP, e.objs.fixed), append(newP, next.fixed)
		}
	}
	var before map[string]string
	if e.objs == nil {
		// The first commit of this process: the tables may hold what a
		// previous mudd installed. A device the kernel already had with
		// the same dispatch target keeps its flows (a restart changes
		// nothing); any other is new to the kernel's rules.
		before = e.kernelDevices()
	}
	tEmit := time.Now()
	msgs, err := e.emit(oldP, newP, rebuild, o.now)
	if err != nil {
		e.resetCapture()
		return err
	}
	tSend := time.Now()
	err = e.raw.Send(msgs)
	e.log.Debug("nftables batch", "messages", len(msgs), "rebuild", rebuild,
		"build", tEmit.Sub(o.now), "encode", tSend.Sub(tEmit), "kernel", time.Since(tSend), "err", err)
	if err != nil {
		var be *BatchError
		if !errors.As(err, &be) {
			// The outcome is unknown (e.g. a lost reply): rebuild next time
			// and start over on a fresh socket.
			e.needFull = true
			e.raw.Close()
			if r, oerr := nftbatch.Open(e.nsFd); oerr == nil {
				e.raw = r
				e.reopened()
			}
		}
		return fmt.Errorf("applying nftables changes: %w", err)
	}
	e.adopt(ch, next, rebuild, dd, before)
	return nil
}

// kernelDevices reads the device bindings our inet table holds: MAC →
// dispatch value (fromDevValue).
func (e *Enforcer) kernelDevices() map[string]string {
	out := map[string]string{}
	els, err := e.rd.GetSetElements(e.setObj(famInet, setFromDev))
	if err != nil {
		return out // no table yet
	}
	for _, el := range els {
		v := &elemSpec{data: el.Val, verdict: el.VerdictData}
		if len(el.Val) == 0 {
			v.data = nil
		}
		out[net.HardwareAddr(el.Key[:min(6, len(el.Key))]).String()] = dispatchValue(v)
	}
	return out
}

// dispatchValue is a device map element's value as text: a dispatch id or
// the chain a verdict jumps to.
func dispatchValue(e *elemSpec) string {
	switch {
	case e == nil:
		return ""
	case e.verdict != nil:
		return "chain " + e.verdict.Chain
	}
	return fmt.Sprintf("id %x", e.data)
}

// fromDevValue is the value of a device's element in the inet table's
// from_dev map.
func fromDevValue(pc *pieces) string {
	if pc != nil {
		for _, x := range pc.elems {
			if x.ref == (setRef{famInet, setFromDev}) {
				return dispatchValue(x.elem)
			}
		}
	}
	return ""
}

func policyGone(p *policy.Policy) bool           { return p == nil }
func peerGone(m map[netip.Prefix]time.Time) bool { return m == nil }

// overlay is base with a change's values, as a new map; gone tells a
// removal (a change holds nil for it).
func overlay[V any](base, changed map[string]V, gone func(V) bool) map[string]V {
	out := make(map[string]V, len(base)+len(changed))
	for k, v := range base {
		out[k] = v
	}
	for k, v := range changed {
		if gone(v) {
			delete(out, k)
		} else {
			out[k] = v
		}
	}
	return out
}

// piecesOf computes the pieces of the changed (non-nil) objects.
func piecesOf[T any](changed map[string]*T, dst map[string]*pieces, f func(*T) (*pieces, error)) error {
	for k, v := range changed {
		if v == nil {
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

func appendIf(list []*pieces, p *pieces) []*pieces {
	if p == nil {
		return list
	}
	return append(list, p)
}

// merge fills dst with the cached pieces of objects the change leaves alone.
func merge[T any](dst, cached map[string]*pieces, changed map[string]T) {
	for k, p := range cached {
		if _, ok := changed[k]; !ok {
			dst[k] = p
		}
	}
}

// adopt records a committed change in the model and the piece cache, and
// ends the flows of devices whose treatment changed, so flows accepted
// under the old rules do not outlive them: their conntrack entries (both
// IP versions; routed, and bridged with br_netfilter or
// nf_conntrack_bridge) and the flows the bridge table remembers
// (reflexive mode). That includes a device new to the model, which was
// unrestricted until now (fetching, pending, a device without MUD being
// quarantined), and a device leaving it. The flush runs after the commit
// (in the ender's goroutine, within milliseconds): the next packets of
// those flows meet the new rules. A permitted TCP
// connection is picked up again by its next packet (nf_conntrack_tcp_loose,
// on by default), a permitted UDP flow by its next datagram. before is what
// the kernel held at the first commit of this process (kernelDevices), nil
// after.
func (e *Enforcer) adopt(ch *change, next *objects, rebuilt bool, dd *derivedDelta, before map[string]string) {
	prev := e.model
	var cut []netip.Addr
	var macs []net.HardwareAddr
	changedPol := map[string]bool{}
	if ch.full {
		for id, p := range prev.policies {
			if !policyRulesEqual(p, ch.policies[id]) {
				changedPol[id] = true
			}
		}
	} else {
		for id, np := range ch.policies {
			if p := prev.policies[id]; p != nil && !policyRulesEqual(p, np) {
				changedPol[id] = true
			}
		}
	}
	devChanged := func(od, nd *Device) {
		if nd == nil || od.Mode != nd.Mode || od.PolicyID != nd.PolicyID || !overridesEqual(od.Overrides, nd.Overrides) ||
			(od.Mode == Enforce && changedPol[od.PolicyID]) {
			cut = append(cut, devAddrs(od)...)
			if nd != nil {
				cut = append(cut, removedAddrs(nd, od)...) // addresses it gained
			}
			macs = append(macs, od.MAC)
		} else if gone := removedAddrs(od, nd); len(gone) > 0 {
			cut = append(cut, gone...)
			macs = append(macs, od.MAC)
		}
	}
	// A device new to the model was unrestricted: everything it opened
	// ends, unless the kernel already held it as now (the first commit
	// after a restart).
	arrived := func(mac string, nd *Device) {
		if nd == nil || (before != nil && before[mac] != "" && before[mac] == fromDevValue(next.devices[mac])) {
			return
		}
		cut = append(cut, devAddrs(nd)...)
		macs = append(macs, nd.MAC)
	}
	if ch.full || len(changedPol) > 0 {
		// Every device may be affected: walk them all.
		for mac, od := range prev.devices {
			nd, touched := ch.devices[mac]
			switch {
			case touched || ch.full:
				devChanged(od, nd)
			case od.Mode == Enforce && changedPol[od.PolicyID]:
				cut = append(cut, devAddrs(od)...)
				macs = append(macs, od.MAC)
			}
		}
	} else {
		// Only the changed devices: an incremental change costs what it
		// touches, not the number of devices installed.
		for mac, nd := range ch.devices {
			if od := prev.devices[mac]; od != nil {
				devChanged(od, nd)
			}
		}
	}
	for mac, nd := range ch.devices {
		if prev.devices[mac] == nil {
			arrived(mac, nd)
		}
	}
	if ch.full {
		e.model = &model{policies: ch.policies, devices: ch.devices, peers: ch.peers}
		e.owner = map[netip.Addr]string{}
		for mac, d := range e.model.devices {
			for _, a := range devAddrs(d) {
				e.owner[a] = mac
			}
		}
	} else {
		for mac, nd := range ch.devices {
			if od := prev.devices[mac]; od != nil {
				for _, a := range devAddrs(od) {
					if e.owner[a] == mac {
						delete(e.owner, a)
					}
				}
			}
			if nd != nil {
				for _, a := range devAddrs(nd) {
					e.owner[a] = mac
				}
			}
		}
		applyMap(prev.policies, ch.policies)
		applyMap(prev.devices, ch.devices)
		for k, v := range ch.peers {
			if v == nil {
				delete(prev.peers, k)
			} else {
				prev.peers[k] = v
			}
		}
	}
	if rebuilt {
		e.objs = next
		e.derived = newDerivedState()
		e.derived.apply(dd, e.model.policies)
	} else {
		e.objs.fixed = next.fixed
		applyPieces(e.objs.policies, next.policies, ch.policies)
		applyPieces(e.objs.devices, next.devices, ch.devices)
		e.derived.apply(dd, ch.policies)
		e.objs.derived.apply(dd)
	}
	e.needFull, e.nfStale = false, false
	if e.flowSize() == 0 {
		macs = nil // no remembered bridged flows
	}
	e.ender.add(cut, macs)
}

func applyMap[T any](dst, src map[string]*T) {
	for k, v := range src {
		if v == nil {
			delete(dst, k)
		} else {
			dst[k] = v
		}
	}
}

func applyPieces[T any](dst, src map[string]*pieces, changed map[string]T) {
	for k := range changed {
		if p := src[k]; p != nil {
			dst[k] = p
		} else {
			delete(dst, k)
		}
	}
}

func (e *Enforcer) resetCapture() {
	// google/nftables keeps a marshalling error forever: start afresh.
	if c, err := nftbatch.NewCapture(); err == nil {
		e.cap = c
	}
}

var tables = map[tfam]*nftables.Table{
	famInet:   {Family: nftables.TableFamilyINet, Name: tableName},
	famBridge: {Family: nftables.TableFamilyBridge, Name: tableName},
}

// margin under which an element with a timeout is treated as already gone:
// deleting an element the kernel has just expired would fail the batch.
const expiryMargin = 2 * time.Second

func (e *Enforcer) setObj(f tfam, name string) *nftables.Set {
	for _, d := range setDefs(f, e.twoStage, e.cfg.RuleCounters, e.flowSize()) {
		if d.name == name {
			s := &nftables.Set{Table: tables[f], Name: name, KeyType: d.key, Concatenation: d.concat, Interval: d.ival}
			if d.vmap {
				s.IsMap, s.DataType = true, nftables.TypeVerdict
			}
			if d.dmap {
				s.IsMap, s.DataType = true, nftables.TypeMark
			}

			if d.timeout {
				s.HasTimeout = true
			}
			s.Dynamic, s.Size = d.dynamic, d.size
			s.Counter = d.counter
			return s
		}
	}
	panic("unknown set " + name)
}

// emit queues the batch that turns the old pieces into the new ones on the
// capturing connection. Order matters: elements pointing at chains go
// before the chains are deleted, chains exist before rules jump to them.
func (e *Enforcer) emit(oldP, newP []*pieces, full bool, now time.Time) ([]netlink.Message, error) {
	old := &layout{chains: map[chainID]*chainSpec{}, elems: map[setRef]map[string]*elemSpec{}}
	nl := &layout{chains: map[chainID]*chainSpec{}, elems: map[setRef]map[string]*elemSpec{}}
	for _, p := range oldP {
		old.add(p)
	}
	if full {
		// Nothing to diff against: only the chains go into a map (for
		// ordering); the ~10 elements per device are streamed.
		for _, p := range newP {
			for _, c := range p.chains {
				nl.chains[c.id] = c
			}
		}
	} else {
		for _, p := range newP {
			nl.add(p)
		}
	}
	c := e.cap.Conn
	if full {
		for _, f := range []tfam{famInet, famBridge} {
			t := tables[f]
			// add + delete + add: the old table (whatever someone made of
			// it) goes away and the new one appears in the same
			// transaction; packets see one or the other.
			c.AddTable(t)
			c.DelTable(t)
			c.AddTable(t)
			for _, d := range setDefs(f, e.twoStage, e.cfg.RuleCounters, e.flowSize()) {
				s := e.setObj(f, d.name)
				// Our own set ids: google/nftables' counter is a package
				// global, unsafe with more than one connection.
				e.setID++
				s.ID = e.setID
				if err := c.AddSet(s, nil); err != nil {
					return nil, fmt.Errorf("adding set %s: %w", d.name, err)
				}
			}
		}
	}
	type elemOp struct {
		ref  setRef
		elem *elemSpec
	}
	var dels, adds []elemOp
	refs := map[setRef]bool{}
	for r := range old.elems {
		refs[r] = true
	}
	for r := range nl.elems {
		refs[r] = true
	}
	alive := func(x *elemSpec) bool { return x.expires.IsZero() || x.expires.Sub(now) > expiryMargin }
	if full {
		n := 0
		for _, p := range newP {
			n += len(p.elems)
		}
		adds = make([]elemOp, 0, n)
		for _, p := range newP {
			for _, x := range p.elems {
				if x.elem.expires.IsZero() || x.elem.expires.After(now.Add(time.Millisecond)) {
					adds = append(adds, elemOp(x))
				}
			}
		}
	}
	for r := range refs {
		o, n := old.elems[r], nl.elems[r]
		for k, oe := range o {
			ne, ok := n[k]
			if ok && elemEqual(oe, ne) {
				continue
			}
			if alive(oe) {
				dels = append(dels, elemOp{r, oe})
			}
		}
		for k, ne := range n {
			if oe, ok := o[k]; ok && elemEqual(oe, ne) {
				continue
			}
			if !ne.expires.IsZero() && !ne.expires.After(now.Add(time.Millisecond)) {
				continue
			}
			adds = append(adds, elemOp{r, ne})
		}
	}
	setup, err := e.cap.Take() // tables and sets (full only)
	if err != nil {
		return nil, err
	}
	batch := []netlink.Message{batchMsg(unix.NFNL_MSG_BATCH_BEGIN)}
	batch = append(batch, inner(setup)...)
	elemBatch := func(ops []elemOp, del bool) {
		count := map[setRef]int{}
		for _, op := range ops {
			count[op.ref]++
		}
		byRef := make(map[setRef][]*elemSpec, len(count))
		for r, n := range count {
			byRef[r] = make([]*elemSpec, 0, n)
		}
		for _, op := range ops {
			byRef[op.ref] = append(byRef[op.ref], op.elem)
		}
		for r, list := range byRef {
			batch = append(batch, elemMsgs(r.fam, r.name, list, del, now)...)
		}
	}
	// 1. element deletions
	elemBatch(dels, true)
	// 2. chains: add new, flush changed, delete gone (referrers first).
	var added, changed, removed []*chainSpec
	for id, n := range nl.chains {
		o, ok := old.chains[id]
		switch {
		case !ok:
			added = append(added, n)
		case o.sig != n.sig:
			changed = append(changed, n)
		}
	}
	for id, o := range old.chains {
		if _, ok := nl.chains[id]; !ok {
			removed = append(removed, o)
		}
	}
	sort.Slice(added, func(i, j int) bool { return added[i].id.name < added[j].id.name })
	sort.Slice(removed, func(i, j int) bool { return chainRank(removed[i].id.name) < chainRank(removed[j].id.name) })
	chainObj := func(cs *chainSpec) *nftables.Chain {
		ch := &nftables.Chain{Table: tables[cs.id.fam], Name: cs.id.name}
		if cs.hook != nil {
			pol := nftables.ChainPolicyAccept
			ch.Type, ch.Hooknum, ch.Priority, ch.Policy = nftables.ChainTypeFilter, &cs.hook.hook, nftables.ChainPriorityRef(nftables.ChainPriority(cs.hook.prio)), &pol
		}
		return ch
	}
	for _, cs := range added {
		c.AddChain(chainObj(cs))
	}
	for _, cs := range changed {
		c.FlushChain(chainObj(cs))
	}
	for _, cs := range removed {
		c.DelChain(chainObj(cs))
	}
	for _, group := range [][]*chainSpec{changed, added} {
		for _, cs := range group {
			ch := chainObj(cs)
			for _, r := range cs.rules {
				nr := &nftables.Rule{Table: ch.Table, Chain: ch, Exprs: r.exprs()}
				if r.comment != "" {
					nr.UserData = userdata.AppendString(nil, userdata.TypeComment, r.comment)
				}
				c.AddRule(nr)
			}
		}
	}
	if e.fault != nil {
		e.fault(c) // tests: make the kernel reject this batch half-way
	}
	chains, err := e.cap.Take()
	if err != nil {
		return nil, err
	}
	batch = append(batch, inner(chains)...)
	// 3. element additions
	elemBatch(adds, false)
	return append(batch, batchMsg(unix.NFNL_MSG_BATCH_END)), nil
}

// inner strips BATCH_BEGIN and BATCH_END from a captured batch.
func inner(msgs []netlink.Message) []netlink.Message {
	if len(msgs) < 2 {
		return nil
	}
	return msgs[1 : len(msgs)-1]
}

func batchMsg(typ int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES},
	}
}

// chainRank orders chain deletions: per-device chains reference policy
// chains, which reference the shared ones.
func chainRank(name string) string {
	switch {
	case strings.HasPrefix(name, "dev_"):
		return "0" + name
	case strings.HasPrefix(name, "pol_"):
		return "1" + name
	}
	return "2" + name
}

func elemEqual(a, b *elemSpec) bool {
	if !a.expires.Equal(b.expires) || !bytes.Equal(a.data, b.data) {
		return false
	}
	if (a.verdict == nil) != (b.verdict == nil) {
		return false
	}
	return a.verdict == nil || *a.verdict == *b.verdict
}

func removedAddrs(od, nd *Device) []netip.Addr {
	have := map[netip.Addr]bool{}
	for _, a := range append(append([]netip.Addr{}, nd.IPv4s...), nd.IPv6s...) {
		have[a] = true
	}
	var out []netip.Addr
	for _, a := range append(append([]netip.Addr{}, od.IPv4s...), od.IPv6s...) {
		if !have[a] {
			out = append(out, a)
		}
	}
	return out
}

func overridesEqual(a, b Overrides) bool {
	return rulesEqual(a.FromDevice, b.FromDevice) && rulesEqual(a.ToDevice, b.ToDevice)
}

func policyRulesEqual(a, b *policy.Policy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return rulesEqual(a.FromDevice, b.FromDevice) && rulesEqual(a.ToDevice, b.ToDevice)
}

func rulesEqual(a, b []policy.Rule) bool {
	return fmt.Sprintf("%+v", a) == fmt.Sprintf("%+v", b)
}

// Repairs returns how many times tampering was detected and repaired.
func (e *Enforcer) Repairs() int {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.repairs
}

// checkAndRepair follows br_netfilter's settings, retries a rebuild that
// failed and, with poll (no notifications), checks the base chains.
func (e *Enforcer) checkAndRepair(ctx context.Context, poll bool) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.closed {
		return nil
	}
	if nf := e.readBridgeNF(); nf != e.nf {
		if before, now := replyModes(e.bridgeCT, e.nf), replyModes(e.bridgeCT, nf); before != now {
			e.log.Info("br_netfilter settings changed: bridged replies pass differently", "before", before.String(), "now", now.String())
		}
		e.nf, e.nfStale = nf, true
	}
	if e.objs == nil {
		return nil
	}
	ok, why := true, ""
	if poll {
		ok, why = e.intact()
	}
	if ok && !e.needFull && !e.nfStale {
		return nil
	}
	if !ok {
		e.log.Warn("nftables tables of mud were changed from outside; restoring", "why", why)
		e.repairs++
		e.needFull = true
	}
	return e.commit(ctx, &change{})
}

// intact compares the base chains in the kernel with the layout.
func (e *Enforcer) intact() (bool, string) {
	for _, f := range []tfam{famInet, famBridge} {
		t := tables[f]
		base := []string{chainForward}
		if f == famInet {
			base = append(base, chainInput)
		}
		checked := append(base, chainGuard)
		if e.twoStage {
			checked = append(checked, chainDispFwd)
			if f == famInet {
				checked = append(checked, chainDispIn)
			}
		}
		for _, name := range checked {
			rules, err := e.rd.GetRules(t, &nftables.Chain{Name: name, Table: t})
			if err != nil {
				return false, fmt.Sprintf("reading %s %s: %v", familyName(f), name, err)
			}
			if want := e.fixedRules(chainID{f, name}); len(rules) != want {
				return false, fmt.Sprintf("chain %s %s has %d rules, want %d", familyName(f), name, len(rules), want)
			}
		}
	}
	return true, ""
}

func (e *Enforcer) fixedRules(id chainID) int {
	for _, c := range e.objs.fixed.chains {
		if c.id == id {
			return len(c.rules)
		}
	}
	return -1
}

func familyName(f tfam) string {
	if f == famBridge {
		return "bridge"
	}
	return "inet"
}

// Counters reads the per-rule counters of every installed policy back from
// the kernel, summed over families and tables, in policy order. ACEs of
// allow-only policies that are elements are counted only with
// Config.RuleCounters (a shared element counts for every ACE it serves).
func (e *Enforcer) Counters(ctx context.Context) ([]RuleCounter, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	ids := make([]string, 0, len(e.model.policies))
	for id := range e.model.policies {
		ids = append(ids, id)
	}
	sort.Strings(ids)
	o := e.opts()
	type elemCount struct {
		fam tfam
		el  nftables.SetElement
	}
	// Element counters, read once: per set, by dispatch id.
	byID := map[string]map[uint32][]elemCount{}
	if e.twoStage {
		sets := []string{setDenyOut, setDenyIn}
		if e.cfg.RuleCounters {
			sets = append(sets, setACLOut, setACLIn)
		}
		for _, name := range sets {
			byID[name] = map[uint32][]elemCount{}
			for _, f := range []tfam{famInet, famBridge} {
				els, err := e.rd.GetSetElements(e.setObj(f, name))
				if err != nil {
					return nil, fmt.Errorf("reading counters of set %s: %w", name, err)
				}
				for _, el := range els {
					if len(el.Key) >= 4 && el.Counter != nil {
						id := nativeEndian.Uint32(el.Key)
						byID[name][id] = append(byID[name][id], elemCount{f, el})
					}
				}
			}
		}
	}
	groupPeers := map[uint32][]string{}
	for k, id := range e.peerIDs {
		groupPeers[id] = []string{k}
	}
	for sig, id := range e.groupIDs {
		groupPeers[id] = sigPeers(sig)
	}
	var out []RuleCounter
	for _, id := range ids {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		p := e.model.policies[id]
		pf := aclForms(p, o)
		have := map[chainID]bool{}
		if pc := e.objs.policies[id]; pc != nil {
			for _, c := range pc.chains {
				have[c.id] = true
			}
		}
		pid := e.dispatchID(polChain(id, policy.FromDevice))
		for di, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
			idx := map[string]int{}
			var names []string
			for _, r := range p.Rules(d) {
				if _, ok := idx[r.Name]; !ok {
					idx[r.Name] = len(names)
					names = append(names, r.Name)
				}
			}
			idx[defaultDenyTag] = len(names)
			names = append(names, defaultDenyTag)
			sums := make([]RuleCounter, len(names))
			for i, n := range names {
				sums[i] = RuleCounter{PolicyID: id, Direction: d, Rule: n}
			}
			add := func(name string, c *expr.Counter) {
				if i, ok := idx[name]; ok {
					sums[i].Packets += c.Packets
					sums[i].Bytes += c.Bytes
				}
			}
			for _, f := range []tfam{famInet, famBridge} {
				t := tables[f]
				cid := chainID{f, polChain(id, d)}
				if !have[cid] {
					continue
				}
				rules, err := e.rd.GetRules(t, &nftables.Chain{Name: cid.name, Table: t})
				if err != nil {
					return nil, fmt.Errorf("reading counters of policy %q: %w", id, err)
				}
				for _, r := range rules {
					name, _ := userdata.GetString(r.UserData, userdata.TypeComment)
					for _, x := range r.Exprs {
						if cnt, ok := x.(*expr.Counter); ok {
							add(name, cnt)
						}
					}
				}
			}
			if pf == nil {
				out = append(out, sums...)
				continue
			}
			deny, acl := setDenyOut, setACLOut
			if di == 1 {
				deny, acl = setDenyIn, setACLIn
			}
			for _, ec := range byID[deny][pid] {
				add(defaultDenyTag, ec.el.Counter)
			}
			for _, ec := range byID[acl][pid] {
				k := ec.el.Key
				if len(k) < 20 {
					continue
				}
				peers := map[string]bool{}
				for _, q := range groupPeers[nativeEndian.Uint32(k[4:])] {
					peers[q] = true
				}
				counted := map[string]bool{}
				for _, fm := range pf.forms[ec.fam][di] {
					if peers[fm.peer] && !counted[fm.name] && fm.fam == k[8] && fm.proto == k[12] && fm.port == uint16(k[16])<<8|uint16(k[17]) {
						counted[fm.name] = true
						add(fm.name, ec.el.Counter)
					}
				}
			}
			out = append(out, sums...)
		}
	}
	return out, nil
}
