package mudd

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/signal"
	"path/filepath"
	"reflect"
	"runtime/debug"
	"strings"
	"sync"
	"syscall"
	"time"

	sddaemon "github.com/coreos/go-systemd/v22/daemon"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/lanwatch"
	"github.com/openmud/mud/manager"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
	"github.com/openmud/mud/violations"
)

// DefaultGCPercent is mudd's GOGC unless the environment sets one. mudd's
// heap is mostly long-lived state (devices, policies, the planner's view
// of the kernel), and Go's default of 100 lets the heap grow to twice that
// before a collection: 50 keeps it at one and a half times, for a few
// percent more CPU while devices arrive in bursts (BENCHMARKS.md, mudd at
// scale).
const DefaultGCPercent = 50

// daemon runs mudd until SIGTERM or SIGINT.
func daemon(path, version string, stderr io.Writer) error {
	cfg, err := config.Load(path)
	if err != nil {
		return err
	}
	level := new(slog.LevelVar)
	if err := setLevel(level, cfg.Log.Level); err != nil {
		return err
	}
	log := newLogger(stderr, cfg.Log.Format, level)
	if _, set := os.LookupEnv("GOGC"); !set {
		debug.SetGCPercent(DefaultGCPercent)
	}
	// A dashboard that cannot start is refused before anything else does.
	if err := checkDashboard(cfg); err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)

	parts, err := build(cfg, version, log)
	if err != nil {
		return err
	}
	defer parts.close()

	ctx, cancel := context.WithCancelCause(ctx)
	defer cancel(nil)
	var wg sync.WaitGroup
	start := func(name string, fn func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := fn(ctx); err != nil && ctx.Err() == nil {
				cancel(fmt.Errorf("%s: %w", name, err))
			}
		}()
	}
	if parts.fleet != nil {
		start("fleet", parts.fleet.Run)
	}
	start("manager", parts.mgr.Run)
	select {
	case <-parts.mgr.Ready():
	case <-ctx.Done():
		wg.Wait()
		return startErr(ctx)
	}
	start("enforcer repair loop", parts.enf.Run)
	start("dhcp snooping", parts.snoop.Run)
	start("neighbour learning", parts.nb.Run)
	start("LAN watcher", parts.lan.Run)
	start("LAN prefixes", func(ctx context.Context) error { return followLAN(ctx, parts, log) })
	start("resolver", parts.res.Run)
	if parts.viol != nil {
		start("violation reader", parts.viol.Run)
	}
	if cfg.Metrics.Listen != "" {
		start("metrics listener", func(ctx context.Context) error { return serveMetrics(ctx, cfg.Metrics.Listen, parts.mgr) })
	}
	start("control API", func(ctx context.Context) error { return serveAPI(ctx, cfg, parts, log) })
	if cfg.Dashboard.Listen != "" {
		start("dashboard", func(ctx context.Context) error {
			return serveDashboard(ctx, cfg, log.With("component", "dashboard"))
		})
	}
	// Ready means a device's DHCP exchange from now on is seen.
	select {
	case <-parts.snoop.Capturing():
	case <-ctx.Done():
		wg.Wait()
		return startErr(ctx)
	}
	if _, err := sddaemon.SdNotify(false, sddaemon.SdNotifyReady); err != nil {
		log.Warn("sd_notify READY failed", "err", err)
	}
	start("watchdog", func(ctx context.Context) error { return watchdog(ctx, parts.mgr, log) })
	log.Info("mudd running", "version", version, "interfaces", cfg.Interfaces)

	for {
		select {
		case <-ctx.Done():
			_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyStopping)
			log.Info("mudd stopping; the nftables rules stay in the kernel")
			wg.Wait()
			return startErr(ctx)
		case <-hup:
			cfg = reload(ctx, path, cfg, parts, level, log)
		}
	}
}

// startErr is nil after a signal, else the component failure.
func startErr(ctx context.Context) error {
	if err := context.Cause(ctx); err != nil && !errors.Is(err, context.Canceled) {
		return err
	}
	return nil
}

// parts are the wired components.
type parts struct {
	st    *store.Store
	enf   *enforcer.Enforcer
	fetch *mudfetch.Fetcher
	res   *resolver.Resolver
	snoop *dhcpsnoop.Snooper
	nb    *neighbor.Learner
	lan   *lanwatch.Watcher
	viol  *violations.Reader // nil when violations are off or the log group is taken
	fleet fleetLink          // nil unless store.backend is etcd
	mgr   *manager.Manager
}

