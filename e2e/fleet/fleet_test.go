// Package fleete2e runs several real mudd gateways that share decisions
// through a real etcd cluster (store.backend etcd, README "Fleet"): an
// internal/lab/etcdlab cluster of three members, and gateways each in a
// gwlab lab of its own (dnsmasq, an HTTPS MUD server, udhcpc devices),
// attached to the cluster's namespace by a veth pair. The devices of the
// labs have the same MACs, so each lab's device i is "the same device" as
// seen by each gateway — a device that roams, or a site whose gateways
// all see it. What is checked is traffic through each gateway, not only
// what mudctl says.
package fleete2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/etcdlab"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

const (
	cloudHost = "cloud.example.com"
	otherHost = "other.example.net"
	permitted = 443  // the port the file permits to the cloud
	otherPort = 8080 // a port it does not

	passWait   = 5 * time.Second
	refuseWait = 700 * time.Millisecond
	joinWait   = 20 * time.Second
	// spread bounds how long a decision may take to reach every gateway
	// (the requirement is 1 s; the watch delivers in tens of ms).
	spread = time.Second
)

var bulbURL = "https://" + gwlab.DefaultMUDHost + "/lightbulb2000.json"

var bins struct {
	once sync.Once
	dir  string
	mudd string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func buildMudd(t testing.TB) string {
	t.Helper()
	bins.once.Do(func() {
		if bins.dir, bins.err = os.MkdirTemp("", "mud-fleet-e2e-bin-"); bins.err != nil {
			return
		}
		bins.mudd, _, bins.err = multicall.Build(bins.dir, multicall.Options{})
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.mudd
}

// gateway is one gateway lab joined to the fleet.
type gateway struct {
	id    string
	lab   *netlab.Lab
	gw    *gwlab.Gateway
	src   netip.Addr // its address as the etcd members see it
	cloud netip.Addr
	other netip.Addr
	devs  []*gwlab.Device
}

// fleetLab is the cluster and its gateways.
type fleetLab struct {
	t   *testing.T
	ctx context.Context
	cl  *etcdlab.Cluster
	gws []*gateway
}

// newCluster starts the etcd cluster of a fleet lab.
func newCluster(t *testing.T) *fleetLab {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "dnsmasq", "udhcpc", "go", "etcd", "etcdctl")
	f := &fleetLab{t: t, ctx: t.Context(), cl: etcdlab.Start(t, 3)}
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("--- etcd ---\n%s", f.cl.Logs())
		}
	})
	return f
}

// addGateway starts gateway id in a lab of its own with devices, attached
// to the cluster (store.backend etcd). It holds devices it cannot use to
// policy.on_failure "block" (nothing but DHCP and DNS until an
// administrator approves); mod may change its configuration.
func (f *fleetLab) addGateway(id string, devices int, mod func(*gwlab.Config)) *gateway {
	t := f.t
	t.Helper()
	g := &gateway{id: id}
	g.lab = netlab.New(t, netlab.Config{Devices: devices, Servers: 3})
	eps, src, err := f.cl.Attach(g.lab.GW.NS, "fleet0")
	if err != nil {
		t.Fatal(err)
	}
	g.src = src
	cert, key, ca, err := f.cl.ClientFiles(g.id)
	if err != nil {
		t.Fatal(err)
	}
	quoted := make([]string, len(eps))
	for j, ep := range eps {
		quoted[j] = fmt.Sprintf("%q", ep)
	}
	g.cloud, g.other = g.lab.Servers[1].IPv4, g.lab.Servers[2].IPv4
	cfg := gwlab.Config{
		Mudd: buildMudd(t), Dir: t.TempDir(), Policy: "  on_failure: block\n",
		Names: map[string]netip.Addr{cloudHost: g.cloud, otherHost: g.other},
		Extra: fmt.Sprintf("store:\n  backend: etcd\n  etcd:\n    endpoints: [%s]\n    ca_cert: %s\n    cert: %s\n    key: %s\n    prefix: /mud\n    gateway_id: %s\n",
			strings.Join(quoted, ", "), ca, cert, key, g.id),
	}
	if mod != nil {
		mod(&cfg)
	}
	gw, err := gwlab.Start(context.Background(), g.lab, cfg)
	if gw != nil {
		g.gw = gw
		t.Cleanup(func() {
			if t.Failed() {
				t.Logf("--- mudd log of %s ---\n%s", g.id, gw.MuddLog)
				t.Logf("--- dnsmasq log of %s ---\n%s", g.id, gw.DNSLog)
			}
			gw.Close()
		})
	}
	if err != nil {
		t.Fatalf("starting gateway %s: %v", g.id, err)
	}
	for _, h := range []*netlab.Host{g.lab.Servers[1], g.lab.Servers[2]} {
		for _, p := range []int{permitted, otherPort} {
			s, err := netlab.ServeEcho(h.NS, fmt.Sprintf("0.0.0.0:%d", p))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(s.Close)
		}
	}
	// The same file on every gateway's MUD server, with a signature that
	// does not verify (over other bytes): it needs approval (RFC 8520
	// §13.2). The approval names the file's digest, the same everywhere.
	file := gwlab.File{URL: bulbURL, Mfg: "Example", Model: "lightbulb2000",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted, Initiated: "from-device"}},
		To:   []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted, Initiated: "from-device"}}}
	body := file.JSON()
	altered := slices.Clone(body)
	altered[len(altered)-2] ^= ' ' ^ '\t'
	sig, err := gw.PKI.Signer.SignDetached(altered)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.PublishRaw(file.URL, body, file.SignatureURL(), sig); err != nil {
		t.Fatal(err)
	}
	f.gws = append(f.gws, g)
	return g
}

