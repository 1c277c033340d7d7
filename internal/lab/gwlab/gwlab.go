// Package gwlab builds a complete MUD gateway in a netlab lab: dnsmasq (DHCP
// and DNS for the LAN) and the mudd binary in the gateway namespace, an
// HTTPS MUD server whose files are signed by a lab CA on the first server,
// and devices that join with real DHCP clients (busybox udhcpc, ISC
// dhclient) announcing their MUD URL. It drives mudd and mudctl as an admin
// would. `make demo` (internal/lab/demo) and the end-to-end tests (e2e) share
// it; it returns errors rather than failing tests, so that a program can
// use it too.
//
// Nothing is configured in the root namespace, the machine's DNS
// configuration is never touched (dnsmasq has no upstream and answers only
// the lab's names), all addresses are documentation ranges, and every
// program is exec'd with arguments, never through a shell.
package gwlab

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Config describes the gateway to build.
type Config struct {
	// Mudd and Mudctl are the binaries (absolute paths are used as given,
	// relative ones are made absolute). An empty Mudctl is Mudd invoked
	// as mudctl, through a link in Dir.
	Mudd, Mudctl string
	// Dir holds every file of the gateway (configuration, state, leases,
	// certificates); the caller owns and removes it.
	Dir string
	// MUDHosts are the MUD servers' names, all served by the lab's first
	// server with one certificate; default ["mud.example.com"].
	MUDHosts []string
	// Names are answered by the gateway's DNS (dnsmasq host records).
	Names map[string]netip.Addr
	// LeaseTime is dnsmasq's lease time ("1h" by default; dnsmasq
	// refuses less than "2m").
	LeaseTime string
	// Hosts are initial dnsmasq --dhcp-hostsfile lines ("MAC,IP").
	Hosts []string
	// Policy is the `policy:` section of mudd's configuration, YAML
	// indented by two spaces under it (empty: the defaults).
	Policy string
	// DHCP is the `dhcp:` section of mudd's configuration, YAML indented
	// by two spaces under it (empty: the defaults).
	DHCP string
	// LogLevel is mudd's log.level (default "info").
	LogLevel string
	// DHCPRanges, when set, are dnsmasq's --dhcp-range values in place of
	// the default 192.0.2.100–192.0.2.199 (e.g. a DHCPv6 range in
	// 2001:db8:1::/64 for more devices than an IPv4 documentation range
	// holds).
	DHCPRanges []string
	// DNSMasqArgs are more dnsmasq arguments (e.g. "--dhcp-lease-max=N",
	// "--server=/NAME/ADDR", "--cache-size=0").
	DNSMasqArgs []string
	// QuietDNSMasq leaves out dnsmasq's per-lease and per-query logging,
	// which thousands of devices would make the bulk of the lab's memory
	// and of dnsmasq's work.
	QuietDNSMasq bool
	// MetricsListen is mudd's metrics.listen; empty: none. An address in
	// the gateway namespace only (e.g. 127.0.0.1:9610).
	MetricsListen string
	// Fetch is more of the `fetch:` section of mudd's configuration, YAML
	// indented by two spaces (e.g. "  budget: 20000\n").
	Fetch string
	// Extra is more of mudd's configuration, whole top-level YAML sections
	// (e.g. "violations:\n  quarantine_after: 3\n").
	Extra string
}

// Gateway is a running gateway lab.
type Gateway struct {
	Lab    *netlab.Lab
	Config Config
	PKI    *PKI
	MUD    *MUDServer
	// MUDAddr is the MUD server's address (the lab's first server).
	MUDAddr netip.Addr
	// Socket is mudd's control socket; ConfigPath its configuration.
	Socket, ConfigPath string
	// DNSLog is dnsmasq's log; MuddLog collects the logs of every mudd
	// run in order.
	DNSLog, MuddLog *netlab.SyncBuffer
	hostsFile       string
	dnsmasq         *exec.Cmd
	mudd            *exec.Cmd
	muddDone        chan struct{}

	mu      sync.Mutex
	devices []*Device
}

// DefaultMUDHost is the MUD server's name unless Config.MUDHosts says
// otherwise.
const DefaultMUDHost = "mud.example.com"

