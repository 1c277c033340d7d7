package neighbor

import (
	"bytes"
	"cmp"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"time"
)

// macKey is a MAC address as a map key.
type macKey [6]byte

func (k macKey) hw() net.HardwareAddr { return net.HardwareAddr(bytes.Clone(k[:])) }

// keyOf returns mac as a key when it is a unicast Ethernet address (not
// zero, multicast or broadcast).
func keyOf(mac net.HardwareAddr) (macKey, bool) {
	if len(mac) != 6 || mac[0]&1 != 0 {
		return macKey{}, false
	}
	k := macKey(mac)
	return k, k != macKey{}
}

// claim is one sighting of an address held by a MAC.
type claim struct {
	mac       macKey
	addr      netip.Addr
	source    Source
	tentative bool
	at        time.Time // when it was seen; not after now
	iface     string
}

// binding is an address a device holds.
type binding struct {
	addr   netip.Addr
	dev    *device
	first  time.Time
	seen   time.Time // zero: a pinned address not seen yet
	told   time.Time // last learned or refreshed event
	source Source
	iface  string
	// tentative: claimed by duplicate address detection only, so far.
	tentative, pinned, linkLocal bool
}

// device is one MAC and what it holds. Devices are in a list, most recently
// seen first, to find the one to evict.
type device struct {
	key      macKey
	addrs    []*binding
	seen     time.Time
	keep     bool
	firstUse [2]bool // pending first-use binding, IPv4 and IPv6
	bucket   bucket
	prev     *device
	next     *device
}

// protected reports whether the caller cares about the device: it is
// kept, waits for its first use, or has a pinned address. Such a device is
// never evicted, and the global rate limit does not apply to it.
func (d *device) protected() bool {
	if d.keep || d.firstUse[0] || d.firstUse[1] {
		return true
	}
	for _, b := range d.addrs {
		if b.pinned {
			return true
		}
	}
	return false
}

// family is 0 for IPv4, 1 for IPv6.
func family(a netip.Addr) int {
	if a.Is4() {
		return 0
	}
	return 1
}

// bucket is a token bucket.
type bucket struct {
	tokens float64
	at     time.Time
}

// take takes a token if there is one; a new bucket is full.
func (b *bucket) take(now time.Time, rate, burst float64) bool {
	switch {
	case b.at.IsZero():
		b.tokens, b.at = burst, now
	case now.After(b.at):
		b.tokens = min(burst, b.tokens+now.Sub(b.at).Seconds()*rate)
		b.at = now
	}
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}

type conflictKey struct {
	mac  macKey
	addr netip.Addr
}

// limits are the table's bounds and times, defaults applied.
type limits struct {
	maxPerMAC             [2]int // IPv4, IPv6
	maxMACs, maxAddrs     int
	ttl                   [2]time.Duration
	dadWindow             time.Duration
	refreshEvery          time.Duration
	conflictEvery         time.Duration
	failedGrace           time.Duration
	ratePerMAC, burstMAC  float64
	newMACRate, newBurst  float64
	globalRate, globBurst float64
}

// Bounds of the table's side maps: reported conflicts and bridge ports.
const (
	maxConflicts = 4096
)

// table is the learner's state: who holds which address. It is not safe for
// concurrent use: the Learner's mutex guards it. Every method that changes
// something appends the events to out.
type table struct {
	lim       limits
	devs      map[macKey]*device
	owners    map[netip.Addr]*binding
	head      *device // most recently seen
	tail      *device
	learned   int // bindings that are not pinned (what maxAddrs bounds)
	prefixes  []netip.Prefix
	own       map[netip.Addr]macKey // the gateway's own addresses
	ports     map[macKey]string     // bridge port of a MAC
	conflicts map[conflictKey]time.Time
	newMACs   bucket
	global    bucket
	st        Stats
	out       []Event
}

func newTable(lim limits, prefixes []netip.Prefix) *table {
	t := &table{
		lim:       lim,
		devs:      map[macKey]*device{},
		owners:    map[netip.Addr]*binding{},
		own:       map[netip.Addr]macKey{},
		ports:     map[macKey]string{},
		conflicts: map[conflictKey]time.Time{},
	}
	t.prefixes = normalPrefixes(prefixes)
	return t
}

func normalPrefixes(ps []netip.Prefix) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ps))
	for _, p := range ps {
		if p.IsValid() {
			out = append(out, p.Masked())
		}
	}
	slices.SortFunc(out, func(a, b netip.Prefix) int {
		return cmp.Or(a.Addr().Compare(b.Addr()), cmp.Compare(a.Bits(), b.Bits()))
	})
	return slices.Compact(out)
}