// newFleet starts the cluster and n gateways with devices each, every
// device joined to its gateway's LAN and pending approval there.
func newFleet(t *testing.T, n, devices int) *fleetLab {
	t.Helper()
	f := newCluster(t)
	for i := range n {
		f.addGateway(fmt.Sprintf("gw%d", i), devices, nil)
	}
	// Every device joins every gateway's LAN and waits for approval there.
	for _, g := range f.gws {
		for i, h := range g.lab.Devices {
			d, err := g.gw.Join(h, gwlab.Udhcpc, fmt.Sprintf("bulb%d", i), bulbURL)
			if err != nil {
				t.Fatal(err)
			}
			g.devs = append(g.devs, d)
		}
	}
	for _, g := range f.gws {
		for i := range g.devs {
			if _, err := g.devs[i].WaitAddr(f.ctx, joinWait, netip.Addr{}); err != nil {
				t.Fatalf("%s: device %d: %v", g.id, i, err)
			}
			f.waitState(g, i, api.StatePendingApproval, joinWait)
		}
		f.waitConnected(g, true)
	}
	return f
}

func (f *fleetLab) mac(i int) string { return f.gws[0].lab.Devices[i].MAC.String() }

func (f *fleetLab) waitState(g *gateway, i int, state api.DeviceState, timeout time.Duration) {
	f.t.Helper()
	if _, err := g.gw.WaitState(f.ctx, f.mac(i), state, timeout); err != nil {
		f.t.Fatalf("%s: %v", g.id, err)
	}
}

// status is the gateway's `mudctl -o json status`.
func (f *fleetLab) status(g *gateway) api.Status {
	f.t.Helper()
	out, err := g.gw.Mudctl(f.ctx, "-o", "json", "status")
	if err != nil {
		f.t.Fatal(err)
	}
	var st api.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		f.t.Fatalf("%s: status: %v: %s", g.id, err, out)
	}
	return st
}

// waitConnected waits until the gateway's status says it is (or is not)
// connected to etcd.
func (f *fleetLab) waitConnected(g *gateway, want bool) api.Status {
	f.t.Helper()
	var st api.Status
	err := gwlab.Poll(f.ctx, 15*time.Second, func() error {
		st = f.status(g)
		if st.Fleet == nil {
			return fmt.Errorf("status has no fleet")
		}
		if st.Fleet.Connected != want {
			return fmt.Errorf("fleet %+v", *st.Fleet)
		}
		return nil
	})
	if err != nil {
		f.t.Fatalf("%s: waiting for connected=%v: %v", g.id, want, err)
	}
	if st.Fleet.GatewayID != g.id {
		f.t.Errorf("%s: status names gateway %q", g.id, st.Fleet.GatewayID)
	}
	return st
}

// approve runs `mudctl approve` for device i on g and returns when it
// returned.
func (f *fleetLab) approve(g *gateway, i int) time.Time {
	f.t.Helper()
	if _, err := g.gw.Mudctl(f.ctx, "approve", f.mac(i)); err != nil {
		f.t.Fatal(err)
	}
	return time.Now()
}

// spreadTo waits until device i is enforced on every gateway of gs and
// returns how long after since it took the slowest.
func (f *fleetLab) spreadTo(gs []*gateway, i int, since time.Time, timeout time.Duration) time.Duration {
	f.t.Helper()
	var slowest time.Duration
	for _, g := range gs {
		f.waitState(g, i, api.StateEnforced, timeout)
		slowest = max(slowest, time.Since(since))
	}
	return slowest
}

