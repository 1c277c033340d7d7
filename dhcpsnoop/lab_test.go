package dhcpsnoop

import (
	"bytes"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv4/nclient4"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// testClock is real time plus an offset the test can move forward, so that
// a 2-minute dnsmasq lease expires without waiting 2 minutes.
type testClock struct{ offset atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Now().Add(time.Duration(c.offset.Load())) }
func (c *testClock) Advance(d time.Duration) { c.offset.Add(int64(d)) }

// harness runs a Snooper in the lab's gateway namespace and records its
// events, so that scenarios on different devices can wait for their own.
type harness struct {
	s       *Snooper
	clock   *testClock
	mu      sync.Mutex
	evs     []Event
	changed chan struct{}
	cursor  map[string]int
}

func startSnooper(t *testing.T, lab *netlab.Lab) *harness {
	t.Helper()
	return startSnooperWith(t, lab, nil)
}

func startSnooperWith(t *testing.T, lab *netlab.Lab, tweak func(*Config)) *harness {
	t.Helper()
	h := &harness{clock: &testClock{}, changed: make(chan struct{}), cursor: map[string]int{}}
	level := slog.LevelInfo
	if testing.Verbose() {
		level = slog.LevelDebug
	}
	cfg := Config{
		Interfaces:        []string{netlab.LANBridge},
		NetNS:             lab.GW.NS,
		SweepInterval:     100 * time.Millisecond,
		NeighbourInterval: 200 * time.Millisecond,
		Now:               h.clock.Now,
		Logger:            slog.New(slog.NewTextHandler(tWriter{t}, &slog.HandlerOptions{Level: level})),
	}
	if tweak != nil {
		tweak(&cfg)
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	h.s = s
	ctx, cancel := context.WithCancel(context.Background())
	runErr := make(chan error, 1)
	go func() { runErr <- s.Run(ctx) }()
	collected := make(chan struct{})
	go func() {
		defer close(collected)
		for ev := range s.Events() {
			h.mu.Lock()
			h.evs = append(h.evs, ev)
			close(h.changed)
			h.changed = make(chan struct{})
			h.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		cancel()
		if err := <-runErr; err != nil {
			t.Errorf("Run: %v", err)
		}
		<-collected
		t.Logf("snooper stats: %+v", s.Stats())
	})
	// A client started before the sockets are open would go unseen.
	select {
	case <-s.Capturing():
	case err := <-runErr:
		runErr <- err // for the cleanup
		t.Fatalf("snooper did not start: %v", err)
	}
	return h
}

type tWriter struct{ t *testing.T }

func (w tWriter) Write(p []byte) (int, error) {
	w.t.Log(strings.TrimRight(string(p), "\n"))
	return len(p), nil
}

// wait returns the next event for mac (after the last one wait returned for
// it) that has kind and passes match; earlier ones for mac are skipped.
func (h *harness) wait(t *testing.T, mac net.HardwareAddr, kind Kind, match func(Event) bool, timeout time.Duration) Event {
	t.Helper()
	deadline := time.After(timeout)
	for {
		h.mu.Lock()
		changed := h.changed
		for i := h.cursor[mac.String()]; i < len(h.evs); i++ {
			ev := h.evs[i]
			if !bytes.Equal(ev.MAC, mac) {
				continue
			}
			if ev.Kind == kind && (match == nil || match(ev)) {
				h.cursor[mac.String()] = i + 1
				h.mu.Unlock()
				t.Logf("got: %s", ev)
				return ev
			}
		}
		h.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			h.mu.Lock()
			for _, ev := range h.evs {
				if bytes.Equal(ev.MAC, mac) {
					t.Logf("seen: %s", ev)
				}
			}
			h.mu.Unlock()
			t.Fatalf("no %s event for %s within %s", kind, mac, timeout)
		}
	}
}

const labWait = 20 * time.Second

// The DHCP scenarios against real programs: dnsmasq (DHCPv4 and DHCPv6) on
// the gateway; udhcpc, dhclient, dhclient -6 and insomniacslk's nclient4 on
// devices.
func TestLabDHCP(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 7})
	netlab.RequireCommand(t, "dnsmasq", "udhcpc", "dhclient")
	dev := lab.Devices
	dm := lab.StartDNSMasq(t, netlab.DNSMasqConfig{
		Range4: "192.0.2.100,192.0.2.199,255.255.255.0,2m",
		Range6: "2001:db8:1::100,2001:db8:1::1ff,64,2m",
		Hosts:  []string{dev[0].MAC.String() + ",192.0.2.50"},
	})
	t.Cleanup(func() {
		if t.Failed() {
			t.Logf("dnsmasq log:\n%s", dm.Out.String())
		}
	})
	h := startSnooper(t, lab)
	saveFrames(t, lab)

	// Arrival with URL, renewal, address change and expiry after the
	// client disappears, with udhcpc (option 161 as -x 0xa1:<hex>).
	var udhcpc1 *os.Process
	t.Run("group", func(t *testing.T) {
		t.Run("udhcpc lifecycle", func(t *testing.T) {
			t.Parallel()
			d := dev[0]
			cmd, out := lab.Udhcpc(t, d, "-x", "0xa1:"+netlab.HexString(urlA+" reserved"), "-x", "hostname:bulb-1")
			defer func() {
				if t.Failed() {
					t.Logf("udhcpc:\n%s", out.String())
				}
			}()
			udhcpc1 = cmd.Process
			ev := h.wait(t, d.MAC, KindBound, nil, labWait)
			if ev.MUDURL != urlA || ev.IPv4.String() != "192.0.2.50" || ev.Hostname != "bulb-1" ||
				ev.LeaseTime != 2*time.Minute || ev.Interface != netlab.LANBridge || ev.Family != 4 {
				t.Errorf("bound = %s", ev)
			}
			waitAddr(t, lab, d, "192.0.2.50")
			if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil { // renew
				t.Fatal(err)
			}
			ev = h.wait(t, d.MAC, KindRenewed, nil, labWait)
			if ev.IPv4.String() != "192.0.2.50" || ev.MUDURL != urlA {
				t.Errorf("renewed = %s", ev)
			}
			// Move the reservation: the next renewal is NAKed and the client
			// comes back with the new address.
			if err := dm.SetHosts(d.MAC.String() + ",192.0.2.60"); err != nil {
				t.Fatal(err)
			}
			time.Sleep(200 * time.Millisecond) // let dnsmasq re-read the file
			if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
				t.Fatal(err)
			}
			ev = h.wait(t, d.MAC, KindAddressChanged, nil, labWait)
			if ev.IPv4.String() != "192.0.2.60" || len(ev.Removed) != 1 || ev.Removed[0].String() != "192.0.2.50" || ev.MUDURL != urlA {
				t.Errorf("address-changed = %s", ev)
			}
		})
		t.Run("dhclient release", func(t *testing.T) {
			t.Parallel()
			d := dev[1]
			// Debian's dhclient 4.4 does not know the option name: define it.
			dc := netlab.NewDhclient(t, d, false, "option mud-url code 161 = text;\nsend mud-url \""+urlB+"\";\nsend host-name \"cam-2\";\n")
			_, out := lab.StartDhclient(t, dc)
			defer func() {
				if t.Failed() {
					t.Logf("dhclient:\n%s", out.String())
				}
			}()
			ev := h.wait(t, d.MAC, KindBound, nil, labWait)
			if ev.MUDURL != urlB || !ev.IPv4.IsValid() || ev.Hostname != "cam-2" {
				t.Errorf("bound = %s", ev)
			}
			// Self-configured IPv6 (SLAAC-like): the device adds an address
			// and talks to the gateway; the binding learns it from the
			// gateway's neighbour table.
			slaac := netip.MustParseAddr("2001:db8:1::200:ff:fe00:102")
			if _, err := lab.Run(t.Context(), d.NS, "ip", "-6", "addr", "add", slaac.String()+"/64", "dev", d.Iface, "nodad"); err != nil {
				t.Fatal(err)
			}
			if err := netlab.Ping(d.NS, netlab.GatewayLAN6, 3*time.Second); err != nil {
				t.Fatal(err)
			}
			ev = h.wait(t, d.MAC, KindAddressesLearned, nil, labWait)
			if len(ev.Added) != 1 || ev.Added[0] != slaac || !ev.IPv4.IsValid() {
				t.Errorf("learned = %s", ev)
			}
			lab.ReleaseDhclient(t, dc)
			ev = h.wait(t, d.MAC, KindReleased, nil, labWait)
			if !ev.Gone || !slices.ContainsFunc(ev.Removed, func(a netip.Addr) bool { return a == slaac }) {
				t.Errorf("released = %s", ev)
			}
		})
		t.Run("dhclient -6 and v4 URL mismatch", func(t *testing.T) {
			t.Parallel()
			d := dev[2]
			dc := netlab.NewDhclient(t, d, true, "option dhcp6.mud-url code 112 = text;\nsend dhcp6.mud-url \""+urlA+"\";\n")
			waitLinkLocal(t, lab, d)
			_, out := lab.StartDhclient(t, dc)
			defer func() {
				if t.Failed() {
					t.Logf("dhclient -6:\n%s", out.String())
				}
			}()
			ev := h.wait(t, d.MAC, KindBound, func(e Event) bool { return e.Family == 6 }, labWait)
			if ev.MUDURL != urlA || len(ev.IPv6) != 1 || !netlab.LANPrefix6.Contains(ev.IPv6[0]) || ev.LeaseTime != 2*time.Minute {
				t.Errorf("bound v6 = %s", ev)
			}
			// The same device announces another URL over DHCPv4: flagged
			// (RFC 8520 §10.1: a client uses the same URL in both).
			lab.Udhcpc(t, d, "-x", "0xa1:"+netlab.HexString(urlB))
			ev = h.wait(t, d.MAC, KindURLMismatch, nil, labWait)
			if !strings.Contains(ev.Reason, urlA) || !strings.Contains(ev.Reason, urlB) {
				t.Errorf("mismatch = %s", ev)
			}
			h.wait(t, d.MAC, KindBound, func(e Event) bool { return e.Family == 4 }, labWait)
			lab.ReleaseDhclient(t, dc)
			ev = h.wait(t, d.MAC, KindReleased, func(e Event) bool { return e.Family == 6 }, labWait)
			if ev.Gone || len(ev.Removed) != 1 || !ev.IPv4.IsValid() {
				t.Errorf("released v6 = %s (the v4 lease remains)", ev)
			}
		})
		t.Run("nclient4", func(t *testing.T) {
			t.Parallel()
			d := dev[3]
			var c *nclient4.Client
			if err := netlab.Do(d.NS, func() (err error) {
				c, err = nclient4.New(d.Iface, nclient4.WithTimeout(2*time.Second), nclient4.WithRetry(5))
				return err
			}); err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			lease, err := c.Request(t.Context(), dhcpv4.WithGeneric(optMUDURLv4, []byte(urlA)),
				dhcpv4.WithOption(dhcpv4.OptHostName("nclient")))
			if err != nil {
				t.Fatal(err)
			}
			ev := h.wait(t, d.MAC, KindBound, nil, labWait)
			if ev.MUDURL != urlA || ev.IPv4.String() != lease.ACK.YourIPAddr.String() || ev.Hostname != "nclient" {
				t.Errorf("bound = %s", ev)
			}
			if err := c.Release(lease); err != nil {
				t.Fatal(err)
			}
			ev = h.wait(t, d.MAC, KindReleased, nil, labWait)
			if !ev.Gone {
				t.Errorf("released = %s", ev)
			}
		})
		t.Run("http URL", func(t *testing.T) {
			t.Parallel()
			d := dev[4]
			lab.Udhcpc(t, d, "-x", "0xa1:"+netlab.HexString("http://insecure.example/thing"))
			ev := h.wait(t, d.MAC, KindInvalidURL, nil, labWait)
			if !strings.Contains(ev.Reason, "not https") || ev.Raw != "http://insecure.example/thing" {
				t.Errorf("invalid = %s", ev)
			}
			if ev = h.wait(t, d.MAC, KindBound, nil, labWait); ev.MUDURL != "" {
				t.Errorf("bound with URL %q", ev.MUDURL)
			}
		})
		t.Run("oversize URL", func(t *testing.T) {
			t.Parallel()
			d := dev[5]
			long := "https://big.example/" + strings.Repeat("a", 280)
			// dhclient splits an option over 255 octets (RFC 3396).
			dc := netlab.NewDhclient(t, d, false, "option mud-url code 161 = text;\nsend mud-url \""+long+"\";\n")
			_, out := lab.StartDhclient(t, dc)
			defer func() {
				if t.Failed() {
					t.Logf("dhclient:\n%s", out.String())
				}
			}()
			ev := h.wait(t, d.MAC, KindInvalidURL, nil, labWait)
			if !strings.Contains(ev.Reason, "longer than 255") {
				t.Errorf("invalid = %s", ev)
			}
			if ev = h.wait(t, d.MAC, KindBound, nil, labWait); ev.MUDURL != "" {
				t.Errorf("bound with URL %q", ev.MUDURL)
			}
		})
		t.Run("no URL", func(t *testing.T) {
			t.Parallel()
			d := dev[6]
			lab.Udhcpc(t, d)
			if ev := h.wait(t, d.MAC, KindBound, nil, labWait); ev.MUDURL != "" || !ev.IPv4.IsValid() {
				t.Errorf("bound = %s", ev)
			}
		})
	})
	if t.Failed() {
		return
	}
	// The udhcpc device disappears without a release; its lease (2 minutes
	// at dnsmasq's minimum) expires on the snooper's clock, moved forward.
	t.Run("expiry after disappearing", func(t *testing.T) {
		if err := udhcpc1.Kill(); err != nil {
			t.Fatal(err)
		}
		h.clock.Advance(3 * time.Minute)
		ev := h.wait(t, dev[0].MAC, KindExpired, nil, labWait)
		if !ev.Gone || ev.Removed[0].String() != "192.0.2.60" || ev.MUDURL != urlA {
			t.Errorf("expired = %s", ev)
		}
	})
	if s := h.s.Stats(); s.Malformed != 0 || s.NotDHCP != 0 || s.QueueDrops != 0 {
		t.Errorf("stats = %+v", s)
	}
}

