package lanwatch

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Config configures a Watcher.
type Config struct {
	// NetNSFd is an open network namespace handle to watch in; <= 0 means
	// the current namespace.
	NetNSFd int
	// Interfaces are the LAN interfaces (mudd.yaml interfaces): bridges,
	// or plain interfaces.
	Interfaces []string
	// Coalesce is how long after the first of a burst of changes the
	// Watcher reads the kernel's state again (default 200 ms): one
	// PrefixChange and one Report for the burst.
	Coalesce time.Duration
	// Recheck is how often the bridge ports are inspected again even
	// without a link change (default 1 minute; negative: never): the
	// addresses learnt behind ports, an access point's configuration and
	// tc filters change without a link notification.
	Recheck time.Duration
	// HostapdConfigs are globs of hostapd configuration files read for
	// ap_isolate (nil: DefaultHostapdConfigs; empty: none).
	HostapdConfigs []string
	// DebugFS is where debugfs is mounted (default DefaultDebugFS), for
	// mac80211's client isolation flag.
	DebugFS string
	// ReadBuffer is the notification socket's receive buffer in bytes
	// (default 1 MiB). When it overflows, the Watcher subscribes again
	// and reads everything anew.
	ReadBuffer int
	// Logger receives overruns and failed reads (default slog.Default()).
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultCoalesce   = 200 * time.Millisecond
	DefaultRecheck    = time.Minute
	DefaultReadBuffer = 1 << 20
	retryAfterError   = time.Second
)

// Watcher follows the LAN interfaces of one network namespace: their
// prefixes, and what their bridge ports mean for lateral enforcement.
type Watcher struct {
	cfg   Config
	log   *slog.Logger
	iso   isolationSource
	rt    rtnl
	wifi  nl80211
	mu    sync.Mutex // guards sub, prefixes, report, closed
	sub   *netlink.Conn
	state struct {
		prefixes []netip.Prefix
		report   Report
		lan      map[int]bool // ifindexes of the LAN interfaces
	}
	closed   bool
	overruns atomic.Uint64

	changes chan PrefixChange
	reports chan Report
	recheck chan struct{}
	done    chan struct{}
	running atomic.Bool
	once    sync.Once

	beforeRecv func() // tests: runs before each read of the notification socket
}

// New subscribes to the namespace's link and address notifications, then
// reads the prefixes and inspects the bridge ports once, so that Prefixes
// and Report answer at once. Call Run to follow changes.
func New(cfg Config) (*Watcher, error) {
	if len(cfg.Interfaces) == 0 {
		return nil, errors.New("lanwatch: no LAN interfaces to watch")
	}
	if cfg.Coalesce <= 0 {
		cfg.Coalesce = DefaultCoalesce
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = DefaultRecheck
	}
	if cfg.HostapdConfigs == nil {
		cfg.HostapdConfigs = DefaultHostapdConfigs
	}
	if cfg.DebugFS == "" {
		cfg.DebugFS = DefaultDebugFS
	}
	if cfg.ReadBuffer <= 0 {
		cfg.ReadBuffer = DefaultReadBuffer
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	w := &Watcher{cfg: cfg, log: cfg.Logger, iso: isolationSource{debugFS: cfg.DebugFS, hostapd: cfg.HostapdConfigs},
		changes: make(chan PrefixChange), reports: make(chan Report), recheck: make(chan struct{}, 1), done: make(chan struct{})}
	var err error
	if w.sub, err = w.subscribe(); err != nil {
		return nil, err
	}
	if w.rt.c, err = dialNetlink(cfg.NetNSFd, unix.NETLINK_ROUTE, 0); err != nil {
		w.sub.Close()
		return nil, fmt.Errorf("lanwatch: opening rtnetlink: %w", err)
	}
	if w.wifi.c, err = dialNetlink(cfg.NetNSFd, unix.NETLINK_GENERIC, 0); err != nil {
		w.sub.Close()
		w.rt.c.Close()
		return nil, fmt.Errorf("lanwatch: opening generic netlink: %w", err)
	}
	prefixes, report, lan, err := w.read(true)
	if err != nil {
		w.Close()
		return nil, fmt.Errorf("lanwatch: %w", err)
	}
	w.state.prefixes, w.state.report, w.state.lan = prefixes, report, lan
	return w, nil
}

// subscribe opens a socket joined to the link and address notification
// groups (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR).
func (w *Watcher) subscribe() (*netlink.Conn, error) {
	c, err := dialNetlink(w.cfg.NetNSFd, unix.NETLINK_ROUTE, unix.RTMGRP_LINK|unix.RTMGRP_IPV4_IFADDR|unix.RTMGRP_IPV6_IFADDR)
	if err != nil {
		return nil, fmt.Errorf("lanwatch: subscribing to link and address notifications: %w", err)
	}
	if err := setReadBuffer(c, w.cfg.ReadBuffer); err != nil {
		c.Close()
		return nil, fmt.Errorf("lanwatch: setting the receive buffer to %d bytes: %w", w.cfg.ReadBuffer, err)
	}
	return c, nil
}

// setReadBuffer sets the socket's receive buffer with SO_RCVBUFFORCE (with
// CAP_NET_ADMIN, net.core.rmem_max does not limit it), else SO_RCVBUF.
func setReadBuffer(c *netlink.Conn, size int) error {
	raw, err := c.SyscallConn()
	if err != nil {
		return err
	}
	var serr error
	err = raw.Control(func(fd uintptr) {
		if serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); serr != nil {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, size)
		}
	})
	return errors.Join(err, serr)
}

