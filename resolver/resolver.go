// Package resolver turns the DNS names of MUD files (ietf-acldns) into
// address-set updates with expiry times, following RFC 9726 (BCP 241): names
// are resolved forward only (never reverse DNS), through the resolver the
// devices themselves use, every A and AAAA record is kept, CNAME chains are
// followed, and TTLs are respected.
//
// Two sources feed the same stream of Updates:
//
//   - Active resolution: names registered with Watch are resolved (once,
//     however many devices share them) and refreshed before their TTL ends,
//     with jitter, TTL clamps and a global query-rate limit. When the
//     resolver fails, the last answers are kept for a bounded grace period
//     (an Update says so) and then withdrawn (another Update).
//   - Passive snooping: DNS responses the gateway sends to MUD devices on
//     the LAN are captured (AF_PACKET with a BPF filter), and the addresses
//     of names in that device's list (SetDeviceNames) are emitted at once,
//     so a device's first packet to a fresh CDN address finds it allowed.
//     Only answers from trusted sources count (Config.TrustedSources, mudd's
//     dns.trusted_sources; see trust.go): the gateway's own addresses on
//     the captured interfaces, followed as they change, loopback, and the
//     resolver's address. An answer the gateway merely routes to a device
//     from a DNS server the device may reach (a server its MUD file or an
//     override permits, one an attacker runs) adds nothing: it is counted
//     (Stats.RefusedAnswers), logged, and delivered to the device unused.
//   - Hold and release (Config.HoldMark, Config.Apply): on a LAN bridge,
//     the answers to those devices are held back by an nftables table in
//     the bridge output hook until Apply has put their addresses into the
//     enforcer's sets, then re-injected; without it the device's first
//     packet races the update (see hold.go). The resolver decides what is
//     held and releases it; the table is package enforcer/dnshold's. It
//     belongs to the resolver's netlink socket, so the kernel removes it,
//     and stops holding, when the process ends however it ends.
//
// The package knows nothing about policies: only which names matter, and
// for snooping which names matter for which device. Consumers (the
// enforcer, through the manager) add each address of an Update to the set
// keyed Update.Key() ("dns:" + name) with the element timeout
// Update.Expires - now; addresses are never removed explicitly, they expire.
package resolver

import (
	"container/heap"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmud/mud/enforcer/dnshold"
	"github.com/openmud/mud/internal/netns"
)

// Source says where an Update comes from.
type Source uint8

const (
	// Active updates come from the resolver's own queries.
	Active Source = iota + 1
	// Snooped updates come from a DNS response seen on the way to a device.
	Snooped
)

func (s Source) String() string {
	switch s {
	case Active:
		return "active"
	case Snooped:
		return "snooped"
	}
	return fmt.Sprintf("source(%d)", uint8(s))
}

// Update is a change to the addresses of one name.
//
// Every address in Addrs is to be allowed until Expires (all of them share
// the expiry: the minimum TTL of the CNAME chain and address records,
// clamped to [MinTTL, MaxTTL]). An Update with no Addrs adds nothing;
// addresses from earlier Updates run out at their own expiry.
type Update struct {
	// Name is the normalised name (see Normalize) the Update is for: the
	// watched name, also when the addresses were found at the end of its
	// CNAME chain.
	Name  string
	Addrs []netip.Addr
	// TTL is the TTL the answer carried (the chain's minimum), before
	// clamping.
	TTL time.Duration
	// Expires is when the addresses stop being valid.
	Expires time.Time
	Source  Source
	// Device is the MAC address the snooped response was sent to (nil for
	// active updates).
	Device net.HardwareAddr
	// Captured is when the snooped frame was captured (zero for active
	// updates); time.Since(Captured) is the snooping latency.
	Captured time.Time
	// Err explains an update that is not a fresh answer: a negative answer
	// (ErrNXDomain, ErrNoAddresses), a failure (ErrServer, ErrCNAMELoop,
	// ...) with Stale set while the last answers are kept for the grace
	// period, or ErrExpired when the grace period is over.
	Err error
	// Stale marks Addrs as the last known answers, kept during the grace
	// period after a failure (Err says why).
	Stale bool
}

// Key is the name of the peer's address set, as policy.Peer.Key() spells
// it for DNS names.
func (u Update) Key() string { return "dns:" + u.Name }

