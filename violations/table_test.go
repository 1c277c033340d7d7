package violations

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// clock is a manual clock for the Table.
type clock struct{ t time.Time }

func (c *clock) now() time.Time          { return c.t }
func (c *clock) advance(d time.Duration) { c.t = c.t.Add(d) }
func newClock() *clock                   { return &clock{t: time.Date(2026, 11, 1, 12, 0, 0, 0, time.UTC)} }
func mac(i int) net.HardwareAddr         { return net.HardwareAddr{2, 0, 0, 0, byte(i >> 8), byte(i)} }
func peer(i int) netip.Addr              { return netip.AddrFrom4([4]byte{203, 0, byte(113 + i>>8), byte(i)}) }
func drainUpdates(t *Table) (n int)      { return len(drain(t)) }
func hw(m net.HardwareAddr) (a [6]byte)  { copy(a[:], m); return a }
func devAddr(i int) netip.Addr           { return netip.AddrFrom4([4]byte{192, 0, 2, byte(i)}) }
func drop(dev, p int, port uint16) *Drop { return dropOf(dev, Out, DefaultDeny, peer(p), 6, port) }
func drain(t *Table) (vs []Violation)    { return drainN(t, -1) }
func sameMAC(a, b net.HardwareAddr) bool { return a.String() == b.String() }
func pendingOf(t *Table) int             { t.mu.Lock(); defer t.mu.Unlock(); return len(t.pending) }

func dropOf(dev int, dir Direction, kind Kind, p netip.Addr, proto uint8, port uint16) *Drop {
	d := &Drop{Kind: kind, Direction: dir, Family: nfprotoIPv4, HasHW: true, Protocol: proto, Port: port}
	if dir == Out {
		d.HWSrc, d.Src, d.Dst = hw(mac(dev)), devAddr(dev), p
	} else {
		d.HWDst, d.Src, d.Dst = hw(mac(dev)), p, devAddr(dev)
		d.Family = nfprotoBridge
	}
	return d
}

func drainN(t *Table, max int) (vs []Violation) {
	for max < 0 || len(vs) < max {
		select {
		case v := <-t.updates:
			vs = append(vs, v)
		default:
			return vs
		}
	}
	return vs
}

// Drops of one device, direction, kind, peer, protocol and port make one
// record that counts them, with the first and last time seen; any other
// field makes another.
func TestAggregation(t *testing.T) {
	c := newClock()
	tab := NewTable(Config{Now: c.now})
	tab.Add(drop(1, 1, 443))
	c.advance(time.Second)
	tab.Add(drop(1, 1, 443))
	c.advance(time.Second)
	tab.Add(drop(1, 1, 443))
	for _, d := range []*Drop{
		drop(2, 1, 443), // another device
		drop(1, 2, 443), // another peer
		drop(1, 1, 80),  // another port
		dropOf(1, Out, DefaultDeny, peer(1), 17, 443), // another protocol
		dropOf(1, In, DefaultDeny, peer(1), 6, 443),   // another direction
		dropOf(1, Out, SourceGuard, peer(1), 6, 443),  // another kind
	} {
		tab.Add(d)
	}
	l := tab.List(mac(1))
	if len(l) != 6 {
		t.Fatalf("device 1 has %d records, want 6: %+v", len(l), l)
	}
	var first Violation
	for _, v := range l {
		if v.Peer == peer(1) && v.Port == 443 && v.Protocol == 6 && v.Direction == Out && v.Kind == DefaultDeny {
			first = v
		}
	}
	if first.Count != 3 || !first.FirstSeen.Equal(c.t.Add(-2*time.Second)) || !first.LastSeen.Equal(c.t) ||
		!sameMAC(first.MAC, mac(1)) || first.DeviceAddr != devAddr(1) {
		t.Errorf("aggregated record %+v: want count 3 over 2 s from device 1", first)
	}
	if l[0].Kind != SourceGuard {
		t.Errorf("List's first record is %+v, want the most recently seen (source guard)", l[0])
	}
	if n := len(tab.Snapshot()); n != 7 {
		t.Errorf("Snapshot has %d records, want 7", n)
	}
	if s := tab.Stats(); s.DropsOut != 7 || s.DropsIn != 1 || s.DropsGuarded != 1 || s.Records != 7 || s.Devices != 2 {
		t.Errorf("stats %+v", s)
	}
	if tab.List(mac(9)) != nil || tab.List(net.HardwareAddr{1}) != nil {
		t.Error("List of an unknown or malformed MAC is not nil")
	}
}