// inLAN reports whether a is a host address inside one of the prefixes.
func (t *table) inLAN(a netip.Addr) bool {
	for _, p := range t.prefixes {
		if p.Contains(a) && !reserved(p, a) {
			return true
		}
	}
	return false
}

// reserved reports whether a is an address of prefix p that no host holds:
// an IPv4 network's address and broadcast address, an IPv6 subnet-router
// anycast address (RFC 4291 §2.6.1) and the reserved subnet anycast
// addresses of a /64 (RFC 2526).
func reserved(p netip.Prefix, a netip.Addr) bool {
	host := a.BitLen() - p.Bits()
	if host >= 2 && a == p.Addr() {
		return true
	}
	if a.Is4() {
		if host < 2 {
			return false
		}
		b := a.As4()
		v := uint32(b[0])<<24 | uint32(b[1])<<16 | uint32(b[2])<<8 | uint32(b[3])
		mask := uint32(1)<<host - 1
		return v&mask == mask
	}
	b := a.As16()
	return p.Bits() == 64 && b[8] == 0xfd && b[9] == 0xff && b[10] == 0xff && b[11] == 0xff &&
		b[12] == 0xff && b[13] == 0xff && b[14] == 0xff && b[15] >= 0x80
}

func (t *table) ttl(a netip.Addr) time.Duration { return t.lim.ttl[family(a)] }

// alive reports whether b's holder still holds it: pinned, or seen within
// the TTL.
func (t *table) alive(b *binding, now time.Time) bool {
	return b.pinned || now.Sub(b.seen) < t.ttl(b.addr)
}

// observe applies one sighting.
func (t *table) observe(c claim, now time.Time) {
	t.st.Claims++
	a := c.addr
	if c.at.After(now) || c.at.IsZero() {
		c.at = now
	}
	ll := a.Is6() && a.IsLinkLocalUnicast()
	if !unicast(a) || a.Zone() != "" || (!ll && !t.inLAN(a)) {
		t.st.OutsideLAN++
		return
	}
	if now.Sub(c.at) >= t.ttl(a) {
		return // a kernel entry last confirmed too long ago to count
	}
	if gw, ok := t.own[a]; ok {
		if gw != c.mac {
			t.conflict(c, gw, "the gateway's own address", now)
		}
		return
	}
	b := t.owners[a]
	if b != nil && b.dev.key == c.mac {
		// Another sighting of what the MAC holds changes nothing but
		// times, costs no memory, and is not rate-limited: a device's
		// own traffic must not use up the budget its next new address
		// needs.
		t.refresh(b, c, now)
		return
	}
	dev := t.devs[c.mac]
	// Restored sightings are the gateway's own record, not frames: a
	// restart with thousands of devices must not spend the rate limits.
	if c.source != SourceRestored && !t.admit(dev, now) {
		t.st.RateLimited++
		return
	}
	switch {
	case b == nil:
		t.learn(dev, c, now)
	case b.pinned:
		t.conflict(c, b.dev.key, "pinned to another MAC", now)
	case b.tentative && !c.tentative && now.Sub(b.first) < t.lim.dadWindow:
		// RFC 4862 §5.4.3/§5.4.4: an advertisement (or a use) of a
		// tentative address by another node is a duplicate, and the
		// prober must not use it. The defender keeps it.
		t.st.Conflicts++
		t.emit(b, KindConflict, now, func(ev *Event) {
			ev.Holder, ev.Source = c.mac.hw(), c.source
			ev.Reason = "duplicate address detection failed: another MAC defended the address"
		})
		t.drop(b, now, "duplicate address detection failed: another MAC defended the address")
		t.learn(dev, c, now)
	case t.alive(b, now):
		t.conflict(c, b.dev.key, "held by another MAC", now)
	default:
		t.drop(b, now, fmt.Sprintf("not seen for %v and claimed by another MAC", t.ttl(a)))
		t.learn(dev, c, now)
	}
}

// admit applies the rate limits: a known MAC's own bucket (and the global
// one unless the caller protects it); a new MAC's admission rate and the
// global one.
func (t *table) admit(dev *device, now time.Time) bool {
	l := &t.lim
	if dev != nil {
		if !dev.bucket.take(now, l.ratePerMAC, l.burstMAC) {
			return false
		}
		return dev.protected() || t.global.take(now, l.globalRate, l.globBurst)
	}
	return t.newMACs.take(now, l.newMACRate, l.newBurst) && t.global.take(now, l.globalRate, l.globBurst)
}

