package enforcer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// Lateral traffic between devices of one manufacturer (RFC 8520 §4.1,
// same-manufacturer): TCP 8080, UDP 8081 and ping towards the peer, the
// same to-device. A permitted flow's replies are not in the policies: they
// must pass because the flow was permitted, as they do routed.
const (
	mfgA = "things.example"
	mfgB = "other.example"
)

func lateralPolicy(id, mfg string) policy.Policy {
	peer := policy.Peer{Kind: policy.Manufacturer, Value: mfg}
	rules := func(to bool) []policy.Rule {
		dir := "fr/"
		if to {
			dir = "to/"
		}
		return []policy.Rule{
			{Name: dir + "tcp-8080", Peer: peer, Protocol: policy.ProtoTCP, DstPort: u16(8080), Verdict: policy.Accept},
			{Name: dir + "udp-8081", Peer: peer, Protocol: policy.ProtoUDP, DstPort: u16(8081), Verdict: policy.Accept},
			{Name: dir + "ping4", Peer: peer, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 8}, Verdict: policy.Accept},
			{Name: dir + "ping6", Peer: peer, Protocol: policy.ProtoICMPv6, ICMP: &policy.ICMPMatch{Type: 128}, Verdict: policy.Accept},
		}
	}
	return policy.Policy{ID: id, MUDURL: "https://" + mfg + "/" + id, FromDevice: rules(false), ToDevice: rules(true)}
}

// lateralEnv: dev1 and dev2 of manufacturer A, dev3 without MUD, dev4 of
// manufacturer B with the same kind of policy. nfCall sets
// bridge-nf-call-iptables and -ip6tables in the gateway before the
// enforcer starts (netlab sets them to 0).
type lateralEnv struct {
	*labEnv
	dev4 *netlab.Host
}

