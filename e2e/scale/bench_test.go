package scale

import (
	"context"
	"errors"
	"fmt"
	"os"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/framegen"
)

// BenchmarkScale measures mudd with 0, 1,000 and 10,000 devices already
// enforced, for devices announcing 100 and 1,000 distinct MUD URLs (run
// it with -benchtime=1x: each step is one measurement, `make bench-scale`).
// The installed devices join over DHCPv6 (installRate a second); then, at
// each step:
//
//   - ack-p50-ms, ack-p99-ms: 200 more devices join one at a time (20 a
//     second) over DHCPv6; the time from the REPLY reaching the device to
//     its binding (MAC and address) being committed in the kernel;
//   - v4-ack-p50-ms, v4-ack-p99-ms: the same for 50 DHCPv4 arrivals (ACK
//     → binding), the IPv4 range holding only so many;
//   - burst-s: 1,000 devices (burstSize) start their DHCPv6 exchange
//     within one second; the time from the first SOLICIT until every
//     one's binding is in the kernel (burst-dhcp-s: until the last REPLY,
//     the DHCP server's share); burst-lag-p50-ms, -p99-ms, -max-ms: REPLY
//     → binding of the burst's devices;
//   - cpu-ms/arrival: mudd's CPU time during the burst per arrival;
//   - dns-idle-p50-ms, dns-idle-p99-ms: before the arrivals, an enforced
//     device (dnsProbe) asks the gateway's DNS server 50 times; the time
//     from query to answer, which mudd holds until the device's sets have
//     the answer's address; dns-burst-*: the same, a query every 10 ms
//     during the burst; hold-timeouts: the answers mudd released during
//     the burst without having applied them (hold timeout, 100 ms);
//   - rss-MB: mudd's resident set after the burst, rss-file-MB the part
//     of it that maps files (the store, read through mmap), heap-live-MB
//     its Go heap's live objects (go_gc_heap_live_bytes); store-MB the
//     store's size;
//   - coldstart-s: mudd is stopped, its tables removed (a reboot), and
//     started: the time from its start until the kernel holds the binding
//     of every device of the store.
//
// dhcp-dropped counts the DHCP messages mudd's snooper dropped or could
// not attribute during the step (from its /metrics);
// burst-failed counts the burst's DHCP exchanges that failed in the lab
// (no answer from the DHCP server in time), burst-unbound the burst's
// devices the DHCP server acknowledged that were not active within 60 s;
// single-missing the single arrivals that failed (their DHCP exchange or
// their binding; logged with the reason).
// "installed" is the number of devices enforced before the step's
// arrivals.
func BenchmarkScale(b *testing.B) {
	for _, urls := range []int{100, 1000} {
		b.Run(fmt.Sprintf("urls=%d", urls), func(b *testing.B) {
			s := newScaleLab(b, urls)
			probe, err := s.newDNSProbe()
			if err != nil {
				b.Fatal(err)
			}
			for _, n := range []int{0, 1000, 10000} {
				if n > len(s.all) {
					if _, err := s.install(n-len(s.all), true); err != nil {
						b.Fatal(err)
					}
				}
				b.Run(fmt.Sprintf("devices=%d", len(s.all)), func(b *testing.B) { s.step(b, probe) })
			}
		})
	}
}

