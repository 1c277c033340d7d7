// Package etcdlab runs a real etcd cluster for tests: members of the etcd
// program (/usr/bin/etcd) in a network namespace of their own, on loopback
// inside it, speaking TLS to clients and to each other with certificates of a
// labpki CA, client certificates required. Clients reach it through Dialer,
// which connects from inside the namespace with a source address of the
// caller's choosing (127.0.0.10, 127.0.0.11, ...), so that Partition can cut
// one client off with an nftables rule while the others keep talking.
//
// Programs in other namespaces (a gateway lab's mudd) reach the members
// through Attach: a veth pair into the cluster's namespace, over which the
// members also listen on ServiceAddr (198.51.100.1), each on its own port.
//
// It is for tests only. Nothing is configured in the root namespace; Close
// (registered with t.Cleanup) stops the members and removes the namespace
// (and with it the attachments' veth pairs).
package etcdlab

import (
	"context"
	"crypto/tls"
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
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/openmud/mud/internal/lab/netlab"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

const (
	nftTable = "etcdlab"
	nsPrefix = "mudetcd"
)

// ServiceAddr is the address, on the cluster namespace's loopback, on
// which the members also listen for clients in attached namespaces.
var ServiceAddr = netip.MustParseAddr("198.51.100.1")

// attachNet holds the attachments' point-to-point links: a /30 each.
var attachNet = netip.MustParsePrefix("198.51.100.64/26")

// removeStale deletes lab namespaces of test processes that died without
// cleaning up (their pid is part of the name), killing the etcd members
// still running in them first.
func removeStale() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != nsPrefix || parts[1] == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", parts[1])); err == nil {
			continue // still running
		}
		if out, err := exec.Command("ip", "netns", "pids", e.Name()).Output(); err == nil {
			for _, f := range strings.Fields(string(out)) {
				if pid, err := strconv.Atoi(f); err == nil && pid > 1 {
					_ = syscall.Kill(pid, syscall.SIGKILL)
				}
			}
		}
		_ = run("ip", "netns", "delete", e.Name())
		_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
	}
}

// Member is one etcd process.
type Member struct {
	Name      string
	ClientURL string
	PeerURL   string
	dataDir   string
	args      []string
	cmd       *exec.Cmd
	out       *netlab.SyncBuffer
}

// Cluster is a running cluster.
type Cluster struct {
	NS      string
	CA      *labpki.CA
	Dir     string
	Members []*Member

	mu       sync.Mutex
	attached int
}

var seq atomic.Int64

