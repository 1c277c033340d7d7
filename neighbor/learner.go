package neighbor

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet/capture"
)

// Config configures a Learner. Zero values take the defaults in brackets.
type Config struct {
	// Interfaces are the gateway's LAN interfaces (the LAN bridge, br-lan):
	// frames are captured there, and the kernel's neighbour entries of
	// these interfaces are followed.
	Interfaces []string
	// NetNS, when set, is the network namespace (/var/run/netns/NAME) of
	// the interfaces; the calling process's own otherwise.
	NetNS string
	// Prefixes are the LAN prefixes: only addresses inside them are
	// learned, and IPv6 link-local addresses. SetPrefixes changes them.
	Prefixes []netip.Prefix
	// Promiscuous puts the interfaces in promiscuous mode [off], to see the
	// advertisements devices send each other, not only those to the
	// gateway and to multicast groups.
	Promiscuous bool
	// NoCapture and NoNetlink turn a source off: the packet sockets, or
	// rtnetlink (the kernel's neighbour table, the bridge ports and the
	// gateway's own addresses).
	NoCapture, NoNetlink bool

	// MaxV4PerMAC and MaxV6PerMAC bound the addresses of one MAC [4, 32];
	// the least recently seen goes first. Pinned addresses do not count.
	MaxV4PerMAC, MaxV6PerMAC int
	// MaxMACs [4096] and MaxAddrs [16384] bound the table. When full, the
	// least recently seen MAC goes, unless the caller protects it (Keep,
	// BindOnFirstUse, a pinned address); when every MAC is protected, new
	// claims are refused.
	MaxMACs, MaxAddrs int
	// TTL4 and TTL6 are how long an address not seen again is held [1h].
	TTL4, TTL6 time.Duration
	// DADWindow is how long after duplicate address detection another MAC
	// may still defend the address and get it [10s] (RFC 4862 waits 1s
	// per probe, RFC 5227 up to 9s in all).
	DADWindow time.Duration
	// RefreshEvery is how often, at most, a refreshed event is sent for an
	// address seen again [10m].
	RefreshEvery time.Duration
	// ConflictEvery is how often, at most, the same MAC claiming the same
	// held address is reported again [1m] (all are counted).
	ConflictEvery time.Duration
	// RatePerMAC is the sightings a second one MAC may cause [10; burst 5
	// times as many]; NewMACRate how many MACs not in the table a second
	// may be admitted [50; burst 4 times]; Rate the sightings a second of
	// all MACs the caller does not protect [2000; burst 2 times].
	RatePerMAC, NewMACRate, Rate float64

	// FrameQueue is the number of parsed frames waiting for the learner
	// [1024]; beyond it they are dropped and counted (Stats.QueueDrops).
	FrameQueue int
	// EventBuffer is the capacity of the Events channel [256].
	EventBuffer int
	// SweepInterval is how often addresses are checked for expiry [5s].
	SweepInterval time.Duration
	// Logger receives operational logs [slog.Default()].
	Logger *slog.Logger
	// Now is the clock [time.Now].
	Now func() time.Time
}

// orDefault is v, or d when v is not positive (unset).
func orDefault[T int | float64 | time.Duration](v, d T) T {
	if v <= 0 {
		return d
	}
	return v
}

func (c *Config) limits() limits {
	l := limits{
		maxPerMAC:     [2]int{orDefault(c.MaxV4PerMAC, 4), orDefault(c.MaxV6PerMAC, 32)},
		maxMACs:       orDefault(c.MaxMACs, 4096),
		maxAddrs:      orDefault(c.MaxAddrs, 16384),
		ttl:           [2]time.Duration{orDefault(c.TTL4, time.Hour), orDefault(c.TTL6, time.Hour)},
		dadWindow:     orDefault(c.DADWindow, 10*time.Second),
		refreshEvery:  orDefault(c.RefreshEvery, 10*time.Minute),
		conflictEvery: orDefault(c.ConflictEvery, time.Minute),
		failedGrace:   3 * time.Second,
		ratePerMAC:    orDefault(c.RatePerMAC, 10),
		newMACRate:    orDefault(c.NewMACRate, 50),
		globalRate:    orDefault(c.Rate, 2000),
	}
	l.burstMAC, l.newBurst, l.globBurst = 5*l.ratePerMAC, 4*l.newMACRate, 2*l.globalRate
	return l
}

