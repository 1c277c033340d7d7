package mudfile

import (
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"testing"
)

// doc is a MUD file as generic JSON, for tests that mutate a valid file.
type doc map[string]any

func loadBase(t testing.TB) doc {
	t.Helper()
	b, err := os.ReadFile("testdata/base.json")
	if err != nil {
		t.Fatal(err)
	}
	var d doc
	if err := json.Unmarshal(b, &d); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d doc) mud() map[string]any { return d["ietf-mud:mud"].(map[string]any) }

func (d doc) acl(i int) map[string]any {
	return d["ietf-access-control-list:acls"].(map[string]any)["acl"].([]any)[i].(map[string]any)
}

// ace returns ACE 0 of ACL i: ACL 0 is the to-device ACL, ACL 1 the
// from-device one.
func (d doc) ace(i int) map[string]any {
	return d.acl(i)["aces"].(map[string]any)["ace"].([]any)[0].(map[string]any)
}

func (d doc) matches(i int) map[string]any { return d.ace(i)["matches"].(map[string]any) }

func (d doc) ip(i int) map[string]any { return d.matches(i)["ipv6"].(map[string]any) }

func (d doc) tcp(i int) map[string]any { return d.matches(i)["tcp"].(map[string]any) }

func (d doc) bytes(t testing.TB) []byte {
	t.Helper()
	b, err := json.Marshal(d)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestBaseIsClean(t *testing.T) {
	res := Parse(loadBase(t).bytes(t))
	if !res.Valid() || len(res.Findings) != 0 {
		t.Fatalf("RFC 8520 §9 example: want no findings, got %v", res.Findings)
	}
	f := res.File
	if f.MUD.URL != "https://lighting.example.com/lightbulb2000" || f.MUD.CacheValidity != 48 || !f.MUD.IsSupported {
		t.Errorf("mud container misread: %+v", f.MUD)
	}
	ace := f.ACL("mud-76100-v6fr").ACEs[0]
	if ace.Matches.IPv6.DstDNSName != "test.example.com" || ace.Matches.TCP.DstPort.Port != 443 || ace.Matches.TCP.DirectionInitiated != FromDevice || ace.Action != Accept {
		t.Errorf("ACE misread: %+v", ace)
	}
}

// ietf-acldns names come out in the canonical form the resolver and the
// enforcer's set keys use; service labels and A-labels are names too.
func TestDNSNamesNormalised(t *testing.T) {
	for in, want := range map[string]string{
		"Test.Example.COM.":     "test.example.com",
		"_ntp._udp.example.com": "_ntp._udp.example.com",
		"xn--bcher-kva.example": "xn--bcher-kva.example",
		"192.0.2.7":             "192.0.2.7", // an address, compiled to a prefix by policy
	} {
		d := loadBase(t)
		d.ip(1)["ietf-acldns:dst-dnsname"] = in
		res := Parse(d.bytes(t))
		if res.HasCode("host") {
			t.Errorf("%q refused: %v", in, res.Findings)
			continue
		}
		if got := res.File.ACL("mud-76100-v6fr").ACEs[0].Matches.IPv6.DstDNSName; got != want {
			t.Errorf("dst-dnsname %q read as %q, want %q", in, got, want)
		}
	}
}

// TestRules checks every validation rule on a mutation of the RFC 8520 §9
// example: each case names the finding code it must raise and whether the
// file stays valid.
func TestRules(t *testing.T) {
	const toDev, fromDev = 0, 1
	cases := []struct {
		name   string
		mutate func(d doc)
		code   string // finding that must be raised
		valid  bool
	}{
		// mandatory leaves and ranges (RFC 8520 §3, §7)
		{"missing mud-version", func(d doc) { delete(d.mud(), "mud-version") }, "missing-leaf", false},
		{"mud-version 2", func(d doc) { d.mud()["mud-version"] = 2 }, "mud-version", false},
		{"mud-version string", func(d doc) { d.mud()["mud-version"] = "one" }, "type", false},
		{"missing mud-url", func(d doc) { delete(d.mud(), "mud-url") }, "missing-leaf", false},
		{"empty mud-url", func(d doc) { d.mud()["mud-url"] = "" }, "mud-url", false},
		{"http mud-url", func(d doc) { d.mud()["mud-url"] = "http://a.example/x" }, "mud-url", false},
		{"relative mud-url", func(d doc) { d.mud()["mud-url"] = "/x/y" }, "mud-url", false},
		{"long mud-url", func(d doc) { d.mud()["mud-url"] = "https://a.example/" + strings.Repeat("x", 250) }, "mud-url-long", true},
		{"missing last-update", func(d doc) { delete(d.mud(), "last-update") }, "missing-leaf", false},
		{"bad last-update", func(d doc) { d.mud()["last-update"] = "yesterday" }, "date-and-time", false},
		{"last-update without zone", func(d doc) { d.mud()["last-update"] = "2019-01-28T11:20:51" }, "timestamp-no-zone", true},
		{"missing is-supported", func(d doc) { delete(d.mud(), "is-supported") }, "missing-leaf", false},
		{"is-supported as string", func(d doc) { d.mud()["is-supported"] = "true" }, "bool-as-string", true},
		{"is-supported as number", func(d doc) { d.mud()["is-supported"] = 1 }, "type", false},
		{"cache-validity 0", func(d doc) { d.mud()["cache-validity"] = 0 }, "cache-validity-range", false},
		{"cache-validity 169", func(d doc) { d.mud()["cache-validity"] = 169 }, "cache-validity-range", false},
		{"cache-validity 14400", func(d doc) { d.mud()["cache-validity"] = 14400 }, "cache-validity-range", false},
		{"cache-validity 1.5", func(d doc) { d.mud()["cache-validity"] = 1.5 }, "type", false},
		{"cache-validity as string", func(d doc) { d.mud()["cache-validity"] = "24" }, "number-as-string", true},
		{"systeminfo too long", func(d doc) { d.mud()["systeminfo"] = strings.Repeat("s", 61) }, "systeminfo-long", true},
		{"documentation not a URI", func(d doc) { d.mud()["documentation"] = "see manual" }, "uri", false},
		{"extension name too long", func(d doc) { d.mud()["extensions"] = []any{strings.Repeat("e", 41)} }, "extension-name", false},
		{"no policies", func(d doc) { delete(d.mud(), "from-device-policy"); delete(d.mud(), "to-device-policy") }, "no-policy", true},
		// leafrefs (RFC 8520 §3.3)
		{"policy names a missing ACL", func(d doc) {
			d.mud()["to-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": "nope"}}}}
		}, "acl-missing", false},
		{"ACL unused", func(d doc) { delete(d.mud(), "to-device-policy") }, "acl-unused", true},
		{"ACL in both policies", func(d doc) {
			d.mud()["to-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": "mud-76100-v6to"}, map[string]any{"name": "mud-76100-v6fr"}}}}
		}, "acl-both-directions", false}, // and then dst-dnsname is in a to-device ACL
		{"policy entry listed twice", func(d doc) {
			d.mud()["to-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": "mud-76100-v6to"}, map[string]any{"name": "mud-76100-v6to"}}}}
		}, "duplicate", false},
		{"pre-RFC acl-name in policy", func(d doc) {
			d.mud()["to-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"acl-name": "mud-76100-v6to"}}}}
		}, "pre-rfc-syntax", false},
		// extensibility (RFC 8520 §3.9, §14)
		{"unknown unprefixed node in mud", func(d doc) { d.mud()["colour"] = "blue" }, "unknown-node", true},
		{"undeclared extension", func(d doc) { d.mud()["foo:bar"] = 1 }, "undeclared-extension", true},
		{"declared but unknown extension", func(d doc) {
			d.mud()["extensions"] = []any{"ietf-mud-detext-example"}
			d.mud()["ietf-mud-detext-example:is-detnet-required"] = true
		}, "unknown-extension", true},
		{"unknown root node", func(d doc) { d["foo:bar"] = map[string]any{} }, "undeclared-extension", true},
		{"transparency under mudtx", func(d doc) {
			d.mud()["extensions"] = []any{"transparency"}
			d.mud()["mudtx:transparency"] = map[string]any{"vuln-url": []any{"https://a.example/v"}}
		}, "mudtx-prefix", true},
		{"transparency undeclared", func(d doc) {
			d.mud()["ietf-mud-transparency:transparency"] = map[string]any{"sbom-contact-uri": "mailto:a@a.example"}
		}, "undeclared-extension", true},
		{"tls profile flag not boolean", func(d doc) {
			d.mud()["extensions"] = []any{"ietf-mud-tls"}
			d.mud()["ietf-mud-tls:is-tls-dtls-profile-supported"] = "maybe"
		}, "type", false},
		// containers, names, keys (RFC 8519 §4.1)
		{"pre-RFC root", func(d doc) {
			d["ietf-access-control-list:access-lists"] = d["ietf-access-control-list:acls"]
			delete(d, "ietf-access-control-list:acls")
		}, "pre-rfc-root", true},
		{"both ACL roots", func(d doc) { d["ietf-access-control-list:access-lists"] = d["ietf-access-control-list:acls"] }, "two-acl-roots", false},
		{"missing mud container", func(d doc) { delete(d, "ietf-mud:mud") }, "missing-mud", false},
		{"ACL name too long", func(d doc) { d.acl(0)["name"] = strings.Repeat("n", 65) }, "name-length", false},
		{"ACL name with space", func(d doc) {
			d.acl(1)["name"] = "v6 fr"
			d.mud()["from-device-policy"] = map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": "v6 fr"}}}}
		}, "name-space", true},
		{"duplicate ACL", func(d doc) { d.acl(0)["name"] = "mud-76100-v6fr" }, "duplicate", false},
		{"ACL without name", func(d doc) { delete(d.acl(0), "name") }, "missing-leaf", false},
		{"ACE without name", func(d doc) { delete(d.ace(0), "name") }, "missing-leaf", false},
		{"pre-RFC rule-name", func(d doc) { d.ace(0)["rule-name"] = "x" }, "pre-rfc-syntax", false},
		// ACL types (identityrefs, RFC 7951 §6.8)
		{"prefixed ACL type", func(d doc) { d.acl(0)["type"] = "ietf-access-control-list:ipv6-acl-type" }, "", true},
		{"ACL type ipv6", func(d doc) { d.acl(0)["type"] = "ipv6" }, "acl-type-spelling", true},
		{"ACL type ethernet-acl-type", func(d doc) { d.acl(0)["type"] = "ethernet-acl-type" }, "acl-type-not-mud", true},
		{"ACL type unknown", func(d doc) { d.acl(0)["type"] = "ipx-acl-type" }, "acl-type", false},
		{"ACL type missing", func(d doc) { delete(d.acl(0), "type") }, "acl-type-missing", true},
		{"ACL type contradicts match", func(d doc) { d.acl(0)["type"] = "ipv4-acl-type" }, "acl-type-mismatch", true},
		// actions (RFC 8520 §2)
		{"missing actions", func(d doc) { delete(d.ace(0), "actions") }, "missing-action", false},
		{"actions without forwarding", func(d doc) { d.ace(0)["actions"] = map[string]any{"logging": "log-none"} }, "missing-action", false},
		{"prefixed accept", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "ietf-access-control-list:accept"} }, "", true},
		{"upper-case ACCEPT", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "ACCEPT"} }, "action-case", true},
		{"deny", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "deny"} }, "action-deny", true},
		{"reject", func(d doc) {
			delete(d.tcp(0), "ietf-mud:direction-initiated")
			d.ace(0)["actions"] = map[string]any{"forwarding": "reject"}
		}, "", true},
		{"unknown action", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "mirror"} }, "action", false},
		{"extra action key", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "accept", "packet-rate": 10} }, "action-extra", true},
		{"actions inside matches", func(d doc) { d.matches(0)["actions"] = map[string]any{"forwarding": "accept"} }, "actions-in-matches", false},
		// matches
		{"misspelt dnsname key", func(d doc) { d.ip(0)["ietf-acldns:s:qrc-dnsname"] = "a.example" }, "unknown-match", false},
		{"unknown match container", func(d doc) { d.matches(0)["vlan"] = map[string]any{} }, "unknown-match", false},
		{"unknown tcp leaf", func(d doc) { d.tcp(0)["port"] = 1 }, "unknown-match", false},
		{"unknown ietf-mud match", func(d doc) { d.matches(0)["ietf-mud:mud"] = map[string]any{"vendor": "x"} }, "unknown-match", false},
		{"empty matches", func(d doc) { delete(d.ace(0), "matches") }, "match-all", true},
		{"ipv4 and ipv6", func(d doc) { d.matches(0)["ipv4"] = map[string]any{"protocol": 6} }, "l3-choice", false},
		{"tcp and udp", func(d doc) { d.matches(0)["udp"] = map[string]any{} }, "l4-choice", false},
		{"protocol contradicts tcp", func(d doc) { d.ip(0)["protocol"] = 17 }, "protocol-mismatch", false},
		{"protocol 256", func(d doc) { d.ip(0)["protocol"] = 256 }, "range", false},
		{"protocol 0", func(d doc) { delete(d.matches(0), "tcp"); d.ip(0)["protocol"] = 0 }, "not-renderable", true},
		{"dscp is enforced", func(d doc) { d.ip(0)["dscp"] = 10 }, "", true},
		{"dscp out of range", func(d doc) { d.ip(0)["dscp"] = 64 }, "range", false},
		{"ihl in ipv6", func(d doc) { d.ip(0)["ihl"] = 5 }, "unknown-match", false},
		{"eth match", func(d doc) { d.matches(0)["eth"] = map[string]any{"ethertype": 34525} }, "not-renderable", true},
		{"hex ethertype", func(d doc) { d.matches(0)["eth"] = map[string]any{"ethertype": "0x86dd"} }, "ethertype-hex", true},
		{"bogus hex ethertype", func(d doc) { d.matches(0)["eth"] = map[string]any{"ethertype": "0x0006"} }, "ethertype-bogus", true},
		{"bad MAC", func(d doc) { d.matches(0)["eth"] = map[string]any{"destination-mac-address": "ff:ff"} }, "mac-address", false},
		{"TLS client profiles", func(d doc) { d.matches(0)["ietf-acl-tls:client-profiles"] = map[string]any{} }, "not-renderable", true},
		// ports
		{"port 70000", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"operator": "eq", "port": 70000} }, "range", false},
		{"unknown operator", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"operator": "lt", "port": 1} }, "operator", false},
		{"operator defaults to eq", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"port": 443} }, "", true},
		{"neq", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"operator": "neq", "port": 443} }, "", true},
		{"range", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"lower-port": 1, "upper-port": 2} }, "", true},
		{"operator range", func(d doc) {
			d.tcp(0)["source-port"] = map[string]any{"operator": "range", "lower-port": 1, "upper-port": 2}
		}, "operator-range", true},
		{"operator eq with range", func(d doc) {
			d.tcp(0)["source-port"] = map[string]any{"operator": "eq", "lower-port": 1, "upper-port": 2}
		}, "port-choice", false},
		{"inverted range", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"lower-port": 9, "upper-port": 2} }, "port-range", false},
		{"half range", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"lower-port": 9} }, "port-range", false},
		{"port and range", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"port": 1, "lower-port": 1, "upper-port": 2} }, "port-choice", false},
		{"no port", func(d doc) { d.tcp(0)["source-port"] = map[string]any{"operator": "eq"} }, "port-missing", false},
		// direction-initiated (RFC 8520 §4.8)
		{"direction-initiated bad value", func(d doc) { d.tcp(0)["ietf-mud:direction-initiated"] = "both" }, "direction-initiated", false},
		{"direction-initiated on udp", func(d doc) {
			delete(d.matches(0), "tcp")
			d.ip(0)["protocol"] = 17
			d.matches(0)["udp"] = map[string]any{"ietf-mud:direction-initiated": "from-device"}
		}, "direction-initiated-udp", false},
		{"direction-initiated on drop", func(d doc) { d.ace(0)["actions"] = map[string]any{"forwarding": "drop"} }, "direction-initiated-drop", true},
		// icmp
		{"icmp", func(d doc) {
			delete(d.matches(0), "tcp")
			d.ip(0)["protocol"] = 58
			d.matches(0)["icmp"] = map[string]any{"type": 128, "code": 0}
		}, "", true},
		{"icmp code without type", func(d doc) {
			delete(d.matches(0), "tcp")
			d.ip(0)["protocol"] = 58
			d.matches(0)["icmp"] = map[string]any{"code": 0}
		}, "icmp-code-without-type", false},
		{"icmp type 300", func(d doc) {
			delete(d.matches(0), "tcp")
			delete(d.ip(0), "protocol")
			d.matches(0)["icmp"] = map[string]any{"type": 300}
		}, "range", false},
		// ietf-acldns (RFC 8520 §8)
		{"src-dnsname in from-device ACL", func(d doc) {
			delete(d.ip(fromDev), "ietf-acldns:dst-dnsname")
			d.ip(fromDev)["ietf-acldns:src-dnsname"] = "a.example"
		}, "src-dnsname-from-device", false},
		{"dst-dnsname in to-device ACL", func(d doc) {
			delete(d.ip(toDev), "ietf-acldns:src-dnsname")
			d.ip(toDev)["ietf-acldns:dst-dnsname"] = "a.example"
		}, "dst-dnsname-to-device", false},
		{"bad dns name", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "a..example" }, "host", false},
		{"dns name is an IP", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "2001:db8::1" }, "ip-literal", true},
		// Names follow internal/dnsname, as the resolver and the control API do.
		{"dns name reads as an IPv4 address", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "10.0.1" }, "host", false},
		{"dns name with an all-numeric top-level label", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "a.example.123" }, "host", false},
		{"dns name with an underscore inside a label", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "my_host.example" }, "host", false},
		{"dns name as a U-label", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "bücher.example" }, "host", false},
		{"dns name is a wildcard", func(d doc) { d.ip(toDev)["ietf-acldns:src-dnsname"] = "*.example.com" }, "host", false},
		// IP literals (RFC 8520 §2)
		{"ipv6 literal", func(d doc) {
			delete(d.ip(fromDev), "ietf-acldns:dst-dnsname")
			d.ip(fromDev)["destination-ipv6-network"] = "2001:db8::/32"
		}, "ip-literal", true},
		{"ipv4 prefix in ipv6 match", func(d doc) { d.ip(fromDev)["destination-ipv6-network"] = "192.0.2.0/24" }, "prefix", false},
		{"prefix with host bits", func(d doc) {
			delete(d.ip(fromDev), "ietf-acldns:dst-dnsname")
			d.ip(fromDev)["destination-ipv6-network"] = "2001:db8::1/32"
		}, "prefix-host-bits", true},
		{"address without length", func(d doc) {
			delete(d.ip(fromDev), "ietf-acldns:dst-dnsname")
			d.ip(fromDev)["destination-ipv6-network"] = "2001:db8::1"
		}, "prefix-no-length", true},
		{"name and network", func(d doc) { d.ip(fromDev)["destination-ipv6-network"] = "2001:db8::/32" }, "two-peers", true},
		{"device-side network", func(d doc) { d.ip(fromDev)["source-ipv6-network"] = "2001:db8::/32" }, "device-side-address", true},
		// abstractions (RFC 8520 §4)
		{"abstraction and name", func(d doc) { d.matches(0)["ietf-mud:mud"] = map[string]any{"local-networks": []any{nil}} }, "peer-and-abstraction", true},
		{"two abstractions", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"local-networks": []any{nil}, "same-manufacturer": []any{nil}}
		}, "several-abstractions", true},
		{"empty leaf as []", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"my-controller": []any{}}
		}, "empty-leaf", true},
		{"empty leaf as string", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"my-controller": "yes"}
		}, "type", false},
		{"registered controller", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"controller": "urn:ietf:params:mud:ntp"}
		}, "", true},
		{"gateway controller", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"controller": "urn:ietf:params:mud:gateway"}
		}, "controller-unregistered", true},
		{"bare controller name", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"controller": "bacnet"}
		}, "controller-not-uri", true},
		{"http controller", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"controller": "http://c.example/x"}
		}, "controller-http", true},
		{"model not a URI", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"model": "lightbulb"}
		}, "uri", false},
		{"manufacturer not a host", func(d doc) {
			delete(d.ip(0), "ietf-acldns:src-dnsname")
			d.matches(0)["ietf-mud:mud"] = map[string]any{"manufacturer": "a b"}
		}, "host", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := loadBase(t)
			tc.mutate(d)
			res := Parse(d.bytes(t))
			if res.Valid() != tc.valid {
				t.Errorf("Valid() = %v, want %v; findings: %v", res.Valid(), tc.valid, res.Findings)
			}
			if tc.code == "" {
				if len(res.Findings) != 0 {
					t.Errorf("want no findings, got %v", res.Findings)
				}
				return
			}
			if !res.HasCode(tc.code) {
				t.Errorf("want finding %q, got %v", tc.code, res.Findings)
			}
			for _, f := range res.Findings {
				if !strings.HasPrefix(f.Path, "/") || f.Message == "" {
					t.Errorf("finding without path or message: %+v", f)
				}
			}
		})
	}
}

