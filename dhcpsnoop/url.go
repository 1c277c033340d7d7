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
// DHCPv6 option 112 and returns the MUD URL.
//
// The value is a MUDstring, `mudurl [ " " reserved ]`: the reserved part after
// the first space is ignored (RFC 8520 §10). Trailing NULs and
// whitespace are trimmed first, because several client implementations send a
// C string or a padded buffer. The whole value must not exceed 255 octets
// (RFC 8520 §10) and the URL must be an absolute https URL with a host
// (RFC 8520 §1.5). The returned URL is the input text, unmodified, so that
// it can be compared byte for byte with the file's own mud-url.
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
	// A URI is ASCII without spaces or controls (RFC 3986 §2); checking the
	// bytes first also keeps anything odd out of url.Parse's error text.
	for _, c := range s {
		if c <= 0x20 || c >= 0x7f {
			return fail(ErrURLSyntax, fmt.Sprintf("byte 0x%02x is not allowed in a URL", c))
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
	// Credentials in a URL a device broadcasts can only be a trick to make a
	// URL look like it belongs to another authority (https://vendor@evil/).
	if u.User != nil {
		return fail(ErrURLSyntax, "user information is not allowed")
	}
	return string(s), nil
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
