package enforcer

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/enforcer/nftwire"
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// Benchmarks run inside a fresh lab gateway namespace:
//
//	sudo CI=true go test -run '^$' -bench . -benchtime 5x ./enforcer/

// benchPolicy is a realistic compiled MUD policy: three DNS names, ~10
// rules, the App. A defaults.
func benchPolicy(i int) policy.Policy {
	name := func(k int) policy.Peer {
		return policy.Peer{Kind: policy.DNSName, Value: fmt.Sprintf("n%d-%d.vendor%d.example", k, i, i%50)}
	}
	url := fmt.Sprintf("https://vendor%d.example/model%d", i%50, i)
	mfg := policy.Peer{Kind: policy.Manufacturer, Value: fmt.Sprintf("vendor%d.example", i%50)}
	dns := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"}
	ntp := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:ntp"}
	p := policy.Policy{ID: fmt.Sprintf("model%d", i), MUDURL: url}
	for k := 0; k < 3; k++ {
		p.FromDevice = append(p.FromDevice, policy.Rule{Name: fmt.Sprintf("fr/cloud%d", k), Peer: name(k), Protocol: policy.ProtoTCP,
			DstPort: u16(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept})
		p.ToDevice = append(p.ToDevice, policy.Rule{Name: fmt.Sprintf("to/cloud%d", k), Peer: name(k), Protocol: policy.ProtoTCP,
			SrcPort: u16(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept})
	}
	p.FromDevice = append(p.FromDevice,
		policy.Rule{Name: "fr/coap", Peer: name(0), Protocol: policy.ProtoUDP, DstPort: u16(5683), Verdict: policy.Accept},
		policy.Rule{Name: "fr/mfg", Peer: mfg, Protocol: policy.ProtoTCP, DstPort: u16(8883), Verdict: policy.Accept},
		policy.Rule{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, DstPort: u16(53), Verdict: policy.Accept, Default: true},
		policy.Rule{Name: "default/ntp", Peer: ntp, Protocol: policy.ProtoUDP, DstPort: u16(123), Verdict: policy.Accept, Default: true})
	p.ToDevice = append(p.ToDevice,
		policy.Rule{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, SrcPort: u16(53), Verdict: policy.Accept, Default: true},
		policy.Rule{Name: "default/ntp", Peer: ntp, Protocol: policy.ProtoUDP, SrcPort: u16(123), Verdict: policy.Accept, Default: true})
	return p
}

func benchDevice(i int, pol string) Device {
	mac := net.HardwareAddr{0x02, 0x10, byte(i >> 16), byte(i >> 8), byte(i), 0x01}
	v4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
	v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0x01, 0x00, 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
	return Device{MAC: mac, IPv4s: []netip.Addr{v4}, IPv6s: []netip.Addr{v6}, PolicyID: pol}
}

func peerAddrs(n int, salt int) []Element {
	v4 := netip.AddrFrom4([4]byte{198, 51, byte(n >> 8), byte(n + salt)})
	v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 12: byte(salt), 13: byte(n >> 16), 14: byte(n >> 8), 15: byte(n)})
	return []Element{{Prefix: netip.PrefixFrom(v4, 32), Timeout: time.Hour}, {Prefix: netip.PrefixFrom(v6, 128), Timeout: time.Hour}}
}

func benchDesired(devices, policies int) Desired {
	d := Desired{Peers: map[string][]Element{}}
	n := 0
	for i := 0; i < policies; i++ {
		p := benchPolicy(i)
		d.Policies = append(d.Policies, p)
		for _, pr := range p.Peers() {
			if _, ok := d.Peers[pr.Key()]; !ok {
				d.Peers[pr.Key()] = peerAddrs(n, 0)
				n++
			}
		}
	}
	for i := 0; i < devices; i++ {
		d.Devices = append(d.Devices, benchDevice(i, fmt.Sprintf("model%d", i%policies)))
	}
	return d
}

func benchEnforcer(b *testing.B, opts ...func(*Config)) (*Enforcer, string) {
	b.Helper()
	lab := netlab.New(b, netlab.Config{})
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	cfg := Config{NetNSFd: int(h)}
	for _, o := range opts {
		o(&cfg)
	}
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	return e, lab.GW.NS
}

// kernelMemKiB is the slab plus vmalloc memory of the whole machine (the
// only measure available; other processes add noise).
func kernelMemKiB() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	var sum int64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) >= 2 && (fields[0] == "Slab:" || fields[0] == "VmallocUsed:") {
			v, _ := strconv.ParseInt(fields[1], 10, 64)
			sum += v
		}
	}
	return sum
}