// Start builds the gateway in lab (which needs at least one server): the
// PKI, the MUD server on lab.Servers[0], dnsmasq and mudd. It returns once
// mudd answers on its control socket. Close stops what it started; the lab
// itself (namespaces, processes started through it) belongs to the caller.
func Start(ctx context.Context, lab *netlab.Lab, cfg Config) (g *Gateway, err error) {
	if len(lab.Servers) == 0 {
		return nil, errors.New("gwlab: the lab needs a server for the MUD server")
	}
	if len(cfg.MUDHosts) == 0 {
		cfg.MUDHosts = []string{DefaultMUDHost}
	}
	if cfg.LeaseTime == "" {
		cfg.LeaseTime = "1h"
	}
	if cfg.LogLevel == "" {
		cfg.LogLevel = "info"
	}
	if cfg.Mudctl == "" {
		// mudd is mudctl too when invoked under that name.
		if cfg.Mudctl, err = multicall.Link(cfg.Mudd, cfg.Dir); err != nil {
			return nil, err
		}
	}
	for _, p := range []*string{&cfg.Mudd, &cfg.Mudctl} {
		if *p, err = filepath.Abs(*p); err != nil {
			return nil, fmt.Errorf("locating binaries: %w", err)
		}
		if _, err := os.Stat(*p); err != nil {
			return nil, fmt.Errorf("binary needed by the lab (run `make build`): %w", err)
		}
	}
	g = &Gateway{Lab: lab, Config: cfg, MUDAddr: lab.Servers[0].IPv4, MuddLog: &netlab.SyncBuffer{},
		Socket: filepath.Join(cfg.Dir, "mudd.sock"), ConfigPath: filepath.Join(cfg.Dir, "mudd.yaml")}
	defer func() {
		if err != nil {
			g.Close()
		}
	}()
	if g.PKI, err = NewPKI(cfg.Dir, cfg.MUDHosts); err != nil {
		return g, err
	}
	srv := lab.Servers[0]
	if g.MUD, err = StartMUDServer(srv.NS, srv.IPv4, g.PKI.Server); err != nil {
		return g, err
	}
	if err := g.startDNSMasq(ctx); err != nil {
		return g, err
	}
	if err := g.writeConfig(); err != nil {
		return g, err
	}
	if err := g.StartMudd(ctx); err != nil {
		return g, err
	}
	return g, nil
}

// Publish serves f and a valid detached signature over it, made by the
// lab's signer; it returns the file's bytes.
func (g *Gateway) Publish(f File) ([]byte, error) {
	body := f.JSON()
	sig, err := g.PKI.Signer.SignDetached(body)
	if err != nil {
		return nil, fmt.Errorf("signing %s: %w", f.URL, err)
	}
	return body, g.PublishRaw(f.URL, body, f.SignatureURL(), sig)
}

// PublishRaw serves body at mudURL and sig at sigURL as they are (e.g. a
// signature that does not verify).
func (g *Gateway) PublishRaw(mudURL string, body []byte, sigURL string, sig []byte) error {
	if err := g.MUD.Put(mudURL, "application/mud+json", body); err != nil {
		return err
	}
	return g.MUD.Put(sigURL, "application/pkcs7-signature", sig)
}

