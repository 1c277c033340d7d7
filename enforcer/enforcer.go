package enforcer

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/nftwire"
	"github.com/openmud/mud/enforcer/plan"
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
	// DeviceCounters, when not 0, counts every MUD device's packets and
	// bytes, sent and received, and what of them was dropped, in dynamic
	// sets of that many elements each that the packet path fills (a
	// device's MAC, or an address it holds); DeviceCounters reads them.
	// No element or rule per device: a full apply costs what it costs
	// without them (BENCHMARKS.md). The counts start over when the tables
	// are rebuilt.
	DeviceCounters uint32
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

// Enforcer installs MUD policies into nftables. It is the planner
// (package plan), which owns every object of our tables and computes each
// change as one transaction, joined to the kernel: it encodes the plans
// (package nftwire), sends them, tells the planner what the kernel
// committed, reads counters and the tables back, ends flows. All methods
// are safe for concurrent use; they serialise on one mutex, so exactly one
// goroutine at a time owns the planner and the netlink connections
// (google/nftables' state is not safe to share, and batches must not
// interleave).
type Enforcer struct {
	cfg      Config
	log      *slog.Logger
	nsFd     int // -1: current namespace
	ownNS    bool
	bridgeCT bool
	twoStage bool        // dispatch through ids in meta secmark (else: direct)
	destroy  bool        // the kernel deletes elements if present (NFT_MSG_DESTROYSETELEM)
	nfFiles  [3]*os.File // br_netfilter's sysctls in the namespace (readBridgeNF)

	mu      sync.Mutex
	enc     *nftwire.Encoder
	raw     *nftbatch.Conn
	rd      *nftables.Conn
	rt      *vnl.Handle // links (VLAN filtering of bridges)
	pl      *plan.Planner
	nf      plan.BridgeNF // br_netfilter's settings the layout was built for
	repairs int
	closed  bool

	ender    *ender          // ends flows after the commits that tightened treatment
	ctBuf    []byte          // the conntrack dump's buffer, the ender's alone
	mon      *nftmon.Monitor // while Run watches notifications
	ownPorts []uint32        // netlink ports of our batch sockets (newest first)

	// fault, in tests, appends messages to a batch after its rules and
	// before its new elements (a batch the kernel rejects half-way).
	fault func([]netlink.Message) []netlink.Message
}