// benchCases are the full rulesets measured: 10,000 devices over 100 and
// over 10,000 distinct policies, the latter also with Config.BridgeLAN set
// to the devices' prefixes (the benchmark's peers are outside them, as cloud
// addresses are) and with per-ACE counters.
var benchCases = []struct {
	name     string
	policies int
	opts     []func(*Config)
}{
	{"devices=10000/policies=100", 100, nil},
	{"devices=10000/policies=10000", 10000, nil},
	{"devices=10000/policies=10000/bridge_lan", 10000, []func(*Config){func(c *Config) {
		c.BridgeLAN = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:100::/48")}
	}}},
	{"devices=10000/policies=10000/rule_counters", 10000, []func(*Config){func(c *Config) { c.RuleCounters = true }}},
	{"devices=10000/policies=100/device_counters", 100, []func(*Config){func(c *Config) { c.DeviceCounters = 65536 }}},
	{"devices=10000/policies=100/device_counters/all_counted", 100, []func(*Config){func(c *Config) { c.DeviceCounters = 65536 }}},
}

// allCounted fills the device counters' sets (Config.DeviceCounters) as if
// every device had sent, been sent and had dropped something, through
// both tables and both address families: the most they can hold for
// these devices.
func allCounted(b *testing.B, ns string, d Desired) {
	b.Helper()
	var macs, v4s, v6s []string
	for _, dev := range d.Devices {
		macs = append(macs, dev.MAC.String())
		for _, a := range dev.IPv4s {
			v4s = append(v4s, a.String())
		}
		for _, a := range dev.IPv6s {
			v6s = append(v6s, a.String())
		}
	}
	var script strings.Builder
	add := func(fam, set string, keys []string) {
		fmt.Fprintf(&script, "add element %s mud %s { %s }\n", fam, set, strings.Join(keys, ", "))
	}
	for _, fam := range []string{"inet", "bridge"} {
		add(fam, "acct_out", macs)
		add(fam, "dropc_out", macs)
	}
	add("bridge", "acct_in", macs)
	add("bridge", "dropc_in", macs)
	add("inet", "acct_in4", v4s)
	add("inet", "dropc_in4", v4s)
	add("inet", "acct_in6", v6s)
	add("inet", "dropc_in6", v6s)
	f := filepath.Join(b.TempDir(), "counted.nft")
	if err := os.WriteFile(f, []byte(script.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	if out, err := exec.Command("ip", "netns", "exec", ns, "nft", "-f", f).CombinedOutput(); err != nil {
		b.Fatalf("nft -f: %v\n%s", err, out)
	}
}

func BenchmarkFullApply(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			pols := c.policies
			e, ns := benchEnforcer(b, c.opts...)
			d := benchDesired(10000, pols)
			ctx := context.Background()
			if err := e.Apply(ctx, d); err != nil {
				b.Fatal(err)
			}
			allActive := strings.HasSuffix(c.name, "/all_counted")
			b.ResetTimer()
			cpu := cpuTime()
			for i := 0; i < b.N; i++ {
				if allActive {
					// A rebuild also deletes what the sets counted.
					b.StopTimer()
					allCounted(b, ns, d)
					b.StartTimer()
				}
				if err := e.Apply(ctx, d); err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			reportCPU(b, cpu)
			rules := 0
			ts := e.pl.Tables()
			for _, f := range plan.Families {
				for _, c := range ts.Table(f).Chains {
					rules += len(c.Rules)
				}
			}
			b.ReportMetric(float64(rules), "rules")
		})
	}
}

// BenchmarkAddDevice measures one change when 10,000 devices (100
// policies) are installed. Changes are spaced by 20 ms (not timed), as device
// events are: back to back, each transaction also waits for the kernel to
// release the previous one (an RCU grace period, several ms on a loaded
// VM), which the "back-to-back" variants show.
func BenchmarkAddDevice(b *testing.B) {
	e, _ := benchEnforcer(b)
	ctx := context.Background()
	if err := e.Apply(ctx, benchDesired(10000, 100)); err != nil {
		b.Fatal(err)
	}
	next := 10000
	known := func() error {
		next++
		return e.UpsertDevice(ctx, benchDevice(next, "model7"))
	}
	newPol := func() error {
		next++
		p := benchPolicy(100000 + next)
		return e.Update(ctx, newPolicyUpdate(p, benchDevice(next, p.ID), next))
	}
	p7 := benchPolicy(7)
	key := p7.Peers()[0].Key()
	flip := 0
	dns := func() error {
		flip++
		return e.SetPeer(ctx, key, peerAddrs(7, 2+flip%2))
	}
	// A device joins a manufacturer class of 10,000 members: the class's
	// peer set is replaced by one with an element more. Class members are
	// permanent elements (no timeout), as the manager hands them over.
	mfgKey := ""
	for _, pr := range p7.Peers() {
		if pr.Kind == policy.Manufacturer {
			mfgKey = pr.Key()
		}
	}
	member := func(i int) []Element {
		els := peerAddrs(1000000+i, 0)
		for j := range els {
			els[j].Timeout = 0
		}
		return els
	}
	var class []Element
	for i := range 10000 {
		class = append(class, member(i)...)
	}
	if err := e.SetPeer(ctx, mfgKey, class); err != nil {
		b.Fatal(err)
	}
	joins := 10000
	classJoin := func() error {
		joins++
		class = append(class, member(joins)...)
		return e.SetPeer(ctx, mfgKey, class)
	}
	// The same join as a change of the class (ChangePeers), as the
	// manager sends it: the member's addresses, not the class.
	classAdd := func() error {
		joins++
		return e.Update(ctx, Update{ChangePeers: map[string]PeerChange{mfgKey: {Add: member(joins)}}})
	}
	for _, bc := range []struct {
		name string
		op   func() error
	}{{"known-policy", known}, {"new-policy", newPol}, {"dns-update", dns}, {"class-join-10000", classJoin}, {"class-change-10000", classAdd}} {
		for _, spaced := range []bool{true, false} {
			name := bc.name
			if !spaced {
				name += "/back-to-back"
			}
			b.Run(name, func(b *testing.B) {
				cpu := cpuTime()
				for i := 0; i < b.N; i++ {
					if spaced {
						b.StopTimer()
						time.Sleep(20 * time.Millisecond)
						b.StartTimer()
					}
					if err := bc.op(); err != nil {
						b.Fatal(err)
					}
				}
				b.StopTimer()
				if !spaced {
					reportCPU(b, cpu)
				}
			})
		}
	}
}