// Start runs an n-member cluster and waits until every member answers.
func Start(t testing.TB, n int) *Cluster {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "etcd", "etcdctl")
	removeStale()
	c := &Cluster{NS: fmt.Sprintf("%s-%d-%d", nsPrefix, os.Getpid(), seq.Add(1)), Dir: t.TempDir()}
	t.Cleanup(c.Close)
	if err := c.build(n); err != nil {
		t.Fatalf("etcdlab: %v", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := c.WaitHealthy(ctx); err != nil {
		t.Fatalf("etcdlab: %v\n%s", err, c.Logs())
	}
	return c
}

func run(name string, args ...string) error {
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

func (c *Cluster) build(n int) error {
	if err := run("ip", "netns", "add", c.NS); err != nil {
		return err
	}
	dir := filepath.Join("/etc/netns", c.NS)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver 127.0.0.1\n"), 0o644); err != nil {
		return err
	}
	if err := run("ip", "-n", c.NS, "link", "set", "lo", "up"); err != nil {
		return err
	}
	if err := run("ip", "-n", c.NS, "addr", "add", ServiceAddr.String()+"/32", "dev", "lo"); err != nil {
		return err
	}
	// An nftables table for Partition: a chain on input, which every
	// packet on loopback passes once, and one on output for what the
	// members send over an attachment's veth.
	for _, args := range [][]string{
		{"add", "table", "inet", nftTable},
		{"add", "chain", "inet", nftTable, "cut", "{ type filter hook input priority 0 ; policy accept ; }"},
		{"add", "chain", "inet", nftTable, "cutout", "{ type filter hook output priority 0 ; policy accept ; }"},
	} {
		if err := run("ip", append([]string{"netns", "exec", c.NS, "nft"}, args...)...); err != nil {
			return err
		}
	}
	ca, err := labpki.NewCA("etcdlab")
	if err != nil {
		return err
	}
	c.CA = ca
	if err := ca.WriteRootPEM(filepath.Join(c.Dir, "ca.pem")); err != nil {
		return err
	}
	peer, err := ca.Peer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1), ServiceAddr.AsSlice()})
	if err != nil {
		return err
	}
	if err := peer.WritePEM(filepath.Join(c.Dir, "member.pem"), filepath.Join(c.Dir, "member.key")); err != nil {
		return err
	}
	var initial []string
	for i := range n {
		m := &Member{
			Name:      fmt.Sprintf("m%d", i+1),
			ClientURL: fmt.Sprintf("https://127.0.0.1:%d", 2379+10*i),
			PeerURL:   fmt.Sprintf("https://127.0.0.1:%d", 2380+10*i),
			dataDir:   filepath.Join(c.Dir, fmt.Sprintf("m%d", i+1)),
		}
		c.Members = append(c.Members, m)
		initial = append(initial, m.Name+"="+m.PeerURL)
	}
	ca0, cert, key := filepath.Join(c.Dir, "ca.pem"), filepath.Join(c.Dir, "member.pem"), filepath.Join(c.Dir, "member.key")
	for _, m := range c.Members {
		m.args = []string{
			"--name", m.Name, "--data-dir", m.dataDir,
			"--listen-client-urls", m.ClientURL + "," + m.serviceURL(), "--advertise-client-urls", m.ClientURL,
			"--listen-peer-urls", m.PeerURL, "--initial-advertise-peer-urls", m.PeerURL,
			"--initial-cluster", strings.Join(initial, ","), "--initial-cluster-state", "new",
			"--initial-cluster-token", c.NS,
			"--cert-file", cert, "--key-file", key, "--trusted-ca-file", ca0, "--client-cert-auth",
			"--peer-cert-file", cert, "--peer-key-file", key, "--peer-trusted-ca-file", ca0, "--peer-client-cert-auth",
			"--heartbeat-interval", "100", "--election-timeout", "1000",
			"--logger", "zap", "--log-level", "warn",
		}
		if err := c.startMember(m); err != nil {
			return err
		}
	}
	return nil
}

func (c *Cluster) startMember(m *Member) error {
	cmd := exec.Command("ip", append([]string{"netns", "exec", c.NS, "etcd"}, m.args...)...)
	out := &netlab.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		return fmt.Errorf("starting etcd %s: %w", m.Name, err)
	}
	c.mu.Lock()
	m.cmd, m.out = cmd, out
	c.mu.Unlock()
	return nil
}

// Close stops every member and removes the namespace. Safe to call twice.
func (c *Cluster) Close() {
	for i := range c.Members {
		c.StopMember(i)
	}
	if c.NS != "" {
		_ = run("ip", "netns", "delete", c.NS)
		_ = os.RemoveAll(filepath.Join("/etc/netns", c.NS))
	}
}

// StopMember stops member i (SIGTERM, then SIGKILL after 3 s).
func (c *Cluster) StopMember(i int) {
	c.mu.Lock()
	cmd := c.Members[i].cmd
	c.Members[i].cmd = nil
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
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

func (c *Cluster) running(i int) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.Members[i].cmd != nil
}

// KillMember kills member i with SIGKILL: no leadership transfer, the
// others notice only when its heartbeats stop.
func (c *Cluster) KillMember(i int) {
	c.mu.Lock()
	cmd := c.Members[i].cmd
	c.Members[i].cmd = nil
	c.mu.Unlock()
	if cmd == nil || cmd.Process == nil {
		return
	}
	_ = cmd.Process.Kill()
	_ = cmd.Wait()
}

// RestartMember starts a stopped member again on its data directory.
func (c *Cluster) RestartMember(i int) error { return c.startMember(c.Members[i]) }

