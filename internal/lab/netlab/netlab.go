// Package netlab builds throw-away network-namespace labs for tests: a
// gateway namespace that routes between a LAN bridge with device ports and an
// "internet" segment with server hosts, IPv4 and IPv6, all on documentation
// address ranges. Nothing is configured in the root namespace and no traffic
// leaves the lab.
//
// Topology of a lab named P (namespace names are P-gw, P-dev1, P-srv1, ...):
//
//	P-devN eth0 ──veth── lanN ┐
//	                          ├─ br-lan (192.0.2.1/24, 2001:db8:1::1/64)   P-gw
//	P-dev1 eth0 ──veth── lan1 ┘          routing, forwarding on
//	P-srvN eth0 ──veth── wanN ┐
//	                          ├─ br-wan (203.0.113.1/24, 2001:db8:2::1/64)
//	P-srv1 eth0 ──veth── wan1 ┘
//
// Device i has MAC 02:00:00:00:01:<i>, and (with StaticDevices) 192.0.2.<10+i>
// and 2001:db8:1::<10+i>. Server j has 203.0.113.<10+j> and 2001:db8:2::<10+j>.
//
// The lab uses the iproute2 `ip` command (exec'd with arguments, never through
// a shell) to build itself, and enters namespaces in-process for sockets.
package netlab

import (
	"bytes"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	mudns "github.com/openmud/mud/internal/netns"
	"github.com/vishvananda/netns"
)

// Fixed lab addressing (documentation ranges only).
var (
	LANPrefix4  = netip.MustParsePrefix("192.0.2.0/24")
	LANPrefix6  = netip.MustParsePrefix("2001:db8:1::/64")
	WANPrefix4  = netip.MustParsePrefix("203.0.113.0/24")
	WANPrefix6  = netip.MustParsePrefix("2001:db8:2::/64")
	GatewayLAN4 = netip.MustParseAddr("192.0.2.1")
	GatewayLAN6 = netip.MustParseAddr("2001:db8:1::1")
	GatewayWAN4 = netip.MustParseAddr("203.0.113.1")
	GatewayWAN6 = netip.MustParseAddr("2001:db8:2::1")
)

const (
	// LANBridge and WANBridge are the gateway's bridge names.
	LANBridge = "br-lan"
	WANBridge = "br-wan"
	nsPrefix  = "mudlab"
)

// Config sizes a lab.
type Config struct {
	Devices int // device namespaces on the LAN bridge
	Servers int // server namespaces on the internet segment
	// StaticDevices gives devices fixed addresses and a default route;
	// without it devices have only a link (for DHCP tests).
	StaticDevices bool
}

// Host is one namespace attached to the gateway.
type Host struct {
	NS     string           // namespace name, for `ip netns exec`
	Iface  string           // interface inside NS ("eth0")
	Port   string           // the gateway-side veth ("lan1", "wan1")
	MAC    net.HardwareAddr // MAC of Iface
	IPv4   netip.Addr       // zero unless assigned
	IPv6   netip.Addr
	Router bool // true for the gateway itself
}

// Lab is a running lab. Close removes everything it created.
type Lab struct {
	Name    string
	GW      Host // the gateway namespace; Iface is the LAN bridge
	Devices []*Host
	Servers []*Host

	mu    sync.Mutex
	procs []*exec.Cmd
	nses  []string
}

var labSeq atomic.Int64

// RequireRoot skips the test when it cannot run here (not root) outside CI,
// and fails it inside CI, where skipping would hide a broken test.
func RequireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (network namespaces, nftables); CI runs as root, so this is a CI setup error")
	}
	t.Skip("needs root for network namespaces and nftables; run `sudo make test` (CI runs it as root)")
}

