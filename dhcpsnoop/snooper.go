package dhcpsnoop

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

	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/packet/capture"
	"github.com/vishvananda/netlink"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// Config configures a Snooper. Zero values take the defaults in brackets.
type Config struct {
	// Interfaces are the LAN interfaces to capture on (a bridge such as
	// br-lan sees every port, and the gateway's own server's replies).
	Interfaces []string
	// NetNS, when set, is the name of a network namespace
	// (/var/run/netns/NAME) to capture in; the daemon's own otherwise.
	NetNS string
	// Capture is where frames are captured [CaptureBridge]; see Capture.
	Capture Capture
	// PortScanInterval is how often the ports of a bridge are listed to
	// capture on new ones and stop on those that left (CapturePorts) [2s].
	PortScanInterval time.Duration
	// LeaseFile, when set, is a DHCP server's lease database in dnsmasq's
	// format, read once when Run starts: the leases it holds become bound
	// events (Event.Reason says where they came from), so that devices
	// that joined while the snooper was not running are known before their
	// next renewal. It names no MUD URL: dnsmasq does not store option 161.
	LeaseFile string
	// FrameQueue is the number of captured frames waiting to be handled
	// [1024], and again as many server confirmations (ACK, Reply), which
	// wait apart; beyond it frames are dropped and counted
	// (Stats.QueueDrops), so a flood costs bounded memory and never blocks
	// capture. A confirmation dropped is a lease mudd does not see until
	// the device renews: the confirmations of a burst of FrameQueue
	// arrivals all fit.
	FrameQueue int
	// EventBuffer is the capacity of the Events channel [256].
	EventBuffer int
	// SweepInterval is how often leases are checked for expiry [1s].
	SweepInterval time.Duration
	// NeighbourInterval is how often the IPv6 neighbour table is read to
	// learn self-configured addresses [5s]; negative disables it.
	NeighbourInterval time.Duration
	// Tracker bounds per-device and overall state.
	Tracker TrackerConfig
	// Logger receives operational logs [slog.Default()]. Events are logged
	// at debug level only: they carry MUD URLs, which reveal device types
	// (RFC 8520 §16) and belong to the event consumer.
	Logger *slog.Logger
	// Now is the clock [time.Now]; tests move it to expire leases.
	Now func() time.Time
}

// Snooper captures DHCP on the configured interfaces and emits lease events.
type Snooper struct {
	cfg     Config
	log     *slog.Logger
	filter  []bpf.Instruction
	events  chan Event
	frames  chan frame
	confirm chan frame // server confirmations (ACK, Reply): admitted apart
	seq     atomic.Uint64
	c       *counters
	tracker *Tracker    // owned by the Run goroutine
	ports   *portFinder // owned by the Run goroutine; nil when unavailable
	running atomic.Bool
	// capturing is closed once Run has opened every capture socket: a
	// frame sent after that is seen.
	capturing chan struct{}
}

// frame is one captured frame; seq is its capture order across interfaces.
type frame struct {
	iface string
	data  []byte
	seq   uint64
}

// New validates cfg and returns a Snooper. It opens nothing: Run does.
func New(cfg Config) (*Snooper, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("dhcpsnoop: no interfaces configured")
	}
	seen := map[string]bool{}
	for _, name := range cfg.Interfaces {
		if name == "" || len(name) >= unix.IFNAMSIZ {
			return nil, fmt.Errorf("dhcpsnoop: invalid interface name %q", name)
		}
		if seen[name] {
			return nil, fmt.Errorf("dhcpsnoop: interface %q listed twice", name)
		}
		seen[name] = true
	}
	if cfg.FrameQueue <= 0 {
		cfg.FrameQueue = 1024
	}
	if cfg.EventBuffer <= 0 {
		cfg.EventBuffer = 256
	}
	if cfg.SweepInterval <= 0 {
		cfg.SweepInterval = time.Second
	}
	switch cfg.Capture {
	case "":
		cfg.Capture = CaptureBridge
	case CaptureBridge, CapturePorts, CapturePromiscuous:
	default:
		return nil, fmt.Errorf("dhcpsnoop: unknown capture mode %q (want %s, %s or %s)", cfg.Capture, CaptureBridge, CapturePorts, CapturePromiscuous)
	}
	if cfg.PortScanInterval <= 0 {
		cfg.PortScanInterval = 2 * time.Second
	}
	if cfg.NeighbourInterval == 0 {
		cfg.NeighbourInterval = 5 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	filter, err := DHCPFilter()
	if err != nil {
		return nil, err
	}
	c := &counters{}
	return &Snooper{
		cfg:     cfg,
		log:     cfg.Logger.With("component", "dhcpsnoop"),
		filter:  filter,
		events:  make(chan Event, cfg.EventBuffer),
		frames:  make(chan frame, cfg.FrameQueue),
		confirm: make(chan frame, cfg.FrameQueue),
		c:       c,
		tracker: newTracker(cfg.Tracker, c),

		capturing: make(chan struct{}),
	}, nil
}

