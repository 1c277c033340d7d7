package violations

import (
	"bytes"
	"context"
	"flag"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// -capture writes the NFLOG message of each lab step to testdata/ (the
// seeds of FuzzParseMessage and the inputs of the parsing tests).
var capture = flag.Bool("capture", false, "write the NFLOG message of each lab step to testdata/")

const labGroup = 7

type violationLab struct {
	lab        *netlab.Lab
	r          *Reader
	rec        *netlab.Recorder[Violation]
	cam, other *netlab.Host // cam has the policy; other has none
	cloud, far *netlab.Host // cloud is allowed; far is not

	mu   sync.Mutex
	msgs [][]byte // every message read, in order
}

// newViolationLab builds a lab with a camera whose policy allows TCP 8080
// to its cloud only, installs the real enforcer logging to labGroup, and
// runs a Reader of that group in the gateway's namespace.
func newViolationLab(t *testing.T, cfg Config) *violationLab {
	t.Helper()
	lab := netlab.New(t, netlab.Config{Devices: 2, Servers: 2, StaticDevices: true})
	v := &violationLab{lab: lab, cam: lab.Devices[0], other: lab.Devices[1], cloud: lab.Servers[0], far: lab.Servers[1]}
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := enforcer.New(enforcer.Config{NetNSFd: int(h), LogGroup: labGroup})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	pol := policy.Policy{ID: "cam1", MUDURL: "https://cam.example/cam1",
		FromDevice: []policy.Rule{{Name: "fr/cloud", Peer: cloud, Protocol: policy.ProtoTCP,
			DstPort: &policy.PortRange{First: 8080, Last: 8080}, Verdict: policy.Accept}},
		ToDevice: []policy.Rule{{Name: "to/cloud", Peer: cloud, Protocol: policy.ProtoTCP,
			SrcPort: &policy.PortRange{First: 8080, Last: 8080}, Verdict: policy.Accept}},
	}
	err = e.Apply(context.Background(), enforcer.Desired{
		Policies: []policy.Policy{pol},
		Devices: []enforcer.Device{{MAC: v.cam.MAC, IPv4s: []netip.Addr{v.cam.IPv4},
			IPv6s: []netip.Addr{v.cam.IPv6}, PolicyID: "cam1"}},
		Peers: map[string][]enforcer.Element{"dns:cloud.example": {
			{Prefix: netip.PrefixFrom(v.cloud.IPv4, 32)}, {Prefix: netip.PrefixFrom(v.cloud.IPv6, 128)}}},
	})
	if err != nil {
		t.Fatalf("Apply: %v", err)
	}
	cfg.NetNSFd = int(h)
	cfg.Group = labGroup
	cfg.DeviceOf = func(a netip.Addr) net.HardwareAddr {
		if a == v.cam.IPv4 || a == v.cam.IPv6 {
			return v.cam.MAC
		}
		return nil
	}
	cfg.NameOf = func(_ net.HardwareAddr, a netip.Addr) string {
		if a == v.far.IPv4 || a == v.far.IPv6 {
			return "tracker.example"
		}
		return ""
	}
	cfg.tap = func(b []byte) {
		v.mu.Lock()
		v.msgs = append(v.msgs, b)
		v.mu.Unlock()
	}
	r, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { r.Close() })
	v.r = r
	v.rec = netlab.Record(r.Updates())
	netlab.Serve(t, r.Run)
	for _, port := range []string{"[::]:8080", "[::]:9999"} {
		for _, h := range []*netlab.Host{v.cloud, v.far, v.cam, v.other} {
			echo, err := netlab.ServeEcho(h.NS, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(echo.Close)
		}
	}
	return v
}

// expect runs send (which makes the enforcer drop a packet), and waits at
// most within for the violation match accepts. Under -capture it saves the
// message that produced it as testdata/name.bin.
func (v *violationLab) expect(t *testing.T, name string, within time.Duration, send func() error, match func(Violation) bool) Violation {
	t.Helper()
	mark := v.rec.Mark()
	v.mu.Lock()
	from := len(v.msgs)
	v.mu.Unlock()
	start := time.Now()
	sent := make(chan error, 1)
	go func() { sent <- send() }()
	got, _ := v.rec.WaitFor(t, mark, within, name, match)
	if took := time.Since(start); took > within {
		t.Errorf("%s: delivered after %v, want within %v", name, took, within)
	}
	netlab.MustDrop(t, name, <-sent)
	if *capture {
		v.save(t, name, from, match)
	}
	return got
}

// save writes the first message read since from whose drop match accepts.
func (v *violationLab) save(t *testing.T, name string, from int, match func(Violation) bool) {
	t.Helper()
	v.mu.Lock()
	msgs := v.msgs[from:]
	v.mu.Unlock()
	for _, b := range msgs {
		var p Parser
		var d Drop
		if p.ParseMessage(b, &d) != nil {
			continue
		}
		tab := NewTable(Config{DeviceOf: v.r.cfg.DeviceOf, NameOf: v.r.cfg.NameOf})
		tab.Add(&d)
		if s := tab.Snapshot(); len(s) == 1 && match(s[0]) {
			if err := os.WriteFile(filepath.Join("testdata", name+".bin"), b, 0o644); err != nil {
				t.Fatal(err)
			}
			return
		}
	}
	t.Errorf("%s: no message to save", name)
}

func isViolation(mac net.HardwareAddr, dir Direction, kind Kind, peer netip.Addr, proto uint8, port uint16) func(Violation) bool {
	return func(v Violation) bool {
		return bytes.Equal(v.MAC, mac) && v.Direction == dir && v.Kind == kind && v.Peer == peer &&
			v.Protocol == proto && v.Port == port
	}
}

// A device that connects to a host its policy does not allow is reported
// within a second, naming the device's MAC, the peer and the port, in both
// IP versions; so are connections to the device its policy refuses, routed
// and bridged, and a packet from an address not bound to it.
func TestDropsBecomeViolations(t *testing.T) {
	v := newViolationLab(t, Config{})
	cam := v.cam
	// The group has one reader per namespace.
	if r2, err := Open(Config{NetNSFd: v.r.cfg.NetNSFd, Group: labGroup}); err == nil {
		r2.Close()
		t.Error("a second Open of the bound group succeeded, want EBUSY")
	}
	const within = time.Second
	for _, c := range []struct {
		name string
		far  netip.Addr
	}{{"out4-tcp", v.far.IPv4}, {"out6-tcp", v.far.IPv6}} {
		got := v.expect(t, c.name, within,
			func() error { return netlab.TCPEcho(cam.NS, netlab.HostPort(c.far, 8080), 400*time.Millisecond) },
			isViolation(cam.MAC, Out, DefaultDeny, c.far, 6, 8080))
		if got.PeerName != "tracker.example" || got.Count < 1 || !got.New || got.FirstSeen.IsZero() || got.LastSeen.Before(got.FirstSeen) {
			t.Errorf("%s: %+v: want PeerName tracker.example, a count, New, first ≤ last seen", c.name, got)
		}
		if a := got.DeviceAddr; a != cam.IPv4 && a != cam.IPv6 {
			t.Errorf("%s: device address %v, want the camera's", c.name, a)
		}
	}
	// Routed to the camera from the WAN side: the MAC comes from DeviceOf.
	got := v.expect(t, "in4-routed", within,
		func() error { return netlab.TCPEcho(v.far.NS, netlab.HostPort(cam.IPv4, 9999), 400*time.Millisecond) },
		isViolation(cam.MAC, In, DefaultDeny, v.far.IPv4, 6, 9999))
	if got.DeviceAddr != cam.IPv4 {
		t.Errorf("in4-routed: device address %v, want %v", got.DeviceAddr, cam.IPv4)
	}
	// Bridged: another LAN host to the camera, and the camera to it.
	v.expect(t, "in4-bridged", within,
		func() error { return netlab.TCPEcho(v.other.NS, netlab.HostPort(cam.IPv4, 9999), 400*time.Millisecond) },
		isViolation(cam.MAC, In, DefaultDeny, v.other.IPv4, 6, 9999))
	v.expect(t, "out6-bridged", within,
		func() error { return netlab.TCPEcho(cam.NS, netlab.HostPort(v.other.IPv6, 9999), 400*time.Millisecond) },
		isViolation(cam.MAC, Out, DefaultDeny, v.other.IPv6, 6, 9999))
	// ICMP: the type stands for the port.
	v.expect(t, "out4-ping", within,
		func() error { return netlab.Ping(cam.NS, v.far.IPv4, 400*time.Millisecond) },
		isViolation(cam.MAC, Out, DefaultDeny, v.far.IPv4, 1, 8))
	// The source guard: the camera sends from an address not bound to it.
	spoof := netip.MustParseAddr("192.0.2.99")
	if _, err := v.lab.Run(context.Background(), cam.NS, "ip", "addr", "add", spoof.String()+"/32", "dev", cam.Iface); err != nil {
		t.Fatal(err)
	}
	got = v.expect(t, "guard4-udp", within, func() error {
		return netlab.Do(cam.NS, func() error {
			c, err := net.DialUDP("udp4", net.UDPAddrFromAddrPort(netip.AddrPortFrom(spoof, 0)),
				net.UDPAddrFromAddrPort(netip.AddrPortFrom(v.cloud.IPv4, 8080)))
			if err != nil {
				return err
			}
			defer c.Close()
			// the echo server would answer; the guard drops the datagram
			return roundTrip(c, 400*time.Millisecond)
		})
	}, isViolation(cam.MAC, Out, SourceGuard, v.cloud.IPv4, 17, 8080))
	if got.DeviceAddr != spoof {
		t.Errorf("guard4-udp: device address %v, want the spoofed %v", got.DeviceAddr, spoof)
	}
	if s := v.r.Stats(); s.DropsOut == 0 || s.DropsIn == 0 || s.DropsGuarded == 0 {
		t.Errorf("stats %+v: want drops counted in each direction and kind", s)
	}
	if l := v.r.List(cam.MAC); len(l) < 7 {
		t.Errorf("List(camera) holds %d records, want ≥ 7: %+v", len(l), l)
	}
}

// 10,000 distinct forbidden destinations sent as fast as a UDP socket
// can leave the reader's state within its bounds: the enforcer's log limit
// (10/s) lets only some through, and of those the table keeps at most
// MaxPerDevice, evicting the least recently seen.
func TestFloodOfForbiddenDestinationsStaysBounded(t *testing.T) {
	const perDevice = 8
	v := newViolationLab(t, Config{MaxPerDevice: perDevice, MaxRecords: 64})
	// Let the reader settle before the first heap measure.
	v.expect(t, "flood-first", time.Second,
		func() error { return netlab.TCPEcho(v.cam.NS, netlab.HostPort(v.far.IPv4, 8080), 400*time.Millisecond) },
		isViolation(v.cam.MAC, Out, DefaultDeny, v.far.IPv4, 6, 8080))
	before := heap()
	conn, err := netlab.ListenPacket(v.cam.NS, "udp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	sent := 0
	payload := []byte("x")
	for round := 0; round < 20; round++ { // ~2 s, so that ~25 logged drops arrive
		for i := 0; i < 500; i++ {
			n := round*500 + i
			dst := netip.AddrFrom4([4]byte{203, 0, 113, byte(20 + n%200)})
			if _, err := conn.WriteTo(payload, net.UDPAddrFromAddrPort(netip.AddrPortFrom(dst, uint16(20000+n/200)))); err == nil {
				sent++
			}
		}
		time.Sleep(100 * time.Millisecond)
	}
	if sent != 10000 {
		t.Fatalf("sent %d of 10000 packets", sent)
	}
	// Wait until what the enforcer logged has been read.
	deadline := time.Now().Add(2 * time.Second)
	var s Stats
	for {
		s = v.r.Stats()
		if s.Evicted > 0 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	time.Sleep(200 * time.Millisecond)
	s = v.r.Stats()
	after := heap()
	delta := int64(after) - int64(before)
	t.Logf("10,000 sent, %d drops read, %d records held, %d evicted, %d updates deferred; heap %d → %d bytes (Δ %d)",
		s.DropsOut, s.Records, s.Evicted, s.Deferred, before, after, delta)
	if l := v.r.List(v.cam.MAC); len(l) > perDevice {
		t.Errorf("the camera holds %d records, want ≤ %d", len(l), perDevice)
	}
	if s.Records > perDevice || s.Evicted == 0 {
		t.Errorf("stats %+v: want ≤ %d records and evictions", s, perDevice)
	}
	if s.DropsOut >= 10000/2 {
		t.Errorf("%d drops read of 10,000 sent: the enforcer's log limit did not apply", s.DropsOut)
	}
	if delta > 1<<20 {
		t.Errorf("heap grew by %d bytes, want < 1 MiB", delta)
	}
}

// roundTrip sends a datagram and waits for its echo.
func roundTrip(c net.Conn, timeout time.Duration) error {
	if err := c.SetDeadline(time.Now().Add(timeout)); err != nil {
		return err
	}
	if _, err := c.Write([]byte("mud-lab-probe\n")); err != nil {
		return err
	}
	_, err := c.Read(make([]byte, 64))
	return err
}

func heap() uint64 {
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return m.HeapAlloc
}
