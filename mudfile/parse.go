package mudfile

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strings"
	"unicode/utf8"
)

// Module names used as JSON member prefixes (RFC 7951).
const (
	modMUD  = "ietf-mud"
	modACL  = "ietf-access-control-list"
	modDNS  = "ietf-acldns"
	modTx   = "ietf-mud-transparency"
	modTLS  = "ietf-mud-tls"
	modTLSA = "ietf-acl-tls"
)

// Extension names of the known extensions (RFC 9472, RFC 9761).
const (
	extTransparency = "transparency"
	extTLS          = "ietf-mud-tls"
)

// Limits bound the work Parse does on one file (RFC 8520 §16: pre-scan
// files, which should be small). Zero fields mean "use the default".
type Limits struct {
	MaxBytes int // size of the document
	MaxDepth int // JSON nesting of objects and arrays
	MaxACLs  int // ACLs in the file
	MaxACEs  int // ACEs in the whole file
}

// DefaultLimits admits the largest files seen in the field (~240 KB, ~800
// ACEs, MUDgee profiles) with a wide margin while refusing inputs that
// could only be attacks or mistakes (a 10 MB file, 100k ACEs).
func DefaultLimits() Limits {
	return Limits{MaxBytes: 1 << 20, MaxDepth: 32, MaxACLs: 256, MaxACEs: 4096}
}

func (l Limits) withDefaults() Limits {
	d := DefaultLimits()
	if l.MaxBytes <= 0 {
		l.MaxBytes = d.MaxBytes
	}
	if l.MaxDepth <= 0 {
		l.MaxDepth = d.MaxDepth
	}
	if l.MaxACLs <= 0 {
		l.MaxACLs = d.MaxACLs
	}
	if l.MaxACEs <= 0 {
		l.MaxACEs = d.MaxACEs
	}
	return l
}

// parser holds the state of one Parse call.
type parser struct {
	lim      Limits
	res      *Result
	file     *File
	aces     int
	declared map[string]bool
	// meta keeps, per ACL of file.ACLs, where it and its ACEs are in the
	// document, for findings produced by the cross-checks.
	meta []aclMeta
	// aclRoot is the root member the ACLs were read from, as written.
	aclRoot string
}

type aclMeta struct {
	path     string
	acePaths []string
	ipKeys   []string // per ACE: "ipv4", "ipv6" or ""
}

func (p *parser) add(sev Severity, path, code, format string, args ...any) {
	p.res.Findings = append(p.res.Findings, Finding{Path: path, Severity: sev, Code: code, Message: fmt.Sprintf(format, args...)})
}

func (p *parser) errf(path, code, format string, args ...any) {
	p.add(Error, path, code, format, args...)
}

func (p *parser) warnf(path, code, format string, args ...any) {
	p.add(Warning, path, code, format, args...)
}

// Parse decodes and validates a MUD file with DefaultLimits.
func Parse(data []byte) *Result { return ParseWithLimits(data, DefaultLimits()) }

// ParseWithLimits decodes and validates a MUD file. It never panics and
// never fails: everything it has to say is in the Result's findings.
func ParseWithLimits(data []byte, lim Limits) *Result {
	p := &parser{lim: lim.withDefaults(), res: &Result{}, declared: map[string]bool{}}
	p.parse(data)
	return p.res
}

func (p *parser) parse(data []byte) {
	if len(data) > p.lim.MaxBytes {
		p.errf("/", "too-large", "file is %d bytes, more than the limit of %d: refused", len(data), p.lim.MaxBytes)
		return
	}
	if bom := []byte("\xef\xbb\xbf"); bytes.HasPrefix(data, bom) {
		p.warnf("/", "bom", "file starts with a UTF-8 byte order mark; ignored")
		data = data[len(bom):]
	}
	if !utf8.Valid(data) {
		p.errf("/", "encoding", "file is not valid UTF-8 (application/mud+json requires UTF-8)")
		return
	}
	tree, err := decodeTree(data, p.lim.MaxDepth)
	if err != nil {
		path, msg := "/", err.Error()
		if de, ok := err.(*decodeError); ok {
			path, msg = de.path, de.msg
		}
		p.errf(path, "json", "%s", msg)
		return
	}
	root, ok := tree.(*object)
	if !ok {
		if s, isStr := tree.(string); isStr && json.Valid([]byte(s)) {
			p.errf("/", "double-encoded", "the document is a JSON string that itself contains JSON: the MUD file was encoded twice; decode it once before publishing")
			return
		}
		p.errf("/", "type", "a MUD file is a JSON object, found %s", describe(tree))
		return
	}
	p.file = &File{}
	p.res.File = p.file
	p.parseRoot(root)
	p.crossCheck()
}