// serviceURL is the member's client URL on ServiceAddr (same port).
func (m *Member) serviceURL() string {
	_, port, _ := strings.Cut(strings.TrimPrefix(m.ClientURL, "https://"), ":")
	return "https://" + netip.AddrPortFrom(ServiceAddr, mustPort(port)).String()
}

func mustPort(s string) uint16 {
	p, err := strconv.ParseUint(s, 10, 16)
	if err != nil {
		panic(fmt.Sprintf("etcdlab: port %q: %v", s, err))
	}
	return uint16(p)
}

// Attach connects network namespace ns to the cluster: a veth pair (ifname
// in ns, a /30 of 198.51.100.64/26) and a route to ServiceAddr. It returns
// the members' client URLs as seen from ns, and the address ns's
// connections come from (for Partition). Up to 16 namespaces can be
// attached; the pair goes with either namespace.
func (c *Cluster) Attach(ns, ifname string) (endpoints []string, src netip.Addr, err error) {
	c.mu.Lock()
	i := c.attached
	c.attached++
	c.mu.Unlock()
	if i >= 16 {
		return nil, netip.Addr{}, fmt.Errorf("etcdlab: attaching %s: all 16 links are taken", ns)
	}
	base := attachNet.Addr().As4()
	base[3] += byte(4 * i)
	here, there := base, base
	here[3]++
	there[3] += 2
	hereA, thereA := netip.AddrFrom4(here), netip.AddrFrom4(there)
	peer := fmt.Sprintf("att%d", i)
	for _, args := range [][]string{
		{"-n", c.NS, "link", "add", peer, "type", "veth", "peer", "name", ifname, "netns", ns},
		{"-n", c.NS, "addr", "add", hereA.String() + "/30", "dev", peer},
		{"-n", c.NS, "link", "set", peer, "up"},
		{"-n", ns, "addr", "add", thereA.String() + "/30", "dev", ifname},
		{"-n", ns, "link", "set", ifname, "up"},
		{"-n", ns, "route", "add", ServiceAddr.String() + "/32", "via", hereA.String(), "dev", ifname},
	} {
		if err := run("ip", args...); err != nil {
			return nil, netip.Addr{}, fmt.Errorf("etcdlab: attaching %s: %w", ns, err)
		}
	}
	for _, m := range c.Members {
		endpoints = append(endpoints, m.serviceURL())
	}
	return endpoints, thereA, nil
}

// Endpoints are the members' client URLs.
func (c *Cluster) Endpoints() []string {
	var eps []string
	for _, m := range c.Members {
		eps = append(eps, m.ClientURL)
	}
	return eps
}

// Logs is every member's output, for a failing test.
func (c *Cluster) Logs() string {
	var b strings.Builder
	for _, m := range c.Members {
		if m.out != nil {
			fmt.Fprintf(&b, "--- etcd %s ---\n%s\n", m.Name, m.out.String())
		}
	}
	return b.String()
}

// ClientTLS issues a client certificate for user (its common name is the
// etcd user name) and returns a TLS configuration with it.
func (c *Cluster) ClientTLS(user string) (*tls.Config, error) {
	leaf, err := c.CA.Client(user)
	if err != nil {
		return nil, err
	}
	return &tls.Config{
		Certificates: []tls.Certificate{leaf.TLSCertificate()},
		RootCAs:      c.CA.Pool(),
		MinVersion:   tls.VersionTLS12,
	}, nil
}

// ClientFiles writes a client certificate and key for user into the lab
// directory, for etcdctl and configuration files; it returns their paths
// and the CA's.
func (c *Cluster) ClientFiles(user string) (cert, key, ca string, err error) {
	leaf, err := c.CA.Client(user)
	if err != nil {
		return "", "", "", err
	}
	cert, key = filepath.Join(c.Dir, user+".pem"), filepath.Join(c.Dir, user+".key")
	return cert, key, filepath.Join(c.Dir, "ca.pem"), leaf.WritePEM(cert, key)
}