// enforced checks by traffic that device i is held to the file on g: the
// permitted flow works, another port is refused.
func (f *fleetLab) enforced(g *gateway, i int) {
	f.t.Helper()
	h := g.lab.Devices[i]
	cloud, err := gwlab.Resolve(f.ctx, h.NS, cloudHost)
	if err != nil {
		f.t.Fatal(err)
	}
	what := fmt.Sprintf("%s, device %d", g.id, i)
	err = gwlab.Poll(f.ctx, passWait, func() error { return netlab.TCPEcho(h.NS, netlab.HostPort(cloud, permitted), time.Second) })
	netlab.MustPass(f.t, what+" → cloud:443", err)
	netlab.MustDrop(f.t, what+" → other:8080", netlab.TCPEcho(h.NS, netlab.HostPort(g.other, otherPort), refuseWait))
}

// blocked checks by traffic that device i is still blocked on g (pending
// approval under on_failure block).
func (f *fleetLab) blocked(g *gateway, i int) {
	f.t.Helper()
	h := g.lab.Devices[i]
	what := fmt.Sprintf("%s, device %d (pending)", g.id, i)
	netlab.MustDrop(f.t, what+" → cloud:443", netlab.TCPEcho(h.NS, netlab.HostPort(g.cloud, permitted), refuseWait))
}

// RFC 8520 §13.2 across a site: an approval given on one gateway with
// `mudctl approve` reaches the other gateways through etcd, which enforce
// the device at once (its permitted flow works through them, another is
// refused); an approval given after the etcd leader stopped still reaches
// every gateway; a gateway cut off from etcd keeps enforcing what its
// store holds, receives on heal what was decided meanwhile, and what it
// decided while cut off reaches the others.
func TestFleetSharesApprovals(t *testing.T) {
	f := newFleet(t, 3, 4)
	a, b, c := f.gws[0], f.gws[1], f.gws[2]
	for _, g := range f.gws {
		f.blocked(g, 0)
	}

	// (a) Approved on a: enforced on b and c within a second.
	at := f.approve(a, 0)
	took := f.spreadTo([]*gateway{b, c}, 0, at, spread)
	t.Logf("approval on %s enforced on %s and %s after %v", a.id, b.id, c.id, took)
	for _, g := range f.gws {
		f.enforced(g, 0)
	}

	// (b) The leader stops; a new one is elected; an approval given on b
	// after that reaches every gateway.
	ldr, err := f.cl.Leader(f.ctx)
	if err != nil {
		t.Fatal(err)
	}
	f.cl.StopMember(ldr)
	t.Cleanup(func() { _ = f.cl.RestartMember(ldr) })
	wctx, cancel := context.WithTimeout(f.ctx, 15*time.Second)
	err = f.cl.WaitHealthy(wctx)
	cancel()
	if err != nil {
		t.Fatal(err)
	}
	at = f.approve(b, 1)
	took = f.spreadTo([]*gateway{a, c}, 1, at, 10*time.Second)
	t.Logf("after the leader (member %d) stopped: approval on %s enforced on %s and %s after %v", ldr+1, b.id, a.id, c.id, took)
	f.enforced(a, 1)
	f.enforced(c, 1)

	// (c) c is cut off from etcd.
	if err := f.cl.Partition(c.src); err != nil {
		t.Fatal(err)
	}
	f.waitConnected(c, false)
	f.enforced(c, 0) // enforcement is unchanged
	f.blocked(c, 2)
	// Decided on a during the partition: not on c yet.
	at = f.approve(a, 2)
	f.spreadTo([]*gateway{b}, 2, at, 10*time.Second)
	// Decided on c during the partition: enforced there, queued.
	f.approve(c, 3)
	f.waitState(c, 3, api.StateEnforced, 5*time.Second)
	if st := f.status(c); st.Fleet == nil || st.Fleet.QueuedWrites == 0 {
		t.Errorf("%s decided while cut off, but queues nothing: %+v", c.id, st.Fleet)
	}
	time.Sleep(time.Second)
	f.blocked(c, 2)
	if d, _, err := c.gw.Device(f.ctx, f.mac(2)); err != nil || d.State != api.StatePendingApproval {
		t.Errorf("%s, cut off, has device 2 %s (%v)", c.id, d.State, err)
	}
	f.blocked(a, 3)

	if err := f.cl.Heal(); err != nil {
		t.Fatal(err)
	}
	f.waitConnected(c, true)
	f.spreadTo([]*gateway{c}, 2, time.Now(), 10*time.Second)
	f.spreadTo([]*gateway{a, b}, 3, time.Now(), 10*time.Second)
	f.enforced(c, 2)
	f.enforced(a, 3)
	f.enforced(b, 3)
	err = gwlab.Poll(f.ctx, 10*time.Second, func() error {
		if st := f.status(c); st.Fleet.QueuedWrites != 0 {
			return fmt.Errorf("%s still queues %d writes", c.id, st.Fleet.QueuedWrites)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	for _, want := range []string{"fleet-partition", "fleet-heal"} {
		out, err := c.gw.Mudctl(f.ctx, "events")
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(out, want) {
			t.Errorf("%s's events lack %s:\n%s", c.id, want, out)
		}
	}
}
