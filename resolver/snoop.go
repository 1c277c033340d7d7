package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/openmud/mud/internal/packet"
)

// snoopState holds the per-device name sets. The devices of one policy
// have the same names, so a set is shared by every device that has it:
// a device costs its map entry, not a copy of its names.
type snoopState struct {
	mu      sync.RWMutex
	devices map[[6]byte]*nameSet
	sets    map[string]*nameSet // by nameSet.key
}

// nameSet is a set of names one or more devices' policies mention. Only
// refs changes once it is made, so its names are read without the lock.
type nameSet struct {
	key   string            // the sorted names joined by nameSep
	names map[string]string // fqdn (lower case, trailing dot) -> normalised name
	refs  int               // devices that have it; under snoopState.mu
}

// nameSep joins the names of a set's key: it occurs in no normalised name.
const nameSep = ","

func (s *snoopState) init() {
	s.devices = make(map[[6]byte]*nameSet)
	s.sets = make(map[string]*nameSet)
}

// set gives mac the names norms (sorted, without repeats), sharing the set
// of other devices with the same ones (s.mu held).
func (s *snoopState) set(mac [6]byte, norms []string) {
	key := strings.Join(norms, nameSep)
	ns := s.sets[key]
	if ns == nil {
		ns = &nameSet{key: key, names: make(map[string]string, len(norms))}
		for _, n := range norms {
			ns.names[fqdn(n)] = n
		}
		s.sets[key] = ns
	}
	ns.refs++ // before forgetting the old set, which may be this one
	s.forget(mac)
	s.devices[mac] = ns
}

// forget removes mac's names; a set no device has is freed (s.mu held).
func (s *snoopState) forget(mac [6]byte) {
	ns := s.devices[mac]
	if ns == nil {
		return
	}
	delete(s.devices, mac)
	if ns.refs--; ns.refs == 0 {
		delete(s.sets, ns.key)
	}
}

// SetDeviceNames replaces the list of names whose snooped answers matter for
// the device with this MAC address (the destination MAC of the DNS
// responses it receives). An empty list forgets the device. Invalid names
// are skipped and reported together in the error; the valid ones are set.
// While answers are held (Config.HoldMark), the device's answers are held
// from the moment it has names until it has none; an error adding it to
// or removing it from the kernel's hold set is returned too (its answers
// are then not held, or still held and released).
func (r *Resolver) SetDeviceNames(mac net.HardwareAddr, names []string) error {
	if len(mac) != 6 {
		return fmt.Errorf("setting snooped names: MAC %s is not a 48-bit Ethernet address", mac)
	}
	key := [6]byte(mac)
	norms := make([]string, 0, len(names))
	var errs []error
	for _, n := range names {
		norm, err := Normalize(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		norms = append(norms, norm)
	}
	slices.Sort(norms)
	norms = slices.Compact(norms)
	// The kernel's hold set only ever holds devices the snooper knows:
	// added after the names, removed before them.
	r.hold.mu.Lock()
	if len(norms) == 0 {
		if err := r.hold.remove(key); err != nil {
			errs = append(errs, err)
		}
		r.snoop.mu.Lock()
		r.snoop.forget(key)
		r.snoop.mu.Unlock()
	} else {
		r.snoop.mu.Lock()
		r.snoop.set(key, norms)
		r.snoop.mu.Unlock()
		if err := r.hold.add(key); err != nil {
			errs = append(errs, err)
		}
	}
	r.hold.mu.Unlock()
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("setting snooped names for %s: %w", mac, err)
	}
	return nil
}

