package resolver

import (
	"errors"
	"fmt"
	"net/netip"
	"strings"
)

// ErrInvalidName is wrapped by every error Normalize returns.
var ErrInvalidName = errors.New("invalid DNS name")

// NameError explains why a name was rejected. It matches ErrInvalidName
// with errors.Is.
type NameError struct {
	Name   string // the name as given (possibly truncated for display)
	Reason string
}

func (e *NameError) Error() string {
	return fmt.Sprintf("invalid DNS name %q: %s", e.Name, e.Reason)
}

// Is makes errors.Is(err, ErrInvalidName) true.
func (e *NameError) Is(target error) bool { return target == ErrInvalidName }

const (
	maxNameLen  = 253
	maxLabelLen = 63
)

// Normalize validates a host name and returns its canonical form: ASCII
// lower case, without the trailing dot ("Api.Example.COM." becomes
// "api.example.com"), which is the form policy.Peer values use (the set key
// is "dns:" + name). Accepted are LDH labels of 1 to 63 characters (an
// underscore is tolerated, as in service names) and names up to 253
// characters. Rejected, with an error that says why: empty names, IP address
// literals, wildcards, non-ASCII names (IDNA is not done: give the A-label,
// "xn--..."), labels starting or ending with a hyphen, an all-numeric
// top-level label, and reverse-DNS names (in-addr.arpa, ip6.arpa: RFC 9726
// forbids mapping addresses back to names).
func Normalize(name string) (string, error) {
	bad := func(reason string) (string, error) {
		shown := name
		if len(shown) > 80 {
			shown = shown[:80] + "..."
		}
		return "", &NameError{Name: shown, Reason: reason}
	}
	s := strings.TrimSuffix(name, ".")
	switch {
	case name == "":
		return bad("empty")
	case s == "":
		return bad("the root is not a host name")
	case len(s) > maxNameLen:
		return bad(fmt.Sprintf("longer than %d characters", maxNameLen))
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return bad("an IP address literal is not a name")
	}
	b := make([]byte, 0, len(s))
	labelStart := 0
	for i := 0; i <= len(s); i++ {
		if i == len(s) || s[i] == '.' {
			label := s[labelStart:i]
			switch {
			case label == "":
				return bad("empty label")
			case len(label) > maxLabelLen:
				return bad(fmt.Sprintf("label longer than %d characters", maxLabelLen))
			case label[0] == '-' || label[len(label)-1] == '-':
				return bad("label starts or ends with a hyphen")
			}
			if i < len(s) {
				b = append(b, '.')
			}
			labelStart = i + 1
			continue
		}
		c := s[i]
		switch {
		case c >= 'a' && c <= 'z', c >= '0' && c <= '9', c == '-', c == '_':
			b = append(b, c)
		case c >= 'A' && c <= 'Z':
			b = append(b, c+('a'-'A'))
		case c == '*':
			return bad("wildcards are not names")
		case c >= 0x80:
			return bad("non-ASCII name: give the IDNA A-label (xn--...)")
		default:
			return bad(fmt.Sprintf("character %q not allowed at offset %d", c, i))
		}
	}
	out := string(b)
	tld := out[strings.LastIndexByte(out, '.')+1:]
	if strings.Trim(tld, "0123456789") == "" {
		return bad("all-numeric top-level label")
	}
	if out == "in-addr.arpa" || out == "ip6.arpa" || strings.HasSuffix(out, ".in-addr.arpa") || strings.HasSuffix(out, ".ip6.arpa") {
		return bad("reverse-DNS names are never resolved (RFC 9726)")
	}
	return out, nil
}

// fqdn appends the root dot to a normalised name.
func fqdn(name string) string { return name + "." }

// unfqdn strips the root dot.
func unfqdn(name string) string { return strings.TrimSuffix(name, ".") }