// Config configures a Resolver. Zero fields take the documented defaults.
type Config struct {
	// Server is the recursive resolver to query, "host:port" (default:
	// the first nameserver of /etc/resolv.conf). On a gateway it should be
	// the resolver the devices are given (RFC 9726).
	Server string
	// Transport, if set, is used instead of Server (tests, another DNS
	// library).
	Transport Transport
	// Timeout bounds one DNS exchange (default 2s).
	Timeout time.Duration
	// MinTTL and MaxTTL clamp TTLs into element lifetimes and refresh
	// intervals (defaults 30s and 1h).
	MinTTL, MaxTTL time.Duration
	// NegativeTTL is how long to wait before asking again after a negative
	// answer without an SOA (default 60s; clamped to [MinTTL, MaxTTL]).
	NegativeTTL time.Duration
	// Grace is how long the last answers stay valid after resolution
	// starts failing (default 5m).
	Grace time.Duration
	// RetryMin and RetryMax bound the back-off between retries while
	// failing (defaults 1s and 1m).
	RetryMin, RetryMax time.Duration
	// Jitter is the fraction of the TTL by which refreshes are spread
	// (default 0.1): a name is refreshed between (0.8-Jitter) and 0.8 of
	// its clamped TTL.
	Jitter float64
	// QueriesPerSecond and Burst limit the active queries of the whole
	// resolver (defaults 20 and 10). Snooping sends no queries.
	QueriesPerSecond float64
	Burst            int
	// Workers is the number of concurrent resolutions (default 4).
	Workers int
	// MaxCNAMEDepth bounds CNAME chains (default 8).
	MaxCNAMEDepth int
	// UpdateBuffer is the capacity of the Updates channel (default 256).
	UpdateBuffer int

	// SnoopInterfaces are LAN interfaces on which Run captures DNS
	// responses to devices (needs CAP_NET_RAW).
	SnoopInterfaces []string
	// Captures are capture sockets opened by the caller (e.g. inside
	// another network namespace) that Run reads and closes.
	Captures []*Capture
	// TrustedSources are the IP sources, besides the gateway's own (the
	// addresses of the captured interfaces, loopback, and Server's
	// address), whose snooped answers may add addresses: a resolver the
	// devices are given that is not the gateway, reached through it. An
	// answer from any other source adds nothing; it is counted
	// (Stats.RefusedAnswers), logged, and still delivered to the device.
	// 0.0.0.0/0 and ::/0 trust every answer the gateway sends, also those
	// it routes from servers a device picked itself.
	TrustedSources []netip.Prefix
	// NetNSFd, if non-zero, is an open handle of the network namespace to
	// snoop and hold in: SnoopInterfaces are opened and the hold table is
	// created there (Captures must come from it too). Zero: the current
	// namespace.
	NetNSFd int

	// Apply, if set, applies a snooped update (adds its addresses to the
	// set Update.Key(), replacing nothing) before the answer it came from
	// is released to the device; it must be safe for concurrent use and
	// respect ctx, whose deadline is ApplyTimeout. Snooped updates then go
	// to Apply instead of the Updates channel, except those Apply failed
	// on, which follow on the channel. Nil: snooped updates go to the
	// channel, as active ones always do.
	Apply func(ctx context.Context, u Update) error
	// ApplyTimeout bounds Apply for one answer (default
	// DefaultApplyTimeout): past it the answer is released anyway.
	ApplyTimeout time.Duration
	// HoldMark, if non-zero, turns on hold and release (needs Apply, and
	// CAP_NET_ADMIN): Run creates the owner table dnshold.TableName in the
	// bridge family, which drops UDP DNS answers sent out of the ports a captured
	// bridge has when Run starts to a device with names unless their packet mark has all of HoldMark's
	// bits; the capture re-injects each with that mark once Apply has
	// returned, so the device's first packet to a fresh address finds it
	// allowed. Choose bits no other firewall rule uses (dnshold.DefaultMark).
	// The kernel deletes the table when Run returns or the process dies.
	HoldMark uint32
	// HoldPriority is the hold chain's priority in the bridge output hook
	// (default dnshold.DefaultPriority).
	HoldPriority *int32

	// Logger receives events (default: discard).
	Logger *slog.Logger
}

