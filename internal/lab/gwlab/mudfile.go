package gwlab

import (
	"encoding/json"
	"fmt"
	"net/url"
	"path"
)

// Rule is one ACE of a lab MUD file (IPv4 unless File.IPv6, TCP unless Protocol says
// otherwise). Remote names the peer: a DNS name (written as dst-dnsname in
// from-device rules, src-dnsname in to-device rules), or nothing when MUD
// names an RFC 8520 §4 abstraction instead.
type Rule struct {
	Remote string
	// MUD is the "ietf-mud:mud" match object, e.g.
	// {"same-manufacturer": [nil]} or {"controller": "urn:…"}.
	MUD map[string]any
	// Protocol is the IP protocol number; 0 means TCP (6).
	Protocol int
	// RemotePort is the peer's port (destination port of from-device
	// rules, source port of to-device rules); 0 matches any.
	RemotePort int
	// LocalPort is the device's own port (source port of from-device
	// rules, destination port of to-device rules); 0 matches any.
	LocalPort int
	// Initiated is the TCP direction-initiated ("from-device",
	// "to-device"), or empty.
	Initiated string
	// TCPFlags is the RFC 8519 tcp flags leaf (bits, e.g. "syn"), or
	// empty.
	TCPFlags string
}

// File describes a lab MUD file: metadata plus the from-device and
// to-device rules, each direction one IPv4 (or IPv6) ACL.
type File struct {
	URL   string // the MUD URL it is served at
	Mfg   string // mfg-name
	Model string // model-name
	From  []Rule
	To    []Rule
	// IPv6 makes both ACLs IPv6 ACLs (ipv6-acl-type, "ipv6" matches).
	IPv6 bool
}

// SignatureURL is where the file's detached signature is served: the MUD
// URL with .p7s in place of its extension.
func (f File) SignatureURL() string {
	u, err := url.Parse(f.URL)
	if err != nil {
		return f.URL + ".p7s"
	}
	ext := path.Ext(u.Path)
	u.Path = u.Path[:len(u.Path)-len(ext)] + ".p7s"
	return u.String()
}

// JSON renders the file as RFC 8520 JSON.
func (f File) JSON() []byte {
	fam, v := "ipv4", "v4"
	if f.IPv6 {
		fam, v = "ipv6", "v6"
	}
	acl := func(name, dir string, rules []Rule) map[string]any {
		aces := []any{}
		for i, r := range rules {
			proto := r.Protocol
			if proto == 0 {
				proto = 6
			}
			ip := map[string]any{"protocol": proto}
			if r.Remote != "" {
				key := "ietf-acldns:dst-dnsname"
				if dir == "to" {
					key = "ietf-acldns:src-dnsname"
				}
				ip[key] = r.Remote
			}
			matches := map[string]any{fam: ip}
			if r.MUD != nil {
				matches["ietf-mud:mud"] = r.MUD
			}
			l4 := map[string]any{}
			if r.RemotePort != 0 {
				key := "destination-port"
				if dir == "to" {
					key = "source-port"
				}
				l4[key] = map[string]any{"operator": "eq", "port": r.RemotePort}
			}
			if r.LocalPort != 0 {
				key := "source-port"
				if dir == "to" {
					key = "destination-port"
				}
				l4[key] = map[string]any{"operator": "eq", "port": r.LocalPort}
			}
			if r.Initiated != "" {
				l4["ietf-mud:direction-initiated"] = r.Initiated
			}
			if r.TCPFlags != "" {
				l4["flags"] = r.TCPFlags
			}
			if len(l4) > 0 {
				if proto == 17 {
					matches["udp"] = l4
				} else {
					matches["tcp"] = l4
				}
			}
			aces = append(aces, map[string]any{
				"name":    fmt.Sprintf("%s%d-%sdev", name, i, dir),
				"matches": matches,
				"actions": map[string]any{"forwarding": "accept"},
			})
		}
		return map[string]any{"name": name + "-" + v + dir, "type": fam + "-acl-type", "aces": map[string]any{"ace": aces}}
	}
	id := "mud-" + f.Model
	doc := map[string]any{
		"ietf-mud:mud": map[string]any{
			"mud-version":        1,
			"mud-url":            f.URL,
			"mud-signature":      f.SignatureURL(),
			"last-update":        "2026-01-28T11:20:51+01:00",
			"cache-validity":     48,
			"is-supported":       true,
			"systeminfo":         "The " + f.Mfg + " " + f.Model,
			"mfg-name":           f.Mfg,
			"model-name":         f.Model,
			"from-device-policy": map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": id + "-" + v + "fr"}}}},
			"to-device-policy":   map[string]any{"access-lists": map[string]any{"access-list": []any{map[string]any{"name": id + "-" + v + "to"}}}},
		},
		"ietf-access-control-list:acls": map[string]any{"acl": []any{acl(id, "fr", f.From), acl(id, "to", f.To)}},
	}
	b, err := json.MarshalIndent(doc, "", "  ")
	if err != nil {
		panic(err) // only maps, slices, strings and ints: cannot fail
	}
	return append(b, '\n')
}
