package resolver

// Passive snooping, pure path (RFC 9726 §3, BCP 241: fill the sets from the
// answers of the resolver the device uses).

import (
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/net/bpf"

	"github.com/openmud/mud/enforcer/dnshold"
	"github.com/openmud/mud/internal/packet/capture"
)

// snooper is a Resolver for HandleFrame that knows devices 1 and 2, and
// trusts answers from the lab gateway's LAN addresses (gw4, gw6) unless
// cfg says otherwise.
func snooper(t testing.TB, cfg Config) *Resolver {
	t.Helper()
	cfg.Server = "127.0.0.1:53"
	if cfg.TrustedSources == nil {
		cfg.TrustedSources = []netip.Prefix{netip.PrefixFrom(gw4, 32), netip.PrefixFrom(gw6, 128)}
	}
	if cfg.MinTTL == 0 {
		cfg.MinTTL = time.Second
	}
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetDeviceNames(devMAC, []string{"API.vendor.test.", "edge7.cdn.test", "time.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	if err := r.SetDeviceNames(otherMAC, []string{"other.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	return r
}

func TestHandleFrameCNAMEChain(t *testing.T) {
	r := snooper(t, Config{})
	now := time.Unix(1_700_000_000, 0)
	ups := r.HandleFrame(udp4(cdnResponse()), now)
	if len(ups) != 2 {
		t.Fatalf("got %d updates, want 2 (the question name and the watched CNAME target): %+v", len(ups), ups)
	}
	want := addrs("198.51.100.71", "198.51.100.72")
	for _, u := range ups {
		if !slices.Equal(u.Addrs, want) || u.Source != Snooped || !slices.Equal(u.Device, devMAC) || !u.Captured.Equal(now) || u.Err != nil {
			t.Errorf("update %+v", u)
		}
		if u.TTL != 20*time.Second || !u.Expires.Equal(now.Add(20*time.Second)) {
			t.Errorf("%s: TTL %v expires %v; want the chain minimum 20s", u.Name, u.TTL, u.Expires)
		}
	}
	if ups[0].Name != "api.vendor.test" || ups[1].Name != "edge7.cdn.test" || ups[0].Key() != "dns:api.vendor.test" {
		t.Errorf("names %q %q", ups[0].Name, ups[1].Name)
	}
}

func TestHandleFrameVariants(t *testing.T) {
	aaaa := response("Time.Vendor.Test", dns.TypeAAAA, rrAAAA("time.vendor.test", 7, "2001:db8:100::123"))
	plain := response("time.vendor.test", dns.TypeA, rrA("time.vendor.test", 0, "198.51.100.123"))
	v6 := frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000}
	v4 := frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}
	with := func(f frameSpec, mod func(*frameSpec)) frameSpec { mod(&f); return f }
	query := response("time.vendor.test", dns.TypeA)
	query[2] &^= 0x80 // QR off
	nx := response("time.vendor.test", dns.TypeA, rrA("time.vendor.test", 60, "198.51.100.1"))
	nx[3] |= 3
	tcpTwo := func() []byte {
		f := buildFrame(with(v4, func(f *frameSpec) { f.tcp = true }), plain)
		// Append a second length-prefixed message to the same segment.
		f = append(f, byte(len(aaaa)>>8), byte(len(aaaa)))
		f = append(f, aaaa...)
		// Fix the IPv4 total length (no checksum check in the parser).
		tl := len(f) - 14
		f[16], f[17] = byte(tl>>8), byte(tl)
		return f
	}()
	for _, tc := range []struct {
		name  string
		frame []byte
		want  []netip.Addr // nil: no update
		ttl   time.Duration
	}{
		{"ipv6 udp aaaa, mixed-case question", buildFrame(v6, aaaa), addrs("2001:db8:100::123"), 7 * time.Second},
		{"tcp", buildFrame(with(v4, func(f *frameSpec) { f.tcp = true }), plain), addrs("198.51.100.123"), 0},
		{"ipv6 tcp", buildFrame(with(v6, func(f *frameSpec) { f.tcp = true }), aaaa), addrs("2001:db8:100::123"), 7 * time.Second},
		{"vlan", buildFrame(with(v4, func(f *frameSpec) { f.vlan = true }), plain), addrs("198.51.100.123"), 0},
		{"tcp two messages", tcpTwo, addrs("198.51.100.123"), 0},
		{"other device's name", buildFrame(with(v4, func(f *frameSpec) { f.dst = otherMAC }), plain), nil, 0},
		{"unknown device", buildFrame(with(v4, func(f *frameSpec) { f.dst = gwMAC }), plain), nil, 0},
		{"not from port 53", buildFrame(with(v4, func(f *frameSpec) { f.sport = 5353 }), plain), nil, 0},
		{"a query, not a response", buildFrame(v4, query), nil, 0},
		{"nxdomain", buildFrame(v4, nx), nil, 0},
		{"fragment", buildFrame(with(v4, func(f *frameSpec) { f.fragment = true }), plain), nil, 0},
		{"unwatched name", udp4(response("ads.tracker.test", dns.TypeA, rrA("ads.tracker.test", 60, "198.51.100.66"))), nil, 0},
		{"watched name as CNAME of an unwatched one... only from the watched name on",
			udp4(response("x.tracker.test", dns.TypeA, rrCNAME("x.tracker.test", 60, "time.vendor.test"), rrA("time.vendor.test", 60, "198.51.100.67"))),
			addrs("198.51.100.67"), 60 * time.Second},
		{"loopback and unspecified dropped", udp4(response("time.vendor.test", dns.TypeA, rrA("time.vendor.test", 60, "127.0.0.1"), rrA("time.vendor.test", 60, "0.0.0.0"))), nil, 0},
		{"cname loop", udp4(response("time.vendor.test", dns.TypeA, rrCNAME("time.vendor.test", 60, "a.test"), rrCNAME("a.test", 60, "time.vendor.test"))), nil, 0},
		{"truncated frame", udp4(plain)[:50], nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r := snooper(t, Config{MinTTL: time.Nanosecond})
			ups := r.HandleFrame(tc.frame, time.Now())
			if tc.want == nil {
				if len(ups) != 0 {
					t.Fatalf("unexpected updates %+v", ups)
				}
				return
			}
			if len(ups) == 0 {
				t.Fatal("no update")
			}
			if !slices.Equal(ups[0].Addrs, tc.want) || ups[0].TTL != tc.ttl {
				t.Fatalf("update %+v; want %v TTL %v", ups[0], tc.want, tc.ttl)
			}
		})
	}
}