// learn binds c's address, unheld, to c's MAC (dev, or a new device).
func (t *table) learn(dev *device, c claim, now time.Time) {
	if dev == nil {
		if dev = t.newDevice(c.mac, now, false); dev == nil {
			t.st.Refused++
			return
		}
	}
	fam := family(c.addr)
	if dev.count(fam) >= t.lim.maxPerMAC[fam] {
		// The least recently seen goes, the new address included: a
		// kernel entry last confirmed long ago does not push out an
		// address seen since.
		v := dev.leastRecent(fam)
		t.st.Replaced++
		if c.at.Before(v.seen) {
			return
		}
		t.drop(v, now, "per-device bound: the least recently seen address makes room")
	}
	if t.learned >= t.lim.maxAddrs && !t.evictFor(dev, now) {
		t.st.Refused++
		return
	}
	b := &binding{
		addr: c.addr, dev: dev, first: c.at, seen: c.at, told: now, source: c.source, iface: c.iface,
		tentative: c.tentative, linkLocal: c.addr.Is6() && c.addr.IsLinkLocalUnicast(),
	}
	dev.addrs = append(dev.addrs, b)
	t.owners[c.addr] = b
	t.learned++
	t.touch(dev, now)
	t.firstUse(b, c)
	t.emit(b, KindLearned, c.at, nil)
}

// refresh records another sighting of b by its holder.
func (t *table) refresh(b *binding, c claim, now time.Time) {
	if c.at.After(b.seen) {
		b.seen = c.at
	}
	b.source = c.source
	if c.iface != "" {
		b.iface = c.iface
	}
	t.touch(b.dev, now)
	confirmed := b.tentative && !c.tentative
	if !c.tentative {
		b.tentative = false
	}
	pinned := t.firstUse(b, c)
	if confirmed || pinned || now.Sub(b.told) >= t.lim.refreshEvery {
		b.told = now
		t.emit(b, KindRefreshed, c.at, nil)
	}
}

// firstUse pins b when its device waits for the first address of b's
// family it uses (not a link-local address, and not merely probed).
func (t *table) firstUse(b *binding, c claim) bool {
	fam := family(b.addr)
	if !b.dev.firstUse[fam] || b.linkLocal || c.tentative || b.pinned {
		return false
	}
	b.dev.firstUse[fam] = false
	b.pinned = true
	t.learned--
	return true
}

// conflict reports that c's MAC claimed an address holder holds; the same
// MAC and address are reported at most once per conflictEvery.
func (t *table) conflict(c claim, holder macKey, reason string, now time.Time) {
	t.st.Conflicts++
	k := conflictKey{c.mac, c.addr}
	if last, ok := t.conflicts[k]; ok && now.Sub(last) < t.lim.conflictEvery {
		return
	}
	if len(t.conflicts) >= maxConflicts {
		clear(t.conflicts)
	}
	t.conflicts[k] = now
	t.out = append(t.out, Event{
		Kind: KindConflict, Time: c.at, MAC: c.mac.hw(), Addr: c.addr, Source: c.source,
		Interface: c.iface, Port: t.ports[c.mac], LinkLocal: c.addr.Is6() && c.addr.IsLinkLocalUnicast(),
		Tentative: c.tentative, Holder: holder.hw(), Reason: reason,
	})
	t.st.Events++
}

// emit appends an event about b; edit, if not nil, adds to it.
func (t *table) emit(b *binding, kind Kind, at time.Time, edit func(*Event)) {
	ev := Event{
		Kind: kind, Time: at, MAC: b.dev.key.hw(), Addr: b.addr, Source: b.source,
		Interface: b.iface, Port: t.ports[b.dev.key], LinkLocal: b.linkLocal, Tentative: b.tentative, Pinned: b.pinned,
	}
	if edit != nil {
		edit(&ev)
	}
	t.out = append(t.out, ev)
	t.st.Events++
}

// drop removes b and reports it expired for reason.
func (t *table) drop(b *binding, now time.Time, reason string) {
	t.remove(b)
	t.emit(b, KindExpired, now, func(ev *Event) { ev.Reason = reason })
}

// remove takes b out of the table without an event.
func (t *table) remove(b *binding) {
	if t.owners[b.addr] == b {
		delete(t.owners, b.addr)
	}
	d := b.dev
	if i := slices.Index(d.addrs, b); i >= 0 {
		d.addrs = slices.Delete(d.addrs, i, i+1)
	}
	if !b.pinned {
		t.learned--
	}
}

func (d *device) count(fam int) int {
	n := 0
	for _, b := range d.addrs {
		if !b.pinned && family(b.addr) == fam {
			n++
		}
	}
	return n
}

