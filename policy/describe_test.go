package policy

import (
	"net/netip"
	"testing"
)

func TestDescribe(t *testing.T) {
	cases := []struct {
		d    Direction
		r    Rule
		want string
	}{
		{FromDevice, Rule{Protocol: ProtoTCP, DstPort: u16(443), Initiated: InitiatedFromDevice, Peer: Peer{Kind: DNSName, Value: "test.example.com"}, Verdict: Accept},
			"may open TCP connections to port 443 of test.example.com"},
		{ToDevice, Rule{Protocol: ProtoTCP, SrcPort: u16(443), Initiated: InitiatedFromDevice, Peer: Peer{Kind: DNSName, Value: "test.example.com"}, Verdict: Accept},
			"may receive TCP replies, on connections it opened, from port 443 of test.example.com"},
		{ToDevice, Rule{Protocol: ProtoTCP, DstPort: u16(80), Initiated: InitiatedToDevice, Peer: Peer{Kind: LocalNetworks}, Verdict: Accept},
			"may accept TCP connections from the local networks, on its own port 80"},
		{FromDevice, Rule{Protocol: ProtoUDP, DstPort: u16(53), Peer: Peer{Kind: Controller, Value: ControllerDNS}, Family: IPv4, Verdict: Accept},
			"may send UDP to port 53 of the local DNS servers (IPv4 only)"},
		{FromDevice, Rule{Peer: Peer{Kind: Prefix, Prefix: netip.MustParsePrefix("192.0.2.0/24")}, Verdict: Drop},
			"may not send any traffic to the addresses 192.0.2.0/24"},
		{ToDevice, Rule{Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: 8}, Peer: Peer{Kind: Manufacturer, Value: "a.example"}, Verdict: Accept},
			"may receive ICMP type 8 from devices of manufacturer a.example"},
		{FromDevice, Rule{Protocol: ProtoTCP, DstPort: &PortRange{First: 23, Last: 23, Negate: true}, Verdict: Accept},
			"may send TCP to any port but 23 of any host"},
		{FromDevice, Rule{Protocol: ProtoTCP, DstPort: u16(80), Family: IPv4, Verdict: Accept, Fields: []FieldMatch{
			{Field: FieldTCPFlags, Value: 0x12}, {Field: FieldIPv4Flags, Value: 0x40}, {Field: FieldDSCP, Value: 46}}},
			"may send TCP to port 80 of any host, with TCP flags exactly ack syn, IPv4 flags exactly fragment, DSCP 46 (IPv4 only)"},
	}
	for _, tc := range cases {
		if got := Describe(tc.d, tc.r); got != tc.want {
			t.Errorf("Describe:\n got %q\nwant %q", got, tc.want)
		}
	}
}
