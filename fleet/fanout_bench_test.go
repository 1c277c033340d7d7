package fleet_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
)

// until waits until an event at index from or later satisfies match and
// returns the index after it.
func (g *gateway) until(from int, timeout time.Duration, match func(fleet.Event) bool) (int, error) {
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	for {
		for ; from < len(g.events); from++ {
			if match(g.events[from]) {
				return from + 1, nil
			}
		}
		if time.Now().After(deadline) {
			return from, fmt.Errorf("%s: nothing within %v", g.id, timeout)
		}
		g.cond.Wait()
	}
}

// BenchmarkDecisionFanout: the time from a gateway's compare-and-swap write
// of an approval until all of 10 other gateways' watches have delivered it,
// on a 3-member TLS cluster. The target is under 1 s.
func BenchmarkDecisionFanout(b *testing.B) {
	cl := etcdlab.Start(b, 3)
	w := startGateway(b, cl, 0, nil)
	var watchers []*gateway
	for i := 1; i <= 10; i++ {
		watchers = append(watchers, startGateway(b, cl, i, nil))
	}
	for _, g := range append(watchers, w) {
		if _, err := g.until(0, 30*time.Second, isType(fleet.EventResync)); err != nil {
			b.Fatal(err)
		}
	}
	ctx := context.Background()
	key := "https://mud.example.com/fanout.json"
	pos := make([]int, len(watchers))
	var rev int64
	var worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		v := approval(fmt.Sprintf("sha256:%d", i), "gw0")
		start := time.Now()
		d, err := w.Propose(ctx, fleet.KindVerdictURL, key, []byte(v), rev)
		if err != nil {
			b.Fatal(err)
		}
		rev = d.ModRev
		var wg sync.WaitGroup
		errs := make([]error, len(watchers))
		for j, g := range watchers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				pos[j], errs[j] = g.until(pos[j], 10*time.Second, changed(fleet.KindVerdictURL, key, v))
			}()
		}
		wg.Wait()
		for _, err := range errs {
			if err != nil {
				b.Fatal(err)
			}
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