func newLateralEnv(t *testing.T, nfCall bool, opts ...func(*Config)) *lateralEnv {
	t.Helper()
	lab := netlab.New(t, netlab.Config{Devices: 4, Servers: 1, StaticDevices: true})
	if nfCall {
		if err := lab.Sysctl(lab.GW.NS, "net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"); err != nil {
			t.Fatal(err)
		}
	}
	e := labEnforcer(t, lab, append([]func(*Config){func(c *Config) { c.RepairInterval = 100 * time.Millisecond }}, opts...)...)
	env := &lateralEnv{labEnv: &labEnv{lab: lab, e: e, dev1: lab.Devices[0], dev2: lab.Devices[1], dev3: lab.Devices[2], srv1: lab.Servers[0]},
		dev4: lab.Devices[3]}
	for _, h := range lab.Devices {
		for _, port := range []string{"[::]:8080", "[::]:8081", "[::]:9090"} {
			echo, err := netlab.ServeEcho(h.NS, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(echo.Close)
		}
	}
	err := e.Apply(context.Background(), Desired{
		Policies: []policy.Policy{lateralPolicy("thing", mfgA), lateralPolicy("other", mfgB)},
		Devices:  []Device{hostDevice(env.dev1, "thing"), hostDevice(env.dev2, "thing"), hostDevice(env.dev4, "other")},
		Peers: map[string][]Element{
			"manufacturer:" + mfgA: append(hostElems(env.dev1), hostElems(env.dev2)...),
			"manufacturer:" + mfgB: hostElems(env.dev4),
		},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	waitFlowsEnded(t, e)
	return env
}

// checkLateral probes the lateral policies in both IP versions.
func (env *lateralEnv) checkLateral(t *testing.T) {
	t.Helper()
	d1, d2, d3, d4 := env.dev1, env.dev2, env.dev3, env.dev4
	for _, v6 := range []bool{false, true} {
		addr := func(h *netlab.Host) netip.Addr {
			if v6 {
				return h.IPv6
			}
			return h.IPv4
		}
		a1, a2 := addr(d1), addr(d2)
		netlab.MustPass(t, "dev1 → dev2 tcp 8080 "+a2.String(), netlab.TCPEcho(d1.NS, ap(a2, 8080), pass))
		netlab.MustPass(t, "dev2 → dev1 tcp 8080 "+a1.String(), netlab.TCPEcho(d2.NS, ap(a1, 8080), pass))
		netlab.MustPass(t, "dev1 → dev2 udp 8081 "+a2.String(), netlab.UDPEcho(d1.NS, ap(a2, 8081), pass))
		netlab.MustPass(t, "dev1 ping dev2 "+a2.String(), netlab.Ping(d1.NS, a2, pass))
		netlab.MustDrop(t, "dev1 → dev2 tcp 9090 (another port) "+a2.String(), netlab.TCPEcho(d1.NS, ap(a2, 9090), shut))
		netlab.MustDrop(t, "dev1 → dev2 udp 8080 (another protocol) "+a2.String(), netlab.UDPEcho(d1.NS, ap(a2, 8080), shut))
		// to-device alone: a device without MUD
		netlab.MustDrop(t, "no-MUD dev3 → dev2 tcp 8080 "+a2.String(), netlab.TCPEcho(d3.NS, ap(a2, 8080), shut))
		netlab.MustDrop(t, "no-MUD dev3 ping dev2 "+a2.String(), netlab.Ping(d3.NS, a2, shut))
		// from-device alone: towards a device without MUD
		netlab.MustDrop(t, "dev1 → no-MUD dev3 tcp 8080 "+addr(d3).String(), netlab.TCPEcho(d1.NS, ap(addr(d3), 8080), shut))
		// another manufacturer, both ways
		netlab.MustDrop(t, "other manufacturer dev4 → dev2 tcp 8080 "+a2.String(), netlab.TCPEcho(d4.NS, ap(a2, 8080), shut))
		netlab.MustDrop(t, "dev1 → other manufacturer dev4 tcp 8080 "+addr(d4).String(), netlab.TCPEcho(d1.NS, ap(addr(d4), 8080), shut))
	}
	// The source guard: dev1 from an address not bound to it.
	for _, p := range []string{"192.0.2.98/24", "2001:db8:1::98/64"} {
		pfx := netip.MustParsePrefix(p)
		if _, err := env.lab.Run(context.Background(), d1.NS, "ip", "addr", "add", p, "dev", "eth0", "nodad"); err != nil {
			t.Fatal(err)
		}
		dst := d2.IPv4
		if pfx.Addr().Is6() {
			dst = d2.IPv6
		}
		err := netlab.Do(d1.NS, func() error {
			dl := net.Dialer{Timeout: shut, LocalAddr: &net.TCPAddr{IP: pfx.Addr().AsSlice()}}
			c, err := dl.Dial("tcp", ap(dst, 8080).String())
			if err == nil {
				c.Close()
			}
			return err
		})
		netlab.MustDrop(t, "dev1 → dev2 tcp 8080 from the unbound "+pfx.Addr().String(), err)
		if _, err := env.lab.Run(context.Background(), d1.NS, "ip", "addr", "del", p, "dev", "eth0"); err != nil {
			t.Fatal(err)
		}
	}
}

func wantModes(t *testing.T, e *Enforcer, want ReplyMode) {
	t.Helper()
	if got := e.BridgeReplies(); got.IPv4 != want || got.IPv6 != want {
		t.Fatalf("BridgeReplies = %v, want %s for both", got, want)
	}
}

// Without conntrack for bridged traffic and without br_netfilter passing
// it up, the bridge table remembers the flows it accepted: replies pass,
// and everything the policies refuse stays refused.
func TestBridgedRepliesReflexive(t *testing.T) {
	env := newLateralEnv(t, false)
	wantModes(t, env.e, ReplyReflexive)
	env.checkLateral(t)
	out := nftList(t, env.lab.GW.NS, "list", "set", "bridge", "mud", "flows4")
	if !strings.Contains(out, "flags dynamic,timeout") || !strings.Contains(out, "elements") {
		t.Errorf("no remembered IPv4 flows after the lateral traffic:\n%s", out)
	}
}

// br_netfilter passes bridged IP to the inet hooks (the kernel's default
// in a new namespace): the inet table, with conntrack, judges bridged
// device ↔ device traffic, and alone: the checks hold with table bridge
// mud deleted.
func TestBridgedRepliesInetConntrack(t *testing.T) {
	env := newLateralEnv(t, true)
	wantModes(t, env.e, ReplyInetConntrack)
	env.checkLateral(t)
	if out := nftList(t, env.lab.GW.NS, "list", "chain", "bridge", "mud", "to_inet"); !strings.Contains(out, "ether type ip accept") || !strings.Contains(out, "ether type ip6 accept") {
		t.Errorf("the bridge table does not leave bridged IP to the inet table:\n%s", out)
	}
	nftList(t, env.lab.GW.NS, "delete", "table", "bridge", "mud")
	t.Run("inet table alone", env.checkLateral)
}

// VLAN-tagged frames: br_netfilter passes them to the inet hooks only with
// bridge-nf-filter-vlan-tagged, so without it the bridge table judges
// them; with it, the inet table does. A VLAN-filtering bridge can take a
// frame's tag off after br_netfilter looked at it: there the bridge table
// judges everything (reflexive mode). Frames are made by hand (the lab
// kernel has no 802.1Q devices) and counted at dev2.
func TestBridgedVLANFrames(t *testing.T) {
	env := newLateralEnv(t, true)
	ctx := context.Background()
	d1, d2 := env.dev1, env.dev2
	netlab.MustPass(t, "dev1 → dev2 (the bridge learns the MACs)", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 8080), pass))
	netlab.MustPass(t, "dev2 → dev1 (the bridge learns the MACs)", netlab.TCPEcho(d2.NS, ap(d1.IPv6, 8080), pass))
	sport := uint16(40000)
	probe := func(what string, want ReplyMode) {
		t.Helper()
		if err := env.e.checkAndRepair(ctx, false); err != nil {
			t.Fatal(err)
		}
		wantModes(t, env.e, want)
		ok, refused := countTCP(t, d2, 8080), countTCP(t, d2, 9090)
		for _, v6 := range []bool{false, true} {
			src, dst := d1.IPv4, d2.IPv4
			if v6 {
				src, dst = d1.IPv6, d2.IPv6
			}
			for _, port := range []uint16{8080, 9090} {
				sport++
				sendFrames(t, d1, tcpProbe{srcMAC: d1.MAC, dstMAC: d2.MAC, vlan: 10, src: src, dst: dst, sport: sport, dport: port, flags: tcpSYN}.frame())
			}
		}
		settle()
		if n := ok.count(tcpSYN); n != 2 {
			t.Errorf("%s: %d of 2 tagged SYNs to the permitted port 8080 arrived", what, n)
		}
		if n := refused.count(tcpSYN); n != 0 {
			t.Errorf("%s: %d tagged SYNs to the refused port 9090 arrived", what, n)
		}
		ok.close()
		refused.close()
	}
	probe("bridge-nf-filter-vlan-tagged 0 (bridge table judges)", ReplyInetConntrack)
	if err := env.lab.Sysctl(env.lab.GW.NS, "net.bridge.bridge-nf-filter-vlan-tagged=1"); err != nil {
		t.Fatal(err)
	}
	probe("bridge-nf-filter-vlan-tagged 1 (inet table judges)", ReplyInetConntrack)
	if out := nftList(t, env.lab.GW.NS, "list", "chain", "bridge", "mud", "to_inet"); !strings.Contains(out, "meta protocol ip accept") {
		t.Errorf("tagged frames not left to the inet table:\n%s", out)
	}
}

// The sysctls can change while the enforcer runs: each repair tick reads
// them and changes the layout, so bridged IP is never left unjudged for
// longer than a tick.
func TestBridgeModeFollowsSysctl(t *testing.T) {
	env := newLateralEnv(t, true)
	wantModes(t, env.e, ReplyInetConntrack)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.e.Run(ctx) }()
	defer func() { cancel(); <-done }()
	flip := func(on string, want ReplyMode) {
		t.Helper()
		if err := env.lab.Sysctl(env.lab.GW.NS, "net.bridge.bridge-nf-call-iptables="+on, "net.bridge.bridge-nf-call-ip6tables="+on); err != nil {
			t.Fatal(err)
		}
		flipped := time.Now()
		for env.e.BridgeReplies().IPv4 != want || env.e.BridgeReplies().IPv6 != want {
			if time.Since(flipped) > time.Second {
				t.Fatalf("mode still %v 1 s after the sysctls became %s", env.e.BridgeReplies(), on)
			}
			time.Sleep(20 * time.Millisecond)
		}
		t.Logf("sysctls %s: %v after %v", on, env.e.BridgeReplies(), time.Since(flipped).Round(time.Millisecond))
		time.Sleep(50 * time.Millisecond) // the commit follows the read in the same tick
	}
	flip("0", ReplyReflexive)
	t.Run("after 1→0", func(t *testing.T) { env.checkLateral(t) })
	if out := nftList(t, env.lab.GW.NS, "list", "table", "bridge", "mud"); strings.Contains(out, "ether type ip accept") {
		t.Errorf("bridged IPv4 still left to the inet table:\n%s", out)
	}
	flip("1", ReplyInetConntrack)
	t.Run("after 0→1", func(t *testing.T) { env.checkLateral(t) })
	if n := env.e.Repairs(); n != 0 {
		t.Errorf("a mode change counted as %d repairs", n)
	}
}

