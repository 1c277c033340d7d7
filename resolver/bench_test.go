package resolver

import (
	"net/netip"
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