// A routed in drop names the device by its address; DeviceOf maps it to
// the MAC, and without a mapping the record is the address's.
func TestInboundDeviceByAddress(t *testing.T) {
	in := &Drop{Kind: DefaultDeny, Direction: In, Family: nfprotoIPv4, HasHW: true,
		HWSrc: [6]byte{9, 9, 9, 9, 9, 9}, HWDst: [6]byte{8, 8, 8, 8, 8, 8}, Src: peer(1), Dst: devAddr(1), Protocol: 6, Port: 23}
	tab := NewTable(Config{})
	tab.Add(in)
	s := tab.Snapshot()
	if len(s) != 1 || s[0].MAC != nil || s[0].DeviceAddr != devAddr(1) || s[0].Peer != peer(1) {
		t.Fatalf("without DeviceOf: %+v, want a record of address %v without MAC", s, devAddr(1))
	}
	tab = NewTable(Config{DeviceOf: func(a netip.Addr) net.HardwareAddr {
		if a == devAddr(1) {
			return mac(1)
		}
		return nil
	}})
	tab.Add(in)
	if l := tab.List(mac(1)); len(l) != 1 || l[0].Direction != In || l[0].Port != 23 {
		t.Errorf("with DeviceOf: %+v, want the record under device 1's MAC", l)
	}
}

// NameOf is asked once per new record, for the peer, without the Table's
// lock held (it may query the Table).
func TestNameOfHook(t *testing.T) {
	var tab *Table
	calls := 0
	tab = NewTable(Config{NameOf: func(m net.HardwareAddr, a netip.Addr) string {
		calls++
		_ = tab.List(m) // would deadlock under the lock
		if sameMAC(m, mac(1)) && a == peer(7) {
			return "tracker.example"
		}
		return ""
	}})
	for range 3 {
		tab.Add(drop(1, 7, 443))
	}
	tab.Add(drop(1, 8, 443))
	if calls != 2 {
		t.Errorf("NameOf called %d times, want once per record (2)", calls)
	}
	for _, v := range tab.List(mac(1)) {
		if want := map[bool]string{true: "tracker.example", false: ""}[v.Peer == peer(7)]; v.PeerName != want {
			t.Errorf("%v: name %q, want %q", v.Peer, v.PeerName, want)
		}
	}
}

// 10,000 distinct forbidden packets from one device leave it MaxPerDevice
// records, the most recently seen, and the other devices' records intact.
func TestEvictionPerDevice(t *testing.T) {
	c := newClock()
	tab := NewTable(Config{Now: c.now, MaxPerDevice: 64, MaxRecords: 1024})
	tab.Add(drop(2, 1, 22))
	for i := range 10000 {
		c.advance(time.Millisecond)
		tab.Add(drop(1, i%250, uint16(1000+i/250)))
	}
	l := tab.List(mac(1))
	if len(l) != 64 {
		t.Fatalf("device 1 holds %d records, want 64", len(l))
	}
	if newest := l[0]; newest.Peer != peer(9999%250) || newest.Port != 1000+9999/250 {
		t.Errorf("most recent record %+v, want the last packet's", newest)
	}
	if l := tab.List(mac(2)); len(l) != 1 {
		t.Errorf("device 2 holds %d records after device 1's flood, want its 1", len(l))
	}
	if s := tab.Stats(); s.Evicted != 10000-64 || s.Records != 65 {
		t.Errorf("stats %+v: want %d evicted, 65 records", s, 10000-64)
	}
}

