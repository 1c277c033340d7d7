package resolver

import (
	"strings"

	"github.com/openmud/mud/internal/dnsname"
)

// ErrInvalidName is wrapped by every error Normalize returns.
var ErrInvalidName = dnsname.ErrInvalid

// NameError explains why a name was rejected. It matches ErrInvalidName
// with errors.Is.
type NameError = dnsname.Error

// Normalize validates a host name and returns its canonical form: ASCII
// lower case, without the trailing dot ("Api.Example.COM." becomes
// "api.example.com"), which is the form policy.Peer values use (the set key
// is "dns:" + name). The rules are internal/dnsname's, the same mudfile and
// the control API apply: LDH labels of 1 to 63 characters (a leading
// underscore allowed, as in service names), names up to 253 characters,
// internationalised names as A-labels only; refused, with an error that
// says why, are IP address literals, all-numeric top-level labels,
// wildcards and reverse-mapping names (in-addr.arpa, ip6.arpa).
func Normalize(name string) (string, error) { return dnsname.Normalize(name) }

// fqdn appends the root dot to a normalised name.
func fqdn(name string) string { return name + "." }

// unfqdn strips the root dot.
func unfqdn(name string) string { return strings.TrimSuffix(name, ".") }