func (p *parser) parseRoot(root *object) {
	mudKey := modMUD + ":mud"
	if v, ok := root.get(mudKey); ok {
		p.parseMUD("/"+mudKey, v)
	} else {
		p.errf("/", "missing-mud", "the %q container is missing: this is not a MUD file", mudKey)
	}
	acls, hasACLs := root.get(modACL + ":acls")
	old, hasOld := root.get(modACL + ":access-lists")
	switch {
	case hasACLs && hasOld:
		p.errf("/"+modACL+":access-lists", "two-acl-roots", "both %q and the pre-RFC %q are present; which one applies is ambiguous", modACL+":acls", modACL+":access-lists")
	case hasACLs:
		p.aclRoot = modACL + ":acls"
		p.parseACLs("/"+p.aclRoot, acls)
	case hasOld:
		p.aclRoot = modACL + ":access-lists"
		p.warnf("/"+p.aclRoot, "pre-rfc-root", "pre-RFC root name %q; read as %q", p.aclRoot, modACL+":acls")
		p.parseACLs("/"+p.aclRoot, old)
	}
	for _, k := range root.keys {
		switch k {
		case mudKey, modACL + ":acls", modACL + ":access-lists":
			continue
		}
		p.unknownNode("/"+k, k)
	}
}

// unknownNode reports a node this package does not understand outside of
// matches: RFC 8520 §3.9 says to ignore it and raise an exception, and an
// extension's nodes should have been declared in "extensions".
func (p *parser) unknownNode(path, key string) {
	mod, _ := splitPrefix(key)
	switch {
	case mod == "":
		p.warnf(path, "unknown-node", "unknown node %q; ignored", key)
	case p.declared[mod]:
		p.warnf(path, "unknown-extension", "node %q belongs to the declared extension %q, which this manager does not implement; ignored", key, mod)
	default:
		p.warnf(path, "undeclared-extension", "node %q belongs to %q, which is not declared in ietf-mud:mud/extensions; ignored", key, mod)
	}
}