// newPolicyUpdate adds a device with a new policy and the addresses of the
// policy's own peers (its DNS names and manufacturer); the App. A
// controllers are shared configuration, already installed.
func newPolicyUpdate(p policy.Policy, d Device, salt int) Update {
	u := Update{SetPolicies: []policy.Policy{p}, UpsertDevices: []Device{d}, SetPeers: map[string][]Element{}}
	for k, pr := range p.Peers() {
		if pr.Kind != policy.Controller {
			u.SetPeers[pr.Key()] = peerAddrs(salt*4+k, 1)
		}
	}
	return u
}

// cpuTime is this process's user+system CPU time. The kernel processes a
// netlink batch in the sending thread, so it includes the kernel's work; on
// a shared machine it is a steadier measure than wall time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}

// BenchmarkKernelMemory estimates the kernel memory of each full ruleset:
// slab + vmalloc (/proc/meminfo, machine-wide) when the ruleset is loaded
// minus when it is replaced by an empty one, median of three rounds.
func BenchmarkKernelMemory(b *testing.B) {
	for _, c := range benchCases {
		b.Run(c.name, func(b *testing.B) {
			pols := c.policies
			e, ns := benchEnforcer(b, c.opts...)
			d := benchDesired(10000, pols)
			ctx := context.Background()
			var deltas []float64
			for r := 0; r < 3; r++ {
				if err := e.Apply(ctx, Desired{}); err != nil {
					b.Fatal(err)
				}
				time.Sleep(2 * time.Second) // let RCU free the previous ruleset
				empty := kernelMemKiB()
				if err := e.Apply(ctx, d); err != nil {
					b.Fatal(err)
				}
				if strings.HasSuffix(c.name, "/all_counted") {
					allCounted(b, ns, d)
				}
				time.Sleep(2 * time.Second)
				deltas = append(deltas, float64(kernelMemKiB()-empty)/1024)
			}
			sort.Float64s(deltas)
			b.ReportMetric(deltas[1], "kernel-MiB")
			b.Logf("kernel MiB per round: %v", deltas)
		})
	}
}

// BenchmarkRebuildUserSpace is the user-space share of a full apply of
// 10,000 devices over 10,000 policies: planning the rebuild of an
// installed state and encoding it into netlink messages, as
// BenchmarkFullApply does, without sending it (no root, no kernel). The
// planner is set up as New sets it up on a kernel with nf_conntrack_bridge
// absent and secmark present (the lab's).
func BenchmarkRebuildUserSpace(b *testing.B) {
	for _, c := range []struct {
		name string
		lan  []netip.Prefix
	}{
		{"devices=10000/policies=10000", nil},
		{"devices=10000/policies=10000/bridge_lan", []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8"), netip.MustParsePrefix("2001:db8:100::/48")}},
	} {
		b.Run(c.name, func(b *testing.B) {
			pl := plan.New(plan.Config{Priority: -5, BridgePriority: -205, BridgeFlows: 65536, BridgeLAN: c.lan, Destroy: true})
			enc, err := nftwire.NewEncoder()
			if err != nil {
				b.Fatal(err)
			}
			d := benchDesired(10000, 10000)
			var toSend time.Duration // planning and encoding: what precedes the send
			rebuild := func() int {
				now := time.Now()
				p, err := pl.Replace(d, now)
				if err != nil {
					b.Fatal(err)
				}
				msgs, err := enc.Encode(p, now, nil)
				if err != nil {
					b.Fatal(err)
				}
				toSend += time.Since(now)
				if err := pl.Commit(p); err != nil {
					b.Fatal(err)
				}
				return len(msgs)
			}
			rebuild()
			b.ReportAllocs()
			b.ResetTimer()
			cpu := cpuTime()
			msgs := 0
			toSend = 0
			for i := 0; i < b.N; i++ {
				msgs = rebuild()
			}
			b.StopTimer()
			reportCPU(b, cpu)
			b.ReportMetric(float64(toSend)/float64(time.Millisecond)/float64(b.N), "to-send-ms/op")
			b.ReportMetric(float64(msgs), "messages")
		})
	}
}
