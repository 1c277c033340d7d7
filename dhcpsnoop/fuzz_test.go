package dhcpsnoop

import (
	"net"
	"net/netip"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

// FuzzHandleFrame feeds arbitrary frames through the whole pure path:
// parsing, URL rules, the lease state machine, expiry and learning. It must
// never panic, and nothing it emits may carry a control character (events
// end up in terminals and logs).
func FuzzHandleFrame(f *testing.F) {
	for _, b := range testdataFrames(f) {
		f.Add(b)
	}
	for _, b := range seedFrames(f) {
		f.Add(b)
	}
	f.Fuzz(func(t *testing.T, frame []byte) {
		tr := NewTracker(TrackerConfig{MaxDevices: 4, MaxPending: 4})
		var evs []Event
		for i := range 3 {
			e, _ := tr.HandleFrame(frame, "br-lan", t0.Add(time.Duration(i)*time.Minute))
			evs = append(evs, e...)
		}
		if m, err := ParseFrame(frame); err == nil {
			_, _ = ParseMUDURL(m.MUDURL)
			evs = append(evs, tr.Learn(m.ClientMAC, []netip.Addr{netip.MustParseAddr("2001:db8:1::5")}, t0)...)
		}
		evs = append(evs, tr.Expire(t0.Add(1000*time.Hour))...)
		for _, ev := range evs {
			for _, c := range ev.String() {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("control character %q in event %q", c, ev.String())
				}
			}
			if _, err := ev.MarshalJSON(); err != nil {
				t.Fatal(err)
			}
		}
		if s := tr.Stats(); s.Devices > 4 || s.PendingCount > 4 {
			t.Fatalf("bounds exceeded: %+v", s)
		}
	})
}

// seedFrames are built frames covering what the captures do not: relays,
// acks with odd lease times, declines.
func seedFrames(t testing.TB) [][]byte {
	sol := v6Msg(t, dhcpv6.MessageTypeSolicit, macDev2, 1, mud6(urlB))
	fw, _ := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:1::fd"), net.ParseIP("fe80::2"))
	fw.AddOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, macDev2))
	return [][]byte{
		ethUDP(macRelay, macGW, netip.MustParseAddr("2001:db8:1::fd"), netip.MustParseAddr("2001:db8:1::1"), 547, 547, fw.ToBytes()),
		v6Server(macDev1, v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 2, iana6(time.Hour, "2001:db8:1::100", "2001:db8:1::101"))),
		ack4(t, macDev1, 1, "192.0.2.50", 0xffffffff),
		v4Client(t, macDev1, v4Msg(t, dhcpv4.MessageTypeDecline, macDev1, 2,
			dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.50"))))),
		request4(t, macDev1, 3, withMUD("https://a.example/\x00 \x1b[31m")),
	}
}