// step runs the measurements of one population size.
func (s *scaleLab) step(b *testing.B, probe *dnsProbe) {
	installed := len(s.all)
	dropped0, err := s.dhcpLost() // counted again before the cold start restarts mudd
	if err != nil {
		b.Fatal(err)
	}
	time.Sleep(time.Second) // what the installs left to do is done
	b.ResetTimer()
	lost := 0
	one := func(g *framegen.Generator, n int) []time.Duration {
		var out []time.Duration
		for range n {
			as, missing := s.arrive(g, 1, 0, 30*time.Second)
			if len(missing) > 0 {
				b.Logf("a single arrival failed: %v", missing[0])
				lost++
				continue
			}
			out = append(out, as[0].latency())
			time.Sleep(50 * time.Millisecond)
		}
		return out
	}
	dnsIdle, dnsIdleLost := probe.sample(50, 20*time.Millisecond)
	logLost(b, "DNS, idle", dnsIdleLost)
	v6 := one(s.gen6, 200)
	v4 := one(s.gen4, 50)
	pid := s.gw.MuddPID()
	br := s.runBurst(b, probe, pid)
	rss, _, err := procStats(pid)
	if err != nil {
		b.Fatal(err)
	}
	rssMapped, err := rssFile(pid)
	if err != nil {
		b.Fatal(err)
	}
	heapLive, err := s.gw.Metric("go_gc_heap_live_bytes")
	if err != nil {
		b.Fatal(err)
	}
	dropped, err := s.dhcpLost()
	if err != nil {
		b.Fatal(err)
	}
	dropped -= dropped0
	cold, err := s.coldStart()
	if err != nil {
		b.Fatal(err)
	}
	b.StopTimer()
	st, err := os.Stat(s.gw.StorePath())
	if err != nil {
		b.Fatal(err)
	}
	b.ReportMetric(float64(installed), "installed")
	b.ReportMetric(ms(percentile(v6, 50)), "ack-p50-ms")
	b.ReportMetric(ms(percentile(v6, 99)), "ack-p99-ms")
	b.ReportMetric(ms(percentile(v4, 50)), "v4-ack-p50-ms")
	b.ReportMetric(ms(percentile(v4, 99)), "v4-ack-p99-ms")
	var lag []time.Duration
	first, lastReply, lastActive := br.arrivals[0].Start, br.arrivals[0].Reply, br.arrivals[0].Active
	for _, a := range br.arrivals {
		lag = append(lag, a.latency())
		first = minTime(first, a.Start)
		lastReply = maxTime(lastReply, a.Reply)
		lastActive = maxTime(lastActive, a.Active)
	}
	b.ReportMetric(lastActive.Sub(first).Seconds(), "burst-s")
	b.ReportMetric(lastReply.Sub(first).Seconds(), "burst-dhcp-s")
	b.ReportMetric(ms(percentile(lag, 50)), "burst-lag-p50-ms")
	b.ReportMetric(ms(percentile(lag, 99)), "burst-lag-p99-ms")
	b.ReportMetric(ms(percentile(lag, 100)), "burst-lag-max-ms")
	b.ReportMetric(float64(len(br.failed)), "burst-failed")
	b.ReportMetric(float64(len(br.unbound)), "burst-unbound")
	b.ReportMetric(ms(br.cpu)/float64(len(br.arrivals)), "cpu-ms/arrival")
	b.ReportMetric(ms(percentile(br.dns, 50)), "dns-burst-p50-ms")
	b.ReportMetric(ms(percentile(br.dns, 99)), "dns-burst-p99-ms")
	b.ReportMetric(ms(percentile(br.dns, 100)), "dns-burst-max-ms")
	b.ReportMetric(float64(len(br.dnsLost)), "dns-burst-lost")
	b.ReportMetric(float64(br.holdTimeouts), "hold-timeouts")
	b.ReportMetric(float64(lost), "single-missing")
	b.ReportMetric(float64(dropped), "dhcp-dropped")
	b.ReportMetric(ms(percentile(dnsIdle, 50)), "dns-idle-p50-ms")
	b.ReportMetric(ms(percentile(dnsIdle, 99)), "dns-idle-p99-ms")
	b.ReportMetric(float64(rss)/(1<<20), "rss-MB")
	b.ReportMetric(float64(rssMapped)/(1<<20), "rss-file-MB")
	b.ReportMetric(float64(heapLive)/(1<<20), "heap-live-MB")
	b.ReportMetric(float64(st.Size())/(1<<20), "store-MB")
	b.ReportMetric(cold.Seconds(), "coldstart-s")
}

// burstRun is what one burst measured.
type burstRun struct {
	arrivals        []arrival // active within the wait
	failed, unbound []error   // exchanges that failed in the lab; acknowledged, never bound
	cpu             time.Duration
	dns             []time.Duration // the DNS probe's answers during the burst
	dnsLost         []error
	holdTimeouts    int
}