// TestDocumentLevel covers inputs that are not a mutation of a good file.
func TestDocumentLevel(t *testing.T) {
	base := string(loadBase(t).bytes(t))
	quoted, _ := json.Marshal(base)
	cases := []struct {
		name  string
		input string
		code  string
		valid bool
	}{
		{"empty", "", "json", false},
		{"not JSON", "hello", "json", false},
		{"truncated", base[:len(base)/2], "json", false},
		{"array", "[]", "type", false},
		{"double-encoded", string(quoted), "double-encoded", false},
		{"trailing data", base + "{}", "json", false},
		{"duplicate key", `{"ietf-mud:mud": {"mud-version": 1, "mud-version": 1}}`, "json", false},
		{"invalid UTF-8", "{\"ietf-mud:mud\": \"\xff\"}", "encoding", false},
		{"BOM", "\xef\xbb\xbf" + base, "bom", true},
		{"deep nesting", strings.Repeat("[", 100) + strings.Repeat("]", 100), "json", false},
		{"too large", base + strings.Repeat(" ", 1<<20), "too-large", false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			res := Parse([]byte(tc.input))
			if res.Valid() != tc.valid || !res.HasCode(tc.code) {
				t.Errorf("Valid()=%v HasCode(%q)=%v, want valid=%v; findings: %v", res.Valid(), tc.code, res.HasCode(tc.code), tc.valid, res.Findings)
			}
		})
	}
}