// RequireCommand skips (outside CI) or fails (in CI) when a program the test
// needs is not installed.
func RequireCommand(t testing.TB, names ...string) {
	t.Helper()
	for _, name := range names {
		if _, err := exec.LookPath(name); err != nil {
			if os.Getenv("CI") != "" {
				t.Fatalf("%s is not installed; scripts/install-deps.sh should have installed it", name)
			}
			t.Skipf("%s is not installed; run `sudo make deps`", name)
		}
	}
}

// New builds a lab and registers its removal with t.Cleanup.
func New(t testing.TB, cfg Config) *Lab {
	t.Helper()
	RequireRoot(t)
	RequireCommand(t, "ip")
	removeStale()
	l := &Lab{Name: fmt.Sprintf("%s-%d-%d", nsPrefix, os.Getpid(), labSeq.Add(1))}
	t.Cleanup(l.Close)
	if err := l.build(cfg); err != nil {
		t.Fatalf("netlab: building lab: %v", err)
	}
	return l
}

func (l *Lab) build(cfg Config) error {
	l.GW = Host{NS: l.Name + "-gw", Iface: LANBridge, Router: true, IPv4: GatewayLAN4, IPv6: GatewayLAN6}
	if err := l.addNS(l.GW.NS); err != nil {
		return err
	}
	gw := l.GW.NS
	steps := [][]string{
		{"-n", gw, "link", "set", "lo", "up"},
		{"-n", gw, "link", "add", LANBridge, "type", "bridge", "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0"},
		{"-n", gw, "link", "add", WANBridge, "type", "bridge", "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0"},
		{"-n", gw, "addr", "add", GatewayLAN4.String() + "/24", "dev", LANBridge},
		{"-n", gw, "addr", "add", GatewayLAN6.String() + "/64", "dev", LANBridge, "nodad"},
		{"-n", gw, "addr", "add", GatewayWAN4.String() + "/24", "dev", WANBridge},
		{"-n", gw, "addr", "add", GatewayWAN6.String() + "/64", "dev", WANBridge, "nodad"},
		{"-n", gw, "link", "set", LANBridge, "up"},
		{"-n", gw, "link", "set", WANBridge, "up"},
	}
	if err := runIPs(steps); err != nil {
		return err
	}
	// Routing on; the bridge-netfilter hooks off so that bridged (lateral)
	// traffic is seen by bridge-family tables only, as on a typical router.
	if err := l.Sysctl(gw,
		"net.ipv4.ip_forward=1",
		"net.ipv6.conf.all.forwarding=1",
		"net.bridge.bridge-nf-call-iptables=0",
		"net.bridge.bridge-nf-call-ip6tables=0",
		"net.bridge.bridge-nf-call-arptables=0",
	); err != nil {
		return err
	}
	l.GW.MAC = l.linkMAC(gw, LANBridge)
	for i := 1; i <= cfg.Devices; i++ {
		h := &Host{
			NS:    fmt.Sprintf("%s-dev%d", l.Name, i),
			Iface: "eth0",
			Port:  fmt.Sprintf("lan%d", i),
			MAC:   net.HardwareAddr{0x02, 0, 0, 0, 0x01, byte(i)},
		}
		if cfg.StaticDevices {
			h.IPv4 = nthAddr(LANPrefix4, 10+i)
			h.IPv6 = nthAddr(LANPrefix6, 10+i)
		}
		if err := l.attach(h, LANBridge, GatewayLAN4, GatewayLAN6, 24); err != nil {
			return err
		}
		l.Devices = append(l.Devices, h)
	}
	for j := 1; j <= cfg.Servers; j++ {
		h := &Host{
			NS:    fmt.Sprintf("%s-srv%d", l.Name, j),
			Iface: "eth0",
			Port:  fmt.Sprintf("wan%d", j),
			MAC:   net.HardwareAddr{0x02, 0, 0, 0, 0x02, byte(j)},
			IPv4:  nthAddr(WANPrefix4, 10+j),
			IPv6:  nthAddr(WANPrefix6, 10+j),
		}
		if err := l.attach(h, WANBridge, GatewayWAN4, GatewayWAN6, 24); err != nil {
			return err
		}
		l.Servers = append(l.Servers, h)
	}
	return nil
}

