package manager

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	rtmetrics "runtime/metrics"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// metrics are the manager's counters. They are written by the Run
// goroutine (and fetch goroutines) and read by the HTTP handler, hence
// atomics and one small mutex for the gauge snapshot.
type metrics struct {
	fetches, fetchFailures, verifyFailures, applies, applyErrors, floods, commitFailures atomic.Uint64

	fetchSeconds, applySeconds, boundToEnforced *histogram

	mu         sync.Mutex
	states     map[store.State]int
	policies   int
	unenforced int // devices unrestricted for want of a usable file
	queued     int // fetches waiting to start
}

func newMetrics() *metrics {
	lat := []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}
	return &metrics{fetchSeconds: newHistogram(lat), applySeconds: newHistogram(lat), boundToEnforced: newHistogram(lat),
		states: map[store.State]int{}}
}

func (mt *metrics) setStates(c map[store.State]int, policies, unenforced, queued int) {
	mt.mu.Lock()
	defer mt.mu.Unlock()
	mt.states, mt.policies, mt.unenforced, mt.queued = c, policies, unenforced, queued
}

// histogram is a cumulative Prometheus histogram.
type histogram struct {
	mu     sync.Mutex
	bounds []float64
	counts []uint64
	sum    float64
	n      uint64
}

func newHistogram(bounds []float64) *histogram {
	return &histogram{bounds: bounds, counts: make([]uint64, len(bounds))}
}

func (h *histogram) observe(v float64) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for i, b := range h.bounds {
		if v <= b {
			h.counts[i]++
		}
	}
	h.sum += v
	h.n++
}

func (h *histogram) write(w io.Writer, name, help string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s histogram\n", name, help, name)
	for i, b := range h.bounds {
		fmt.Fprintf(w, "%s_bucket{le=\"%s\"} %d\n", name, formatFloat(b), h.counts[i])
	}
	fmt.Fprintf(w, "%s_bucket{le=\"+Inf\"} %d\n%s_sum %s\n%s_count %d\n", name, h.n, name, formatFloat(h.sum), name, h.n)
}

func formatFloat(f float64) string {
	if math.IsInf(f, 1) {
		return "+Inf"
	}
	return fmt.Sprintf("%g", f)
}

var allStates = []store.State{store.StateDiscovered, store.StateFetching, store.StateEnforced, store.StatePendingApproval,
	store.StateFailed, store.StateQuarantined, store.StateRemoved}

// MetricsHandler serves the Prometheus text exposition format (version
// 0.0.4): devices by state, fetches, verification failures, drops (the
// enforcer's default-deny counters), apply latency and the DHCP-bound to
// policy-active latency.
func (m *Manager) MetricsHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; version=0.0.4; charset=utf-8")
		var b strings.Builder
		m.writeMetrics(r.Context(), &b)
		_, _ = io.WriteString(w, b.String())
	})
}

