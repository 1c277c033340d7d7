package enforcer

import (
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/vishvananda/netlink/nl"
)

// attr encodes one netlink attribute, padded to 4 octets.
func attr(typ uint16, v []byte) []byte {
	b := make([]byte, 4, 4+len(v)+3)
	binary.NativeEndian.PutUint16(b[0:2], uint16(4+len(v)))
	binary.NativeEndian.PutUint16(b[2:4], typ)
	b = append(b, v...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

func cat(bs ...[]byte) []byte {
	var out []byte
	for _, b := range bs {
		out = append(out, b...)
	}
	return out
}

// ctEntry is a dumped conntrack entry (nfgenmsg, tuples) from src to dst,
// answered by reply.
func ctEntry(src, dst, reply netip.Addr) []byte {
	ip := func(s, d netip.Addr) []byte {
		ts, td := uint16(nl.CTA_IP_V4_SRC), uint16(nl.CTA_IP_V4_DST)
		if s.Is6() {
			ts, td = nl.CTA_IP_V6_SRC, nl.CTA_IP_V6_DST
		}
		return attr(nl.CTA_TUPLE_IP|nl.NLA_F_NESTED, cat(attr(ts, s.AsSlice()), attr(td, d.AsSlice())))
	}
	return cat([]byte{2, 0, 0, 0},
		attr(nl.CTA_TUPLE_ORIG|nl.NLA_F_NESTED, ip(src, dst)),
		attr(nl.CTA_TUPLE_REPLY|nl.NLA_F_NESTED, ip(reply, src)),
		attr(nl.CTA_MARK, []byte{0, 0, 0, 1}))
}

// A dumped entry belongs to a device whose flows end when the device is
// its original source or destination, or the one that answered it (a
// DNAT'd flow), whatever the IP version; an entry of other hosts, or a
// malformed one, does not.
func TestConntrackOf(t *testing.T) {
	dev4, dev6 := netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8:1::10")
	other, other6 := netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("2001:db8:2::5")
	want := map[netip.Addr]bool{dev4: true, dev6: true}
	for _, c := range []struct {
		name string
		msg  []byte
		want bool
	}{
		{"from the device", ctEntry(dev4, other, other), true},
		{"to the device", ctEntry(other, dev4, dev4), true},
		{"answered by the device", ctEntry(other, netip.MustParseAddr("198.51.100.1"), dev4), true},
		{"IPv6 from the device", ctEntry(dev6, other6, other6), true},
		{"other hosts", ctEntry(other, netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.1")), false},
		{"truncated", ctEntry(dev4, other, other)[:10], false},
		{"empty", nil, false},
	} {
		if got := conntrackOf(c.msg, want); got != c.want {
			t.Errorf("%s: %v, want %v", c.name, got, c.want)
		}
	}
}

func FuzzConntrackOf(f *testing.F) {
	dev := netip.MustParseAddr("192.0.2.10")
	f.Add(ctEntry(dev, netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("203.0.113.5")))
	f.Add(ctEntry(netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:2::5"), netip.MustParseAddr("2001:db8:2::5")))
	want := map[netip.Addr]bool{dev: true}
	f.Fuzz(func(t *testing.T, msg []byte) {
		_ = conntrackOf(msg, want)
	})
}

// BenchmarkConntrackOf: the scan of one dumped entry the walk keeps (the
// common case: an entry of another device), 0 allocs/op.
func BenchmarkConntrackOf(b *testing.B) {
	msg := ctEntry(netip.MustParseAddr("203.0.113.5"), netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.1"))
	want := map[netip.Addr]bool{netip.MustParseAddr("192.0.2.10"): true}
	b.ReportAllocs()
	for b.Loop() {
		conntrackOf(msg, want)
	}
}
