package enforcer

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// BenchmarkForwarding compares iperf3 throughput through the lab gateway
// with 10,000 MUD devices installed against the same gateway with only a
// conntrack rule, alternating the two set-ups in one run. It needs iperf3
// and MUD_BENCH_FORWARD=1 (it takes about a minute):
//
//	sudo CI=true MUD_BENCH_FORWARD=1 go test -run '^$' -bench Forwarding -benchtime 1x ./enforcer/
//
// With MUD_BENCH_DEVICE_COUNTERS=1 the enforcer counts every device's
// packets (Config.DeviceCounters).
func BenchmarkForwarding(b *testing.B) {
	if os.Getenv("MUD_BENCH_FORWARD") == "" {
		b.Skip("set MUD_BENCH_FORWARD=1 to measure forwarding with iperf3")
	}
	netlab.RequireCommand(b, "iperf3", "nft")
	lab := netlab.New(b, netlab.Config{Devices: 1, Servers: 1, StaticDevices: true})
	dev, srv := lab.Devices[0], lab.Servers[0]
	e := iperfLab(b, lab, srv)

	// 10,000 devices over 100 policies; the lab device is one of them,
	// with a policy that allows iperf3 to the server (TCP and UDP 5201).
	d := benchDesired(9999, 100)
	iperf := policy.Peer{Kind: policy.DNSName, Value: "iperf.example"}
	p := benchPolicy(0)
	p.ID = "iperf"
	p.FromDevice = append([]policy.Rule{
		{Name: "fr/iperf-tcp", Peer: iperf, Protocol: policy.ProtoTCP, DstPort: u16(5201), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
		{Name: "fr/iperf-udp", Peer: iperf, Protocol: policy.ProtoUDP, DstPort: u16(5201), Verdict: policy.Accept},
	}, p.FromDevice...)
	d.Policies = append(d.Policies, p)
	d.Devices = append(d.Devices, Device{MAC: dev.MAC, IPv4s: []netip.Addr{dev.IPv4}, IPv6s: []netip.Addr{dev.IPv6}, PolicyID: "iperf"})
	d.Peers[iperf.Key()] = []Element{{Prefix: netip.PrefixFrom(srv.IPv4, 32)}, {Prefix: netip.PrefixFrom(srv.IPv6, 128)}}

	nft := func(args ...string) {
		if out, err := lab.Run(context.Background(), lab.GW.NS, "nft", args...); err != nil {
			b.Fatalf("nft %v: %v %s", args, err, out)
		}
	}
	baseline := func() {
		nft("add", "table", "inet", "base")
		nft("add", "chain", "inet", "base", "forward_base", "{ type filter hook forward priority 0; policy accept; }")
		nft("add", "rule", "inet", "base", "forward_base", "ct", "state", "established,related", "accept")
	}
	compareForwarding(b, lab, dev.NS, srv.IPv4, func(mud bool) {
		if !mud {
			baseline()
			return
		}
		nft("delete", "table", "inet", "base")
		if err := e.Apply(context.Background(), d); err != nil {
			b.Fatal(err)
		}
	}, func() {
		nft("delete", "table", "inet", "mud")
		nft("delete", "table", "bridge", "mud")
	})
}

// iperfLab starts an enforcer in the lab's gateway and an iperf3 server
// on port 5201 of server; both end with the benchmark.
func iperfLab(b *testing.B, lab *netlab.Lab, server *netlab.Host) *Enforcer {
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { h.Close() })
	cfg := Config{NetNSFd: int(h)}
	if os.Getenv("MUD_BENCH_DEVICE_COUNTERS") != "" {
		cfg.DeviceCounters = 65536 // every packet is counted on its device
	}
	e, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { e.Close() })
	if _, _, err := lab.Start(server.NS, "iperf3", "-s", "-p", "5201"); err != nil {
		b.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	return e
}