// Past MaxRecords, the least recently seen record of all goes.
func TestEvictionTotal(t *testing.T) {
	c := newClock()
	tab := NewTable(Config{Now: c.now, MaxPerDevice: 4, MaxRecords: 8})
	for dev := 1; dev <= 4; dev++ {
		for p := range 2 {
			c.advance(time.Millisecond)
			tab.Add(drop(dev, p, 80))
		}
	}
	c.advance(time.Millisecond)
	tab.Add(drop(1, 0, 80)) // device 1's first record is now recent
	tab.Add(drop(5, 0, 80))
	tab.Add(drop(5, 1, 80))
	tab.Add(drop(5, 2, 80))
	s := tab.Stats()
	if s.Records != 8 || s.Evicted != 3 || s.Devices != 4 {
		t.Errorf("stats %+v: want 8 records of 4 devices, 3 evicted", s)
	}
	if l := tab.List(mac(1)); len(l) != 1 || l[0].Peer != peer(0) {
		t.Errorf("device 1: %+v, want only its recently seen record", l)
	}
	if l := tab.List(mac(2)); l != nil {
		t.Errorf("device 2 (least recently seen) still holds %+v", l)
	}
}

// A device gets Burst deliveries at once, then Rate per second; what
// changed meanwhile is delivered by Flush once the bucket refills, once
// per record with its latest count, and other devices are not held back.
func TestUpdatesRateLimitedPerDevice(t *testing.T) {
	c := newClock()
	tab := NewTable(Config{Now: c.now, Rate: 2, Burst: 5})
	for i := range 20 {
		tab.Add(drop(1, i, 80))
	}
	vs := drain(tab)
	if len(vs) != 5 {
		t.Fatalf("%d deliveries of 20 new records, want the burst of 5", len(vs))
	}
	for _, v := range vs {
		if !v.New || v.Count != 1 {
			t.Errorf("%+v: want a new record", v)
		}
	}
	tab.Add(drop(2, 0, 80))
	if vs := drain(tab); len(vs) != 1 || !sameMAC(vs[0].MAC, mac(2)) {
		t.Errorf("device 2 got %+v while device 1 is held back, want its record", vs)
	}
	for range 3 {
		tab.Add(drop(1, 19, 80)) // held back: no token
	}
	tab.Flush()
	if n := drainUpdates(tab); n != 0 {
		t.Errorf("%d deliveries before the bucket refilled", n)
	}
	c.advance(time.Second) // two tokens
	tab.Flush()
	if vs := drain(tab); len(vs) != 2 {
		t.Errorf("%d deliveries after 1 s at 2/s, want 2", len(vs))
	}
	c.advance(time.Minute)
	tab.Flush()
	vs = drain(tab)
	if len(vs) != 5 { // the bucket holds at most Burst
		t.Fatalf("%d deliveries after a minute, want the burst of 5", len(vs))
	}
	c.advance(time.Minute)
	tab.Flush()
	vs = append(vs, drain(tab)...)
	c.advance(time.Minute)
	tab.Flush()
	vs = append(vs, drain(tab)...)
	seen19 := 0
	for _, v := range vs {
		if v.Peer == peer(19) {
			seen19++
			if v.Count != 4 {
				t.Errorf("record of peer 19 delivered with count %d, want its latest, 4", v.Count)
			}
		}
	}
	if s := tab.Stats(); s.Delivered != 5+1+2+uint64(len(vs)) || pendingOf(tab) != 0 {
		t.Errorf("stats %+v, %d devices pending: want every record delivered", s, pendingOf(tab))
	}
	if seen19 > 1 {
		t.Errorf("the record of peer 19 was delivered %d times while held back, want once", seen19)
	}
}

