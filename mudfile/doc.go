// Package mudfile owns the MUD file model (RFC 8520): it decodes the JSON of
// ietf-mud, ietf-access-control-list (RFC 8519) and ietf-acldns, keeps the
// known extensions (RFC 9472 transparency, RFC 9761 TLS profiles) as data,
// validates the result, and reports findings that each carry a JSON path, a
// severity and a message meant for a person.
//
// Files in the field are often not conformant. Quirks whose meaning is clear
// (the pre-RFC root name, upper-case actions, hex ethertypes, ...) are
// normalised and reported as warnings; anything whose meaning is ambiguous or
// that would widen what a device may do if misread is an error.
//
// The package does no I/O: callers hand it bytes.
package mudfile
