package neighbor

import (
	"bytes"
	"context"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// BenchmarkParseFrame parses captured frames: what the capture goroutine
// does for each frame the filter lets through.
func BenchmarkParseFrame(b *testing.B) {
	frames := testdataFrames(b)
	for _, name := range []string{"linux-dad-privacy.bin", "linux-na-solicited.bin", "linux-arp-request.bin"} {
		f := frames[name]
		b.Run(name, func(b *testing.B) {
			var m Message
			b.ReportAllocs()
			for b.Loop() {
				if err := ParseFrame(f, &m); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkObserve applies claims to the table: a device seen again (the
// common case), and new addresses of a device at its bound (each replaces
// the least recently seen one: two events).
func BenchmarkObserve(b *testing.B) {
	b.Run("refresh", func(b *testing.B) {
		tb := newTable((&Config{}).limits(), []netip.Prefix{lan4, lan6})
		c := claim{mac: key(macA), addr: addr("2001:db8:1::5"), source: SourceND, at: t0}
		tb.observe(c, t0)
		b.ReportAllocs()
		for b.Loop() {
			tb.observe(c, t0)
			tb.out = tb.out[:0]
		}
	})
	b.Run("learn-at-bound", func(b *testing.B) {
		tb := newTable((&Config{RatePerMAC: 1e9, Rate: 1e9}).limits(), []netip.Prefix{lan4, lan6})
		now := t0
		a := addr("2001:db8:1::5").As16()
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			a[12], a[13], a[14], a[15] = byte(i>>24), byte(i>>16), byte(i>>8), byte(i)|1
			now = now.Add(time.Microsecond)
			tb.observe(claim{mac: key(macA), addr: netip.AddrFrom16(a), source: SourceDAD, tentative: true, at: now}, now)
			tb.out = tb.out[:0]
		}
	})
}

// BenchmarkLabWireToEvent measures, for b.N new addresses (run it with
// -benchtime=200x), the time from a device's duplicate address detection
// solicitation reaching the gateway's bridge (the kernel's receive time on
// a second packet socket) to the learner's learned event being received
// from Events: the window in which the address is not yet known. Metrics:
// p50-µs and p99-µs.
func BenchmarkLabWireToEvent(b *testing.B) {
	netlab.RequireRoot(b)
	lab := netlab.New(b, netlab.Config{Devices: 1})
	dev := lab.Devices[0]
	l, err := New(Config{
		Interfaces: []string{netlab.LANBridge}, NetNS: lab.GW.NS,
		Prefixes:   []netip.Prefix{netlab.LANPrefix6},
		RatePerMAC: 1e6, Logger: testLogger(b),
	})
	if err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- l.Run(ctx) }()
	b.Cleanup(func() {
		cancel()
		for range l.Events() {
		}
		if err := <-runErr; err != nil {
			b.Error(err)
		}
	})
	filter, err := Filter()
	if err != nil {
		b.Fatal(err)
	}
	wire, err := capture.Open(netlab.LANBridge, capture.Config{NetNS: lab.GW.NS, Timestamps: true,
		Filter: capture.Filter{Program: filter, Direction: capture.Incoming}})
	if err != nil {
		b.Fatal(err)
	}
	defer wire.Close()
	raw, err := netlab.RawConn(dev)
	if err != nil {
		b.Fatal(err)
	}
	defer raw.Close()
	buf := make([]byte, captureLen+4)

	// learn sends DAD for the i-th address and returns the latency, or
	// false when no event came within a second.
	learn := func(i int) (time.Duration, bool) {
		a := netlab.LANPrefix6.Addr().As16()
		a[12], a[13], a[14], a[15] = 0xbe, byte(i>>16), byte(i>>8), byte(i)
		target := netip.AddrFrom16(a)
		frame := dadNS(dev.MAC, target)
		if err := raw.Send(frame); err != nil {
			b.Fatal(err)
		}
		_ = wire.SetReadDeadline(time.Now().Add(5 * time.Second))
		var onWire time.Time
		for onWire.IsZero() {
			f, info, err := wire.ReadFrame(buf)
			if err != nil {
				b.Fatalf("the solicitation for %s never reached the bridge: %v", target, err)
			}
			if bytes.Equal(f, frame) {
				onWire = info.Time
			}
		}
		timeout := time.After(time.Second)
		for {
			select {
			case ev := <-l.Events():
				if ev.Kind == KindLearned && ev.Addr == target {
					return time.Since(onWire), true
				}
			case <-timeout:
				return 0, false
			}
		}
	}
	// The learner's capture is running once an address is learned.
	for i := 0; ; i++ {
		if _, ok := learn(1<<20 + i); ok {
			break
		}
		if i == 10 {
			b.Fatal("the learner learned nothing")
		}
	}
	var lat []time.Duration
	b.ResetTimer()
	for i := range b.N {
		d, ok := learn(i)
		if !ok {
			b.Fatalf("address %d never learned", i)
		}
		lat = append(lat, d)
	}
	b.StopTimer()
	slices.Sort(lat)
	at := func(p float64) float64 {
		return float64(lat[min(len(lat)-1, int(p*float64(len(lat))))].Nanoseconds()) / 1e3
	}
	b.ReportMetric(at(0.50), "p50-µs")
	b.ReportMetric(at(0.99), "p99-µs")
}
