package manager

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
	"github.com/openmud/mud/violations"
)

// Enforcer is what the manager needs of package enforcer (*enforcer.Enforcer
// implements it): Apply installs the whole desired state (start-up,
// recovery), Update applies one reconcile's changes in one transaction.
type Enforcer interface {
	Apply(ctx context.Context, d enforcer.Desired) error
	Update(ctx context.Context, u enforcer.Update) error
	Counters(ctx context.Context) ([]enforcer.RuleCounter, error)
}

// Fetcher is what the manager needs of package mudfetch (*mudfetch.Fetcher).
type Fetcher interface {
	Fetch(ctx context.Context, req mudfetch.Request) (*mudfetch.Result, error)
}

// Resolver is what the manager needs of package resolver (*resolver.Resolver).
type Resolver interface {
	Watch(name, owner string) (string, error)
	Unwatch(name, owner string)
	SetDeviceNames(mac net.HardwareAddr, names []string) error
}

// Config wires a Manager. Store, Enforcer and Fetcher are required.
type Config struct {
	Store    *store.Store
	Enforcer Enforcer
	Fetcher  Fetcher
	// Resolver, if set, is told which DNS names to watch and which names
	// matter for which device (snooping). Its Updates are fed in through
	// DNS or HandleDNS.
	Resolver Resolver
	// Anchors are the trust anchors for Import and for re-verifying the
	// cached files at start-up. Nil means none: every cached signed file
	// is then untrusted at start-up (pending approval), and so are imports.
	Anchors *x509.CertPool

	// Settings that SIGHUP may change (see Reload).
	Settings Settings

	// RemovalGrace is how long a device's rules stay after its lease ended
	// (default 30s).
	RemovalGrace time.Duration
	// MaxFetches bounds the fetches in flight (default 8), and
	// MaxFetchesPerPort those of one bridge port (default half of them).
	MaxFetches, MaxFetchesPerPort int
	// FetchBudget, FetchBudgetPerPort and FetchBudgetPerDevice bound the
	// fetches started in any FetchWindow: overall (default 600, as
	// mudfetch's own limit), per bridge port (150) and per device (10);
	// FetchWindow defaults to 10 minutes. A fetch beyond them waits.
	FetchWindow                                           time.Duration
	FetchBudget, FetchBudgetPerPort, FetchBudgetPerDevice int
	// FloodQueue is how many URLs waiting on one port make a fetch-flood
	// event (default 32); FloodEventEvery rate-limits that event per port
	// (default 1m).
	FloodQueue      int
	FloodEventEvery time.Duration
	// Tick is the resolution of timers (removals, refreshes, retries;
	// default 1s).
	Tick time.Duration

	// Leases and DNS, if set, are read by Run (the snooper's and the
	// resolver's channels). A closed channel is simply no longer read.
	Leases <-chan dhcpsnoop.Event
	DNS    <-chan resolver.Update
	// Neighbors, if set, is read by Run: the addresses devices are seen
	// using and no longer hold, and the conflicts package neighbor refused
	// (*neighbor.Learner's Events).
	Neighbors <-chan neighbor.Event
	// NeighborControl, if set, is told the static addresses of bindings
	// and the devices whose first address is bound on first use
	// (*neighbor.Learner).
	NeighborControl Neighbors

	// LAN are the LAN interfaces' prefixes at start (package lanwatch);
	// SetLAN changes them. They are local-networks unless
	// Settings.LocalNetworks sets it.
	LAN []netip.Prefix
	// BridgeLAN: the enforcer's bridge table follows LAN (the Enforcer is a
	// LANUpdater, enforcer.Config.BridgeLAN).
	BridgeLAN bool

	// Violations, if set, holds the violation records (Violations) and
	// delivers new ones, which Run turns into "violation" events and
	// counts towards AutoQuarantine.
	Violations     Violations
	AutoQuarantine AutoQuarantine

	// Fleet, if set, shares the administrator's decisions with the other
	// gateways of the site and delivers theirs (store.backend etcd; see
	// fleet.go).
	Fleet Fleet

	// Render tunes the nft text of Policy(withNFT).
	Render enforcer.RenderOptions
	// EnforcerInfo, if set, reports the enforcer's health for Status.
	EnforcerInfo func() (tables []string, bridgeConntrack bool, repairs int)
	// DNSStats, if set, reports the resolver's counters for Status and
	// the metrics: snooped answers refused for their untrusted source,
	// held answers, and those released without being applied.
	DNSStats func() resolver.Stats
	// DHCPStats, if set, reports the DHCP snooper's counters for the
	// metrics: frames it dropped or could not attribute leave a device
	// unbound until its next DHCP exchange.
	DHCPStats func() dhcpsnoop.Stats
	// BridgeReplies, if set, says how replies of bridged flows pass
	// (enforcer.Enforcer.BridgeReplies) for Status.
	BridgeReplies func() string

	Version string
	Now     func() time.Time
	Logger  *slog.Logger
}