// New opens netlink connections in the configured namespace. It does not
// touch the ruleset: call Apply (or any mutation) to install our tables.
func New(cfg Config) (*Enforcer, error) {
	e := &Enforcer{cfg: cfg, log: cfg.Logger, nsFd: -1}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.cfg.RepairInterval <= 0 {
		e.cfg.RepairInterval = 500 * time.Millisecond
	}
	if e.cfg.VerifyInterval <= 0 {
		e.cfg.VerifyInterval = DefaultVerifyInterval
	}
	if e.cfg.BridgeFlows == 0 {
		e.cfg.BridgeFlows = DefaultBridgeFlows
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
	e.bridgeCT = e.probe(plan.Bridge, "mud_ct_probe", &plan.Hook{Num: plan.HookForward}, plan.ConntrackProbeRule())
	e.twoStage = !cfg.DirectDispatch && e.probe(plan.Inet, "mud_secmark_probe", nil, plan.SecmarkProbeRule())
	e.destroy = e.probeDestroy()
	e.nf = e.readBridgeNF()
	e.pl = plan.New(e.planConfig())
	e.startEnder()
	return e, nil
}

// planConfig is the planner's configuration.
func (e *Enforcer) planConfig() plan.Config {
	c := plan.Config{Priority: -5, BridgePriority: -205, LogGroup: e.cfg.LogGroup, NoLog: e.cfg.NoLog,
		BridgeConntrack: e.bridgeCT, BridgeNF: e.nf, BridgeFlows: e.cfg.BridgeFlows, DirectDispatch: !e.twoStage,
		RuleCounters: e.cfg.RuleCounters, DeviceCounters: e.cfg.DeviceCounters, BridgeLAN: e.cfg.BridgeLAN, Destroy: e.destroy}
	if e.cfg.Priority != nil {
		c.Priority = *e.cfg.Priority
	}
	if e.cfg.BridgePriority != nil {
		c.BridgePriority = *e.cfg.BridgePriority
	}
	return c
}

func (e *Enforcer) open() error {
	var err error
	if e.enc, err = nftwire.NewEncoder(); err != nil {
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

// SecmarkDispatch reports whether devices are dispatched in two stages
// through meta secmark (the default); false means direct verdict maps
// (Config.DirectDispatch, or a kernel without CONFIG_NETWORK_SECMARK).
func (e *Enforcer) SecmarkDispatch() bool { return e.twoStage }

// probe tells whether the kernel accepts a table with a chain holding
// rule r, in a batch that deletes the table again: it refuses a ct
// expression in a bridge table without nf_conntrack_bridge, and `meta
// secmark set` without CONFIG_NETWORK_SECMARK.
func (e *Enforcer) probe(f plan.Family, table string, hook *plan.Hook, r plan.Rule) bool {
	msgs, err := e.enc.Probe(f, table, hook, r)
	if err != nil {
		return false
	}
	return e.raw.Send(msgs) == nil
}

// probeDestroy tells whether the kernel knows NFT_MSG_DESTROYSETELEM
// (Linux 6.3): an element deleted if present.
func (e *Enforcer) probeDestroy() bool {
	msgs, err := e.enc.ProbeDestroy("mud_destroy_probe")
	if err != nil {
		return false
	}
	return e.raw.Send(msgs) == nil
}

// Apply replaces the whole desired state and reconciles the kernel to it in
// one transaction that rebuilds our tables (start-up, or after the manager
// reloaded its store).
func (e *Enforcer) Apply(ctx context.Context, d Desired) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	err := e.commit(ctx, func(now time.Time) (*plan.Plan, error) { return e.pl.Replace(d, now) })
	if err != nil {
		return fmt.Errorf("applying desired state: %w", err)
	}
	return nil
}

// Sync makes the whole desired state d the installed one, changing only
// what differs from what is installed: the policies, devices and peers
// that are new or changed, the removal of those d lacks. Unchanged objects
// cost nothing, so a caller may hand over its whole state after every
// event instead of tracking what it sent. Before anything is installed, or
// when the kernel's tables are unknown, it rebuilds them as Apply does.
func (e *Enforcer) Sync(ctx context.Context, d Desired) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.commit(ctx, func(now time.Time) (*plan.Plan, error) { return e.pl.Sync(d, now) })
}

// Update applies several changes in one transaction.
func (e *Enforcer) Update(ctx context.Context, u Update) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.commit(ctx, func(now time.Time) (*plan.Plan, error) { return e.pl.Update(u, now) })
}

// UpdateLAN applies u together with a change of the LAN's prefixes
// (Config.BridgeLAN; nil: every address in both tables) in one
// transaction. When the prefixes changed, the transaction rebuilds our
// tables, so that the bridge table holds the addresses of DNS names inside
// the new prefixes and none of the old.
func (e *Enforcer) UpdateLAN(ctx context.Context, lan []netip.Prefix, u Update) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.cfg.BridgeLAN = slices.Clone(lan)
	e.pl.SetBridgeLAN(e.cfg.BridgeLAN)
	return e.commit(ctx, func(now time.Time) (*plan.Plan, error) { return e.pl.Update(u, now) })
}

// SetPolicy installs or replaces one policy. Devices using it follow at once;
// if its rules changed, their flows end.
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

// RenderDevice returns, in nft syntax, what our tables hold for one
// installed device, with the peer, group and dispatch ids as installed:
// the fixed chains, the device's elements and chains, its policy's, and
// the elements of the peers its policy and overrides name.
func (e *Enforcer) RenderDevice(mac net.HardwareAddr) (string, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.pl.RenderDevice(mac)
}

