package resolver

// Snooping feeding the enforcer (RFC 9726 §3: the addresses come from the
// answers of the resolver the device uses): a device resolves a name of its
// policy through the gateway's dnsmasq, the snooped answer becomes set
// elements, and its connection to the fresh address is allowed; a name
// outside its policy stays blocked even though the device resolved it.

import (
	"context"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

func TestLabSnoopEnforced(t *testing.T) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "dnsmasq")
	lab := netlab.New(t, netlab.Config{Devices: 1, Servers: 2, StaticDevices: true})
	dev, cloud, other := lab.Devices[0], lab.Servers[0], lab.Servers[1]
	for _, s := range []*netlab.Host{cloud, other} {
		echo, err := netlab.ServeEcho(s.NS, "[::]:8080")
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(echo.Close)
	}

	// Upstream DNS on the cloud server.
	srv := upstreamDNS(t, cloud)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch q.Name {
		case "api.vendor.test.":
			return answer(q, rrCNAME("api.vendor.test", 300, "edge7.cdn.test"),
				rrA("edge7.cdn.test", 42, cloud.IPv4.String()), rrAAAA("edge7.cdn.test", 42, cloud.IPv6.String()))
		case "other.vendor.test.":
			return answer(q, rrA(q.Name, 60, other.IPv4.String()), rrAAAA(q.Name, 60, other.IPv6.String()))
		}
		return rcode(dns.RcodeNameError)
	})
	lab.StartDNSForwarder(t, []string{cloud.IPv4.String()})

	// The enforcer in the gateway: the device may use the gateway's DNS
	// and open TCP 8080 to api.vendor.test, nothing else.
	h, err := netlab.NSHandle(lab.GW.NS)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	e, err := enforcer.New(enforcer.Config{NetNSFd: int(h), NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	api := policy.Peer{Kind: policy.DNSName, Value: "api.vendor.test"}
	dnsCtl := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"}
	port := func(p uint16) *policy.PortRange { return &policy.PortRange{First: p, Last: p} }
	pol := policy.Policy{ID: "cam", MUDURL: "https://vendor.test/cam",
		FromDevice: []policy.Rule{
			{Name: "fr/api", Peer: api, Protocol: policy.ProtoTCP, DstPort: port(8080), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "default/dns-udp", Peer: dnsCtl, Protocol: policy.ProtoUDP, DstPort: port(53), Verdict: policy.Accept, Default: true},
			{Name: "default/dns-tcp", Peer: dnsCtl, Protocol: policy.ProtoTCP, DstPort: port(53), Verdict: policy.Accept, Default: true},
		},
		ToDevice: []policy.Rule{
			{Name: "to/api", Peer: api, Protocol: policy.ProtoTCP, SrcPort: port(8080), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
		},
	}
	ctx := context.Background()
	gwElems := []enforcer.Element{{Prefix: netip.PrefixFrom(netlab.GatewayLAN4, 32)}, {Prefix: netip.PrefixFrom(netlab.GatewayLAN6, 128)}}
	if err := e.Apply(ctx, enforcer.Desired{
		Policies: []policy.Policy{pol},
		Devices:  []enforcer.Device{{MAC: dev.MAC, IPv4s: []netip.Addr{dev.IPv4}, IPv6s: []netip.Addr{dev.IPv6}, PolicyID: "cam"}},
		Peers:    map[string][]enforcer.Element{dnsCtl.Key(): gwElems},
	}); err != nil {
		t.Fatalf("enforcer Apply: %v", err)
	}
	cloudAP := netip.AddrPortFrom(cloud.IPv4, 8080)
	if err := netlab.TCPEcho(dev.NS, cloudAP, 400*time.Millisecond); err == nil {
		t.Fatal("device reaches the cloud before resolving its name: the policy is not enforced")
	}

	// Resolver: snoop br-lan; a consumer applies updates to the enforcer.
	var capt *Capture
	if err := netlab.Do(lab.GW.NS, func() (err error) { capt, err = OpenCapture(netlab.LANBridge); return err }); err != nil {
		t.Fatal(err)
	}
	r, err := New(Config{Server: "192.0.2.1:53", Captures: []*Capture{capt}, NetNSFd: int(h), MinTTL: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if err := r.SetDeviceNames(dev.MAC, []string{api.Value}); err != nil {
		t.Fatal(err)
	}
	start(t, r)
	var (
		mu      sync.Mutex
		applied = map[string]time.Time{}
		lat     time.Duration
	)
	appliedCh := make(chan string, 16)
	consumerDone, stop := make(chan struct{}), make(chan struct{})
	sets := map[string]map[netip.Addr]time.Time{} // owned by the consumer
	go func() {
		defer close(consumerDone)
		for {
			var u Update
			select {
			case u = <-r.Updates():
			case <-stop:
				return
			}
			if u.Name == "" { // Run returned
				return
			}
			// SetPeer replaces a peer's elements, while updates add
			// addresses: merge, as the manager must.
			if sets[u.Key()] == nil {
				sets[u.Key()] = map[netip.Addr]time.Time{}
			}
			for _, a := range u.Addrs {
				if u.Expires.After(sets[u.Key()][a]) {
					sets[u.Key()][a] = u.Expires
				}
			}
			var elems []enforcer.Element
			for a, exp := range sets[u.Key()] {
				if d := time.Until(exp); d > 0 {
					elems = append(elems, enforcer.Element{Prefix: netip.PrefixFrom(a, a.BitLen()), Timeout: d})
				}
			}
			if err := e.SetPeer(ctx, u.Key(), elems); err != nil {
				t.Errorf("SetPeer %s: %v", u.Key(), err)
				continue
			}
			now := time.Now()
			mu.Lock()
			applied[u.Key()], lat = now, now.Sub(u.Captured)
			mu.Unlock()
			appliedCh <- u.Key()
		}
	}()
	// Cleanups run last-registered first: the consumer stops before Run.
	t.Cleanup(func() { close(stop); <-consumerDone })

	resolve := func(name string, qtype uint16) time.Time {
		t.Helper()
		err := netlab.Do(dev.NS, func() error {
			m := new(dns.Msg)
			m.SetQuestion(name, qtype)
			_, _, err := (&dns.Client{Timeout: 3 * time.Second}).Exchange(m, "192.0.2.1:53")
			return err
		})
		if err != nil {
			t.Fatalf("device resolving %s: %v", name, err)
		}
		return time.Now()
	}

	answered := resolve("api.vendor.test.", dns.TypeA)
	// The device connects at once, as a device would. A first SYN that
	// beat the update would be dropped and retransmitted after 1s.
	connStart := time.Now()
	if err := netlab.TCPEcho(dev.NS, cloudAP, 3*time.Second); err != nil {
		t.Errorf("device → freshly resolved api.vendor.test %v: %v; want allowed", cloudAP, err)
	}
	t.Logf("first connection after the answer took %v (>1s: its first SYN was dropped)", time.Since(connStart))
	select {
	case k := <-appliedCh:
		if k != "dns:api.vendor.test" {
			t.Errorf("applied %s", k)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("snooped update never applied")
	}
	mu.Lock()
	t.Logf("capture → elements in nftables: %v; applied %v after the device had its answer (negative: before)",
		lat, applied["dns:api.vendor.test"].Sub(answered))
	mu.Unlock()
	// AAAA: once applied (the race is measured above), IPv6 is allowed too.
	resolve("api.vendor.test.", dns.TypeAAAA)
	select {
	case <-appliedCh:
	case <-time.After(2 * time.Second):
		t.Fatal("snooped AAAA update never applied")
	}
	if err := netlab.TCPEcho(dev.NS, netip.AddrPortFrom(cloud.IPv6, 8080), 3*time.Second); err != nil {
		t.Errorf("device → api.vendor.test over IPv6 after its AAAA answer: %v; want allowed", err)
	}
	if err := netlab.TCPEcho(dev.NS, cloudAP, 2*time.Second); err != nil {
		t.Errorf("IPv4 address lost after the AAAA answer: %v", err)
	}

	// A name outside the policy: resolved, never allowed.
	resolve("other.vendor.test.", dns.TypeA)
	if err := netlab.TCPEcho(dev.NS, netip.AddrPortFrom(other.IPv4, 8080), 400*time.Millisecond); err == nil {
		t.Error("device reaches other.vendor.test, a name outside its policy")
	}
	select {
	case k := <-appliedCh:
		t.Errorf("elements applied for %s", k)
	default:
	}
}