func (p *parser) parseMUD(path string, v any) {
	o, ok := p.obj(path, v)
	if !ok {
		return
	}
	m := &p.file.MUD
	m.CacheValidity = 48
	// Extensions first: they decide how other members are judged.
	if ev, ok := o.get("extensions"); ok {
		p.parseExtensions(path+"/extensions", ev)
	}
	seen := map[string]bool{}
	for _, k := range o.keys {
		v := o.m[k]
		kp := path + "/" + k
		seen[k] = true
		switch k {
		case "mud-version":
			if n, ok := p.uintLeaf(kp, v, 0, 255); ok {
				m.Version = int(n)
				if n != 1 {
					p.errf(kp, "mud-version", "mud-version is %d; only version 1 exists", n)
				}
			}
		case "mud-url":
			m.URL = p.mudURL(kp, v)
		case "last-update":
			m.LastUpdate, _ = p.parseDateTime(kp, v)
		case "mud-signature":
			m.Signature, _ = p.uriLeaf(kp, v, false)
		case "cache-validity":
			if n, ok := p.uintLeaf(kp, v, 0, 1<<32); ok {
				if n < 1 || n > 168 {
					p.errf(kp, "cache-validity-range", "cache-validity is %d hours; it must be 1..168 (RFC 8520 §3.5)", n)
				} else {
					m.CacheValidity = int(n)
				}
			}
		case "is-supported":
			m.IsSupported, _ = p.boolLeaf(kp, v)
		case "systeminfo":
			m.SystemInfo, _ = p.stringLeaf(kp, v)
			if n := utf8.RuneCountInString(m.SystemInfo); n > 60 {
				p.warnf(kp, "systeminfo-long", "systeminfo is %d characters; it should be at most 60 (RFC 8520 §3.7)", n)
			}
		case "mfg-name":
			m.MfgName, _ = p.stringLeaf(kp, v)
		case "model-name":
			m.ModelName, _ = p.stringLeaf(kp, v)
		case "firmware-rev":
			m.FirmwareRev, _ = p.stringLeaf(kp, v)
		case "software-rev":
			m.SoftwareRev, _ = p.stringLeaf(kp, v)
		case "documentation":
			m.Documentation, _ = p.uriLeaf(kp, v, true)
		case "extensions":
			// read above
		case "from-device-policy":
			m.FromDevicePolicy = p.parsePolicy(kp, v)
		case "to-device-policy":
			m.ToDevicePolicy = p.parsePolicy(kp, v)
		case modTx + ":transparency", "mudtx:transparency":
			if k == "mudtx:transparency" {
				p.warnf(kp, "mudtx-prefix", "member uses the YANG prefix %q instead of the module name %q (RFC 7951); read as %q", "mudtx", modTx, modTx+":transparency")
			}
			if !p.declared[extTransparency] {
				p.warnf(kp, "undeclared-extension", "transparency data present but %q is not declared in extensions", extTransparency)
			}
			m.Transparency = p.parseTransparency(kp, v)
		case modTLS + ":is-tls-dtls-profile-supported":
			if !p.declared[extTLS] {
				p.warnf(kp, "undeclared-extension", "TLS profile data present but %q is not declared in extensions", extTLS)
			}
			if b, ok := p.boolLeaf(kp, v); ok {
				m.TLSProfileSupported = &b
			}
		default:
			p.unknownNode(kp, k)
		}
	}
	if seen[modTx+":transparency"] && seen["mudtx:transparency"] {
		p.errf(path+"/mudtx:transparency", "duplicate", "transparency is given twice, under two names")
	}
	for _, k := range []string{"mud-version", "mud-url", "last-update", "is-supported"} {
		if !seen[k] {
			p.errf(path, "missing-leaf", "mandatory leaf %q is missing", k)
		}
	}
	if !seen["from-device-policy"] && !seen["to-device-policy"] {
		p.warnf(path, "no-policy", "no from-device-policy or to-device-policy: the device gets only the default DNS and NTP access")
	}
}

// mudURL checks mud-url: an absolute https URL (RFC 8520 §1.5), which the
// emitters carry in at most 255 octets.
func (p *parser) mudURL(path string, v any) string {
	s, ok := p.stringLeaf(path, v)
	if !ok {
		return ""
	}
	if s == "" {
		p.errf(path, "mud-url", "mud-url is empty")
		return ""
	}
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		p.errf(path, "mud-url", "mud-url %q is not an absolute URL", s)
		return ""
	}
	if !strings.EqualFold(u.Scheme, "https") {
		p.errf(path, "mud-url", "mud-url %q does not use https (RFC 8520 §1.5: MUD URLs MUST use the HTTPS scheme)", s)
		return ""
	}
	if len(s) > 255 {
		p.warnf(path, "mud-url-long", "mud-url is %d octets; DHCP and LLDP can carry at most 255", len(s))
	}
	return s
}

func (p *parser) parseExtensions(path string, v any) {
	arr, ok := p.list(path, v)
	if !ok {
		return
	}
	for i, e := range arr {
		ep := fmt.Sprintf("%s[%d]", path, i+1)
		s, ok := p.stringLeaf(ep, e)
		if !ok {
			continue
		}
		if n := utf8.RuneCountInString(s); n < 1 || n > 40 {
			p.errf(ep, "extension-name", "extension name %q must be 1..40 characters", s)
			continue
		}
		p.file.MUD.Extensions = append(p.file.MUD.Extensions, s)
		p.declared[s] = true
		switch s {
		case extTransparency:
			p.declared[modTx], p.declared["mudtx"] = true, true
		case extTLS:
			p.declared[modTLSA] = true
		}
	}
}