// commit is the one code path of every change: the planner plans it (at
// now), the plan goes to the kernel as one batch, and the planner adopts
// it only when the kernel accepted it, so that a rejected batch leaves
// kernel and planner as they were (the error is a *BatchError). A batch
// whose outcome is unknown (a lost reply) makes the next plan a rebuild.
// The flows of devices whose treatment tightened end right after.
func (e *Enforcer) commit(ctx context.Context, mk func(now time.Time) (*plan.Plan, error)) error {
	if e.closed {
		return errors.New("enforcer is closed")
	}
	if err := ctx.Err(); err != nil {
		return err
	}
	if !e.pl.Installed() {
		// The first commit of this process: the tables may hold what a
		// previous mudd installed. A device the kernel already had with
		// the same dispatch target keeps its flows (a restart changes
		// nothing); any other is new to the kernel's rules.
		e.pl.Inherit(e.kernelDevices())
	}
	p, err := e.send(mk)
	if p == nil {
		return err // planning or encoding failed: nothing was sent
	}
	var be *BatchError
	if err != nil && errors.As(err, &be) && be.Has(unix.ENFILE) && !p.Rebuild() {
		// A set is full: its size is the capacity the last rebuild chose
		// for what it held then. The kernel refused the whole batch; the
		// same change as a rebuild sizes the sets for what they hold now.
		e.log.Info("nftables set full: rebuilding the tables with larger sets", "err", err.Error())
		e.pl.Invalidate()
		if p, err = e.send(mk); p == nil {
			return err
		}
	}
	if err != nil {
		if !errors.As(err, &be) {
			// The outcome is unknown (e.g. a lost reply): rebuild next time
			// and start over on a fresh socket.
			e.pl.Invalidate()
			e.raw.Close()
			if r, oerr := nftbatch.Open(e.nsFd); oerr == nil {
				e.raw = r
				e.reopened()
			}
		}
		return fmt.Errorf("applying nftables changes: %w", err)
	}
	if err := e.pl.Commit(p); err != nil {
		return err
	}
	e.ender.add(p.EndFlows.Addrs, p.EndFlows.MACs)
	return nil
}

// send plans, encodes and sends one batch. p is nil if planning or
// encoding failed.
func (e *Enforcer) send(mk func(now time.Time) (*plan.Plan, error)) (*plan.Plan, error) {
	start := time.Now()
	p, err := mk(start)
	if err != nil {
		return nil, err
	}
	tEnc := time.Now()
	msgs, err := e.enc.Encode(p, tEnc, e.fault)
	if err != nil {
		return nil, err
	}
	tSend := time.Now()
	err = e.raw.Send(msgs)
	e.log.Debug("nftables batch", "messages", len(msgs), "rebuild", p.Rebuild(),
		"plan", tEnc.Sub(start), "encode", tSend.Sub(tEnc), "kernel", time.Since(tSend), "err", err)
	return p, err
}

// kernelDevices reads the device bindings our inet table holds: MAC →
// element of from_dev (nil: no table yet).
func (e *Enforcer) kernelDevices() map[plan.MACKey]plan.Elem {
	spec, ok := e.pl.Set(plan.Inet, plan.SetFromDev)
	if !ok {
		return nil
	}
	els, err := e.rd.GetSetElements(nftwire.SetObject(plan.Inet, spec))
	if err != nil {
		return nil // no table yet
	}
	out := make(map[plan.MACKey]plan.Elem, len(els))
	for _, el := range els {
		// An element of another layout (direct dispatch) does not decode:
		// the device is new to the kernel's rules.
		if pe, err := nftwire.DecodeElem(spec, el); err == nil {
			out[pe.Key.(plan.MACKey)] = *pe
		}
	}
	return out
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
		if before, now := plan.ReplyModesOf(e.bridgeCT, e.nf), plan.ReplyModesOf(e.bridgeCT, nf); before != now {
			e.log.Info("br_netfilter settings changed: bridged replies pass differently", "before", before.String(), "now", now.String())
		}
		e.nf = nf
		e.pl.SetBridgeNF(nf)
	}
	if !e.pl.Installed() {
		return nil
	}
	ok, why := true, ""
	if poll {
		ok, why = e.intact()
	}
	if ok && e.pl.Known() && !e.pl.Stale() {
		return nil
	}
	if !ok {
		e.log.Warn("nftables tables of mud were changed from outside; restoring", "why", why)
		e.repairs++
		e.pl.Invalidate()
	}
	return e.commit(ctx, e.pl.Refresh)
}