// waitAddr waits until the client script has configured addr on h (udhcpc
// renews from that address, so renewing earlier fails).
func waitAddr(t *testing.T, lab *netlab.Lab, h *netlab.Host, addr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := lab.Run(t.Context(), h.NS, "ip", "-4", "addr", "show", "dev", h.Iface)
		if strings.Contains(out, addr+"/") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s not configured on %s: %s", addr, h.NS, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// waitLinkLocal waits for a usable (non-tentative) link-local address:
// dhclient -6 sends from it.
func waitLinkLocal(t *testing.T, lab *netlab.Lab, h *netlab.Host) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		out, _ := lab.Run(t.Context(), h.NS, "ip", "-6", "addr", "show", "dev", h.Iface, "scope", "link")
		if strings.Contains(out, "fe80") && !strings.Contains(out, "tentative") {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("no link-local address on %s: %s", h.NS, out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// saveFrames, when DHCPSNOOP_SAVE_FRAMES names a directory, writes every
// frame the DHCP filter passes on the LAN bridge there: how the fixtures
// under testdata/frames were captured.
func saveFrames(t *testing.T, lab *netlab.Lab) {
	dir := os.Getenv("DHCPSNOOP_SAVE_FRAMES")
	if dir == "" {
		return
	}
	filter, err := DHCPFilter()
	if err != nil {
		t.Fatal(err)
	}
	c, err := capture.Open(netlab.LANBridge, capture.Config{NetNS: lab.GW.NS, Filter: capture.Filter{Program: filter}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, captureLen+4)
		for i := 0; ; i++ {
			f, _, err := c.ReadFrame(buf)
			if err != nil {
				return
			}
			name := fmt.Sprintf("frame-%03d.bin", i)
			if m, err := ParseFrame(f); err == nil {
				name = fmt.Sprintf("frame-%03d-v%d-%s.bin", i, m.Family, strings.ToLower(m.Type))
			}
			_ = os.WriteFile(filepath.Join(dir, name), f, 0o644)
		}
	}()
}

// A flood of DHCP from two thousand spoofed MACs, through the real capture
// path, while a real device arrives: memory stays within the configured
// bounds, drops are counted, and the real device is still seen.
func TestLabFlood(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 2})
	netlab.RequireCommand(t, "dnsmasq", "udhcpc")
	lab.StartDNSMasq(t, netlab.DNSMasqConfig{Range4: "192.0.2.100,192.0.2.199,255.255.255.0,2m", Quiet: true})
	h := startSnooperWith(t, lab, func(c *Config) {
		c.FrameQueue = 64
		c.Tracker = TrackerConfig{MaxDevices: 16, MaxPending: 32, RatePerMAC: 5, BurstPerMAC: 10}
	})
	c := rawSocket(t, lab.Devices[1])
	frames := make([][]byte, 2000)
	for i := range frames {
		mac := net.HardwareAddr{0x02, 0xf1, 0, 0, byte(i >> 8), byte(i)}
		frames[i] = v4Client(t, mac, v4Msg(t, dhcpv4.MessageTypeDiscover, mac, byte(i), withMUD(urlB)))
	}
	stop := make(chan struct{})
	var once sync.Once
	stopFlood := func() { once.Do(func() { close(stop) }) }
	defer stopFlood() // also when the test fails early
	flooded := make(chan int, 1)
	go func() {
		n := 0
		defer func() { flooded <- n }()
		// About 10,000 frames a second: a starvation attack's rate, not
		// more than the two shared CPUs of CI can carry alongside the test.
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			case <-tick.C:
			}
			for j := range 100 {
				f := frames[(i*100+j)%len(frames)]
				if err := c.Send(f); err == nil {
					n++
				}
			}
		}
	}()
	time.Sleep(300 * time.Millisecond) // the flood is on
	dev := lab.Devices[0]
	_, out := lab.Udhcpc(t, dev, "-x", "0xa1:"+netlab.HexString(urlA))
	defer func() {
		if t.Failed() {
			t.Logf("udhcpc:\n%s", out.String())
		}
	}()
	ev := h.wait(t, dev.MAC, KindBound, nil, labWait)
	stopFlood()
	n := <-flooded
	// Under the flood the client's requests (which carry the URL) may
	// have been dropped with the rest; the server's ACK is queued first
	// and must get through. A URL, if seen, must be the device's.
	if ev.MUDURL != "" && ev.MUDURL != urlA {
		t.Errorf("bound = %s", ev)
	}
	s := h.s.Stats()
	t.Logf("flood frames sent: %d; stats: %+v", n, s)
	if s.PendingCount > 32 || s.Devices > 16 {
		t.Errorf("bounds exceeded: %+v", s)
	}
	if s.Evicted == 0 || s.QueueDrops+s.RateLimited+s.Evicted == 0 {
		t.Errorf("flood left no trace in the counters: %+v", s)
	}
}