// leastRecent is the device's least recently seen address of family fam
// that is not pinned.
func (d *device) leastRecent(fam int) *binding {
	var v *binding
	for _, b := range d.addrs {
		if !b.pinned && family(b.addr) == fam && (v == nil || b.seen.Before(v.seen)) {
			v = b
		}
	}
	return v
}

// newDevice adds a device for mac, evicting the least recently seen
// unprotected device when the table is full; when none may go, it returns
// nil, unless force (the caller's own requests are not hostile input, and
// may go beyond the bound).
func (t *table) newDevice(mac macKey, now time.Time, force bool) *device {
	if len(t.devs) >= t.lim.maxMACs && !t.evictOne(nil, false, now) && !force {
		return nil
	}
	d := &device{key: mac, seen: now}
	t.devs[mac] = d
	t.pushFront(d)
	return d
}

// evictFor evicts least recently seen devices (never keep, never a
// protected one) until there is room for another address.
func (t *table) evictFor(keep *device, now time.Time) bool {
	for t.learned >= t.lim.maxAddrs {
		if !t.evictOne(keep, true, now) {
			return false
		}
	}
	return true
}

// evictOne drops the least recently seen device that is not protected
// and not keep (with addresses only, when withAddrs), with its addresses.
func (t *table) evictOne(keep *device, withAddrs bool, now time.Time) bool {
	for d := t.tail; d != nil; d = d.prev {
		if d == keep || d.protected() || (withAddrs && len(d.addrs) == 0) {
			continue
		}
		t.st.Evicted++
		for len(d.addrs) > 0 {
			t.drop(d.addrs[0], now, "evicted: the table is full")
		}
		t.removeDevice(d)
		return true
	}
	return false
}

func (t *table) removeDevice(d *device) {
	for _, b := range d.addrs {
		t.remove(b)
	}
	delete(t.devs, d.key)
	t.unlink(d)
}

func (t *table) touch(d *device, now time.Time) {
	d.seen = now
	if t.head != d {
		t.unlink(d)
		t.pushFront(d)
	}
}

func (t *table) pushFront(d *device) {
	d.prev, d.next = nil, t.head
	if t.head != nil {
		t.head.prev = d
	}
	t.head = d
	if t.tail == nil {
		t.tail = d
	}
}

func (t *table) unlink(d *device) {
	if d.prev != nil {
		d.prev.next = d.next
	} else if t.head == d {
		t.head = d.next
	}
	if d.next != nil {
		d.next.prev = d.prev
	} else if t.tail == d {
		t.tail = d.prev
	}
	d.prev, d.next = nil, nil
}

// device returns mac's device, adding it when it is missing.
func (t *table) device(mac macKey, now time.Time) *device {
	if d := t.devs[mac]; d != nil {
		return d
	}
	return t.newDevice(mac, now, true)
}

// sweep expires addresses not seen for their TTL, forgets devices that
// hold nothing and were not seen for as long, and old conflict reports.
func (t *table) sweep(now time.Time) {
	from := len(t.out)
	maxTTL := max(t.lim.ttl[0], t.lim.ttl[1])
	for _, d := range t.devs {
		for i := 0; i < len(d.addrs); {
			b := d.addrs[i]
			if b.pinned || t.alive(b, now) {
				i++
				continue
			}
			t.st.Expired++
			t.drop(b, now, fmt.Sprintf("not seen for %v", t.ttl(b.addr)))
		}
		if len(d.addrs) == 0 && !d.protected() && now.Sub(d.seen) >= maxTTL {
			t.removeDevice(d)
		}
	}
	// Map order is random; events in address order are easier to follow.
	slices.SortFunc(t.out[from:], func(a, b Event) int {
		return cmp.Or(bytes.Compare(a.MAC, b.MAC), a.Addr.Compare(b.Addr))
	})
	for k, at := range t.conflicts {
		if now.Sub(at) >= t.lim.conflictEvery {
			delete(t.conflicts, k)
		}
	}
}

// failed applies the kernel's word that addr did not answer its probes
// (NUD_FAILED): unless it was seen within failedGrace, its holder (mac,
// when the kernel gave one) loses it.
func (t *table) failed(addr netip.Addr, mac macKey, now time.Time) {
	b := t.owners[addr]
	if b == nil || b.pinned || (mac != macKey{} && mac != b.dev.key) || now.Sub(b.seen) < t.lim.failedGrace {
		return
	}
	t.st.Expired++
	t.drop(b, now, "the kernel's neighbour entry failed: no answer to its probes")
}

