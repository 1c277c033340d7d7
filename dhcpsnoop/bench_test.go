package dhcpsnoop

import (
	"fmt"
	"net"
	"runtime"
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

// BenchmarkDeviceMemory is the tracker's long-lived heap per device: 10,000
// devices each bound by one DHCPv6 exchange (SOLICIT with a MUD URL,
// REQUEST, REPLY with one address), as in mudd at scale, then a sweep
// (which forgets the transactions and rate-limit buckets). B/device is the
// live heap after GC divided by the devices.
func BenchmarkDeviceMemory(b *testing.B) {
	const n = 10000
	var perDevice float64
	for b.Loop() {
		before := liveHeap()
		tr := NewTracker(TrackerConfig{MaxDevices: n})
		for i := range n {
			mac := net.HardwareAddr{0x02, 0, 0, byte(i >> 16), byte(i >> 8), byte(i)}
			url := fmt.Sprintf("https://vendor%d.example.com/device.json", i%100)
			addr := fmt.Sprintf("2001:db8:1::%x", i+0x100)
			sol := v6Client(mac, v6Msg(b, dhcpv6.MessageTypeSolicit, mac, 1, mud6(url)))
			req := v6Client(mac, v6Msg(b, dhcpv6.MessageTypeRequest, mac, 2, mud6(url)))
			rep := v6Server(mac, v6Msg(b, dhcpv6.MessageTypeReply, mac, 2, iana6(time.Hour, addr)))
			if evs := handle(b, tr, t0, sol, req, rep); len(evs) != 2 || evs[1].Kind != KindBound {
				b.Fatalf("device %d: events %v", i, kinds(evs))
			}
		}
		tr.Expire(t0.Add(10 * time.Minute))
		if st := tr.Stats(); st.Devices != n || st.PendingCount != 0 {
			b.Fatalf("%d devices, %d pending", st.Devices, st.PendingCount)
		}
		perDevice = float64(liveHeap()-before) / n
		runtime.KeepAlive(tr)
	}
	b.ReportMetric(perDevice, "B/device")
}

// liveHeap is the heap in use after a full collection.
func liveHeap() int64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}