// Learner learns which addresses each LAN device holds, from the frames it
// captures and the kernel's neighbour table, and reports every change on
// Events. Its methods are safe for concurrent use.
type Learner struct {
	cfg    Config
	log    *slog.Logger
	filter []bpf.Instruction
	events chan Event
	wake   chan struct{}
	frames chan sighting
	kernel chan kernelItem

	mu sync.Mutex
	t  *table // guarded by mu; events go to t.out, and Run sends them

	frameCount, malformed, notNeighbor, queueDrops atomic.Uint64
	kernelUpdates, kernelResyncs                   atomic.Uint64
	running                                        atomic.Bool
}

// sighting is a parsed frame on its way to the learner.
type sighting struct {
	msg   Message
	iface string
	at    time.Time
}

// New validates cfg and returns a Learner. It opens nothing: Run does. The
// control methods (Pin, Keep, ...) work before Run; their events wait for it.
func New(cfg Config) (*Learner, error) {
	if err := capture.CheckInterfaces(cfg.Interfaces); err != nil {
		return nil, fmt.Errorf("neighbor: %w", err)
	}
	cfg.FrameQueue = orDefault(cfg.FrameQueue, 1024)
	cfg.EventBuffer = orDefault(cfg.EventBuffer, 256)
	cfg.SweepInterval = orDefault(cfg.SweepInterval, 5*time.Second)
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	filter, err := Filter()
	if err != nil {
		return nil, err
	}
	return &Learner{
		cfg:    cfg,
		log:    cfg.Logger.With("component", "neighbor"),
		filter: filter,
		events: make(chan Event, cfg.EventBuffer),
		wake:   make(chan struct{}, 1),
		frames: make(chan sighting, cfg.FrameQueue),
		kernel: make(chan kernelItem, 256),
		t:      newTable(cfg.limits(), cfg.Prefixes),
	}, nil
}

// Events delivers the learner's events in order. It is closed when Run
// returns. The consumer must keep reading: the learner waits for it, and
// meanwhile frames are dropped (and counted) rather than events.
func (l *Learner) Events() <-chan Event { return l.events }

// Run captures and follows the neighbour table until ctx is done, then
// closes its sockets, waits for its goroutines, closes Events and returns
// nil. It returns an error at once when an interface cannot be captured
// on (it does not exist, CAP_NET_RAW is missing); later failures (an
// interface going away, a neighbour table overrun) are logged and retried.
// Run may be called only once.
func (l *Learner) Run(ctx context.Context) error {
	if !l.running.CompareAndSwap(false, true) {
		return errors.New("neighbor: Run called more than once")
	}
	defer close(l.events)
	var conns []*capture.Conn
	if !l.cfg.NoCapture {
		for _, name := range l.cfg.Interfaces {
			c, err := l.open(name)
			if err != nil {
				for _, c := range conns {
					c.Close()
				}
				return err
			}
			conns = append(conns, c)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred below runs first)
	defer cancel()
	for i, c := range conns {
		wg.Go(func() { l.capture(ctx, l.cfg.Interfaces[i], c) })
	}
	wg.Go(func() { l.follow(ctx) })
	l.log.Info("learning neighbours", "interfaces", l.cfg.Interfaces, "netns", l.cfg.NetNS,
		"capture", !l.cfg.NoCapture, "netlink", !l.cfg.NoNetlink)

	sweep := time.NewTicker(l.cfg.SweepInterval)
	defer sweep.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case s := <-l.frames:
			l.observe(s)
		case k := <-l.kernel:
			l.apply(k)
		case <-sweep.C:
			l.mu.Lock()
			l.t.sweep(l.cfg.Now())
			l.mu.Unlock()
		case <-l.wake:
		}
		l.flush(ctx)
	}
}

