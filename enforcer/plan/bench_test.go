package plan

import (
	"fmt"
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// Planning alone, without the kernel: what a change costs the planner at
// 10,000 devices over 100 policies (the enforcer's benchmarks measure it
// with the kernel).
//
//	go test -run '^$' -bench . -benchmem ./enforcer/plan/

func benchState(devices, policies int) Desired {
	d := Desired{Peers: map[string][]Element{}}
	for i := range policies {
		name := policy.Peer{Kind: policy.DNSName, Value: fmt.Sprintf("cloud%d.example", i)}
		p := testPolicy(fmt.Sprintf("model%d", i))
		p.FromDevice[0].Peer, p.ToDevice[0].Peer = name, name
		d.Policies = append(d.Policies, p)
		d.Peers[name.Key()] = []Element{addr(fmt.Sprintf("198.51.%d.%d", 100+i/250, i%250+1), time.Hour)}
	}
	for i := range devices {
		d.Devices = append(d.Devices, Device{MAC: net.HardwareAddr{2, 0x10, 0, byte(i >> 8), byte(i), 1},
			IPv4s: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}, PolicyID: fmt.Sprintf("model%d", i%policies)})
	}
	return d
}

func benchPlanner(b *testing.B, d Desired) *Planner {
	pl := New(goldenConfig())
	p, err := pl.Replace(d, t0)
	if err != nil {
		b.Fatal(err)
	}
	if err := pl.Commit(p); err != nil {
		b.Fatal(err)
	}
	return pl
}

// BenchmarkPlanRebuild plans the whole state (Apply).
func BenchmarkPlanRebuild(b *testing.B) {
	d := benchState(10000, 100)
	pl := benchPlanner(b, d)
	for b.Loop() {
		p, err := pl.Replace(d, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := pl.Commit(p); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkPlanAddDevice plans one device of a known policy (Update).
func BenchmarkPlanAddDevice(b *testing.B) {
	d := benchState(10000, 100)
	pl := benchPlanner(b, d)
	dev := d.Devices[0]
	dev.IPv4s = []netip.Addr{netip.MustParseAddr("10.200.0.1")}
	for b.Loop() {
		p, err := pl.Update(Update{UpsertDevices: []Device{dev}}, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := pl.Commit(p); err != nil {
			b.Fatal(err)
		}
		dev.IPv4s = []netip.Addr{dev.IPv4s[0].Next()}
	}
}

// BenchmarkSync hands the planner the whole state with one device changed
// (what a caller that does not track what it sent would do).
func BenchmarkSync(b *testing.B) {
	d := benchState(10000, 100)
	pl := benchPlanner(b, d)
	a := netip.MustParseAddr("10.200.0.1")
	for b.Loop() {
		a = a.Next()
		d.Devices[0].IPv4s = []netip.Addr{a}
		p, err := pl.Sync(d, t0)
		if err != nil {
			b.Fatal(err)
		}
		if err := pl.Commit(p); err != nil {
			b.Fatal(err)
		}
	}
}