// Source is the loopback source address of client i (127.0.0.10+i).
func Source(i int) netip.Addr { return netip.AddrFrom4([4]byte{127, 0, 0, byte(10 + i)}) }

// Dialer connects to members from inside the namespace, from src.
func (c *Cluster) Dialer(src netip.Addr) func(ctx context.Context, addr string) (net.Conn, error) {
	return func(ctx context.Context, addr string) (net.Conn, error) {
		var conn net.Conn
		err := netlab.Do(c.NS, func() (err error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: src.AsSlice()}}
			conn, err = d.DialContext(ctx, "tcp", strings.TrimPrefix(strings.TrimPrefix(addr, "https://"), "unix://"))
			return err
		})
		return conn, err
	}
}

// Partition drops every packet to and from src until Heal.
func (c *Cluster) Partition(src netip.Addr) error {
	for _, rule := range [][2]string{{"cut", "saddr"}, {"cut", "daddr"}, {"cutout", "daddr"}} {
		if err := run("ip", "netns", "exec", c.NS, "nft", "add", "rule", "inet", nftTable, rule[0], "ip", rule[1], src.String(), "drop"); err != nil {
			return err
		}
	}
	return nil
}

// Heal removes every partition.
func (c *Cluster) Heal() error {
	for _, chain := range []string{"cut", "cutout"} {
		if err := run("ip", "netns", "exec", c.NS, "nft", "flush", "chain", "inet", nftTable, chain); err != nil {
			return err
		}
	}
	return nil
}

// AdminClient is an etcd client as user (normally "root"), from 127.0.0.2.
func (c *Cluster) AdminClient(user string) (*clientv3.Client, error) {
	tc, err := c.ClientTLS(user)
	if err != nil {
		return nil, err
	}
	return clientv3.New(clientv3.Config{
		Endpoints:   c.Endpoints(),
		TLS:         tc,
		DialOptions: []grpc.DialOption{grpc.WithContextDialer(c.Dialer(netip.AddrFrom4([4]byte{127, 0, 0, 2})))},
		Logger:      zap.NewNop(),
	})
}

// WaitHealthy waits until every running member reports a leader.
func (c *Cluster) WaitHealthy(ctx context.Context) error {
	cli, err := c.AdminClient("root")
	if err != nil {
		return err
	}
	defer cli.Close()
	for {
		ok := true
		for i, m := range c.Members {
			if !c.running(i) {
				continue
			}
			sctx, cancel := context.WithTimeout(ctx, time.Second)
			st, err := cli.Status(sctx, m.ClientURL)
			cancel()
			if err != nil || st.Leader == 0 {
				ok = false
			}
		}
		if ok {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("cluster not healthy: %w", ctx.Err())
		case <-time.After(200 * time.Millisecond):
		}
	}
}

// Leader returns the index of the member that leads.
func (c *Cluster) Leader(ctx context.Context) (int, error) {
	cli, err := c.AdminClient("root")
	if err != nil {
		return -1, err
	}
	defer cli.Close()
	for i, m := range c.Members {
		if !c.running(i) {
			continue
		}
		st, err := cli.Status(ctx, m.ClientURL)
		if err != nil {
			continue
		}
		if st.Header.MemberId == st.Leader {
			return i, nil
		}
	}
	return -1, fmt.Errorf("no member reports itself leader")
}

// Etcdctl runs etcdctl inside the namespace as user, against every
// member, and returns its combined output.
func (c *Cluster) Etcdctl(ctx context.Context, user string, args ...string) (string, error) {
	cert, key, ca, err := c.ClientFiles(user)
	if err != nil {
		return "", err
	}
	full := append([]string{"netns", "exec", c.NS, "etcdctl",
		"--endpoints", strings.Join(c.Endpoints(), ","), "--cacert", ca, "--cert", cert, "--key", key}, args...)
	cmd := exec.CommandContext(ctx, "ip", full...)
	cmd.Env = append(os.Environ(), "ETCDCTL_API=3")
	out, err := cmd.CombinedOutput()
	if err != nil {
		return string(out), fmt.Errorf("etcdctl %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return string(out), nil
}