// observe applies a frame's claims.
func (l *Learner) observe(s sighting) {
	src, tentative := s.msg.Source(), s.msg.Tentative()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	for _, a := range s.msg.Claims() {
		l.t.observe(claim{mac: s.msg.MAC, addr: a, source: src, tentative: tentative, at: s.at, iface: s.iface}, now)
	}
}

// flush sends the events the table produced, in order, without holding
// the lock (the consumer may call the learner's methods meanwhile).
func (l *Learner) flush(ctx context.Context) {
	for {
		l.mu.Lock()
		evs := l.t.out
		l.t.out = nil
		l.mu.Unlock()
		if len(evs) == 0 {
			return
		}
		for _, ev := range evs {
			if l.log.Enabled(ctx, slog.LevelDebug) {
				l.log.Debug("neighbour event", "kind", string(ev.Kind), "mac", ev.MAC.String(), "addr", ev.Addr.String(),
					"source", string(ev.Source), "interface", ev.Interface, "port", ev.Port, "reason", ev.Reason)
			}
			select {
			case l.events <- ev:
			case <-ctx.Done():
				return
			}
		}
	}
}

// poke wakes Run to send the events a control method produced.
func (l *Learner) poke() {
	select {
	case l.wake <- struct{}{}:
	default:
	}
}

// open opens a packet socket on iface with the filter attached before it
// is bound, so that nothing else is ever queued.
func (l *Learner) open(iface string) (*capture.Conn, error) {
	c, err := capture.Open(iface, capture.Config{
		NetNS:       l.cfg.NetNS,
		Filter:      capture.Filter{Program: l.filter, Direction: capture.Incoming},
		Promiscuous: l.cfg.Promiscuous,
	})
	if err != nil {
		return nil, fmt.Errorf("neighbor: %w", err)
	}
	return c, nil
}

// capture reads and parses frames from one interface until ctx is done,
// reopening the socket when it fails. It owns conn and closes it.
func (l *Learner) capture(ctx context.Context, iface string, conn *capture.Conn) {
	r := capture.Reader{
		Interface: iface,
		Open:      func() (*capture.Conn, error) { return l.open(iface) },
		Handle:    func(f []byte, info capture.Info) { l.frame(iface, f, info) },
		BufLen:    captureLen,
		Logger:    l.log,
	}
	r.Run(ctx, conn)
}

// frame parses a captured frame and queues what it claims.
func (l *Learner) frame(iface string, f []byte, info capture.Info) {
	l.frameCount.Add(1)
	s := sighting{iface: iface, at: l.cfg.Now()}
	switch err := parse(f, &s.msg, !info.ChecksumPartial); {
	case info.Truncated || errors.Is(err, ErrMalformed):
		l.malformed.Add(1)
		return
	case err != nil:
		l.notNeighbor.Add(1)
		return
	case s.msg.NumAddrs == 0:
		return
	}
	select {
	case l.frames <- s:
	default:
		l.queueDrops.Add(1)
	}
}