// startDNSMasq runs dnsmasq in the gateway namespace as the LAN's DHCP and
// DNS server, with no system configuration and no upstream: the lab's names
// are answered from host records, anything else is refused, so no query
// leaves the lab.
func (g *Gateway) startDNSMasq(ctx context.Context) error {
	dir := g.Config.Dir
	g.hostsFile = filepath.Join(dir, "dhcp-hosts")
	if err := os.WriteFile(g.hostsFile, []byte(strings.Join(g.Config.Hosts, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing dnsmasq's hosts file: %w", err)
	}
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--interface=" + netlab.LANBridge, "--bind-interfaces",
		"--dhcp-hostsfile=" + g.hostsFile,
		// Without --no-ping dnsmasq checks with ICMP that an address is
		// unused before it really offers it, which holds every device's
		// lease back by seconds; the lab's LAN has no other hosts.
		"--dhcp-authoritative", "--no-ping",
		"--dhcp-leasefile=" + g.LeaseFile(),
		"--pid-file=" + filepath.Join(dir, "dnsmasq.pid"),
		"--log-facility=-",
		"--user=root", "--group=root",
	}
	if !g.Config.QuietDNSMasq {
		args = append(args, "--log-dhcp", "--log-queries")
	}
	ranges := g.Config.DHCPRanges
	if len(ranges) == 0 {
		ranges = []string{"192.0.2.100,192.0.2.199,255.255.255.0," + g.Config.LeaseTime}
	}
	for _, r := range ranges {
		args = append(args, "--dhcp-range="+r)
	}
	args = append(args, g.Config.DNSMasqArgs...)
	names := map[string]netip.Addr{}
	for _, h := range g.Config.MUDHosts {
		names[h] = g.MUDAddr
	}
	for n, a := range g.Config.Names {
		names[n] = a
	}
	for _, n := range sortedKeys(names) {
		args = append(args, "--host-record="+n+","+names[n].String())
	}
	cmd, out, err := g.Lab.Start(g.Lab.GW.NS, "dnsmasq", args...)
	if err != nil {
		return err
	}
	g.dnsmasq, g.DNSLog = cmd, out
	// dnsmasq accepts TCP on port 53 once its sockets are open.
	addr := netip.AddrPortFrom(netlab.GatewayLAN4, 53).String()
	err = Poll(ctx, 5*time.Second, func() error {
		c, err := netlab.Dial(g.Lab.GW.NS, "tcp", addr, 200*time.Millisecond)
		if err != nil {
			return err
		}
		return c.Close()
	})
	if err != nil {
		return fmt.Errorf("waiting for dnsmasq on %s: %w; its log:\n%s", addr, err, out)
	}
	return nil
}

// SetDHCPHosts replaces dnsmasq's reservations ("MAC,IP" lines) and makes
// it re-read them (SIGHUP).
func (g *Gateway) SetDHCPHosts(lines ...string) error {
	if err := os.WriteFile(g.hostsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return fmt.Errorf("writing dnsmasq's hosts file: %w", err)
	}
	if err := g.dnsmasq.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("telling dnsmasq to re-read its hosts: %w", err)
	}
	return nil
}

// writeConfig writes mudd's configuration for the gateway.
func (g *Gateway) writeConfig() error {
	var hosts strings.Builder
	for _, h := range g.Config.MUDHosts {
		fmt.Fprintf(&hosts, "    %s: %s\n", h, g.MUDAddr)
	}
	policy := section("policy", g.Config.Policy) + section("dhcp", g.Config.DHCP)
	fetch := g.Config.Fetch
	if fetch != "" && !strings.HasSuffix(fetch, "\n") {
		fetch += "\n"
	}
	cfg := fmt.Sprintf(`# mudd configuration of the lab gateway.
interfaces: [%s]
state_dir: %s
socket: %s
socket_group: ""
log:
  level: %s
# The metrics listener, if any, is inside the gateway namespace.
metrics:
  listen: "%s"
trust:
  anchors: [%s]
  server_cas: [%s]
fetch:
  # The MUD server is on a documentation range, which mudd refuses by default.
  allow_prefixes: [%s]
  hosts:
%s%sdns:
  # dnsmasq listens on the LAN bridge only.
  resolver: "%s"
%s%s`, netlab.LANBridge, filepath.Join(g.Config.Dir, "state"), g.Socket, g.Config.LogLevel, g.Config.MetricsListen,
		g.PKI.CAPEM, g.PKI.CAPEM, netlab.WANPrefix4, hosts.String(), fetch,
		netip.AddrPortFrom(netlab.GatewayLAN4, 53), policy, g.Config.Extra)
	if err := os.WriteFile(g.ConfigPath, []byte(cfg), 0o600); err != nil {
		return fmt.Errorf("writing mudd's configuration: %w", err)
	}
	return nil
}

// section is a top-level section of mudd's configuration with body
// (indented YAML), "" when body is.
func section(name, body string) string {
	if body == "" {
		return ""
	}
	s := name + ":\n" + body
	if !strings.HasSuffix(s, "\n") {
		s += "\n"
	}
	return s
}

// SetDHCP rewrites the `dhcp:` section of mudd's configuration (see
// Config.DHCP); the next StartMudd reads it.
func (g *Gateway) SetDHCP(section string) error {
	g.Config.DHCP = section
	return g.writeConfig()
}

