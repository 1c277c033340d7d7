// Package demo is the MUD enforcement demonstration behind `sudo make demo`
// (cmd/mudlab): in network namespaces on this machine it builds a gateway
// with dnsmasq (DHCP and DNS) and mudd, an HTTPS MUD server whose file is
// signed by a lab CA, internet hosts with echo services, and devices that
// announce their MUD URL with a real DHCP client; it then shows what mudd
// permits and refuses, and removes everything again.
//
// Nothing is configured in the root namespace, the machine's DNS
// configuration is never touched, all addresses are documentation ranges,
// and every program is exec'd with arguments, never through a shell.
package demo

import (
	"context"
	"fmt"
	"io"
	"net/netip"
	"os"
	"regexp"
	"strings"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Options configures Run.
type Options struct {
	// Mudd and Mudctl are the binaries to demonstrate; an empty Mudctl is
	// Mudd invoked as mudctl.
	Mudd, Mudctl string
	// Out receives the demonstration's narrative.
	Out io.Writer
	// Logs also prints mudd's and dnsmasq's logs at the end (they are
	// always printed after a failure).
	Logs bool
}

// Timeouts of the reachability probes: a permitted connection may need a
// moment (the policy can be installed just before the name is resolved); a
// refused one is a dropped SYN, so a short wait is enough to call it.
const (
	passWait   = 8 * time.Second
	refuseWait = 1500 * time.Millisecond
)

// device is one lab device and how it joins.
type device struct {
	host   *netlab.Host
	name   string // DHCP hostname
	mudURL string // empty: announces none
	ip     netip.Addr
	dev    *gwlab.Device // its DHCP client, once it joined
}

type run struct {
	ctx    context.Context // only to tell an interruption from a failure
	opts   Options
	out    io.Writer
	dir    string
	lab    *netlab.Lab
	gw     *gwlab.Gateway
	echoes []*netlab.Echo
	failed []string
	devs   []*device
}

// Run performs the whole demonstration and cleans up after it, also when it
// fails or ctx is cancelled (Ctrl-C). It returns an error when the lab
// could not be built or when any demonstrated expectation did not hold.
func Run(ctx context.Context, opts Options) (err error) {
	if opts.Out == nil {
		opts.Out = os.Stdout
	}
	r := &run{opts: opts, out: opts.Out, ctx: ctx}
	bins := []string{r.opts.Mudd}
	if r.opts.Mudctl != "" {
		bins = append(bins, r.opts.Mudctl)
	}
	for _, p := range bins {
		if _, err := os.Stat(p); err != nil {
			return fmt.Errorf("binary needed by the demo (run `make build`): %w", err)
		}
	}
	defer r.cleanup()
	if err := r.setUp(ctx); err != nil {
		r.dumpLogs()
		return err
	}
	if err := r.show(ctx); err != nil {
		r.dumpLogs()
		return err
	}
	if len(r.failed) > 0 {
		r.dumpLogs()
		return fmt.Errorf("%d expectation(s) did not hold: %s", len(r.failed), strings.Join(r.failed, "; "))
	}
	if r.opts.Logs {
		r.dumpLogs()
	}
	fmt.Fprintln(r.out, "\nAll expectations held.")
	return nil
}

func (r *run) step(format string, args ...any) {
	fmt.Fprintf(r.out, "\n==> "+format+"\n", args...)
}

// setUp builds the lab and brings every device up to its steady state.
func (r *run) setUp(ctx context.Context) (err error) {
	if r.dir, err = os.MkdirTemp("", "mudlab-"); err != nil {
		return fmt.Errorf("creating the demo's temporary directory: %w", err)
	}
	r.step("Building the lab in network namespaces (documentation addresses only)")
	if r.lab, err = netlab.Build(netlab.Config{Devices: 3, Servers: 3}); err != nil {
		return err
	}
	mudSrv, cloud, other := r.lab.Servers[0], r.lab.Servers[1], r.lab.Servers[2]
	fmt.Fprintf(r.out, "    gateway   %-28s br-lan %s/24, br-wan %s/24\n", r.lab.GW.NS, netlab.GatewayLAN4, netlab.GatewayWAN4)
	fmt.Fprintf(r.out, "    MUD server %-27s %s  https://%s (lab CA certificate)\n", mudSrv.NS, mudSrv.IPv4, mudHost)
	fmt.Fprintf(r.out, "    internet  %-28s %s  %s, TCP echo on :%d and :%d\n", cloud.NS, cloud.IPv4, cloudHost, permittedPort, otherPort)
	fmt.Fprintf(r.out, "    internet  %-28s %s  %s, TCP echo on :%d and :%d\n", other.NS, other.IPv4, otherHost, permittedPort, otherPort)

	r.step("Starting the HTTPS MUD server, dnsmasq (DHCP and DNS for the LAN) and mudd in the gateway namespace")
	r.gw, err = gwlab.Start(ctx, r.lab, gwlab.Config{Mudd: r.opts.Mudd, Mudctl: r.opts.Mudctl, Dir: r.dir,
		Names: map[string]netip.Addr{cloudHost: cloud.IPv4, otherHost: other.IPv4}})
	if err != nil {
		return err
	}
	if _, err := r.gw.Publish(mudFile); err != nil {
		return err
	}
	for _, h := range []*netlab.Host{cloud, other} {
		for _, port := range []int{permittedPort, otherPort} {
			e, err := netlab.ServeEcho(h.NS, netip.AddrPortFrom(h.IPv4, uint16(port)).String())
			if err != nil {
				return fmt.Errorf("starting the echo service on %s:%d: %w", h.IPv4, port, err)
			}
			r.echoes = append(r.echoes, e)
		}
	}
	fmt.Fprintf(r.out, "    mudd is up; control socket %s\n", r.gw.Socket)

	r.step("Devices join the LAN with a real DHCP client (busybox udhcpc)")
	devs := r.devices()
	for _, d := range devs {
		how := "announces no MUD URL"
		if d.mudURL != "" {
			how = "announces MUD URL " + d.mudURL + " (DHCP option 161)"
		}
		if d.dev, err = r.gw.Join(d.host, gwlab.Udhcpc, d.name, d.mudURL); err != nil {
			return err
		}
		fmt.Fprintf(r.out, "    %-8s %s  %s\n", d.name, d.host.MAC, how)
	}
	for _, d := range devs {
		if d.ip, err = d.dev.WaitAddr(ctx, 15*time.Second, netip.Addr{}); err != nil {
			return err
		}
	}
	// A MUD device is ready once its policy is in the kernel.
	for _, d := range devs {
		if d.mudURL == "" {
			continue
		}
		if _, err := r.gw.WaitState(ctx, d.host.MAC.String(), api.StateEnforced, 20*time.Second); err != nil {
			return fmt.Errorf("waiting for %s to be enforced: %w", d.name, err)
		}
	}
	for _, d := range devs {
		fmt.Fprintf(r.out, "    %-8s leased %s\n", d.name, d.ip)
	}
	return nil
}

func (r *run) devices() []*device {
	if len(r.lab.Devices) == 0 {
		return nil
	}
	// Cached on first use so that leased addresses stick.
	if r.devs == nil {
		r.devs = []*device{
			{host: r.lab.Devices[0], name: "bulb-1", mudURL: mudURL},
			{host: r.lab.Devices[1], name: "bulb-2", mudURL: mudURL},
			{host: r.lab.Devices[2], name: "laptop"},
		}
	}
	return r.devs
}

// show is the demonstration proper, once everything runs.
func (r *run) show(ctx context.Context) error {
	devs := r.devices()
	bulb1, bulb2, laptop := devs[0], devs[1], devs[2]

	r.step("mudctl devices — what mudd knows: both bulbs enforced from their MUD file, the laptop left alone")
	if err := r.mudctl(ctx, "devices"); err != nil {
		return err
	}
	r.step("mudctl policy show %s — the rules compiled from the signed MUD file", bulb1.host.MAC)
	if err := r.mudctl(ctx, "policy", "show", bulb1.host.MAC.String()); err != nil {
		return err
	}
	fmt.Fprintf(r.out, "    (the MUD server served: %s)\n", strings.Join(r.gw.MUD.Requests(), ", "))

	r.step("Connections — each device resolves the name with the gateway's DNS, then connects")
	probes := []struct {
		d      *device
		host   string
		port   int
		wantOK bool
		why    string
	}{
		{bulb1, cloudHost, permittedPort, true, "the MUD file permits cloud.example.com on TCP 443"},
		{bulb2, cloudHost, permittedPort, true, "the second bulb shares the same policy"},
		{bulb1, otherHost, permittedPort, false, "a host the MUD file does not name"},
		{bulb1, cloudHost, otherPort, false, "the permitted host, but a port the MUD file does not name"},
		{laptop, otherHost, permittedPort, true, "no MUD URL: mudd does not restrict the device"},
		{laptop, cloudHost, otherPort, true, "no MUD URL: any port"},
	}
	for _, p := range probes {
		// An interrupted demo stops here rather than report probes that
		// failed only because they were cut short.
		if err := ctx.Err(); err != nil {
			return fmt.Errorf("demo interrupted: %w", err)
		}
		r.probe(ctx, p.d, p.host, p.port, p.wantOK, p.why)
	}
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("demo interrupted: %w", err)
	}

	r.step("DHCP ACK → policy enforced, from mudd's log")
	r.latencies(bulb1, bulb2)
	return nil
}