func (c *Config) setDefaults() {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&c.Timeout, 2*time.Second)
	def(&c.MinTTL, 30*time.Second)
	def(&c.MaxTTL, time.Hour)
	if c.MaxTTL < c.MinTTL {
		c.MaxTTL = c.MinTTL
	}
	def(&c.NegativeTTL, 60*time.Second)
	def(&c.Grace, 5*time.Minute)
	def(&c.RetryMin, time.Second)
	def(&c.RetryMax, time.Minute)
	if c.RetryMax < c.RetryMin {
		c.RetryMax = c.RetryMin
	}
	if c.Jitter <= 0 || c.Jitter > 0.5 {
		c.Jitter = 0.1
	}
	if c.QueriesPerSecond <= 0 {
		c.QueriesPerSecond = 20
	}
	if c.Burst <= 0 {
		c.Burst = 10
	}
	if c.Workers <= 0 {
		c.Workers = 4
	}
	if c.MaxCNAMEDepth <= 0 {
		c.MaxCNAMEDepth = 8
	}
	if c.UpdateBuffer <= 0 {
		c.UpdateBuffer = 256
	}
	if c.Logger == nil {
		c.Logger = slog.New(slog.DiscardHandler)
	}
	def(&c.ApplyTimeout, DefaultApplyTimeout)
	if c.HoldPriority == nil {
		p := dnshold.DefaultPriority
		c.HoldPriority = &p
	}
}

// Resolver resolves watched names and snoops DNS answers. Create it with
// New, register names with Watch and SetDeviceNames (before or while Run
// runs), and read Updates.
type Resolver struct {
	cfg     Config
	tr      Transport
	lim     *limiter
	log     *slog.Logger
	updates chan Update
	wake    chan struct{}

	mu      sync.Mutex
	names   map[string]*entry // by normalised name
	queue   refreshQueue
	running bool

	snoop snoopState
	hold  holdState
	trust sourceTrust
	// applying bounds the answers waiting for Apply.
	applying chan struct{}
	// onRelease, if set (tests), learns how long each released answer was
	// held and whether it was applied.
	onRelease func(held time.Duration, applied bool)
	stats     counters
}

// entry is one actively resolved name.
type entry struct {
	name    string
	owners  map[string]struct{}
	removed bool
	// scheduling
	gen      uint64
	inflight bool
	// last good answer
	last        []netip.Addr
	lastExpires time.Time
	lastErr     string // last negative/failure reported, to report changes only
	// failure state
	failSince   time.Time
	backoff     time.Duration
	expiredSent bool
}

// New returns a Resolver. It does no I/O.
func New(cfg Config) (*Resolver, error) {
	cfg.setDefaults()
	tr := cfg.Transport
	if tr == nil {
		if cfg.Server == "" {
			s, err := SystemServer()
			if err != nil {
				return nil, fmt.Errorf("choosing a resolver: %w", err)
			}
			cfg.Server = s
		}
		tr = NewTransport(cfg.Server, cfg.Timeout)
	}
	for _, p := range cfg.TrustedSources {
		if !p.IsValid() {
			return nil, errors.New("configuring snooping: invalid trusted source prefix")
		}
	}
	if cfg.HoldMark != 0 && cfg.Apply == nil {
		return nil, errors.New("configuring DNS hold: HoldMark needs Apply, which decides when a held answer is released")
	}
	r := &Resolver{
		cfg:     cfg,
		tr:      tr,
		lim:     newLimiter(cfg.QueriesPerSecond, cfg.Burst),
		log:     cfg.Logger,
		updates: make(chan Update, cfg.UpdateBuffer),
		wake:    make(chan struct{}, 1),
		names:   make(map[string]*entry),

		applying: make(chan struct{}, maxHeld),
	}
	r.trust.init(&r.cfg)
	r.snoop.init()
	return r, nil
}

// Updates returns the channel Run sends updates on. Run closes it when it
// returns.
func (r *Resolver) Updates() <-chan Update { return r.updates }

