package e2e

import (
	"context"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// BenchmarkArrival measures, for b.N device arrivals (run it with
// -benchtime=100x), the time from the DHCPACK leaving the gateway to the
// device's binding being active in the kernel, from outside mudd (see
// Arrivals): each arrival is a one-shot udhcpc with a new MAC announcing a
// MUD URL, which releases its lease as it quits.
//
//   - cached: every arrival announces the same URL, whose verified file mudd
//     fetched before the timing starts;
//   - first-fetch: every arrival announces a URL mudd has never seen, so the
//     file and its signature are fetched from the lab's HTTPS server and
//     verified. mudd starts that fetch when the DHCPDISCOVER announces the
//     URL, before the ACK; discover-p50-ms reports DISCOVER → active too.
//
// Metrics: p50-ms and p99-ms of ACK → active (ns/op is the whole arrival,
// DHCP exchange and set-up included, and says little).
func BenchmarkArrival(b *testing.B) {
	netlab.RequireCommand(b, "udhcpc")
	e := newEnv(b, envConfig{devices: 1, gw: gwlab.Config{LogLevel: "warn"}})
	h := e.lab.Devices[0]
	arr, err := WatchArrivals(e.lab.GW.NS, netlab.LANBridge)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(arr.Close)
	seq := 0 // every arrival of every run gets a MAC of its own
	arrive := func(b *testing.B, mudURL string) Latency {
		seq++
		mac := macFor(seq)
		for _, args := range [][]string{
			{"link", "set", "dev", h.Iface, "down"},
			{"link", "set", "dev", h.Iface, "address", mac.String()},
			{"link", "set", "dev", h.Iface, "up"},
		} {
			if _, err := e.lab.Run(e.ctx, h.NS, "ip", args...); err != nil {
				b.Fatal(err)
			}
		}
		if err := e.gw.Arrive(e.ctx, h, fmt.Sprintf("arrival-%d", seq), mudURL); err != nil {
			b.Fatal(err)
		}
		// Generous: on a loaded machine a process can stall for seconds.
		ctx, cancel := context.WithTimeout(e.ctx, 30*time.Second)
		defer cancel()
		l, err := arr.Wait(ctx, mac)
		if err != nil {
			b.Fatal(err)
		}
		return l
	}
	run := func(b *testing.B, url func(i int) string) {
		var fromACK, fromDiscover []time.Duration
		b.ResetTimer()
		for i := range b.N {
			l := arrive(b, url(i))
			fromACK = append(fromACK, l.Duration)
			fromDiscover = append(fromDiscover, l.Active.Sub(l.Discover))
		}
		b.StopTimer()
		b.ReportMetric(ms(percentile(fromACK, 50)), "p50-ms")
		b.ReportMetric(ms(percentile(fromACK, 99)), "p99-ms")
		b.ReportMetric(ms(percentile(fromDiscover, 50)), "discover-p50-ms")
	}

	cached := e.publish(bulb("https://"+mudHost+"/cached.json", "Example", "cached"))
	b.Run("cached", func(b *testing.B) {
		arrive(b, cached) // the first arrival fetches; not timed
		run(b, func(int) string { return cached })
	})
	n := 0
	b.Run("first-fetch", func(b *testing.B) {
		run(b, func(int) string {
			n++
			// Published (and signed) before the device arrives: the
			// server's work is not what is measured.
			return e.publish(bulb(fmt.Sprintf("https://%s/fresh/%d.json", mudHost, n), "Example", fmt.Sprintf("fresh%d", n)))
		})
	})
}

// percentile is the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100 // ceil(p/100 · n)
	return s[max(rank, 1)-1]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