// Prefixes are the LAN interfaces' prefixes as last read: IPv4 and IPv6
// (global and unique local), not link-local; masked, sorted, each once.
func (w *Watcher) Prefixes() []netip.Prefix {
	w.mu.Lock()
	defer w.mu.Unlock()
	return slices.Clone(w.state.prefixes)
}

// Report is the last inspection of the LAN interfaces and their ports.
func (w *Watcher) Report() Report {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.state.report
}

// Changes delivers each change of Prefixes. Changes that happen while the
// receiver is not reading are merged into one (PrefixChange). It is closed
// when Run returns.
func (w *Watcher) Changes() <-chan PrefixChange { return w.changes }

// Reports delivers the Report whenever it says something new; reports the
// receiver did not read are replaced by the newest. It is closed when Run
// returns.
func (w *Watcher) Reports() <-chan Report { return w.reports }

// Overruns counts the times notifications were lost because the receive
// buffer overflowed; each time the Watcher subscribed again and read
// everything anew.
func (w *Watcher) Overruns() uint64 { return w.overruns.Load() }

// Recheck makes Run read the prefixes and inspect the ports now (a
// configuration reload, a request from an administrator).
func (w *Watcher) Recheck() {
	select {
	case w.recheck <- struct{}{}:
	default:
	}
}

// Close stops Run and closes the sockets.
func (w *Watcher) Close() error {
	var err error
	w.once.Do(func() {
		close(w.done)
		w.mu.Lock()
		w.closed = true
		err = errors.Join(w.sub.Close(), w.rt.c.Close(), w.wifi.c.Close())
		w.mu.Unlock()
	})
	return err
}

// notice is what a batch of notifications touched.
type notice struct {
	links   bool  // a link changed (added, removed, flags, bridge port flags)
	addrsOn []int // the interfaces whose addresses changed
	overrun bool  // notifications were lost; everything must be read again
}

