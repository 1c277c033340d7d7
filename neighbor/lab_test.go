package neighbor

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

type tWriter struct{ t testing.TB }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

func testLogger(t testing.TB) *slog.Logger {
	level := slog.LevelInfo
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	return slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level}))
}

// harness runs a Learner on the lab's LAN bridge, in the gateway's
// namespace, and records its events.
type harness struct {
	l *Learner
	*netlab.Recorder[Event]
}

func startLearner(t testing.TB, lab *netlab.Lab, mod func(*Config)) *harness {
	t.Helper()
	cfg := Config{
		Interfaces:    []string{netlab.LANBridge},
		NetNS:         lab.GW.NS,
		Prefixes:      []netip.Prefix{netlab.LANPrefix4, netlab.LANPrefix6},
		SweepInterval: 100 * time.Millisecond,
		Logger:        testLogger(t),
	}
	if mod != nil {
		mod(&cfg)
	}
	l, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	saveFrames(t, lab)
	h := &harness{l: l, Recorder: netlab.Record(l.Events())}
	netlab.Serve(t, l.Run)
	// A frame sent before Run has opened its sockets would be missed.
	h.settle(t, lab)
	return h
}

// settle sends ARP replies to the gateway, from a MAC and for an address
// no test uses, until the learner has read one: its capture is running.
func (h *harness) settle(t testing.TB, lab *netlab.Lab) {
	t.Helper()
	if h.l.cfg.NoCapture {
		return
	}
	dev, err := netlab.RawConn(lab.Devices[0])
	if err != nil {
		t.Fatal(err)
	}
	defer dev.Close()
	probe := arpFrame(2, net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}, netip.MustParseAddr("198.51.100.1"), lab.GW.MAC, netlab.GatewayLAN4)
	deadline := time.Now().Add(10 * time.Second)
	for h.l.Stats().Frames == 0 {
		if time.Now().After(deadline) {
			t.Fatal("the learner's capture never read a frame")
		}
		if err := dev.Send(probe); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func is(kind Kind, mac net.HardwareAddr, a netip.Addr) func(Event) bool {
	return func(ev Event) bool { return ev.Kind == kind && ev.MAC.String() == mac.String() && ev.Addr == a }
}

// ifAddr is one address of `ip -j addr`.
type ifAddr struct {
	Local     string `json:"local"`
	Scope     string `json:"scope"`
	Tentative bool   `json:"tentative"`
	Temporary bool   `json:"temporary"`
	DADFailed bool   `json:"dadfailed"`
}

func (a ifAddr) valid() bool { return a.Local != "" }

// hostAddrs lists the IPv6 addresses of h's interface.
func hostAddrs(t testing.TB, lab *netlab.Lab, h *netlab.Host) map[netip.Addr]ifAddr {
	t.Helper()
	out, err := lab.Run(context.Background(), h.NS, "ip", "-j", "-6", "addr", "show", "dev", h.Iface)
	if err != nil {
		t.Fatal(err)
	}
	var links []struct {
		AddrInfo []ifAddr `json:"addr_info"`
	}
	if err := json.Unmarshal([]byte(out), &links); err != nil {
		t.Fatalf("ip -j addr: %v: %s", err, out)
	}
	m := map[netip.Addr]ifAddr{}
	for _, l := range links {
		for _, a := range l.AddrInfo {
			if ip, err := netip.ParseAddr(a.Local); err == nil {
				m[ip] = a
			}
		}
	}
	return m
}

func run(t testing.TB, lab *netlab.Lab, ns string, args ...string) {
	t.Helper()
	if out, err := lab.Run(context.Background(), ns, args[0], args[1:]...); err != nil {
		t.Fatalf("%v: %v: %s", args, err, out)
	}
}

// useFrom sends a UDP datagram from src to the gateway, as an application
// of the device would: the address is in use.
func useFrom(ns string, src netip.Addr) error {
	return netlab.Do(ns, func() error {
		c, err := net.DialUDP("udp6", &net.UDPAddr{IP: src.AsSlice()}, &net.UDPAddr{IP: netlab.GatewayLAN6.AsSlice(), Port: 9})
		if err != nil {
			return err
		}
		defer c.Close()
		_, err = c.Write([]byte("in use"))
		return err
	})
}

// linkLocal is the link-local address of h's interface.
func linkLocal(t testing.TB, lab *netlab.Lab, h *netlab.Host) netip.Addr {
	t.Helper()
	for a, st := range hostAddrs(t, lab, h) {
		if st.Scope == "link" {
			return a
		}
	}
	t.Fatalf("no link-local address on %s in %s", h.Iface, h.NS)
	return netip.Addr{}
}

// A device doing SLAAC with privacy addresses (router advertisements sent
// from the gateway), then rotating through 50 more addresses, each with
// duplicate address detection: every address is learned while it is
// still tentative on the device, i.e. before the device can send a packet
// from it; the device never holds more than the bound; addresses it stops
// using age out, those it uses stay.
func TestLabSLAACPrivacyAddresses(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	dev := lab.Devices[0]
	const bound, ttl = 16, 6 * time.Second
	// The device: DAD on, privacy addresses preferred, no delay before the
	// first solicitation, 2 s between DAD's solicitation and the address
	// becoming usable.
	if err := lab.Sysctl(dev.NS,
		"net.ipv6.conf.eth0.accept_dad=1",
		"net.ipv6.conf.eth0.use_tempaddr=2",
		"net.ipv6.conf.eth0.accept_ra=1",
		"net.ipv6.conf.eth0.autoconf=1",
		"net.ipv6.conf.eth0.router_solicitation_delay=0",
		"net.ipv6.neigh.eth0.retrans_time_ms=2000",
	); err != nil {
		t.Fatal(err)
	}
	// The gateway re-confirms neighbours every second or two, so that the
	// addresses in use are seen again well within the TTL.
	if err := lab.Sysctl(lab.GW.NS,
		"net.ipv6.neigh.br-lan.base_reachable_time_ms=1000",
		"net.ipv6.neigh.br-lan.delay_first_probe_time=1",
	); err != nil {
		t.Fatal(err)
	}
	h := startLearner(t, lab, func(c *Config) { c.MaxV6PerMAC, c.TTL6 = bound, ttl })
	mac := dev.MAC

	// The link comes back up: the device's link-local address goes
	// through DAD again, then the device solicits routers. The address is
	// learned (once: it was already, when the lab came up) and flagged.
	start := h.Mark()
	run(t, lab, dev.NS, "ip", "link", "set", "eth0", "down")
	run(t, lab, dev.NS, "ip", "link", "set", "eth0", "up")
	llDev := netip.MustParseAddr("fe80::ff:fe00:101")
	ev, _ := h.WaitFor(t, 0, 10*time.Second, "the link-local address learned", is(KindLearned, mac, llDev))
	if !ev.LinkLocal {
		t.Errorf("link-local: %+v", ev)
	}

	// Router advertisement, once the link-local address is ready: the
	// device configures its SLAAC address and a privacy address, each with
	// DAD.
	deadline := time.Now().Add(10 * time.Second)
	for hostAddrs(t, lab, dev)[llDev].Tentative || !hostAddrs(t, lab, dev)[llDev].valid() {
		if time.Now().After(deadline) {
			t.Fatal("the device's link-local address never became usable")
		}
		time.Sleep(50 * time.Millisecond)
	}
	gw, err := netlab.RawConn(&lab.GW)
	if err != nil {
		t.Fatal(err)
	}
	defer gw.Close()
	if err := gw.Send(ra(lab.GW.MAC, linkLocal(t, lab, &lab.GW), netlab.LANPrefix6, 3600, 1800)); err != nil {
		t.Fatal(err)
	}
	slaac := map[netip.Addr]bool{}
	from := start
	for len(slaac) < 2 {
		ev, i := h.WaitFor(t, from, 10*time.Second, "SLAAC addresses learned", func(ev Event) bool {
			return ev.Kind == KindLearned && ev.MAC.String() == mac.String() && !ev.LinkLocal
		})
		from = i + 1
		slaac[ev.Addr] = true
		if ev.Source != SourceDAD {
			t.Errorf("%s learned from %s, not DAD", ev.Addr, ev.Source)
		}
		if st := hostAddrs(t, lab, dev)[ev.Addr]; !st.Tentative {
			t.Errorf("%s: learned after the device finished DAD (%+v)", ev.Addr, st)
		}
	}
	var temporary int
	for a, st := range hostAddrs(t, lab, dev) {
		if st.Temporary {
			temporary++
			if !slaac[a] {
				t.Errorf("privacy address %s not learned", a)
			}
		}
	}
	if temporary == 0 {
		t.Error("the device made no privacy address")
	}

	// Rotation: 50 addresses in 5 batches of 10, each batch replacing the
	// last (the device holds 13 addresses at a time, within the bound).
	rng := rand.New(rand.NewPCG(8520, 4862))
	var prev, deleted []netip.Addr
	for batch := range 5 {
		for _, a := range prev {
			run(t, lab, dev.NS, "ip", "-6", "addr", "del", a.String()+"/64", "dev", "eth0")
		}
		deleted = append(deleted, prev...)
		mark := h.Mark()
		cur := make([]netip.Addr, 10)
		for i := range cur {
			b := netlab.LANPrefix6.Addr().As16()
			for j := 8; j < 16; j++ {
				b[j] = byte(rng.UintN(256))
			}
			b[8] &^= 0x02 // not a reserved anycast identifier (fdff:…)
			cur[i] = netip.AddrFrom16(b)
			run(t, lab, dev.NS, "ip", "-6", "addr", "add", cur[i].String()+"/64", "dev", "eth0")
		}
		for _, a := range cur {
			h.WaitFor(t, mark, 10*time.Second, fmt.Sprintf("batch %d: %s learned", batch, a), is(KindLearned, mac, a))
		}
		st := hostAddrs(t, lab, dev)
		for _, a := range cur {
			if !st[a].Tentative {
				t.Errorf("batch %d: %s learned after its DAD ended", batch, a)
			}
			if err := useFrom(dev.NS, a); err == nil {
				t.Errorf("batch %d: %s usable while tentative", batch, a)
			}
		}
		// DAD ends; the device uses its addresses.
		deadline = time.Now().Add(10 * time.Second)
		for {
			st := hostAddrs(t, lab, dev)
			if !slices.ContainsFunc(cur, func(a netip.Addr) bool { return st[a].Tentative }) {
				break
			}
			if time.Now().After(deadline) {
				t.Fatalf("batch %d: DAD did not end: %+v", batch, st)
			}
			time.Sleep(100 * time.Millisecond)
		}
		for _, a := range cur {
			if err := useFrom(dev.NS, a); err != nil {
				t.Errorf("batch %d: using %s: %v", batch, a, err)
			}
		}
		prev = cur
		held := h.l.Addrs(mac)
		if len(held) > bound {
			t.Errorf("batch %d: the device holds %d addresses, bound %d", batch, len(held), bound)
		}
		for _, a := range cur {
			if !slices.ContainsFunc(held, func(b Binding) bool { return b.Addr == a }) {
				t.Errorf("batch %d: %s not held", batch, a)
			}
		}
	}
	// The device keeps using half the last batch and drops the other
	// half; it probes three more addresses and gives them up during DAD,
	// so that nothing but DAD ever saw them: those age out after the TTL.
	// Everything the device dropped goes (replaced under the bound, ended
	// by the kernel's failed probes, or aged); what it uses stays.
	inUse, dropped := prev[:5], prev[5:]
	for _, a := range dropped {
		run(t, lab, dev.NS, "ip", "-6", "addr", "del", a.String()+"/64", "dev", "eth0")
	}
	deleted = append(deleted, dropped...)
	mark := h.Mark()
	stopUse := make(chan struct{})
	used := make(chan struct{})
	go func() {
		defer close(used)
		for {
			for _, a := range inUse {
				_ = useFrom(dev.NS, a)
			}
			select {
			case <-stopUse:
				return
			case <-time.After(300 * time.Millisecond):
			}
		}
	}()
	probed := []netip.Addr{
		netip.MustParseAddr("2001:db8:1:0:1111:2222:3333:1"),
		netip.MustParseAddr("2001:db8:1:0:1111:2222:3333:2"),
		netip.MustParseAddr("2001:db8:1:0:1111:2222:3333:3"),
	}
	for _, a := range probed {
		run(t, lab, dev.NS, "ip", "-6", "addr", "add", a.String()+"/64", "dev", "eth0")
		h.WaitFor(t, mark, 10*time.Second, "probed address learned", is(KindLearned, mac, a))
		run(t, lab, dev.NS, "ip", "-6", "addr", "del", a.String()+"/64", "dev", "eth0")
	}
	for _, a := range probed {
		ev, _ := h.WaitFor(t, mark, 2*ttl, "probed address aged out", is(KindExpired, mac, a))
		if ev.Reason != fmt.Sprintf("not seen for %v", ttl) {
			t.Errorf("%s expired: %s", a, ev.Reason)
		}
	}
	for _, a := range dropped {
		h.WaitFor(t, start, 2*ttl, "dropped address expired", is(KindExpired, mac, a))
	}
	close(stopUse)
	<-used
	held := h.l.Addrs(mac)
	for _, a := range inUse {
		if !slices.ContainsFunc(held, func(b Binding) bool { return b.Addr == a }) {
			t.Errorf("%s, in use, no longer held", a)
		}
	}
	for _, a := range deleted {
		if slices.ContainsFunc(held, func(b Binding) bool { return b.Addr == a }) {
			t.Errorf("%s, dropped by the device, still held", a)
		}
		if len(h.Since(start, is(KindExpired, mac, a))) == 0 {
			t.Errorf("%s: no expired event", a)
		}
	}
	s := h.l.Stats()
	t.Logf("%d addresses held at the end; stats %+v", len(held), s)
	if s.Malformed != 0 {
		t.Errorf("%d real frames refused as malformed", s.Malformed)
	}
}

// A device with a static IPv4 address is learned from its ARP request (the
// kernel table off: ARP alone), an ARP probe is a tentative claim; a device
// bound without addresses gets the first address it uses (in its ARP reply
// to the gateway) pinned.
func TestLabStaticIPv4FromARP(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 2, StaticDevices: true})
	netlab.RequireCommand(t, "busybox")
	h := startLearner(t, lab, func(c *Config) { c.NoNetlink = true })
	d1, d2 := lab.Devices[0], lab.Devices[1]
	if err := h.l.BindOnFirstUse(d2.MAC, true); err != nil {
		t.Fatal(err)
	}
	start := h.Mark()
	if err := netlab.Ping(d1.NS, netlab.GatewayLAN4, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	ev, _ := h.WaitFor(t, start, 5*time.Second, "d1's IPv4 address learned", is(KindLearned, d1.MAC, d1.IPv4))
	if ev.Source != SourceARP || ev.Pinned || ev.Tentative || ev.Interface != netlab.LANBridge {
		t.Errorf("%+v", ev)
	}
	probe := netip.MustParseAddr("192.0.2.50")
	run(t, lab, d1.NS, "busybox", "arping", "-D", "-c", "1", "-w", "1", "-I", "eth0", probe.String())
	ev, _ = h.WaitFor(t, start, 5*time.Second, "ARP probe", is(KindLearned, d1.MAC, probe))
	if ev.Source != SourceDAD || !ev.Tentative {
		t.Errorf("probe: %+v", ev)
	}
	run(t, lab, d1.NS, "busybox", "arping", "-U", "-c", "1", "-w", "1", "-I", "eth0", d1.IPv4.String())
	// The gateway pings d2, which answers its ARP request.
	if err := netlab.Ping(lab.GW.NS, d2.IPv4, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	ev, _ = h.WaitFor(t, start, 5*time.Second, "d2 bound on first use", is(KindLearned, d2.MAC, d2.IPv4))
	if !ev.Pinned || ev.Source != SourceARP {
		t.Errorf("first use: %+v", ev)
	}
	if b, ok := h.l.Holder(d2.IPv4); !ok || !b.Pinned || b.MAC.String() != d2.MAC.String() {
		t.Errorf("holder of d2's address: %+v", b)
	}
}

// A second device claiming the first's addresses, with a gratuitous ARP,
// an unsolicited Neighbor Advertisement and DAD, is refused every time and
// reported naming both MACs; the first device keeps its addresses. Once the
// caller releases one, it may move.
func TestLabConflict(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 2, StaticDevices: true})
	h := startLearner(t, lab, func(c *Config) { c.ConflictEvery = time.Nanosecond })
	d1, d2 := lab.Devices[0], lab.Devices[1]
	start := h.Mark()
	for _, a := range []netip.Addr{netlab.GatewayLAN4, netlab.GatewayLAN6} {
		if err := netlab.Ping(d1.NS, a, 3*time.Second); err != nil {
			t.Fatal(err)
		}
	}
	h.WaitFor(t, start, 5*time.Second, "d1's IPv4 address", is(KindLearned, d1.MAC, d1.IPv4))
	h.WaitFor(t, start, 5*time.Second, "d1's IPv6 address", is(KindLearned, d1.MAC, d1.IPv6))

	raw, err := netlab.RawConn(d2)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	ll2 := linkLocal(t, lab, d2)
	for _, tc := range []struct {
		name  string
		frame []byte
		addr  netip.Addr
	}{
		{"gratuitous ARP", garp(d2.MAC, d1.IPv4), d1.IPv4},
		{"unsolicited NA", unsolicitedNA(d2.MAC, ll2, d1.IPv6), d1.IPv6},
		{"DAD", dadNS(d2.MAC, d1.IPv6), d1.IPv6},
		{"ARP probe", arpProbe(d2.MAC, d1.IPv4), d1.IPv4},
	} {
		mark := h.Mark()
		if err := raw.Send(tc.frame); err != nil {
			t.Fatal(err)
		}
		ev, _ := h.WaitFor(t, mark, 5*time.Second, tc.name+": conflict", is(KindConflict, d2.MAC, tc.addr))
		if ev.Holder.String() != d1.MAC.String() || ev.Reason == "" {
			t.Errorf("%s: %+v", tc.name, ev)
		}
		if b, ok := h.l.Holder(tc.addr); !ok || b.MAC.String() != d1.MAC.String() {
			t.Errorf("%s: %s now held by %v", tc.name, tc.addr, b.MAC)
		}
	}
	if got := h.Since(start, func(ev Event) bool {
		return ev.Kind == KindLearned && ev.MAC.String() == d2.MAC.String() && !ev.LinkLocal
	}); len(got) != 0 {
		t.Errorf("d2 learned %v", got)
	}
	// Released, the address moves.
	if !h.l.Release(d1.IPv4) {
		t.Fatal("release")
	}
	mark := h.Mark()
	if err := raw.Send(garp(d2.MAC, d1.IPv4)); err != nil {
		t.Fatal(err)
	}
	h.WaitFor(t, mark, 5*time.Second, "released address moves", is(KindLearned, d2.MAC, d1.IPv4))
}

