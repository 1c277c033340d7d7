package enforcer

import (
	"net/netip"
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
		// offline, the ids are not those a running mudd has
		"# ids are illustrative: a running mudd allocates its own peer, group and dispatch ids\n",
		"type filter hook forward priority -5; policy accept;",
		"type filter hook forward priority -205; policy accept;",
		// the source guard before the fast path (a MUD device must not answer
		// on an address it does not hold), then the fast path (ND before
		// invalid: conntrack calls NS/NA invalid)
		"policy accept;\n\t\tct direction reply meta iiftype ether ether saddr @from_dev jump src_guard\n\t\tct state established,related accept\n\t\tmeta l4proto ipv6-icmp icmpv6 type 133-137 accept\n\t\tct state invalid counter drop",
		// DHCPv4 discovery and neighbour discovery pass the guard
		"meta nfproto ipv4 meta l4proto udp udp sport 68 udp dport 67 return\n\t\tmeta nfproto ipv6 meta l4proto ipv6-icmp icmpv6 type 133-137 return\n",
		// An allow-only policy is elements (RFC 8520 §9: new TCP from the
		// device to 443 of the name's AAAA: IPv6 only, family 0x0a) …
		"#   inet acl_out: 0x00000010 . <dns:test.example.com> . 0x0a . tcp . 443  /* mud-76100-v6fr/cl0-frdev */",
		// RFC 8520 §4.8: replies only: nothing in inet, where the fast
		// path accepts replies before any policy, and a no-bare-SYN
		// element (0x80) where bridged traffic is not tracked
		"#   bridge acl_in: 0x00000010 . <dns:test.example.com> . 0x8a . tcp . 443  /* mud-76100-v6to/cl0-todev */",
		"meta nfproto ipv6 meta secmark . (ip6 daddr map @addr6) . 0x0a . meta l4proto . th dport @acl_out return",
		"meta protocol ip6 meta l4proto tcp tcp flags & (syn | ack) != syn meta secmark . (ip6 saddr map @addr6) . 0x8a . meta l4proto . th sport @acl_in return",
		// RFC 8520 App. A: the default DNS and NTP ACEs are elements of
		// the id every policy with these defaults shares, which app_a
		// gives the policy's id and the acl chains look up after the
		// policy's own; then the deny, counted per policy, to the shared
		// rate-limited log and drop
		"#   inet acl_out: 0x00000011 . <controller:urn:ietf:params:mud:ntp> . 0x00 . udp . 123  /* App. A default, shared: app_a maps 0x00000010 to it */",
		"map app_a {\n\t\ttype mark : mark\n\t\telements = { 0x00000010 : 0x00000011 }",
		"meta nfproto ipv4 (meta secmark map @app_a) . (0 . ip daddr map @net4) . 0x00 . meta l4proto . th dport @acl_out return\n" +
			"\t\tmeta nfproto ipv6 (meta secmark map @app_a) . (ip6 daddr map @addr6) . 0x0a . meta l4proto . th dport @acl_out return",
		"update @denyc_out { meta secmark } goto deny_out\n\t\tcounter goto deny_out comment \"default-deny\"",
		"chain allow_out {\n\t\tmeta secmark vmap @res_out\n\t\tgoto acl_out\n",
		"chain deny_out {\n\t\tlimit rate 10/second burst 5 packets log prefix \"mud deny out: \" group 7\n\t\tdrop\n",
		// two-stage dispatch: device → id (data), id → policy chain (verdict)
		"meta secmark 0 jump dispatch_fwd\n\t\tmeta secmark != 0 jump secmark_fwd\n",
		"meta iiftype ether meta secmark set ether saddr map @from_dev jump src_guard\n\t\tmeta secmark != 0 jump policy_out\n",
		"meta nfproto ipv4 meta secmark set ip daddr map @to_dev4 jump policy_in",
		"chain policy_out {\n\t\tmeta secmark vmap @out_chain\n\t\tgoto allow_out\n",
		"meta secmark set 0\n\t}",
		"map from_dev {\n\t\ttype ether_addr : mark\n\t\telements = { 02:00:5e:00:53:01 : 0x00000010 }",
		// an allow-only policy has no dispatch element
		"# allow-only: dispatch id 0x00000010 is in neither out_chain nor in_chain, so policy_out / policy_in go on to allow_out / allow_in",
		"192.0.2.10 : 0x00000010",
		"02:00:5e:00:53:01 . 2001:db8:1::10",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q", want)
		}
	}
	// The IPv6-only ACE must not produce IPv4 or any-family elements, nor
	// the replies-only ACE one in inet.
	for _, bad := range []string{"<dns:test.example.com> . 0x02", "<dns:test.example.com> . 0x00", "inet acl_in: 0x00000010 . <dns:test.example.com>",
		"0x00000010 . <controller:"} {
		if strings.Contains(out, bad) {
			t.Errorf("rendering has %q", bad)
		}
	}
}

