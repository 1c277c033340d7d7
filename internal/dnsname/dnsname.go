// Package dnsname decides what mud accepts as a DNS host name: the names a
// MUD file's ietf-acldns matches carry (mudfile), the names an admin's
// override gives (api), and the names the resolver resolves and watches in
// snooped answers. One rule for all three, so that a name one of them
// accepts is never refused by another.
//
// A name is accepted when it is a host name in the sense of RFC 1035 §2.3.1
// and RFC 1123 §2.1, in its ASCII form:
//
//   - at most 253 characters without the trailing dot (255 octets on the
//     wire), labels of 1 to 63 characters;
//   - labels of letters, digits and hyphens (LDH), not starting or ending
//     with a hyphen; letters are lower-cased and one trailing dot (the root)
//     is dropped, so "Api.Example.COM." becomes "api.example.com";
//   - a label may start with one underscore ("_ntp._udp.example.com"):
//     service and attribute labels (DNS-SD, RFC 6763 §7; RFC 8552) are
//     looked up by devices. An underscore anywhere else ("my_host"), and in
//     the top-level label, is refused: no host name has one;
//   - internationalised names only as A-labels ("xn--bcher-kva.ch",
//     RFC 5890): the part after "xn--" must be valid Punycode (RFC 3492) of
//     a name with at least one non-ASCII character. U-labels ("bücher.ch")
//     are refused: giving the A-label is the caller's job (no IDNA mapping is
//     done here, so no two spellings map to one name);
//   - the top-level label is not all digits (RFC 3696 §2), so that nothing
//     that reads as an IPv4 address ("10.0.0.1", "1.2.3", "0x7f.1") is ever
//     taken for a name; IP address literals of either family are refused
//     as such;
//   - wildcards ("*.example.com") are not names, and neither are
//     reverse-mapping names under in-addr.arpa and ip6.arpa (a MUD policy
//     names hosts, it never maps addresses back to names).
//
// Single-label names ("printer") are accepted: they are valid host names, and
// the resolver the gateway uses decides what they mean.
package dnsname

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalid is wrapped by every error Normalize returns.
var ErrInvalid = errors.New("invalid DNS name")

// Error explains why a name was refused. It matches ErrInvalid with
// errors.Is.
type Error struct {
	Name   string // the name as given, cut to 80 characters for display
	Reason string // what is wrong with it
}

