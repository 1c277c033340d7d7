package resolver

// Hold and release in a lab: the device's first packet to a fresh CDN address
// finds the address already allowed (RFC 9726 §3: the addresses come from the
// answers of the resolver the device uses). The gateway's dnsmasq answers the
// device; the answer is held in the bridge output hook until the snooped
// addresses are in the enforcer's sets, then released; the device's single
// datagram sent right after the answer reaches the server. The hold table
// belongs to the resolver's netlink socket: when it goes (Run returns, the
// process is killed), DNS flows normally.

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"math/bits"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/miekg/dns"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/enforcer/dnshold"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// holdLab is a lab with dnsmasq forwarding to an upstream on the first
// server, and the enforcer in the gateway allowing the device DNS (the
// gateway's, and the upstream's directly, as a MUD file may permit) and
// UDP 9000 to api.vendor.test (policy "cam"), nothing else.
type holdLab struct {
	lab          *netlab.Lab
	dev          *netlab.Host
	cloud, other *netlab.Host
	nsFd         int
	enf          *enforcer.Enforcer

	mu   sync.Mutex
	sets map[string]map[netip.Addr]time.Time // what Apply merged, by key
}

func newHoldLab(t testing.TB) *holdLab {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "dnsmasq")
	lab := netlab.New(t, netlab.Config{Devices: 1, Servers: 2, StaticDevices: true})
	l := &holdLab{lab: lab, dev: lab.Devices[0], cloud: lab.Servers[0], other: lab.Servers[1], sets: map[string]map[netip.Addr]time.Time{}}
	srv := upstreamDNS(t, l.cloud)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch {
		case strings.HasSuffix(q.Name, "other.vendor.test."):
			return answer(q, rrA(q.Name, 60, l.other.IPv4.String()), rrAAAA(q.Name, 60, l.other.IPv6.String()))
		case strings.HasSuffix(q.Name, "vendor.test."):
			// Every name of the vendor (api, n1.api, ...) is a CDN edge on the cloud server.
			return answer(q, rrCNAME(q.Name, 300, "edge7.cdn.test"),
				rrA("edge7.cdn.test", 42, l.cloud.IPv4.String()), rrAAAA("edge7.cdn.test", 42, l.cloud.IPv6.String()))
		}
		return rcode(dns.RcodeNameError)
	})
	lab.StartDNSForwarder(t, []string{l.cloud.IPv4.String()}, "--cache-size=0")

	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	l.nsFd = int(h)
	e, err := enforcer.New(enforcer.Config{NetNSFd: l.nsFd, NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	l.enf = e
	port := func(p uint16) *policy.PortRange { return &policy.PortRange{First: p, Last: p} }
	dnsCtl := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"}
	upstream := policy.Peer{Kind: policy.Prefix, Prefix: netip.PrefixFrom(l.cloud.IPv4, 32)}
	pol := policy.Policy{ID: "cam", MUDURL: "https://vendor.test/cam",
		FromDevice: []policy.Rule{
			{Name: "fr/upstream-dns-udp", Family: policy.IPv4, Peer: upstream, Protocol: policy.ProtoUDP, DstPort: port(53), Verdict: policy.Accept},
			{Name: "fr/upstream-dns-tcp", Family: policy.IPv4, Peer: upstream, Protocol: policy.ProtoTCP, DstPort: port(53), Verdict: policy.Accept},
			{Name: "default/dns-udp", Peer: dnsCtl, Protocol: policy.ProtoUDP, DstPort: port(53), Verdict: policy.Accept, Default: true},
			{Name: "default/dns-tcp", Peer: dnsCtl, Protocol: policy.ProtoTCP, DstPort: port(53), Verdict: policy.Accept, Default: true},
		},
	}
	for _, n := range holdNames(20) {
		pol.FromDevice = append(pol.FromDevice, policy.Rule{Name: "fr/" + n, Peer: policy.Peer{Kind: policy.DNSName, Value: n},
			Protocol: policy.ProtoUDP, DstPort: port(9000), Verdict: policy.Accept})
	}
	gwElems := []enforcer.Element{{Prefix: netip.PrefixFrom(netlab.GatewayLAN4, 32)}, {Prefix: netip.PrefixFrom(netlab.GatewayLAN6, 128)}}
	if err := e.Apply(context.Background(), enforcer.Desired{
		Policies: []policy.Policy{pol},
		Devices:  []enforcer.Device{{MAC: l.dev.MAC, IPv4s: []netip.Addr{l.dev.IPv4}, IPv6s: []netip.Addr{l.dev.IPv6}, PolicyID: "cam"}},
		Peers:    map[string][]enforcer.Element{dnsCtl.Key(): gwElems},
	}); err != nil {
		t.Fatalf("enforcer Apply: %v", err)
	}
	return l
}

// holdNames are the policy's names: api.vendor.test and fresh ones for
// repeated measurements.
func holdNames(n int) []string {
	out := []string{"api.vendor.test"}
	for i := 1; i < n; i++ {
		out = append(out, fmt.Sprintf("n%d.api.vendor.test", i))
	}
	return out
}

// apply does what the manager does with a snooped update: merge its
// addresses into the peer's set (SetPeer replaces a peer's elements) and
// push the union to the enforcer.
func (l *holdLab) apply(ctx context.Context, u Update) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	set := l.sets[u.Key()]
	if set == nil {
		set = map[netip.Addr]time.Time{}
		l.sets[u.Key()] = set
	}
	for _, a := range u.Addrs {
		if u.Expires.After(set[a]) {
			set[a] = u.Expires
		}
	}
	var elems []enforcer.Element
	for a, exp := range set {
		if d := time.Until(exp); d > 0 {
			elems = append(elems, enforcer.Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: d})
		}
	}
	return l.enf.SetPeer(ctx, u.Key(), elems)
}

