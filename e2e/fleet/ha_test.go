package fleete2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// The HA pair: two gateways on one LAN segment (a switch namespace whose
// bridge joins the gateways' br-lan and the devices), keepalived (VRRP,
// RFC 5798) holding the virtual gateway address 192.0.2.1 on the active
// one. Each gateway has its real address (192.0.2.2, 192.0.2.3); the
// devices' default route and DNS server are the virtual address. Only the
// active gateway's dnsmasq answers DHCP (the standby's ignores every
// client); the devices ask for broadcast replies, so the standby's mudd
// sees every lease too. Both share decisions through etcd.
var (
	vip       = netip.MustParseAddr("192.0.2.1")
	realAddrs = []netip.Addr{netip.MustParseAddr("192.0.2.2"), netip.MustParseAddr("192.0.2.3")}
	haSeq     atomic.Int64
)

func ipCmd(args ...string) error {
	out, err := exec.Command("ip", args...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("ip %s: %w: %s", strings.Join(args, " "), err, out)
	}
	return nil
}

// segment is the switch namespace and the devices on it.
type segment struct {
	sw   string
	devs []*netlab.Host
}

// removeStaleSegments deletes the namespaces of segments whose test
// process died without cleaning up (its pid is part of the name).
func removeStaleSegments() {
	entries, err := os.ReadDir("/var/run/netns")
	if err != nil {
		return
	}
	for _, e := range entries {
		parts := strings.SplitN(e.Name(), "-", 3)
		if len(parts) < 3 || parts[0] != "mudha" || parts[1] == strconv.Itoa(os.Getpid()) {
			continue
		}
		if _, err := os.Stat(filepath.Join("/proc", parts[1])); err == nil {
			continue // still running
		}
		_ = ipCmd("netns", "delete", e.Name())
		_ = os.RemoveAll(filepath.Join("/etc/netns", e.Name()))
	}
}

