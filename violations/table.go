package violations

import (
	"net"
	"net/netip"
	"sort"
	"sync"
	"time"
)

// Defaults of the Table's bounds (Config).
const (
	DefaultMaxRecords    = 4096
	DefaultMaxPerDevice  = 64
	DefaultRate          = 1.0 // deliveries per second per device
	DefaultBurst         = 10
	DefaultUpdatesBuffer = 256
	DefaultMetricDevices = 32
)

// Violation is one aggregated violation: the drops of one device, in one
// direction, of one kind, to or from one peer, protocol and port.
type Violation struct {
	// MAC is the device's MAC; nil when it is not known (a routed in
	// packet, and Config.DeviceOf did not know the address).
	MAC net.HardwareAddr
	// DeviceAddr is the device's address in the latest drop (for a
	// source-guard drop, the address it was not allowed to send from).
	DeviceAddr netip.Addr
	Direction  Direction
	Kind       Kind
	// Peer is the other side: the destination of an out packet, the
	// source of an in packet. PeerName is what Config.NameOf said of it
	// when the record was created ("" when nothing).
	Peer     netip.Addr
	PeerName string
	// Protocol is the IP protocol number; Port the destination port
	// (TCP, UDP) or the ICMP / ICMPv6 type, 0 for other protocols.
	Protocol uint8
	Port     uint16
	// Count is how many logged drops the record holds. The enforcer logs
	// at most 10 packets per second per prefix and table, so Count is a
	// lower bound of the packets dropped (the policy's default-deny
	// counter has them all).
	Count               uint64
	FirstSeen, LastSeen time.Time
	// New is true on the first delivery of a record on Updates.
	New bool
}

// devKey names a device: its MAC, or its address when the MAC is not known.
type devKey struct {
	mac    [6]byte
	hasMAC bool
	addr   netip.Addr // the device address, when the MAC is not known
}

// recKey is what a Violation is aggregated by.
type recKey struct {
	dev      devKey
	dir      Direction
	kind     Kind
	peer     netip.Addr
	protocol uint8
	port     uint16
}

type record struct {
	key        recKey
	dev        *device
	name       string
	devAddr    netip.Addr
	count      uint64
	first      time.Time
	last       time.Time
	dirty      bool // changed since it was last delivered
	delivered  bool
	gprev      *record // the Table's list, most recently seen first
	gnext      *record
	dprev      *record // the device's list
	dnext      *record
	dirtyIndex int // in dev.dirty while dirty
}

type device struct {
	key     devKey
	mac     net.HardwareAddr
	n       int    // records held
	head    record // sentinel of the device's list
	dirty   []*record
	tokens  float64
	refill  time.Time
	drops   [3]uint64 // by Direction
	lastHit time.Time
}

// Stats are the Table's and the Reader's monotonic counters and current
// sizes.
type Stats struct {
	// Messages is how many NFLOG messages were read; Drops how many of them
	// were parsed into drops, by direction and kind.
	Messages                        uint64
	DropsOut, DropsIn, DropsGuarded uint64
	// Errors counts the messages that could not be parsed, by reason (the
	// Err* names); every name is present.
	Errors map[string]uint64
	// Overruns counts the times the kernel could not queue messages for
	// the socket (ENOBUFS): messages were lost.
	Overruns uint64
	// Records and Devices are what the Table holds now.
	Records, Devices int
	// Evicted counts the records dropped to keep within MaxRecords and
	// MaxPerDevice (least recently seen first).
	Evicted uint64
	// Delivered counts records sent on Updates; Deferred the updates held
	// back by a device's rate limit or a full channel (they are delivered
	// later, coalesced, unless the record is evicted first).
	Delivered, Deferred uint64
}

// Counter is the drops of one device in one direction, or of all devices
// when MAC and DeviceAddr are zero.
type Counter struct {
	MAC        net.HardwareAddr
	DeviceAddr netip.Addr // when MAC is nil: the device's address
	Direction  Direction
	Drops      uint64
}

// Table aggregates drops into violation records within bounded memory and
// delivers new and updated records, rate-limited per device. It is safe
// for concurrent use.
type Table struct {
	cfg     Config
	updates chan Violation

	mu      sync.Mutex
	records map[recKey]*record
	devices map[devKey]*device
	pending map[*device]struct{} // devices with dirty records
	head    record               // sentinel of the list of all records
	stats   Stats
	errs    [len(errorNames)]uint64
	totals  [3]uint64 // by Direction
}

// NewTable returns an empty Table with cfg's bounds and hooks (the
// netlink fields of cfg are not used).
func NewTable(cfg Config) *Table {
	cfg.defaults()
	t := &Table{cfg: cfg, updates: make(chan Violation, cfg.UpdatesBuffer),
		records: make(map[recKey]*record), devices: make(map[devKey]*device),
		pending: make(map[*device]struct{})}
	t.head.gprev, t.head.gnext = &t.head, &t.head
	return t
}

// Updates delivers new and updated records: at most Config.Burst at once
// and Config.Rate per second per device, and a record that changes while
// its device is held back is delivered once, with its latest state. The
// channel is closed when the Reader's Run returns.
func (t *Table) Updates() <-chan Violation { return t.updates }

