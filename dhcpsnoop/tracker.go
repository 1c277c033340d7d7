package dhcpsnoop

import (
	"bytes"
	"errors"
	"net"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"
	"unique"
)

// TrackerConfig bounds the tracker's memory and sets its timings. Zero
// values take the defaults in brackets.
type TrackerConfig struct {
	// MaxDevices caps devices with a lease [4096]. A server-confirmed lease
	// for a new MAC beyond it is dropped and counted: bounded memory matters
	// more than the device (it still gets the no-MUD treatment).
	MaxDevices int
	// MaxPending caps MACs seen requesting without a confirmed lease, and
	// DHCPv6 transactions awaiting their Reply [1024]. The oldest is evicted:
	// a flood of spoofed requests only pushes out other unconfirmed ones.
	MaxPending int
	// PendingTTL is how long request details wait for a server's answer [2m].
	PendingTTL time.Duration
	// ExpiryGrace is added to a lease's end before it expires [0].
	ExpiryGrace time.Duration
	// FlagInterval suppresses a repeated flag (same MAC, kind and reason)
	// for this long [1m]: a device retrying every few seconds with a bad
	// URL is reported once, not forever.
	FlagInterval time.Duration
	// RatePerMAC and BurstPerMAC limit the DHCP messages handled per client
	// MAC (token bucket) [5/s, burst 30]; more are dropped and counted.
	RatePerMAC  float64
	BurstPerMAC int
}

func (c TrackerConfig) withDefaults() TrackerConfig {
	if c.MaxDevices <= 0 {
		c.MaxDevices = 4096
	}
	if c.MaxPending <= 0 {
		c.MaxPending = 1024
	}
	if c.PendingTTL <= 0 {
		c.PendingTTL = 2 * time.Minute
	}
	if c.FlagInterval <= 0 {
		c.FlagInterval = time.Minute
	}
	if c.RatePerMAC <= 0 {
		c.RatePerMAC = 5
	}
	if c.BurstPerMAC <= 0 {
		c.BurstPerMAC = 30
	}
	return c
}

// Per-device bounds, so that one device cannot grow our memory.
const (
	maxLearnedPerDevice = 16
	maxFlagsPerDevice   = 16
)

// Stats are the tracker's and snooper's counters. Drops are counted, never
// silent.
type Stats struct {
	Frames        uint64 // frames handed to the tracker
	Messages      uint64 // parsed DHCP messages
	NotDHCP       uint64 // frames that were not DHCP (should be ~0 behind the BPF filter)
	Malformed     uint64 // DHCP frames that did not parse
	RateLimited   uint64 // messages dropped by the per-MAC rate limit
	DeviceCap     uint64 // leases not tracked because MaxDevices was reached
	Evicted       uint64 // pending entries evicted because MaxPending was reached
	Unidentified  uint64 // messages whose client MAC could not be found
	FlagsDeduped  uint64 // flag events suppressed as repeats
	QueueDrops    uint64 // frames dropped because the capture queue was full (Snooper)
	EventDrops    uint64 // reserved: events are never dropped, the capture queue absorbs back-pressure
	Events        uint64 // events emitted
	Devices       uint64 // devices with a lease now
	PendingCount  uint64 // pending entries now
	NeighbourErrs uint64 // neighbour table reads that failed (Snooper)
	PortUnknown   uint64 // events whose MAC the bridge had no forwarding entry for (Snooper)
	PortErrs      uint64 // bridge port lookups that failed (Snooper)
	Ports         uint64 // bridge ports captured on now (Snooper, CapturePorts)
	LeaseFile     uint64 // leases read from the lease file (Snooper, Config.LeaseFile)
	LeaseFileBad  uint64 // lines of the lease file that were refused
	Present       uint64 // devices found present at start without a lease (Snooper)
}

type counters struct {
	frames, messages, notDHCP, malformed, rateLimited, deviceCap, evicted,
	unidentified, flagsDeduped, queueDrops, events, devices, pending, neighErrs,
	portUnknown, portErrs, ports, leaseFile, leaseFileBad, present atomic.Uint64
}

