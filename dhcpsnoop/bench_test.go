package dhcpsnoop

import (
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