// intact compares the base chains in the kernel with the plan.
func (e *Enforcer) intact() (bool, string) {
	for _, f := range plan.Families {
		t := nftwire.Table(f)
		for _, id := range e.pl.BaseChains(f) {
			rules, err := e.rd.GetRules(t, &nftables.Chain{Name: id.Name, Table: t})
			if err != nil {
				return false, fmt.Sprintf("reading %s: %v", id, err)
			}
			if want := e.pl.RuleCount(id); len(rules) != want {
				return false, fmt.Sprintf("chain %s has %d rules, want %d", id, len(rules), want)
			}
		}
	}
	return true, ""
}

// Counters reads the per-rule counters of every installed policy back from
// the kernel, summed over families and tables, in policy order. ACEs of
// allow-only policies that are elements are counted only with
// Config.RuleCounters (a shared element counts for every ACE it serves).
func (e *Enforcer) Counters(ctx context.Context) ([]RuleCounter, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	chains, sets := e.pl.Counted()
	rules := make(map[plan.ChainRef][]plan.RuleCount, len(chains))
	for _, id := range chains {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		t := nftwire.Table(id.Family)
		rs, err := e.rd.GetRules(t, &nftables.Chain{Name: id.Name, Table: t})
		if err != nil {
			return nil, fmt.Errorf("reading the counters of chain %s: %w", id, err)
		}
		for _, r := range rs {
			name, _ := userdata.GetString(r.UserData, userdata.TypeComment)
			for _, x := range r.Exprs {
				if cnt, ok := x.(*expr.Counter); ok {
					rules[id] = append(rules[id], plan.RuleCount{Comment: name, Packets: cnt.Packets, Bytes: cnt.Bytes})
				}
			}
		}
	}
	elems := make(map[plan.SetRef][]plan.ElemCount, len(sets))
	for _, r := range sets {
		spec, ok := e.pl.Set(r.Family, r.Name)
		if !ok {
			continue
		}
		els, err := e.rd.GetSetElements(nftwire.SetObject(r.Family, spec))
		if err != nil {
			return nil, fmt.Errorf("reading the counters of set %s: %w", r, err)
		}
		for _, el := range els {
			if el.Counter == nil {
				continue
			}
			k, err := nftwire.DecodeKey(spec.Key, el.Key, el.KeyEnd)
			if err != nil {
				return nil, fmt.Errorf("reading the counters of set %s: %w", r, err)
			}
			elems[r] = append(elems[r], plan.ElemCount{Key: k, Packets: el.Counter.Packets, Bytes: el.Counter.Bytes})
		}
	}
	return e.pl.Counters(rules, elems), nil
}

// DeviceCount is what the tables counted for one device
// (Config.DeviceCounters).
type DeviceCount = plan.DeviceCount

// DeviceCounters reads the per-device counters (Config.DeviceCounters)
// from the kernel, by MAC (lower case, colon-separated), for the devices
// installed now; a device that has neither sent nor been sent anything
// since the tables were built is not in the map. Nil without
// Config.DeviceCounters.
func (e *Enforcer) DeviceCounters(ctx context.Context) (map[string]DeviceCount, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	refs := e.pl.DeviceCounted()
	if len(refs) == 0 {
		return nil, nil
	}
	elems := make(map[plan.SetRef][]plan.ElemCount, len(refs))
	for _, r := range refs {
		if err := ctx.Err(); err != nil {
			return nil, err
		}
		spec, ok := e.pl.Set(r.Family, r.Name)
		if !ok {
			continue
		}
		els, err := e.rd.GetSetElements(nftwire.SetObject(r.Family, spec))
		if err != nil {
			return nil, fmt.Errorf("reading the device counters of set %s: %w", r, err)
		}
		for _, el := range els {
			if el.Counter == nil {
				continue
			}
			k, err := nftwire.DecodeKey(spec.Key, el.Key, el.KeyEnd)
			if err != nil {
				return nil, fmt.Errorf("reading the device counters of set %s: %w", r, err)
			}
			elems[r] = append(elems[r], plan.ElemCount{Key: k, Packets: el.Counter.Packets, Bytes: el.Counter.Bytes})
		}
	}
	return e.pl.DeviceCounters(elems), nil
}

// BatchError is returned when the kernel rejected a batch. Nothing of the
// batch was applied (nf_tables transactions are all-or-nothing).
type BatchError = nftbatch.BatchError