// Settings are the parts of the configuration that can change while mudd
// runs (SIGHUP): the failure treatment, local networks, the controller
// mappings from the configuration file and how long never-enforced devices
// are remembered. The retry delays are read at start (fetch.*) and kept
// across reloads.
type Settings struct {
	OnFailure     config.OnFailure
	LocalNetworks []netip.Prefix
	Controllers   map[string][]netip.Prefix
	MyControllers map[string][]netip.Prefix
	// RetryInitial is the delay before retrying a failed fetch; it
	// doubles with each further failure up to RetryMax (defaults 5s, 5m).
	RetryInitial, RetryMax time.Duration
	// ForgetAfter is how long a device that never got past DHCP (never
	// enforced, no address now) is kept after it was last seen (default
	// 1h).
	ForgetAfter time.Duration
	// PruneAfter is how long any device without an address and without
	// anything an administrator set for it is kept after it was last seen
	// (default 30 days).
	PruneAfter time.Duration
}

// SettingsFrom extracts the live settings of a configuration. When it
// sets no local_networks, local-networks are the LAN's prefixes
// (Config.LAN, SetLAN; RFC 8520 §4.5).
func SettingsFrom(c config.Config) Settings {
	return Settings{OnFailure: c.Policy.OnFailure, LocalNetworks: c.Policy.LocalNetworks,
		Controllers: c.Policy.Controllers, MyControllers: c.Policy.MyControllers,
		RetryInitial: c.Fetch.RetryInitial, RetryMax: c.Fetch.RetryMax, ForgetAfter: c.Policy.ForgetAfter, PruneAfter: c.Policy.PruneAfter}
}

// ErrStopped is returned by requests made after Run returned.
var ErrStopped = errors.New("manager is not running")

// Manager is the reconciler. Create it with New, start Run, and use its
// methods (the administrative queries and commands among them, which
// package api serves) from any goroutine.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	now     func() time.Time
	inbox   chan request
	snooped chan request // HandleDNS: handled before anything else
	results chan fetchOutcome
	ready   chan struct{}
	stopped chan struct{}
	metrics *metrics
	started time.Time
	rand    func() float64 // the retry jitter

	// Everything below is owned by the Run goroutine.
	st            *state
	sched         *scheduler
	fetchWG       sync.WaitGroup
	fetchCtx      context.Context
	subscribers   []*subscriber
	lastApply     time.Time
	lastLatency   time.Duration
	lastErr       error
	lastErrAt     time.Time
	needFull      bool
	pushed        *desired
	dirty         dirtySet
	latencyTarget map[string]time.Time // MAC → when its lease was bound
	lan           []netip.Prefix       // the LAN's prefixes (SetLAN)
	lanDirty      bool                 // the enforcer's bridge table has not taken lan yet
	lateral       []LateralGap         // where lateral traffic passes the rules (SetLateral)
	fleet         fleetState           // decisions sent to the fleet, summaries due (Config.Fleet)

	// batchMax and batchTime bound how many waiting inputs, and for how
	// long, are handled before one reconcile (DefaultBatchMax,
	// DefaultBatchTime).
	batchMax  int
	batchTime time.Duration
	// grouping: inside Run, the store changes of one or more batches
	// share one transaction (group), committed as Run says; committed
	// are what waits for that commit (events to publish, decisions to
	// share).
	grouping  bool
	group     *store.Group
	groupAt   time.Time // when group began
	committed []func()
	// skipMarks switches marking of some kinds of change off (tests only:
	// the reconcile then misses them).
	skipMarks markKind
	// onPublish, if set, sees each event as it is published (tests).
	onPublish func(store.Event)
}