// With addresses, the peer's address maps to its group (its peer id) and
// the policy's element carries that group; an address two peers share
// gets a group of its own, listed for both in peergrp.
func TestRenderElementsWithAddresses(t *testing.T) {
	p := lightBulb()
	p.FromDevice = append(p.FromDevice, policy.Rule{Name: "fr/cdn", Peer: policy.Peer{Kind: policy.DNSName, Value: "cdn.example.com"},
		Protocol: policy.ProtoTCP, DstPort: u16(8443), Verdict: policy.Accept})
	shared := Element{Prefix: netip.MustParsePrefix("2001:db8::2/128")}
	out, err := Render(p, Device{}, RenderOptions{Peers: map[string][]Element{
		"dns:test.example.com":               {{Prefix: netip.MustParsePrefix("2001:db8::1/128")}, shared},
		"dns:cdn.example.com":                {shared},
		"controller:urn:ietf:params:mud:dns": {{Prefix: netip.MustParsePrefix("192.0.2.0/24")}},
	}})
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"2001:db8::1 : 0x00000001 /* dns:test.example.com */",
		"2001:db8::2 : 0x80000000",
		"0x00000001 . 0x80000000", "0x00000004 . 0x80000000", // peergrp: both peers of the shared group
		"0x00000010 . 0x00000001 . 0x0a . tcp . 443",  // the name's own group
		"0x00000010 . 0x80000000 . 0x0a . tcp . 443",  // and the shared one …
		"0x00000010 . 0x80000000 . 0x00 . tcp . 8443", // … which also serves the other name
		"0 . 192.0.2.0/24 : 0x00000002 /* controller:urn:ietf:params:mud:dns */",
		"0x00000011 . 0x00000002 . 0x00 . udp . 53", // the shared App. A defaults' id
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "0x00000010 . 0x00000004 . 0x0a . tcp . 443") {
		t.Error("the other name's own group got the ACE of test.example.com")
	}
}

// RFC 8519: ACE order is kept, so an explicit drop before the RFC 8520
// App. A defaults overrides them; RFC 8520 §2: drop is final.
func TestRenderOrderAndDrop(t *testing.T) {
	p := lightBulb()
	p.FromDevice = append([]policy.Rule{{Name: "acl/no-dns", Protocol: policy.ProtoUDP, DstPort: u16(53), Verdict: policy.Drop}}, p.FromDevice...)
	out, err := Render(p, Device{}, RenderOptions{NoLog: true})
	if err != nil {
		t.Fatal(err)
	}
	// A policy with a drop is an ordered chain of rules; a peer match is
	// the address's own group or a shared one listing the peer.
	for _, want := range []string{
		"meta nfproto ipv6 meta l4proto tcp tcp dport 443 ip6 daddr map @addr6 0x00000001 /* dns:test.example.com */ counter return",
		"meta nfproto ipv6 meta l4proto tcp tcp dport 443 0x00000001 . (ip6 daddr map @addr6) @peergrp /* dns:test.example.com */ counter return",
		"tcp sport 443 ip6 saddr map @addr6 0x00000001 /* dns:test.example.com */ ct state established,related counter return",
		"tcp sport 443 ip6 saddr map @addr6 0x00000001 /* dns:test.example.com */ tcp flags & (syn | ack) != syn counter return",
		"0x00000010 : goto pol_lightbulb2000_out",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("rendering lacks %q", want)
		}
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