// Every event names the bridge port the device's frames arrive on, from
// the bridge's forwarding database: a real client's arrival on its port;
// a request whose chaddr is made up, by the port its frame came in on (the
// frame's source); a MAC the bridge never learnt, no port.
func TestLabPorts(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 2})
	netlab.RequireCommand(t, "dnsmasq", "udhcpc")
	lab.StartDNSMasq(t, netlab.DNSMasqConfig{Range4: "192.0.2.100,192.0.2.199,255.255.255.0,2m"})
	h := startSnooper(t, lab)
	dev, other := lab.Devices[0], lab.Devices[1]

	lab.Udhcpc(t, dev, "-x", "0xa1:"+netlab.HexString(urlA))
	for _, kind := range []Kind{KindAnnounced, KindBound} {
		if ev := h.wait(t, dev.MAC, kind, nil, labWait); ev.Port != dev.Port || ev.Interface != netlab.LANBridge {
			t.Errorf("%s on port %q (interface %q), want port %s", kind, ev.Port, ev.Interface, dev.Port)
		}
	}

	// From the other device's port, a request for a client that is not
	// there (chaddr spoofed, as a DHCP flood does).
	spoofed := net.HardwareAddr{0x02, 0xf1, 0, 0, 0, 0x01}
	c := rawSocket(t, other)
	frame := v4Client(t, other.MAC, v4Msg(t, dhcpv4.MessageTypeDiscover, spoofed, 7, withMUD(urlB)))
	if err := c.Send(frame); err != nil {
		t.Fatal(err)
	}
	if ev := h.wait(t, spoofed, KindAnnounced, nil, labWait); ev.Port != other.Port {
		t.Errorf("spoofed chaddr announced on port %q, want %s (the frame's)", ev.Port, other.Port)
	}

	// Straight to the lookup: a MAC the bridge has no entry for has no
	// port; an interface that is not a bridge is its own port.
	pf, err := newPortFinder(lab.GW.NS, &counters{})
	if err != nil {
		t.Fatal(err)
	}
	defer pf.close()
	if p := pf.port(netlab.LANBridge, net.HardwareAddr{0x02, 0xee, 0, 0, 0, 1}, time.Now()); p != "" {
		t.Errorf("unknown MAC on port %q", p)
	}
	if p := pf.port(dev.Port, dev.MAC, time.Now()); p != dev.Port {
		t.Errorf("on the port interface itself: %q, want %s", p, dev.Port)
	}
	if p := pf.port(netlab.LANBridge, dev.MAC, time.Now()); p != dev.Port {
		t.Errorf("device's port %q, want %s", p, dev.Port)
	}
	// The full read, which finds entries a VLAN-filtering bridge keys by
	// VLAN, agrees.
	br := pf.links[netlab.LANBridge]
	key, _ := keyOf(dev.MAC)
	idx, ok := pf.dumpPort(br.index, key, time.Now())
	if name, err := pf.linkName(idx); !ok || err != nil || name != dev.Port {
		t.Errorf("device's port in the full read: %q (%v, found %v), want %s", name, err, ok, dev.Port)
	}
	if _, ok := pf.dumpPort(br.index, hwKey{0x02, 0xee, 0, 0, 0, 1}, time.Now()); ok {
		t.Error("an unknown MAC is in the full read")
	}
}

// rawSocket opens a packet socket on h's interface, to send frames as the
// host (or as whatever the frame claims); the test closes it.
func rawSocket(t *testing.T, h *netlab.Host) *capture.Conn {
	t.Helper()
	c, err := netlab.RawConn(h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}