// Coalescing: when inputs arrive faster than the enforcer's transactions,
// the ones already waiting are handled first and reconciled together.
const (
	// DefaultBatchMax is how many inputs one reconcile covers at most.
	DefaultBatchMax = 256
	// DefaultBatchTime is how long the loop goes on handling waiting
	// inputs before it reconciles; also how long, at most, the store
	// changes of batches nobody waits for stay uncommitted.
	DefaultBatchTime = 5 * time.Millisecond
	// commitLinger is how long the store changes of a batch nobody waits
	// for wait for another input to share their commit.
	commitLinger = time.Millisecond
)

type request struct {
	fn   func() error
	done chan error
	// peer, for a snooped DNS answer, is the key whose elements it
	// changes.
	peer string
}

// New checks cfg and returns a Manager; nothing runs until Run.
func New(cfg Config) (*Manager, error) {
	if cfg.Store == nil || cfg.Enforcer == nil || cfg.Fetcher == nil {
		return nil, errors.New("manager: Store, Enforcer and Fetcher are required")
	}
	if cfg.RemovalGrace <= 0 {
		cfg.RemovalGrace = 30 * time.Second
	}
	defInt := func(p *int, d int) {
		if *p <= 0 {
			*p = d
		}
	}
	defDur := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	defInt(&cfg.MaxFetches, DefaultMaxFetches)
	defInt(&cfg.MaxFetchesPerPort, max(1, cfg.MaxFetches/2))
	defDur(&cfg.FetchWindow, DefaultFetchWindow)
	defInt(&cfg.FetchBudget, DefaultFetchBudget)
	defInt(&cfg.FetchBudgetPerPort, DefaultFetchBudgetPerPort)
	defInt(&cfg.FetchBudgetPerDevice, DefaultFetchBudgetPerDevice)
	defInt(&cfg.FloodQueue, DefaultFloodQueue)
	defDur(&cfg.FloodEventEvery, DefaultFloodEventEvery)
	defDur(&cfg.Tick, time.Second)
	cfg.Settings = settingsDefaults(cfg.Settings)
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	m := &Manager{
		cfg: cfg, log: cfg.Logger, now: cfg.Now,
		inbox:         make(chan request),
		snooped:       make(chan request),
		results:       make(chan fetchOutcome, cfg.MaxFetches),
		ready:         make(chan struct{}),
		stopped:       make(chan struct{}),
		metrics:       newMetrics(),
		rand:          rand.Float64,
		sched:         newScheduler(),
		latencyTarget: map[string]time.Time{},
		dirty:         newDirtySet(),
		batchMax:      DefaultBatchMax,
		batchTime:     DefaultBatchTime,
		lan:           slices.Clone(cfg.LAN),
		fleet:         newFleetState(),
	}
	return m, nil
}

// Ready is closed once Run has loaded the store and the kernel holds the
// stored desired state (the moment to tell systemd READY=1).
func (m *Manager) Ready() <-chan struct{} { return m.ready }