// A full channel holds deliveries back instead of blocking Add.
func TestFullChannelDoesNotBlock(t *testing.T) {
	tab := NewTable(Config{UpdatesBuffer: 2, Burst: 100})
	for i := range 10 {
		tab.Add(drop(1, i, 80))
	}
	if n := drainUpdates(tab); n != 2 {
		t.Fatalf("%d deliveries into a channel of 2", n)
	}
	tab.Flush()
	if n := drainN(tab, 2); len(n) != 2 {
		t.Errorf("Flush delivered %d, want 2 more", len(n))
	}
	if s := tab.Stats(); s.Deferred == 0 {
		t.Errorf("stats %+v: want deferrals counted", s)
	}
}

// Counters report the MetricDevices devices with the most drops, per
// direction, and all devices' totals: a bounded number of series.
func TestCountersBounded(t *testing.T) {
	tab := NewTable(Config{MetricDevices: 3, MaxPerDevice: 2})
	for dev := 1; dev <= 50; dev++ {
		for i := 0; i < dev; i++ {
			tab.Add(drop(dev, i, 80))
		}
	}
	tab.Add(dropOf(50, In, DefaultDeny, peer(1), 6, 23))
	cs := tab.Counters()
	if len(cs) != 2*3+2 {
		t.Fatalf("%d series, want 8: %+v", len(cs), cs)
	}
	if !sameMAC(cs[0].MAC, mac(50)) || cs[0].Direction != Out || cs[0].Drops != 50 || cs[1].Direction != In || cs[1].Drops != 1 {
		t.Errorf("first device %+v %+v, want device 50 with 50 out and 1 in", cs[0], cs[1])
	}
	if !sameMAC(cs[4].MAC, mac(48)) {
		t.Errorf("third device %v, want device 48", cs[4].MAC)
	}
	if tot := cs[6]; tot.MAC != nil || tot.Direction != Out || tot.Drops != 50*51/2 {
		t.Errorf("total out %+v, want %d", tot, 50*51/2)
	}
	if tot := cs[7]; tot.Direction != In || tot.Drops != 1 {
		t.Errorf("total in %+v, want 1", tot)
	}
}

// Parse errors are counted by name.
func TestErrorsCounted(t *testing.T) {
	tab := NewTable(Config{})
	var p Parser
	var d Drop
	for _, b := range [][]byte{nil, {1, 2, 3}} {
		tab.noteMessage(p.ParseMessage(b, &d))
	}
	tab.noteMessage(nil)
	s := tab.Stats()
	if s.Messages != 3 || s.Errors[ErrShortHeader] != 2 || len(s.Errors) != len(errorNames) {
		t.Errorf("stats %+v: want 3 messages, 2 short, every error name present", s)
	}
}

// The metrics hold the top devices, the totals and every error reason,
// and no more series than the bound.
func TestWriteMetrics(t *testing.T) {
	tab := NewTable(Config{MetricDevices: 2})
	for dev := 1; dev <= 5; dev++ {
		for i := 0; i < dev; i++ {
			tab.Add(drop(dev, i, 80))
		}
	}
	tab.Add(&Drop{Kind: DefaultDeny, Direction: In, Family: nfprotoIPv4, Src: peer(1), Dst: devAddr(9), Protocol: 6, Port: 23})
	var b strings.Builder
	if err := tab.WriteMetrics(&b); err != nil {
		t.Fatal(err)
	}
	out := b.String()
	for _, want := range []string{
		`mud_violation_drops_total{mac="02:00:00:00:00:05",direction="out"} 5`,
		`mud_violation_drops_total{mac="02:00:00:00:00:04",direction="in"} 0`,
		`mud_violation_drops_all_total{direction="out"} 15`,
		`mud_violation_drops_all_total{direction="in"} 1`,
		`mud_violation_parse_errors_total{reason="foreign-prefix"} 0`,
		"mud_violation_records 16\n",
	} {
		if !strings.Contains(out, want) {
			t.Errorf("metrics lack %s:\n%s", want, out)
		}
	}
	series := 0
	for _, l := range strings.Split(strings.TrimSpace(out), "\n") {
		if !strings.HasPrefix(l, "#") {
			series++
		}
	}
	if want := 2*2 + 2 + len(errorNames) + 4; series != want {
		t.Errorf("%d series, want %d:\n%s", series, want, out)
	}
}
