package fleet

import (
	"errors"
	"fmt"
	"net/url"
	"strings"
)

// Kind is a class of shared decision. Each kind has its own key space under
// <prefix>/shared/<kind>/.
type Kind string

// The shared decisions. Approvals and rejections of a MUD file share one key
// per device (KindVerdictMAC) or per MUD URL (KindVerdictURL), so that a
// compare-and-swap orders an approval on one gateway against a rejection on
// another; the value says which it is.
const (
	KindPinURL       Kind = "pins-url"
	KindPinMAC       Kind = "pins-mac"
	KindVerdictMAC   Kind = "verdicts-mac"
	KindVerdictURL   Kind = "verdicts-url"
	KindOverrides    Kind = "overrides"
	KindController   Kind = "controllers"
	KindMyController Kind = "my-controllers"
	KindBinding      Kind = "bindings"
)

// Kinds lists every kind of shared decision.
func Kinds() []Kind {
	return []Kind{KindPinURL, KindPinMAC, KindVerdictMAC, KindVerdictURL, KindOverrides,
		KindController, KindMyController, KindBinding}
}

// Valid reports whether k is a known kind.
func (k Kind) Valid() bool {
	for _, x := range Kinds() {
		if k == x {
			return true
		}
	}
	return false
}

// MaxValueSize bounds a decision's or a device summary's encoded value:
// etcd's own request limit is 1.5 MiB, and no record of ours comes near
// this.
const MaxValueSize = 64 << 10

// MaxKeySize bounds a record key (a MAC, a URL, a controller URI) before
// escaping.
const MaxKeySize = 2048

var (
	errBadPrefix    = errors.New("key prefix must start with / and not end with /")
	errBadGatewayID = errors.New("gateway id must be 1-64 characters of a-z, A-Z, 0-9, '-', '_' and '.'")
)

// validPrefix checks a key prefix such as "/mud".
func validPrefix(p string) error {
	if p == "" || p[0] != '/' || strings.HasSuffix(p, "/") || strings.Contains(p, "//") {
		return fmt.Errorf("%w: %q", errBadPrefix, p)
	}
	return nil
}

// ValidGatewayID reports whether id may name a gateway: it becomes one path
// element of etcd keys and an etcd user and role name.
func ValidGatewayID(id string) error {
	if len(id) == 0 || len(id) > 64 || id == "." || id == ".." {
		return fmt.Errorf("%w: %q", errBadGatewayID, id)
	}
	for _, r := range id {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_', r == '.':
		default:
			return fmt.Errorf("%w: %q", errBadGatewayID, id)
		}
	}
	return nil
}

// layout computes the etcd keys under one prefix.
type layout struct{ prefix string }

// shared is the prefix of every shared decision.
func (l layout) shared() string { return l.prefix + "/shared/" }

// decision is the etcd key of one decision; the record key is path-escaped
// so that a URL's slashes stay inside one element.
func (l layout) decision(k Kind, key string) string {
	return l.shared() + string(k) + "/" + url.PathEscape(key)
}

// parseDecision splits an etcd key under shared() into kind and record key.
func (l layout) parseDecision(etcdKey string) (Kind, string, error) {
	rest, ok := strings.CutPrefix(etcdKey, l.shared())
	if !ok {
		return "", "", fmt.Errorf("key %q is outside %s", etcdKey, l.shared())
	}
	kind, esc, ok := strings.Cut(rest, "/")
	if !ok || !Kind(kind).Valid() {
		return "", "", fmt.Errorf("key %q: unknown decision kind", etcdKey)
	}
	key, err := url.PathUnescape(esc)
	if err != nil || key == "" {
		return "", "", fmt.Errorf("key %q: bad record key", etcdKey)
	}
	return Kind(kind), key, nil
}

// gateway is the prefix of one gateway's own keys.
func (l layout) gateway(id string) string { return l.prefix + "/gateways/" + id + "/" }

// device is the key of one device summary of a gateway.
func (l layout) device(id, mac string) string {
	return l.gateway(id) + "devices/" + url.PathEscape(mac)
}

// alive is a gateway's leased liveness key.
func (l layout) alive(id string) string { return l.gateway(id) + "alive" }

func checkRecordKey(key string) error {
	if key == "" || len(key) > MaxKeySize {
		return fmt.Errorf("record key must be 1-%d bytes, got %d", MaxKeySize, len(key))
	}
	return nil
}