// LeaseFile is the gateway's dnsmasq lease file.
func (g *Gateway) LeaseFile() string { return filepath.Join(g.Config.Dir, "dnsmasq.leases") }

// StartMudd starts mudd in the gateway namespace (again, after StopMudd or
// KillMudd) and waits until it answers on its control socket.
func (g *Gateway) StartMudd(ctx context.Context) error {
	if g.mudd != nil {
		return errors.New("gwlab: mudd is already running")
	}
	fmt.Fprintf(g.MuddLog, "--- gwlab: starting mudd at %s ---\n", time.Now().Format(time.RFC3339Nano))
	cmd := g.Lab.Command(context.WithoutCancel(ctx), g.Lab.GW.NS, g.Config.Mudd, "--config", g.ConfigPath)
	cmd.Stdout, cmd.Stderr = g.MuddLog, g.MuddLog
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting mudd: %w", err)
	}
	g.mudd, g.muddDone = cmd, make(chan struct{})
	done := g.muddDone
	go func() { _ = cmd.Wait(); close(done) }()
	c := api.NewClient(g.Socket)
	defer c.Close()
	err := Poll(ctx, 15*time.Second, func() error {
		select {
		case <-done:
			return fmt.Errorf("mudd exited: %v", cmd.ProcessState)
		default:
		}
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		defer cancel()
		_, err := c.Status(cctx)
		return err
	})
	if err != nil {
		return fmt.Errorf("waiting for mudd's control socket %s: %w", g.Socket, err)
	}
	return nil
}

// MuddPID is the process id of the running mudd (`ip netns exec` execs
// it, so it is mudd itself), 0 while none runs.
func (g *Gateway) MuddPID() int {
	if g.mudd == nil || g.mudd.Process == nil {
		return 0
	}
	return g.mudd.Process.Pid
}

// StorePath is mudd's store (its bbolt file) in the gateway's state
// directory.
func (g *Gateway) StorePath() string { return filepath.Join(g.Config.Dir, "state", "mudd.db") }

// ReloadPolicy rewrites the `policy:` section of mudd's configuration and
// makes the running mudd reload it (SIGHUP), waiting until it logged the
// reload.
func (g *Gateway) ReloadPolicy(ctx context.Context, policy string) error {
	g.Config.Policy = policy
	if err := g.writeConfig(); err != nil {
		return err
	}
	if g.mudd == nil {
		return errors.New("gwlab: mudd is not running")
	}
	const logged = "configuration reloaded"
	before := strings.Count(g.MuddLog.String(), logged)
	if err := g.mudd.Process.Signal(syscall.SIGHUP); err != nil {
		return fmt.Errorf("signalling mudd: %w", err)
	}
	return Poll(ctx, 10*time.Second, func() error {
		if strings.Count(g.MuddLog.String(), logged) > before {
			return nil
		}
		return errors.New("mudd has not logged a reload yet")
	})
}

// StopMudd stops mudd with SIGTERM, as systemd would, and waits for it.
func (g *Gateway) StopMudd() error { return g.endMudd(syscall.SIGTERM) }

// KillMudd kills mudd with SIGKILL (no chance to clean up) and waits.
func (g *Gateway) KillMudd() error { return g.endMudd(syscall.SIGKILL) }

func (g *Gateway) endMudd(sig syscall.Signal) error {
	if g.mudd == nil {
		return nil
	}
	cmd, done := g.mudd, g.muddDone
	g.mudd, g.muddDone = nil, nil
	// `ip netns exec` execs mudd, so the process is mudd itself.
	if err := cmd.Process.Signal(sig); err != nil {
		return fmt.Errorf("signalling mudd: %w", err)
	}
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("mudd did not stop within 10s of %s", sig)
	}
	if sig == syscall.SIGTERM && !cmd.ProcessState.Success() {
		return fmt.Errorf("mudd exited with %v after SIGTERM", cmd.ProcessState)
	}
	return nil
}

