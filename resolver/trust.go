package resolver

// Which snooped answers may grant. The capture sees every DNS answer the
// gateway sends out of a LAN interface: its own resolver's, and those it
// routes from any DNS server a device may reach (a MUD file or an override
// permitting port 53 somewhere, DNS over TCP, a server an attacker runs).
// Only the first kind says what the device's names resolve to as far as
// the gateway is concerned; the others are the device's own business. So
// an answer adds addresses only when its IP source is trusted:
//
//   - an address of a captured interface (the gateway itself answering on
//     the LAN: nothing the gateway routes carries these as its source,
//     unless its own NAT rules rewrite routed traffic to them), listed when
//     Run starts and followed through netlink address events;
//   - loopback, and the address of Config.Server;
//   - Config.TrustedSources.
//
// Any other answer is still delivered to the device (a held one is released
// at once): DNS is not ours to block, only its use as a grant. It is
// counted (Stats.RefusedAnswers) and logged, at most refusedLogBurst lines
// per refusedLogWindow.

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmud/mud/internal/netns"
	vnl "github.com/vishvananda/netlink"
)

const (
	// refusedLogBurst and refusedLogWindow bound the log lines about
	// refused answers: a device that asks a server of its own all day
	// must not flood the log.
	refusedLogBurst  = 5
	refusedLogWindow = time.Minute
	// addrRetry is the first pause before subscribing to address events
	// again after the subscription failed, doubled up to addrRetryMax.
	addrRetry    = time.Second
	addrRetryMax = time.Minute
)

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// sourceTrust decides whose answers may grant.
type sourceTrust struct {
	// static are Config.TrustedSources, loopback and Config.Server's
	// address.
	static []netip.Prefix
	// local are the addresses of the captured interfaces (nil before Run
	// has listed them).
	local atomic.Pointer[map[netip.Addr]struct{}]
	logs  logLimit
}

func (t *sourceTrust) init(cfg *Config) {
	t.static = slices.Concat(cfg.TrustedSources, loopback)
	if ap, err := netip.ParseAddrPort(cfg.Server); err == nil {
		a := ap.Addr().WithZone("")
		t.static = append(t.static, netip.PrefixFrom(a, a.BitLen()))
	}
	t.logs.burst, t.logs.window = refusedLogBurst, refusedLogWindow
}

// trusted reports whether an answer from src may add addresses.
func (t *sourceTrust) trusted(src netip.Addr) bool {
	if m := t.local.Load(); m != nil {
		if _, ok := (*m)[src]; ok {
			return true
		}
	}
	return inPrefixes(src, t.static)
}

// TrustedSources returns the sources whose snooped answers may add
// addresses, now: Config.TrustedSources, loopback, Config.Server's
// address, and the addresses of the captured interfaces as single-address
// prefixes (known once Run has started), sorted.
func (r *Resolver) TrustedSources() []netip.Prefix {
	out := slices.Clone(r.trust.static)
	if m := r.trust.local.Load(); m != nil {
		for a := range *m {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		if c := a.Addr().Compare(b.Addr()); c != 0 {
			return c
		}
		return a.Bits() - b.Bits()
	})
	return slices.Compact(out)
}

// refuse counts and logs an answer from an untrusted source that would
// have produced ups (at least one).
func (r *Resolver) refuse(src netip.Addr, ups []Update, now time.Time) {
	total := r.stats.refused.Add(1)
	ok, skipped := r.trust.logs.allow(now)
	if !ok {
		return
	}
	names := make([]string, len(ups))
	for i, u := range ups {
		names[i] = u.Name
	}
	attrs := []any{slog.String("source", src.String()), slog.String("device", ups[0].Device.String()),
		slog.Any("names", names), slog.Any("addrs", ups[0].Addrs), slog.Uint64("refused_total", total)}
	if skipped > 0 {
		attrs = append(attrs, slog.Int("not_logged", skipped))
	}
	r.log.Warn("resolver: a DNS answer to a device from a source that is not trusted (dns.trusted_sources) adds no address", attrs...)
}

// logLimit lets at most burst events per window through, and says how many
// it kept back since the last one it let through.
type logLimit struct {
	burst  int
	window time.Duration

	mu      sync.Mutex
	start   time.Time
	n       int
	skipped int
}

func (l *logLimit) allow(now time.Time) (ok bool, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.start.IsZero() || now.Sub(l.start) >= l.window || now.Before(l.start) {
		l.start, l.n = now, 0
	}
	if l.n >= l.burst {
		l.skipped++
		return false, 0
	}
	l.n++
	skipped, l.skipped = l.skipped, 0
	return true, skipped
}