// TestLimits checks the ACL and ACE bounds (RFC 8520 §16) with small
// limits, and that the defaults admit the corpus's largest file.
func TestLimits(t *testing.T) {
	d := loadBase(t)
	b := d.bytes(t)
	if res := ParseWithLimits(b, Limits{MaxACLs: 1}); !res.HasCode("too-many-acls") || res.Valid() {
		t.Errorf("MaxACLs 1: want too-many-acls, got %v", res.Findings)
	}
	if res := ParseWithLimits(b, Limits{MaxACEs: 1}); !res.HasCode("too-many-aces") || res.Valid() {
		t.Errorf("MaxACEs 1: want too-many-aces, got %v", res.Findings)
	}
	if res := ParseWithLimits(b, Limits{MaxDepth: 5}); !res.HasCode("json") || res.Valid() {
		t.Errorf("MaxDepth 5: want json depth error, got %v", res.Findings)
	}
	if res := ParseWithLimits(b, Limits{MaxBytes: 100}); !res.HasCode("too-large") {
		t.Errorf("MaxBytes 100: want too-large, got %v", res.Findings)
	}
	// A synthetic file with 1000 ACEs in one ACL (more than the field's
	// largest, ~800) passes the defaults.
	acl := d.acl(1)
	ace := d.ace(1)
	var aces []any
	for i := range 1000 {
		c := map[string]any{}
		for k, v := range ace {
			c[k] = v
		}
		c["name"] = fmt.Sprintf("ace%d", i)
		aces = append(aces, c)
	}
	acl["aces"] = map[string]any{"ace": aces}
	if res := Parse(d.bytes(t)); !res.Valid() {
		t.Errorf("1000 ACEs must pass the default limits: %v", res.Errors())
	}
}

