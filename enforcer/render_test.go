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
		// the source guard before the fast path (a MUD device must not answer
		// on an address it does not hold), then the fast path (ND before
		// invalid: conntrack calls NS/NA invalid)
		"policy accept;\n\t\tct direction reply meta iiftype ether ether saddr @from_dev jump src_guard\n\t\tct state established,related accept\n\t\tmeta l4proto ipv6-icmp icmpv6 type 133-137 accept\n\t\tct state invalid counter drop",
		// DHCPv4 discovery and neighbour discovery pass the guard
		"meta nfproto ipv4 meta l4proto udp udp sport 68 udp dport 67 return\n\t\tmeta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-137 return\n",
		// RFC 8520 §9: new TCP from the device to 443 of the name's AAAA
		"meta nfproto ipv6 meta l4proto tcp tcp dport 443 0x00000001 . ip6 daddr @peer6 /* dns:test.example.com */ counter return",
		// spec §4 item 29: replies only (conntrack in inet) …
		"tcp sport 443 0x00000001 . ip6 saddr @peer6 /* dns:test.example.com */ ct state established,related counter return",
		// … and a SYN check where bridged traffic is not tracked
		"tcp sport 443 0x00000001 . ip6 saddr @peer6 /* dns:test.example.com */ tcp flags & (syn | ack) != syn counter return",
		// spec §4 item 27: App. A defaults after the file's rules, then the
		// counted deny, which goes to the shared rate-limited log and drop
		`/* controller:urn:ietf:params:mud:ntp */ counter return comment "default/ntp"` + "\n\t\tcounter goto deny_out comment \"default-deny\"",
		"chain deny_out {\n\t\tlimit rate 10/second burst 5 packets log prefix \"mud deny out: \" group 7\n\t\tdrop\n",
		// two-stage dispatch: device → id (data), id → policy chain (verdict)
		"meta secmark 0 jump dispatch_fwd\n\t\tmeta secmark != 0 jump secmark_fwd\n",
		"meta iiftype ether meta secmark set ether saddr map @from_dev jump src_guard\n\t\tmeta secmark vmap @out_chain\n",
		"meta nfproto ipv4 meta secmark set ip daddr map @to_dev4 meta secmark vmap @in_chain",
		"meta secmark set 0\n\t}",
		"map from_dev {\n\t\ttype ether_addr : mark\n\t\telements = { 02:00:5e:00:53:01 : 0x00000010 }",
		"0x00000010 : jump pol_lightbulb2000_out",
		"0x00000010 : jump pol_lightbulb2000_in",
		"192.0.2.10 : 0x00000010",
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

// Direct dispatch (kernels without secmark): the device maps jump straight
// to the policy chains, which run the source guard themselves.
func TestRenderDirectDispatch(t *testing.T) {
	out, err := Render(lightBulb(), Device{}, RenderOptions{DirectDispatch: true})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"meta iiftype ether ether saddr vmap @from_dev",
		"meta nfproto ipv4 ip daddr vmap @to_dev4",
		"02:00:5e:00:53:01 : jump pol_lightbulb2000_out",
		"192.0.2.10 : jump pol_lightbulb2000_in",
		"chain pol_lightbulb2000_out {\n\t\tjump src_guard\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	for _, bad := range []string{"secmark", "out_chain"} {
		if strings.Contains(out, bad) {
			t.Errorf("direct rendering mentions %q", bad)
		}
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