func (m *Manager) writeMetrics(ctx context.Context, w io.Writer) {
	mt := m.metrics
	mt.mu.Lock()
	states, policies, unenforced, queued := mt.states, mt.policies, mt.unenforced, mt.queued
	mt.mu.Unlock()
	fmt.Fprintf(w, "# HELP mud_devices Devices by lifecycle state.\n# TYPE mud_devices gauge\n")
	for _, s := range allStates {
		fmt.Fprintf(w, "mud_devices{state=%q} %d\n", string(s), states[s])
	}
	gauge := func(name, help string, v int) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", name, help, name, name, v)
	}
	gauge("mud_devices_unenforced", "Devices that announced a MUD URL but are unrestricted because their MUD file cannot be used (policy.on_failure: baseline).", unenforced)
	gauge("mud_policies_installed", "Distinct compiled policies in the kernel.", policies)
	gauge("mud_fetches_queued", "MUD file fetches waiting for a slot or a budget.", queued)
	counter := func(name, help string, v uint64) {
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s counter\n%s %d\n", name, help, name, name, v)
	}
	counter("mud_fetches_total", "MUD file fetches finished.", mt.fetches.Load())
	counter("mud_fetch_failures_total", "MUD file fetches that got no file.", mt.fetchFailures.Load())
	counter("mud_verification_failures_total", "MUD files whose signature did not verify.", mt.verifyFailures.Load())
	counter("mud_enforcer_applies_total", "Changes sent to the enforcer.", mt.applies.Load())
	counter("mud_enforcer_apply_errors_total", "Changes the enforcer refused or failed.", mt.applyErrors.Load())
	if m.cfg.DNSStats != nil {
		rs := m.cfg.DNSStats()
		counter("mud_dns_answers_refused_total", "Snooped DNS answers that granted nothing because their source is not in dns.trusted_sources.", rs.RefusedAnswers)
		counter("mud_dns_answers_held_total", "DNS answers to devices held until their addresses were in the device's sets (dns.hold).", rs.Held)
		counter("mud_dns_apply_failures_total", "Snooped DNS answers whose addresses could not be applied in time (the hold timeout, or a failed update); a held one is released anyway.", rs.ApplyFailures)
		counter("mud_dns_release_errors_total", "Held DNS answers that could not be re-injected (lost to the device).", rs.ReleaseErrors)
	}
	if m.cfg.EnforcerInfo != nil {
		_, _, repairs := m.cfg.EnforcerInfo()
		counter("mud_enforcer_repairs_total", "Changes someone else made to mud's nftables tables, undone (nftables-tampered events).", uint64(repairs))
	}
	if m.cfg.DHCPStats != nil {
		ds := m.cfg.DHCPStats()
		counter("mud_dhcp_frames_total", "DHCP frames captured.", ds.Frames)
		counter("mud_dhcp_queue_drops_total", "DHCP frames dropped because mudd's capture queue was full: their devices stay as they were until their next DHCP exchange.", ds.QueueDrops)
		counter("mud_dhcp_malformed_total", "DHCP frames that did not parse.", ds.Malformed)
		counter("mud_dhcp_rate_limited_total", "DHCP messages dropped by the per-MAC rate limit.", ds.RateLimited)
		counter("mud_dhcp_pending_evicted_total", "Clients forgotten between request and answer because too many were waiting (dhcpsnoop MaxPending).", ds.Evicted)
		counter("mud_dhcp_unidentified_total", "DHCP messages whose client could not be found.", ds.Unidentified)
		counter("mud_dhcp_device_cap_total", "Leases not followed because dhcp.max_devices was reached.", ds.DeviceCap)
	}
	writeRuntimeMetrics(w)
	counter("mud_store_commit_failures_total", "Batches of changes the store could not save (logged; mudd goes on enforcing them).", mt.commitFailures.Load())
	counter("mud_fetch_floods_total", "Times a bridge port asked for more MUD file fetches than it may start (fetch-flood events).", mt.floods.Load())
	mt.fetchSeconds.write(w, "mud_fetch_duration_seconds", "Time to fetch and verify a MUD file.")
	mt.applySeconds.write(w, "mud_apply_duration_seconds", "Time to bring the kernel to the desired state after a change.")
	mt.boundToEnforced.write(w, "mud_bound_to_enforced_seconds", "Time from a DHCP lease bound to the device's policy active in the kernel.")

	if m.cfg.Violations != nil {
		if err := m.cfg.Violations.WriteMetrics(w); err != nil {
			m.log.Warn("writing the violation metrics", "err", err)
		}
	}

	cctx, cancel := context.WithTimeout(ctx, 2*time.Second)
	defer cancel()
	cs, err := m.cfg.Enforcer.Counters(cctx)
	if err != nil {
		return
	}
	type key struct {
		pol string
		dir policy.Direction
	}
	drops := map[key][2]uint64{}
	for _, c := range cs {
		if c.Rule != "default-deny" {
			continue
		}
		k := key{c.PolicyID, c.Direction}
		v := drops[k]
		drops[k] = [2]uint64{v[0] + c.Packets, v[1] + c.Bytes}
	}
	keys := make([]key, 0, len(drops))
	for k := range drops {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b key) int {
		if c := strings.Compare(a.pol, b.pol); c != 0 {
			return c
		}
		return int(a.dir) - int(b.dir)
	})
	fmt.Fprintf(w, "# HELP mud_dropped_packets_total Packets dropped by a policy's default deny.\n# TYPE mud_dropped_packets_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "mud_dropped_packets_total{policy=%q,direction=%q} %d\n", k.pol, k.dir.String(), drops[k][0])
	}
	fmt.Fprintf(w, "# HELP mud_dropped_bytes_total Bytes dropped by a policy's default deny.\n# TYPE mud_dropped_bytes_total counter\n")
	for _, k := range keys {
		fmt.Fprintf(w, "mud_dropped_bytes_total{policy=%q,direction=%q} %d\n", k.pol, k.dir.String(), drops[k][1])
	}
}

// runtimeGauges are the Go runtime's memory figures in /metrics, under the
// names Prometheus' Go collector gives them: what the heap holds live, what
// the runtime has mapped in all, the soft limit (GOMEMLIMIT) and GOGC.
var runtimeGauges = []struct{ name, sample, help string }{
	{"go_gc_heap_live_bytes", "/gc/heap/live:bytes", "Heap memory occupied by live objects, as of the last garbage collection."},
	{"go_memory_classes_total_bytes", "/memory/classes/total:bytes", "All memory mapped by the Go runtime into mudd's address space."},
	{"go_gc_gomemlimit_bytes", "/gc/gomemlimit:bytes", "The Go runtime's soft memory limit (GOMEMLIMIT)."},
	{"go_gc_gogc_percent", "/gc/gogc:percent", "Heap growth over the live heap before the next collection, in percent (GOGC)."},
}

func writeRuntimeMetrics(w io.Writer) {
	samples := make([]rtmetrics.Sample, len(runtimeGauges))
	for i, g := range runtimeGauges {
		samples[i].Name = g.sample
	}
	rtmetrics.Read(samples)
	for i, g := range runtimeGauges {
		if samples[i].Value.Kind() != rtmetrics.KindUint64 {
			continue
		}
		fmt.Fprintf(w, "# HELP %s %s\n# TYPE %s gauge\n%s %d\n", g.name, g.help, g.name, g.name, samples[i].Value.Uint64())
	}
}