// mudctl runs mudctl against the daemon's socket (an ordinary file, so
// mudctl runs in this namespace) and prints its output.
func (r *run) mudctl(ctx context.Context, args ...string) error {
	out, err := r.gw.Mudctl(ctx, args...)
	indent(r.out, out)
	return err
}

// probe connects from d to name:port and records whether the outcome is
// the expected one.
func (r *run) probe(ctx context.Context, d *device, name string, port int, wantOK bool, why string) {
	what := fmt.Sprintf("%s → %s:%d", d.name, name, port)
	addr, err := gwlab.Resolve(ctx, d.host.NS, name)
	if err != nil {
		r.fail(what, fmt.Sprintf("DNS failed: %v", err))
		return
	}
	dst := netlab.HostPort(addr, port)
	if wantOK {
		start := time.Now()
		err = poll(ctx, passWait, func() error { return netlab.TCPEcho(d.host.NS, dst, time.Second) })
		if err != nil {
			r.fail(what, fmt.Sprintf("want OK, got %v (%s)", err, why))
			return
		}
		fmt.Fprintf(r.out, "    [ok] %-34s OK (echo from %s after %.1f ms) — %s\n", what, addr, float64(time.Since(start).Microseconds())/1000, why)
		return
	}
	if err = netlab.TCPEcho(d.host.NS, dst, refuseWait); err == nil {
		r.fail(what, "want refused, but the connection succeeded ("+why+")")
		return
	}
	fmt.Fprintf(r.out, "    [ok] %-34s refused (%s) — %s\n", what, shortErr(err), why)
}

