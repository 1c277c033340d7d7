package fleet_test

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
)

// gateway is one fleet client under test, with every event it reported.
type gateway struct {
	*fleet.Client
	id     string
	mu     sync.Mutex
	cond   *sync.Cond
	events []fleet.Event
}

func startGateway(t testing.TB, cl *etcdlab.Cluster, i int, mod func(*fleet.Config)) *gateway {
	t.Helper()
	id := fmt.Sprintf("gw%d", i)
	tc, err := cl.ClientTLS(id)
	if err != nil {
		t.Fatal(err)
	}
	cfg := fleet.Config{
		Endpoints:      cl.Endpoints(),
		TLS:            tc,
		Prefix:         "/mud",
		GatewayID:      id,
		QueuePath:      filepath.Join(t.TempDir(), "fleet.db"),
		RequestTimeout: 2 * time.Second,
		ProbeInterval:  250 * time.Millisecond,
		LeaseTTL:       3 * time.Second,
		Dial:           cl.Dialer(etcdlab.Source(i)),
	}
	if testing.Verbose() {
		cfg.Logger = slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo})).With("gw", id)
	}
	if mod != nil {
		mod(&cfg)
	}
	c, err := fleet.Open(cfg)
	if err != nil {
		t.Fatal(err)
	}
	g := &gateway{Client: c, id: id}
	g.cond = sync.NewCond(&g.mu)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	go func() {
		for {
			select {
			case e := <-c.Events():
				g.mu.Lock()
				g.events = append(g.events, e)
				g.cond.Broadcast()
				g.mu.Unlock()
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() {
		cancel()
		<-done
		_ = c.Close()
	})
	return g
}

// waitFor waits until an event satisfies match, and returns it.
func (g *gateway) waitFor(t testing.TB, timeout time.Duration, what string, match func(fleet.Event) bool) fleet.Event {
	t.Helper()
	deadline := time.Now().Add(timeout)
	stop := time.AfterFunc(timeout, func() { g.mu.Lock(); g.cond.Broadcast(); g.mu.Unlock() })
	defer stop.Stop()
	g.mu.Lock()
	defer g.mu.Unlock()
	seen := 0
	for {
		for ; seen < len(g.events); seen++ {
			if match(g.events[seen]) {
				return g.events[seen]
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: no event %s within %v; events: %+v", g.id, what, timeout, g.events)
		}
		g.cond.Wait()
	}
}

func changed(kind fleet.Kind, key, value string) func(fleet.Event) bool {
	return func(e fleet.Event) bool {
		return e.Type == fleet.EventChanged && e.Decision.Kind == kind && e.Decision.Key == key &&
			string(e.Decision.Value) == value && !e.Decision.Deleted
	}
}

func isType(ty fleet.EventType) func(fleet.Event) bool {
	return func(e fleet.Event) bool { return e.Type == ty }
}

func approval(digest, by string) string {
	return fmt.Sprintf(`{"verdict":"approve","digest":%q,"by":%q}`, digest, by)
}

// TestDecisionReachesOtherGateway: an approval written through gateway A is
// delivered to gateway B's watch; the time it took is logged (the target is
// BenchmarkDecisionFanout's).
func TestDecisionReachesOtherGateway(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	a.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))

	ctx := context.Background()
	url := "https://mud.example.com/thermostat.json"
	v := approval("sha256:01", "alice")
	start := time.Now()
	d, err := a.Propose(ctx, fleet.KindVerdictURL, url, []byte(v), 0)
	if err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, 10*time.Second, "changed", changed(fleet.KindVerdictURL, url, v))
	t.Logf("decision written through A seen by B after %v (target 1s)", time.Since(start))
	if got := b.Known(fleet.KindVerdictURL, url); got != d.ModRev {
		t.Errorf("B knows revision %d, A wrote %d", got, d.ModRev)
	}
}

