package resolver

// The gateway's own addresses, whose answers grant, are those of the
// captured interfaces: listed when Run starts and followed as they change.

import (
	"context"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/openmud/mud/internal/lab/netlab"
	vnl "github.com/vishvananda/netlink"
)

func TestLabTrustFollowsGatewayAddresses(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	h := nsFd(t, lab.GW.NS)
	var capt *Capture
	if err := netlab.Do(lab.GW.NS, func() (err error) { capt, err = OpenCapture(netlab.LANBridge); return err }); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: "127.0.0.1:53", Captures: []*Capture{capt}, NetNSFd: h})
	if err != nil {
		t.Fatal(err)
	}
	dev := lab.Devices[0].MAC
	if err := r.SetDeviceNames(dev, []string{"api.vendor.test"}); err != nil {
		t.Fatal(err)
	}
	start(t, r)
	ctx := t.Context()
	trusts := func(a netip.Addr) bool {
		return slices.Contains(r.TrustedSources(), netip.PrefixFrom(a, a.BitLen()))
	}
	wait := func(what string, ok func() bool) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(10 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("%s: not followed; trusted sources %v", what, r.TrustedSources())
			}
		}
	}
	wait("the LAN bridge's addresses at start", func() bool { return trusts(netlab.GatewayLAN4) && trusts(netlab.GatewayLAN6) })
	if trusts(netlab.GatewayWAN4) || trusts(netlab.GatewayWAN6) {
		t.Errorf("the WAN bridge's addresses are trusted: %v", r.TrustedSources())
	}
	claim := func(src netip.Addr) []byte {
		return buildFrame(frameSpec{dst: dev, src: src, dstIP: netip.MustParseAddr("192.0.2.11"), sport: 53, dport: 40000},
			response("api.vendor.test", dns.TypeA, rrA("api.vendor.test", 60, "198.51.100.71")))
	}

	ip := func(args ...string) {
		t.Helper()
		if out, err := lab.Run(ctx, lab.GW.NS, "ip", args...); err != nil {
			t.Fatalf("ip %s: %v: %s", strings.Join(args, " "), err, out)
		}
	}
	added, wanAdded := netip.MustParseAddr("192.0.2.254"), netip.MustParseAddr("203.0.113.254")
	if len(r.HandleFrame(claim(added), time.Now())) != 0 {
		t.Fatalf("an answer from %v granted before the gateway had that address", added)
	}
	// Events arrive in order: once the LAN address is trusted, the WAN
	// one added before it has been seen and left out.
	ip("addr", "add", wanAdded.String()+"/24", "dev", netlab.WANBridge)
	ip("addr", "add", added.String()+"/24", "dev", netlab.LANBridge)
	wait("an address added to the LAN bridge", func() bool { return trusts(added) })
	if trusts(wanAdded) {
		t.Errorf("an address added to the WAN bridge is trusted: %v", r.TrustedSources())
	}
	if len(r.HandleFrame(claim(added), time.Now())) != 1 {
		t.Error("the gateway's new address answered, nothing granted")
	}
	ip("addr", "del", added.String()+"/24", "dev", netlab.LANBridge)
	wait("an address removed from the LAN bridge", func() bool { return !trusts(added) })
	if len(r.HandleFrame(claim(added), time.Now())) != 0 {
		t.Error("an answer from an address the gateway no longer has granted")
	}
	if !trusts(netlab.GatewayLAN4) {
		t.Errorf("the LAN bridge's own address lost: %v", r.TrustedSources())
	}
}

// A capture from another namespace than Config.NetNSFd would make the
// resolver trust an unrelated interface's addresses: Run refuses it.
func TestLabTrustCaptureInAnotherNamespace(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	var capt *Capture
	if err := netlab.Do(lab.GW.NS, func() (err error) { capt, err = OpenCapture(netlab.LANBridge); return err }); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: "127.0.0.1:53", Captures: []*Capture{capt}, NetNSFd: nsFd(t, lab.Devices[0].NS)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 10*time.Second)
	defer cancel()
	err = r.Run(ctx)
	if err == nil || !strings.Contains(err.Error(), "not in the resolver's network namespace") {
		t.Fatalf("Run = %v; want the capture refused", err)
	}
}

// When the address events stop (the subscription's socket failed, as when
// its buffer overruns), the addresses are listed again: a change made
// meanwhile is not missed.
func TestLabTrustRecoversLostAddressEvents(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	h := nsFd(t, lab.GW.NS)
	var idx int
	if err := netlab.Do(lab.GW.NS, func() error {
		ifi, err := net.InterfaceByName(netlab.LANBridge)
		if err == nil {
			idx = ifi.Index
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: "127.0.0.1:53", NetNSFd: h})
	if err != nil {
		t.Fatal(err)
	}
	w, err := r.watchAddrs(map[int]string{idx: netlab.LANBridge})
	if err != nil {
		t.Fatal(err)
	}
	if !r.trust.trusted(netlab.GatewayLAN4) {
		t.Fatalf("the LAN bridge's address is not trusted: %v", r.TrustedSources())
	}
	// The subscription ends: its channel is closed. (The real one is
	// closed by follow and drained here.)
	lost := w.ch
	ended := make(chan vnl.AddrUpdate)
	close(ended)
	w.ch = ended
	drained := make(chan struct{})
	go func() { drain(lost); close(drained) }()
	added := netip.MustParseAddr("192.0.2.254")
	if out, err := lab.Run(t.Context(), lab.GW.NS, "ip", "addr", "add", added.String()+"/24", "dev", netlab.LANBridge); err != nil {
		t.Fatalf("ip addr add: %v: %s", err, out)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { w.follow(ctx); close(done) }()
	defer func() { cancel(); <-done; <-drained }()
	for deadline := time.Now().Add(10 * time.Second); !r.trust.trusted(added); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("an address added while the events were lost is not trusted: %v", r.TrustedSources())
		}
	}
}

// nsFd opens a handle of the namespace ns for the test's duration.
func nsFd(t testing.TB, ns string) int {
	t.Helper()
	h, err := netlab.NSHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	return int(h)
}