// Events delivers events in order. It is closed when Run returns. The
// consumer must keep reading: Run waits for it (back-pressure lands on the
// capture queue, which drops and counts, rather than on lost events).
func (s *Snooper) Events() <-chan Event { return s.events }

// Capturing is closed once Run has opened its capture sockets on the
// configured interfaces; frames sent before that may not be seen. It is
// never closed when Run fails to open them.
func (s *Snooper) Capturing() <-chan struct{} { return s.capturing }

// Stats returns the counters. Safe to call from any goroutine.
func (s *Snooper) Stats() Stats { return s.c.snapshot() }

// Run captures until ctx is done, then closes its sockets, waits for its
// goroutines, closes Events and returns nil. It returns an error at once when
// an interface cannot be opened (it does not exist, or CAP_NET_RAW is
// missing); later capture errors (an interface going away) are logged and
// retried with back-off. Run may be called only once.
func (s *Snooper) Run(ctx context.Context) error {
	if !s.running.CompareAndSwap(false, true) {
		return errors.New("dhcpsnoop: Run called more than once")
	}
	defer close(s.events)
	srcs, bridges, err := s.sources()
	if err != nil {
		return err
	}
	conns := make([]*capture.Conn, len(srcs))
	for i, src := range srcs {
		c, err := s.open(src)
		if err != nil {
			for _, c := range conns[:i] {
				c.Close()
			}
			return err
		}
		conns[i] = c
	}
	close(s.capturing)
	var nl *netlink.Handle
	if s.cfg.NeighbourInterval > 0 {
		err := netns.Do(s.cfg.NetNS, func() (err error) {
			nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
			return err
		})
		if err != nil {
			// Degraded, not fatal: DHCP snooping still works.
			s.log.Warn("neighbour table unavailable; SLAAC addresses will not be learned", "err", err)
			nl = nil
		} else {
			defer nl.Close()
		}
	}

	if pf, err := newPortFinder(s.cfg.NetNS, s.c); err != nil {
		// Degraded, not fatal: events then name no port, and the
		// manager shares its work as if every device were on one.
		s.log.Warn("bridge ports unavailable; events will name no port", "err", err)
	} else {
		s.ports = pf
		defer pf.close()
	}

	ctx, cancel := context.WithCancel(ctx)
	var wg sync.WaitGroup
	defer wg.Wait() // after cancel (deferred below runs first)
	defer cancel()
	for i, src := range srcs {
		wg.Go(func() { s.capture(ctx, src, conns[i]) })
	}
	for _, br := range bridges {
		wg.Go(func() { s.followPorts(ctx, br) })
	}
	s.log.Info("snooping DHCP", "interfaces", s.cfg.Interfaces, "netns", s.cfg.NetNS, "capture", string(s.cfg.Capture))
	if s.cfg.LeaseFile != "" {
		s.emit(ctx, s.readLeaseFile(s.cfg.Now()))
	}
	s.emit(ctx, s.present(s.cfg.Now()))

	sweep := time.NewTicker(s.cfg.SweepInterval)
	defer sweep.Stop()
	var neighC <-chan time.Time
	if nl != nil {
		tk := time.NewTicker(s.cfg.NeighbourInterval)
		defer tk.Stop()
		neighC = tk.C
	}
	// Confirmations have a queue of their own so that a flood of requests
	// cannot crowd them out (they carry the leases and nothing resends
	// them), but they are handled in capture order: a client's REQUEST and
	// the server's ACK often sit in the queues together, and the ACK
	// handled first would find no request to confirm. held is the oldest
	// ordinary frame taken out of its queue and not yet handled.
	var held *frame
	confirm := func(f frame) {
		for {
			if held == nil {
				select {
				case g := <-s.frames:
					held = &g
				default:
				}
			}
			if held == nil || held.seq > f.seq {
				break
			}
			s.handle(ctx, *held)
			held = nil
		}
		s.handle(ctx, f)
	}
	for {
		select {
		case f := <-s.confirm:
			confirm(f)
			continue
		default:
		}
		if held != nil {
			s.handle(ctx, *held)
			held = nil
			continue
		}
		select {
		case <-ctx.Done():
			return nil
		case f := <-s.confirm:
			confirm(f)
		case f := <-s.frames:
			held = &f // handled at the top, after any earlier confirmation
		case <-sweep.C:
			s.emit(ctx, s.tracker.Expire(s.cfg.Now()))
		case <-neighC:
			s.learn(ctx, nl)
		}
	}
}

