package policy

import (
	"encoding/json"
	"net/netip"
	"os"
	"reflect"
	"strings"
	"testing"

	"github.com/openmud/mud/mudfile"
)

// parse reads a MUD file from JSON text and requires it valid.
func parse(t *testing.T, src string) *mudfile.File {
	t.Helper()
	res := mudfile.Parse([]byte(src))
	if !res.Valid() {
		t.Fatalf("test file invalid: %v", res.Errors())
	}
	return res.File
}

// file builds a MUD file whose from-device ACL "fr" and to-device ACL "to"
// hold the given ACEs (JSON arrays).
func file(fromACEs, toACEs string) string {
	return `{"ietf-mud:mud":{"mud-version":1,"mud-url":"https://things.example.com/bulb","last-update":"2020-01-01T00:00:00Z","is-supported":true,
"from-device-policy":{"access-lists":{"access-list":[{"name":"fr"}]}},
"to-device-policy":{"access-lists":{"access-list":[{"name":"to"}]}}},
"ietf-access-control-list:acls":{"acl":[
{"name":"fr","type":"ipv4-acl-type","aces":{"ace":` + fromACEs + `}},
{"name":"to","type":"ipv4-acl-type","aces":{"ace":` + toACEs + `}}]}}`
}

const noACEs = `[]`

func u16(v uint16) *PortRange { return &PortRange{First: v, Last: v} }

func u8(v uint8) *uint8 { return &v }

func TestCompileRFCExample(t *testing.T) {
	data, err := os.ReadFile("../mudfile/testdata/base.json")
	if err != nil {
		t.Fatal(err)
	}
	res := mudfile.Parse(data)
	p, err := Compile(res.File, Context{})
	if err != nil {
		t.Fatal(err)
	}
	want := Rule{Name: "mud-76100-v6fr/cl0-frdev", Family: IPv6, Peer: Peer{Kind: DNSName, Value: "test.example.com"},
		Protocol: ProtoTCP, DstPort: u16(443), Initiated: InitiatedFromDevice, Verdict: Accept}
	if !reflect.DeepEqual(p.FromDevice[0], want) {
		t.Errorf("from-device rule:\n got %+v\nwant %+v", p.FromDevice[0], want)
	}
	// In the to-device ACL the name is the source (RFC 8520 §8).
	in := p.ToDevice[0]
	if in.Peer != (Peer{Kind: DNSName, Value: "test.example.com"}) || !reflect.DeepEqual(in.SrcPort, u16(443)) || in.Initiated != InitiatedFromDevice {
		t.Errorf("to-device rule: %+v", in)
	}
	// RFC 8520 App. A defaults appended after the file's rules (§5).
	for _, rules := range [][]Rule{p.FromDevice, p.ToDevice} {
		if len(rules) != 5 || rules[0].Default {
			t.Fatalf("want 1 file rule then 4 defaults, got %+v", rules)
		}
		for _, r := range rules[1:] {
			if !r.Default || r.Peer.Kind != Controller || r.Protocol != ProtoUDP || r.Verdict != Accept {
				t.Errorf("bad default rule %+v", r)
			}
		}
	}
	if got := Describe(FromDevice, p.FromDevice[0]); !strings.Contains(got, "may open TCP connections to port 443 of test.example.com") {
		t.Errorf("Describe: %q", got)
	}
	if len(p.NeedsApproval) != 0 || len(p.Notes) != 0 || len(p.ID) != 12 {
		t.Errorf("unexpected approval/notes/id: %+v", p)
	}
}

func TestDefaults(t *testing.T) {
	p, err := Compile(parse(t, file(noACEs, noACEs)), Context{})
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, d := range []Direction{FromDevice, ToDevice} {
		for _, r := range p.Rules(d) {
			port := r.DstPort
			if d == ToDevice {
				port = r.SrcPort
			}
			if port == nil || r.SrcPort != nil && r.DstPort != nil {
				t.Fatalf("%s %s: wrong ports %+v", d, r.Name, r)
			}
			got = append(got, d.String()+" "+r.Name+" "+r.Family.String()+" "+r.Peer.Value+" "+portPhrase(port))
		}
	}
	want := []string{
		"from-device default/dns-ipv4 ipv4 urn:ietf:params:mud:dns port 53",
		"from-device default/dns-ipv6 ipv6 urn:ietf:params:mud:dns port 53",
		"from-device default/ntp-ipv4 ipv4 urn:ietf:params:mud:ntp port 123",
		"from-device default/ntp-ipv6 ipv6 urn:ietf:params:mud:ntp port 123",
		"to-device default/dns-ipv4 ipv4 urn:ietf:params:mud:dns port 53",
		"to-device default/dns-ipv6 ipv6 urn:ietf:params:mud:dns port 53",
		"to-device default/ntp-ipv4 ipv4 urn:ietf:params:mud:ntp port 123",
		"to-device default/ntp-ipv6 ipv6 urn:ietf:params:mud:ntp port 123",
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("defaults:\n%s", strings.Join(got, "\n"))
	}
}

