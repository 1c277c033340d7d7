package dhcpsnoop

import (
	"bytes"
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// MaxMUDStringLen is the largest MUDstring RFC 8520 §10 allows: the whole
// option value (URL plus any reserved part) is at most 255 octets.
const MaxMUDStringLen = 255

// Reasons a MUD URL is refused. They are wrapped in a *URLError; test with
// errors.Is.
var (
	ErrURLEmpty    = errors.New("empty MUD URL")
	ErrURLTooLong  = fmt.Errorf("MUD string longer than %d octets", MaxMUDStringLen)
	ErrURLNotHTTPS = errors.New("MUD URL scheme is not https")
	ErrURLSyntax   = errors.New("malformed MUD URL")
)

// URLError says why a raw MUD option value was refused. Raw is the offending
// value, truncated and escaped so that it is safe to print or log.
type URLError struct {
	Err    error  // one of the ErrURL* reasons
	Detail string // more precise cause, may be empty
	Raw    string // escaped, at most maxRawShown octets of the input
}

func (e *URLError) Error() string {
	if e.Detail == "" {
		return e.Err.Error()
	}
	return e.Err.Error() + ": " + e.Detail
}

func (e *URLError) Unwrap() error { return e.Err }

// maxRawShown bounds how much of a refused value is kept in events and logs:
// enough to recognise it, not enough to let a client stuff our memory.
const maxRawShown = 300

// ParseMUDURL applies RFC 8520 §10 to the value of DHCPv4 option 161 or
// DHCPv6 option 112 and returns the MUD URL in normal form.
//
// The value is a MUDstring, `mudurl [ " " reserved ]`: the reserved part after
// the first space is ignored (RFC 8520 §10). Trailing NULs and
// whitespace are trimmed first, because several client implementations send a
// C string or a padded buffer. The whole value must not exceed 255 octets
// (RFC 8520 §10) and the URL must be an absolute https URL with a host
// (RFC 8520 §1.5).
//
// A fragment ("#…") is refused (ErrURLSyntax): the MUD URL locates one file
// (RFC 8520 §1.5, §10), a fragment is never sent to the server (RFC 3986
// §3.5) and application/mud+json gives it no meaning, so "…/x.json#1" and
// "…/x.json#2" could only be one file made to look like many URLs — each
// one a fetch and a cache entry. Refusing it, rather than dropping it, keeps
// the device's odd announcement visible (an invalid-mud-url flag) instead of
// quietly enforcing something the device did not quite say.
//
// What RFC 3986 §6.2.2 and §6.2.3 call equivalent is made equal, so that
// spellings of one URL cannot count as many: the scheme and host are
// lower-cased, the default port :443 is dropped, an empty path becomes "/",
// dot segments are removed, percent-encoded unreserved characters are
// decoded and other percent-encodings upper-cased. Everything else (the
// query included) is kept as sent.
func ParseMUDURL(raw []byte) (string, error) {
	fail := func(reason error, detail string) (string, error) {
		return "", &URLError{Err: reason, Detail: detail, Raw: EscapeBytes(raw, maxRawShown)}
	}
	if len(raw) > MaxMUDStringLen {
		return fail(ErrURLTooLong, fmt.Sprintf("%d octets", len(raw)))
	}
	s := bytes.TrimRight(raw, "\x00 \t\r\n\v\f")
	if i := bytes.IndexByte(s, ' '); i >= 0 {
		s = s[:i] // the reserved part: "MUST ignore it"
	}
	if len(s) == 0 {
		return fail(ErrURLEmpty, "")
	}
	// A URI holds only the characters RFC 3986 §2 names; checking the bytes
	// first also keeps anything odd out of url.Parse's error text. url.Parse
	// itself takes '"', '{', '|' and the like and the normal form would
	// percent-encode them, so a URL at the length limit would grow past it.
	for _, c := range s {
		if !isURIChar(c) {
			return fail(ErrURLSyntax, fmt.Sprintf("byte 0x%02x is not allowed in a URL (RFC 3986 §2)", c))
		}
	}
	// Every "%" starts a percent-encoding of two hex digits (RFC 3986
	// §2.1); url.Parse does not check the query, and a stray "%" would let
	// the normal form decode into another URL.
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && (i+2 >= len(s) || unhex(s[i+1]) < 0 || unhex(s[i+2]) < 0) {
			return fail(ErrURLSyntax, "a \"%\" that does not start a percent-encoding")
		}
	}
	u, err := url.Parse(string(s))
	if err != nil {
		return fail(ErrURLSyntax, "does not parse as a URL")
	}
	if !strings.EqualFold(u.Scheme, "https") {
		if u.Scheme == "" {
			return fail(ErrURLNotHTTPS, "no scheme")
		}
		return fail(ErrURLNotHTTPS, "scheme "+strings.ToLower(u.Scheme))
	}
	if u.Opaque != "" || u.Host == "" || u.Hostname() == "" {
		return fail(ErrURLSyntax, "no host")
	}
	// A host is a name or an address literal: url.Parse decodes percent-
	// encodings in it (and takes "%" as an IPv6 zone), which would let
	// bytes into the host that the URL itself could not carry.
	for _, c := range []byte(u.Host) {
		if c <= 0x20 || c >= 0x7f || c == '%' {
			return fail(ErrURLSyntax, "percent-encoding and zones are not allowed in the host")
		}
	}
	// Credentials in a URL a device broadcasts can only be a trick to make a
	// URL look like it belongs to another authority (https://vendor@evil/).
	if u.User != nil {
		return fail(ErrURLSyntax, "user information is not allowed")
	}
	if bytes.IndexByte(s, '#') >= 0 {
		return fail(ErrURLSyntax, "a fragment (\"#...\") is not allowed: RFC 8520 §10 gives it no meaning")
	}
	out := normalURL(u)
	if len(out) > MaxMUDStringLen {
		// Not reachable from the characters allowed above (the normal form
		// only decodes), kept so the key can never outgrow the option.
		return fail(ErrURLTooLong, fmt.Sprintf("%d octets in normal form", len(out)))
	}
	return out, nil
}