// attach creates h's namespace and a veth pair between it and the gateway
// bridge, created directly inside the namespaces (never in the root one).
func (l *Lab) attach(h *Host, bridge string, gw4, gw6 netip.Addr, bits4 int) error {
	if err := l.addNS(h.NS); err != nil {
		return err
	}
	gw := l.GW.NS
	steps := [][]string{
		{"-n", gw, "link", "add", h.Port, "type", "veth", "peer", "name", h.Iface, "netns", h.NS},
		{"-n", h.NS, "link", "set", h.Iface, "address", h.MAC.String()},
		{"-n", gw, "link", "set", h.Port, "master", bridge},
		{"-n", gw, "link", "set", h.Port, "up"},
		{"-n", h.NS, "link", "set", "lo", "up"},
		{"-n", h.NS, "link", "set", h.Iface, "up"},
	}
	if h.IPv4.IsValid() {
		steps = append(steps,
			[]string{"-n", h.NS, "addr", "add", fmt.Sprintf("%s/%d", h.IPv4, bits4), "dev", h.Iface},
			[]string{"-n", h.NS, "addr", "add", h.IPv6.String() + "/64", "dev", h.Iface, "nodad"},
			[]string{"-n", h.NS, "route", "add", "default", "via", gw4.String()},
			[]string{"-n", h.NS, "-6", "route", "add", "default", "via", gw6.String()},
		)
	}
	if err := runIPs(steps); err != nil {
		return err
	}
	// Hosts do not autoconfigure from router advertisements unless a test
	// asks for it; DAD off keeps added addresses usable at once.
	return l.Sysctl(h.NS, "net.ipv6.conf.all.accept_dad=0", "net.ipv6.conf."+h.Iface+".accept_dad=0")
}

func (l *Lab) addNS(name string) error {
	if _, err := runCmd(context.Background(), "ip", "netns", "add", name); err != nil {
		return err
	}
	l.mu.Lock()
	l.nses = append(l.nses, name)
	l.mu.Unlock()
	// Give the namespace its own resolv.conf so that a DHCP client script
	// run inside it rewrites that file, not the machine's /etc/resolv.conf
	// (`ip netns exec` bind-mounts /etc/netns/<name>/resolv.conf).
	dir := filepath.Join("/etc/netns", name)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("creating %s: %w", dir, err)
	}
	return os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+GatewayLAN4.String()+"\n"), 0o644)
}

// Close stops the processes the lab started and removes its namespaces
// (which removes their interfaces). It is safe to call more than once.
func (l *Lab) Close() {
	l.mu.Lock()
	procs, nses := l.procs, l.nses
	l.procs, l.nses = nil, nil
	l.mu.Unlock()
	for _, p := range procs {
		stopProcess(p)
	}
	for i := len(nses) - 1; i >= 0; i-- {
		deleteNS(nses[i])
	}
}

func deleteNS(name string) {
	_, _ = runCmd(context.Background(), "ip", "netns", "delete", name)
	_ = os.RemoveAll(filepath.Join("/etc/netns", name))
}

// removeStale deletes lab namespaces left behind by test processes that died
// without cleaning up (their pid is part of the name).
func removeStale() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != nsPrefix {
			continue
		}
		pid, err := strconv.Atoi(parts[1])
		if err != nil || pid == os.Getpid() {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", parts[1])); err == nil {
			continue // still running
		}
		deleteNS(e.Name())
	}
}

// Sysctl sets kernel parameters inside a namespace.
func (l *Lab) Sysctl(ns string, settings ...string) error {
	args := append([]string{"netns", "exec", ns, "sysctl", "-q", "-w"}, settings...)
	_, err := runCmd(context.Background(), "ip", args...)
	return err
}