// parsePolicy reads from-device-policy or to-device-policy.
func (p *parser) parsePolicy(path string, v any) []string {
	var names []string
	seen := map[string]bool{}
	p.members(path, v, func(kp, k string, v any) {
		if k != "access-lists" {
			p.unknownNode(kp, k)
			return
		}
		lp, arr, ok := p.wrappedList(kp, v, "access-list")
		if !ok {
			return
		}
		for i, e := range arr {
			eo, ok := p.obj(fmt.Sprintf("%s[%d]", lp, i+1), e)
			if !ok {
				continue
			}
			name, _ := eo.m["name"].(string)
			ep := lp + keyPred("name", name, i+1)
			for _, k3 := range eo.keys {
				switch k3 {
				case "name":
				case "acl-name", "acl-type":
					p.errf(ep+"/"+k3, "pre-rfc-syntax", "%q is pre-RFC draft syntax; RFC 8520 uses \"name\"", k3)
				default:
					p.unknownNode(ep+"/"+k3, k3)
				}
			}
			nv, has := eo.get("name")
			if !has {
				p.errf(ep, "missing-leaf", "access-list entry has no name")
				continue
			}
			if _, ok := p.stringLeaf(ep+"/name", nv); !ok {
				continue
			}
			if seen[name] {
				p.errf(ep, "duplicate", "access-list %q is listed twice", name)
				continue
			}
			seen[name] = true
			names = append(names, name)
		}
	})
	return names
}

// wrappedList reads the RFC 7951 shape of a container that holds one list
// (acls/acl, aces/ace, access-lists/access-list); other members are unknown
// nodes. It returns the list's path and entries.
func (p *parser) wrappedList(path string, v any, listKey string) (string, []any, bool) {
	var lp string
	var arr []any
	found := false
	ok := p.members(path, v, func(kp, k string, v any) {
		if k != listKey {
			p.unknownNode(kp, k)
			return
		}
		lp = kp
		arr, found = p.list(kp, v)
	})
	return lp, arr, ok && found
}

func (p *parser) parseTransparency(path string, v any) *Transparency {
	o, ok := p.obj(path, v)
	if !ok {
		return nil
	}
	t := &Transparency{}
	for _, k := range o.keys {
		kp, v := path+"/"+k, o.m[k]
		switch k {
		case "sboms":
			arr, ok := p.list(kp, v)
			if !ok {
				continue
			}
			for i, e := range arr {
				eo, ok := p.obj(fmt.Sprintf("%s[%d]", kp, i+1), e)
				if !ok {
					continue
				}
				var sb SBOM
				vi, _ := eo.m["version-info"].(string)
				ep := kp + keyPred("version-info", vi, i+1)
				for _, k2 := range eo.keys {
					switch k2 {
					case "version-info":
						sb.VersionInfo, _ = p.stringLeaf(ep+"/"+k2, eo.m[k2])
					case "sbom-url":
						sb.SBOMURL, _ = p.uriLeaf(ep+"/"+k2, eo.m[k2], true)
					default:
						p.unknownNode(ep+"/"+k2, k2)
					}
				}
				t.SBOMs = append(t.SBOMs, sb)
			}
		case "sbom-local-well-known":
			if s, ok := p.stringLeaf(kp, v); ok {
				t.SBOMLocalWellKnown = identity(identity(s, modTx), "mudtx")
			}
		case "sbom-contact-uri":
			t.SBOMContactURI, _ = p.uriLeaf(kp, v, true)
		case "sbom-archive-list":
			t.SBOMArchiveList, _ = p.uriLeaf(kp, v, true)
		case "vuln-url":
			arr, ok := p.list(kp, v)
			if !ok {
				continue
			}
			for i, e := range arr {
				if s, ok := p.uriLeaf(fmt.Sprintf("%s[%d]", kp, i+1), e, true); ok {
					t.VulnURLs = append(t.VulnURLs, s)
				}
			}
		case "vuln-contact-uri":
			t.VulnContactURI, _ = p.uriLeaf(kp, v, true)
		default:
			p.unknownNode(kp, k)
		}
	}
	return t
}