// Run loads the store, reconciles the kernel once in full, and then handles
// inputs until ctx ends. It waits for its fetch goroutines before
// returning. The rules stay in the kernel when it returns.
func (m *Manager) Run(ctx context.Context) error {
	defer close(m.stopped)
	fctx, cancel := context.WithCancel(ctx)
	m.fetchCtx = fctx
	defer func() {
		cancel()
		m.fetchWG.Wait()
		for _, s := range m.subscribers {
			close(s.ch)
		}
		m.subscribers = nil
	}()
	m.started = m.now()
	if err := m.load(ctx); err != nil {
		return err
	}
	m.pinAll()
	if err := m.fullApply(ctx); err != nil {
		return fmt.Errorf("start-up reconcile: %w", err)
	}
	m.observe()
	close(m.ready)
	m.log.Info("manager ready", "devices", len(m.st.devices), "policies", len(m.pushed.policies))

	tick := time.NewTicker(m.cfg.Tick)
	defer tick.Stop()
	in := inputs{leases: m.cfg.Leases, dns: m.cfg.DNS, neighbors: m.cfg.Neighbors, tick: tick.C}
	if m.cfg.Violations != nil {
		in.violations = m.cfg.Violations.Updates()
	}
	if m.cfg.Fleet != nil {
		in.fleet = m.cfg.Fleet.Events()
		for mac := range m.st.devices {
			m.fleet.devices[mac] = true // the fleet gets every summary once
		}
		m.publishUnshared()
	}
	var answers []answer
	m.grouping = true
	defer func() { m.grouping = false }()
	for {
		var linger *time.Timer
		var lingerC <-chan time.Time
		if m.group != nil {
			linger = time.NewTimer(commitLinger)
			lingerC = linger.C
		}
		more := m.next(ctx, &in, &answers, true, lingerC)
		if linger != nil {
			linger.Stop()
		}
		if !more {
			if ctx.Err() == nil { // nothing came meanwhile
				m.commitStore()
				continue
			}
			// A clean stop keeps what the tick would have saved.
			m.saveDNS(m.now())
			m.saveLearned()
			m.commitStore()
			return nil
		}
		// More inputs waiting: handle them first, and reconcile once.
		start := time.Now()
		for n := 1; n < m.batchMax && time.Since(start) < m.batchTime; n++ {
			if !m.next(ctx, &in, &answers, false, nil) {
				break
			}
		}
		if len(answers) == 0 && m.group != nil && time.Since(m.groupAt) < m.batchTime {
			// Nobody waits for these changes: the kernel takes them now,
			// the disk with the next batch's, or once the loop has had
			// nothing to do for commitLinger. A device's DHCPv4 ACK
			// comes a millisecond after its DISCOVER: it does not wait
			// for the DISCOVER's fsync.
			m.reconcile(ctx)
			continue
		}
		saved := m.startCommit()
		m.reconcile(ctx)
		cerr := saved()
		for _, a := range answers {
			if a.err == nil && cerr != nil {
				a.err = cerr
			}
			a.done <- a.err
		}
		answers = answers[:0]
		m.commitStore() // what the reconcile wrote (its events)
	}
}

// update runs fn as one all-or-nothing change of the store. Inside Run
// the changes of one or more batches share a transaction, committed (one
// fsync) after their reconciles or beside the last (startCommit): a burst
// of arrivals costs a store commit per few batches, not one per arrival.
func (m *Manager) update(fn func(*store.Tx) error) error {
	if !m.grouping {
		return m.cfg.Store.Update(fn)
	}
	if m.group == nil {
		g, err := m.cfg.Store.Begin()
		if err != nil {
			return err
		}
		m.group, m.groupAt = g, time.Now()
	}
	return m.group.Update(fn)
}

// view reads the store as update leaves it: with the batch's changes not
// yet committed.
func (m *Manager) view(fn func(*store.Tx) error) error {
	if m.group != nil {
		return m.group.View(fn)
	}
	return m.cfg.Store.View(fn)
}

// afterCommit runs f once the store changes made so far are committed
// (at once outside a batch): what others see of a change — its events,
// the decisions handed to the fleet — follows the store.
func (m *Manager) afterCommit(f func()) {
	if m.group == nil {
		f()
		return
	}
	m.committed = append(m.committed, f)
}

// commitStore makes the batch's store changes durable, then runs what waited
// for them. If the store cannot commit them, they are lost from disk but
// not from memory: mudd goes on enforcing them, logs the error and counts
// it (mud_store_commit_failures_total), and the requests of the batch get
// the error.
func (m *Manager) commitStore() error {
	var err error
	// What ran after a commit may have changed the store again.
	for m.group != nil {
		g, fs := m.group, m.committed
		m.group, m.committed = nil, nil
		err = errors.Join(err, m.committedGroup(g, fs, g.Commit()))
	}
	return err
}

// startCommit starts committing the open store changes in the background
// and returns the function that waits for that commit and then runs what
// waited for it. Run drives the kernel meanwhile: the fsync (0.4 ms on an
// idle disk, several under load) is not added to the way to enforcement.
// Nothing anyone is told of — an event, an answer, a decision for the
// fleet — leaves before the commit; the kernel may hold a change a few
// milliseconds before the disk does, and if mudd dies in between, its
// start makes the kernel equal the store again, as after a death just
// before the change.
func (m *Manager) startCommit() (wait func() error) {
	g, fs := m.group, m.committed
	if g == nil {
		return m.commitStore
	}
	m.group, m.committed = nil, nil
	saved := g.Start()
	return func() error { return m.committedGroup(g, fs, saved()) }
}