func TestHandleFrameClampsAndSources(t *testing.T) {
	now := time.Now()
	r := snooper(t, Config{MinTTL: 30 * time.Second, MaxTTL: time.Minute})
	zero := udp4(response("time.vendor.test", dns.TypeA, rrA("time.vendor.test", 0, "198.51.100.123")))
	ups := r.HandleFrame(zero, now)
	if len(ups) != 1 || ups[0].TTL != 0 || !ups[0].Expires.Equal(now.Add(30*time.Second)) {
		t.Fatalf("TTL 0 answer: %+v; want expiry clamped up to MinTTL", ups)
	}
	r = snooper(t, Config{TrustedSources: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32")}})
	if len(r.HandleFrame(zero, now)) != 1 {
		t.Error("answer from the configured resolver ignored")
	}
	forged := buildFrame(frameSpec{dst: devMAC, src: netip.MustParseAddr("203.0.113.66"), dstIP: dev4, sport: 53, dport: 40000},
		response("time.vendor.test", dns.TypeA, rrA("time.vendor.test", 60, "203.0.113.66")))
	if ups := r.HandleFrame(forged, now); len(ups) != 0 {
		t.Errorf("answer from an unlisted source used: %+v", ups)
	}
	if st := r.Stats(); st.RefusedAnswers != 1 || st.SnoopedAnswer != 1 {
		t.Errorf("stats %+v; want the one refused answer counted apart from the one snooped", st)
	}
	// Forgetting the device stops its updates.
	if err := r.SetDeviceNames(devMAC, nil); err != nil {
		t.Fatal(err)
	}
	if ups := r.HandleFrame(zero, now); len(ups) != 0 {
		t.Errorf("updates for a forgotten device: %+v", ups)
	}
	if err := r.SetDeviceNames(devMAC, []string{"ok.test", "1.2.3.4"}); err == nil {
		t.Error("invalid name accepted")
	}
	if got := r.DeviceNames(devMAC); !slices.Equal(got, []string{"ok.test"}) {
		t.Errorf("DeviceNames = %v, want the valid names kept", got)
	}
}

// Devices with the same names (whatever their case, order, trailing dots
// or repeats) share one set, which goes when its last device does; each
// device still gets updates of its own.
func TestDeviceNamesShared(t *testing.T) {
	r := snooper(t, Config{})
	third := net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x03}
	if err := r.SetDeviceNames(third, []string{"time.vendor.test", "edge7.cdn.test.", "api.vendor.test", "EDGE7.cdn.test"}); err != nil {
		t.Fatal(err)
	}
	sets := func() int {
		r.snoop.mu.RLock()
		defer r.snoop.mu.RUnlock()
		return len(r.snoop.sets)
	}
	set := func(mac net.HardwareAddr) *nameSet {
		r.snoop.mu.RLock()
		defer r.snoop.mu.RUnlock()
		return r.snoop.devices[[6]byte(mac)]
	}
	if set(third) != set(devMAC) || set(third).refs != 2 || sets() != 2 {
		t.Fatalf("equal name lists not shared: %p %p, %d sets", set(third), set(devMAC), sets())
	}
	now := time.Unix(1_700_000_000, 0)
	third4 := frameSpec{dst: third, src: gw4, dstIP: dev4, sport: 53, dport: 40000}
	for _, mac := range []net.HardwareAddr{devMAC, third} {
		f := udp4(cdnResponse())
		if slices.Equal(mac, third) {
			f = buildFrame(third4, cdnResponse())
		}
		ups := r.HandleFrame(f, now)
		if len(ups) != 2 || !slices.Equal(ups[0].Device, mac) || !slices.Equal(ups[1].Device, mac) {
			t.Errorf("updates for %s: %+v", mac, ups)
		}
	}
	// The same names again: nothing changes.
	if err := r.SetDeviceNames(third, []string{"api.vendor.test", "edge7.cdn.test", "time.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	if set(third) != set(devMAC) || set(third).refs != 2 || sets() != 2 {
		t.Errorf("set again: %d refs, %d sets", set(third).refs, sets())
	}
	// Other names: the shared set stays with the device that has it.
	if err := r.SetDeviceNames(third, []string{"other.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	if set(third) != set(otherMAC) || set(devMAC).refs != 1 || set(otherMAC).refs != 2 || sets() != 2 {
		t.Errorf("after a change: %d and %d refs, %d sets", set(devMAC).refs, set(otherMAC).refs, sets())
	}
	if err := r.SetDeviceNames(devMAC, nil); err != nil {
		t.Fatal(err)
	}
	if set(devMAC) != nil || sets() != 1 || r.DeviceNames(devMAC) != nil {
		t.Errorf("after forgetting the last device of a set: %d sets", sets())
	}
	// Only invalid names: forgotten, with the error.
	if err := r.SetDeviceNames(third, []string{"1.2.3.4"}); err == nil {
		t.Error("invalid name accepted")
	}
	if set(third) != nil || set(otherMAC).refs != 1 || sets() != 1 {
		t.Errorf("after an invalid list: %d sets", sets())
	}
	if err := r.SetDeviceNames(otherMAC, []string{}); err != nil {
		t.Fatal(err)
	}
	if sets() != 0 {
		t.Errorf("%d sets left with no device", sets())
	}
}

// TestSnoopFilter runs the capture's BPF program (without the direction
// and mark tests the socket adds, which the x/net/bpf VM cannot evaluate)
// on frames.
func TestSnoopFilter(t *testing.T) {
	prog, err := snoopFilter()
	if err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	for _, mark := range []uint32{0, dnshold.DefaultMark} {
		f, err := captureFilter(mark)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := f.Assemble(); err != nil || f.Direction != capture.Outgoing || f.SkipMark != mark {
			t.Fatalf("filter %+v: %v", f, err)
		}
	}
	msg := cdnResponse()
	v4 := frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}
	v6 := frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000}
	for _, tc := range []struct {
		name string
		f    frameSpec
		want bool
	}{
		{"udp4", v4, true},
		{"tcp4", frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000, tcp: true}, true},
		{"udp6", v6, true},
		{"tcp6", frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000, tcp: true}, true},
		{"query4", frameSpec{dst: gwMAC, src: dev4, dstIP: gw4, sport: 40000, dport: 53}, false},
		{"query6", frameSpec{dst: gwMAC, src: dev6, dstIP: gw6, sport: 40000, dport: 53}, false},
		{"fragment", frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000, fragment: true}, true}, // first fragment: offset 0
	} {
		n, err := vm.Run(buildFrame(tc.f, msg))
		if err != nil {
			t.Fatal(err)
		}
		if (n > 0) != tc.want {
			t.Errorf("%s: filter returned %d, want accept=%v", tc.name, n, tc.want)
		}
	}
	arp := make([]byte, 60)
	arp[12], arp[13] = 0x08, 0x06
	if n, _ := vm.Run(arp); n != 0 {
		t.Error("ARP accepted")
	}
}
