package manager

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
	"github.com/openmud/mud/store"
)

// etcdFleet adapts a real fleet client to Fleet, as internal/fleetlink
// does for mudd (which this package cannot import in its own tests).
type etcdFleet struct {
	c  *fleet.Client
	id string
	ch chan FleetEvent
}

func (f *etcdFleet) Submit(ds ...FleetDecision) error {
	fds := make([]fleet.Decision, len(ds))
	for i, d := range ds {
		fds[i] = fleet.Decision{Kind: fleet.Kind(d.Kind), Key: d.Key, Value: d.Value}
	}
	return f.c.SubmitAll(fds)
}
func (f *etcdFleet) Known(k FleetKind, key string) int64  { return f.c.Known(fleet.Kind(k), key) }
func (f *etcdFleet) PutDevices(s map[string][]byte) error { return f.c.PutDevices(s) }
func (f *etcdFleet) Events() <-chan FleetEvent            { return f.ch }
func (f *etcdFleet) Status() FleetStatus {
	return FleetStatus{GatewayID: f.id, Partitioned: f.c.Partitioned(), Queued: f.c.Queued()}
}

// etcdGateway starts a fleet client of the lab cluster, dialling from
// client address i, and a manager using it.
func etcdGateway(t testing.TB, cl *etcdlab.Cluster, srv *mudServer, i int) (*harness, *fakeEnforcer, *etcdFleet) {
	t.Helper()
	id := fmt.Sprintf("gw%d", i)
	tc, err := cl.ClientTLS(id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleet.Open(fleet.Config{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: id,
		QueuePath: filepath.Join(t.TempDir(), "fleet.db"), RequestTimeout: time.Second,
		ProbeInterval: 200 * time.Millisecond, LeaseTTL: 3 * time.Second, Dial: cl.Dialer(etcdlab.Source(i))})
	if err != nil {
		t.Fatal(err)
	}
	f := &etcdFleet{c: c, id: id, ch: make(chan FleetEvent, 64)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	pumped := make(chan struct{})
	go func() {
		defer close(pumped)
		for {
			select {
			case <-done:
				return
			case ev := <-c.Events():
				me := FleetEvent{Type: FleetEventType(ev.Type), Kind: FleetKind(ev.Decision.Kind), Key: ev.Decision.Key,
					Value: ev.Decision.Value, Deleted: ev.Decision.Deleted, Err: ev.Err}
				select {
				case f.ch <- me:
				case <-done:
					return
				}
			}
		}
	}()
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.Fleet = f }})
	t.Cleanup(func() {
		h.stop() // the manager first: it reads the events
		cancel()
		<-done
		<-pumped
		_ = c.Close()
	})
	return h, fe, f
}

// Through a real three-member etcd cluster: an approval on one gateway
// enforces the device on the other; a partitioned gateway keeps its
// enforcement, and after the heal both have what each decided meanwhile.
func TestFleetThroughEtcd(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	srv, u := camServer(t, literalACE, false)
	a, _, _ := etcdGateway(t, cl, srv, 0)
	b, feB, fb := etcdGateway(t, cl, srv, 1)
	ip2, ip3 := netip.MustParseAddr("192.0.2.12"), netip.MustParseAddr("192.0.2.13")
	for _, g := range []*harness{a, b} {
		g.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
		g.lease(dhcpsnoop.KindBound, mac(2), ip2, u)
		g.lease(dhcpsnoop.KindBound, mac(3), ip3, u)
		for i := 1; i <= 3; i++ {
			g.waitState(mac(i), store.StatePendingApproval)
		}
	}

	start := time.Now()
	if _, err := a.m.Approve(bg, adm, mac(1).String(), Action{}); err != nil {
		t.Fatal(err)
	}
	b.waitState(mac(1), store.StateEnforced)
	t.Logf("approval on gw0 enforced on gw1 after %v", time.Since(start))
	b.hasEvent("approved", "approval from the fleet")

	if err := cl.Partition(etcdlab.Source(1)); err != nil {
		t.Fatal(err)
	}
	b.hasEvent("fleet-partition", "enforcing from the local store")
	if d, ok := feB.device(mac(1)); !ok || d.Mode != enforcer.Enforce {
		t.Errorf("the partitioned gateway stopped enforcing: %+v (present %v)", d, ok)
	}
	if _, err := a.m.Approve(bg, adm, mac(2).String(), Action{}); err != nil {
		t.Fatal(err)
	}
	if _, err := b.m.Reject(bg, adm, mac(3).String(), Action{Reason: "decided while cut off"}); err != nil {
		t.Fatal(err)
	}
	if s := fb.Status(); !s.Partitioned || s.Queued == 0 {
		t.Errorf("partitioned gateway's fleet status %+v", s)
	}
	time.Sleep(500 * time.Millisecond)
	if d, _ := b.m.Device(bg, mac(2).String()); d.State != store.StatePendingApproval {
		t.Errorf("an approval reached the partitioned gateway: %s", d.State)
	}
	if err := cl.Heal(); err != nil {
		t.Fatal(err)
	}
	b.hasEvent("fleet-heal", "reachable again")
	b.waitState(mac(2), store.StateEnforced)
	a.waitState(mac(3), store.StateFailed)
	a.hasEvent("rejected", "rejection from the fleet")
}

// BenchmarkFleetApprovalSpread measures an administrator's approval on one
// gateway until the other gateway's manager has enforced the device (its
// store written, its enforcer updated), through a real three-member etcd
// cluster: the manager's share of the fleet's propagation time.
func BenchmarkFleetApprovalSpread(b *testing.B) {
	cl := etcdlab.Start(b, 3)
	srv, u := camServer(b, literalACE, false)
	a, _, _ := etcdGateway(b, cl, srv, 0)
	g, _, _ := etcdGateway(b, cl, srv, 1)
	if b.N > 250 {
		b.Fatalf("one device per iteration, in 198.51.100.0/24: run with -benchtime 250x or less, not %d", b.N)
	}
	macs := make([]net.HardwareAddr, b.N)
	for i := range macs {
		macs[i] = net.HardwareAddr{2, 0, 0, 0x10, 0, byte(i)}
		ip := netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)})
		for _, h := range []*harness{a, g} {
			h.lease(dhcpsnoop.KindBound, macs[i], ip, u)
		}
	}
	for _, h := range []*harness{a, g} {
		for _, m := range macs {
			h.waitState(m, store.StatePendingApproval)
		}
	}
	var worst time.Duration
	b.ResetTimer()
	for i := range b.N {
		start := time.Now()
		if _, err := a.m.Approve(bg, adm, macs[i].String(), Action{}); err != nil {
			b.Fatal(err)
		}
		for {
			d, err := g.m.Device(bg, macs[i].String())
			if err != nil {
				b.Fatal(err)
			}
			if d.State == store.StateEnforced {
				break
			}
			time.Sleep(time.Millisecond)
		}
		worst = max(worst, time.Since(start))
	}
	b.ReportMetric(float64(worst.Microseconds())/1000, "worst-ms")
}
