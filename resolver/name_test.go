package resolver

import (
	"errors"
	"strings"
	"testing"
)

func TestNormalize(t *testing.T) {
	good := map[string]string{
		"Example.COM":                    "example.com",
		"example.com.":                   "example.com",
		"_mud._tcp.vendor.io":            "_mud._tcp.vendor.io",
		"xn--bcher-kva.ch":               "xn--bcher-kva.ch",
		"a-b.c":                          "a-b.c",
		"printer":                        "printer",
		strings.Repeat("a", 63) + ".com": strings.Repeat("a", 63) + ".com",
	}
	for in, want := range good {
		got, err := Normalize(in)
		if err != nil || got != want {
			t.Errorf("Normalize(%q) = %q, %v; want %q", in, got, err, want)
		}
	}
	bad := []string{
		"", ".", "..", "a..b", ".a", "192.0.2.1", "2001:db8::1", "[2001:db8::1]",
		"*.example.com", "bücher.ch", "a b.com", "a/b.com", "a\x00b.com", "-a.com", "a-.com",
		"1.2.3.4.in-addr.arpa", "8.b.d.0.1.0.0.2.ip6.arpa", "example.123",
		strings.Repeat("a", 64) + ".com", strings.Repeat("abcdefghi.", 26) + "com",
		"a%sb.com", "a\nb.com",
	}
	for _, in := range bad {
		if got, err := Normalize(in); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Normalize(%q) = %q, %v; want ErrInvalidName", in, got, err)
		} else if len(err.Error()) > 200 {
			t.Errorf("error for %q too long: %d bytes", in, len(err.Error()))
		}
	}
}
