package enforcer

import (
	"strings"
	"testing"

	"github.com/openmud/mud/policy"
)

// lightBulb is RFC 8520 §9's example as policy.Compile renders it, with the
// App. A defaults appended.
func lightBulb() policy.Policy {
	name := policy.Peer{Kind: policy.DNSName, Value: "test.example.com"}
	dns := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:dns"}
	ntp := policy.Peer{Kind: policy.Controller, Value: "urn:ietf:params:mud:ntp"}
	return policy.Policy{ID: "lightbulb2000", MUDURL: "https://lighting.example.com/lightbulb2000",
		FromDevice: []policy.Rule{
			{Name: "mud-76100-v6fr/cl0-frdev", Family: policy.IPv6, Peer: name, Protocol: policy.ProtoTCP, DstPort: u16(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, DstPort: u16(53), Verdict: policy.Accept, Default: true},
			{Name: "default/ntp", Peer: ntp, Protocol: policy.ProtoUDP, DstPort: u16(123), Verdict: policy.Accept, Default: true},
		},
		ToDevice: []policy.Rule{
			{Name: "mud-76100-v6to/cl0-todev", Family: policy.IPv6, Peer: name, Protocol: policy.ProtoTCP, SrcPort: u16(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "default/dns", Peer: dns, Protocol: policy.ProtoUDP, SrcPort: u16(53), Verdict: policy.Accept, Default: true},
			{Name: "default/ntp", Peer: ntp, Protocol: policy.ProtoUDP, SrcPort: u16(123), Verdict: policy.Accept, Default: true},
		},
	}
}

func TestRenderLightBulb(t *testing.T) {
	out, err := Render(lightBulb(), Device{}, RenderOptions{LogGroup: 7})
	if err != nil {
		t.Fatal(err)
	}
	t.Log("\n" + out)
	for _, want := range []string{
		"table inet mud {", "table bridge mud {",
		"type filter hook forward priority -5; policy accept;",
		"type filter hook forward priority -205; policy accept;",
		// fast path first (ND before invalid: conntrack calls NS/NA invalid)
		"policy accept;\n\t\tct state established,related accept\n\t\tmeta l4proto ipv6-icmp icmpv6 type 133-137 accept\n\t\tct state invalid counter drop",
		// RFC 8520 §9: new TCP from the device to 443 of the name's AAAA
		"meta nfproto ipv6 meta l4proto tcp tcp dport 443 0x00000001 . ip6 daddr @peer6 /* dns:test.example.com */ counter return",
		// spec §4 item 29: replies only (conntrack in inet) …
		"tcp sport 443 0x00000001 . ip6 saddr @peer6 /* dns:test.example.com */ ct state established,related counter return",
		// … and a SYN check where bridged traffic is not tracked
		"tcp sport 443 0x00000001 . ip6 saddr @peer6 /* dns:test.example.com */ tcp flags & (syn | ack) != syn counter return",
		// spec §4 item 27: App. A defaults after the file's rules, then deny
		`/* controller:urn:ietf:params:mud:ntp */ counter return comment "default/ntp"` + "\n\t\tlimit rate 10/second burst 5 packets log prefix \"mud pol lightbulb2000 out: \" group 7\n\t\tcounter drop comment \"default-deny\"",
		"meta iiftype ether ether saddr vmap @from_dev",
		"02:00:5e:00:53:01 : jump pol_lightbulb2000_out",
		"192.0.2.10 : jump pol_lightbulb2000_in",
		"02:00:5e:00:53:01 . 2001:db8:1::10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q", want)
		}
	}
	// The IPv6-only ACE must not produce IPv4 rules.
	if strings.Contains(out, "ip daddr @peer4 /* dns:test.example.com") {
		t.Error("IPv6 ACE rendered for IPv4")
	}
}

// spec §4 item 28: order is kept, so an explicit drop before the App. A
// defaults overrides them (spec §4 item 27); spec §4 item 24: drop is final.
func TestRenderOrderAndDrop(t *testing.T) {
	p := lightBulb()
	p.FromDevice = append([]policy.Rule{{Name: "acl/no-dns", Protocol: policy.ProtoUDP, DstPort: u16(53), Verdict: policy.Drop}}, p.FromDevice...)
	out, err := Render(p, Device{}, RenderOptions{NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	out = out[strings.Index(out, "chain pol_lightbulb2000_out"):]
	i := strings.Index(out, `drop comment "acl/no-dns"`)
	j := strings.Index(out, `comment "default/dns"`)
	if i < 0 || j < 0 || i > j {
		t.Fatalf("explicit drop not before the defaults (%d, %d):\n%s", i, j, out)
	}
	if strings.Contains(out, "log prefix") {
		t.Error("NoLog rendered a log rule")
	}
}

func TestRenderRejectsPortsWithoutProtocol(t *testing.T) {
	p := policy.Policy{ID: "x", FromDevice: []policy.Rule{{Name: "a/b", DstPort: u16(80), Verdict: policy.Accept}}}
	if _, err := Render(p, Device{}, RenderOptions{}); err == nil {
		t.Fatal("want an error for ports without tcp/udp")
	}
}

func TestNormalizePeerMergesContainedPrefixes(t *testing.T) {
	got, err := normalizePeer([]Element{
		{Prefix: mustPrefix("10.1.0.0/16")}, {Prefix: mustPrefix("10.0.0.0/8")}, {Prefix: mustPrefix("2001:db8::1/128")},
	}, timeNow())
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 2 {
		t.Fatalf("got %v, want 10.0.0.0/8 and 2001:db8::1/128", got)
	}
}