type hwKey [6]byte

func keyOf(mac net.HardwareAddr) (hwKey, bool) {
	var k hwKey
	if len(mac) != 6 {
		return k, false
	}
	copy(k[:], mac)
	return k, true
}

func (k hwKey) mac() net.HardwareAddr { return net.HardwareAddr(append([]byte(nil), k[:]...)) }

// device is what we know about one MAC. Pending devices have no lease yet.
// Thousands are kept for as long as their leases last, so it is kept
// small: the usual device has one or two DHCPv6 addresses and a URL other
// devices of its model share.
type device struct {
	key      hwKey
	relayed  bool
	iface    string
	hostname string
	clientID []byte // DHCPv4 option 61
	duid     []byte
	url4     mudURL // last valid URL announced over DHCPv4
	url6     mudURL
	seen     time.Time

	v4        netip.Addr
	v4Lease   time.Duration
	v4Expires time.Time // zero: infinite
	v6        []lease6  // at most maxAddrsPerMessage, in no order
	v6Lease   time.Duration
	learned   map[netip.Addr]time.Time
	flagged   map[string]time.Time
}

// lease6 is one DHCPv6 address of a device.
type lease6 struct {
	addr    netip.Addr
	expires time.Time // zero: infinite
}

func (d *device) hasLease() bool { return d.v4.IsValid() || len(d.v6) > 0 }

// leased reports whether a is one of the device's DHCPv6 addresses.
func (d *device) leased(a netip.Addr) bool { return indexAddr(d.v6, a) >= 0 }

func indexAddr(ls []lease6, a netip.Addr) int {
	return slices.IndexFunc(ls, func(l lease6) bool { return l.addr == a })
}

// mudURL is an announced MUD URL, interned: the devices of one model
// share one copy, and so do the events that name it. The zero value is no
// URL.
type mudURL struct{ h unique.Handle[string] }

func internURL(s string) mudURL {
	if s == "" {
		return mudURL{}
	}
	return mudURL{unique.Make(s)}
}

func (u mudURL) String() string {
	if u == (mudURL{}) {
		return ""
	}
	return u.h.Value()
}

type xidEntry struct {
	key     hwKey
	reqType string
	at      time.Time
}

type bucket struct {
	tokens float64
	last   time.Time
}

// Tracker is the lease state machine. It is not safe for concurrent use:
// one goroutine owns it (the Snooper's Run loop, or a test).
type Tracker struct {
	cfg     TrackerConfig
	bound   map[hwKey]*device
	pending map[hwKey]*device
	xid6    map[uint32]xidEntry
	buckets map[hwKey]*bucket
	c       *counters
}

// NewTracker returns an empty tracker.
func NewTracker(cfg TrackerConfig) *Tracker {
	return newTracker(cfg, &counters{})
}

func newTracker(cfg TrackerConfig, c *counters) *Tracker {
	return &Tracker{
		cfg:     cfg.withDefaults(),
		bound:   make(map[hwKey]*device),
		pending: make(map[hwKey]*device),
		xid6:    make(map[uint32]xidEntry),
		buckets: make(map[hwKey]*bucket),
		c:       c,
	}
}

// Stats returns the counters. Safe to call from any goroutine.
func (t *Tracker) Stats() Stats { return t.c.snapshot() }

func (c *counters) snapshot() Stats {
	return Stats{
		Frames: c.frames.Load(), Messages: c.messages.Load(), NotDHCP: c.notDHCP.Load(),
		Malformed: c.malformed.Load(), RateLimited: c.rateLimited.Load(), DeviceCap: c.deviceCap.Load(),
		Evicted: c.evicted.Load(), Unidentified: c.unidentified.Load(), FlagsDeduped: c.flagsDeduped.Load(),
		QueueDrops: c.queueDrops.Load(), Events: c.events.Load(), Devices: c.devices.Load(),
		PendingCount: c.pending.Load(), NeighbourErrs: c.neighErrs.Load(),
		PortUnknown: c.portUnknown.Load(), PortErrs: c.portErrs.Load(),
		Ports: c.ports.Load(), LeaseFile: c.leaseFile.Load(), LeaseFileBad: c.leaseFileBad.Load(), Present: c.present.Load(),
	}
}

