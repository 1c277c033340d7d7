package enforcer

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os/exec"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/nftwire"
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

const (
	pass = 2 * time.Second
	shut = 400 * time.Millisecond // how long a "dropped" probe waits
)

type labEnv struct {
	lab  *netlab.Lab
	e    *Enforcer
	dev1 *netlab.Host // policy A (camera)
	dev2 *netlab.Host // policy B (hub)
	dev3 *netlab.Host // no MUD
	srv1 *netlab.Host // cloud.example (allowed for A)
	srv2 *netlab.Host // elsewhere
}

const (
	urlA = "https://cam.example/cam1"
	urlB = "https://hub.example/hub1"
)

func u16(p uint16) *policy.PortRange { return &policy.PortRange{First: p, Last: p} }

// policyA: a camera that talks TCP 8080 (it opens the connection) and UDP
// 8081 to its cloud, may ping it, and may open TCP 9090 to hub devices.
func policyA() policy.Policy {
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	hub := policy.Peer{Kind: policy.Model, Value: urlB}
	code0 := uint8(0)
	return policy.Policy{ID: "cam1", MUDURL: urlA,
		FromDevice: []policy.Rule{
			{Name: "fr/cloud-tcp", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(8080), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "fr/cloud-udp", Peer: cloud, Protocol: policy.ProtoUDP, DstPort: u16(8081), Verdict: policy.Accept},
			{Name: "fr/cloud-ping4", Peer: cloud, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 8, Code: &code0}, Verdict: policy.Accept},
			{Name: "fr/cloud-ping6", Peer: cloud, Protocol: policy.ProtoICMPv6, ICMP: &policy.ICMPMatch{Type: 128}, Verdict: policy.Accept},
			{Name: "fr/hub", Peer: hub, Protocol: policy.ProtoTCP, DstPort: u16(9090), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			// allowed by A but not by B's to-device policy
			{Name: "fr/hub-9092", Peer: hub, Protocol: policy.ProtoTCP, DstPort: u16(9092), Verdict: policy.Accept},
		},
		ToDevice: []policy.Rule{
			// RFC 8520 §4.8: direction-initiated from-device: replies only
			{Name: "to/cloud-tcp", Peer: cloud, Protocol: policy.ProtoTCP, SrcPort: u16(8080), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "to/hub", Peer: hub, Protocol: policy.ProtoTCP, SrcPort: u16(9090), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "to/hub-9092", Peer: hub, Protocol: policy.ProtoTCP, SrcPort: u16(9092), Verdict: policy.Accept},
		},
	}
}

// policyB: a hub that accepts TCP 9090 from cameras and talks to nothing else.
func policyB() policy.Policy {
	cam := policy.Peer{Kind: policy.Model, Value: urlA}
	return policy.Policy{ID: "hub1", MUDURL: urlB,
		FromDevice: []policy.Rule{
			{Name: "fr/cam", Peer: cam, Protocol: policy.ProtoTCP, SrcPort: u16(9090), Initiated: policy.InitiatedToDevice, Verdict: policy.Accept},
		},
		ToDevice: []policy.Rule{
			{Name: "to/cam", Peer: cam, Protocol: policy.ProtoTCP, DstPort: u16(9090), Initiated: policy.InitiatedToDevice, Verdict: policy.Accept},
		},
	}
}

func hostDevice(h *netlab.Host, pol string) Device {
	return Device{MAC: h.MAC, IPv4s: []netip.Addr{h.IPv4}, IPv6s: []netip.Addr{h.IPv6}, PolicyID: pol}
}

func hostElems(h *netlab.Host) []Element {
	return []Element{{Prefix: netip.PrefixFrom(h.IPv4, 32)}, {Prefix: netip.PrefixFrom(h.IPv6, 128)}}
}