// Addrs returns the addresses mac holds, in address order.
func (l *Learner) Addrs(mac net.HardwareAddr) []Binding {
	k, ok := keyOf(mac)
	if !ok {
		return nil
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.addrs(k)
}

// Holder returns the binding of addr, if a MAC holds it.
func (l *Learner) Holder(addr netip.Addr) (Binding, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	b := l.t.owners[addr.Unmap()]
	if b == nil {
		return Binding{}, false
	}
	return l.t.bindingOf(b), true
}

// Pin binds addr to mac for good (an administrator's static binding): it
// never ages and never moves, and another MAC claiming it is a conflict. A
// MAC that held it without a pin loses it (an expired event). Pinning an
// address pinned to another MAC is an error. Pinned addresses need not be
// inside the LAN prefixes, and do not count against the bounds.
func (l *Learner) Pin(mac net.HardwareAddr, addr netip.Addr) error {
	k, ok := keyOf(mac)
	if !ok {
		return fmt.Errorf("neighbor: %v is not a unicast MAC", mac)
	}
	defer l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.pin(k, addr.Unmap(), l.cfg.Now())
}

// Restore is a sighting the caller remembered from before a restart: mac
// held addr when it was last seen at seen. It goes through the rules of
// any sighting (LAN prefixes, conflicts, bounds, rate limits) and ages from
// seen, so an address not seen again expires as it would have; one seen
// longer ago than its TTL is ignored. A learned event follows, as for any
// new address.
func (l *Learner) Restore(mac net.HardwareAddr, addr netip.Addr, seen time.Time) {
	k, ok := keyOf(mac)
	if !ok {
		return
	}
	defer l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	if seen.IsZero() {
		return
	}
	l.t.observe(claim{mac: k, addr: addr.Unmap(), source: SourceRestored, at: seen}, now)
}

// Unpin undoes Pin: the address becomes an ordinary learned one, aging from
// when it was last seen (one never seen is forgotten at once).
func (l *Learner) Unpin(mac net.HardwareAddr, addr netip.Addr) {
	k, ok := keyOf(mac)
	if !ok {
		return
	}
	defer l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.unpin(k, addr.Unmap(), l.cfg.Now())
}

// Release tells the learner that addr was freed (its DHCP lease ended, it
// moved): its holder loses it (an expired event) and another MAC may claim
// it. It reports whether a MAC held it; a pinned address is not released.
func (l *Learner) Release(addr netip.Addr) bool {
	defer l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.t.release(addr.Unmap(), l.cfg.Now())
}

// BindOnFirstUse marks mac (on) as bound without addresses: the first
// address of each family it is seen using from now on (in ARP or
// neighbour discovery, or the kernel's table; not a link-local address,
// not one it only probes) is pinned to it, with the usual checks (inside
// the prefixes, not held by another MAC). The event (learned or
// refreshed) says Pinned. off cancels what is still waiting.
func (l *Learner) BindOnFirstUse(mac net.HardwareAddr, on bool) error {
	return l.BindOnFirstUseOf(mac, on, on)
}

// BindOnFirstUseOf is BindOnFirstUse per family: the first IPv4 address
// mac uses is pinned when v4 is true, the first IPv6 address when v6 is;
// a family set false stops waiting.
func (l *Learner) BindOnFirstUseOf(mac net.HardwareAddr, v4, v6 bool) error {
	return l.mark(mac, v4 || v6, func(d *device) { d.firstUse = [2]bool{v4, v6} })
}

// Keep marks mac (on) as a device the caller enforces: it is never evicted
// to make room for others, and the global rate limit does not apply to it
// (its own does), so that a flood of other MACs cannot make it lose its
// addresses.
func (l *Learner) Keep(mac net.HardwareAddr, on bool) error {
	return l.mark(mac, on, func(d *device) { d.keep = on })
}

// mark applies set to mac's device, which it adds when on.
func (l *Learner) mark(mac net.HardwareAddr, on bool, set func(*device)) error {
	k, ok := keyOf(mac)
	if !ok {
		return fmt.Errorf("neighbor: %v is not a unicast MAC", mac)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	d := l.t.devs[k]
	if d == nil && !on {
		return nil
	}
	if d == nil {
		d = l.t.device(k, l.cfg.Now())
	}
	set(d)
	return nil
}

// SetPrefixes replaces the LAN prefixes; addresses learned outside the new
// ones expire (pinned and link-local addresses stay).
func (l *Learner) SetPrefixes(prefixes []netip.Prefix) {
	defer l.poke()
	l.mu.Lock()
	defer l.mu.Unlock()
	l.t.setPrefixes(prefixes, l.cfg.Now())
}

// Stats returns the counters.
func (l *Learner) Stats() Stats {
	l.mu.Lock()
	s := l.t.stats()
	l.mu.Unlock()
	s.Frames = l.frameCount.Load()
	s.Malformed = l.malformed.Load()
	s.NotNeighbor = l.notNeighbor.Load()
	s.QueueDrops = l.queueDrops.Load()
	s.KernelUpdates = l.kernelUpdates.Load()
	s.KernelResyncs = l.kernelResyncs.Load()
	return s
}
