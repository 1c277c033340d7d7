package enforcer

import (
	"context"
	"fmt"
	"net/netip"
	"regexp"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

var markPair = regexp.MustCompile(`0x[0-9a-f]{8} : 0x[0-9a-f]{8}`)

// appAPolicy is an allow-only policy with TCP 8080 to its cloud and, with
// defaults, the RFC 8520 App. A rules as policy.Compile appends them (DNS
// and NTP to the controllers, per IP version, both directions).
func appAPolicy(id string, defaults bool) policy.Policy {
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	p := policy.Policy{ID: id, MUDURL: "https://appa.example/" + id,
		FromDevice: []policy.Rule{{Name: "fr/cloud", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(8080), Verdict: policy.Accept}}}
	if !defaults {
		return p
	}
	for _, svc := range []struct {
		name string
		port uint16
	}{{"dns", 53}, {"ntp", 123}} {
		peer := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:" + svc.name}
		for _, fam := range []policy.Family{policy.IPv4, policy.IPv6} {
			r := policy.Rule{Name: fmt.Sprintf("default/%s-%s", svc.name, fam), Family: fam, Peer: peer,
				Protocol: policy.ProtoUDP, Verdict: policy.Accept, Default: true}
			out, in := r, r
			out.DstPort, in.SrcPort = u16(svc.port), u16(svc.port)
			p.FromDevice = append(p.FromDevice, out)
			p.ToDevice = append(p.ToDevice, in)
		}
	}
	return p
}

// The App. A defaults are elements of one id that every policy with the
// same defaults shares (app_a leads a policy's id to it): a device
// reaches the controllers, routed and bridged, exactly when its own
// policy has the defaults, also after its policy gains or loses them.
func TestAppADefaultsAreShared(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 4, Servers: 1, StaticDevices: true})
	e := labEnforcer(t, lab)
	ctx := context.Background()
	// dev1 and dev2 have policies with the defaults, dev3 one without;
	// the DNS controller is the server (routed) and dev4 (bridged, no
	// MUD device), the NTP controller the server.
	dev1, dev2, dev3, dev4, srv := lab.Devices[0], lab.Devices[1], lab.Devices[2], lab.Devices[3], lab.Servers[0]
	for _, h := range []*netlab.Host{srv, dev4} {
		for _, port := range []string{"[::]:53", "[::]:123", "[::]:5353"} {
			echo, err := netlab.ServeEcho(h.NS, port)
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(echo.Close)
		}
	}
	d := Desired{
		Policies: []policy.Policy{appAPolicy("cam", true), appAPolicy("bulb", true), appAPolicy("plain", false)},
		Devices:  []Device{hostDevice(dev1, "cam"), hostDevice(dev2, "bulb"), hostDevice(dev3, "plain")},
		Peers: map[string][]Element{
			"dns:cloud.example":                  hostElems(srv),
			"controller:urn:ietf:params:mud:dns": append(hostElems(srv), hostElems(dev4)...),
			"controller:urn:ietf:params:mud:ntp": hostElems(srv),
		},
	}
	if err := e.Apply(ctx, d); err != nil {
		t.Fatal(err)
	}
	waitFlowsEnded(t, e)
	// One shared id: its elements once per table, whatever the number
	// of policies using it.
	if out := nftList(t, lab.GW.NS, "list", "map", "inet", "mud", "app_a"); len(markPair.FindAllString(out, -1)) != 2 {
		t.Errorf("app_a should map the two policies with defaults:\n%s", out)
	}
	reaches := func(h *netlab.Host, what string, want bool) {
		t.Helper()
		for _, c := range []struct {
			to   netip.Addr
			port int
			name string
		}{
			{srv.IPv4, 53, "DNS to the server (IPv4)"}, {srv.IPv6, 53, "DNS to the server (IPv6)"},
			{srv.IPv4, 123, "NTP to the server"}, {dev4.IPv4, 53, "DNS to dev4 (bridged)"}, {dev4.IPv6, 53, "DNS to dev4 (bridged, IPv6)"},
		} {
			if want {
				netlab.MustPass(t, what+": "+c.name, netlab.UDPEcho(h.NS, ap(c.to, c.port), pass))
			} else {
				netlab.MustDrop(t, what+": "+c.name, netlab.UDPEcho(h.NS, ap(c.to, c.port), shut))
			}
		}
		// Only the defaults' protocol and ports, only to the controllers.
		netlab.MustDrop(t, what+": UDP 5353 to the DNS controller", netlab.UDPEcho(h.NS, ap(srv.IPv4, 5353), shut))
		netlab.MustDrop(t, what+": TCP 53 to the DNS controller", netlab.TCPEcho(h.NS, ap(srv.IPv4, 53), shut))
		netlab.MustDrop(t, what+": NTP to dev4 (not the NTP controller)", netlab.UDPEcho(h.NS, ap(dev4.IPv4, 123), shut))
	}
	set := func(pols ...policy.Policy) {
		t.Helper()
		if err := e.Update(ctx, Update{SetPolicies: pols}); err != nil {
			t.Fatal(err)
		}
		waitFlowsEnded(t, e)
	}
	reaches(dev1, "cam", true)
	reaches(dev2, "bulb", true)
	reaches(dev3, "plain", false)

	// The policies change: cam loses its defaults, plain gains them.
	set(appAPolicy("cam", false), appAPolicy("plain", true))
	reaches(dev1, "cam without defaults", false)
	reaches(dev2, "bulb, unchanged", true)
	reaches(dev3, "plain with defaults", true)

	// The last policy with the defaults gone, their elements go too.
	set(appAPolicy("bulb", false), appAPolicy("plain", false))
	reaches(dev2, "bulb without defaults", false)
	if out := nftList(t, lab.GW.NS, "list", "set", "inet", "mud", "acl_out"); strings.Contains(out, "udp . 53") {
		t.Errorf("acl_out still has default elements:\n%s", out)
	}
}
