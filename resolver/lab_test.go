package resolver

// End-to-end snooping in a network-namespace lab (RFC 9726 §3: learn
// addresses from the answers of the resolver the device uses). dnsmasq in the
// gateway forwards to a miekg/dns server on the "internet"; a device resolves
// names through dnsmasq; the snooper on br-lan turns the answers into
// updates.

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/openmud/mud/internal/lab/netlab"
)

func TestLabSnoopThroughDNSMasq(t *testing.T) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "dnsmasq")
	lab := netlab.New(t, netlab.Config{Devices: 2, Servers: 1, StaticDevices: true})
	dev, dev2, up := lab.Devices[0], lab.Devices[1], lab.Servers[0]

	// The upstream: a miekg/dns server in the server namespace.
	srv := upstreamDNS(t, up)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch q.Name {
		case "api.vendor.test.":
			return answer(q,
				rrCNAME("api.vendor.test", 300, "edge7.cdn.test"),
				rrA("edge7.cdn.test", 42, up.IPv4.String()),
				rrAAAA("edge7.cdn.test", 42, up.IPv6.String()))
		case "other.vendor.test.":
			return answer(q, rrA(q.Name, 60, "203.0.113.99"))
		}
		return answer(q, rrA(q.Name, 60, "203.0.113.50"), rrAAAA(q.Name, 60, "2001:db8:2::50"))
	})
	fw := lab.StartDNSForwarder(t, []string{up.IPv4.String()})

	// The snooper, capturing on the gateway's LAN bridge.
	var capt, raw *Capture
	if err := netlab.Do(lab.GW.NS, func() (err error) {
		if capt, err = OpenCapture(netlab.LANBridge); err != nil {
			return err
		}
		if *update {
			raw, err = OpenCapture(netlab.LANBridge)
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	if raw != nil {
		t.Cleanup(func() { raw.Close() })
	}
	ns, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ns.Close() })
	latencyNames := make([]string, 20)
	for i := range latencyNames {
		latencyNames[i] = fmt.Sprintf("n%d.vendor.test", i)
	}
	r, err := New(Config{
		// Active queries go to dnsmasq too, from inside the gateway
		// namespace: the resolver the devices use (RFC 9726).
		Transport: nsTransport{ns: lab.GW.NS, tr: NewTransport("192.0.2.1:53", 2*time.Second)},
		Captures:  []*Capture{capt},
		NetNSFd:   int(ns),
		MinTTL:    time.Second,
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetDeviceNames(dev.MAC, append([]string{"api.vendor.test"}, latencyNames...)); err != nil {
		t.Fatal(err)
	}
	if err := r.SetDeviceNames(dev2.MAC, []string{"other.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	start(t, r)

	query := func(server, name string, qtype uint16) (*dns.Msg, time.Time) {
		t.Helper()
		var resp *dns.Msg
		err := netlab.Do(dev.NS, func() (err error) {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			c := &dns.Client{Timeout: 3 * time.Second}
			resp, _, err = c.ExchangeContext(context.Background(), m, server)
			return err
		})
		if err != nil {
			t.Fatalf("device query %s: %v\ndnsmasq: %s", name, err, fw.Out.String())
		}
		return resp, time.Now()
	}

	// A watched name over IPv4: the answer (a CNAME chain) is snooped.
	resp, answered := query("192.0.2.1:53", "api.vendor.test.", dns.TypeA)
	if len(resp.Answer) != 2 {
		t.Fatalf("device got %v", resp.Answer)
	}
	u := next(t, r, 3*time.Second)
	got := time.Now()
	if u.Name != "api.vendor.test" || u.Source != Snooped || !slices.Equal(u.Device, dev.MAC) ||
		!slices.Equal(u.Addrs, addrs(up.IPv4.String())) || u.TTL != 42*time.Second {
		t.Fatalf("snooped update %+v; want api.vendor.test -> %v TTL 42s for %v", u, up.IPv4, dev.MAC)
	}
	t.Logf("first answer: capture->update received %v; device answer->update %v", got.Sub(u.Captured), got.Sub(answered))
	if *update {
		saveLabFrames(t, r, raw, "lab-udp4-cname")
	}

	// The same name, AAAA, over IPv6 transport.
	query("[2001:db8:1::1]:53", "api.vendor.test.", dns.TypeAAAA)
	u = next(t, r, 3*time.Second)
	if !slices.Equal(u.Addrs, addrs(up.IPv6.String())) || u.Name != "api.vendor.test" {
		t.Fatalf("IPv6 snooped update %+v", u)
	}
	if *update {
		saveLabFrames(t, r, raw, "lab-udp6-aaaa")
	}

	// A name outside the device's list (it is in another device's list):
	// resolved, but no update.
	if resp, _ := query("192.0.2.1:53", "other.vendor.test.", dns.TypeA); len(resp.Answer) != 1 {
		t.Fatalf("device got %v for other.vendor.test", resp.Answer)
	}
	select {
	case u := <-r.Updates():
		t.Fatalf("update for a name outside the device's list: %+v", u)
	case <-time.After(300 * time.Millisecond):
	}

	// Latency over fresh names: capture -> update on the channel.
	var lat, e2e []time.Duration
	for _, n := range latencyNames {
		_, answered := query("192.0.2.1:53", n+".", dns.TypeA)
		u := next(t, r, 3*time.Second)
		now := time.Now()
		if u.Name != n {
			t.Fatalf("update for %q, want %q", u.Name, n)
		}
		lat = append(lat, now.Sub(u.Captured))
		e2e = append(e2e, now.Sub(answered))
	}
	sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
	sort.Slice(e2e, func(i, j int) bool { return e2e[i] < e2e[j] })
	t.Logf("capture->update over %d answers: median %v, max %v", len(lat), lat[len(lat)/2], lat[len(lat)-1])
	t.Logf("device has its answer->update received (negative: update first): median %v, max %v", e2e[len(e2e)/2], e2e[len(e2e)-1])
	// Logged, not asserted: BenchmarkLabHoldRelease measures the snoop path.
	// Active resolution through the same dnsmasq.
	if _, err := r.Watch("api.vendor.test", "dev1"); err != nil {
		t.Fatal(err)
	}
	u = next(t, r, 3*time.Second)
	if u.Source != Active || u.Err != nil || !slices.Equal(u.Addrs, addrs(up.IPv4.String(), up.IPv6.String())) {
		t.Fatalf("active update through dnsmasq: %+v", u)
	}
	st := r.Stats()
	t.Logf("stats: %+v", st)
}

// saveLabFrames stores the captured DNS responses that produce updates as
// fuzz seeds.
func saveLabFrames(t *testing.T, r *Resolver, c *Capture, name string) {
	t.Helper()
	buf := make([]byte, snapLen+4)
	for i := 0; i < 10; i++ {
		_ = c.conn.SetReadDeadline(time.Now().Add(500 * time.Millisecond))
		f, _, err := c.conn.ReadFrame(buf)
		if err != nil {
			t.Fatalf("reading raw capture: %v", err)
		}
		if len(r.HandleFrame(f, time.Now())) > 0 {
			if err := os.WriteFile(filepath.Join(framesDir, name+".bin"), f, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Fatalf("no frame for %s captured", name)
}

// nsTransport runs each exchange from inside a network namespace.
type nsTransport struct {
	ns string
	tr Transport
}

func (n nsTransport) Exchange(ctx context.Context, name string, qtype uint16) (a *Answer, err error) {
	doErr := netlab.Do(n.ns, func() error {
		a, err = n.tr.Exchange(ctx, name, qtype)
		return nil
	})
	if doErr != nil {
		return nil, doErr
	}
	return a, err
}

// upstreamDNS starts the test server on h's IPv4 address, port 53, inside
// h's namespace; the caller sets its handler.
func upstreamDNS(t testing.TB, h *netlab.Host) *testServer {
	t.Helper()
	addr := net.JoinHostPort(h.IPv4.String(), "53")
	pc, err := netlab.ListenPacket(h.NS, "udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := netlab.Listen(h.NS, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	srv := &testServer{}
	serve(t, srv, pc, ln)
	return srv
}