// Run follows the notifications until ctx ends (it returns ctx.Err()) or
// Close is called (it returns nil), and closes Changes and Reports when it
// returns. Call it once.
func (w *Watcher) Run(ctx context.Context) error {
	if !w.running.CompareAndSwap(false, true) {
		return errors.New("lanwatch: Run called twice")
	}
	defer close(w.changes)
	defer close(w.reports)
	ctx, cancel := context.WithCancel(ctx)
	// Cancelling ends the read in progress: the receiving goroutine then
	// returns.
	context.AfterFunc(ctx, func() {
		w.mu.Lock()
		defer w.mu.Unlock()
		_ = w.sub.SetReadDeadline(time.Unix(1, 0))
	})
	notices := make(chan notice)
	readErr := make(chan error, 1)
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		readErr <- w.receive(ctx, notices)
	}()
	defer func() {
		cancel()
		wg.Wait()
	}()

	var (
		prefixesDirty, portsDirty bool
		timer                     = time.NewTimer(0)
		armed                     bool
		pendingChange             *PrefixChange
		pendingReport             *Report
		tick                      <-chan time.Time
	)
	<-timer.C
	if w.cfg.Recheck > 0 {
		t := time.NewTicker(w.cfg.Recheck)
		defer t.Stop()
		tick = t.C
	}
	arm := func(d time.Duration) {
		if !armed {
			timer.Reset(d)
			armed = true
		}
	}
	refresh := func() {
		if err := w.refresh(prefixesDirty, portsDirty, &pendingChange, &pendingReport); err != nil {
			w.log.Warn("lanwatch: reading the LAN interfaces; trying again", "err", err, "in", retryAfterError)
			arm(retryAfterError)
			return
		}
		prefixesDirty, portsDirty = false, false
	}
	for {
		var changes chan<- PrefixChange
		var change PrefixChange
		if pendingChange != nil {
			changes, change = w.changes, *pendingChange
		}
		var reports chan<- Report
		var report Report
		if pendingReport != nil {
			reports, report = w.reports, *pendingReport
		}
		select {
		case <-ctx.Done():
			if w.isClosed() {
				return nil
			}
			return ctx.Err()
		case <-w.done:
			return nil
		case err := <-readErr:
			if w.isClosed() {
				return nil
			}
			if ctx.Err() != nil {
				return ctx.Err()
			}
			return err
		case n := <-notices:
			if n.overrun || n.links {
				prefixesDirty, portsDirty = true, true
			}
			if !prefixesDirty && w.onLAN(n.addrsOn) {
				prefixesDirty = true
			}
			if prefixesDirty || portsDirty {
				arm(w.cfg.Coalesce)
			}
		case <-timer.C:
			armed = false
			refresh()
		case <-w.recheck:
			prefixesDirty, portsDirty = true, true
			refresh()
		case <-tick:
			prefixesDirty, portsDirty = true, true
			refresh()
		case changes <- change:
			pendingChange = nil
		case reports <- report:
			pendingReport = nil
		}
	}
}

func (w *Watcher) isClosed() bool {
	select {
	case <-w.done:
		return true
	default:
		return false
	}
}

func (w *Watcher) onLAN(indexes []int) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, i := range indexes {
		if w.state.lan[i] {
			return true
		}
	}
	return false
}

// refresh reads the kernel's state again and records what changed in the
// pending change and report.
func (w *Watcher) refresh(prefixesDirty, portsDirty bool, change **PrefixChange, report **Report) error {
	prefixes, rep, lan, err := w.read(portsDirty)
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.state.lan = lan
	if prefixesDirty && !slices.Equal(prefixes, w.state.prefixes) {
		old := w.state.prefixes
		if *change != nil {
			old = (*change).Old
		}
		w.state.prefixes = prefixes
		if slices.Equal(old, prefixes) {
			*change = nil // changed and changed back before anyone looked
		} else {
			*change = &PrefixChange{Old: old, New: slices.Clone(prefixes)}
		}
	}
	if portsDirty && !rep.Equal(w.state.report) {
		w.state.report = rep
		*report = &rep
	}
	return nil
}