// Mudctl runs mudctl against the daemon's socket (an ordinary file, so
// mudctl runs in this namespace) and returns its standard output; a failure
// includes its standard error.
func (g *Gateway) Mudctl(ctx context.Context, args ...string) (string, error) {
	cctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(cctx, g.Config.Mudctl, append([]string{"--socket", g.Socket}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("mudctl %s: %w: %s", strings.Join(args, " "), err, strings.TrimSpace(stderr.String()))
	}
	return string(out), nil
}

// Devices is `mudctl devices -o json`.
func (g *Gateway) Devices(ctx context.Context) ([]api.Device, error) {
	out, err := g.Mudctl(ctx, "devices", "-o", "json")
	if err != nil {
		return nil, err
	}
	var ds []api.Device
	if err := json.Unmarshal([]byte(out), &ds); err != nil {
		return nil, fmt.Errorf("decoding `mudctl devices -o json`: %w: %s", err, out)
	}
	return ds, nil
}

// Device is the device with mac in `mudctl devices -o json`; ok is false
// when mudd does not list it.
func (g *Gateway) Device(ctx context.Context, mac string) (d api.Device, ok bool, err error) {
	ds, err := g.Devices(ctx)
	if err != nil {
		return d, false, err
	}
	i := slices.IndexFunc(ds, func(d api.Device) bool { return strings.EqualFold(d.MAC, mac) })
	if i < 0 {
		return d, false, nil
	}
	return ds[i], true, nil
}

// WaitDevice polls `mudctl devices -o json` until the device with mac
// satisfies ok, and returns it.
func (g *Gateway) WaitDevice(ctx context.Context, mac string, timeout time.Duration, ok func(api.Device) bool) (api.Device, error) {
	var last api.Device
	var found bool
	err := Poll(ctx, timeout, func() error {
		d, f, err := g.Device(ctx, mac)
		if err != nil {
			return err
		}
		last, found = d, f
		if !f {
			return fmt.Errorf("mudd does not list %s", mac)
		}
		if !ok(d) {
			return fmt.Errorf("%s is %s (%s), ips %v", mac, d.State, d.Reason, d.IPs)
		}
		return nil
	})
	if err != nil && found {
		return last, fmt.Errorf("waiting for %s: %w", mac, err)
	}
	return last, err
}

// WaitState waits until the device is in state with at least one address.
func (g *Gateway) WaitState(ctx context.Context, mac string, state api.DeviceState, timeout time.Duration) (api.Device, error) {
	return g.WaitDevice(ctx, mac, timeout, func(d api.Device) bool { return d.State == state && len(d.IPs) > 0 })
}

// NFT runs the nft binary in the gateway namespace (an admin's view of
// the kernel; mudd itself never runs it).
func (g *Gateway) NFT(ctx context.Context, args ...string) (string, error) {
	return g.Lab.Run(ctx, g.Lab.GW.NS, "nft", args...)
}

// Close stops the devices' DHCP clients, mudd and the MUD server. The lab's Close removes
// the namespaces.
func (g *Gateway) Close() {
	g.mu.Lock()
	devs := g.devices
	g.devices = nil
	g.mu.Unlock()
	for _, d := range devs {
		_ = d.Stop()
	}
	_ = g.StopMudd()
	if g.MUD != nil {
		g.MUD.Close()
	}
	// dnsmasq was started through the lab, which stops it on its Close.
}

// Poll calls fn until it succeeds, ctx ends or timeout passes, and returns
// fn's last error.
func Poll(ctx context.Context, timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return err
		}
		select {
		case <-ctx.Done():
			return context.Cause(ctx)
		case <-time.After(50 * time.Millisecond):
		}
	}
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}

// Metric reads one series (name and labels, as printed) from mudd's
// /metrics, from inside the gateway namespace; Config.MetricsListen must
// be set.
func (g *Gateway) Metric(series string) (uint64, error) {
	if g.Config.MetricsListen == "" {
		return 0, errors.New("gwlab: no metrics listener configured")
	}
	ns := g.Lab.GW.NS
	c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
		DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
			return netlab.Dial(ns, network, addr, 2*time.Second)
		},
	}}
	resp, err := c.Get("http://" + g.Config.MetricsListen + "/metrics")
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), series+" "); ok {
			return strconv.ParseUint(v, 10, 64)
		}
	}
	if err := sc.Err(); err != nil {
		return 0, err
	}
	return 0, fmt.Errorf("no series %s", series)
}
