package mudfile

import (
	"net/netip"
)

// crossCheck runs the rules that relate parts of the file to each other:
// the policies' leafrefs to ACLs, the dnsname direction rules (RFC 8520 §8), and the
// per-direction meaning of addresses.
func (p *parser) crossCheck() {
	m := &p.file.MUD
	index := map[string]int{}
	for i, acl := range p.file.ACLs {
		if _, dup := index[acl.Name]; !dup {
			index[acl.Name] = i
		}
	}
	used := map[string]string{}
	for _, dir := range []struct {
		key   string
		names []string
		from  bool
	}{{"from-device-policy", m.FromDevicePolicy, true}, {"to-device-policy", m.ToDevicePolicy, false}} {
		for i, name := range dir.names {
			refPath := "/" + modMUD + ":mud/" + dir.key + "/access-lists/access-list" + keyPred("name", name, i+1)
			ai, ok := index[name]
			if !ok {
				p.errf(refPath+"/name", "acl-missing", "%s names ACL %q, which the file does not define", dir.key, name)
				continue
			}
			if prev, ok := used[name]; ok && prev != dir.key {
				p.warnf(refPath+"/name", "acl-both-directions", "ACL %q is used by both from-device-policy and to-device-policy; its addresses mean the remote side in one and the device in the other", name)
			}
			used[name] = dir.key
			p.checkDirection(ai, dir.from)
		}
	}
	for i, acl := range p.file.ACLs {
		if _, ok := used[acl.Name]; !ok && acl.Name != "" {
			p.warnf(p.meta[i].path, "acl-unused", "ACL %q is not used by from-device-policy or to-device-policy; it has no effect", acl.Name)
		}
	}
}

// checkDirection applies the rules that depend on whether an ACL is in the
// from-device policy (remote side = destination) or the to-device policy
// (remote side = source).
func (p *parser) checkDirection(ai int, fromDevice bool) {
	acl := &p.file.ACLs[ai]
	meta := p.meta[ai]
	for j := range acl.ACEs {
		ace := &acl.ACEs[j]
		ipKey := meta.ipKeys[j]
		ip := ace.Matches.IPv4
		if ipKey == "ipv6" {
			ip = ace.Matches.IPv6
		}
		base := meta.acePaths[j] + "/matches/" + ipKey
		if ip != nil {
			fam := 4
			if ipKey == "ipv6" {
				fam = 6
			}
			if (acl.Type == IPv4ACL && fam == 6) || (acl.Type == IPv6ACL && fam == 4) {
				p.warnf(base, "acl-type-mismatch", "an %s match in an ACL of type %s; the match decides the IP version", ipKey, acl.Type)
			}
			srcNet, dstNet := "/source-ipv4-network", "/destination-ipv4-network"
			if fam == 6 {
				srcNet, dstNet = "/source-ipv6-network", "/destination-ipv6-network"
			}
			if fromDevice {
				if ip.SrcDNSName != "" {
					p.errf(base+"/"+modDNS+":src-dnsname", "src-dnsname-from-device", "src-dnsname in a from-device ACL: the source is the device itself (RFC 8520 §8 forbids it)")
				}
				if ip.SrcNetwork != nil {
					p.warnf(base+srcNet, "device-side-address", "a source network in a from-device ACL constrains the device's own address, which a MUD manager already knows; it cannot be enforced exactly (an accept is not installed)")
				}
			} else {
				if ip.DstDNSName != "" {
					p.errf(base+"/"+modDNS+":dst-dnsname", "dst-dnsname-to-device", "dst-dnsname in a to-device ACL: the destination is the device itself (RFC 8520 §8 forbids it)")
				}
				if ip.DstNetwork != nil {
					p.warnf(base+dstNet, "device-side-address", "a destination network in a to-device ACL constrains the device's own address, which a MUD manager already knows; it cannot be enforced exactly (an accept is not installed)")
				}
			}
			for _, lit := range []struct {
				path string
				pfx  *netip.Prefix
				name string
			}{{base + srcNet, ip.SrcNetwork, ""}, {base + dstNet, ip.DstNetwork, ""},
				{base + "/" + modDNS + ":src-dnsname", nil, ip.SrcDNSName}, {base + "/" + modDNS + ":dst-dnsname", nil, ip.DstDNSName}} {
				if lit.name != "" {
					if _, err := netip.ParseAddr(lit.name); err != nil {
						continue
					}
				} else if lit.pfx == nil {
					continue
				}
				p.warnf(lit.path, "ip-literal", "IP address literal: files with IP literals are not enforced without an administrator's approval (RFC 8520 §2)")
			}
		}
		if tcp := ace.Matches.TCP; tcp != nil && tcp.DirectionInitiated != "" && ace.Action != Accept && ace.Action != "" {
			p.warnf(meta.acePaths[j]+"/matches/tcp/"+modMUD+":direction-initiated", "direction-initiated-drop", "direction-initiated on a %s ACE has no clear meaning; the drop applies to all matching packets", ace.Action)
		}
	}
}