// A flood of 10,000 frames from spoofed MACs, each claiming addresses,
// through the real capture path: the table stays within its bounds, drops
// are counted, the device the caller keeps keeps its addresses, and a
// device that arrives after the flood is learned.
func TestLabFlood(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 3, StaticDevices: true})
	const maxMACs, maxAddrs = 64, 128
	h := startLearner(t, lab, func(c *Config) {
		c.MaxMACs, c.MaxAddrs, c.FrameQueue = maxMACs, maxAddrs, 64
	})
	d1, d2, d3 := lab.Devices[0], lab.Devices[1], lab.Devices[2]
	if err := h.l.Keep(d1.MAC, true); err != nil {
		t.Fatal(err)
	}
	start := h.Mark()
	if err := netlab.Ping(d1.NS, netlab.GatewayLAN4, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	h.WaitFor(t, start, 5*time.Second, "d1 learned", is(KindLearned, d1.MAC, d1.IPv4))

	raw, err := netlab.RawConn(d2)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	const n = 10000
	frames := make([][]byte, n)
	for i := range frames {
		mac := net.HardwareAddr{0x02, 0xf1, 0, 0, byte(i >> 8), byte(i)}
		switch i % 3 {
		case 0:
			frames[i] = garp(mac, netip.AddrFrom4([4]byte{192, 0, 2, byte(20 + i%200)}))
		case 1:
			a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 8: 0xf1, 14: byte(i >> 8), 15: byte(i)})
			frames[i] = unsolicitedNA(mac, a, a)
		default:
			frames[i] = garp(mac, d1.IPv4) // the kept device's address
		}
	}
	// About 10,000 frames a second, what two shared CPUs carry alongside
	// the test.
	tick := time.NewTicker(10 * time.Millisecond)
	for i := 0; i < n; i += 100 {
		<-tick.C
		for _, f := range frames[i : i+100] {
			if err := raw.Send(f); err != nil {
				t.Fatal(err)
			}
		}
		if s := h.l.Stats(); s.MACs > maxMACs+3 || s.Addrs > maxAddrs+3 {
			t.Fatalf("after %d frames: %+v", i, s)
		}
	}
	tick.Stop()
	// Everything sent has been read or dropped once the counters settle.
	time.Sleep(500 * time.Millisecond)
	s := h.l.Stats()
	t.Logf("after the flood: %+v", s)
	if s.MACs > maxMACs || s.Addrs > maxAddrs {
		t.Errorf("bounds exceeded: %+v", s)
	}
	if s.RateLimited+s.QueueDrops == 0 || s.Conflicts == 0 {
		t.Errorf("nothing dropped: %+v", s)
	}
	if s.Frames < n/2 {
		t.Errorf("only %d of %d frames read", s.Frames, n)
	}
	if b, ok := h.l.Holder(d1.IPv4); !ok || b.MAC.String() != d1.MAC.String() {
		t.Errorf("the kept device lost its address: %+v", b)
	}
	mark := h.Mark()
	if err := netlab.Ping(d3.NS, netlab.GatewayLAN4, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	h.WaitFor(t, mark, 5*time.Second, "a device after the flood", is(KindLearned, d3.MAC, d3.IPv4))
}