func newLabEnv(t *testing.T, opts ...func(*Config)) *labEnv {
	t.Helper()
	lab := netlab.New(t, netlab.Config{Devices: 3, Servers: 2, StaticDevices: true})
	e := labEnforcer(t, lab, append([]func(*Config){func(c *Config) { c.RuleCounters = true }}, opts...)...)
	env := &labEnv{lab: lab, e: e, dev1: lab.Devices[0], dev2: lab.Devices[1], dev3: lab.Devices[2], srv1: lab.Servers[0], srv2: lab.Servers[1]}
	for _, h := range []*netlab.Host{env.srv1, env.srv2, env.dev1, env.dev2, env.dev3} {
		for _, port := range []string{"[::]:8080", "[::]:8081", "[::]:8082", "[::]:9090", "[::]:9091", "[::]:9092", "[::]:9999"} {
			echo, err := netlab.ServeEcho(h.NS, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(echo.Close)
		}
	}
	ctx := context.Background()
	err := e.Apply(ctx, Desired{
		Policies: []policy.Policy{policyA(), policyB()},
		Devices:  []Device{hostDevice(env.dev1, "cam1"), hostDevice(env.dev2, "hub1")},
		Peers: map[string][]Element{
			"dns:cloud.example": hostElems(env.srv1),
			"model:" + urlA:     hostElems(env.dev1),
			"model:" + urlB:     hostElems(env.dev2),
		},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	waitFlowsEnded(t, e)
	return env
}

// labEnforcer starts an enforcer in the lab's gateway (log group 5) and
// waits until the lab's IPv6 addresses are usable.
func labEnforcer(t *testing.T, lab *netlab.Lab, opts ...func(*Config)) *Enforcer {
	t.Helper()
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg := Config{NetNSFd: int(h), LogGroup: 5}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	waitIPv6Ready(t, lab)
	return e
}

func ap(a netip.Addr, port int) netip.AddrPort { return netlab.HostPort(a, port) }

func nftList(t *testing.T, ns string, args ...string) string {
	t.Helper()
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("nft %v: %v: %s", args, err, out)
	}
	return string(out)
}

func counter(t *testing.T, e *Enforcer, pol string, dir policy.Direction, rule string) uint64 {
	t.Helper()
	cs, err := e.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.PolicyID == pol && c.Direction == dir && c.Rule == rule {
			return c.Packets
		}
	}
	t.Fatalf("no counter %s %s %s", pol, dir, rule)
	return 0
}

func TestRoutedTraffic(t *testing.T) {
	env := newLabEnv(t)
	s1, s2, d1 := env.srv1, env.srv2, env.dev1
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustPass(t, "dev1 → cloud tcp 8080 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
		netlab.MustPass(t, "dev1 → cloud udp 8081 "+a.String(), netlab.UDPEcho(d1.NS, ap(a, 8081), pass))
		netlab.MustPass(t, "dev1 ping cloud "+a.String(), netlab.Ping(d1.NS, a, pass))
		netlab.MustDrop(t, "dev1 → cloud tcp 8082 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8082), shut))
		netlab.MustDrop(t, "dev1 → cloud udp 8080 "+a.String(), netlab.UDPEcho(d1.NS, ap(a, 8080), shut))
	}
	for _, a := range []netip.Addr{s2.IPv4, s2.IPv6} {
		netlab.MustDrop(t, "dev1 → other server tcp 8080 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), shut))
		netlab.MustDrop(t, "dev1 ping other server "+a.String(), netlab.Ping(d1.NS, a, shut))
	}
	// RFC 8520 §4.8: unsolicited inbound TCP is dropped even from the
	// cloud and even to the port replies come from.
	for _, a := range []netip.Addr{d1.IPv4, d1.IPv6} {
		netlab.MustDrop(t, "cloud → dev1 tcp 8080 "+a.String(), netlab.TCPEcho(s1.NS, ap(a, 8080), shut))
		netlab.MustDrop(t, "cloud → dev1 tcp 9999 "+a.String(), netlab.TCPEcho(s1.NS, ap(a, 9999), shut))
	}
	// A device without MUD is untouched.
	for _, a := range []netip.Addr{s2.IPv4, s2.IPv6} {
		netlab.MustPass(t, "dev3 → any tcp "+a.String(), netlab.TCPEcho(env.dev3.NS, ap(a, 8082), pass))
		netlab.MustPass(t, "dev3 → any udp "+a.String(), netlab.UDPEcho(env.dev3.NS, ap(a, 9999), pass))
		netlab.MustPass(t, "any → dev3 tcp "+a.String(), netlab.TCPEcho(s2.NS, ap(env.dev3.IPv4, 9999), pass))
	}
	// Counted: the accept rules and the default deny (RFC 8520 §5).
	if n := counter(t, env.e, "cam1", policy.FromDevice, "fr/cloud-tcp"); n < 2 {
		t.Errorf("fr/cloud-tcp counter = %d, want ≥ 2 (one SYN per family)", n)
	}
	if n := counter(t, env.e, "cam1", policy.FromDevice, "default-deny"); n < 6 {
		t.Errorf("from-device default-deny counter = %d, want ≥ 6", n)
	}
	if n := counter(t, env.e, "cam1", policy.ToDevice, "default-deny"); n < 4 {
		t.Errorf("to-device default-deny counter = %d, want ≥ 4", n)
	}
	// The gateway's own services: DNS is reachable (App. A), others not.
	netlab.MustDrop(t, "dev1 → gateway tcp 9999", netlab.TCPEcho(d1.NS, ap(netlab.GatewayLAN4, 9999), shut))
}

func TestLateralTrafficFollowsBothPolicies(t *testing.T) {
	env := newLabEnv(t)
	d1, d2 := env.dev1, env.dev2
	for _, v6 := range []bool{false, true} {
		a2, a1 := d2.IPv4, d1.IPv4
		if v6 {
			a2, a1 = d2.IPv6, d1.IPv6
		}
		netlab.MustPass(t, "cam → hub 9090 "+a2.String(), netlab.TCPEcho(d1.NS, ap(a2, 9090), pass))
		netlab.MustDrop(t, "cam → hub 9091 (neither allows) "+a2.String(), netlab.TCPEcho(d1.NS, ap(a2, 9091), shut))
		netlab.MustDrop(t, "cam → hub 9092 (cam allows, hub does not) "+a2.String(), netlab.TCPEcho(d1.NS, ap(a2, 9092), shut))
		// direction-initiated from-device on the camera: the hub may not
		// open 9090 towards it (stateless SYN check on the bridge).
		netlab.MustDrop(t, "hub → cam 9090 "+a1.String(), netlab.TCPEcho(d2.NS, ap(a1, 9090), shut))
		// non-MUD dev3 → hub: only the hub's to-device policy applies
		netlab.MustDrop(t, "dev3 → hub 9090 "+a2.String(), netlab.TCPEcho(env.dev3.NS, ap(a2, 9090), shut))
		// non-MUD dev3 → camera: the camera's to-device policy refuses it
		netlab.MustDrop(t, "dev3 → cam 9999 "+a1.String(), netlab.TCPEcho(env.dev3.NS, ap(a1, 9999), shut))
	}
}

// ruleHandles lists every rule handle of our tables, to prove an operation
// touched elements only.
func ruleHandles(t *testing.T, e *Enforcer) []string {
	t.Helper()
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []string
	ts := e.pl.Tables()
	for _, f := range plan.Families {
		tb := nftwire.Table(f)
		for name := range ts.Table(f).Chains {
			rules, err := e.rd.GetRules(tb, &nftables.Chain{Name: name, Table: tb})
			if err != nil {
				t.Fatal(err)
			}
			for _, r := range rules {
				out = append(out, fmt.Sprintf("%s/%s/%d", f, name, r.Handle))
			}
		}
	}
	sort.Strings(out)
	return out
}

func TestDNSPeerChangeTouchesElementsOnly(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	before := ruleHandles(t, env.e)
	s1, s2, d1 := env.srv1, env.srv2, env.dev1
	netlab.MustDrop(t, "srv2 before", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), shut))
	// The name now resolves to srv2 only (with a TTL).
	elems := hostElems(s2)
	for i := range elems {
		elems[i].Timeout = time.Minute
	}
	if err := env.e.SetPeer(ctx, "dns:cloud.example", elems); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{s2.IPv4, s2.IPv6} {
		netlab.MustPass(t, "srv2 after "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
	}
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustDrop(t, "srv1 after "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), shut))
	}
	// The same answer again with a fresh TTL (delete + add of the same
	// elements in one transaction).
	for i := range elems {
		elems[i].Timeout = 2 * time.Minute
	}
	if err := env.e.SetPeer(ctx, "dns:cloud.example", elems); err != nil {
		t.Fatalf("refreshing the TTL: %v", err)
	}
	netlab.MustPass(t, "srv2 after TTL refresh", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), pass))
	if after := ruleHandles(t, env.e); strings.Join(after, ",") != strings.Join(before, ",") {
		t.Errorf("rules changed on a peer update:\nbefore %v\nafter  %v", before, after)
	}
	if out := nftList(t, env.lab.GW.NS, "list", "map", "inet", "mud", "addr4"); !strings.Contains(out, "expires") {
		t.Errorf("addr4 elements have no timeout:\n%s", out)
	}
}