// fleetLink is the connection to the site's other gateways
// (*fleetlink.Link): the manager's Fleet, driven by Run.
type fleetLink interface {
	manager.Fleet
	Run(ctx context.Context) error
	Close() error
}

func (p *parts) close() {
	if p.fleet != nil {
		_ = p.fleet.Close() // after Run: what etcd has not taken stays queued on disk
	}
	if p.viol != nil {
		p.viol.Close()
	}
	if p.lan != nil {
		p.lan.Close()
	}
	if p.fetch != nil {
		p.fetch.Close()
	}
	if p.enf != nil {
		p.enf.Close() // the ruleset stays in the kernel
	}
	if p.st != nil {
		p.st.Close()
	}
}

// build opens the store and creates every component from the
// configuration.
func build(cfg config.Config, version string, log *slog.Logger) (p *parts, err error) {
	p = &parts{}
	// The error returns set p to nil: close what was built through a copy.
	built := p
	defer func() {
		if err != nil {
			built.close()
		}
	}()
	if err := os.MkdirAll(cfg.StateDir, 0o750); err != nil {
		return nil, fmt.Errorf("creating state_dir: %w", err)
	}
	if p.st, err = store.Open(filepath.Join(cfg.StateDir, "mudd.db"), store.Options{}); err != nil {
		return nil, fmt.Errorf("opening the store: %w", err)
	}
	var shared manager.Fleet
	if cfg.Store.Backend == config.BackendEtcd {
		// The local store stays the one enforcement runs from; the fleet
		// shares the decisions (README, Fleet).
		if p.fleet, err = openFleet(cfg, log.With("component", "fleet")); err != nil {
			return nil, fmt.Errorf("store.backend etcd: %w", err)
		}
		shared = p.fleet
	}
	anchors, serverCAs, err := trust(cfg.Trust)
	if err != nil {
		return nil, err
	}
	p.fetch, err = mudfetch.New(fetcherConfig(cfg.Fetch, anchors, serverCAs))
	if err != nil {
		return nil, fmt.Errorf("creating the fetcher: %w", err)
	}
	prio := int32(cfg.NFT.Priority)
	// The LAN interfaces' prefixes, followed as they change (followLAN).
	if p.lan, err = lanwatch.New(lanwatch.Config{Interfaces: cfg.Interfaces, Logger: log.With("component", "lanwatch")}); err != nil {
		return nil, fmt.Errorf("watching the LAN interfaces: %w", err)
	}
	lan := p.lan.Prefixes()
	if len(lan) == 0 {
		log.Warn("no prefix on the LAN interfaces yet: local-networks is empty until one is added", "interfaces", cfg.Interfaces)
	}
	ec := enforcer.Config{Priority: &prio, LogGroup: cfg.NFT.LogGroup, DirectDispatch: cfg.NFT.DirectDispatch,
		RuleCounters: cfg.NFT.RuleCounters, Logger: log.With("component", "enforcer"),
		// Tampering the enforcer undid becomes an event (mudctl events).
		// p.mgr exists before the enforcer's Run starts.
		OnTamper: func(x enforcer.Tamper) {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := p.mgr.HandleTamper(ctx, x.What); err != nil {
				log.Warn("recording an nftables tamper event", "err", err)
			}
		}}
	if !cfg.NFT.BridgeAllAddresses {
		ec.BridgeLAN = lan // empty (no LAN address yet): every address
	}
	if cfg.NFT.DeviceCounters {
		ec.DeviceCounters = deviceCounterSets
	}
	if p.enf, err = enforcer.New(ec); err != nil {
		return nil, fmt.Errorf("creating the enforcer: %w", err)
	}
	rc := resolver.Config{Server: cfg.DNS.Resolver, MinTTL: cfg.DNS.MinTTL, MaxTTL: cfg.DNS.MaxTTL,
		TrustedSources: cfg.DNS.TrustedSources, Logger: log.With("component", "resolver")}
	if cfg.DNS.Snoop {
		rc.SnoopInterfaces = cfg.Interfaces
		if cfg.DNS.Hold {
			// A held answer is released once the manager has put its
			// addresses into the enforcer's sets. p.mgr exists before Run
			// starts the resolver.
			rc.HoldMark = cfg.DNS.HoldMark
			rc.Apply = func(ctx context.Context, u resolver.Update) error { return p.mgr.HandleDNS(ctx, u) }
		}
	}
	if p.res, err = resolver.New(rc); err != nil {
		return nil, fmt.Errorf("creating the resolver: %w", err)
	}
	// Package neighbor learns the addresses devices use as they appear;
	// the snooper's polling of the neighbour table is not needed.
	if p.snoop, err = dhcpsnoop.New(dhcpsnoop.Config{Interfaces: cfg.Interfaces, NeighbourInterval: -1, Logger: log,
		Capture: dhcpsnoop.Capture(cfg.DHCP.Capture), LeaseFile: cfg.DHCP.LeaseFile,
		Tracker: dhcpsnoop.TrackerConfig{MaxDevices: cfg.DHCP.MaxDevices}}); err != nil {
		return nil, fmt.Errorf("creating the DHCP snooper: %w", err)
	}
	a := cfg.Addresses
	if p.nb, err = neighbor.New(neighbor.Config{Interfaces: cfg.Interfaces, Prefixes: lan, Promiscuous: a.Promiscuous,
		MaxV4PerMAC: a.MaxIPv4PerDevice, MaxV6PerMAC: a.MaxIPv6PerDevice, TTL4: a.TTL, TTL6: a.TTL,
		Logger: log}); err != nil {
		return nil, fmt.Errorf("creating the neighbour learner: %w", err)
	}
	restoreLearned(p.st, p.nb, log)
	if v := cfg.Violations; v.Enabled {
		// The reader names records through the manager, which exists
		// before its Run starts; drops read while binding are not named.
		vc := violations.Config{Group: cfg.NFT.LogGroup, MaxRecords: v.MaxRecords, MaxPerDevice: v.MaxPerDevice,
			DeviceOf: func(a netip.Addr) net.HardwareAddr {
				if p.mgr == nil {
					return nil
				}
				return p.mgr.DeviceOf(a)
			},
			NameOf: func(mac net.HardwareAddr, a netip.Addr) string {
				if p.mgr == nil {
					return ""
				}
				return p.mgr.PeerName(mac, a)
			}}
		if p.viol, err = violations.Open(vc); err != nil {
			// Another reader (ulogd) may hold the group: enforcement does
			// not depend on it.
			log.Warn("violation records are off: the enforcer's log group cannot be read", "group", cfg.NFT.LogGroup, "err", err)
			p.viol, err = nil, nil
		}
	}
	var viol manager.Violations
	if p.viol != nil {
		viol = p.viol
	}
	enf := p.enf
	p.mgr, err = manager.New(manager.Config{
		Violations: viol, AutoQuarantine: manager.AutoQuarantine{After: cfg.Violations.QuarantineAfter, Window: cfg.Violations.QuarantineWindow},
		Store: p.st, Enforcer: p.enf, Fetcher: p.fetch, Resolver: p.res, Anchors: anchors, Fleet: shared,
		Settings: manager.SettingsFrom(cfg), RemovalGrace: cfg.Policy.RemovalGrace,
		FetchWindow: cfg.Fetch.BudgetWindow, FetchBudget: cfg.Fetch.Budget,
		FetchBudgetPerPort: cfg.Fetch.BudgetPerPort, FetchBudgetPerDevice: cfg.Fetch.BudgetPerDevice,
		Leases: p.snoop.Events(), DNS: p.res.Updates(), Neighbors: p.nb.Events(), NeighborControl: p.nb,
		LAN: lan, BridgeLAN: !cfg.NFT.BridgeAllAddresses,
		Render: enforcer.RenderOptions{Priority: &prio, LogGroup: cfg.NFT.LogGroup, BridgeConntrack: enf.BridgeConntrack(), BridgeReplies: enf.BridgeReplies(),
			DirectDispatch: !enf.SecmarkDispatch(), RuleCounters: cfg.NFT.RuleCounters},
		// The enforcer cannot list the tables it finds in the kernel yet, so
		// Tables stays empty rather than claim what was not checked.
		EnforcerInfo:  func() ([]string, bool, int) { return nil, enf.BridgeConntrack(), enf.Repairs() },
		DNSStats:      p.res.Stats,
		DHCPStats:     p.snoop.Stats,
		BridgeReplies: func() string { return enf.BridgeReplies().String() },
		Version:       version, Logger: log.With("component", "manager"),
	})
	if err != nil {
		return nil, err
	}
	return p, nil
}

