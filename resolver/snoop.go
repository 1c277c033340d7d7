package resolver

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"sync"
	"time"
)

// snoopState holds the per-device name lists.
type snoopState struct {
	mu      sync.RWMutex
	devices map[[6]byte]*deviceNames
}

// deviceNames is the set of names (lower case, trailing dot) one device's
// policy mentions.
type deviceNames struct {
	mac   net.HardwareAddr
	names map[string]string // fqdn -> normalised name
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
	d := &deviceNames{mac: append(net.HardwareAddr(nil), mac...), names: make(map[string]string, len(names))}
	var errs []error
	for _, n := range names {
		norm, err := Normalize(n)
		if err != nil {
			errs = append(errs, err)
			continue
		}
		d.names[fqdn(norm)] = norm
	}
	// The kernel's hold set only ever holds devices the snooper knows:
	// added after the names, removed before them.
	r.hold.mu.Lock()
	if len(d.names) == 0 {
		if err := r.hold.remove(key); err != nil {
			errs = append(errs, err)
		}
		r.snoop.mu.Lock()
		delete(r.snoop.devices, key)
		r.snoop.mu.Unlock()
	} else {
		r.snoop.mu.Lock()
		r.snoop.devices[key] = d
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
	r.snoop.mu.RLock()
	dev := r.snoop.devices[[6]byte(frame[0:6])]
	r.snoop.mu.RUnlock()
	if dev == nil {
		return nil
	}
	src, payload, tcp, ok := transportPayload(frame)
	if !ok {
		return nil
	}
	var out []Update
	if !tcp {
		out = r.handleMessage(dev, payload, now, nil)
	} else {
		// DNS over TCP: 2-byte length prefix, possibly several messages.
		for len(payload) >= 2 {
			n := int(binary.BigEndian.Uint16(payload))
			if n == 0 || len(payload) < 2+n {
				break
			}
			out = r.handleMessage(dev, payload[2:2+n], now, out)
			payload = payload[2+n:]
		}
	}
	if len(out) > 0 && !r.trust.trusted(src) {
		r.refuse(src, dev, out, now)
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

// handleMessage parses one DNS message sent to dev and appends its updates.
func (r *Resolver) handleMessage(dev *deviceNames, msg []byte, now time.Time, out []Update) []Update {
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
	for i, n := range c.names {
		name, watched := dev.names[n]
		if !watched {
			continue
		}
		ttl := time.Duration(c.ttlFrom(i)) * time.Second
		out = append(out, Update{
			Name:     name,
			Addrs:    append([]netip.Addr(nil), c.addrs...),
			TTL:      ttl,
			Expires:  now.Add(r.clamp(ttl)),
			Source:   Snooped,
			Device:   dev.mac,
			Captured: now,
		})
	}
	return out
}

// transportPayload finds the UDP or TCP payload of a frame sent from port
// 53. It returns the IP source address.
func transportPayload(frame []byte) (src netip.Addr, payload []byte, tcp, ok bool) {
	et := binary.BigEndian.Uint16(frame[12:14])
	b := frame[14:]
	for i := 0; i < 2 && (et == 0x8100 || et == 0x88a8); i++ { // VLAN tags
		if len(b) < 4 {
			return src, nil, false, false
		}
		et = binary.BigEndian.Uint16(b[2:4])
		b = b[4:]
	}
	var proto uint8
	switch et {
	case 0x0800:
		if len(b) < 20 || b[0]>>4 != 4 {
			return src, nil, false, false
		}
		ihl := int(b[0]&0x0f) * 4
		total := int(binary.BigEndian.Uint16(b[2:4]))
		if ihl < 20 || total < ihl || len(b) < total {
			return src, nil, false, false
		}
		if binary.BigEndian.Uint16(b[6:8])&0x3fff != 0 { // MF or offset: a fragment
			return src, nil, false, false
		}
		proto = b[9]
		src = netip.AddrFrom4([4]byte(b[12:16]))
		b = b[ihl:total]
	case 0x86dd:
		if len(b) < 40 || b[0]>>4 != 6 {
			return src, nil, false, false
		}
		plen := int(binary.BigEndian.Uint16(b[4:6]))
		if len(b) < 40+plen {
			return src, nil, false, false
		}
		proto = b[6]
		src = netip.AddrFrom16([16]byte(b[8:24]))
		b = b[40 : 40+plen]
		// Skip the usual extension headers (hop-by-hop, routing,
		// destination options); a fragment header ends the search.
		for i := 0; i < 4 && (proto == 0 || proto == 43 || proto == 60); i++ {
			if len(b) < 8 {
				return src, nil, false, false
			}
			n := 8 + int(b[1])*8
			if len(b) < n {
				return src, nil, false, false
			}
			proto, b = b[0], b[n:]
		}
	default:
		return src, nil, false, false
	}
	switch proto {
	case 17:
		if len(b) < 8 || binary.BigEndian.Uint16(b[0:2]) != 53 {
			return src, nil, false, false
		}
		ulen := int(binary.BigEndian.Uint16(b[4:6]))
		if ulen < 8 || ulen > len(b) {
			return src, nil, false, false
		}
		return src, b[8:ulen], false, true
	case 6:
		if len(b) < 20 || binary.BigEndian.Uint16(b[0:2]) != 53 {
			return src, nil, false, false
		}
		off := int(b[12]>>4) * 4
		if off < 20 || off > len(b) {
			return src, nil, false, false
		}
		return src, b[off:], true, true
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
	d := r.snoop.devices[[6]byte(mac)]
	r.snoop.mu.RUnlock()
	if d == nil {
		return nil
	}
	out := make([]string, 0, len(d.names))
	for _, n := range d.names {
		out = append(out, n)
	}
	slices.Sort(out)
	return out
}