// A peer changed by address (ChangePeers, as the manager changes a class
// when a member comes or goes) permits what it adds and stops what it
// removes, and the addresses it does not name stay as they were.
func TestPeerChangedByAddress(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	s1, s2, d1 := env.srv1, env.srv2, env.dev1
	netlab.MustDrop(t, "srv2 before", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), shut))
	addrs := func(s *netlab.Host) []netip.Prefix {
		var out []netip.Prefix
		for _, e := range hostElems(s) {
			out = append(out, e.Prefix)
		}
		return out
	}
	// srv2 comes, srv1 goes.
	if err := env.e.Update(ctx, Update{ChangePeers: map[string]PeerChange{"dns:cloud.example": {Add: hostElems(s2), Remove: addrs(s1)}}}); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{s2.IPv4, s2.IPv6} {
		netlab.MustPass(t, "added "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
	}
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustDrop(t, "removed "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), shut))
	}
	// srv1 comes back: srv2, not named, stays.
	if err := env.e.Update(ctx, Update{ChangePeers: map[string]PeerChange{"dns:cloud.example": {Add: hostElems(s1)}}}); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "added back", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), pass))
	netlab.MustPass(t, "not named, kept", netlab.TCPEcho(d1.NS, ap(s2.IPv6, 8080), pass))
	// Only DNS, manufacturer and model peers change by address.
	if err := env.e.Update(ctx, Update{ChangePeers: map[string]PeerChange{"local-networks": {Add: hostElems(s1)}}}); err == nil {
		t.Error("a local-networks peer was changed by address")
	}
}