// TestLeaderLossWritesContinue: with the leader killed (no leadership
// transfer), the remaining two members elect a new one and writes go on.
func TestLeaderLossWritesContinue(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	ctx := context.Background()
	if _, err := a.Propose(ctx, fleet.KindBinding, "02:00:00:00:01:01", []byte(`{"mud_url":"https://a.example/x"}`), 0); err != nil {
		t.Fatal(err)
	}
	lctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	leader, err := cl.Leader(lctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	cl.KillMember(leader)
	t.Logf("killed leader %s", cl.Members[leader].Name)
	start := time.Now()
	var d fleet.Decision
	for {
		d, err = a.Propose(ctx, fleet.KindBinding, "02:00:00:00:01:02", []byte(`{"mud_url":"https://a.example/y"}`), 0)
		if err == nil {
			break
		}
		if errors.Is(err, fleet.ErrConflict) {
			t.Fatalf("a retried write conflicted: %v", err)
		}
		if time.Since(start) > 15*time.Second {
			t.Fatalf("no write accepted within 15s of losing the leader: %v\n%s", err, cl.Logs())
		}
	}
	t.Logf("write accepted %v after the leader was killed (revision %d)", time.Since(start), d.ModRev)
	b.waitFor(t, 10*time.Second, "changed after election", changed(fleet.KindBinding, "02:00:00:00:01:02", `{"mud_url":"https://a.example/y"}`))
	lctx, cancel = context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if nl, err := cl.Leader(lctx); err != nil || nl == leader {
		t.Fatalf("new leader %d (old %d): %v", nl, leader, err)
	}
}

// TestPartitionQueuesAndHeals: a gateway cut off from etcd reports the
// partition, queues its writes on disk, and on heal writes them; both
// gateways end with every decision, and the one made elsewhere meanwhile
// reaches the healed gateway.
func TestPartitionQueuesAndHeals(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	a.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))

	if err := cl.Partition(etcdlab.Source(0)); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 15*time.Second, "partition", isType(fleet.EventPartition))
	if !a.Partitioned() {
		t.Fatal("A does not report itself partitioned")
	}
	want := map[string]string{}
	for i := range 5 {
		mac := fmt.Sprintf("02:00:00:00:02:%02x", i)
		v := approval(fmt.Sprintf("sha256:a%d", i), "gw0")
		want[mac] = v
		if err := a.Submit(fleet.KindVerdictMAC, mac, []byte(v)); err != nil {
			t.Fatal(err)
		}
		if err := a.PutDevice(mac, []byte(`{"state":"enforced"}`)); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(time.Second) // flush passes run and must leave the queue alone
	if n := a.Queued(); n != 10 {
		t.Fatalf("A queued %d writes during the partition, want 10", n)
	}
	ctx := context.Background()
	bv := approval("sha256:b", "gw1")
	if _, err := b.Propose(ctx, fleet.KindVerdictMAC, "02:00:00:00:03:00", []byte(bv), 0); err != nil {
		t.Fatal(err)
	}

	if err := cl.Heal(); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 20*time.Second, "heal", isType(fleet.EventHeal))
	a.waitFor(t, 20*time.Second, "flushed", isType(fleet.EventFlushed))
	if n := a.Queued(); n != 0 {
		t.Fatalf("A still has %d queued writes after the flush", n)
	}
	for mac, v := range want {
		b.waitFor(t, 10*time.Second, "changed "+mac, changed(fleet.KindVerdictMAC, mac, v))
		d, err := b.Get(ctx, fleet.KindVerdictMAC, mac)
		if err != nil || string(d.Value) != v {
			t.Errorf("etcd holds %q for %s (err %v), want %q", d.Value, mac, err, v)
		}
	}
	a.waitFor(t, 10*time.Second, "B's decision after heal", changed(fleet.KindVerdictMAC, "02:00:00:00:03:00", bv))
	out, err := cl.Etcdctl(ctx, "root", "get", "--prefix", "--keys-only", "/mud/gateways/gw0/devices/")
	if err != nil {
		t.Fatal(err)
	}
	if n := countLines(out); n != 5 {
		t.Errorf("etcd holds %d device summaries of gw0, want 5:\n%s", n, out)
	}
}

func countLines(s string) int {
	n := 0
	for _, l := range splitLines(s) {
		if l != "" {
			n++
		}
	}
	return n
}