// addrWatch follows the addresses of some interfaces (by index) of one
// network namespace.
type addrWatch struct {
	r      *Resolver
	ifaces map[int]string
	// addrs are the interfaces' addresses, by interface index.
	addrs map[int]map[netip.Addr]struct{}

	ch   chan vnl.AddrUpdate
	done chan struct{}
}

// watchAddrs subscribes to address events of the namespace NetNSFd, then
// lists the addresses of ifaces, which must be there, and publishes them.
// Call follow to keep them current, or stop.
func (r *Resolver) watchAddrs(ifaces map[int]string) (*addrWatch, error) {
	w := &addrWatch{r: r, ifaces: ifaces}
	if err := w.subscribe(true); err != nil {
		return nil, err
	}
	return w, nil
}

// subscribe opens a new subscription and replaces the addresses with a
// fresh listing. Events queued since the subscription are applied after
// the listing, in order, so the result converges on the kernel's state.
func (w *addrWatch) subscribe(checkNames bool) error {
	ch, done := make(chan vnl.AddrUpdate, 64), make(chan struct{})
	var (
		list       []vnl.Addr
		subscribed bool
	)
	err := netns.DoFd(w.r.cfg.NetNSFd, func() error {
		err := vnl.AddrSubscribeWithOptions(ch, done, vnl.AddrSubscribeOptions{
			ErrorCallback: func(err error) { w.r.log.Debug("resolver: address events", slog.Any("err", err)) },
		})
		if err != nil {
			return fmt.Errorf("subscribing to address events: %w", err)
		}
		subscribed = true
		h, err := vnl.NewHandle()
		if err != nil {
			return err
		}
		defer h.Close()
		if checkNames {
			// A capture opened in another namespace than NetNSFd would
			// make us trust the addresses of some unrelated interface.
			for idx, name := range w.ifaces {
				l, err := h.LinkByIndex(idx)
				if err != nil || l.Attrs().Name != name {
					return fmt.Errorf("the captured interface %s is not in the resolver's network namespace (Config.NetNSFd)", name)
				}
			}
		}
		list, err = h.AddrList(nil, vnl.FAMILY_ALL)
		return err
	})
	if err != nil {
		if subscribed {
			close(done)
			drain(ch)
		}
		return fmt.Errorf("listing the gateway's addresses: %w", err)
	}
	w.ch, w.done = ch, done
	w.addrs = map[int]map[netip.Addr]struct{}{}
	for _, a := range list {
		w.set(a.LinkIndex, a.IP, true)
	}
	w.publish()
	return nil
}

// drain reads ch until the subscription's goroutine closes it.
func drain(ch <-chan vnl.AddrUpdate) {
	for range ch {
	}
}

func (w *addrWatch) set(idx int, ip []byte, add bool) {
	if _, ok := w.ifaces[idx]; !ok {
		return
	}
	a, ok := netip.AddrFromSlice(ip)
	if !ok {
		return
	}
	m := w.addrs[idx]
	if m == nil {
		m = map[netip.Addr]struct{}{}
		w.addrs[idx] = m
	}
	if add {
		m[a] = struct{}{}
	} else {
		delete(m, a)
	}
}

func (w *addrWatch) publish() {
	m := map[netip.Addr]struct{}{}
	for _, as := range w.addrs {
		for a := range as {
			m[a] = struct{}{}
		}
	}
	w.r.trust.local.Store(&m)
}

// follow applies address events until ctx ends, subscribing again when the
// subscription fails (the last known addresses stay trusted meanwhile).
func (w *addrWatch) follow(ctx context.Context) {
	defer w.stop()
	for {
		select {
		case <-ctx.Done():
			return
		case u, ok := <-w.ch:
			if ok {
				w.set(u.LinkIndex, u.LinkAddress.IP, u.NewAddr)
				w.publish()
				continue
			}
		}
		// The subscription ended (its socket failed, e.g. its buffer
		// overran): events may be lost. Close its socket, list again.
		close(w.done)
		w.ch = nil
		w.r.log.Warn("resolver: lost the gateway's address events; listing its addresses again")
		for wait := addrRetry; w.ch == nil; wait = min(2*wait, addrRetryMax) {
			select {
			case <-ctx.Done():
				return
			case <-time.After(wait):
			}
			if err := w.subscribe(false); err != nil {
				w.r.log.Warn("resolver: following the gateway's addresses; the last known ones stay trusted",
					slog.Any("err", err), slog.Duration("retry_in", min(2*wait, addrRetryMax)))
			}
		}
	}
}

// stop ends the subscription.
func (w *addrWatch) stop() {
	if w.ch == nil {
		return
	}
	close(w.done)
	drain(w.ch)
	w.ch = nil
}