// Two names on one address (a CDN): the address maps to a group of both,
// and each policy keeps exactly what its own names allow as the group
// appears, changes and vanishes with DNS updates (incremental changes,
// checked against a full rebuild at the end).
func TestSharedAddressGroups(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	s1, d1 := env.srv1, env.dev1
	cdn := "dns:cdn.example" // named by no policy
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustPass(t, "cloud before sharing "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
	}
	// cdn.example resolves to srv1 too: srv1's group becomes {cloud, cdn}.
	if err := env.e.SetPeer(ctx, cdn, hostElems(s1)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustPass(t, "cloud while shared "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
		netlab.MustPass(t, "cloud udp while shared "+a.String(), netlab.UDPEcho(d1.NS, ap(a, 8081), pass))
		netlab.MustDrop(t, "other port while shared "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8082), shut))
	}
	// cloud.example moves away: srv1 is cdn's only, which cam1 does not name.
	if err := env.e.SetPeer(ctx, "dns:cloud.example", hostElems(env.srv2)); err != nil {
		t.Fatal(err)
	}
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustDrop(t, "srv1 held by cdn only "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), shut))
	}
	netlab.MustPass(t, "cloud's new address", netlab.TCPEcho(d1.NS, ap(env.srv2.IPv4, 8080), pass))
	// Back, shared again; then cdn goes: srv1 is cloud's own once more.
	if err := env.e.SetPeer(ctx, "dns:cloud.example", hostElems(s1)); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "shared again", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), pass))
	if err := env.e.SetPeer(ctx, cdn, nil); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "cloud's own again", netlab.TCPEcho(d1.NS, ap(s1.IPv6, 8080), pass))
	netlab.MustDrop(t, "old address gone", netlab.TCPEcho(d1.NS, ap(env.srv2.IPv4, 8080), shut))
	// What the increments left equals what a rebuild installs.
	inc := nftList(t, env.lab.GW.NS, "list", "ruleset")
	env.e.mu.Lock()
	env.e.pl.Invalidate()
	env.e.mu.Unlock()
	if err := env.e.SetPeer(ctx, cdn, nil); err != nil {
		t.Fatal(err)
	}
	if full := nftList(t, env.lab.GW.NS, "list", "ruleset"); stripCounters(full) != stripCounters(inc) {
		t.Errorf("incremental state differs from a rebuild:\nincremental:\n%s\nrebuilt:\n%s", inc, full)
	}
}