func splitLines(s string) []string {
	var out []string
	start := 0
	for i := range len(s) {
		if s[i] == '\n' {
			out = append(out, s[start:i])
			start = i + 1
		}
	}
	return append(out, s[start:])
}

// TestApprovalConflict: two gateways decide on the same device from the
// same revision; exactly one write wins, the other gets the winner back and
// nothing is overwritten. A queued decision made during a partition that
// another gateway overtook is reported as a conflict on heal, not forced.
func TestApprovalConflict(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	a.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	ctx := context.Background()
	mac := "02:00:00:00:04:01"
	va, vb := approval("sha256:aa", "gw0"), `{"verdict":"reject","digest":"sha256:aa","by":"gw1"}`

	type result struct {
		d   fleet.Decision
		err error
	}
	ra, rb := make(chan result), make(chan result)
	go func() { d, err := a.Propose(ctx, fleet.KindVerdictMAC, mac, []byte(va), 0); ra <- result{d, err} }()
	go func() { d, err := b.Propose(ctx, fleet.KindVerdictMAC, mac, []byte(vb), 0); rb <- result{d, err} }()
	x, y := <-ra, <-rb
	var win, lose result
	var winner string
	switch {
	case x.err == nil && errors.Is(y.err, fleet.ErrConflict):
		win, lose, winner = x, y, va
	case y.err == nil && errors.Is(x.err, fleet.ErrConflict):
		win, lose, winner = y, x, vb
	default:
		t.Fatalf("want one success and one conflict; A: %v, B: %v", x.err, y.err)
	}
	var ce *fleet.ConflictError
	if !errors.As(lose.err, &ce) || string(ce.Current.Value) != winner || ce.Current.ModRev != win.d.ModRev {
		t.Fatalf("the loser's conflict carries %+v, want the winner %s at %d", ce, winner, win.d.ModRev)
	}
	got, err := a.Get(ctx, fleet.KindVerdictMAC, mac)
	if err != nil || string(got.Value) != winner {
		t.Fatalf("etcd holds %q (err %v), want the winner %s", got.Value, err, winner)
	}
	// A stale base revision is refused as well.
	if _, err := a.Propose(ctx, fleet.KindVerdictMAC, mac, []byte(va), win.d.ModRev-1); !errors.Is(err, fleet.ErrConflict) {
		t.Fatalf("write on a stale revision: %v, want a conflict", err)
	}
	// The current revision is accepted.
	next, err := a.Propose(ctx, fleet.KindVerdictMAC, mac, []byte(va), win.d.ModRev)
	if err != nil {
		t.Fatalf("write on the current revision: %v", err)
	}
	b.waitFor(t, 10*time.Second, "A's re-decision", changed(fleet.KindVerdictMAC, mac, va))

	// Queued during a partition, overtaken meanwhile: a conflict on heal.
	if err := cl.Partition(etcdlab.Source(0)); err != nil {
		t.Fatal(err)
	}
	a.waitFor(t, 15*time.Second, "partition", isType(fleet.EventPartition))
	if err := a.Submit(fleet.KindVerdictMAC, mac, []byte(approval("sha256:stale", "gw0"))); err != nil {
		t.Fatal(err)
	}
	vb2 := `{"verdict":"reject","digest":"sha256:bb","by":"gw1"}`
	if _, err := b.Propose(ctx, fleet.KindVerdictMAC, mac, []byte(vb2), next.ModRev); err != nil {
		t.Fatal(err)
	}
	if err := cl.Heal(); err != nil {
		t.Fatal(err)
	}
	e := a.waitFor(t, 20*time.Second, "conflict", isType(fleet.EventConflict))
	if string(e.Decision.Value) != vb2 || e.Write == nil || e.Write.BaseRev != next.ModRev {
		t.Fatalf("conflict event %+v, want B's %s over a write based on %d", e, vb2, next.ModRev)
	}
	got, err = a.Get(ctx, fleet.KindVerdictMAC, mac)
	if err != nil || string(got.Value) != vb2 {
		t.Fatalf("etcd holds %q (err %v) after heal, want B's %s", got.Value, err, vb2)
	}
}