func (s *Snooper) handle(ctx context.Context, f frame) {
	evs, err := s.tracker.HandleFrame(f.data, f.iface, s.cfg.Now())
	if err != nil {
		s.log.Debug("frame not handled", "interface", f.iface, "err", err)
	}
	s.emit(ctx, evs)
}

func (s *Snooper) emit(ctx context.Context, evs []Event) {
	for _, ev := range evs {
		if s.ports != nil {
			from := ev.src
			if from == nil {
				from = ev.MAC
			}
			ev.Port = s.ports.port(ev.Interface, from, s.cfg.Now())
		}
		if s.log.Enabled(ctx, slog.LevelDebug) {
			s.log.Debug("dhcp event", "kind", string(ev.Kind), "mac", ev.MAC.String(),
				"interface", ev.Interface, "port", ev.Port, "family", ev.Family, "addrs", addrStrings(ev.Addresses()),
				"mud_url", ev.MUDURL, "hostname", ev.Hostname, "reason", ev.Reason)
		}
		select {
		case s.events <- ev:
		case <-ctx.Done():
			return
		}
	}
}

// open opens a packet socket on src's interface, inside the configured
// namespace, with the DHCP filter attached before bind so nothing else is
// ever queued.
func (s *Snooper) open(src source) (*capture.Conn, error) {
	c, err := capture.Open(src.name, capture.Config{
		NetNS:       s.cfg.NetNS,
		Filter:      capture.Filter{Program: s.filter, Direction: src.dir},
		Promiscuous: s.cfg.Capture == CapturePromiscuous,
	})
	if err != nil {
		return nil, fmt.Errorf("dhcpsnoop: %w", err)
	}
	return c, nil
}

// capture reads frames from one interface into the shared queue. It owns
// conn (and any replacement) and closes it before returning.
func (s *Snooper) capture(ctx context.Context, src source, conn *capture.Conn) {
	iface := src.name
	buf := make([]byte, captureLen+4) // room for a VLAN tag the kernel held apart
	backoff := time.Second
	for {
		stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
		err := s.readLoop(ctx, src.iface, conn, buf)
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		// The interface went away or the socket broke: reopen, since
		// bridges are recreated by network managers at runtime.
		s.log.Warn("capture failed; reopening", "interface", iface, "err", err, "retry_in", backoff)
		for {
			select {
			case <-ctx.Done():
				return
			case <-time.After(backoff):
			}
			backoff = min(2*backoff, 30*time.Second)
			if conn, err = s.open(src); err == nil {
				s.log.Info("capture reopened", "interface", iface)
				backoff = time.Second
				break
			}
			s.log.Warn("reopening capture failed", "interface", iface, "err", err, "retry_in", backoff)
		}
	}
}

func (s *Snooper) readLoop(ctx context.Context, iface string, conn *capture.Conn, buf []byte) error {
	for {
		f, _, err := conn.ReadFrame(buf)
		if err != nil {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				continue
			}
			return err
		}
		q := s.frames
		if isConfirmation(f) {
			q = s.confirm
		}
		select {
		case q <- frame{iface: iface, data: append([]byte(nil), f...), seq: s.seq.Add(1)}:
		default:
			s.c.queueDrops.Add(1)
		}
	}
}

// learn reads the IPv6 neighbour table of each interface and adds the
// global addresses of devices with a lease to their binding.
func (s *Snooper) learn(ctx context.Context, nl *netlink.Handle) {
	now := s.cfg.Now()
	for _, name := range s.cfg.Interfaces {
		link, err := nl.LinkByName(name)
		if err != nil {
			s.c.neighErrs.Add(1)
			continue
		}
		neighs, err := nl.NeighList(link.Attrs().Index, netlink.FAMILY_V6)
		if err != nil {
			s.c.neighErrs.Add(1)
			continue
		}
		byMAC := map[hwKey][]netip.Addr{}
		for _, n := range neighs {
			if n.State&(netlink.NUD_FAILED|netlink.NUD_INCOMPLETE|netlink.NUD_NOARP) != 0 {
				continue
			}
			key, ok := keyOf(n.HardwareAddr)
			if !ok || !s.tracker.Bound(n.HardwareAddr) {
				continue
			}
			if a, ok := netip.AddrFromSlice(n.IP); ok && len(byMAC[key]) < maxLearnedPerDevice {
				byMAC[key] = append(byMAC[key], a)
			}
		}
		for key, addrs := range byMAC {
			s.emit(ctx, s.tracker.Learn(key.mac(), addrs, now))
		}
	}
}