// receive reads notifications and hands Run what they touched, until ctx
// ends or the socket is closed. On an overrun it subscribes again: the new
// socket misses nothing that happens after it is open, and Run reads
// everything anew after that.
func (w *Watcher) receive(ctx context.Context, out chan<- notice) error {
	for {
		if w.beforeRecv != nil {
			w.beforeRecv()
		}
		w.mu.Lock()
		sub := w.sub
		w.mu.Unlock()
		msgs, err := sub.Receive()
		var n notice
		switch {
		case ctx.Err() != nil || w.isClosed():
			return nil
		case errors.Is(err, unix.ENOBUFS):
			if err := w.resubscribe(ctx); err != nil {
				return err
			}
			w.overruns.Add(1)
			w.log.Warn("lanwatch: link and address notifications were lost (receive buffer overflow); subscribed again, reading everything anew")
			n.overrun = true
		case err != nil:
			return fmt.Errorf("lanwatch: reading notifications: %w", err)
		}
		for _, m := range msgs {
			switch m.Header.Type {
			case unix.RTM_NEWLINK, unix.RTM_DELLINK:
				n.links = true
			case unix.RTM_NEWADDR, unix.RTM_DELADDR:
				if a, ok, _ := decodeAddr(m.Data); ok {
					n.addrsOn = append(n.addrsOn, a.index)
				}
			}
		}
		if !n.links && !n.overrun && len(n.addrsOn) == 0 {
			continue
		}
		select {
		case out <- n:
		case <-ctx.Done():
			return nil
		case <-w.done:
			return nil
		}
	}
}

func (w *Watcher) resubscribe(ctx context.Context) error {
	c, err := w.subscribe()
	if err != nil {
		return err
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || ctx.Err() != nil {
		return errors.Join(c.Close(), ctx.Err())
	}
	old := w.sub
	w.sub = c
	return old.Close()
}

// read lists the links and addresses and, with ports, inspects the bridge
// ports.
func (w *Watcher) read(ports bool) ([]netip.Prefix, Report, map[int]bool, error) {
	links, err := w.rt.links()
	if err != nil {
		return nil, Report{}, nil, err
	}
	byName := make(map[string]link, len(links))
	for _, l := range links {
		byName[l.name] = l
	}
	lan := map[int]bool{}
	for _, name := range w.cfg.Interfaces {
		if l, ok := byName[name]; ok {
			lan[l.index] = true
		}
	}
	addrs, err := w.rt.addrs()
	if err != nil {
		return nil, Report{}, nil, err
	}
	prefixes := lanPrefixes(addrs, lan)
	if !ports {
		return prefixes, Report{}, lan, nil
	}
	facts, err := w.gather(links, byName)
	if err != nil {
		return nil, Report{}, nil, err
	}
	var rep Report
	for _, f := range facts {
		rep.LANs = append(rep.LANs, Decide(f))
	}
	return prefixes, rep, lan, nil
}

// gather collects the facts about each LAN interface and its ports.
func (w *Watcher) gather(links map[int]link, byName map[string]link) ([]LANFacts, error) {
	brports, err := w.rt.bridgePorts()
	if err != nil {
		return nil, err
	}
	learnt, err := w.rt.learnt()
	if err != nil {
		return nil, err
	}
	var out []LANFacts
	for _, name := range w.cfg.Interfaces {
		l, ok := byName[name]
		f := LANFacts{Name: name, Exists: ok, Bridge: ok && l.kind == "bridge"}
		if f.Bridge {
			for idx, bp := range brports {
				pl, ok := links[idx]
				if !ok || bp.master != l.index {
					continue
				}
				pf, err := w.port(pl, bp, learnt[idx])
				if err != nil {
					return nil, err
				}
				f.Ports = append(f.Ports, pf)
			}
		}
		out = append(out, f)
	}
	return out, nil
}

func (w *Watcher) port(l link, bp brport, macs int) (PortFacts, error) {
	pf := PortFacts{Name: l.name, Index: l.index, LinkKind: l.kind, Ether: l.ether, SwitchID: l.switchID, XDP: l.xdp,
		Isolated: bp.isolated, Hairpin: bp.hairpin, Learning: bp.learning, UnicastFlood: bp.unicastFlood,
		ProxyARP: bp.proxyARP, ProxyARPWiFi: bp.proxyARPWiFi, MACs: macs}
	var err error
	if pf.TCIngress, err = w.rt.ingressFilters(l.index); err != nil {
		return pf, err
	}
	if pf.WiFi.IfType, err = w.wifi.ifType(l.index); err != nil {
		return pf, err
	}
	if t := pf.WiFi.IfType; t == unix.NL80211_IFTYPE_AP || t == unix.NL80211_IFTYPE_P2P_GO {
		pf.WiFi.Isolate, pf.WiFi.IsolateSource = w.iso.isolation(l.name)
	}
	return pf, nil
}