// pin binds addr to mac for good.
func (t *table) pin(mac macKey, addr netip.Addr, now time.Time) error {
	if !unicast(addr) || addr.Zone() != "" {
		return fmt.Errorf("neighbor: %v is not a unicast address", addr)
	}
	if gw, ok := t.own[addr]; ok && gw != mac {
		return fmt.Errorf("neighbor: %v is the gateway's own address", addr)
	}
	b := t.owners[addr]
	if b != nil && b.dev.key != mac {
		if b.pinned {
			return fmt.Errorf("neighbor: %v is pinned to %v", addr, b.dev.key.hw())
		}
		t.drop(b, now, "pinned to another MAC")
		b = nil
	}
	if b != nil {
		if !b.pinned {
			b.pinned = true
			t.learned--
		}
		return nil
	}
	d := t.device(mac, now)
	b = &binding{addr: addr, dev: d, first: now, told: now, source: SourceAdmin, pinned: true,
		linkLocal: addr.Is6() && addr.IsLinkLocalUnicast()}
	d.addrs = append(d.addrs, b)
	t.owners[addr] = b
	return nil
}

// unpin makes addr, pinned to mac, an ordinary learned address, aging from
// when it was last seen; one never seen goes.
func (t *table) unpin(mac macKey, addr netip.Addr, now time.Time) {
	b := t.owners[addr]
	if b == nil || b.dev.key != mac || !b.pinned {
		return
	}
	if b.seen.IsZero() {
		t.remove(b)
		return
	}
	b.pinned = false
	t.learned++
	d, fam := b.dev, family(addr)
	for d.count(fam) > t.lim.maxPerMAC[fam] {
		t.st.Replaced++
		t.drop(d.leastRecent(fam), now, "per-device bound: the least recently seen address makes room")
	}
	if t.learned > t.lim.maxAddrs && !t.evictFor(d, now) && t.owners[addr] == b {
		t.drop(b, now, "unpinned, and the table is full")
	}
}

// release drops addr from its holder unless it is pinned.
func (t *table) release(addr netip.Addr, now time.Time) bool {
	b := t.owners[addr]
	if b == nil || b.pinned {
		return false
	}
	t.drop(b, now, "released")
	return true
}

// setPrefixes replaces the LAN prefixes; learned addresses outside them go.
func (t *table) setPrefixes(ps []netip.Prefix, now time.Time) {
	t.prefixes = normalPrefixes(ps)
	var out []*binding
	for a, b := range t.owners {
		if !b.pinned && !b.linkLocal && !t.inLAN(a) {
			out = append(out, b)
		}
	}
	slices.SortFunc(out, func(a, b *binding) int { return a.addr.Compare(b.addr) })
	for _, b := range out {
		t.drop(b, now, "outside the LAN prefixes")
	}
}

// setOwn replaces the gateway's own addresses; a device that holds one
// loses it.
func (t *table) setOwn(own map[netip.Addr]macKey, now time.Time) {
	t.own = own
	for a, mac := range own {
		if b := t.owners[a]; b != nil && b.dev.key != mac {
			t.drop(b, now, "the gateway's own address")
		}
	}
}

// setPort records the bridge port behind mac ("" forgets it).
func (t *table) setPort(mac macKey, port string) {
	if port == "" {
		delete(t.ports, mac)
		return
	}
	if _, ok := t.ports[mac]; !ok && len(t.ports) >= 2*t.lim.maxMACs {
		// Full: make room among MACs the table does not track, or
		// leave this one out.
		for k := range t.ports {
			if t.devs[k] == nil {
				delete(t.ports, k)
			}
		}
		if len(t.ports) >= 2*t.lim.maxMACs && t.devs[mac] == nil {
			return
		}
	}
	t.ports[mac] = port
}

// bindingOf describes b.
func (t *table) bindingOf(b *binding) Binding {
	return Binding{
		MAC: b.dev.key.hw(), Addr: b.addr, Source: b.source, FirstSeen: b.first, LastSeen: b.seen,
		Interface: b.iface, Port: t.ports[b.dev.key], LinkLocal: b.linkLocal, Tentative: b.tentative, Pinned: b.pinned,
	}
}

// addrs lists what mac holds, in address order.
func (t *table) addrs(mac macKey) []Binding {
	d := t.devs[mac]
	if d == nil {
		return nil
	}
	out := make([]Binding, 0, len(d.addrs))
	for _, b := range d.addrs {
		out = append(out, t.bindingOf(b))
	}
	slices.SortFunc(out, func(a, b Binding) int { return a.Addr.Compare(b.Addr) })
	return out
}

// stats returns the table's counters with its sizes.
func (t *table) stats() Stats {
	s := t.st
	s.MACs = uint64(len(t.devs))
	s.Addrs = uint64(len(t.owners))
	return s
}