// Add aggregates one drop. The hooks of Config are called without the
// Table's lock held.
func (t *Table) Add(d *Drop) {
	now := t.cfg.Now()
	var dk devKey
	if mac, ok := d.Device(); ok {
		dk.mac, dk.hasMAC = mac, true
	} else if t.cfg.DeviceOf != nil {
		if m := t.cfg.DeviceOf(d.DeviceAddr()); len(m) == 6 {
			dk.mac, dk.hasMAC = [6]byte(m), true
		}
	}
	if !dk.hasMAC {
		dk.addr = d.DeviceAddr()
	}
	rk := recKey{dev: dk, dir: d.Direction, kind: d.Kind, peer: d.Peer(), protocol: d.Protocol, port: d.Port}

	t.mu.Lock()
	r := t.records[rk]
	if r == nil && t.cfg.NameOf != nil {
		t.mu.Unlock()
		var mac net.HardwareAddr
		if dk.hasMAC {
			mac = net.HardwareAddr{dk.mac[0], dk.mac[1], dk.mac[2], dk.mac[3], dk.mac[4], dk.mac[5]}
		}
		name := t.cfg.NameOf(mac, rk.peer)
		t.mu.Lock()
		if r = t.records[rk]; r == nil {
			r = t.insert(rk, now)
			r.name = name
		}
	} else if r == nil {
		r = t.insert(rk, now)
	}
	t.count(d)
	r.count++
	r.last = now
	r.devAddr = d.DeviceAddr()
	dev := r.dev
	dev.drops[d.Direction]++
	dev.lastHit = now
	t.touch(r)
	if !r.dirty {
		r.dirty = true
		r.dirtyIndex = len(dev.dirty)
		dev.dirty = append(dev.dirty, r)
	}
	t.deliver(dev, now)
	t.mu.Unlock()
}

func (t *Table) count(d *Drop) {
	switch {
	case d.Kind == SourceGuard:
		t.stats.DropsGuarded++
	case d.Direction == Out:
		t.stats.DropsOut++
	default:
		t.stats.DropsIn++
	}
	t.totals[d.Direction]++
}

// insert adds a record for k, evicting the least recently seen record of
// its device when the device is at MaxPerDevice, else the least recently
// seen of all when the Table is at MaxRecords.
func (t *Table) insert(k recKey, now time.Time) *record {
	dev := t.devices[k.dev]
	if dev != nil && dev.n >= t.cfg.MaxPerDevice {
		t.evict(dev.head.dprev)
	} else if len(t.records) >= t.cfg.MaxRecords {
		t.evict(t.head.gprev)
	}
	if dev = t.devices[k.dev]; dev == nil { // evict may have removed it
		dev = &device{key: k.dev, tokens: float64(t.cfg.Burst), refill: now}
		if k.dev.hasMAC {
			dev.mac = cloneMAC(k.dev.mac[:])
		}
		dev.head.dprev, dev.head.dnext = &dev.head, &dev.head
		t.devices[k.dev] = dev
	}
	r := &record{key: k, dev: dev, first: now}
	t.records[k] = r
	dev.n++
	// link at the front of both lists
	r.gprev, r.gnext = &t.head, t.head.gnext
	t.head.gnext.gprev, t.head.gnext = r, r
	r.dprev, r.dnext = &dev.head, dev.head.dnext
	dev.head.dnext.dprev, dev.head.dnext = r, r
	return r
}

// touch moves r to the front of both lists.
func (t *Table) touch(r *record) {
	r.gprev.gnext, r.gnext.gprev = r.gnext, r.gprev
	r.gprev, r.gnext = &t.head, t.head.gnext
	t.head.gnext.gprev, t.head.gnext = r, r
	d := r.dev
	r.dprev.dnext, r.dnext.dprev = r.dnext, r.dprev
	r.dprev, r.dnext = &d.head, d.head.dnext
	d.head.dnext.dprev, d.head.dnext = r, r
}

func (t *Table) evict(r *record) {
	if r == &t.head || r.dev == nil { // a list's sentinel: nothing to evict
		return
	}
	d := r.dev
	r.gprev.gnext, r.gnext.gprev = r.gnext, r.gprev
	r.dprev.dnext, r.dnext.dprev = r.dnext, r.dprev
	delete(t.records, r.key)
	if r.dirty {
		last := len(d.dirty) - 1
		d.dirty[r.dirtyIndex] = d.dirty[last]
		d.dirty[r.dirtyIndex].dirtyIndex = r.dirtyIndex
		d.dirty[last] = nil
		d.dirty = d.dirty[:last]
		r.dirty = false
	}
	t.stats.Evicted++
	if d.n--; d.n == 0 {
		delete(t.devices, d.key)
		delete(t.pending, d)
	}
}