// resolver starts a resolver snooping br-lan with hold on (unless mark
// is 0), for the device's policy names.
func (l *holdLab) resolver(t testing.TB, mark uint32, apply func(context.Context, Update) error, onRelease func(time.Duration, bool)) (*Resolver, func()) {
	t.Helper()
	var capt *Capture
	if err := netlab.Do(l.lab.GW.NS, func() (err error) { capt, err = OpenCapture(netlab.LANBridge); return err }); err != nil {
		t.Fatal(err)
	}
	if !capt.Bridge() {
		t.Fatalf("%s is not recognised as a bridge", netlab.LANBridge)
	}
	r, err := New(Config{Server: "192.0.2.1:53", Captures: []*Capture{capt}, MinTTL: time.Second,
		NetNSFd: l.nsFd, Apply: apply, HoldMark: mark})
	if err != nil {
		t.Fatal(err)
	}
	r.onRelease = onRelease
	if err := r.SetDeviceNames(l.dev.MAC, holdNames(20)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			cancel()
			if err := <-done; err != nil {
				t.Errorf("Run: %v", err)
			}
		})
	}
	t.Cleanup(stop)
	// Run has created the table once the first held answer could be
	// dropped; wait for it rather than race it.
	if mark != 0 {
		deadline := time.Now().Add(5 * time.Second)
		for !l.holdTable(t) {
			if time.Now().After(deadline) {
				t.Fatal("hold table never appeared")
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	return r, stop
}

// ownerFlag is NFT_TABLE_F_OWNER: the table goes with its netlink socket.
const ownerFlag = 0x2

// holdTable reports whether table bridge mud_dnshold exists, and checks
// that it carries the owner flag.
func (l *holdLab) holdTable(t testing.TB) bool {
	t.Helper()
	c, err := nftables.New(nftables.WithNetNSFd(l.nsFd))
	if err != nil {
		t.Fatal(err)
	}
	tables, err := c.ListTablesOfFamily(nftables.TableFamilyBridge)
	if err != nil {
		t.Fatal(err)
	}
	for _, tb := range tables {
		if tb.Name == dnshold.TableName {
			// google/nftables v0.3.0 decodes the flags in host byte order.
			if tb.Flags&ownerFlag == 0 && bits.ReverseBytes32(tb.Flags)&ownerFlag == 0 {
				t.Errorf("table bridge %s has flags %#x, want the owner flag", dnshold.TableName, tb.Flags)
			}
			return true
		}
	}
	return false
}

// resolveAndSend resolves name through the gateway's dnsmasq from the
// device and, at once, sends one UDP datagram (no retransmission) to
// the first A record of the answer, port 9000. It returns that address.
func (l *holdLab) resolveAndSend(t testing.TB, name string, timeout time.Duration) (netip.Addr, error) {
	t.Helper()
	return l.askAndSend(t, "udp", "192.0.2.1:53", name, timeout)
}

// askAndSend is resolveAndSend with another DNS server, over network
// ("udp" or "tcp").
func (l *holdLab) askAndSend(t testing.TB, network, server, name string, timeout time.Duration) (netip.Addr, error) {
	t.Helper()
	var to netip.Addr
	err := netlab.Do(l.dev.NS, func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		resp, _, err := (&dns.Client{Net: network, Timeout: timeout}).Exchange(m, server)
		if err != nil {
			return fmt.Errorf("resolving %s: %w", name, err)
		}
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				to, _ = netip.AddrFromSlice(a.A.To4())
				break
			}
		}
		if !to.IsValid() {
			return fmt.Errorf("resolving %s: no address in %v", name, resp.Answer)
		}
		c, err := net.Dial("udp", netip.AddrPortFrom(to, 9000).String())
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte(name))
		return err
	})
	return to, err
}

