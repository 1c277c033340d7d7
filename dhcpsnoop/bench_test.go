package dhcpsnoop

import (
	"fmt"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv6"
)

// BenchmarkHandleFrame measures the pure path per frame (parse + state
// machine), for the messages that carry the information: a client request
// with a MUD URL and the server's confirmation. The rate limit is lifted so
// that every frame does the full work.
func BenchmarkHandleFrame(b *testing.B) {
	frames := testdataFrames(b)
	rep := v6Server(macDev1, v6Msg(b, dhcpv6.MessageTypeReply, macDev1, 2, iana6(time.Hour, "2001:db8:1::100")))
	for _, bc := range []struct {
		name  string
		frame []byte
	}{
		{"v4-request", frames["udhcpc-request-mud.bin"]},
		{"v4-ack", frames["dnsmasq-ack4.bin"]},
		{"v6-solicit", frames["dhclient6-solicit-mud.bin"]},
		{"v6-reply", rep},
	} {
		b.Run(bc.name, func(b *testing.B) {
			tr := NewTracker(TrackerConfig{RatePerMAC: 1e12, BurstPerMAC: 1 << 30})
			now := t0
			b.ReportAllocs()
			b.SetBytes(int64(len(bc.frame)))
			for b.Loop() {
				now = now.Add(time.Millisecond)
				if _, err := tr.HandleFrame(bc.frame, "br-lan", now); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkParseFrame is the parsing alone.
func BenchmarkParseFrame(b *testing.B) {
	frames := testdataFrames(b)
	for _, name := range []string{"udhcpc-request-mud.bin", "dhclient6-request-mud.bin"} {
		f := frames[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				if _, err := ParseFrame(f); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "frames/s")
		})
	}
}

// BenchmarkLeaseFile is reading a campus-sized dnsmasq lease file at start:
// 16,384 leases (dhcp.max_devices' default) parsed and seeded into an
// empty tracker.
func BenchmarkLeaseFile(b *testing.B) {
	const n = 16384
	var data []byte
	for i := range n {
		data = fmt.Appendf(data, "1796451481 02:00:00:%02x:%02x:%02x 10.%d.%d.%d host-%d 01:02:00:00:%02x:%02x:%02x\n",
			i>>16, (i>>8)&0xff, i&0xff, i>>16, (i>>8)&0xff, i&0xff, i, i>>16, (i>>8)&0xff, i&0xff)
	}
	b.SetBytes(int64(len(data)))
	b.ReportAllocs()
	for b.Loop() {
		leases, problems := ParseDNSMasqLeases(data, n)
		if len(leases) != n || len(problems) != 0 {
			b.Fatalf("%d leases, problems %v", len(leases), problems)
		}
		tr := NewTracker(TrackerConfig{MaxDevices: n})
		if evs := tr.Seed(leases, "br-lan", ReasonLeaseFile, time.Unix(1796450000, 0)); len(evs) != n {
			b.Fatalf("%d seeded", len(evs))
		}
	}
	b.ReportMetric(b.Elapsed().Seconds()*1000/float64(b.N), "ms/file")
}