var (
	counterRE = regexp.MustCompile(`counter packets \d+ bytes \d+|expires \S+`)
	tokenRE   = regexp.MustCompile(`[,{}\n]`)
)

// stripCounters reduces a listing to its sorted items without counters and
// expiry times: hash sets list their elements in the order of a per-set
// random seed.
func stripCounters(s string) string {
	var items []string
	for _, it := range tokenRE.Split(counterRE.ReplaceAllString(withoutDynamic(s), "counter"), -1) {
		if it = strings.TrimSpace(it); it != "" {
			items = append(items, it)
		}
	}
	sort.Strings(items)
	return strings.Join(items, "\n")
}

// withoutDynamic drops from a listing the elements of the sets the packet
// path fills (flags dynamic: denyc_*, flows*, device counters), which no
// plan adds or deletes.
func withoutDynamic(s string) string {
	var out []string
	dynamic, skipping := false, false
	for _, l := range strings.Split(s, "\n") {
		t := strings.TrimSpace(l)
		switch {
		case skipping:
			if strings.HasSuffix(t, "}") {
				skipping = false
			}
			continue
		case strings.HasPrefix(t, "set ") || strings.HasPrefix(t, "map "):
			dynamic = false
		case strings.HasPrefix(t, "flags ") && strings.Contains(t, "dynamic"):
			dynamic = true
		case dynamic && strings.HasPrefix(t, "elements = {"):
			skipping = !strings.HasSuffix(t, "}")
			continue
		}
		out = append(out, l)
	}
	return strings.Join(out, "\n")
}

func TestQuarantineCutsEstablishedConnection(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	c, err := netlab.Dial(env.dev1.NS, "tcp", ap(env.srv1.IPv4, 8080).String(), pass)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := roundTrip(c, pass); err != nil {
		t.Fatalf("echo before quarantine: %v", err)
	}
	d := hostDevice(env.dev1, "cam1")
	d.Mode = Quarantine
	if err := env.e.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitFlowsEnded(t, env.e)
	if err := roundTrip(c, shut); err == nil {
		t.Fatal("established connection still echoes after quarantine")
	}
	netlab.MustDrop(t, "new connection in quarantine", netlab.TCPEcho(env.dev1.NS, ap(env.srv1.IPv4, 8080), shut))
	// Release: the policy applies again.
	if err := env.e.UpsertDevice(ctx, hostDevice(env.dev1, "cam1")); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "after release", netlab.TCPEcho(env.dev1.NS, ap(env.srv1.IPv4, 8080), pass))
}