// The learner names the bridge port behind a device, from the bridge's
// forwarding database.
func TestLabPort(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 2, StaticDevices: true})
	h := startLearner(t, lab, nil)
	d2 := lab.Devices[1]
	start := h.Mark()
	if err := netlab.Ping(d2.NS, netlab.GatewayLAN6, 3*time.Second); err != nil {
		t.Fatal(err)
	}
	h.WaitFor(t, start, 5*time.Second, "d2 learned", is(KindLearned, d2.MAC, d2.IPv6))
	deadline := time.Now().Add(5 * time.Second)
	for {
		b, _ := h.l.Holder(d2.IPv6)
		if b.Port == d2.Port {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("port of d2: %q, want %q", b.Port, d2.Port)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saveFrames, when NEIGHBOR_SAVE_FRAMES names a directory, writes every
// frame the learner's filter passes on the LAN bridge there: how the
// fixtures under testdata/frames were captured.
func saveFrames(t testing.TB, lab *netlab.Lab) {
	dir := os.Getenv("NEIGHBOR_SAVE_FRAMES")
	if dir == "" {
		return
	}
	filter, err := Filter()
	if err != nil {
		t.Fatal(err)
	}
	prefix := strings.ReplaceAll(t.Name(), "/", "-")
	netlab.SaveFrames(t, dir, lab.GW.NS, netlab.LANBridge, filter, func(i int, f []byte, info capture.Info) string {
		var m Message
		kind := "unparsed"
		if err := ParseFrame(f, &m); err == nil {
			kind = m.Type.String()
		}
		return fmt.Sprintf("%s-%03d-%s-%s.bin", prefix, i, info.Direction, kind)
	})
}