// trust loads the signer trust anchors and the extra server CAs.
func trust(t config.Trust) (*x509.CertPool, []*x509.Certificate, error) {
	var files []string
	for _, g := range t.Anchors {
		m, err := filepath.Glob(g)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.anchors: %q: %w", g, err)
		}
		files = append(files, m...)
	}
	var anchors *x509.CertPool
	if len(files) > 0 || t.SystemRoots {
		var err error
		if anchors, err = mudfetch.LoadCertPool(files, t.SystemRoots); err != nil {
			return nil, nil, fmt.Errorf("trust.anchors: %w", err)
		}
	}
	var cas []*x509.Certificate
	for _, f := range t.ServerCAs {
		b, err := os.ReadFile(f)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.server_cas: %w", err)
		}
		cs, err := mudfetch.ParseCertificatesPEM(b)
		if err != nil {
			return nil, nil, fmt.Errorf("trust.server_cas: %s: %w", f, err)
		}
		cas = append(cas, cs...)
	}
	return anchors, cas, nil
}

// hostsResolver pins names of fetch.hosts; others use the system resolver.
func hostsResolver(hosts map[string]string) func(context.Context, string) ([]netip.Addr, error) {
	if len(hosts) == 0 {
		return nil
	}
	pinned := map[string]netip.Addr{}
	for h, a := range hosts {
		if ip, err := netip.ParseAddr(a); err == nil {
			pinned[strings.ToLower(h)] = ip
		}
	}
	return func(ctx context.Context, host string) ([]netip.Addr, error) {
		if a, ok := pinned[strings.ToLower(host)]; ok {
			return []netip.Addr{a}, nil
		}
		return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	}
}