// newSegment creates the switch and n device namespaces (device i with
// the MAC netlab gives device i), removed at the end of the test.
func newSegment(t *testing.T, n int) *segment {
	t.Helper()
	removeStaleSegments()
	base := fmt.Sprintf("mudha-%d-%d", os.Getpid(), haSeq.Add(1))
	s := &segment{sw: base + "-sw"}
	var nses []string
	t.Cleanup(func() {
		for i := len(nses) - 1; i >= 0; i-- {
			_ = ipCmd("netns", "delete", nses[i])
			_ = os.RemoveAll(filepath.Join("/etc/netns", nses[i]))
		}
	})
	addNS := func(name string) {
		if err := ipCmd("netns", "add", name); err != nil {
			t.Fatal(err)
		}
		nses = append(nses, name)
		dir := filepath.Join("/etc/netns", name)
		if err := os.MkdirAll(dir, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "resolv.conf"), []byte("nameserver "+vip.String()+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	addNS(s.sw)
	steps := [][]string{
		{"-n", s.sw, "link", "set", "lo", "up"},
		{"-n", s.sw, "link", "add", "br0", "type", "bridge", "forward_delay", "0", "stp_state", "0", "mcast_snooping", "0"},
		{"-n", s.sw, "link", "set", "br0", "up"},
	}
	for i := 1; i <= n; i++ {
		h := &netlab.Host{NS: fmt.Sprintf("%s-dev%d", base, i), Iface: "eth0", Port: fmt.Sprintf("d%d", i),
			MAC: net.HardwareAddr{0x02, 0, 0, 0, 0x01, byte(i)}}
		addNS(h.NS)
		steps = append(steps,
			[]string{"-n", s.sw, "link", "add", h.Port, "type", "veth", "peer", "name", h.Iface, "netns", h.NS},
			[]string{"-n", h.NS, "link", "set", h.Iface, "address", h.MAC.String()},
			[]string{"-n", s.sw, "link", "set", h.Port, "master", "br0"},
			[]string{"-n", s.sw, "link", "set", h.Port, "up"},
			[]string{"-n", h.NS, "link", "set", "lo", "up"},
			[]string{"-n", h.NS, "link", "set", h.Iface, "up"},
		)
		s.devs = append(s.devs, h)
	}
	for _, st := range steps {
		if err := ipCmd(st...); err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// plug connects gateway g's br-lan to the switch (port "sw" there, gwN
// on the switch) and gives it its real LAN address in place of the lab's
// 192.0.2.1, which becomes the virtual one.
func (s *segment) plug(t *testing.T, g *gateway, i int, real netip.Addr) {
	t.Helper()
	ns := g.lab.GW.NS
	port := fmt.Sprintf("gw%d", i)
	for _, st := range [][]string{
		{"-n", ns, "addr", "del", netlab.GatewayLAN4.String() + "/24", "dev", netlab.LANBridge},
		{"-n", ns, "-6", "addr", "flush", "dev", netlab.LANBridge, "scope", "global"},
		{"-n", ns, "addr", "add", real.String() + "/24", "dev", netlab.LANBridge},
		{"-n", s.sw, "link", "add", port, "type", "veth", "peer", "name", "sw", "netns", ns},
		{"-n", s.sw, "link", "set", port, "master", "br0"},
		{"-n", s.sw, "link", "set", port, "up"},
		{"-n", ns, "link", "set", "sw", "master", netlab.LANBridge},
		{"-n", ns, "link", "set", "sw", "up"},
	} {
		if err := ipCmd(st...); err != nil {
			t.Fatal(err)
		}
	}
}

// keepalived runs VRRP for the virtual address on g, with priority prio,
// talking to its peer by unicast.
func keepalived(t *testing.T, g *gateway, prio int, self, peer netip.Addr) *exec.Cmd {
	t.Helper()
	dir := t.TempDir()
	conf := fmt.Sprintf(`global_defs {
	router_id %s
	vrrp_version 3
	enable_script_security
	script_user root
}
vrrp_instance lan {
	state BACKUP
	interface %s
	virtual_router_id 51
	priority %d
	advert_int 0.2
	unicast_src_ip %s
	unicast_peer {
		%s
	}
	virtual_ipaddress {
		%s/24 dev %s
	}
}
`, g.id, netlab.LANBridge, prio, self, peer, vip, netlab.LANBridge)
	path := filepath.Join(dir, "keepalived.conf")
	if err := os.WriteFile(path, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	cmd, out, err := g.lab.Start(g.lab.GW.NS, "keepalived", "--dont-fork", "--log-console", "--log-detail", "--vrrp",
		"--use-file="+path, "--pid="+filepath.Join(dir, "keepalived.pid"), "--vrrp_pid="+filepath.Join(dir, "vrrp.pid"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- keepalived of %s ---\n%s", g.id, out)
		}
	})
	return cmd
}

// holdsVIP reports whether the virtual address is on g's br-lan.
func holdsVIP(ctx context.Context, g *gateway) bool {
	out, err := g.lab.Run(ctx, g.lab.GW.NS, "ip", "-4", "-o", "addr", "show", "dev", netlab.LANBridge)
	return err == nil && strings.Contains(out, " "+vip.String()+"/")
}

// An HA pair of gateways: keepalived moves the virtual gateway address to
// the standby when the active gateway dies (mudd killed with SIGKILL,
// VRRP gone, its LAN link down), and the standby, which followed the
// devices' leases and took the administrator's approval from etcd, then
// forwards their traffic and enforces their MUD policy: the permitted
// flow works through it, another port is refused.
func TestHAPairStandbyEnforces(t *testing.T) {
	netlab.RequireCommand(t, "keepalived")
	f := newCluster(t)
	seg := newSegment(t, 1)
	active := f.addGateway("ha-a", 0, func(c *gwlab.Config) {
		// The only DHCP server; the router and DNS server it hands out
		// are the virtual address.
		c.DNSMasqArgs = []string{"--dhcp-option=3," + vip.String(), "--dhcp-option=6," + vip.String()}
	})
	standby := f.addGateway("ha-b", 0, func(c *gwlab.Config) {
		// DNS for when it is active; no DHCP.
		c.DNSMasqArgs = []string{"--dhcp-ignore=tag:!known"}
	})
	seg.plug(t, active, 0, realAddrs[0])
	seg.plug(t, standby, 1, realAddrs[1])
	ka := keepalived(t, active, 200, realAddrs[0], realAddrs[1])
	keepalived(t, standby, 100, realAddrs[1], realAddrs[0])
	if err := gwlab.Poll(f.ctx, 10*time.Second, func() error {
		if !holdsVIP(f.ctx, active) || holdsVIP(f.ctx, standby) {
			return fmt.Errorf("the virtual address is not on %s alone", active.id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}

	h := seg.devs[0]
	mac := h.MAC.String()
	// -B: broadcast replies, which the standby sees.
	d, err := active.gw.Join(h, gwlab.Udhcpc, "bulb", bulbURL, "-B")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := d.WaitAddr(f.ctx, joinWait, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*gateway{active, standby} {
		if _, err := g.gw.WaitState(f.ctx, mac, api.StatePendingApproval, joinWait); err != nil {
			t.Fatalf("%s: %v", g.id, err)
		}
	}
	if _, err := active.gw.Mudctl(f.ctx, "approve", mac); err != nil {
		t.Fatal(err)
	}
	for _, g := range []*gateway{active, standby} {
		if _, err := g.gw.WaitState(f.ctx, mac, api.StateEnforced, 10*time.Second); err != nil {
			t.Fatalf("%s: %v", g.id, err)
		}
	}
	check := func(when string) {
		t.Helper()
		cloud, err := gwlab.Resolve(f.ctx, h.NS, cloudHost)
		if err != nil {
			t.Fatalf("%s: resolving %s: %v", when, cloudHost, err)
		}
		err = gwlab.Poll(f.ctx, passWait, func() error { return netlab.TCPEcho(h.NS, netlab.HostPort(cloud, permitted), time.Second) })
		netlab.MustPass(t, when+": bulb → cloud:443", err)
		netlab.MustDrop(t, when+": bulb → other:8080", netlab.TCPEcho(h.NS, netlab.HostPort(active.other, otherPort), refuseWait))
	}
	check("through the active gateway")

	// The active gateway dies: its LAN link first, so that nothing it
	// does while its processes go (a VRRP priority-0 advertisement) is
	// heard.
	if err := ipCmd("-n", active.lab.GW.NS, "link", "set", "sw", "down"); err != nil {
		t.Fatal(err)
	}
	died := time.Now()
	if err := active.gw.KillMudd(); err != nil {
		t.Fatal(err)
	}
	_ = ka.Process.Signal(syscall.SIGKILL)
	_ = ka.Wait()
	if err := gwlab.Poll(f.ctx, 10*time.Second, func() error {
		if !holdsVIP(f.ctx, standby) {
			return fmt.Errorf("%s does not hold the virtual address", standby.id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	t.Logf("the standby took the virtual address %v after the active gateway died", time.Since(died))
	check("through the standby")
	t.Logf("the standby forwarded the permitted flow %v after the active gateway died", time.Since(died))
	if dv, ok, err := standby.gw.Device(f.ctx, mac); err != nil || !ok || dv.State != api.StateEnforced {
		t.Errorf("the standby lists the device as %+v (listed %v, %v)", dv.State, ok, err)
	}
}