// TestIdentityParity: prefixed and unprefixed identities read the same
// (RFC 7951 §6.8).
func TestIdentityParity(t *testing.T) {
	plain, prefixed := loadBase(t), loadBase(t)
	for i := range 2 {
		prefixed.acl(i)["type"] = "ietf-access-control-list:ipv6-acl-type"
		prefixed.ace(i)["actions"] = map[string]any{"forwarding": "ietf-access-control-list:accept"}
	}
	a, b := Parse(plain.bytes(t)), Parse(prefixed.bytes(t))
	ja, _ := json.Marshal(a.File)
	jb, _ := json.Marshal(b.File)
	if string(ja) != string(jb) || len(b.Findings) != 0 {
		t.Errorf("prefixed identities differ:\n%s\n%s\n%v", ja, jb, b.Findings)
	}
}

func TestPaths(t *testing.T) {
	d := loadBase(t)
	d.tcp(1)["destination-port"] = map[string]any{"operator": "eq", "port": 70000}
	res := Parse(d.bytes(t))
	want := "/ietf-access-control-list:acls/acl[name='mud-76100-v6fr']/aces/ace[name='cl0-frdev']/matches/tcp/destination-port/port"
	if len(res.Findings) != 1 || res.Findings[0].Path != want {
		t.Errorf("want one finding at %s, got %v", want, res.Findings)
	}
}

func TestTransparencyKept(t *testing.T) {
	d := loadBase(t)
	d.mud()["extensions"] = []any{"transparency"}
	d.mud()["ietf-mud-transparency:transparency"] = map[string]any{
		"sboms":    []any{map[string]any{"version-info": "1.0", "sbom-url": "https://a.example/sbom"}},
		"vuln-url": []any{"https://a.example/csaf"},
	}
	res := Parse(d.bytes(t))
	if !res.Valid() || len(res.Findings) != 0 {
		t.Fatalf("findings: %v", res.Findings)
	}
	tx := res.File.MUD.Transparency
	if tx == nil || len(tx.SBOMs) != 1 || tx.SBOMs[0].SBOMURL != "https://a.example/sbom" || tx.VulnURLs[0] != "https://a.example/csaf" {
		t.Errorf("transparency misread: %+v", tx)
	}
}