// followLAN hands each change of the LAN interfaces' prefixes to the
// neighbour learner (only addresses inside them are learned) and the
// manager (local-networks, the enforcer's bridge table), and the report of
// the LAN bridges' ports to the manager (where lateral traffic passes
// mudd's rules: status and events).
func followLAN(ctx context.Context, p *parts, log *slog.Logger) error {
	if err := p.mgr.SetLateral(ctx, p.lan.Report()); err != nil && ctx.Err() == nil {
		log.Error("applying the LAN ports report", "err", err)
	}
	changes, reports := p.lan.Changes(), p.lan.Reports()
	for changes != nil || reports != nil {
		select {
		case <-ctx.Done():
			return nil
		case c, ok := <-changes:
			if !ok {
				changes = nil
				continue
			}
			log.Info("LAN prefixes changed", "added", c.Added(), "removed", c.Removed())
			p.nb.SetPrefixes(c.New)
			if err := p.mgr.SetLAN(ctx, c.New); err != nil && ctx.Err() == nil {
				log.Error("applying the LAN prefixes", "err", err)
			}
		case r, ok := <-reports:
			if !ok {
				reports = nil
				continue
			}
			if err := p.mgr.SetLateral(ctx, r); err != nil && ctx.Err() == nil {
				log.Error("applying the LAN ports report", "err", err)
			}
		}
	}
	return nil
}

// reload applies a changed configuration file (SIGHUP): the live settings
// go to the manager, the log level changes; other changes are reported as
// needing a restart and the old values stay.
func reload(ctx context.Context, path string, old config.Config, p *parts, level *slog.LevelVar, log *slog.Logger) config.Config {
	cfg, err := config.Load(path)
	if err != nil {
		log.Error("reload: keeping the old configuration", "err", err)
		return old
	}
	if err := setLevel(level, cfg.Log.Level); err != nil {
		log.Error("reload: log.level", "err", err)
	}
	rctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	if err := p.mgr.Reload(rctx, manager.SettingsFrom(cfg)); err != nil {
		log.Error("reload: applying policy settings", "err", err)
		return old
	}
	var restart []string
	for key, same := range map[string]bool{
		"interfaces": reflect.DeepEqual(old.Interfaces, cfg.Interfaces), "state_dir": old.StateDir == cfg.StateDir,
		"socket": old.Socket == cfg.Socket && old.SocketGroup == cfg.SocketGroup, "trust": reflect.DeepEqual(old.Trust, cfg.Trust),
		"fetch": reflect.DeepEqual(old.Fetch, cfg.Fetch), "dns": reflect.DeepEqual(old.DNS, cfg.DNS),
		"metrics": old.Metrics == cfg.Metrics, "nft": old.NFT == cfg.NFT, "log.format": old.Log.Format == cfg.Log.Format,
		"addresses": old.Addresses == cfg.Addresses, "dhcp": old.DHCP == cfg.DHCP, "violations": old.Violations == cfg.Violations,
		"dashboard": old.Dashboard == cfg.Dashboard, "store": reflect.DeepEqual(old.Store, cfg.Store),
	} {
		if !same {
			restart = append(restart, key)
		}
	}
	// Keep what could not change, so the next reload compares with what runs.
	live := old
	live.Policy, live.Log.Level = cfg.Policy, cfg.Log.Level
	log.Info("configuration reloaded", "live", "policy.*, log.level", "needs_restart", restart)
	return live
}