// committedGroup handles the outcome of a group's commit: on success it
// runs what waited for it, on failure it logs and counts the failure.
func (m *Manager) committedGroup(g *store.Group, fs []func(), cerr error) error {
	if cerr != nil {
		m.metrics.commitFailures.Add(1)
		m.log.Error("committing store changes", "changes", g.Len(), "err", cerr)
		return fmt.Errorf("saving to the store: %w", cerr)
	}
	for _, f := range fs {
		f()
	}
	return nil
}

// inputs are the channels Run reads besides its own.
type inputs struct {
	leases     <-chan dhcpsnoop.Event
	dns        <-chan resolver.Update
	neighbors  <-chan neighbor.Event
	violations <-chan violations.Violation
	fleet      <-chan FleetEvent
	tick       <-chan time.Time
}

// answer is a request's result, given once the reconcile after it is done.
type answer struct {
	done chan error
	err  error
}

// next handles one input: one that is waiting, or, when wait is set, the
// next to come before until. It reports false when none was waiting,
// until came or ctx ended. A
// snooped DNS answer goes first, and its addresses to the enforcer at
// once: the device's answer is held until they are there.
func (m *Manager) next(ctx context.Context, in *inputs, answers *[]answer, wait bool, until <-chan time.Time) bool {
	select {
	case r := <-m.snooped:
		m.onSnooped(ctx, r)
		return true
	default:
	}
	if !wait {
		select {
		case r := <-m.inbox:
			*answers = append(*answers, answer{done: r.done, err: r.fn()})
		case o := <-m.results:
			m.onFetch(o)
		case ev, ok := <-in.leases:
			in.lease(m, ev, ok)
		case u, ok := <-in.dns:
			in.update(m, u, ok)
		case ev, ok := <-in.neighbors:
			in.neighbor(m, ev, ok)
		case v, ok := <-in.violations:
			in.violation(m, v, ok)
		case ev, ok := <-in.fleet:
			in.fleetEvent(m, ev, ok)
		case <-in.tick:
			m.onTick()
		default:
			return false
		}
		return true
	}
	select {
	case <-ctx.Done():
		return false
	case <-until:
		return false
	case r := <-m.snooped:
		m.onSnooped(ctx, r)
	case r := <-m.inbox:
		*answers = append(*answers, answer{done: r.done, err: r.fn()})
	case o := <-m.results:
		m.onFetch(o)
	case ev, ok := <-in.leases:
		in.lease(m, ev, ok)
	case u, ok := <-in.dns:
		in.update(m, u, ok)
	case ev, ok := <-in.neighbors:
		in.neighbor(m, ev, ok)
	case v, ok := <-in.violations:
		in.violation(m, v, ok)
	case ev, ok := <-in.fleet:
		in.fleetEvent(m, ev, ok)
	case <-in.tick:
		m.onTick()
	}
	return true
}

func (in *inputs) lease(m *Manager, ev dhcpsnoop.Event, ok bool) {
	if !ok {
		in.leases = nil // closed: no longer read
		return
	}
	m.onLease(ev)
}

func (in *inputs) update(m *Manager, u resolver.Update, ok bool) {
	if !ok {
		in.dns = nil
		return
	}
	m.onDNS(u)
}

func (in *inputs) neighbor(m *Manager, ev neighbor.Event, ok bool) {
	if !ok {
		in.neighbors = nil
		return
	}
	m.onNeighbor(ev)
}

func (in *inputs) fleetEvent(m *Manager, ev FleetEvent, ok bool) {
	if !ok {
		in.fleet = nil
		return
	}
	m.onFleet(ev)
}

func (in *inputs) violation(m *Manager, v violations.Violation, ok bool) {
	if !ok {
		in.violations = nil
		return
	}
	m.onViolation(v)
}

// onSnooped handles a snooped DNS answer and pushes its addresses at once:
// with the rest when nothing else waits for a reconcile, alone otherwise.
func (m *Manager) onSnooped(ctx context.Context, r request) {
	err := r.fn()
	if m.dirty.onlyPeers() {
		m.reconcile(ctx)
	} else {
		m.pushPeer(ctx, r.peer)
	}
	r.done <- err
}