// The flow sets are bounded: when one is full, the replies of a new flow
// are judged by the policies alone, which refuse them (fail closed), and
// the flows already remembered go on.
func TestBridgeFlowSetFullFailsClosed(t *testing.T) {
	env := newLateralEnv(t, false, func(c *Config) { c.BridgeFlows = 2 })
	d1, d2 := env.dev1, env.dev2
	var conns []net.Conn
	for i := 0; i < 2; i++ {
		c, err := netlab.Dial(d1.NS, "tcp", ap(d2.IPv4, 8080).String(), pass)
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		defer c.Close()
		if err := roundTrip(c, pass); err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		conns = append(conns, c)
	}
	netlab.MustDrop(t, "a third flow while the set is full", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 8080), shut))
	for i, c := range conns {
		if err := roundTrip(c, pass); err != nil {
			t.Errorf("remembered connection %d stopped: %v", i, err)
		}
	}
	if out := nftList(t, env.lab.GW.NS, "list", "set", "bridge", "mud", "flows4"); !strings.Contains(out, "size 2") {
		t.Errorf("flow set not bounded:\n%s", out)
	}
}

func TestRenderBridgeReplies(t *testing.T) {
	p := lateralPolicy("thing", mfgA)
	for _, tc := range []struct {
		ro        RenderOptions
		want, not []string
	}{
		{RenderOptions{}, []string{
			"set flows4 {", "size 65536",
			// reflexive: the flow fast path after the source guard, the
			// recording after the policies, for MUD senders and receivers
			"meta secmark set ether saddr map @from_dev jump src_guard\n\t\tmeta secmark != 0 jump flows_fast\n\t\tmeta secmark 0 ether daddr @from_dev jump flows_fast\n\t\tmeta secmark != 0 jump policy_out",
			"meta secmark != 0 jump flows_rec\n\t\tmeta secmark set 0\n",
			"meta protocol ip meta l4proto tcp tcp flags & (fin | rst) == 0x0 ether daddr . ether saddr . ip daddr . ip saddr . meta l4proto . th dport . th sport @flows4 update @flows4 { ether daddr . ether saddr . ip daddr . ip saddr . meta l4proto . th dport . th sport timeout 2h } meta secmark set 0 accept",
			"meta protocol ip6 meta l4proto ipv6-icmp icmpv6 type 129 ether daddr . ether saddr . ip6 daddr . ip6 saddr . meta l4proto . icmpv6 id . 128 @flows6",
			"meta protocol ip meta l4proto udp update @flows4 { ether saddr . ether daddr . ip saddr . ip daddr . meta l4proto . th sport . th dport timeout 1m }",
		}, []string{"jump to_inet"}},
		{RenderOptions{BridgeReplies: ReplyModes{IPv4: ReplyInetConntrack, IPv6: ReplyReflexive}}, []string{
			"meta protocol != { ip, ip6 } accept\n\t\tjump to_inet\n",
			"chain to_inet {\n\t\tether type ip accept\n\t}",
		}, []string{"ether type ip6 accept"}},
		{RenderOptions{BridgeConntrack: true}, []string{"ct state established,related accept\n\t\tmeta l4proto ipv6-icmp"}, []string{"flows4", "flows_fast", "to_inet"}},
		{RenderOptions{DirectDispatch: true}, []string{
			"ether saddr @from_dev jump src_guard\n\t\tether saddr @from_dev jump flows_fast\n\t\tether saddr != @from_dev ether daddr @from_dev jump flows_fast\n\t\tether saddr vmap @from_dev\n\t\tether daddr vmap @to_dev\n\t\tether saddr @from_dev jump flows_rec\n",
		}, nil},
	} {
		out, err := Render(p, Device{}, tc.ro)
		if err != nil {
			t.Fatal(err)
		}
		bridge := out[strings.Index(out, "table bridge mud"):]
		for _, w := range tc.want {
			if !strings.Contains(bridge, w) {
				t.Errorf("%+v: bridge table lacks %q", tc.ro, w)
			}
		}
		for _, n := range tc.not {
			if strings.Contains(bridge, n) {
				t.Errorf("%+v: bridge table has %q", tc.ro, n)
			}
		}
		if t.Failed() {
			t.Log(fmt.Sprint(bridge))
			return
		}
	}
}