// TestResyncAfterCompaction: a gateway whose watch revision was compacted
// away while it was stopped reads everything again on start, reporting the
// decisions it missed and the one deleted meanwhile.
func TestResyncAfterCompaction(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	queue := filepath.Join(t.TempDir(), "a.db")
	ctx := context.Background()
	b := startGateway(t, cl, 1, nil)
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	gone, _ := b.Propose(ctx, fleet.KindController, "urn:example:ctl", []byte(`{"prefixes":["192.0.2.9/32"]}`), 0)

	// A first run of A learns the controller and stops.
	if _, err := runOnce(cl, queue); err != nil {
		t.Fatal(err)
	}
	if _, err := b.Withdraw(ctx, fleet.KindController, "urn:example:ctl", gone.ModRev); err != nil {
		t.Fatal(err)
	}
	d, err := b.Propose(ctx, fleet.KindPinURL, "https://mud.example.com/cam.json", []byte(`{"authority":"mud.example.com"}`), 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Etcdctl(ctx, "root", "compact", fmt.Sprint(d.ModRev)); err != nil {
		t.Fatal(err)
	}
	a := startGateway(t, cl, 0, func(c *fleet.Config) { c.QueuePath = queue })
	a.waitFor(t, 20*time.Second, "missed pin", changed(fleet.KindPinURL, "https://mud.example.com/cam.json", `{"authority":"mud.example.com"}`))
	a.waitFor(t, 20*time.Second, "deleted controller", func(e fleet.Event) bool {
		return e.Type == fleet.EventChanged && e.Decision.Kind == fleet.KindController && e.Decision.Deleted
	})
	a.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
}

// runOnce runs a gateway on queue until it has read the shared decisions,
// then stops it.
func runOnce(cl *etcdlab.Cluster, queue string) (int, error) {
	tc, err := cl.ClientTLS("gw0")
	if err != nil {
		return 0, err
	}
	c, err := fleet.Open(fleet.Config{
		Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: "gw0", QueuePath: queue,
		Dial: cl.Dialer(etcdlab.Source(0)), ProbeInterval: 250 * time.Millisecond,
	})
	if err != nil {
		return 0, err
	}
	defer c.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	n := 0
wait:
	for {
		select {
		case e := <-c.Events():
			if e.Type == fleet.EventChanged {
				n++
			}
			if e.Type == fleet.EventResync {
				break wait
			}
		case <-ctx.Done():
			break wait
		}
	}
	cancel()
	<-done
	if n == 0 {
		return 0, errors.New("first run saw no decision")
	}
	return n, nil
}

// TestQueueSurvivesRestartDuringPartition: writes queued while etcd was
// unreachable are still written after the gateway restarted, once etcd is
// back.
func TestQueueSurvivesRestartDuringPartition(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	queue := filepath.Join(t.TempDir(), "a.db")
	b := startGateway(t, cl, 1, nil)
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	if err := cl.Partition(etcdlab.Source(0)); err != nil {
		t.Fatal(err)
	}
	tc, err := cl.ClientTLS("gw0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleet.Open(fleet.Config{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: "gw0",
		QueuePath: queue, Dial: cl.Dialer(etcdlab.Source(0))})
	if err != nil {
		t.Fatal(err)
	}
	v := approval("sha256:restart", "gw0")
	if err := c.Submit(fleet.KindVerdictURL, "https://mud.example.com/r.json", []byte(v)); err != nil {
		t.Fatal(err)
	}
	if err := c.Close(); err != nil { // never ran: nothing could be written
		t.Fatal(err)
	}
	if err := cl.Heal(); err != nil {
		t.Fatal(err)
	}
	a := startGateway(t, cl, 0, func(c *fleet.Config) { c.QueuePath = queue })
	a.waitFor(t, 20*time.Second, "flushed", isType(fleet.EventFlushed))
	b.waitFor(t, 10*time.Second, "the queued decision", changed(fleet.KindVerdictURL, "https://mud.example.com/r.json", v))
	if n := a.Queued(); n != 0 {
		t.Fatalf("%d writes still queued", n)
	}
}