// normalURL writes an absolute https URL (no user information, no
// fragment) in the normal form ParseMUDURL documents.
func normalURL(u *url.URL) string {
	host := strings.ToLower(u.Hostname())
	if strings.Contains(host, ":") {
		host = "[" + host + "]" // an IPv6 literal
	}
	if p := u.Port(); p != "" && p != "443" {
		host += ":" + p
	}
	path := removeDotSegments(normalEscapes(u.EscapedPath()))
	if path == "" {
		path = "/"
	}
	out := "https://" + host + path
	if u.ForceQuery || u.RawQuery != "" {
		out += "?" + normalEscapes(u.RawQuery)
	}
	return out
}

// normalEscapes decodes percent-encoded unreserved characters and
// upper-cases the hex digits of the other percent-encodings (RFC 3986
// §6.2.2.1, §6.2.2.2). s is already known to be well formed.
func normalEscapes(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] != '%' || i+2 >= len(s) {
			b.WriteByte(s[i])
			continue
		}
		hi, lo := unhex(s[i+1]), unhex(s[i+2])
		if hi < 0 || lo < 0 {
			b.WriteByte(s[i])
			continue
		}
		if c := byte(hi<<4 | lo); isUnreserved(c) {
			b.WriteByte(c)
		} else {
			b.WriteByte('%')
			b.WriteString(strings.ToUpper(s[i+1 : i+3]))
		}
		i += 2
	}
	return b.String()
}

func unhex(c byte) int {
	switch {
	case '0' <= c && c <= '9':
		return int(c - '0')
	case 'a' <= c && c <= 'f':
		return int(c-'a') + 10
	case 'A' <= c && c <= 'F':
		return int(c-'A') + 10
	}
	return -1
}

// isURIChar is RFC 3986 §2: unreserved, gen-delims, sub-delims and "%".
func isURIChar(c byte) bool {
	return isUnreserved(c) || strings.IndexByte(":/?#[]@!$&'()*+,;=%", c) >= 0
}

// isUnreserved is RFC 3986 §2.3: ALPHA / DIGIT / "-" / "." / "_" / "~".
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}

// removeDotSegments is RFC 3986 §5.2.4 for an absolute path.
func removeDotSegments(p string) string {
	if !strings.Contains(p, ".") {
		return p
	}
	var out []string
	segs := strings.Split(p, "/")
	for i, seg := range segs {
		last := i == len(segs)-1
		switch seg {
		case ".":
			if last {
				out = append(out, "")
			}
		case "..":
			if len(out) > 1 {
				out = out[:len(out)-1]
			}
			if last {
				out = append(out, "")
			}
		default:
			out = append(out, seg)
		}
	}
	return strings.Join(out, "/")
}

// EscapeBytes renders bytes from the network as printable ASCII, at most max
// input octets, with Go escapes for everything else and "…" when cut. The
// result is safe in a terminal, a log line or JSON.
func EscapeBytes(b []byte, max int) string {
	cut := false
	if len(b) > max {
		b, cut = b[:max], true
	}
	var sb strings.Builder
	for _, c := range b {
		switch {
		case c == '\\':
			sb.WriteString(`\\`)
		case c >= 0x20 && c < 0x7f:
			sb.WriteByte(c)
		default:
			fmt.Fprintf(&sb, `\x%02x`, c)
		}
	}
	if cut {
		sb.WriteString("…")
	}
	return sb.String()
}
