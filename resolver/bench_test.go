package resolver

import (
	"fmt"
	"net"
	"net/netip"
	"runtime"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// BenchmarkHandleFrame measures the snooping path from a captured frame to
// the updates ready to emit (parse Ethernet/IP/UDP, unpack DNS, follow the
// CNAME chain, match the device's names, build updates). ns/op is the
// per-frame latency of that path; frames/s its throughput on one core.
// untrusted-source is a matching answer from a source that is not trusted:
// parsed the same, then refused (counted; its log line rate-limited).
func BenchmarkHandleFrame(b *testing.B) {
	other := udp4(response("ads.tracker.test", dns.TypeA, rrA("ads.tracker.test", 60, "198.51.100.66")))
	unknown := buildFrame(frameSpec{dst: gwMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}, cdnResponse())
	untrusted := buildFrame(frameSpec{dst: devMAC, src: netip.MustParseAddr("203.0.113.13"), dstIP: dev4, sport: 53, dport: 40000}, cdnResponse())
	for _, bc := range []struct {
		name    string
		frame   []byte
		updates int
	}{
		{"watched-cname-chain", udp4(cdnResponse()), 2},
		{"unwatched-name", other, 0},
		{"unknown-device", unknown, 0},
		{"untrusted-source", untrusted, 0},
	} {
		b.Run(bc.name, func(b *testing.B) {
			r := snooper(b, Config{})
			now := time.Now()
			if n := len(r.HandleFrame(bc.frame, now)); n != bc.updates {
				b.Fatalf("%d updates, want %d", n, bc.updates)
			}
			b.ReportAllocs()
			b.ResetTimer()
			for b.Loop() {
				_ = r.HandleFrame(bc.frame, now)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkDeviceMemory is the long-lived heap per device of snooping:
// 10,000 devices registered with SetDeviceNames as mudd does, their name
// lists drawn from 100 policies of 3 names each. hold adds what the hold
// set's bookkeeping keeps when every device is in the kernel's set.
// B/device is the live heap after GC divided by the devices.
func BenchmarkDeviceMemory(b *testing.B) {
	const n, policies = 10000, 100
	lists := make([][]string, policies)
	for p := range lists {
		lists[p] = []string{fmt.Sprintf("api.vendor%d.example", p), fmt.Sprintf("time.vendor%d.example", p), "cdn.example.net"}
	}
	for _, hold := range []bool{false, true} {
		b.Run(map[bool]string{false: "names", true: "names+hold"}[hold], func(b *testing.B) {
			var perDevice float64
			for b.Loop() {
				before := liveHeap()
				r, err := New(Config{Server: "127.0.0.1:53"})
				if err != nil {
					b.Fatal(err)
				}
				for i := range n {
					mac := net.HardwareAddr{0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
					if err := r.SetDeviceNames(mac, lists[i%policies]); err != nil {
						b.Fatal(err)
					}
					if hold {
						// What add records once the kernel took the MAC.
						r.hold.markHeld([6]byte(mac))
					}
				}
				perDevice = float64(liveHeap()-before) / n
				runtime.KeepAlive(r)
			}
			b.ReportMetric(perDevice, "B/device")
		})
	}
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
