package enforcer

import (
	"context"
	"net"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

// openFlows opens connections (TCP, or UDP sockets connected to the peer)
// from h to each address's port, for each network ("tcp", "udp"), and
// checks that they echo.
func openFlows(t *testing.T, h *netlab.Host, networks []string, port int, addrs ...netip.Addr) []net.Conn {
	t.Helper()
	var cs []net.Conn
	for _, a := range addrs {
		for _, network := range networks {
			c, err := netlab.Dial(h.NS, network, ap(a, port).String(), pass)
			if err != nil {
				t.Fatalf("%s %s: %v", network, a, err)
			}
			t.Cleanup(func() { c.Close() })
			if err := roundTrip(c, pass); err != nil {
				t.Fatalf("%s flow to %s does not work to begin with: %v", network, a, err)
			}
			cs = append(cs, c)
		}
	}
	return cs
}

var (
	tcpOnly = []string{"tcp"}
	udpOnly = []string{"udp"}
	both    = []string{"tcp", "udp"}
)

// flowsEnded checks that no flow echoes any more.
func flowsEnded(t *testing.T, what string, cs []net.Conn) {
	t.Helper()
	for _, c := range cs {
		if err := roundTrip(c, shut); err == nil {
			t.Errorf("%s: the %s flow %s → %s still works", what, c.LocalAddr().Network(), c.LocalAddr(), c.RemoteAddr())
		}
	}
}

// waitFlowsEnded waits until the flows of the devices the last commit
// tightened have been ended (the enforcer ends them right after the commit,
// in a goroutine of its own).
func waitFlowsEnded(t *testing.T, e *Enforcer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := e.FlowsEnded(ctx); err != nil {
		t.Fatalf("waiting for flows to end: %v", err)
	}
}

// flowsWork checks that every flow still echoes.
func flowsWork(t *testing.T, what string, cs []net.Conn) {
	t.Helper()
	for _, c := range cs {
		if err := roundTrip(c, pass); err != nil {
			t.Errorf("%s: the %s flow %s → %s stopped: %v", what, c.LocalAddr().Network(), c.LocalAddr(), c.RemoteAddr(), err)
		}
	}
}

// A device the enforcer did not know was unrestricted: the flows it
// opened end when it is put under rules (here a device without MUD that an
// administrator quarantines), in both IP versions.
func TestFlowsOfNewDeviceEnd(t *testing.T) {
	env := newLabEnv(t)
	d3 := env.dev3
	cs := openFlows(t, d3, both, 8082, env.srv2.IPv4, env.srv2.IPv6)
	d := hostDevice(d3, "")
	d.Mode = Quarantine
	if err := env.e.UpsertDevice(context.Background(), d); err != nil {
		t.Fatal(err)
	}
	waitFlowsEnded(t, env.e)
	flowsEnded(t, "quarantined device without MUD", cs)
}

// A bridged (lateral) flow ends when one of its devices is quarantined, in
// every bridged reply mode: the conntrack entries go (inet-conntrack) and
// so do the flows the bridge table remembered (reflexive).
func TestLateralFlowsEndOnQuarantine(t *testing.T) {
	for _, nfCall := range []bool{false, true} {
		env := newLateralEnv(t, nfCall)
		t.Run(string(env.e.BridgeReplies().IPv4), func(t *testing.T) {
			cs := openFlows(t, env.dev1, tcpOnly, 8080, env.dev2.IPv4, env.dev2.IPv6)
			cs = append(cs, openFlows(t, env.dev1, udpOnly, 8081, env.dev2.IPv4, env.dev2.IPv6)...)
			d := hostDevice(env.dev2, "thing")
			d.Mode = Quarantine
			if err := env.e.UpsertDevice(context.Background(), d); err != nil {
				t.Fatal(err)
			}
			waitFlowsEnded(t, env.e)
			flowsEnded(t, "lateral flows of a quarantined device", cs)
			if out := nftList(t, env.lab.GW.NS, "list", "set", "bridge", "mud", "flows4"); strings.Contains(out, "elements") {
				t.Errorf("flows of the quarantined device still remembered:\n%s", out)
			}
		})
	}
}

// Flushing a device's conntrack entries is safe for what its new rules
// still permit: nf_conntrack_tcp_loose (on by default) picks an open TCP
// connection up again on its next packet. A flow the new policy forbids
// ends.
func TestTightenedPolicyKeepsPermittedConnections(t *testing.T) {
	env := newLabEnv(t)
	var b []byte
	if err := netlab.Do(env.lab.GW.NS, func() (err error) {
		b, err = os.ReadFile("/proc/sys/net/netfilter/nf_conntrack_tcp_loose")
		return err
	}); err != nil || strings.TrimSpace(string(b)) != "1" {
		t.Fatalf("nf_conntrack_tcp_loose in the gateway = %q (%v), want 1", b, err)
	}
	s1 := env.srv1
	tcp := openFlows(t, env.dev1, tcpOnly, 8080, s1.IPv4, s1.IPv6)
	udp := openFlows(t, env.dev1, udpOnly, 8081, s1.IPv4, s1.IPv6)
	p := policyA()
	var kept []policy.Rule
	for _, r := range p.FromDevice {
		if r.Name != "fr/cloud-udp" {
			kept = append(kept, r)
		}
	}
	p.FromDevice = kept
	if err := env.e.SetPolicy(context.Background(), p); err != nil {
		t.Fatal(err)
	}
	waitFlowsEnded(t, env.e)
	flowsWork(t, "TCP 8080, still permitted", tcp)
	flowsEnded(t, "UDP 8081, no longer permitted", udp)
}

// A restarted enforcer that installs what the kernel already holds ends
// no flow; a device the kernel did not hold (unrestricted until then) has
// its flows ended.
func TestRestartEndsOnlyNewDevicesFlows(t *testing.T) {
	env := newLabEnv(t)
	kept := openFlows(t, env.dev1, tcpOnly, 8080, env.srv1.IPv4)
	cut := openFlows(t, env.dev3, both, 8082, env.srv2.IPv4)
	if ctEntries(t, env.lab, env.dev1.IPv4) == 0 || ctEntries(t, env.lab, env.dev3.IPv4) == 0 {
		t.Fatal("no conntrack entries for the open flows")
	}
	env.e.Close()
	e2 := labEnforcer(t, env.lab)
	err := e2.Apply(context.Background(), Desired{
		Policies: []policy.Policy{policyA(), policyB()},
		Devices:  []Device{hostDevice(env.dev1, "cam1"), hostDevice(env.dev2, "hub1"), hostDevice(env.dev3, "hub1")},
		Peers: map[string][]Element{
			"dns:cloud.example": hostElems(env.srv1),
			"model:" + urlA:     hostElems(env.dev1),
			"model:" + urlB:     append(hostElems(env.dev2), hostElems(env.dev3)...),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	waitFlowsEnded(t, e2)
	// Counted before any packet could make new entries.
	if ctEntries(t, env.lab, env.dev1.IPv4) == 0 {
		t.Error("the conntrack entry of a device installed as before is gone")
	}
	if n := ctEntries(t, env.lab, env.dev3.IPv4); n != 0 {
		t.Errorf("%d conntrack entries of a device new to the rules remain", n)
	}
	flowsWork(t, "a device installed as before", kept)
	flowsEnded(t, "a device new to the rules", cut)
}

// ctEntries counts the gateway's conntrack entries from addr.
func ctEntries(t *testing.T, lab *netlab.Lab, addr netip.Addr) int {
	t.Helper()
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	nh, err := vnl.NewHandleAt(h, unix.NETLINK_NETFILTER)
	if err != nil {
		t.Fatal(err)
	}
	defer nh.Close()
	fam := vnl.InetFamily(unix.AF_INET)
	if addr.Is6() {
		fam = unix.AF_INET6
	}
	flows, err := nh.ConntrackTableList(vnl.ConntrackTable, fam)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, f := range flows {
		if a, ok := netip.AddrFromSlice(f.Forward.SrcIP); ok && a.Unmap() == addr {
			n++
		}
	}
	return n
}