// HandleFrame parses one captured Ethernet frame and applies it. The error
// is only for counting and debugging: a bad frame never stops the tracker.
func (t *Tracker) HandleFrame(frame []byte, iface string, now time.Time) ([]Event, error) {
	t.c.frames.Add(1)
	m, err := ParseFrame(frame)
	if err != nil {
		if errors.Is(err, ErrNotDHCP) {
			t.c.notDHCP.Add(1)
		} else {
			t.c.malformed.Add(1)
		}
		return nil, err
	}
	return t.Handle(m, iface, now), nil
}

// Handle applies one parsed message seen on iface at time now.
func (t *Tracker) Handle(m *Message, iface string, now time.Time) []Event {
	t.c.messages.Add(1)
	key, ok := t.clientKey(m)
	if !ok {
		t.c.unidentified.Add(1)
		return nil
	}
	// Limit per client MAC, in both directions: a server answering a flood
	// of spoofed MACs is limited per spoofed MAC, so real devices' ACKs
	// still get through.
	if !t.allow(key, now) {
		t.c.rateLimited.Add(1)
		return nil
	}
	var evs []Event
	if m.FromClient {
		evs = t.request(m, key, iface, now)
		for i := range evs {
			// The frame's own source is what the bridge learnt its port
			// from, whatever chaddr claims.
			evs[i].src = m.SrcMAC
		}
	} else {
		evs = t.reply(m, key, iface, now)
	}
	t.c.devices.Store(uint64(len(t.bound)))
	t.c.pending.Store(uint64(len(t.pending)))
	t.c.events.Add(uint64(len(evs)))
	return evs
}

func (t *Tracker) clientKey(m *Message) (hwKey, bool) {
	if m.Family == 6 && !m.FromClient {
		if x, ok := t.xid6[m.XID]; ok {
			return x.key, true
		}
	}
	return keyOf(m.ClientMAC)
}

