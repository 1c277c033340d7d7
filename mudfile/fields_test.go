package mudfile

import (
	"slices"
	"strings"
	"testing"
)

// asIPv4 turns ACL 0 (to-device) into an IPv4 ACL whose first ACE has an
// ipv4 match.
func (d doc) asIPv4() {
	d.acl(0)["type"] = "ipv4-acl-type"
	m := d.matches(0)
	m["ipv4"] = m["ipv6"]
	delete(m, "ipv6")
}

func (d doc) ip4(i int) map[string]any { return d.matches(i)["ipv4"].(map[string]any) }

// Every leaf of ietf-packet-fields (RFC 8519 §4.1): read into the model,
// and either enforced or refused with a finding that names the field.
func TestHeaderFields(t *testing.T) {
	u8 := func(p *uint8) int {
		if p == nil {
			return -1
		}
		return int(*p)
	}
	cases := []struct {
		name    string
		mutate  func(d doc)
		check   func(m Matches) bool
		refused string // the Unsupported entry; "" when enforced
		code    string // an error finding instead
	}{
		{"ipv6 dscp", func(d doc) { d.ip(0)["dscp"] = 46 }, func(m Matches) bool { return u8(m.IPv6.DSCP) == 46 }, "", ""},
		{"ipv6 ecn", func(d doc) { d.ip(0)["ecn"] = 1 }, func(m Matches) bool { return u8(m.IPv6.ECN) == 1 }, "", ""},
		{"ipv6 flow-label", func(d doc) { d.ip(0)["flow-label"] = 12345 }, func(m Matches) bool { return m.IPv6.FlowLabel != nil && *m.IPv6.FlowLabel == 12345 }, "", ""},
		{"ipv6 flow-label too big", func(d doc) { d.ip(0)["flow-label"] = 1 << 20 }, nil, "", "range"},
		{"ipv6 ttl", func(d doc) { d.ip(0)["ttl"] = 64 }, func(m Matches) bool { return u8(m.IPv6.TTL) == 64 }, "ipv6/ttl", ""},
		{"ipv6 length", func(d doc) { d.ip(0)["length"] = 100 }, func(m Matches) bool { return m.IPv6.Length != nil }, "ipv6/length", ""},
		{"ipv4 dscp", func(d doc) { d.asIPv4(); d.ip4(0)["dscp"] = 10 }, func(m Matches) bool { return u8(m.IPv4.DSCP) == 10 }, "", ""},
		{"ipv4 ihl", func(d doc) { d.asIPv4(); d.ip4(0)["ihl"] = 5 }, func(m Matches) bool { return u8(m.IPv4.IHL) == 5 }, "", ""},
		{"ipv4 ihl in bytes?", func(d doc) { d.asIPv4(); d.ip4(0)["ihl"] = 20 }, func(m Matches) bool { return u8(m.IPv4.IHL) == 20 }, "ipv4/ihl", ""},
		{"ipv4 identification", func(d doc) { d.asIPv4(); d.ip4(0)["identification"] = 4660 }, func(m Matches) bool {
			return m.IPv4.Identification != nil && *m.IPv4.Identification == 4660
		}, "", ""},
		{"ipv4 flags: do not fragment", func(d doc) { d.asIPv4(); d.ip4(0)["flags"] = "fragment" }, func(m Matches) bool {
			return u8(m.IPv4.Flags) == int(IPv4DontFragment)
		}, "", ""},
		{"ipv4 flags: none (fragments)", func(d doc) { d.asIPv4(); d.ip4(0)["flags"] = "" }, func(m Matches) bool { return u8(m.IPv4.Flags) == 0 }, "ipv4/flags", ""},
		{"ipv4 flags: more", func(d doc) { d.asIPv4(); d.ip4(0)["flags"] = "fragment more" }, nil, "ipv4/flags", ""},
		{"ipv4 flags: unknown bit", func(d doc) { d.asIPv4(); d.ip4(0)["flags"] = "df" }, nil, "", "bits"},
		{"ipv4 offset", func(d doc) { d.asIPv4(); d.ip4(0)["offset"] = 100 }, nil, "ipv4/offset", ""},
		{"ipv4 ttl", func(d doc) { d.asIPv4(); d.ip4(0)["ttl"] = 1 }, nil, "ipv4/ttl", ""},
		{"tcp flags", func(d doc) { d.tcp(0)["flags"] = "syn" }, func(m Matches) bool { return u8(m.TCP.Flags) == int(TCPSyn) }, "", ""},
		{"tcp flags: all", func(d doc) { d.tcp(0)["flags"] = "fin syn rst psh ack urg ece cwr" }, func(m Matches) bool { return u8(m.TCP.Flags) == 0xff }, "", ""},
		{"tcp flags: none", func(d doc) { d.tcp(0)["flags"] = "" }, func(m Matches) bool { return u8(m.TCP.Flags) == 0 }, "", ""},
		{"tcp flags: twice", func(d doc) { d.tcp(0)["flags"] = "syn syn" }, nil, "", "bits"},
		{"tcp flags: ns", func(d doc) { d.tcp(0)["flags"] = "ns syn" }, nil, "", "bits"},
		{"tcp sequence-number", func(d doc) { d.tcp(0)["sequence-number"] = 4294967295 }, func(m Matches) bool { return m.TCP.Seq != nil && *m.TCP.Seq == 1<<32-1 }, "", ""},
		{"tcp acknowledgement-number", func(d doc) { d.tcp(0)["acknowledgement-number"] = 7 }, func(m Matches) bool { return m.TCP.Ack != nil }, "", ""},
		{"tcp data-offset", func(d doc) { d.tcp(0)["data-offset"] = 8 }, func(m Matches) bool { return u8(m.TCP.DataOffset) == 8 }, "", ""},
		{"tcp data-offset 4", func(d doc) { d.tcp(0)["data-offset"] = 4 }, nil, "", "range"},
		{"tcp reserved", func(d doc) { d.tcp(0)["reserved"] = 0 }, func(m Matches) bool { return u8(m.TCP.Reserved) == 0 }, "", ""},
		{"tcp reserved 16", func(d doc) { d.tcp(0)["reserved"] = 16 }, nil, "tcp/reserved", ""},
		{"tcp window-size", func(d doc) { d.tcp(0)["window-size"] = 1024 }, func(m Matches) bool { return m.TCP.Window != nil }, "", ""},
		{"tcp urgent-pointer", func(d doc) { d.tcp(0)["urgent-pointer"] = 0 }, func(m Matches) bool { return m.TCP.Urgent != nil }, "", ""},
		{"tcp options", func(d doc) { d.tcp(0)["options"] = "AgQFtA==" }, func(m Matches) bool { return string(m.TCP.Options) == "\x02\x04\x05\xb4" }, "", ""},
		{"tcp options unpadded", func(d doc) { d.tcp(0)["options"] = "AQID" }, nil, "tcp/options", ""},
		{"tcp options not base64", func(d doc) { d.tcp(0)["options"] = "%%" }, nil, "", "binary"},
		{"tcp options 44 bytes", func(d doc) { d.tcp(0)["options"] = strings.Repeat("AAAA", 15) }, nil, "", "range"},
		{"udp length", func(d doc) {
			delete(d.matches(0), "tcp")
			d.ip(0)["protocol"] = 17
			d.matches(0)["udp"] = map[string]any{"length": 100}
		}, nil, "udp/length", ""},
		{"icmp rest-of-header", func(d doc) {
			delete(d.matches(0), "tcp")
			d.ip(0)["protocol"] = 58
			d.matches(0)["icmp"] = map[string]any{"type": 128, "rest-of-header": "AAEAAQ=="}
		}, nil, "icmp/rest-of-header", ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := loadBase(t)
			delete(d.tcp(0), "ietf-mud:direction-initiated")
			tc.mutate(d)
			res := Parse(d.bytes(t))
			if tc.code != "" {
				if res.Valid() || !res.HasCode(tc.code) {
					t.Errorf("want error %q, got %v", tc.code, res.Findings)
				}
				return
			}
			if !res.Valid() {
				t.Fatalf("invalid: %v", res.Findings)
			}
			m := res.File.ACLs[0].ACEs[0].Matches
			if tc.check != nil && !tc.check(m) {
				t.Errorf("misread: %+v %+v %+v", m.IPv4, m.IPv6, m.TCP)
			}
			refused := res.HasCode("not-renderable")
			if got := slices.Contains(m.Unsupported, tc.refused); tc.refused != "" && (!got || !refused) {
				t.Errorf("want %s refused, unsupported %v, findings %v", tc.refused, m.Unsupported, res.Findings)
			}
			if tc.refused == "" && (len(m.Unsupported) > 0 || refused) {
				t.Errorf("refused: %v %v", m.Unsupported, res.Findings)
			}
			if tc.refused != "" {
				field := tc.refused[strings.Index(tc.refused, "/")+1:]
				for _, f := range res.Findings {
					if f.Code == "not-renderable" && (!strings.Contains(f.Message, field) || !strings.HasSuffix(f.Path, "/"+field)) {
						t.Errorf("the finding does not name the field %s: %v", field, f)
					}
				}
			}
		})
	}
}
