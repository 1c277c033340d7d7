package mudfile

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/openmud/mud/internal/dnsname"
)

// describe names a JSON value's kind for messages.
func describe(v any) string {
	switch v := v.(type) {
	case nil:
		return "null"
	case *object:
		return "an object"
	case []any:
		return "an array"
	case string:
		return fmt.Sprintf("the string %q", v)
	case json.Number:
		return "the number " + v.String()
	case bool:
		return fmt.Sprintf("the boolean %v", v)
	}
	return fmt.Sprintf("%T", v)
}

// uintLeaf reads an unsigned integer leaf in [lo, hi]. RFC 7951 encodes
// uint8..uint32 as JSON numbers; a decimal string is read with a warning.
func (p *parser) uintLeaf(path string, v any, lo, hi uint64) (uint64, bool) {
	var s string
	switch v := v.(type) {
	case json.Number:
		s = v.String()
	case string:
		s = v
		if _, err := strconv.ParseUint(s, 10, 64); err == nil {
			p.warnf(path, "number-as-string", "number written as a string %q; read as a number", s)
		}
	default:
		p.errf(path, "type", "expected an integer, found %s", describe(v))
		return 0, false
	}
	n, err := strconv.ParseUint(s, 10, 64)
	if err != nil {
		p.errf(path, "type", "expected an integer, found %s", describe(v))
		return 0, false
	}
	if n < lo || n > hi {
		p.errf(path, "range", "value %d is out of range %d..%d", n, lo, hi)
		return 0, false
	}
	return n, true
}

func (p *parser) uint8Leaf(path string, v any, lo, hi uint64) (*uint8, bool) {
	n, ok := p.uintLeaf(path, v, lo, hi)
	if !ok {
		return nil, false
	}
	u := uint8(n)
	return &u, true
}

// stringLeaf reads a string leaf.
func (p *parser) stringLeaf(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.errf(path, "type", "expected a string, found %s", describe(v))
	}
	return s, ok
}

// boolLeaf reads a boolean leaf; "true"/"false" strings are read with a
// warning because their meaning is clear.
func (p *parser) boolLeaf(path string, v any) (bool, bool) {
	switch v := v.(type) {
	case bool:
		return v, true
	case string:
		if b, err := strconv.ParseBool(v); err == nil && (v == "true" || v == "false") {
			p.warnf(path, "bool-as-string", "boolean written as the string %q; read as %v", v, b)
			return b, true
		}
	}
	p.errf(path, "type", "expected true or false, found %s", describe(v))
	return false, false
}

// emptyLeaf reads a YANG "empty" leaf, which RFC 7951 writes as [null].
func (p *parser) emptyLeaf(path string, v any) bool {
	if arr, ok := v.([]any); ok {
		if len(arr) == 1 && arr[0] == nil {
			return true
		}
		if len(arr) == 0 {
			p.warnf(path, "empty-leaf", "empty leaf written as []; RFC 7951 writes it as [null]; read as present")
			return true
		}
	}
	if v == true {
		p.warnf(path, "empty-leaf", "empty leaf written as true; RFC 7951 writes it as [null]; read as present")
		return true
	}
	p.errf(path, "type", "expected an empty leaf ([null]), found %s", describe(v))
	return false
}

// obj reads a container.
func (p *parser) obj(path string, v any) (*object, bool) {
	o, ok := v.(*object)
	if !ok {
		p.errf(path, "type", "expected an object, found %s", describe(v))
	}
	return o, ok
}

// list reads a YANG list or leaf-list.
func (p *parser) list(path string, v any) ([]any, bool) {
	a, ok := v.([]any)
	if !ok {
		p.errf(path, "type", "expected an array, found %s", describe(v))
	}
	return a, ok
}

// uriLeaf reads an inet:uri. absolute demands a scheme.
func (p *parser) uriLeaf(path string, v any, absolute bool) (string, bool) {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return "", false
	}
	u, err := url.Parse(s)
	if err != nil || s == "" {
		p.errf(path, "uri", "%q is not a valid URI", s)
		return "", false
	}
	if absolute && u.Scheme == "" {
		p.errf(path, "uri", "%q is not an absolute URI", s)
		return "", false
	}
	return s, true
}

// parseDateTime reads a YANG date-and-time. A timestamp without a zone
// offset is read as UTC with a warning: last-update only informs the
// administrator, so guessing its zone cannot widen access.
func (p *parser) parseDateTime(path string, v any) (time.Time, bool) {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return time.Time{}, false
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, true
	}
	for _, layout := range []string{"2006-01-02T15:04:05.999999999", "2006-01-02T15:04:05"} {
		if t, err := time.Parse(layout, s); err == nil {
			p.warnf(path, "timestamp-no-zone", "timestamp %q has no time-zone offset; read as UTC", s)
			return t.UTC(), true
		}
	}
	p.errf(path, "date-and-time", "%q is not a date-and-time such as 2019-01-28T11:20:51+01:00", s)
	return time.Time{}, false
}

// hostLeaf reads an inet:host: an IP address, kept as given (policy
// compiles it to a prefix), or a domain name, which must be a host name by
// internal/dnsname's rules (the resolver's and the control API's) and is
// returned lower-cased without a trailing dot.
func (p *parser) hostLeaf(path string, v any) (string, bool) {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return "", false
	}
	if _, err := netip.ParseAddr(s); err == nil {
		return s, true
	}
	name, err := dnsname.Normalize(s)
	if err != nil {
		var e *dnsname.Error
		reason := err.Error()
		if errors.As(err, &e) {
			reason = e.Reason
		}
		p.errf(path, "host", "%q is not a valid host name: %s", s, reason)
		return "", false
	}
	return name, true
}

// splitPrefix returns a member name's module prefix and local name.
func splitPrefix(k string) (module, local string) {
	if i := strings.IndexByte(k, ':'); i >= 0 {
		return k[:i], k[i+1:]
	}
	return "", k
}

// identity reads an identityref value, which RFC 7951 allows with or without
// the module prefix (§6.8); it returns the local name.
func identity(s, module string) string {
	if m, local := splitPrefix(s); m == module {
		return local
	}
	return s
}