// do runs fn in the Run goroutine and returns its error once the
// reconcile after it drove the enforcer.
func (m *Manager) do(ctx context.Context, fn func() error) error {
	return m.submit(ctx, m.inbox, request{fn: fn, done: make(chan error, 1)})
}

func (m *Manager) submit(ctx context.Context, ch chan<- request, r request) error {
	select {
	case ch <- r:
	case <-ctx.Done():
		return ctx.Err()
	case <-m.stopped:
		return ErrStopped
	}
	select {
	case err := <-r.done:
		return err
	case <-ctx.Done():
		return ctx.Err()
	}
}

// HandleLease feeds one lease event (as Config.Leases would).
func (m *Manager) HandleLease(ctx context.Context, ev dhcpsnoop.Event) error {
	return m.do(ctx, func() error { m.onLease(ev); return nil })
}

// HandleDNS feeds one resolver update (as Config.DNS would), and returns
// once its addresses are in the enforcer: the DNS hold releases a snooped
// answer then. It goes before every other input and does not wait for
// the reconcile of a batch.
func (m *Manager) HandleDNS(ctx context.Context, u resolver.Update) error {
	return m.submit(ctx, m.snooped, snoopedRequest(m, u))
}

func snoopedRequest(m *Manager, u resolver.Update) request {
	return request{fn: func() error { m.onDNS(u); return nil }, done: make(chan error, 1), peer: dnsKey(u.Name)}
}

// HandleTamper records that someone else changed the enforcer's tables and
// the enforcer restored them (an event "nftables-tampered" naming what was
// changed).
func (m *Manager) HandleTamper(ctx context.Context, what string) error {
	return m.do(ctx, func() error {
		m.event("", "nftables-tampered", "", "", "restored after a change by someone else: "+what)
		return nil
	})
}

// settingsDefaults fills in the settings left zero.
func settingsDefaults(s Settings) Settings {
	if s.OnFailure == "" {
		s.OnFailure = config.Baseline
	}
	if s.RetryInitial <= 0 {
		s.RetryInitial = 5 * time.Second
	}
	if s.RetryMax < s.RetryInitial {
		s.RetryMax = max(5*time.Minute, s.RetryInitial)
	}
	if s.ForgetAfter <= 0 {
		s.ForgetAfter = time.Hour
	}
	if s.PruneAfter <= 0 {
		s.PruneAfter = 30 * 24 * time.Hour
	}
	return s
}

// Reload replaces the live settings (SIGHUP), re-evaluates every device
// (a changed on_failure changes what the unusable ones are held to, and
// says so in their events) and reconciles. The retry delays stay as they
// were read at start.
func (m *Manager) Reload(ctx context.Context, s Settings) error {
	return m.do(ctx, func() error {
		s.RetryInitial, s.RetryMax = m.cfg.Settings.RetryInitial, m.cfg.Settings.RetryMax
		m.cfg.Settings = settingsDefaults(s)
		m.event("", "config-reloaded", "", "", "on_failure, local networks, controller mappings and forget_after reloaded")
		m.markAll()
		for _, mac := range m.macs() {
			if d := m.st.devices[mac]; d.State != store.StateRemoved {
				_ = m.settle(*d, "", "")
			}
		}
		return nil
	})
}

// Sync waits until every input handed in before it has been handled and the
// enforcer driven (tests, and callers that need read-your-writes).
func (m *Manager) Sync(ctx context.Context) error {
	return m.do(ctx, func() error { return nil })
}

func (m *Manager) onTick() {
	now := m.now()
	for mac, at := range m.st.removeAt {
		if !now.Before(at) {
			m.remove(mac)
		}
	}
	m.refreshDue(now)
	m.saveDNS(now)
	m.saveLearned()
	m.forget(now)
	m.dispatch()
	m.pruneSubscribers()
	m.flushSummaries()
}

// errorf wraps a sentinel (ErrNotFound, ...) with what was being done.
func errorf(sentinel error, format string, args ...any) error {
	return fmt.Errorf("%w: %s", sentinel, fmt.Sprintf(format, args...))
}