// Command returns a command that runs name inside namespace ns.
func (l *Lab) Command(ctx context.Context, ns, name string, args ...string) *exec.Cmd {
	return exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Run runs a program inside a namespace and returns its combined output.
func (l *Lab) Run(ctx context.Context, ns, name string, args ...string) (string, error) {
	return runCmd(ctx, "ip", append([]string{"netns", "exec", ns, name}, args...)...)
}

// Start starts a long-running program inside a namespace; the lab stops it
// on Close. Its output goes to the returned buffer.
func (l *Lab) Start(ns, name string, args ...string) (*exec.Cmd, *SyncBuffer, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", ns, name}, args...)...)
	out := &SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return nil, nil, fmt.Errorf("starting %s in %s: %w", name, ns, err)
	}
	l.mu.Lock()
	l.procs = append(l.procs, cmd)
	l.mu.Unlock()
	return cmd, out, nil
}

func stopProcess(cmd *exec.Cmd) {
	if cmd.Process == nil || cmd.ProcessState != nil {
		return
	}
	_ = cmd.Process.Signal(os.Interrupt)
	done := make(chan struct{})
	go func() { _ = cmd.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		_ = cmd.Process.Kill()
		<-done
	}
}

// Do runs fn on an OS thread that has entered namespace ns. Sockets created
// inside fn stay in ns after it returns, so a test can create a listener or
// an nftables connection there and use it from any goroutine.
func Do(ns string, fn func() error) error { return mudns.Do(ns, fn) }

// NSHandle opens a handle on a namespace (e.g. for nftables.WithNetNSFd).
// The caller closes it.
func NSHandle(ns string) (netns.NsHandle, error) {
	h, err := netns.GetFromName(ns)
	if err != nil {
		return h, fmt.Errorf("opening namespace %s: %w", ns, err)
	}
	return h, nil
}

// Listen opens a listener inside a namespace ("tcp", "udp" via ListenPacket
// is separate).
func Listen(ns, network, addr string) (net.Listener, error) {
	var ln net.Listener
	err := Do(ns, func() (err error) {
		ln, err = net.Listen(network, addr)
		return err
	})
	return ln, err
}

// ListenPacket opens a packet listener inside a namespace.
func ListenPacket(ns, network, addr string) (net.PacketConn, error) {
	var pc net.PacketConn
	err := Do(ns, func() (err error) {
		pc, err = net.ListenPacket(network, addr)
		return err
	})
	return pc, err
}

// Dial connects from inside a namespace.
func Dial(ns, network, addr string, timeout time.Duration) (net.Conn, error) {
	var c net.Conn
	err := Do(ns, func() (err error) {
		c, err = net.DialTimeout(network, addr, timeout)
		return err
	})
	return c, err
}

// linkMAC reads an interface's MAC inside a namespace.
func (l *Lab) linkMAC(ns, iface string) net.HardwareAddr {
	var mac net.HardwareAddr
	_ = Do(ns, func() error {
		ifi, err := net.InterfaceByName(iface)
		if err == nil {
			mac = ifi.HardwareAddr
		}
		return err
	})
	return mac
}

func nthAddr(p netip.Prefix, n int) netip.Addr {
	a := p.Addr().AsSlice()
	a[len(a)-1] = byte(n)
	addr, _ := netip.AddrFromSlice(a)
	return addr
}

func runIPs(steps [][]string) error {
	for _, s := range steps {
		if _, err := runCmd(context.Background(), "ip", s...); err != nil {
			return err
		}
	}
	return nil
}

func runCmd(ctx context.Context, name string, args ...string) (string, error) {
	out, err := exec.CommandContext(ctx, name, args...).CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, bytes.TrimSpace(out))
	}
	return string(out), nil
}

// SyncBuffer is a bytes.Buffer safe for a process writing while a test reads.
type SyncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *SyncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

// String returns everything written so far.
func (b *SyncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