// TestACEs compiles one from-device ACE at a time.
func TestACEs(t *testing.T) {
	cases := []struct {
		name string
		ace  string
		want []Rule // nil: not installed
		note bool
	}{
		{"manufacturer", `{"name":"a","matches":{"ietf-mud:mud":{"manufacturer":"Other.Example.com"}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: Manufacturer, Value: "other.example.com"}, Verdict: Accept}}, false},
		{"same-manufacturer", `{"name":"a","matches":{"ietf-mud:mud":{"same-manufacturer":[null]}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: Manufacturer, Value: "things.example.com"}, Verdict: Accept}}, false},
		{"model", `{"name":"a","matches":{"ietf-mud:mud":{"model":"https://x.example/m"}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: Model, Value: "https://x.example/m"}, Verdict: Accept}}, false},
		{"controller", `{"name":"a","matches":{"ietf-mud:mud":{"controller":"https://c.example/c"}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: Controller, Value: "https://c.example/c"}, Verdict: Accept}}, false},
		{"my-controller", `{"name":"a","matches":{"ietf-mud:mud":{"my-controller":[null]}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: MyController, Value: "https://things.example.com/bulb"}, Verdict: Accept}}, false},
		{"local-networks udp range", `{"name":"a","matches":{"ietf-mud:mud":{"local-networks":[null]},"ipv4":{"protocol":17},"udp":{"destination-port":{"lower-port":5000,"upper-port":5010}}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: LocalNetworks}, Protocol: ProtoUDP, DstPort: &PortRange{First: 5000, Last: 5010}, Verdict: Accept}}, false},
		{"neq lte gte", `{"name":"a","matches":{"tcp":{"source-port":{"operator":"neq","port":23},"destination-port":{"operator":"gte","port":1024}}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoTCP, SrcPort: &PortRange{First: 23, Last: 23, Negate: true}, DstPort: &PortRange{First: 1024, Last: 65535}, Verdict: Accept}}, false},
		{"icmp", `{"name":"a","matches":{"ipv4":{"protocol":1},"icmp":{"type":8,"code":0}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoICMP, ICMP: &ICMPMatch{Type: 8, Code: u8(0)}, Verdict: Accept}}, false},
		{"reject is drop", `{"name":"a","matches":{"ipv4":{"ietf-acldns:dst-dnsname":"bad.example"}},"actions":{"forwarding":"reject"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: DNSName, Value: "bad.example"}, Verdict: Drop}}, false},
		{"literal", `{"name":"a","matches":{"ipv4":{"destination-ipv4-network":"192.0.2.0/24"}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Peer: Peer{Kind: Prefix, Prefix: netip.MustParsePrefix("192.0.2.0/24")}, Verdict: Accept}}, false},
		// Unrenderable accepts are left out; drops drop more (RFC 8520 §2).
		{"eth accept not installed", `{"name":"a","matches":{"eth":{"ethertype":2048},"ipv4":{"protocol":17}},"actions":{"forwarding":"accept"}}`, nil, true},
		{"eth drop installed broader", `{"name":"a","matches":{"eth":{"ethertype":2048},"ipv4":{"protocol":17}},"actions":{"forwarding":"drop"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoUDP, Verdict: Drop}}, true},
		{"two peers accept not installed", `{"name":"a","matches":{"ietf-mud:mud":{"local-networks":[null]},"ipv4":{"destination-ipv4-network":"224.0.0.22/32"}},"actions":{"forwarding":"accept"}}`, nil, true},
		{"device-side address accept not installed", `{"name":"a","matches":{"ipv4":{"source-ipv4-network":"10.0.0.5/32"}},"actions":{"forwarding":"accept"}}`, nil, true},
		// Header fields (RFC 8519 ietf-packet-fields): enforced exactly, or
		// refused like any unrenderable match.
		{"tcp flags syn", `{"name":"a","matches":{"ipv4":{"protocol":6,"dscp":46,"flags":"fragment"},"tcp":{"flags":"syn","destination-port":{"port":8080},"window-size":1024}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoTCP, DstPort: u16(8080), Verdict: Accept, Fields: []FieldMatch{
				{Field: FieldDSCP, Value: 46}, {Field: FieldIPv4Flags, Value: uint32(mudfile.IPv4DontFragment)},
				{Field: FieldTCPFlags, Value: uint32(mudfile.TCPSyn)}, {Field: FieldTCPWindow, Value: 1024}}}}, false},
		{"tcp options", `{"name":"a","matches":{"tcp":{"options":"AgQFtA=="}},"actions":{"forwarding":"accept"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoTCP, Verdict: Accept, Fields: []FieldMatch{{Field: FieldTCPOptions, Bytes: []byte{2, 4, 5, 0xb4}}}}}, false},
		{"ttl accept not installed", `{"name":"a","matches":{"ipv4":{"protocol":6,"ttl":64},"tcp":{"flags":"syn"}},"actions":{"forwarding":"accept"}}`, nil, true},
		{"ttl drop installed broader", `{"name":"a","matches":{"ipv4":{"protocol":6,"ttl":64},"tcp":{"flags":"syn"}},"actions":{"forwarding":"drop"}}`,
			[]Rule{{Name: "fr/a", Family: IPv4, Protocol: ProtoTCP, Verdict: Drop, Fields: []FieldMatch{{Field: FieldTCPFlags, Value: uint32(mudfile.TCPSyn)}}}}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := Compile(parse(t, file("["+tc.ace+"]", noACEs)), Context{})
			if err != nil {
				t.Fatal(err)
			}
			var got []Rule
			for _, r := range p.FromDevice {
				if !r.Default {
					got = append(got, r)
				}
			}
			if !reflect.DeepEqual(got, tc.want) {
				gj, _ := json.Marshal(got)
				wj, _ := json.Marshal(tc.want)
				t.Errorf("rules:\n got %s\nwant %s", gj, wj)
			}
			if (len(p.Notes) > 0) != tc.note {
				t.Errorf("notes = %v, want notes: %v", p.Notes, tc.note)
			}
		})
	}
}

// TestOrderAndExplicitDrop: file order is kept, and an explicit drop comes
// before the defaults, so it overrides them (RFC 8520 §5, App. A; RFC 8519
// ordered-by user).
func TestOrderAndExplicitDrop(t *testing.T) {
	aces := `[{"name":"nodns","matches":{"ipv4":{"protocol":17},"udp":{"destination-port":{"port":53}}},"actions":{"forwarding":"drop"}},
{"name":"web","matches":{"ipv4":{"ietf-acldns:dst-dnsname":"a.example"},"tcp":{"destination-port":{"port":443}}},"actions":{"forwarding":"accept"}}]`
	p, err := Compile(parse(t, file(aces, noACEs)), Context{})
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range p.FromDevice {
		names = append(names, r.Name)
	}
	want := "fr/nodns fr/web default/dns-ipv4 default/dns-ipv6 default/ntp-ipv4 default/ntp-ipv6"
	if strings.Join(names, " ") != want {
		t.Errorf("order: %v", names)
	}
}

func TestNeedsApproval(t *testing.T) {
	aces := `[{"name":"a","matches":{"ipv4":{"destination-ipv4-network":"198.51.100.7/32"}},"actions":{"forwarding":"accept"}}]`
	p, err := Compile(parse(t, file(aces, noACEs)), Context{})
	if err != nil {
		t.Fatal(err)
	}
	// RFC 8520 §2: a file with IP literals is not implemented automatically.
	if len(p.NeedsApproval) != 1 || !strings.Contains(p.NeedsApproval[0], "198.51.100.7/32") {
		t.Errorf("NeedsApproval = %v", p.NeedsApproval)
	}
}

func TestIDStable(t *testing.T) {
	src := file(`[{"name":"a","matches":{"ietf-mud:mud":{"local-networks":[null]}},"actions":{"forwarding":"accept"}}]`, noACEs)
	p1, _ := Compile(parse(t, src), Context{})
	p2, _ := Compile(parse(t, src), Context{})
	p3, _ := Compile(parse(t, src), Context{MUDURL: "https://things.example.com/other"})
	p4, _ := Compile(parse(t, strings.Replace(src, "accept", "drop", 1)), Context{})
	if p1.ID != p2.ID || p1.ID == p3.ID || p1.ID == p4.ID {
		t.Errorf("IDs: same %s %s, other URL %s, other content %s", p1.ID, p2.ID, p3.ID, p4.ID)
	}
}

func TestCompileNil(t *testing.T) {
	if _, err := Compile(nil, Context{}); err == nil {
		t.Error("Compile(nil) succeeded")
	}
}

// TestCorpusCompiles: every valid corpus file compiles, and no accept rule
// is produced from an ACE with unsupported matches.
func TestCorpusCompiles(t *testing.T) {
	n := 0
	for _, rel := range []string{
		"mudmaker/cloud-service.json", "mudmaker/my-controller.json", "mudmaker/same-manufacturer.json",
		"mud-visualizer/mudgee_mudfiles/amazonEchoMud.json", "nist-sdnmud/unittest/mud-model-test/mudfile-model-test.json",
		"cisco-mud-manager/luminaire/fs/Luminaire_150.json",
	} {
		data, err := os.ReadFile("../mudfile/testdata/corpus/" + rel)
		if err != nil {
			t.Fatal(err)
		}
		res := mudfile.Parse(data)
		if !res.Valid() {
			t.Fatalf("%s invalid", rel)
		}
		p, err := Compile(res.File, Context{})
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		if Text(p) == "" || Explain(res.File, p) == "" {
			t.Errorf("%s: empty rendering", rel)
		}
		n += len(p.FromDevice)
	}
	if n == 0 {
		t.Error("no rules at all")
	}
}