// deliver sends dev's dirty records while its token bucket and the
// channel allow, and remembers the device as pending otherwise.
func (t *Table) deliver(dev *device, now time.Time) {
	if el := now.Sub(dev.refill).Seconds(); el > 0 {
		dev.tokens = min(dev.tokens+el*t.cfg.Rate, float64(t.cfg.Burst))
		dev.refill = now
	}
	for len(dev.dirty) > 0 && dev.tokens >= 1 {
		last := len(dev.dirty) - 1
		r := dev.dirty[last]
		select {
		case t.updates <- t.violation(r):
		default:
			t.stats.Deferred++
			t.pending[dev] = struct{}{}
			return
		}
		dev.tokens--
		t.stats.Delivered++
		r.dirty, r.delivered = false, true
		dev.dirty[last] = nil
		dev.dirty = dev.dirty[:last]
	}
	if len(dev.dirty) > 0 {
		t.stats.Deferred++
		t.pending[dev] = struct{}{}
	} else {
		delete(t.pending, dev)
	}
}

// Flush delivers the records held back by the rate limit or a full
// channel, as far as the limits now allow. The Reader's Run calls it every
// FlushInterval.
func (t *Table) Flush() {
	now := t.cfg.Now()
	t.mu.Lock()
	defer t.mu.Unlock()
	for dev := range t.pending {
		t.deliver(dev, now)
	}
}

func (t *Table) violation(r *record) Violation {
	return Violation{MAC: cloneMAC(r.dev.mac), DeviceAddr: r.devAddr, Direction: r.key.dir, Kind: r.key.kind,
		Peer: r.key.peer, PeerName: r.name, Protocol: r.key.protocol, Port: r.key.port,
		Count: r.count, FirstSeen: r.first, LastSeen: r.last, New: !r.delivered}
}

// List returns the records of the device with this MAC, most recently
// seen first; nil when it has none.
func (t *Table) List(mac net.HardwareAddr) []Violation {
	if len(mac) != 6 {
		return nil
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	dev := t.devices[devKey{mac: [6]byte(mac), hasMAC: true}]
	if dev == nil {
		return nil
	}
	return t.collect(dev.n, dev.head.dnext, &dev.head, func(r *record) *record { return r.dnext })
}

// Snapshot returns every record, most recently seen first.
func (t *Table) Snapshot() []Violation {
	t.mu.Lock()
	defer t.mu.Unlock()
	return t.collect(len(t.records), t.head.gnext, &t.head, func(r *record) *record { return r.gnext })
}

// collect returns the n records of a list, from first to the sentinel end.
func (t *Table) collect(n int, first, end *record, next func(*record) *record) []Violation {
	out := make([]Violation, 0, n)
	for r := first; r != end; r = next(r) {
		v := t.violation(r)
		v.New = false
		out = append(out, v)
	}
	return out
}

// Counters returns the drops per device and direction of the
// Config.MetricDevices devices with the most drops, and the drops of all
// devices per direction (MAC nil, DeviceAddr zero): at most
// 2·MetricDevices+2 series, whatever the number of devices. A device's
// counts live as long as it holds a record (eviction of its last record
// starts them again); the all-devices counts only grow.
func (t *Table) Counters() []Counter {
	t.mu.Lock()
	defer t.mu.Unlock()
	devs := make([]*device, 0, len(t.devices))
	for _, d := range t.devices {
		devs = append(devs, d)
	}
	total := func(d *device) uint64 { return d.drops[Out] + d.drops[In] }
	sort.Slice(devs, func(i, j int) bool {
		if a, b := total(devs[i]), total(devs[j]); a != b {
			return a > b
		}
		return devs[i].lastHit.After(devs[j].lastHit)
	})
	if len(devs) > t.cfg.MetricDevices {
		devs = devs[:t.cfg.MetricDevices]
	}
	out := make([]Counter, 0, 2*len(devs)+2)
	for _, d := range devs {
		for _, dir := range []Direction{Out, In} {
			out = append(out, Counter{MAC: cloneMAC(d.mac), DeviceAddr: d.key.addr, Direction: dir, Drops: d.drops[dir]})
		}
	}
	for _, dir := range []Direction{Out, In} {
		out = append(out, Counter{Direction: dir, Drops: t.totals[dir]})
	}
	return out
}

// Stats returns the counters and sizes.
func (t *Table) Stats() Stats {
	t.mu.Lock()
	defer t.mu.Unlock()
	s := t.stats
	s.Records, s.Devices = len(t.records), len(t.devices)
	s.Errors = make(map[string]uint64, len(errorNames))
	for i, n := range errorNames {
		s.Errors[n] = t.errs[i]
	}
	return s
}

// noteMessage counts a message read and, when err is a *ParseError, its
// reason.
func (t *Table) noteMessage(err error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.stats.Messages++
	if pe, ok := err.(*ParseError); ok {
		for i, n := range errorNames {
			if n == pe.Reason {
				t.errs[i]++
			}
		}
	}
}

func (t *Table) noteOverrun() {
	t.mu.Lock()
	t.stats.Overruns++
	t.mu.Unlock()
}

// cloneMAC returns a copy of m (nil for nil).
func cloneMAC(m net.HardwareAddr) net.HardwareAddr {
	if m == nil {
		return nil
	}
	return append(net.HardwareAddr(nil), m...)
}