func (e *Error) Error() string {
	return fmt.Sprintf("invalid DNS name %q: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalid) true.
func (e *Error) Is(target error) bool { return target == ErrInvalid }

const (
	// MaxLen is the longest name accepted, without the trailing dot.
	MaxLen = 253
	// MaxLabelLen is the longest label.
	MaxLabelLen = 63
)

// Normalize validates a host name (the rules are in the package doc) and
// returns its canonical form: lower case, without the trailing dot. The
// error, an *Error, says what is wrong.
func Normalize(name string) (string, error) {
	bad := func(format string, a ...any) (string, error) {
		shown := name
		if len(shown) > 80 {
			shown = shown[:80] + "..."
		}
		return "", &Error{Name: shown, Reason: fmt.Sprintf(format, a...)}
	}
	s := strings.TrimSuffix(name, ".")
	switch {
	case name == "":
		return bad("empty")
	case s == "":
		return bad("the root is not a host name")
	case len(s) > MaxLen:
		return bad("longer than %d characters", MaxLen)
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return bad("an IP address literal is not a name")
	}
	if strings.HasPrefix(s, "[") {
		return bad("an IP address literal is not a name")
	}
	b := []byte(s)
	lower := true
	start := 0
	for i := 0; i <= len(b); i++ {
		if i < len(b) && b[i] != '.' {
			c := b[i]
			switch {
			case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-':
			case c >= 'A' && c <= 'Z':
				b[i] = c + ('a' - 'A')
				lower = false
			case c == '_':
				if i != start {
					return bad("underscore inside a label (only a service label may start with one) at offset %d", i)
				}
			case c == '*':
				return bad("wildcards are not names")
			case c >= 0x80:
				return bad("non-ASCII name: give the IDNA A-label (xn--...)")
			default:
				return bad("character %q not allowed at offset %d", c, i)
			}
			continue
		}
		label := b[start:i]
		switch {
		case len(label) == 0:
			return bad("empty label at offset %d", start)
		case len(label) > MaxLabelLen:
			return bad("label at offset %d longer than %d characters", start, MaxLabelLen)
		}
		ldh := label
		if label[0] == '_' {
			if i == len(b) {
				return bad("the top-level label starts with an underscore")
			}
			ldh = label[1:]
			if len(ldh) == 0 {
				return bad("a lone underscore is not a label (offset %d)", start)
			}
		}
		if ldh[0] == '-' || ldh[len(ldh)-1] == '-' {
			return bad("label at offset %d starts or ends with a hyphen", start)
		}
		if len(ldh) >= 4 && string(ldh[:4]) == "xn--" {
			if err := checkALabel(ldh[4:]); err != nil {
				return bad("label at offset %d is not a valid A-label: %v", start, err)
			}
		}
		start = i + 1
	}
	tld := b[strings.LastIndexByte(s, '.')+1:]
	if allDigits(tld) {
		return bad("all-numeric top-level label")
	}
	out := s
	if !lower {
		out = string(b)
	}
	if out == "in-addr.arpa" || out == "ip6.arpa" || strings.HasSuffix(out, ".in-addr.arpa") || strings.HasSuffix(out, ".ip6.arpa") {
		return bad("reverse-mapping names are not host names")
	}
	return out, nil
}

// Valid reports whether Normalize accepts name.
func Valid(name string) bool {
	_, err := Normalize(name)
	return err == nil
}

func allDigits(b []byte) bool {
	for _, c := range b {
		if c < '0' || c > '9' {
			return false
		}
	}
	return true
}

// Punycode parameters (RFC 3492 §5).
const (
	pcBase        = 36
	pcTMin        = 1
	pcTMax        = 26
	pcSkew        = 38
	pcDamp        = 700
	pcInitialBias = 72
	pcInitialN    = 128
)

// checkALabel checks the Punycode part of an A-label (after "xn--",
// lower case): it decodes (RFC 3492 §6.2) to at least one non-ASCII code
// point, none of them a surrogate or beyond U+10FFFF, and it is the
// canonical encoding (a label has one A-label, not several).
func checkALabel(p []byte) error {
	if len(p) == 0 {
		return errors.New("nothing after xn--")
	}
	orig := string(p)
	var out []rune
	if d := lastIndex(p, '-'); d >= 0 {
		for _, c := range p[:d] {
			out = append(out, rune(c))
		}
		p = p[d+1:]
	}
	if len(p) == 0 {
		return errors.New("no encoded characters")
	}
	n, bias, i := rune(pcInitialN), pcInitialBias, 0
	for len(p) > 0 {
		oldi, w := i, 1
		for k := pcBase; ; k += pcBase {
			if len(p) == 0 {
				return errors.New("truncated Punycode")
			}
			digit, ok := pcDigit(p[0])
			if !ok {
				return fmt.Errorf("%q is not a Punycode digit", p[0])
			}
			p = p[1:]
			if digit > (1<<31-1-i)/w {
				return errors.New("overflow decoding Punycode")
			}
			i += digit * w
			t := pcThreshold(k, bias)
			if digit < t {
				break
			}
			if w > (1<<31-1)/(pcBase-t) {
				return errors.New("overflow decoding Punycode")
			}
			w *= pcBase - t
		}
		bias = pcAdapt(i-oldi, len(out)+1, oldi == 0)
		if i/(len(out)+1) > 0x10ffff-int(n) {
			return errors.New("code point beyond U+10FFFF")
		}
		n += rune(i / (len(out) + 1))
		i %= len(out) + 1
		if n < 0x80 || n > 0x10ffff || (n >= 0xd800 && n <= 0xdfff) {
			return fmt.Errorf("invalid code point U+%04X", n)
		}
		out = append(out, 0)
		copy(out[i+1:], out[i:])
		out[i] = n
		i++
	}
	if punyEncode(out) != orig {
		return errors.New("not the canonical encoding")
	}
	return nil
}

func lastIndex(b []byte, c byte) int {
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] == c {
			return i
		}
	}
	return -1
}

func pcDigit(c byte) (int, bool) {
	switch {
	case c >= 'a' && c <= 'z':
		return int(c - 'a'), true
	case c >= '0' && c <= '9':
		return int(c-'0') + 26, true
	}
	return 0, false
}

// pcThreshold is t(k) of RFC 3492 §6.
func pcThreshold(k, bias int) int {
	return min(max(k-bias, pcTMin), pcTMax)
}

func pcAdapt(delta, numPoints int, first bool) int {
	if first {
		delta /= pcDamp
	} else {
		delta /= 2
	}
	delta += delta / numPoints
	k := 0
	for delta > ((pcBase-pcTMin)*pcTMax)/2 {
		delta /= pcBase - pcTMin
		k += pcBase
	}
	return k + (pcBase-pcTMin+1)*delta/(delta+pcSkew)
}

// punyEncode is RFC 3492 §6.3's encoder, for the canonical check.
func punyEncode(in []rune) string {
	var out []byte
	for _, r := range in {
		if r < 0x80 {
			out = append(out, byte(r))
		}
	}
	b := len(out)
	h := b
	if b > 0 {
		out = append(out, '-')
	}
	n, bias, delta := rune(pcInitialN), pcInitialBias, 0
	for h < len(in) {
		m := rune(0x10ffff + 1)
		for _, r := range in {
			if r >= n && r < m {
				m = r
			}
		}
		delta += int(m-n) * (h + 1)
		n = m
		for _, r := range in {
			if r < n {
				delta++
			}
			if r == n {
				q := delta
				for k := pcBase; ; k += pcBase {
					t := pcThreshold(k, bias)
					if q < t {
						break
					}
					out = append(out, pcEncodeDigit(t+(q-t)%(pcBase-t)))
					q = (q - t) / (pcBase - t)
				}
				out = append(out, pcEncodeDigit(q))
				bias = pcAdapt(delta, h+1, h == b)
				delta = 0
				h++
			}
		}
		delta++
		n++
	}
	return string(out)
}

func pcEncodeDigit(d int) byte {
	if d < 26 {
		return byte('a' + d)
	}
	return byte('0' + d - 26)
}