func (r *run) fail(what, msg string) {
	fmt.Fprintf(r.out, "    [FAIL] %s: %s\n", what, msg)
	r.failed = append(r.failed, what)
}

// policyActive matches mudd's log line for a device whose policy reached the
// kernel: msg="policy active" mac=... latency_ms=...
var policyActive = regexp.MustCompile(`msg="policy active".*\bmac=(\S+).*\blatency_ms=([0-9.]+)`)

func (r *run) latencies(devs ...*device) {
	seen := map[string]string{}
	for _, line := range strings.Split(r.gw.MuddLog.String(), "\n") {
		if m := policyActive.FindStringSubmatch(line); m != nil {
			if _, ok := seen[m[1]]; !ok {
				seen[m[1]] = m[2]
			}
		}
	}
	for _, d := range devs {
		ms, ok := seen[d.host.MAC.String()]
		if !ok {
			r.fail(d.name+" latency", "no `policy active` line for "+d.host.MAC.String()+" in mudd's log")
			continue
		}
		fmt.Fprintf(r.out, "    %-8s %s  %s ms\n", d.name, d.host.MAC, ms)
	}
	fmt.Fprintln(r.out, "    (mudd fetched and verified the MUD file as soon as the DHCPDISCOVER announced its URL; at the ACK only the leased address had to reach nftables)")
}

// shortErr names why a connection failed without the socket details.
func shortErr(err error) string {
	s := err.Error()
	switch {
	case strings.Contains(s, "timeout"), strings.Contains(s, "deadline"):
		return "no answer: dropped"
	case strings.Contains(s, "refused"):
		return "connection refused"
	}
	return s
}

// dumpLogs shows the daemons' logs after a failure, for diagnosis (not
// after Ctrl-C: the user asked for the demo to stop, not for its logs).
func (r *run) dumpLogs() {
	if r.ctx != nil && r.ctx.Err() != nil {
		return
	}
	if r.gw == nil {
		return
	}
	for _, l := range []struct {
		name string
		buf  *netlab.SyncBuffer
	}{{"mudd", r.gw.MuddLog}, {"dnsmasq", r.gw.DNSLog}} {
		if l.buf == nil {
			continue
		}
		fmt.Fprintf(r.out, "\n--- %s log ---\n", l.name)
		indent(r.out, l.buf.String())
	}
	for _, d := range r.devs {
		if d.dev != nil {
			fmt.Fprintf(r.out, "\n--- udhcpc log of %s ---\n", d.name)
			indent(r.out, d.dev.Log.String())
		}
	}
}

// cleanup removes everything the demo created: servers, processes,
// namespaces with their /etc/netns directories, and the temporary directory.
func (r *run) cleanup() {
	if r.gw != nil {
		r.gw.Close() // stops udhcpc, mudd and the MUD server
	}
	for _, e := range r.echoes {
		e.Close()
	}
	if r.lab != nil {
		r.lab.Close() // stops dnsmasq, deletes the namespaces
	}
	if r.dir != "" {
		if err := os.RemoveAll(r.dir); err != nil {
			fmt.Fprintf(r.out, "cleanup: removing %s: %v\n", r.dir, err)
		}
	}
	if r.lab != nil || r.dir != "" {
		fmt.Fprintln(r.out, "\n==> Cleaned up: namespaces, processes, /etc/netns entries and the temporary directory are gone.")
	}
}
