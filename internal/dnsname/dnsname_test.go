package dnsname

import (
	"errors"
	"net/netip"
	"strings"
	"testing"
)

func TestNormalizeAccepts(t *testing.T) {
	for in, want := range map[string]string{
		"Example.COM":                            "example.com",
		"example.com.":                           "example.com",
		"DC.connect.smartthings.com":             "dc.connect.smartthings.com",
		"0.pool.ntp.org":                         "0.pool.ntp.org",
		"1129153316.airable.io":                  "1129153316.airable.io",
		"_mud._tcp.vendor.io":                    "_mud._tcp.vendor.io",
		"_ntp._udp.Example.com.":                 "_ntp._udp.example.com",
		"xn--bcher-kva.ch":                       "xn--bcher-kva.ch",
		"XN--BCHER-KVA.CH":                       "xn--bcher-kva.ch",
		"xn--e1afmkfd.xn--p1ai":                  "xn--e1afmkfd.xn--p1ai",
		"xn--fiqs8s":                             "xn--fiqs8s",
		"xn--mnchen-3ya.de":                      "xn--mnchen-3ya.de",
		"a-b.c":                                  "a-b.c",
		"a--b.example":                           "a--b.example",
		"printer":                                "printer",
		"3com.com":                               "3com.com",
		"a.b1":                                   "a.b1",
		strings.Repeat("a", 63) + ".com":         strings.Repeat("a", 63) + ".com",
		strings.Repeat("abcdefghi.", 25) + "com": strings.Repeat("abcdefghi.", 25) + "com", // 253
	} {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
		if !Valid(in) {
			t.Errorf("Valid(%q) = false", in)
		}
	}
}

func TestNormalizeRefuses(t *testing.T) {
	for in, reason := range map[string]string{
		"":                                       "empty",
		".":                                      "root",
		"..":                                     "empty label",
		"a..b":                                   "empty label",
		".a":                                     "empty label",
		"192.0.2.1":                              "IP address literal",
		"10.0.0.1":                               "IP address literal",
		"10.0.0.1.":                              "IP address literal",
		"2001:db8::1":                            "IP address literal",
		"::ffff:192.0.2.1":                       "IP address literal",
		"[2001:db8::1]":                          "IP address literal",
		"1.2.3":                                  "all-numeric",
		"0x7f.1":                                 "all-numeric",
		"example.123":                            "all-numeric",
		"42":                                     "all-numeric",
		"*.example.com":                          "wildcard",
		"bücher.ch":                              "non-ASCII",
		"a b.com":                                "character",
		"a/b.com":                                "character",
		"a\x00b.com":                             "character",
		"a\nb.com":                               "character",
		"a%sb.com":                               "character",
		"a:80.com":                               "character",
		"-a.com":                                 "hyphen",
		"a-.com":                                 "hyphen",
		"_-a.example":                            "hyphen",
		"my_host.example":                        "underscore inside",
		"host_.example":                          "underscore inside",
		"__a.example":                            "underscore inside",
		"_.example":                              "lone underscore",
		"example._com":                           "top-level label starts with an underscore",
		"xn--.example":                           "hyphen",
		"xn--abc-.example":                       "hyphen",
		"xn---kva.example":                       "A-label", // not canonical
		"xn--bcher-kv!.ch":                       "character",
		"xn--99999999999999999999.example":       "A-label",
		"xn--0.example":                          "truncated Punycode",
		"1.2.3.4.in-addr.arpa":                   "reverse-mapping",
		"in-addr.arpa":                           "reverse-mapping",
		"8.b.d.0.1.0.0.2.ip6.arpa":               "reverse-mapping",
		strings.Repeat("a", 64) + ".com":         "longer than 63",
		strings.Repeat("abcdefghi.", 26) + "com": "longer than 253",
	} {
		got, err := Normalize(in)
		var e *Error
		switch {
		case !errors.Is(err, ErrInvalid) || !errors.As(err, &e):
			t.Errorf("Normalize(%q) = %q, %v; want an *Error matching ErrInvalid", in, got, err)
		case !strings.Contains(err.Error(), reason):
			t.Errorf("Normalize(%q): %v; want the reason to say %q", in, err, reason)
		case len(err.Error()) > 200:
			t.Errorf("error for %q is %d bytes long", in, len(err.Error()))
		}
		if Valid(in) {
			t.Errorf("Valid(%q) = true", in)
		}
	}
}

// FuzzNormalize checks the contract every caller relies on: an accepted
// name is its own canonical form, lower-case LDH (with leading
// underscores), within the length limits, never an address; a refused
// one gets an *Error.
func FuzzNormalize(f *testing.F) {
	for _, s := range []string{"Example.COM.", "_mud._tcp.vendor.io", "xn--bcher-kva.ch", "10.0.0.1", "1.2.3",
		"bücher.ch", "*.a", "a..b", "xn--e1afmkfd.xn--p1ai", "2001:db8::1", strings.Repeat("a.", 130)} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, in string) {
		out, err := Normalize(in)
		if err != nil {
			if !errors.Is(err, ErrInvalid) {
				t.Fatalf("error %v does not match ErrInvalid", err)
			}
			return
		}
		if again, err := Normalize(out); err != nil || again != out {
			t.Fatalf("Normalize(%q) = %q, but Normalize(%q) = %q, %v", in, out, out, again, err)
		}
		if !strings.EqualFold(strings.TrimSuffix(in, "."), out) {
			t.Fatalf("Normalize(%q) = %q changed more than case and the trailing dot", in, out)
		}
		if len(out) == 0 || len(out) > MaxLen || strings.HasSuffix(out, ".") {
			t.Fatalf("bad length or trailing dot: %q", out)
		}
		if _, err := netip.ParseAddr(out); err == nil {
			t.Fatalf("address literal accepted: %q", out)
		}
		for label := range strings.SplitSeq(out, ".") {
			if len(label) == 0 || len(label) > MaxLabelLen {
				t.Fatalf("bad label %q in %q", label, out)
			}
			for i := 0; i < len(label); i++ {
				c := label[i]
				if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-' || c == '_' && i == 0) {
					t.Fatalf("character %q in %q", c, out)
				}
			}
		}
	})
}