// udpSink records the datagrams a server receives on port 9000.
func udpSink(t testing.TB, h *netlab.Host) <-chan string {
	t.Helper()
	pc, err := netlab.ListenPacket(h.NS, "udp", "[::]:9000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { pc.Close() })
	got := make(chan string, 1024)
	go func() {
		buf := make([]byte, 512)
		for {
			n, _, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			got <- string(buf[:n])
		}
	}()
	return got
}

// settledStats returns the resolver's counters once every held answer has
// been dealt with: an answer is counted released after it is on the wire,
// so the device can act on it a moment before the counter moves.
func settledStats(r *Resolver) Stats {
	deadline := time.Now().Add(2 * time.Second)
	for {
		st := r.Stats()
		if st.Released+st.ReleaseErrors >= st.Held || time.Now().After(deadline) {
			return st
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func waitFor(got <-chan string, want string, d time.Duration) bool {
	deadline := time.After(d)
	for {
		select {
		case s := <-got:
			if s == want {
				return true
			}
		case <-deadline:
			return false
		}
	}
}

func (l *holdLab) defaultDeny(t testing.TB) uint64 {
	t.Helper()
	cs, err := l.enf.Counters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.PolicyID == "cam" && c.Direction == policy.FromDevice && c.Rule == "default-deny" {
			return c.Packets
		}
	}
	t.Fatal("no default-deny counter for policy cam")
	return 0
}

func TestLabHoldFirstPacket(t *testing.T) {
	l := newHoldLab(t)
	cloudGot, otherGot := udpSink(t, l.cloud), udpSink(t, l.other)
	r, stop := l.resolver(t, dnshold.DefaultMark, l.apply, nil)

	// Fresh names, each answered and used at once: every first datagram
	// arrives, none reaches the default deny.
	for _, name := range holdNames(5) {
		if _, err := l.resolveAndSend(t, name, 3*time.Second); err != nil {
			t.Fatal(err)
		}
		if !waitFor(cloudGot, name, 2*time.Second) {
			t.Errorf("the device's first datagram after resolving %s never reached the server", name)
		}
	}
	if n := l.defaultDeny(t); n != 0 {
		t.Errorf("default deny counted %d packets of the device; want 0 (its first datagrams beat the set update)", n)
	}
	st := settledStats(r)
	if st.Held < 5 || st.Released != st.Held || st.ApplyFailures != 0 || st.ReleaseErrors != 0 {
		t.Errorf("stats %+v; want 5+ answers held and all released", st)
	}

	// A name outside the policy: answered (its answer is held and
	// released like any other), but the datagram is dropped.
	if _, err := l.resolveAndSend(t, "www.other.vendor.test", 3*time.Second); err != nil {
		t.Fatalf("a name outside the policy must still resolve: %v", err)
	}
	if waitFor(otherGot, "www.other.vendor.test", 500*time.Millisecond) {
		t.Error("the device reached a name outside its policy")
	}
	if n := l.defaultDeny(t); n != 1 {
		t.Errorf("default deny counted %d packets, want 1 (the datagram to the name outside the policy)", n)
	}

	// A device whose names are gone is no longer held.
	if err := r.SetDeviceNames(l.dev.MAC, nil); err != nil {
		t.Fatal(err)
	}
	time.Sleep(holdLinger)
	before := r.Stats().Held
	if _, err := l.resolveAndSend(t, "api.vendor.test", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if h := r.Stats().Held; h != before {
		t.Errorf("answer to a device without names held (%d → %d)", before, h)
	}

	// The table goes with the resolver's socket; DNS keeps working.
	if err := r.SetDeviceNames(l.dev.MAC, holdNames(20)); err != nil {
		t.Fatal(err)
	}
	stop()
	if l.holdTable(t) {
		t.Fatal("hold table still there after Run returned")
	}
	if _, err := l.resolveAndSend(t, "api.vendor.test", 3*time.Second); err != nil {
		t.Fatalf("DNS after the resolver stopped: %v", err)
	}
}

// An answer the gateway routes to the device from a DNS server the device
// may reach (the upstream, asked directly) is not the gateway's: it is
// held like any answer and released at once, unapplied; the device has
// its answer but may not use the addresses; the refusal is counted. The
// same name answered by the gateway grants.
func TestLabHoldReleasesRefusedAnswers(t *testing.T) {
	l := newHoldLab(t)
	cloudGot := udpSink(t, l.cloud)
	var (
		mu      sync.Mutex
		applied []string
	)
	apply := func(ctx context.Context, u Update) error {
		mu.Lock()
		applied = append(applied, u.Name)
		mu.Unlock()
		return l.apply(ctx, u)
	}
	r, _ := l.resolver(t, dnshold.DefaultMark, apply, nil)
	upstream := netip.AddrPortFrom(l.cloud.IPv4, 53).String()
	for i, network := range []string{"udp", "tcp"} {
		name := fmt.Sprintf("n%d.api.vendor.test", i+1)
		to, err := l.askAndSend(t, network, upstream, name, 3*time.Second)
		if err != nil {
			t.Fatalf("the device asking %s over %s directly: %v; its answer must be delivered", upstream, network, err)
		}
		if to != l.cloud.IPv4 {
			t.Fatalf("answer for %s: %v", name, to)
		}
		if waitFor(cloudGot, name, 500*time.Millisecond) {
			t.Errorf("%s: the device reached %v on the strength of an answer from %s over %s", name, to, upstream, network)
		}
		if st := r.Stats(); st.RefusedAnswers != uint64(i+1) {
			t.Errorf("after the %s answer: %d refused answers counted, want %d", network, st.RefusedAnswers, i+1)
		}
	}
	mu.Lock()
	if len(applied) != 0 {
		t.Errorf("applied %v from answers of an untrusted source", applied)
	}
	mu.Unlock()
	if n := l.defaultDeny(t); n != 2 {
		t.Errorf("default deny counted %d packets, want the 2 datagrams", n)
	}
	if _, err := l.resolveAndSend(t, "n1.api.vendor.test", 3*time.Second); err != nil {
		t.Fatal(err)
	}
	if !waitFor(cloudGot, "n1.api.vendor.test", 2*time.Second) {
		t.Error("the gateway's answer for the same name did not grant")
	}
	if st := settledStats(r); st.Held < 2 || st.Released != st.Held || st.RefusedAnswers != 2 {
		t.Errorf("stats %+v; want the UDP answers held and all released, 2 refused", st)
	}
}

// Apply failing or too slow: the answer is released anyway (DNS never
// breaks), the failure is counted, and the update follows on the channel.
func TestLabHoldApplyFails(t *testing.T) {
	l := newHoldLab(t)
	apply := func(ctx context.Context, u Update) error {
		switch u.Name {
		case "n1.api.vendor.test":
			return errors.New("enforcer unavailable")
		case "n2.api.vendor.test":
			<-ctx.Done()
			return ctx.Err()
		}
		return l.apply(ctx, u)
	}
	r, _ := l.resolver(t, dnshold.DefaultMark, apply, nil)
	for _, name := range []string{"n1.api.vendor.test", "n2.api.vendor.test"} {
		if _, err := l.resolveAndSend(t, name, 3*time.Second); err != nil {
			t.Fatalf("DNS broken when Apply fails: %v", err)
		}
		u := next(t, r, 3*time.Second)
		if u.Name != name || u.Source != Snooped || len(u.Addrs) == 0 {
			t.Errorf("channel update %+v, want the snooped answer for %s", u, name)
		}
	}
	if st := settledStats(r); st.ApplyFailures != 2 || st.Released != st.Held {
		t.Errorf("stats %+v; want 2 apply failures, every held answer released", st)
	}
}

// The kernel deletes the hold table when the process that owns it dies,
// even by SIGKILL, with answers held that nobody will release.
func TestLabHoldOwnerKilled(t *testing.T) {
	l := newHoldLab(t)
	cmd := exec.Command(os.Args[0])
	cmd.Env = append(os.Environ(), "MUD_HOLD_HELPER_NS="+l.lab.GW.NS, "MUD_HOLD_HELPER_MAC="+l.dev.MAC.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	sc := bufio.NewScanner(out)
	ready := false
	for sc.Scan() {
		if strings.TrimSpace(sc.Text()) == "hold-ready" {
			ready = true
			break
		}
	}
	if !ready {
		t.Fatal("helper never created the hold table")
	}
	go func() {
		for sc.Scan() { // drain
		}
	}()
	if !l.holdTable(t) {
		t.Fatal("no hold table while the helper runs")
	}
	// The helper holds but never releases: the device gets no answer.
	if _, err := l.resolveAndSend(t, "api.vendor.test", 500*time.Millisecond); err == nil {
		t.Fatal("answer passed while held by a process that does not release")
	}
	if err := cmd.Process.Kill(); err != nil { // SIGKILL: no clean-up code runs
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if l.holdTable(t) {
		t.Fatal("hold table outlived its owner process")
	}
	if _, err := l.resolveAndSend(t, "api.vendor.test", 3*time.Second); err != nil {
		t.Fatalf("DNS after the owner died: %v", err)
	}
}

// holdHelper is TestLabHoldOwnerKilled's child process (TestMain runs it
// instead of the tests when MUD_HOLD_HELPER_NS is set): it creates the hold
// table in the lab's gateway and waits to be killed.
func holdHelper(ns, mac string) error {
	h, err := netlab.NSHandle(ns)
	if err != nil {
		return err
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return err
	}
	r, err := New(Config{Server: "192.0.2.1:53", NetNSFd: int(h), HoldMark: dnshold.DefaultMark,
		Apply: func(context.Context, Update) error { return nil }})
	if err != nil {
		return err
	}
	if err := r.SetDeviceNames(hw, []string{"api.vendor.test"}); err != nil {
		return err
	}
	ports, err := bridgePorts(int(h), []string{netlab.LANBridge})
	if err != nil {
		return err
	}
	if err := r.startHold(ports); err != nil {
		return err
	}
	fmt.Println("hold-ready")
	time.Sleep(time.Minute) // killed long before
	return nil
}

func TestMain(m *testing.M) {
	if ns := os.Getenv("MUD_HOLD_HELPER_NS"); ns != "" {
		if err := holdHelper(ns, os.Getenv("MUD_HOLD_HELPER_MAC")); err != nil {
			fmt.Fprintln(os.Stderr, "hold helper:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

// BenchmarkLabHoldRelease measures how long an answer is held: from its
// capture to its release, with Apply pushing the snooped addresses to the
// real enforcer (SetPeer of the merged set), as hold-p50-ms and
// hold-p99-ms: the DNS latency hold and release adds for devices with DNS
// names in their policy. dns-p50-ms is the device's whole query through
// dnsmasq (cache off, upstream in the lab), with and without hold.
func BenchmarkLabHoldRelease(b *testing.B) {
	for _, bc := range []struct {
		name string
		mark uint32
	}{{"hold", dnshold.DefaultMark}, {"no-hold", 0}} {
		b.Run(bc.name, func(b *testing.B) {
			l := newHoldLab(b)
			var (
				mu   sync.Mutex
				held []time.Duration
				rtt  []time.Duration
			)
			r, _ := l.resolver(b, bc.mark, l.apply, func(d time.Duration, applied bool) {
				if applied {
					mu.Lock()
					held = append(held, d)
					mu.Unlock()
				}
			})
			names := holdNames(20)
			i := 0
			for b.Loop() {
				name := names[i%len(names)]
				i++
				err := netlab.Do(l.dev.NS, func() error {
					m := new(dns.Msg)
					m.SetQuestion(dns.Fqdn(name), dns.TypeA)
					_, d, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, "192.0.2.1:53")
					rtt = append(rtt, d)
					return err
				})
				if err != nil {
					b.Fatal(err)
				}
			}
			if st := r.Stats(); st.ApplyFailures != 0 || st.ReleaseErrors != 0 {
				b.Fatalf("stats %+v", st)
			}
			mu.Lock()
			defer mu.Unlock()
			if bc.mark != 0 {
				if len(held) == 0 {
					b.Fatal("no answer held")
				}
				b.ReportMetric(ms(percentile(held, 50)), "hold-p50-ms")
				b.ReportMetric(ms(percentile(held, 99)), "hold-p99-ms")
			}
			b.ReportMetric(ms(percentile(rtt, 50)), "dns-p50-ms")
			b.ReportMetric(ms(percentile(rtt, 99)), "dns-p99-ms")
		})
	}
}

func percentile(ds []time.Duration, p int) time.Duration {
	s := append([]time.Duration(nil), ds...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[min(len(s)-1, len(s)*p/100)]
}

func ms(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