// runBurst runs the burst of burstSize arrivals with the DNS probe asking
// every 10 ms, and reads mudd's CPU and hold timeouts around it.
func (s *scaleLab) runBurst(b *testing.B, probe *dnsProbe, pid int) burstRun {
	var r burstRun
	_, cpu0, err := procStats(pid)
	if err != nil {
		b.Fatal(err)
	}
	timeouts0, err := s.holdTimeouts()
	if err != nil {
		b.Fatal(err)
	}
	stop, probed := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(probed)
		r.dns, r.dnsLost = probe.run(stop, 10*time.Millisecond)
	}()
	r.arrivals, r.failed, r.unbound = s.burst(burstSize, 60*time.Second)
	close(stop)
	<-probed
	logLost(b, "DNS, during the burst", r.dnsLost)
	timeouts1, err := s.holdTimeouts()
	if err != nil {
		b.Fatal(err)
	}
	r.holdTimeouts = timeouts1 - timeouts0
	if len(r.arrivals) == 0 {
		b.Fatalf("none of the burst's devices active within 60s: %v", errors.Join(r.failed[:min(5, len(r.failed))]...))
	}
	_, cpu1, err := procStats(pid)
	if err != nil {
		b.Fatal(err)
	}
	r.cpu = cpu1 - cpu0
	if len(r.failed) > 0 {
		b.Logf("%d of the burst's %d DHCP exchanges failed in the lab: %v", len(r.failed), burstSize, errors.Join(r.failed[:min(5, len(r.failed))]...))
	}
	if len(r.unbound) > 0 {
		b.Logf("%d of the burst's %d devices acknowledged by the DHCP server not active within 60s: %v", len(r.unbound), burstSize, errors.Join(r.unbound[:min(5, len(r.unbound))]...))
	}
	return r
}

// burst starts n DHCPv6 exchanges within one second and returns the
// devices whose binding was in the kernel within wait, the exchanges that
// failed in the lab, and the acknowledged devices whose binding never
// came.
func (s *scaleLab) burst(n int, wait time.Duration) ([]arrival, []error, []error) {
	return s.arriveSplit(s.gen6, n, float64(n), wait)
}

// arrive runs the exchanges of n more devices, rate a second (0: at once),
// and returns those whose binding was in the kernel within wait, and what
// happened to the others: an exchange that failed (the lab's DHCP server)
// or a binding that never came (mudd lost the arrival).
func (s *scaleLab) arrive(g *framegen.Generator, n int, rate float64, wait time.Duration) (out []arrival, missing []error) {
	out, failed, lost := s.arriveSplit(g, n, rate, wait)
	return out, append(failed, lost...)
}

func (s *scaleLab) arriveSplit(g *framegen.Generator, n int, rate float64, wait time.Duration) (out []arrival, failed, lost []error) {
	cs := s.clients(n)
	if g == s.gen6 {
		if err := s.neighbours(cs); err != nil {
			s.t.Fatal(err)
		}
	}
	rs := g.Join(s.ctx, cs, rate)
	ctx, cancel := context.WithTimeout(s.ctx, wait)
	defer cancel()
	for _, r := range rs {
		if r.Err != nil {
			failed = append(failed, r.Err)
			continue
		}
		at, err := s.w.wait(ctx, r.MAC, r.Addr, time.Time{})
		if err != nil {
			lost = append(lost, err)
			continue
		}
		out = append(out, arrival{Result: r, Active: at})
	}
	s.all = append(s.all, out...)
	return out, failed, lost
}

// burstSize is the arrivals of the burst.
const burstSize = 1000

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }

func minTime(a, b time.Time) time.Time {
	if b.Before(a) {
		return b
	}
	return a
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// coldStart stops mudd, removes its tables as a reboot would, starts it
// and returns the time until the kernel holds every device's binding.
func (s *scaleLab) coldStart() (time.Duration, error) {
	if err := s.gw.StopMudd(); err != nil {
		return 0, err
	}
	for _, fam := range []string{"inet", "bridge"} {
		if _, err := s.gw.NFT(s.ctx, "delete", "table", fam, "mud"); err != nil {
			return 0, fmt.Errorf("removing the stopped mudd's table: %w", err)
		}
	}
	start := time.Now()
	if err := s.gw.StartMudd(s.ctx); err != nil {
		return 0, err
	}
	ctx, cancel := context.WithTimeout(s.ctx, 2*time.Minute)
	defer cancel()
	last := start
	for _, a := range s.all {
		at, err := s.w.wait(ctx, a.MAC, a.Addr, start)
		if err != nil {
			return 0, fmt.Errorf("cold start with %d devices: %w", len(s.all), err)
		}
		last = maxTime(last, at)
	}
	return last.Sub(start), nil
}

// dhcpLost is what mudd's DHCP snooper dropped or could not attribute so
// far (its counters in /metrics): frames its capture queue had no room
// for, clients forgotten between request and answer, answers whose client
// it could not find.
func (s *scaleLab) dhcpLost() (uint64, error) {
	var n uint64
	for _, series := range []string{"mud_dhcp_queue_drops_total", "mud_dhcp_pending_evicted_total", "mud_dhcp_unidentified_total"} {
		v, err := s.gw.Metric(series)
		if err != nil {
			return 0, err
		}
		n += v
	}
	return n, nil
}