func roundTrip(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("ping\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	_, err := readFull(c, got)
	return err
}

func readFull(c net.Conn, b []byte) (int, error) {
	n := 0
	for n < len(b) {
		m, err := c.Read(b[n:])
		n += m
		if err != nil {
			return n, err
		}
	}
	return n, nil
}

func TestRepairAfterExternalDelete(t *testing.T) {
	env := newLabEnv(t)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.e.Run(ctx) }()
	defer func() { cancel(); <-done }()

	// Another firewall owner's table must survive everything we do.
	ns := env.lab.GW.NS
	nftList(t, ns, "add", "table", "inet", "filter")
	nftList(t, ns, "add", "chain", "inet", "filter", "input", "{ type filter hook input priority 0; policy accept; }")
	nftList(t, ns, "add", "rule", "inet", "filter", "input", "tcp", "dport", "22", "counter", "accept")
	theirs := nftList(t, ns, "list", "table", "inet", "filter")

	nftList(t, ns, "delete", "table", "inet", "mud")
	start := time.Now()
	netlab.MustPass(t, "unfiltered while deleted", netlab.TCPEcho(env.dev1.NS, ap(env.srv2.IPv4, 8080), pass))
	for {
		out, _ := exec.Command("ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "mud", "forward").CombinedOutput()
		if strings.Contains(string(out), "jump dispatch_fwd") {
			break
		}
		if time.Since(start) > 2*time.Second {
			t.Fatalf("table inet mud not restored within 2 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Logf("restored after %v", time.Since(start))
	netlab.MustDrop(t, "enforced again", netlab.TCPEcho(env.dev1.NS, ap(env.srv2.IPv4, 8080), shut))
	netlab.MustPass(t, "policy again", netlab.TCPEcho(env.dev1.NS, ap(env.srv1.IPv4, 8080), pass))

	// A flush (rules gone, chains kept) is repaired too.
	nftList(t, ns, "flush", "table", "bridge", "mud")
	deadline := time.Now().Add(2 * time.Second)
	for env.e.Repairs() < 2 {
		if time.Now().After(deadline) {
			t.Fatal("flushed bridge table not repaired within 2 s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if got := nftList(t, ns, "list", "table", "inet", "filter"); got != theirs {
		t.Errorf("foreign table changed:\nbefore:\n%s\nafter:\n%s", theirs, got)
	}
}

func TestFailedBatchLeavesStateIntact(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	ns := env.lab.GW.NS
	before := nftList(t, ns, "-s", "list", "ruleset")
	// The kernel rejects an element of a set that does not exist; it is
	// queued after the new chains' rules and before the new elements.
	env.e.fault = func(msgs []netlink.Message) []netlink.Message {
		return append(msgs, nftwire.ElemMsgs(plan.SetRef{Family: plan.Inet, Name: "no_such_set"},
			[]*plan.Elem{{Key: plan.MarkKey(1)}}, nftwire.ElemAdd, time.Now())...)
	}
	pB := policyB()
	pB.ID = "hub2"
	if err := env.e.SetPolicy(ctx, pB); err == nil {
		t.Fatal("SetPolicy succeeded despite the injected fault")
	} else {
		t.Logf("rejected as expected: %v", err)
	}
	if err := env.e.UpsertDevice(ctx, hostDevice(env.dev3, "cam1")); err == nil {
		t.Fatal("UpsertDevice succeeded despite the injected fault")
	}
	// The deny counters (denyc_*) count what the lab's devices send by
	// themselves meanwhile (IPv6 router solicitations, MLD reports).
	if after := nftList(t, ns, "-s", "list", "ruleset"); withoutDynamic(after) != withoutDynamic(before) {
		t.Fatalf("ruleset changed by a rejected batch:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if _, ok := env.e.pl.Device(env.dev3.MAC); ok {
		t.Fatal("the planner adopted a device the kernel rejected")
	}
	if _, ok := env.e.pl.Policy("hub2"); ok {
		t.Fatal("the planner adopted a policy the kernel rejected")
	}
	netlab.MustPass(t, "dev3 still untouched", netlab.TCPEcho(env.dev3.NS, ap(env.srv2.IPv4, 8080), pass))
	// Without the fault the same changes apply incrementally.
	env.e.fault = nil
	if err := env.e.SetPolicy(ctx, pB); err != nil {
		t.Fatal(err)
	}
	if err := env.e.UpsertDevice(ctx, hostDevice(env.dev3, "cam1")); err != nil {
		t.Fatal(err)
	}
	netlab.MustDrop(t, "dev3 now enforced", netlab.TCPEcho(env.dev3.NS, ap(env.srv2.IPv4, 8080), shut))
	netlab.MustPass(t, "dev3 policy", netlab.TCPEcho(env.dev3.NS, ap(env.srv1.IPv4, 8080), pass))
	// Removing the device and the policy restores the starting ruleset.
	if err := env.e.RemoveDevice(ctx, env.dev3.MAC); err != nil {
		t.Fatal(err)
	}
	if err := env.e.RemovePolicy(ctx, "hub2"); err != nil {
		t.Fatal(err)
	}
	// RFC 8520 §1.9: once the device and its policy are removed, the
	// policy's chains are gone.
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "chain", "inet", "mud", "pol_hub2_out").CombinedOutput(); err == nil {
		t.Errorf("chain pol_hub2_out still exists:\n%s", out)
	}
	// A policy's default-deny counter (denyc_*, filled by the packet
	// path) stays until the tables are rebuilt.
	if after := nftList(t, ns, "-s", "list", "ruleset"); withoutDynamic(after) != withoutDynamic(before) {
		t.Errorf("remove did not restore the ruleset:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	netlab.MustPass(t, "dev3 untouched again", netlab.TCPEcho(env.dev3.NS, ap(env.srv2.IPv4, 8080), pass))
}

// mapSize is the size the kernel reports for one of our maps.
func mapSize(t *testing.T, ns, family, set string) int {
	t.Helper()
	m := regexp.MustCompile(`\bsize (\d+)`).FindStringSubmatch(nftList(t, ns, "-t", "list", "map", family, "mud", set))
	if m == nil {
		t.Fatalf("set %s %s has no size", family, set)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// A set is as large as its last rebuild made it. A change that would
// overfill it is refused by the kernel as a whole; the enforcer makes the
// same change as a rebuild with larger sets: the change is applied,
// enforcement never lapses, and the flows of devices whose treatment did
// not change go on.
func TestFullSetGrowsByRebuild(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	ns := env.lab.GW.NS
	before := mapSize(t, ns, "inet", "from_dev")
	if before <= 2 {
		t.Fatalf("from_dev size %d: not sized for growth", before)
	}
	flows := openFlows(t, env.dev1, []string{"tcp"}, 8080, env.srv1.IPv4, env.srv1.IPv6)
	var u Update
	for i := range before {
		mac := net.HardwareAddr{0x02, 0x5e, 0x10, 0x00, byte(i >> 8), byte(i)}
		u.UpsertDevices = append(u.UpsertDevices, Device{MAC: mac, PolicyID: "cam1"})
	}
	if err := env.e.Update(ctx, u); err != nil {
		t.Fatalf("adding %d devices to a set of size %d: %v", len(u.UpsertDevices), before, err)
	}
	if got := len(kernelMACs(t, ns, "inet", "from_dev")); got != before+2 {
		t.Errorf("from_dev holds %d devices, want %d", got, before+2)
	}
	if after := mapSize(t, ns, "inet", "from_dev"); after < before+2 {
		t.Errorf("from_dev size %d after the rebuild, want at least %d", after, before+2)
	}
	flowsWork(t, "after the rebuild", flows)
	netlab.MustDrop(t, "dev1 still enforced", netlab.TCPEcho(env.dev1.NS, ap(env.srv2.IPv4, 8080), shut))
	netlab.MustPass(t, "dev1 policy", netlab.TCPEcho(env.dev1.NS, ap(env.srv1.IPv4, 8080), pass))
}

// kernelMACs lists the MAC addresses a map of ours holds.
func kernelMACs(t *testing.T, ns, family, set string) []string {
	t.Helper()
	return regexp.MustCompile(`(?i)\b[0-9a-f]{2}(?::[0-9a-f]{2}){5}\b`).FindAllString(nftList(t, ns, "list", "map", family, "mud", set), -1)
}

func TestModesOverridesAndRenewal(t *testing.T) {
	env := newLabEnv(t)
	ctx := context.Background()
	d1, s1 := env.dev1, env.srv1
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}

	// An administrator's override opens 8082 to the cloud and closes UDP
	// 8081, before the policy (which still allows 8080).
	d := hostDevice(d1, "cam1")
	d.Overrides.FromDevice = []policy.Rule{
		{Name: "override/8082", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(8082), Verdict: policy.Accept},
		{Name: "override/no-udp", Protocol: policy.ProtoUDP, DstPort: u16(8081), Verdict: policy.Drop},
	}
	if err := env.e.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "override 8082", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8082), pass))
	netlab.MustPass(t, "policy 8080 behind override", netlab.TCPEcho(d1.NS, ap(s1.IPv6, 8080), pass))
	netlab.MustDrop(t, "override drop udp 8081", netlab.UDPEcho(d1.NS, ap(s1.IPv4, 8081), shut))

	// Block (pending approval, on_failure=block): nothing but DHCP.
	d.Mode = Block
	if err := env.e.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	netlab.MustDrop(t, "blocked 8080", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), shut))
	netlab.MustDrop(t, "blocked lateral", netlab.TCPEcho(d1.NS, ap(env.dev2.IPv4, 9090), shut))

	// A renewal with a new address: the old one is no longer bound (source
	// guard) nor mapped, the new one is.
	nd := hostDevice(d1, "cam1")
	newIP := netip.MustParseAddr("192.0.2.99")
	nd.IPv4s = []netip.Addr{newIP}
	if err := env.e.UpsertDevice(ctx, nd); err != nil {
		t.Fatal(err)
	}
	netlab.MustDrop(t, "old address fails the source guard", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), shut))
	if _, err := env.lab.Run(ctx, d1.NS, "ip", "addr", "add", newIP.String()+"/24", "dev", "eth0"); err != nil {
		t.Fatal(err)
	}
	var c net.Conn
	err := netlab.Do(d1.NS, func() (err error) {
		dl := net.Dialer{Timeout: pass, LocalAddr: &net.TCPAddr{IP: newIP.AsSlice()}}
		c, err = dl.Dial("tcp", ap(s1.IPv4, 8080).String())
		return err
	})
	if err != nil {
		t.Fatalf("from the new address: %v", err)
	}
	defer c.Close()
	if err := roundTrip(c, pass); err != nil {
		t.Fatalf("echo from the new address: %v", err)
	}
	// The device still has its old address configured, which nothing maps
	// to it any more: a host connecting to that address must not get an
	// answer (the replies would be "established" and skip the policy if the
	// source guard did not come first). Port 9999 is not in the policy;
	// 8080 is open to the cloud but only on connections the device makes.
	for _, port := range []int{9999, 8080} {
		netlab.MustDrop(t, fmt.Sprintf("cloud → unbound old address :%d", port), netlab.TCPEcho(s1.NS, ap(d1.IPv4, port), shut))
		netlab.MustDrop(t, fmt.Sprintf("no-MUD device → unbound old address :%d", port), netlab.TCPEcho(env.dev3.NS, ap(d1.IPv4, port), shut))
	}
	// An address still bound to another device is refused.
	taken := hostDevice(env.dev3, "cam1")
	taken.IPv4s = []netip.Addr{env.dev2.IPv4}
	if err := env.e.UpsertDevice(ctx, taken); err == nil {
		t.Error("an address bound to two devices was accepted")
	}
	// A policy in use cannot be removed; a device must have its policy.
	if err := env.e.RemovePolicy(ctx, "cam1"); err == nil {
		t.Error("removed a policy still in use")
	}
	if err := env.e.UpsertDevice(ctx, hostDevice(env.dev3, "nope")); err == nil {
		t.Error("accepted a device with an unknown policy")
	}
}

// waitIPv6Ready waits until no address in the lab is tentative: the
// gateway's bridges get link-local addresses that go through DAD, and until
// then it cannot resolve neighbours (IPv6 probes would time out for reasons
// that have nothing to do with the enforcer).
func waitIPv6Ready(t *testing.T, lab *netlab.Lab) {
	t.Helper()
	nss := []string{lab.GW.NS}
	for _, h := range append(append([]*netlab.Host{}, lab.Devices...), lab.Servers...) {
		nss = append(nss, h.NS)
	}
	deadline := time.Now().Add(5 * time.Second)
	for _, ns := range nss {
		for {
			out, err := lab.Run(context.Background(), ns, "ip", "-6", "addr", "show", "tentative")
			if err != nil {
				t.Fatal(err)
			}
			if strings.TrimSpace(out) == "" {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("IPv6 addresses in %s still tentative:\n%s", ns, out)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
}