func (t *Tracker) allow(k hwKey, now time.Time) bool {
	b := t.buckets[k]
	if b == nil {
		if len(t.buckets) >= t.cfg.MaxDevices+t.cfg.MaxPending {
			t.sweepBuckets(now)
		}
		if len(t.buckets) >= t.cfg.MaxDevices+t.cfg.MaxPending {
			// Full of busy MACs: a flood from spoofed addresses. Refusing
			// new MACs would lock real devices out, so evict one at random
			// (map order) in O(1); the flood is bounded by the capture
			// queue and the pending cap, not by this table.
			for k := range t.buckets {
				delete(t.buckets, k)
				break
			}
		}
		b = &bucket{tokens: float64(t.cfg.BurstPerMAC), last: now}
		t.buckets[k] = b
	}
	if dt := now.Sub(b.last).Seconds(); dt > 0 {
		b.tokens = min(float64(t.cfg.BurstPerMAC), b.tokens+dt*t.cfg.RatePerMAC)
		b.last = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

// sweepBuckets forgets buckets that have refilled: they hold no state.
func (t *Tracker) sweepBuckets(now time.Time) {
	full := time.Duration(float64(t.cfg.BurstPerMAC) / t.cfg.RatePerMAC * float64(time.Second))
	for k, b := range t.buckets {
		if now.Sub(b.last) >= full {
			delete(t.buckets, k)
		}
	}
}

// request records what a client says about itself and handles the
// client-side lease ends (release, decline).
func (t *Tracker) request(m *Message, key hwKey, iface string, now time.Time) []Event {
	var evs []Event
	dev := t.bound[key]
	if dev == nil {
		dev = t.pendingDevice(key, now)
	}
	dev.iface, dev.seen, dev.relayed = iface, now, m.Relayed
	if m.Hostname != "" {
		dev.hostname = m.Hostname
	}
	if m.Family == 4 {
		if len(m.ClientID) > 0 {
			dev.clientID = m.ClientID
		}
		if !m.Relayed && m.ClientMAC != nil && !bytes.Equal(m.ClientMAC, m.SrcMAC) {
			evs = t.flag(evs, dev, m.Family, KindMACMismatch, now,
				"chaddr "+m.ClientMAC.String()+" differs from frame source "+m.SrcMAC.String(), "")
		}
	} else {
		if len(m.ClientID) > 0 {
			dev.duid = m.ClientID
		}
		t.rememberXID(m.XID, key, m.Type, now)
	}
	if m.MUDURL != nil {
		evs = t.announce(evs, dev, m, now)
	}
	switch {
	case m.Family == 4 && m.Type == "RELEASE":
		if dev.v4.IsValid() && dev.v4 == m.ClientIP {
			evs = append(evs, t.end4(dev, KindReleased, now, "client released the lease"))
		}
	case m.Family == 4 && m.Type == "DECLINE":
		if dev.v4.IsValid() && dev.v4 == m.RequestedIP {
			evs = append(evs, t.end4(dev, KindDeclined, now, "client declined the address"))
		}
	case m.Family == 6 && (m.Type == "RELEASE" || m.Type == "DECLINE"):
		kind, reason := KindReleased, "client released the lease"
		if m.Type == "DECLINE" {
			kind, reason = KindDeclined, "client declined the address"
		}
		var removed []netip.Addr
		for _, a := range m.Addrs {
			if i := indexAddr(dev.v6, a.Addr); i >= 0 {
				dev.v6 = slices.Delete(dev.v6, i, i+1)
				removed = append(removed, a.Addr)
			}
		}
		if len(dev.v6) == 0 {
			dev.v6 = nil
		}
		if len(removed) > 0 {
			evs = append(evs, t.ended(dev, kind, 6, removed, now, reason))
		}
	}
	return evs
}

// announce validates a MUD option and reports what is new about it.
func (t *Tracker) announce(evs []Event, dev *device, m *Message, now time.Time) []Event {
	cur := &dev.url4
	if m.Family == 6 {
		cur = &dev.url6
	}
	url, err := ParseMUDURL(m.MUDURL)
	if err != nil {
		raw := ""
		var ue *URLError
		if errors.As(err, &ue) {
			raw = ue.Raw
		}
		// The device's current announcement is invalid: it has no usable
		// URL in this family until it sends a valid one.
		*cur = mudURL{}
		return t.flag(evs, dev, m.Family, KindInvalidURL, now, err.Error(), raw)
	}
	u := internURL(url)
	if u == *cur {
		return evs
	}
	if *cur != (mudURL{}) {
		evs = t.flag(evs, dev, m.Family, KindURLChanged, now, "was "+cur.String(), "")
	}
	*cur = u
	ev := t.event(KindAnnounced, dev, m.Family, now)
	ev.MUDURL = u.String()
	evs = append(evs, ev)
	if dev.url4 != (mudURL{}) && dev.url6 != (mudURL{}) && dev.url4 != dev.url6 {
		// RFC 8520 §10.1: "the same URL MUST be used".
		evs = t.flag(evs, dev, m.Family, KindURLMismatch, now,
			"DHCPv4 URL "+dev.url4.String()+" differs from DHCPv6 URL "+dev.url6.String(), "")
	}
	return evs
}

// reply applies a server's confirmation of a lease.
func (t *Tracker) reply(m *Message, key hwKey, iface string, now time.Time) []Event {
	switch {
	case m.Family == 4 && m.Type == "ACK" && m.YourIP.IsValid():
		dev := t.promote(key, iface, now)
		if dev == nil {
			return nil
		}
		prev := dev.v4
		dev.v4, dev.v4Lease, dev.v4Expires = m.YourIP, m.LeaseTime, expiry(now, m.LeaseTime)
		if m.Relayed {
			dev.relayed = true
		}
		switch {
		case !prev.IsValid():
			ev := t.event(KindBound, dev, 4, now)
			ev.Added = []netip.Addr{m.YourIP}
			return []Event{ev}
		case prev == m.YourIP:
			return []Event{t.event(KindRenewed, dev, 4, now)}
		default:
			ev := t.event(KindAddressChanged, dev, 4, now)
			ev.Added, ev.Removed = []netip.Addr{m.YourIP}, []netip.Addr{prev}
			return []Event{ev}
		}
	case m.Family == 6 && m.Type == "REPLY":
		x, ok := t.xid6[m.XID]
		if ok {
			delete(t.xid6, m.XID)
			switch x.reqType {
			case "RELEASE", "DECLINE", "CONFIRM", "INFORMATION-REQUEST":
				return nil // answers that confirm no lease
			}
		}
		usable := func(a LeaseAddr) bool { return a.Valid > 0 && a.Addr.Is6() && !a.Addr.Is4In6() }
		n := 0
		for _, a := range m.Addrs {
			if usable(a) {
				n++
			}
		}
		if n == 0 {
			return nil
		}
		// Sized to fit: it is kept for as long as the lease lasts.
		fresh := make([]lease6, 0, n)
		var lease time.Duration
		for _, a := range m.Addrs {
			if !usable(a) {
				continue
			}
			l := lease6{addr: a.Addr, expires: expiry(now, a.Valid)}
			if i := indexAddr(fresh, a.Addr); i >= 0 {
				fresh[i] = l // repeated: the last one counts
			} else {
				fresh = append(fresh, l)
			}
			lease = max(lease, a.Valid)
		}
		dev := t.promote(key, iface, now)
		if dev == nil {
			return nil
		}
		var added, removed []netip.Addr
		for _, l := range fresh {
			if !dev.leased(l.addr) {
				added = append(added, l.addr)
			}
		}
		for _, l := range dev.v6 {
			if indexAddr(fresh, l.addr) < 0 {
				removed = append(removed, l.addr)
			}
		}
		wasBound := len(dev.v6) > 0
		dev.v6, dev.v6Lease = fresh, lease
		for _, l := range fresh {
			delete(dev.learned, l.addr) // now leased, no longer only learned
		}
		if m.Relayed {
			dev.relayed = true
		}
		kind := KindRenewed
		switch {
		case !wasBound:
			kind = KindBound
		case len(added) > 0 || len(removed) > 0:
			kind = KindAddressChanged
		}
		ev := t.event(kind, dev, 6, now)
		ev.Added, ev.Removed = sortAddrs(added), sortAddrs(removed)
		return []Event{ev}
	}
	return nil
}

// promote returns the bound device for key, moving a pending one (with what
// its requests said) into the bound set. Nil when MaxDevices is reached.
func (t *Tracker) promote(key hwKey, iface string, now time.Time) *device {
	if dev := t.bound[key]; dev != nil {
		dev.iface, dev.seen = iface, now
		return dev
	}
	if len(t.bound) >= t.cfg.MaxDevices {
		t.c.deviceCap.Add(1)
		return nil
	}
	dev := t.pending[key]
	if dev == nil {
		dev = &device{key: key}
	}
	delete(t.pending, key)
	dev.iface, dev.seen = iface, now
	t.bound[key] = dev
	return dev
}

func (t *Tracker) pendingDevice(key hwKey, now time.Time) *device {
	if dev := t.pending[key]; dev != nil {
		return dev
	}
	if len(t.pending) >= t.cfg.MaxPending {
		var oldest *device
		for _, d := range t.pending {
			if oldest == nil || d.seen.Before(oldest.seen) {
				oldest = d
			}
		}
		delete(t.pending, oldest.key)
		t.c.evicted.Add(1)
	}
	dev := &device{key: key, seen: now}
	t.pending[key] = dev
	return dev
}

func (t *Tracker) rememberXID(xid uint32, key hwKey, typ string, now time.Time) {
	if _, ok := t.xid6[xid]; !ok && len(t.xid6) >= t.cfg.MaxPending {
		var oldestXID uint32
		var oldest time.Time
		first := true
		for id, x := range t.xid6 {
			if first || x.at.Before(oldest) {
				oldestXID, oldest, first = id, x.at, false
			}
		}
		delete(t.xid6, oldestXID)
		t.c.evicted.Add(1)
	}
	t.xid6[xid] = xidEntry{key: key, reqType: typ, at: now}
}

// flag appends a flag event unless the same one was reported recently.
func (t *Tracker) flag(evs []Event, dev *device, family int, kind Kind, now time.Time, reason, raw string) []Event {
	id := string(kind) + "\x00" + reason
	if last, ok := dev.flagged[id]; ok && now.Sub(last) < t.cfg.FlagInterval {
		t.c.flagsDeduped.Add(1)
		return evs
	}
	if dev.flagged == nil {
		dev.flagged = make(map[string]time.Time)
	}
	if len(dev.flagged) >= maxFlagsPerDevice {
		for k, at := range dev.flagged {
			if now.Sub(at) >= t.cfg.FlagInterval {
				delete(dev.flagged, k)
			}
		}
		if len(dev.flagged) >= maxFlagsPerDevice {
			t.c.flagsDeduped.Add(1)
			return evs
		}
	}
	dev.flagged[id] = now
	ev := t.event(kind, dev, family, now)
	ev.Reason, ev.Raw = reason, raw
	return append(evs, ev)
}

// end4 ends the DHCPv4 lease of dev.
func (t *Tracker) end4(dev *device, kind Kind, now time.Time, reason string) Event {
	old := dev.v4
	dev.v4, dev.v4Lease, dev.v4Expires = netip.Addr{}, 0, time.Time{}
	return t.ended(dev, kind, 4, []netip.Addr{old}, now, reason)
}

// ended builds the event for addresses that ended and forgets the device
// when it has no lease left (its learned addresses go with it).
func (t *Tracker) ended(dev *device, kind Kind, family int, removed []netip.Addr, now time.Time, reason string) Event {
	if !dev.hasLease() {
		for a := range dev.learned {
			removed = append(removed, a)
		}
		dev.learned = nil
		delete(t.bound, dev.key)
		// Keep what the device said about itself for a while, as if it
		// had just asked: a device that releases and comes back soon keeps
		// its URL without re-announcing it.
		dev.seen = now
		if len(t.pending) < t.cfg.MaxPending {
			t.pending[dev.key] = dev
		}
	}
	ev := t.event(kind, dev, family, now)
	ev.Removed = sortAddrs(removed)
	ev.Gone = !dev.hasLease()
	ev.Reason = reason
	t.c.devices.Store(uint64(len(t.bound)))
	return ev
}

// Expire ends the leases whose time has passed and forgets stale pending
// state. The Snooper calls it from its sweep timer; tests call it with any
// clock.
func (t *Tracker) Expire(now time.Time) []Event {
	var evs []Event
	keys := make([]hwKey, 0, len(t.bound))
	for k := range t.bound {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b hwKey) int { return bytes.Compare(a[:], b[:]) })
	for _, k := range keys {
		dev := t.bound[k]
		if dev.v4.IsValid() && t.past(dev.v4Expires, now) {
			lease := dev.v4Lease
			ev := t.end4(dev, KindExpired, now, "lease of "+lease.String()+" not renewed")
			ev.LeaseTime = lease
			evs = append(evs, ev)
		}
		var gone []netip.Addr
		dev.v6 = slices.DeleteFunc(dev.v6, func(l lease6) bool {
			if t.past(l.expires, now) {
				gone = append(gone, l.addr)
				return true
			}
			return false
		})
		if len(dev.v6) == 0 {
			dev.v6 = nil
		}
		if len(gone) > 0 {
			ev := t.ended(dev, KindExpired, 6, gone, now, "lease of "+dev.v6Lease.String()+" not renewed")
			ev.LeaseTime = dev.v6Lease
			evs = append(evs, ev)
		}
	}
	for k, d := range t.pending {
		if now.Sub(d.seen) > t.cfg.PendingTTL {
			delete(t.pending, k)
		}
	}
	for id, x := range t.xid6 {
		if now.Sub(x.at) > t.cfg.PendingTTL {
			delete(t.xid6, id)
		}
	}
	t.sweepBuckets(now)
	t.c.devices.Store(uint64(len(t.bound)))
	t.c.pending.Store(uint64(len(t.pending)))
	t.c.events.Add(uint64(len(evs)))
	return evs
}

func (t *Tracker) past(exp, now time.Time) bool {
	return !exp.IsZero() && now.After(exp.Add(t.cfg.ExpiryGrace))
}

// Learn adds IPv6 addresses seen for a MAC in the neighbour table (SLAAC,
// privacy addresses) to its binding. Only devices with a lease are
// considered, and only global unicast addresses; link-local ones are not
// routed and need no enforcement entry.
func (t *Tracker) Learn(mac net.HardwareAddr, addrs []netip.Addr, now time.Time) []Event {
	key, ok := keyOf(mac)
	if !ok {
		return nil
	}
	dev := t.bound[key]
	if dev == nil {
		return nil
	}
	var added []netip.Addr
	for _, a := range addrs {
		a = a.Unmap()
		if !a.Is6() || !a.IsGlobalUnicast() || a.IsLinkLocalUnicast() {
			continue
		}
		if dev.leased(a) {
			continue
		}
		if _, ok := dev.learned[a]; !ok {
			if len(dev.learned) >= maxLearnedPerDevice {
				continue
			}
			added = append(added, a)
		}
		if dev.learned == nil {
			dev.learned = make(map[netip.Addr]time.Time)
		}
		dev.learned[a] = now
	}
	if len(added) == 0 {
		return nil
	}
	ev := t.event(KindAddressesLearned, dev, 6, now)
	ev.Added = sortAddrs(added)
	ev.Reason = "seen in the neighbour table"
	t.c.events.Add(1)
	return []Event{ev}
}

// Bound reports whether mac has a lease.
func (t *Tracker) Bound(mac net.HardwareAddr) bool {
	key, ok := keyOf(mac)
	return ok && t.bound[key] != nil
}

// Bindings returns a snapshot of every device with a lease, as bound events
// (Kind is KindBound), sorted by MAC.
func (t *Tracker) Bindings(now time.Time) []Event {
	out := make([]Event, 0, len(t.bound))
	for _, d := range t.bound {
		family := 4
		if !d.v4.IsValid() {
			family = 6
		}
		out = append(out, t.event(KindBound, d, family, now))
	}
	slices.SortFunc(out, func(a, b Event) int { return bytes.Compare(a.MAC, b.MAC) })
	return out
}

// event describes dev's current binding.
func (t *Tracker) event(kind Kind, dev *device, family int, now time.Time) Event {
	ev := Event{
		Kind: kind, Time: now, Interface: dev.iface, Family: family, MAC: dev.key.mac(),
		IPv4: dev.v4, Hostname: dev.hostname, Relayed: dev.relayed,
	}
	for _, l := range dev.v6 {
		ev.IPv6 = append(ev.IPv6, l.addr)
	}
	for a := range dev.learned {
		ev.IPv6 = append(ev.IPv6, a)
	}
	ev.IPv6 = sortAddrs(ev.IPv6)
	switch family {
	case 4:
		ev.LeaseTime, ev.Expires, ev.ClientID = dev.v4Lease, dev.v4Expires, dev.clientID
		ev.MUDURL = cmpOr(dev.url4, dev.url6).String()
	case 6:
		ev.LeaseTime, ev.ClientID = dev.v6Lease, dev.duid
		for _, l := range dev.v6 {
			if ev.Expires.IsZero() || l.expires.After(ev.Expires) {
				ev.Expires = l.expires
			}
		}
		ev.MUDURL = cmpOr(dev.url6, dev.url4).String()
	}
	return ev
}

func cmpOr(a, b mudURL) mudURL {
	if a != (mudURL{}) {
		return a
	}
	return b
}

func expiry(now time.Time, lease time.Duration) time.Time {
	if lease <= 0 || lease == Infinite {
		// No lease time (a broken server) is treated like infinite rather
		// than as already expired: the device is visibly there.
		return time.Time{}
	}
	return now.Add(lease)
}

func sortAddrs(as []netip.Addr) []netip.Addr {
	slices.SortFunc(as, netip.Addr.Compare)
	return as
}