// Watch asks for name to be resolved and kept fresh on behalf of owner (a
// device MAC, a policy ID: any string). A name watched by several owners
// is resolved once. It returns the normalised name, or an error wrapping
// ErrInvalidName.
func (r *Resolver) Watch(name, owner string) (string, error) {
	n, err := Normalize(name)
	if err != nil {
		return "", err
	}
	r.mu.Lock()
	e, ok := r.names[n]
	if !ok {
		e = &entry{name: n, owners: make(map[string]struct{})}
		r.names[n] = e
		r.scheduleLocked(e, time.Now())
	}
	e.owners[owner] = struct{}{}
	r.mu.Unlock()
	if !ok {
		r.poke()
	}
	return n, nil
}

// Unwatch removes owner's interest in name. When no owner is left the name
// is no longer resolved (its set elements expire on their own).
func (r *Resolver) Unwatch(name, owner string) {
	n, err := Normalize(name)
	if err != nil {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	e, ok := r.names[n]
	if !ok {
		return
	}
	delete(e.owners, owner)
	if len(e.owners) == 0 {
		e.removed = true
		delete(r.names, n)
	}
}

// Watched returns the names currently resolved, sorted.
func (r *Resolver) Watched() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]string, 0, len(r.names))
	for n := range r.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}

// Run resolves, refreshes and snoops until ctx ends. It owns every
// goroutine of the Resolver and returns after all of them have stopped,
// closing the Updates channel. It returns an error if a snoop interface
// cannot be opened; ctx's end is not an error.
func (r *Resolver) Run(ctx context.Context) error {
	r.mu.Lock()
	if r.running {
		r.mu.Unlock()
		return errors.New("resolver: Run called twice")
	}
	r.running = true
	r.mu.Unlock()
	defer close(r.updates)

	captures := slices.Clone(r.cfg.Captures)
	closeAll := func() {
		for _, c := range captures {
			c.Close()
		}
	}
	for _, ifname := range r.cfg.SnoopInterfaces {
		var c *Capture
		err := netns.DoFd(r.cfg.NetNSFd, func() (err error) {
			c, err = OpenCapture(ifname)
			return err
		})
		if err != nil {
			closeAll()
			return fmt.Errorf("starting DNS snooping: %w", err)
		}
		captures = append(captures, c)
	}
	// The gateway's own addresses, before the first answer is read.
	var addrs *addrWatch
	if len(captures) > 0 {
		ifaces := map[int]string{}
		for _, c := range captures {
			ifaces[c.conn.Index()] = c.Interface()
		}
		var err error
		if addrs, err = r.watchAddrs(ifaces); err != nil {
			closeAll()
			return fmt.Errorf("starting DNS snooping: %w", err)
		}
		closeCaptures := closeAll
		closeAll = func() { addrs.stop(); closeCaptures() }
	}
	if r.cfg.HoldMark != 0 && len(captures) > 0 {
		var bridges []string
		for _, c := range captures {
			if !c.Bridge() {
				r.log.Warn("resolver: DNS answers are not held on an interface that is not a bridge; a device's first packet may race its answer",
					slog.String("iface", c.Interface()))
				continue
			}
			if err := c.enableHold(r.cfg.HoldMark); err != nil {
				closeAll()
				return fmt.Errorf("starting DNS hold: %w", err)
			}
			bridges = append(bridges, c.Interface())
		}
		if len(bridges) > 0 {
			ports, err := bridgePorts(r.cfg.NetNSFd, bridges)
			if err == nil && len(ports) > 0 {
				err = r.startHold(ports)
			}
			if err != nil {
				closeAll()
				return fmt.Errorf("starting DNS hold: %w", err)
			}
			r.log.Info("resolver: holding DNS answers to devices until applied", slog.Any("bridges", bridges), slog.Any("ports", ports))
		}
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	// Captures stop after the hold table is gone, so that answers held
	// until then are still released.
	capCtx, stopCaptures := context.WithCancel(context.WithoutCancel(ctx))
	defer stopCaptures()
	var wg sync.WaitGroup
	work := make(chan *entry)
	wg.Go(func() { r.schedule(ctx, work) })
	for range r.cfg.Workers {
		wg.Go(func() { r.worker(ctx, work) })
	}
	if addrs != nil {
		wg.Go(func() { addrs.follow(ctx) })
	}
	for _, c := range captures {
		wg.Go(func() { r.capture(ctx, capCtx, c) })
	}
	<-ctx.Done()
	r.stopHold()
	stopCaptures()
	wg.Wait()
	return nil
}

// emit sends u unless ctx ends first.
func (r *Resolver) emit(ctx context.Context, u Update) {
	select {
	case r.updates <- u:
		r.stats.updates.Add(1)
	case <-ctx.Done():
	}
}

func (r *Resolver) poke() {
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

// scheduleLocked (r.mu held) plans e's next resolution at t.
func (r *Resolver) scheduleLocked(e *entry, t time.Time) {
	e.gen++
	heap.Push(&r.queue, queued{at: t, e: e, gen: e.gen})
}

// schedule hands due names to the workers.
func (r *Resolver) schedule(ctx context.Context, work chan<- *entry) {
	timer := time.NewTimer(time.Hour)
	defer timer.Stop()
	for {
		r.mu.Lock()
		now := time.Now()
		var due []*entry
		wait := time.Hour
		for r.queue.Len() > 0 {
			q := r.queue[0]
			if q.at.After(now) {
				wait = q.at.Sub(now)
				break
			}
			heap.Pop(&r.queue)
			if q.e.removed || q.gen != q.e.gen || q.e.inflight {
				continue
			}
			q.e.inflight = true
			due = append(due, q.e)
		}
		r.mu.Unlock()
		for _, e := range due {
			select {
			case work <- e:
			case <-ctx.Done():
				return
			}
		}
		if len(due) > 0 {
			continue // time has passed while handing out work
		}
		timer.Reset(wait)
		select {
		case <-ctx.Done():
			return
		case <-r.wake:
		case <-timer.C:
		}
	}
}

func (r *Resolver) worker(ctx context.Context, work <-chan *entry) {
	for {
		select {
		case <-ctx.Done():
			return
		case e := <-work:
			res := r.resolve(ctx, e.name)
			if ctx.Err() != nil {
				return
			}
			u, ok := r.finish(e, res)
			r.poke()
			if ok {
				r.emit(ctx, u)
			}
		}
	}
}

// result of resolving one name (both families).
type result struct {
	addrs    []netip.Addr
	ttl      uint32
	negTTL   uint32
	negative bool // err is ErrNXDomain or ErrNoAddresses
	err      error
}

// resolve queries A and AAAA for name.
func (r *Resolver) resolve(ctx context.Context, name string) result {
	var (
		res     result
		got     bool
		failure error
		neg     error
	)
	for _, qt := range [...]uint16{TypeA, TypeAAAA} {
		addrs, ttl, negTTL, err := r.resolveType(ctx, fqdn(name), qt)
		switch {
		case errors.Is(err, ErrNXDomain) || errors.Is(err, ErrNoAddresses):
			if neg == nil || errors.Is(err, ErrNXDomain) {
				neg = err
			}
			if res.negTTL == 0 || (negTTL > 0 && negTTL < res.negTTL) {
				res.negTTL = negTTL
			}
		case err != nil:
			failure = err
		default:
			if !got || ttl < res.ttl {
				res.ttl = ttl
			}
			got = true
			res.addrs = append(res.addrs, addrs...)
		}
	}
	switch {
	case got:
		if failure != nil {
			r.log.Warn("resolver: one address family failed, keeping the other",
				slog.String("name", name), slog.Any("err", failure))
		}
		slices.SortFunc(res.addrs, func(a, b netip.Addr) int { return a.Compare(b) })
		res.addrs = slices.Compact(res.addrs)
	case failure != nil:
		res.err = failure
	default:
		res.err, res.negative = neg, true
	}
	return res
}

// resolveType resolves one record type, following CNAMEs across queries
// when the resolver's answer stops at a CNAME.
func (r *Resolver) resolveType(ctx context.Context, name string, qtype uint16) (addrs []netip.Addr, ttl, negTTL uint32, err error) {
	var prior []string
	minTTL := ^uint32(0)
	cur := name
	for {
		if err := r.lim.wait(ctx); err != nil {
			return nil, 0, 0, err
		}
		r.stats.queries.Add(1)
		ans, err := r.tr.Exchange(ctx, cur, qtype)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("resolving %s: %w: %w", unfqdn(cur), ErrServer, err)
		}
		c, err := follow(ans.Records, cur, qtype, prior, r.cfg.MaxCNAMEDepth)
		if err != nil {
			return nil, 0, 0, fmt.Errorf("resolving %s: %w", unfqdn(name), err)
		}
		for _, t := range c.ttls {
			minTTL = min(minTTL, t)
		}
		switch ans.Rcode {
		case RcodeSuccess:
		case RcodeNXDomain:
			return nil, 0, ans.NegTTL, fmt.Errorf("resolving %s: %w", unfqdn(name), ErrNXDomain)
		default:
			return nil, 0, 0, fmt.Errorf("resolving %s: %w: rcode %d", unfqdn(name), ErrServer, ans.Rcode)
		}
		if len(c.addrs) > 0 {
			return c.addrs, min(minTTL, c.addrTTL), 0, nil
		}
		if len(c.names) == 1 {
			return nil, 0, ans.NegTTL, fmt.Errorf("resolving %s: %w", unfqdn(name), ErrNoAddresses)
		}
		// The answer stopped at a CNAME: ask for its target.
		prior = append(prior, c.names[:len(c.names)-1]...)
		cur = c.end()
	}
}

// clamp turns a TTL in seconds into a lifetime within [MinTTL, MaxTTL].
func (r *Resolver) clamp(ttl time.Duration) time.Duration {
	return min(max(ttl, r.cfg.MinTTL), r.cfg.MaxTTL)
}

// refreshAfter is when to refresh an answer whose clamped lifetime is d.
func (r *Resolver) refreshAfter(d time.Duration) time.Duration {
	f := 0.8 - r.cfg.Jitter*rand.Float64()
	return time.Duration(float64(d) * f)
}

// finish records a resolution result and returns the update to emit.
func (r *Resolver) finish(e *entry, res result) (Update, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	e.inflight = false
	if e.removed {
		return Update{}, false
	}
	now := time.Now()
	u := Update{Name: e.name, Source: Active}
	switch {
	case res.err == nil:
		ttl := time.Duration(res.ttl) * time.Second
		life := r.clamp(ttl)
		if e.failSince.IsZero() && e.lastErr == "" && len(e.last) == 0 {
			r.log.Debug("resolver: resolved", slog.String("name", e.name), slog.Int("addrs", len(res.addrs)))
		} else if !e.failSince.IsZero() {
			r.log.Info("resolver: resolution recovered", slog.String("name", e.name))
		}
		e.last, e.lastExpires, e.lastErr = res.addrs, now.Add(life), ""
		e.failSince, e.backoff, e.expiredSent = time.Time{}, 0, false
		r.scheduleLocked(e, now.Add(r.refreshAfter(life)))
		u.Addrs, u.TTL, u.Expires = res.addrs, ttl, e.lastExpires
		return u, true

	case res.negative:
		// An authoritative "no": nothing to add; earlier elements run out
		// at their own expiry.
		e.last, e.failSince, e.backoff, e.expiredSent = nil, time.Time{}, 0, false
		wait := r.cfg.NegativeTTL
		if res.negTTL > 0 {
			wait = time.Duration(res.negTTL) * time.Second
		}
		r.scheduleLocked(e, now.Add(r.refreshAfter(r.clamp(wait))))
		msg := res.err.Error()
		if msg == e.lastErr {
			return Update{}, false
		}
		e.lastErr = msg
		r.log.Info("resolver: negative answer", slog.String("name", e.name), slog.Any("err", res.err))
		u.Err = res.err
		return u, true
	}

	// Failure: keep the last answers for the grace period.
	if e.failSince.IsZero() {
		e.failSince, e.backoff = now, r.cfg.RetryMin
		graceEnd := now.Add(r.cfg.Grace)
		r.scheduleLocked(e, minTime(now.Add(e.backoff), graceEnd))
		e.lastErr = res.err.Error()
		u.Err = res.err
		if len(e.last) > 0 {
			r.log.Warn("resolver: resolution failing, keeping last answers for the grace period",
				slog.String("name", e.name), slog.Duration("grace", r.cfg.Grace), slog.Any("err", res.err))
			u.Addrs, u.Stale = e.last, true
			u.Expires = graceEnd
			if e.lastExpires.After(graceEnd) {
				u.Expires = e.lastExpires
			}
		} else {
			r.log.Warn("resolver: resolution failing", slog.String("name", e.name), slog.Any("err", res.err))
		}
		return u, true
	}
	e.backoff = min(2*e.backoff, r.cfg.RetryMax)
	graceEnd := e.failSince.Add(r.cfg.Grace)
	if now.Before(graceEnd) {
		r.scheduleLocked(e, minTime(now.Add(e.backoff), graceEnd))
		return Update{}, false
	}
	r.scheduleLocked(e, now.Add(e.backoff))
	if e.expiredSent || len(e.last) == 0 {
		return Update{}, false
	}
	e.expiredSent, e.last = true, nil
	r.log.Warn("resolver: grace period over, last answers withdrawn",
		slog.String("name", e.name), slog.Any("err", res.err))
	u.Err = fmt.Errorf("resolving %s: %w: %w", e.name, ErrExpired, res.err)
	return u, true
}

func minTime(a, b time.Time) time.Time {
	if a.Before(b) {
		return a
	}
	return b
}

// queued is one planned resolution; stale ones (gen mismatch) are skipped.
type queued struct {
	at  time.Time
	e   *entry
	gen uint64
}

type refreshQueue []queued

func (q refreshQueue) Len() int           { return len(q) }
func (q refreshQueue) Less(i, j int) bool { return q[i].at.Before(q[j].at) }
func (q refreshQueue) Swap(i, j int)      { q[i], q[j] = q[j], q[i] }
func (q *refreshQueue) Push(x any)        { *q = append(*q, x.(queued)) }
func (q *refreshQueue) Pop() any {
	old := *q
	x := old[len(old)-1]
	old[len(old)-1] = queued{}
	*q = old[:len(old)-1]
	return x
}

// limiter is a token bucket shared by all queries.
type limiter struct {
	mu     sync.Mutex
	rate   float64 // tokens per second
	burst  float64
	tokens float64
	last   time.Time
}

func newLimiter(rate float64, burst int) *limiter {
	return &limiter{rate: rate, burst: float64(burst), tokens: float64(burst)}
}

// wait takes a token, sleeping until one is available or ctx ends.
func (l *limiter) wait(ctx context.Context) error {
	l.mu.Lock()
	now := time.Now()
	if !l.last.IsZero() {
		l.tokens = min(l.burst, l.tokens+now.Sub(l.last).Seconds()*l.rate)
	}
	l.last = now
	l.tokens-- // reserve, possibly going negative: later callers wait longer
	var d time.Duration
	if l.tokens < 0 {
		d = time.Duration(-l.tokens / l.rate * float64(time.Second))
	}
	l.mu.Unlock()
	if d == 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}

// counters are the Resolver's statistics.
type counters struct {
	queries, updates                 atomic.Uint64
	frames, dnsMsgs, snoops, refused atomic.Uint64

	held, released, applyFailures, releaseErrors atomic.Uint64
}

// Stats are cumulative counters of a Resolver.
type Stats struct {
	Queries       uint64 // active queries sent
	Updates       uint64 // updates emitted on the channel
	Frames        uint64 // frames given to HandleFrame
	DNSResponses  uint64 // frames that held a DNS response to a known device
	SnoopedAnswer uint64 // snooped updates produced
	// RefusedAnswers counts DNS responses to a known device that would
	// have added addresses but came from a source that is not trusted
	// (Config.TrustedSources).
	RefusedAnswers uint64
	// Hold and release (Config.HoldMark).
	Held          uint64 // captured answers the hold table dropped
	Released      uint64 // held answers re-injected
	ApplyFailures uint64 // snooped updates Apply failed on (or timed out)
	ReleaseErrors uint64 // held answers that could not be re-injected (lost)
}

// Stats returns the counters.
func (r *Resolver) Stats() Stats {
	return Stats{
		Queries:        r.stats.queries.Load(),
		Updates:        r.stats.updates.Load(),
		Frames:         r.stats.frames.Load(),
		DNSResponses:   r.stats.dnsMsgs.Load(),
		SnoopedAnswer:  r.stats.snoops.Load(),
		RefusedAnswers: r.stats.refused.Load(),
		Held:           r.stats.held.Load(),
		Released:       r.stats.released.Load(),
		ApplyFailures:  r.stats.applyFailures.Load(),
		ReleaseErrors:  r.stats.releaseErrors.Load(),
	}
}