func setLevel(v *slog.LevelVar, s string) error {
	var l slog.Level
	if err := l.UnmarshalText([]byte(s)); err != nil {
		return fmt.Errorf("log.level: %w", err)
	}
	v.Set(l)
	return nil
}

func newLogger(w io.Writer, format string, level *slog.LevelVar) *slog.Logger {
	o := &slog.HandlerOptions{Level: level}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, o))
	}
	return slog.New(slog.NewTextHandler(w, o))
}

// fetcherConfig configures the fetcher from fetch.*. Its overall limit is
// fetch.budget over fetch.budget_window: the manager schedules fetches
// within that budget (they wait, the device stays in "fetching"), and a
// lower limit of the fetcher's own would fail the fetches the manager
// admitted beyond it, leaving their devices to the retry back-off.
func fetcherConfig(f config.Fetch, anchors *x509.CertPool, serverCAs []*x509.Certificate) mudfetch.Config {
	return mudfetch.Config{ServerCAs: serverCAs, Anchors: anchors, Timeout: f.Timeout,
		MaxBytes: f.MaxBytes, AllowPrivate: f.AllowPrivate, AllowPrefixes: f.AllowPrefixes,
		Resolve:    hostsResolver(f.Hosts),
		MaxFetches: f.Budget, RateWindow: f.BudgetWindow,
		// A device is a key: as many as fetches may start in a window.
		MaxTrackedKeys: max(mudfetch.DefaultMaxTrackedKeys, f.Budget)}
}

// serveMetrics serves /metrics until ctx ends.
func serveMetrics(ctx context.Context, addr string, m *manager.Manager) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("metrics.listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.Handle("/metrics", m.MetricsHandler())
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	errc := make(chan error, 1)
	go func() { errc <- srv.Serve(ln) }()
	select {
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 2*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-errc
		return nil
	case err := <-errc:
		return err
	}
}

// deviceCounterSets bounds each set of nft.device_counters: the devices
// (and their addresses) counted since the tables were built.
const deviceCounterSets = 65536

// serveAPI serves the control API on the unix socket until ctx ends; with
// nft.device_counters its devices carry the enforcer's counters.
func serveAPI(ctx context.Context, cfg config.Config, p *parts, log *slog.Logger) error {
	ln, err := api.Listen(cfg.Socket, cfg.SocketGroup)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	b := api.NewManagerBackend(p.mgr)
	if cfg.NFT.DeviceCounters {
		b = api.WithDeviceCounters(b, p.enf.DeviceCounters)
	}
	if cfg.Store.Backend == config.BackendEtcd {
		b = api.WithGatewayID(b, cfg.Store.Etcd.GatewayID)
	}
	return api.NewServer(b, api.ServerOptions{Logger: log.With("component", "api")}).Serve(ctx, ln)
}

// watchdog sends WATCHDOG=1 while the manager's loop answers, at half the
// interval systemd asks for; nothing when the watchdog is off.
func watchdog(ctx context.Context, m *manager.Manager, log *slog.Logger) error {
	iv, err := sddaemon.SdWatchdogEnabled(false)
	if err != nil || iv <= 0 {
		return nil
	}
	t := time.NewTicker(iv / 2)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
			sctx, cancel := context.WithTimeout(ctx, iv/2)
			err := m.Sync(sctx)
			cancel()
			if err != nil {
				log.Warn("manager did not answer; no watchdog ping", "err", err)
				continue
			}
			_, _ = sddaemon.SdNotify(false, sddaemon.SdNotifyWatchdog)
		}
	}
}

// restoreLearned hands the learner the addresses devices were seen using
// before the restart, as the manager stored them: they are bound again at
// once and age from when they were last seen.
func restoreLearned(st *store.Store, nb *neighbor.Learner, log *slog.Logger) {
	n := 0
	err := st.View(func(tx *store.Tx) error {
		return tx.Learned().ForEach(func(l store.LearnedAddrs) error {
			hw, err := net.ParseMAC(l.MAC)
			if err != nil {
				return nil // the store validated it; nothing to restore
			}
			for _, a := range l.Addrs {
				nb.Restore(hw, a.Addr, a.Seen)
				n++
			}
			return nil
		})
	})
	if err != nil {
		log.Warn("reading the learned addresses", "err", err)
		return
	}
	if n > 0 {
		log.Info("restored learned addresses", "addresses", n)
	}
}