// compareForwarding runs iperf3 (TCP, then UDP with 64-byte datagrams) from
// namespace ns to dst, three rounds alternating the baseline (setup(false))
// and mud (setup(true), then teardown), and reports both and their ratio.
func compareForwarding(b *testing.B, lab *netlab.Lab, ns string, dst netip.Addr, setup func(mud bool), teardown func()) {
	run := func(args ...string) map[string]any {
		out, err := lab.Run(context.Background(), ns, "iperf3", append([]string{"-c", dst.String(), "-p", "5201", "-t", "4", "-J"}, args...)...)
		if err != nil {
			b.Fatalf("iperf3 %v: %v\n%s", args, err, out)
		}
		var res map[string]any
		if err := json.Unmarshal([]byte(out), &res); err != nil {
			b.Fatalf("iperf3 output: %v", err)
		}
		return res
	}
	tcp := func() float64 {
		end := run()["end"].(map[string]any)
		return end["sum_received"].(map[string]any)["bits_per_second"].(float64) / 1e6
	}
	udp := func() float64 { // received 64-byte datagrams per second
		sum := run("-u", "-b", "0", "-l", "64")["end"].(map[string]any)["sum"].(map[string]any)
		return (sum["packets"].(float64) - sum["lost_packets"].(float64)) / sum["seconds"].(float64)
	}
	var baseTCP, mudTCP, baseUDP, mudUDP float64
	const rounds = 3
	for i := 0; i < rounds; i++ {
		setup(false)
		baseTCP += tcp()
		baseUDP += udp()
		setup(true)
		mudTCP += tcp()
		mudUDP += udp()
		teardown()
	}
	b.ReportMetric(baseTCP/rounds, "base-tcp-Mbit/s")
	b.ReportMetric(mudTCP/rounds, "mud-tcp-Mbit/s")
	b.ReportMetric(mudTCP/baseTCP, "tcp-ratio")
	b.ReportMetric(baseUDP/rounds, "base-udp64-pps")
	b.ReportMetric(mudUDP/rounds, "mud-udp64-pps")
	b.ReportMetric(mudUDP/baseUDP, "udp64-ratio")
	fmt.Fprintf(os.Stderr, "%s: tcp %.0f vs %.0f Mbit/s (%.3f), udp64 %.0f vs %.0f pps (%.3f)\n", b.Name(),
		mudTCP/rounds, baseTCP/rounds, mudTCP/baseTCP, mudUDP/rounds, baseUDP/rounds, mudUDP/baseUDP)
}

// BenchmarkBridgedForwarding is BenchmarkForwarding for lateral traffic:
// iperf3 between two devices of one manufacturer across the LAN bridge,
// 10,000 other devices installed, against the same bridge without our
// tables, in each bridged reply mode (the baseline of inet-conntrack has
// br_netfilter's conntrack too):
//
//	sudo CI=true MUD_BENCH_FORWARD=1 go test -run '^$' -bench BridgedForwarding -benchtime 1x ./enforcer/
func BenchmarkBridgedForwarding(b *testing.B) {
	if os.Getenv("MUD_BENCH_FORWARD") == "" {
		b.Skip("set MUD_BENCH_FORWARD=1 to measure forwarding with iperf3")
	}
	netlab.RequireCommand(b, "iperf3", "nft")
	for _, nfCall := range []string{"0", "1"} {
		b.Run("bridge-nf-call="+nfCall, func(b *testing.B) {
			lab := netlab.New(b, netlab.Config{Devices: 2, Servers: 1, StaticDevices: true})
			if err := lab.Sysctl(lab.GW.NS, "net.bridge.bridge-nf-call-iptables="+nfCall, "net.bridge.bridge-nf-call-ip6tables="+nfCall); err != nil {
				b.Fatal(err)
			}
			d1, d2 := lab.Devices[0], lab.Devices[1]
			e := iperfLab(b, lab, d2)
			d := benchDesired(9998, 100)
			mfg := policy.Peer{Kind: policy.Manufacturer, Value: "iperf.example"}
			p := benchPolicy(0)
			p.ID = "iperf"
			for _, proto := range []uint8{policy.ProtoTCP, policy.ProtoUDP} {
				p.FromDevice = append([]policy.Rule{{Name: "fr/iperf", Peer: mfg, Protocol: proto, DstPort: u16(5201), Verdict: policy.Accept}}, p.FromDevice...)
				p.ToDevice = append([]policy.Rule{{Name: "to/iperf", Peer: mfg, Protocol: proto, DstPort: u16(5201), Verdict: policy.Accept}}, p.ToDevice...)
			}
			d.Policies = append(d.Policies, p)
			for _, h := range []*netlab.Host{d1, d2} {
				d.Devices = append(d.Devices, Device{MAC: h.MAC, IPv4s: []netip.Addr{h.IPv4}, IPv6s: []netip.Addr{h.IPv6}, PolicyID: "iperf"})
				d.Peers[mfg.Key()] = append(d.Peers[mfg.Key()], Element{Prefix: netip.PrefixFrom(h.IPv4, 32)})
			}
			compareForwarding(b, lab, d1.NS, d2.IPv4, func(mud bool) {
				if mud {
					if err := e.Apply(context.Background(), d); err != nil {
						b.Fatal(err)
					}
				}
			}, func() {
				for _, fam := range []string{"inet", "bridge"} {
					if out, err := lab.Run(context.Background(), lab.GW.NS, "nft", "delete", "table", fam, "mud"); err != nil {
						b.Fatalf("%v %s", err, out)
					}
				}
			})
			b.Logf("bridged replies: %v", e.BridgeReplies())
		})
	}
}