// HandleFrame parses one captured Ethernet frame and returns the updates it
// yields: if it carries a DNS response (UDP or TCP from port 53, IPv4 or
// IPv6, optionally VLAN-tagged) from a trusted source (see TrustedSources)
// sent to a device registered with SetDeviceNames, then for every name of
// that device on the response's CNAME chain (the question name or a CNAME
// target) an Update with the addresses at the end of the chain and the
// chain's minimum TTL from that name on, as of now. Anything else yields
// nil; a response that would have yielded updates but came from another
// source is counted in Stats.RefusedAnswers and logged (rate-limited). It
// does no other I/O, keeps no reference to frame, and is safe for
// concurrent use; the capture loop of Run calls it and emits the result.
//
// Responses over TCP are understood when whole DNS messages are in the
// segment; IP fragments are ignored.
func (r *Resolver) HandleFrame(frame []byte, now time.Time) []Update {
	r.stats.frames.Add(1)
	if len(frame) < 14 {
		return nil
	}
	mac := [6]byte(frame[0:6])
	r.snoop.mu.RLock()
	ns := r.snoop.devices[mac]
	r.snoop.mu.RUnlock()
	if ns == nil {
		return nil
	}
	src, payload, tcp, ok := dnsPayload(frame)
	if !ok {
		return nil
	}
	var out []Update
	if !tcp {
		out = r.handleMessage(ns, mac, payload, now, nil)
	} else {
		// DNS over TCP: 2-byte length prefix, possibly several messages.
		for len(payload) >= 2 {
			n := int(binary.BigEndian.Uint16(payload))
			if n == 0 || len(payload) < 2+n {
				break
			}
			out = r.handleMessage(ns, mac, payload[2:2+n], now, out)
			payload = payload[2+n:]
		}
	}
	if len(out) > 0 && !r.trust.trusted(src) {
		r.refuse(src, out, now)
		return nil
	}
	r.stats.snoops.Add(uint64(len(out)))
	return out
}

func inPrefixes(a netip.Addr, ps []netip.Prefix) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// handleMessage parses one DNS message sent to the device mac, whose names
// are ns, and appends its updates.
func (r *Resolver) handleMessage(ns *nameSet, mac [6]byte, msg []byte, now time.Time, out []Update) []Update {
	// Cheap checks before a full parse: QR set, opcode QUERY, rcode
	// NOERROR, one question, at least one answer.
	if len(msg) < 12 || msg[2]&0x80 == 0 || msg[2]&0x78 != 0 || msg[3]&0x0f != RcodeSuccess ||
		binary.BigEndian.Uint16(msg[4:]) != 1 || binary.BigEndian.Uint16(msg[6:]) == 0 {
		return out
	}
	qname, ans, ok := parseResponse(msg)
	if !ok {
		return out
	}
	r.stats.dnsMsgs.Add(1)
	c, err := follow(ans.Records, qname, 0, nil, r.cfg.MaxCNAMEDepth)
	if err != nil || len(c.addrs) == 0 {
		return out
	}
	var device net.HardwareAddr // made for the first update: most answers yield none
	for i, n := range c.names {
		name, watched := ns.names[n]
		if !watched {
			continue
		}
		if device == nil {
			device = append(net.HardwareAddr(nil), mac[:]...)
		}
		ttl := time.Duration(c.ttlFrom(i)) * time.Second
		out = append(out, Update{
			Name:     name,
			Addrs:    append([]netip.Addr(nil), c.addrs...),
			TTL:      ttl,
			Expires:  now.Add(r.clamp(ttl)),
			Source:   Snooped,
			Device:   device,
			Captured: now,
		})
	}
	return out
}

// dnsPayload finds the DNS data of a frame sent from port 53, the UDP
// payload or the TCP segment's data, and the IP source address. Fragments
// and malformed frames have none.
func dnsPayload(frame []byte) (src netip.Addr, payload []byte, tcp, ok bool) {
	var f packet.Frame
	if packet.Decode(frame, &f) != nil || f.IP.Fragmented() {
		return src, nil, false, false
	}
	switch {
	case f.Transport == packet.ProtoUDP && f.UDP.SrcPort == 53:
		return f.IP.Src, f.UDP.Payload, false, true
	case f.Transport == packet.ProtoTCP && f.TCP.SrcPort == 53:
		return f.IP.Src, f.TCP.Payload, true, true
	}
	return src, nil, false, false
}

// DeviceNames returns the names registered for a device, sorted, for
// inspection.
func (r *Resolver) DeviceNames(mac net.HardwareAddr) []string {
	if len(mac) != 6 {
		return nil
	}
	r.snoop.mu.RLock()
	ns := r.snoop.devices[[6]byte(mac)]
	r.snoop.mu.RUnlock()
	if ns == nil {
		return nil
	}
	out := make([]string, 0, len(ns.names))
	for _, n := range ns.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
