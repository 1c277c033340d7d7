package dhcpsnoop

import (
	"errors"
	"strings"
	"testing"
)

func TestParseMUDURL(t *testing.T) {
	long := "https://a.example/" + strings.Repeat("x", 255-len("https://a.example/"))
	for _, tc := range []struct {
		name string
		raw  string
		want string
		err  error
	}{
		{"plain", urlA, urlA, nil},
		// RFC 8520 §10: the reserved part after a space is ignored.
		{"reserved part", "https://a.example/x ABC", "https://a.example/x", nil},
		{"reserved part with spaces", "https://a.example/x ABC DEF\x01", "https://a.example/x", nil},
		{"trailing NUL", urlA + "\x00\x00", urlA, nil},
		{"trailing whitespace", urlA + " \t\r\n", urlA, nil},
		{"port and query", "https://a.example:8443/x?y=1", "https://a.example:8443/x?y=1", nil},
		// RFC 3986 §6.2.2, §6.2.3: spellings of one URL are one URL.
		{"scheme and host case", "HTTPS://A.Example/X", "https://a.example/X", nil},
		{"default port", "https://a.example:443/x", "https://a.example/x", nil},
		{"empty path", "https://a.example", "https://a.example/", nil},
		{"dot segments", "https://a.example/a/./b/../x", "https://a.example/a/x", nil},
		{"dot segments above the root", "https://a.example/../../x", "https://a.example/x", nil},
		{"escaped unreserved", "https://a.example/%7Ex%2dy%2E", "https://a.example/~x-y.", nil},
		{"escape case", "https://a.example/a%2fb?q=%3d%3D", "https://a.example/a%2Fb?q=%3D%3D", nil},
		{"query kept", "https://a.example/x?b=2&a=1", "https://a.example/x?b=2&a=1", nil},
		{"sub-delims kept as sent", "https://a.example/!$&'()*+,;=:@x", "https://a.example/!$&'()*+,;=:@x", nil},
		// RFC 3986 §2: a character no URI holds is refused, not escaped
		// (escaping would let a URL near 255 octets grow past the limit).
		{"double quote", "https://a.example/x\"", "", ErrURLSyntax},
		{"brace", "https://a.example/{x}", "", ErrURLSyntax},
		{"backslash", "https://a.example/a\\b", "", ErrURLSyntax},
		{"ipv6 literal case", "https://[2001:DB8::1]:443/x", "https://[2001:db8::1]/x", nil},
		// RFC 8520 §10: a fragment names nothing a MUD manager fetches.
		{"fragment", "https://a.example/x.json#1", "", ErrURLSyntax},
		{"empty fragment", "https://a.example/x.json#", "", ErrURLSyntax},
		// The host is a name or a literal; url.Parse would decode these.
		{"percent-encoded host", "https://%80/x.json", "", ErrURLSyntax},
		{"IPv6 zone", "https://[fe80::1%25eth0]/x.json", "", ErrURLSyntax},
		// RFC 3986 §2.1: "%" starts two hex digits, or the normal form
		// would decode into another URL.
		{"stray percent in the query", "https://a.example/x.json?%7%30", "", ErrURLSyntax},
		{"short percent at the end", "https://a.example/x.json%4", "", ErrURLSyntax},
		{"ipv6 literal host", "https://[2001:db8::1]/x", "https://[2001:db8::1]/x", nil},
		{"exactly 255 octets", long, long, nil},
		// RFC 8520 §1.5: only https.
		{"http", "http://a.example/x", "", ErrURLNotHTTPS},
		{"ftp", "ftp://a.example/x", "", ErrURLNotHTTPS},
		{"no scheme", "a.example/x", "", ErrURLNotHTTPS},
		{"relative", "/x", "", ErrURLNotHTTPS},
		// RFC 8520 §10: at most 255 octets, whole option.
		{"256 octets", long + "y", "", ErrURLTooLong},
		{"255 URL plus reserved", long + " r", "", ErrURLTooLong},
		{"empty", "", "", ErrURLEmpty},
		{"only NULs", "\x00\x00", "", ErrURLEmpty},
		{"leading space", " https://a.example/x", "", ErrURLEmpty},
		{"no host", "https:///x", "", ErrURLSyntax},
		{"opaque", "https:a.example", "", ErrURLSyntax},
		{"userinfo", "https://vendor.example@evil.example/x", "", ErrURLSyntax},
		{"control byte", "https://a.example/\x01x", "", ErrURLSyntax},
		{"non-ASCII", "https://a.example/\xc3\xa9", "", ErrURLSyntax},
		{"bad escape", "https://a.example/%zz", "", ErrURLSyntax},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, err := ParseMUDURL([]byte(tc.raw))
			if !errors.Is(err, tc.err) {
				t.Fatalf("ParseMUDURL(%q) error = %v, want %v", tc.raw, err, tc.err)
			}
			if got != tc.want {
				t.Errorf("ParseMUDURL(%q) = %q, want %q", tc.raw, got, tc.want)
			}
			if err != nil {
				var ue *URLError
				if !errors.As(err, &ue) {
					t.Fatalf("error %T is not a *URLError", err)
				}
				for _, c := range ue.Raw + ue.Error() {
					if c < 0x20 || c == 0x7f {
						t.Errorf("error text or Raw has control character %q: %q / %q", c, ue.Error(), ue.Raw)
					}
				}
			}
		})
	}
}

func TestEscapeBytes(t *testing.T) {
	for _, tc := range []struct {
		in   string
		max  int
		want string
	}{
		{"abc", 10, "abc"},
		{"a\x00b\n", 10, `a\x00b\x0a`},
		{`a\b`, 10, `a\\b`},
		{"abcdef", 3, "abc…"},
		{"\xff%s%d", 10, `\xff%s%d`},
	} {
		if got := EscapeBytes([]byte(tc.in), tc.max); got != tc.want {
			t.Errorf("EscapeBytes(%q, %d) = %q, want %q", tc.in, tc.max, got, tc.want)
		}
	}
}

// A MUD URL in normal form is its own normal form and has no fragment:
// however a device spells a URL, it is one key for the manager.
func FuzzParseMUDURLNormalForm(f *testing.F) {
	for _, s := range []string{urlA, "HTTPS://A.Example:443/a/./b/../%7e?q=%3d", "https://[2001:DB8::1]:8443", "https://a.example/%2e%2e/x"} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, raw []byte) {
		u, err := ParseMUDURL(raw)
		if err != nil {
			return
		}
		again, err := ParseMUDURL([]byte(u))
		if err != nil || again != u {
			t.Fatalf("ParseMUDURL(%q) = %q, whose own normal form is %q (%v)", raw, u, again, err)
		}
		if strings.Contains(u, "#") {
			t.Fatalf("ParseMUDURL(%q) = %q keeps a fragment", raw, u)
		}
	})
}
