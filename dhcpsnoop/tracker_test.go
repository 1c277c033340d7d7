package dhcpsnoop

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"
)

func wantKinds(t *testing.T, evs []Event, want ...Kind) {
	t.Helper()
	if got := kinds(evs); !slices.Equal(got, want) {
		for _, e := range evs {
			t.Logf("event: %s", e)
		}
		t.Fatalf("kinds = %v, want %v", got, want)
	}
}

// The whole DHCPv4 lifecycle with an injected clock: arrival with URL,
// renewal, address change, release (Gone tells the manager to remove the rules:
// RFC 8520 §10.2).
func TestTrackerV4Lifecycle(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	disc := v4Client(t, macDev1, v4Msg(t, dhcpv4.MessageTypeDiscover, macDev1, 1,
		withMUD(urlA+" reserved"), dhcpv4.WithOption(dhcpv4.OptHostName("bulb-1")),
		dhcpv4.WithOption(dhcpv4.OptClientIdentifier([]byte{1, 2, 0, 0, 0, 1, 1}))))
	evs := handle(t, tr, t0, disc)
	wantKinds(t, evs, KindAnnounced)
	if evs[0].MUDURL != urlA || evs[0].Family != 4 || evs[0].Hostname != "bulb-1" {
		t.Errorf("announced = %+v", evs[0])
	}
	// The OFFER changes nothing; the REQUEST repeats the URL: no new event.
	offer := v4Server(t, v4Msg(t, dhcpv4.MessageTypeOffer, macDev1, 1, dhcpv4.WithYourIP(net.ParseIP("192.0.2.50"))))
	wantKinds(t, handle(t, tr, t0, offer, request4(t, macDev1, 1, withMUD(urlA))))

	evs = handle(t, tr, t0, ack4(t, macDev1, 1, "192.0.2.50", 3600))
	wantKinds(t, evs, KindBound)
	b := evs[0]
	if b.MAC.String() != "02:00:00:00:01:01" || b.IPv4 != netip.MustParseAddr("192.0.2.50") ||
		b.LeaseTime != time.Hour || !b.Expires.Equal(t0.Add(time.Hour)) || b.MUDURL != urlA ||
		b.Hostname != "bulb-1" || b.Interface != "br-lan" || len(b.ClientID) != 7 || b.Gone {
		t.Errorf("bound = %s", b)
	}
	if !slices.Equal(b.Added, []netip.Addr{netip.MustParseAddr("192.0.2.50")}) {
		t.Errorf("bound.Added = %v", b.Added)
	}

	t1 := t0.Add(30 * time.Minute)
	evs = handle(t, tr, t1, request4(t, macDev1, 2), ack4(t, macDev1, 2, "192.0.2.50", 3600))
	wantKinds(t, evs, KindRenewed)
	if !evs[0].Expires.Equal(t1.Add(time.Hour)) || evs[0].MUDURL != urlA {
		t.Errorf("renewed = %s", evs[0])
	}

	evs = handle(t, tr, t1, ack4(t, macDev1, 3, "192.0.2.60", 3600))
	wantKinds(t, evs, KindAddressChanged)
	if evs[0].IPv4 != netip.MustParseAddr("192.0.2.60") ||
		!slices.Equal(evs[0].Removed, []netip.Addr{netip.MustParseAddr("192.0.2.50")}) {
		t.Errorf("address-changed = %s", evs[0])
	}

	// A RELEASE for an address the device no longer has is stale: ignored.
	stale := v4Client(t, macDev1, v4Msg(t, dhcpv4.MessageTypeRelease, macDev1, 4, dhcpv4.WithClientIP(net.ParseIP("192.0.2.50"))))
	wantKinds(t, handle(t, tr, t1, stale))
	rel := v4Client(t, macDev1, v4Msg(t, dhcpv4.MessageTypeRelease, macDev1, 5, dhcpv4.WithClientIP(net.ParseIP("192.0.2.60"))))
	evs = handle(t, tr, t1, rel)
	wantKinds(t, evs, KindReleased)
	if !evs[0].Gone || evs[0].IPv4.IsValid() || evs[0].Removed[0] != netip.MustParseAddr("192.0.2.60") {
		t.Errorf("released = %s", evs[0])
	}
	if tr.Bound(macDev1) {
		t.Error("device still bound after release")
	}
	// Coming back soon: the URL is remembered from before the release.
	evs = handle(t, tr, t1.Add(time.Second), ack4(t, macDev1, 6, "192.0.2.60", 3600))
	wantKinds(t, evs, KindBound)
	if evs[0].MUDURL != urlA {
		t.Errorf("rebound URL = %q", evs[0].MUDURL)
	}
}

// Expiry from the lease time, also when the device just disappears (no
// release ever comes), with an injected clock (RFC 8520 §10.2).
func TestTrackerExpiry(t *testing.T) {
	tr := NewTracker(TrackerConfig{ExpiryGrace: 5 * time.Second})
	handle(t, tr, t0, request4(t, macDev1, 1, withMUD(urlA)), ack4(t, macDev1, 1, "192.0.2.50", 120))
	handle(t, tr, t0, v6Client(macDev2, v6Msg(t, dhcpv6.MessageTypeRequest, macDev2, 7)),
		v6Server(macDev2, v6Msg(t, dhcpv6.MessageTypeReply, macDev2, 7, iana6(300*time.Second, "2001:db8:1::100"))))
	// Renewal at half time moves the end.
	handle(t, tr, t0.Add(60*time.Second), ack4(t, macDev1, 2, "192.0.2.50", 120))
	wantKinds(t, tr.Expire(t0.Add(179*time.Second)))
	wantKinds(t, tr.Expire(t0.Add(185*time.Second))) // within the grace
	evs := tr.Expire(t0.Add(186 * time.Second))
	wantKinds(t, evs, KindExpired)
	if !evs[0].Gone || evs[0].LeaseTime != 120*time.Second || evs[0].MUDURL != urlA || evs[0].Family != 4 {
		t.Errorf("expired = %s", evs[0])
	}
	evs = tr.Expire(t0.Add(306 * time.Second))
	wantKinds(t, evs, KindExpired)
	if !evs[0].Gone || evs[0].Family != 6 || evs[0].Removed[0] != netip.MustParseAddr("2001:db8:1::100") {
		t.Errorf("expired v6 = %s", evs[0])
	}
	if s := tr.Stats(); s.Devices != 0 {
		t.Errorf("devices after expiry = %d", s.Devices)
	}
	// An infinite lease never expires.
	inf := v4Server(t, v4Msg(t, dhcpv4.MessageTypeAck, macDev1, 9, dhcpv4.WithYourIP(net.ParseIP("192.0.2.9")),
		dhcpv4.WithOption(dhcpv4.OptIPAddressLeaseTime(0xffffffff*time.Second))))
	evs = handle(t, tr, t0, inf)
	if evs[0].LeaseTime != Infinite || !evs[0].Expires.IsZero() {
		t.Errorf("infinite lease = %s", evs[0])
	}
	wantKinds(t, tr.Expire(t0.Add(100*365*24*time.Hour)))
}

func TestTrackerDecline(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	handle(t, tr, t0, ack4(t, macDev1, 1, "192.0.2.50", 3600))
	dec := v4Client(t, macDev1, v4Msg(t, dhcpv4.MessageTypeDecline, macDev1, 2,
		dhcpv4.WithOption(dhcpv4.OptRequestedIPAddress(net.ParseIP("192.0.2.50")))))
	evs := handle(t, tr, t0, dec)
	wantKinds(t, evs, KindDeclined)
	if !evs[0].Gone {
		t.Errorf("declined = %s", evs[0])
	}
}

func TestTrackerV6Lifecycle(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	sol := v6Msg(t, dhcpv6.MessageTypeSolicit, macDev1, 1, mud6(urlA), iana6(0))
	evs := handle(t, tr, t0, v6Client(macDev1, sol))
	wantKinds(t, evs, KindAnnounced)
	if evs[0].Family != 6 || evs[0].MUDURL != urlA {
		t.Errorf("announced = %s", evs[0])
	}
	adv := v6Msg(t, dhcpv6.MessageTypeAdvertise, macDev1, 1, iana6(time.Hour, "2001:db8:1::100"))
	req := v6Msg(t, dhcpv6.MessageTypeRequest, macDev1, 2, mud6(urlA))
	rep := v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 2, iana6(time.Hour, "2001:db8:1::100"))
	evs = handle(t, tr, t0, v6Server(macDev1, adv), v6Client(macDev1, req), v6Server(macDev1, rep))
	wantKinds(t, evs, KindBound)
	if !slices.Equal(evs[0].IPv6, []netip.Addr{netip.MustParseAddr("2001:db8:1::100")}) ||
		evs[0].LeaseTime != time.Hour || evs[0].MUDURL != urlA || len(evs[0].ClientID) == 0 {
		t.Errorf("bound = %s", evs[0])
	}
	renew := v6Msg(t, dhcpv6.MessageTypeRenew, macDev1, 3, iana6(time.Hour, "2001:db8:1::100"))
	rep = v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 3, iana6(time.Hour, "2001:db8:1::100"))
	wantKinds(t, handle(t, tr, t0.Add(time.Minute), v6Client(macDev1, renew), v6Server(macDev1, rep)), KindRenewed)
	rep = v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 4, iana6(time.Hour, "2001:db8:1::200"))
	evs = handle(t, tr, t0.Add(time.Minute), v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeRebind, macDev1, 4)), v6Server(macDev1, rep))
	wantKinds(t, evs, KindAddressChanged)
	if evs[0].Added[0] != netip.MustParseAddr("2001:db8:1::200") || evs[0].Removed[0] != netip.MustParseAddr("2001:db8:1::100") {
		t.Errorf("address-changed = %s", evs[0])
	}
	// Release: the client's message ends the lease; the server's Reply to
	// it (which may echo the IA) must not bind it again.
	rel := v6Msg(t, dhcpv6.MessageTypeRelease, macDev1, 5, iana6(time.Hour, "2001:db8:1::200"))
	evs = handle(t, tr, t0.Add(2*time.Minute), v6Client(macDev1, rel))
	wantKinds(t, evs, KindReleased)
	if !evs[0].Gone {
		t.Errorf("released = %s", evs[0])
	}
	echo := v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 5, iana6(time.Hour, "2001:db8:1::200"))
	wantKinds(t, handle(t, tr, t0.Add(2*time.Minute), v6Server(macDev1, echo)))
}

// A device with several DHCPv6 addresses: an address repeated in a Reply
// takes its last lifetime, a release ends only the addresses it names, and
// each address expires on its own.
func TestTrackerV6SeveralAddresses(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	a100, a101, a102 := netip.MustParseAddr("2001:db8:1::100"), netip.MustParseAddr("2001:db8:1::101"), netip.MustParseAddr("2001:db8:1::102")
	rep := v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 1,
		iana6(time.Hour, "2001:db8:1::100", "2001:db8:1::101"), iana6(2*time.Hour, "2001:db8:1::102", "2001:db8:1::100"))
	evs := handle(t, tr, t0, v6Server(macDev1, rep))
	wantKinds(t, evs, KindBound)
	if !slices.Equal(evs[0].IPv6, []netip.Addr{a100, a101, a102}) || !slices.Equal(evs[0].Added, evs[0].IPv6) ||
		evs[0].LeaseTime != 2*time.Hour || !evs[0].Expires.Equal(t0.Add(2*time.Hour)) {
		t.Errorf("bound = %s", evs[0])
	}
	rel := v6Msg(t, dhcpv6.MessageTypeRelease, macDev1, 2, iana6(time.Hour, "2001:db8:1::101", "2001:db8:1::101"))
	evs = handle(t, tr, t0, v6Client(macDev1, rel))
	wantKinds(t, evs, KindReleased)
	if evs[0].Gone || !slices.Equal(evs[0].Removed, []netip.Addr{a101}) || !slices.Equal(evs[0].IPv6, []netip.Addr{a100, a102}) {
		t.Errorf("released = %s", evs[0])
	}
	wantKinds(t, tr.Expire(t0.Add(time.Hour+time.Second)))
	evs = tr.Expire(t0.Add(2*time.Hour + time.Second))
	wantKinds(t, evs, KindExpired)
	if !evs[0].Gone || !slices.Equal(evs[0].Removed, []netip.Addr{a100, a102}) || len(evs[0].IPv6) != 0 {
		t.Errorf("expired = %s", evs[0])
	}
	if tr.Bound(macDev1) {
		t.Error("still bound with no address left")
	}
}

// RFC 8520 §10: option 112 inside Relay-Forward; the client is named by the
// relay's Client Link-Layer Address option, not by the frame (from the relay).
func TestTrackerV6Relayed(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	sol := v6Msg(t, dhcpv6.MessageTypeRequest, macDev2, 1, mud6(urlB))
	fw, err := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:1::fd"), net.ParseIP("fe80::2"))
	if err != nil {
		t.Fatal(err)
	}
	fw.AddOption(dhcpv6.OptClientLinkLayerAddress(iana.HWTypeEthernet, macDev2))
	// Relayed twice: the outer relay has no link-layer option.
	fw2, err := dhcpv6.EncapsulateRelay(fw, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:9::1"), net.ParseIP("2001:db8:1::fd"))
	if err != nil {
		t.Fatal(err)
	}
	frame := ethUDP(macRelay, macGW, netip.MustParseAddr("2001:db8:9::1"), netip.MustParseAddr("2001:db8:1::1"), 547, 547, fw2.ToBytes())
	m, err := ParseFrame(frame)
	if err != nil {
		t.Fatal(err)
	}
	if !m.Relayed || !m.FromClient || m.ClientMAC.String() != macDev2.String() || string(m.MUDURL) != urlB {
		t.Fatalf("parsed relay-forward = %+v", m)
	}
	evs := handle(t, tr, t0, frame)
	wantKinds(t, evs, KindAnnounced)

	rep := v6Msg(t, dhcpv6.MessageTypeReply, macDev2, 1, iana6(time.Hour, "2001:db8:1::300"))
	rr, err := dhcpv6.EncapsulateRelay(rep, dhcpv6.MessageTypeRelayReply, net.ParseIP("2001:db8:1::fd"), net.ParseIP("fe80::2"))
	if err != nil {
		t.Fatal(err)
	}
	frame = ethUDP(macGW, macRelay, netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:9::1"), 547, 547, rr.ToBytes())
	evs = handle(t, tr, t0, frame)
	wantKinds(t, evs, KindBound)
	if evs[0].MAC.String() != macDev2.String() || !evs[0].Relayed || evs[0].MUDURL != urlB {
		t.Errorf("relayed bound = %s", evs[0])
	}
}

// RFC 8520 §1.5 and §10: an http URL and an oversize one are invalid-URL
// events with the reason; the device still binds, without a URL. Repeats are
// reported once per FlagInterval.
func TestTrackerInvalidURLs(t *testing.T) {
	long := "https://a.example/" + strings.Repeat("x", 300)
	for _, tc := range []struct {
		name   string
		frames func(xid byte) []byte
		reason error
	}{
		{"http v4", func(x byte) []byte { return request4(t, macDev1, x, withMUD("http://a.example/x")) }, ErrURLNotHTTPS},
		{"oversize v4 (RFC 3396 split)", func(x byte) []byte { return request4(t, macDev1, x, withMUD(long)) }, ErrURLTooLong},
		{"256-octet v6", func(x byte) []byte {
			return v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeRequest, macDev1, x, mud6(long[:256])))
		}, ErrURLTooLong},
		{"empty v6", func(x byte) []byte {
			return v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeRequest, macDev1, x, mud6("")))
		}, ErrURLEmpty},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tr := NewTracker(TrackerConfig{FlagInterval: time.Minute})
			evs := handle(t, tr, t0, tc.frames(1))
			wantKinds(t, evs, KindInvalidURL)
			if !strings.HasPrefix(evs[0].Reason, tc.reason.Error()) || (evs[0].Raw == "") != (tc.reason == ErrURLEmpty) {
				t.Errorf("invalid = %s", evs[0])
			}
			wantKinds(t, handle(t, tr, t0.Add(10*time.Second), tc.frames(2)))
			wantKinds(t, handle(t, tr, t0.Add(2*time.Minute), tc.frames(3)), KindInvalidURL)
			evs = handle(t, tr, t0, ack4(t, macDev1, 1, "192.0.2.50", 3600))
			wantKinds(t, evs, KindBound)
			if evs[0].MUDURL != "" {
				t.Errorf("bound with URL %q", evs[0].MUDURL)
			}
			if s := tr.Stats(); s.FlagsDeduped != 1 {
				t.Errorf("FlagsDeduped = %d", s.FlagsDeduped)
			}
		})
	}
}

func TestTrackerNoURL(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	evs := handle(t, tr, t0, request4(t, macDev1, 1), ack4(t, macDev1, 1, "192.0.2.50", 3600))
	wantKinds(t, evs, KindBound)
	if evs[0].MUDURL != "" {
		t.Errorf("MUDURL = %q", evs[0].MUDURL)
	}
}

// RFC 8520 §10.1: a device whose DHCPv4 and DHCPv6 URLs differ is flagged;
// a device changing its URL is flagged too (RFC 8520 §16).
func TestTrackerURLMismatchAndChange(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	handle(t, tr, t0, request4(t, macDev1, 1, withMUD(urlA)))
	evs := handle(t, tr, t0, v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeSolicit, macDev1, 1, mud6(urlB))))
	wantKinds(t, evs, KindAnnounced, KindURLMismatch)
	if !strings.Contains(evs[1].Reason, urlA) || !strings.Contains(evs[1].Reason, urlB) {
		t.Errorf("mismatch = %s", evs[1])
	}
	// The same URL in both families is fine.
	tr = NewTracker(TrackerConfig{})
	handle(t, tr, t0, request4(t, macDev1, 1, withMUD(urlA)))
	wantKinds(t, handle(t, tr, t0, v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeSolicit, macDev1, 1, mud6(urlA)))), KindAnnounced)
	evs = handle(t, tr, t0, request4(t, macDev1, 2, withMUD(urlB)))
	wantKinds(t, evs, KindURLChanged, KindAnnounced, KindURLMismatch)
	if evs[0].Reason != "was "+urlA {
		t.Errorf("changed = %s", evs[0])
	}
}

func TestTrackerChaddrMismatch(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	spoof := v4Client(t, macDev2, v4Msg(t, dhcpv4.MessageTypeDiscover, macDev1, 1))
	evs := handle(t, tr, t0, spoof)
	wantKinds(t, evs, KindMACMismatch)
	if evs[0].MAC.String() != macDev1.String() || !strings.Contains(evs[0].Reason, macDev2.String()) {
		t.Errorf("mismatch = %s", evs[0])
	}
	// Through a relay the frame's source is the relay: not a mismatch.
	relayed := v4Client(t, macRelay, v4Msg(t, dhcpv4.MessageTypeDiscover, macDev1, 2, dhcpv4.WithGatewayIP(net.ParseIP("192.0.2.254"))))
	wantKinds(t, handle(t, tr, t0, relayed))
}

// SLAAC addresses are learned for bound devices only, and leave with the
// device's lease.
func TestTrackerLearn(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	slaac := netip.MustParseAddr("2001:db8:1::200:ff:fe00:101")
	wantKinds(t, tr.Learn(macDev1, []netip.Addr{slaac}, t0)) // not bound: ignored
	handle(t, tr, t0, ack4(t, macDev1, 1, "192.0.2.50", 60))
	evs := tr.Learn(macDev1, []netip.Addr{slaac, netip.MustParseAddr("fe80::1"), netip.MustParseAddr("ff02::1")}, t0)
	wantKinds(t, evs, KindAddressesLearned)
	if !slices.Equal(evs[0].Added, []netip.Addr{slaac}) || !slices.Equal(evs[0].IPv6, []netip.Addr{slaac}) {
		t.Errorf("learned = %s", evs[0])
	}
	wantKinds(t, tr.Learn(macDev1, []netip.Addr{slaac}, t0.Add(time.Second)))
	evs = tr.Expire(t0.Add(61 * time.Second))
	wantKinds(t, evs, KindExpired)
	if !slices.Contains(evs[0].Removed, slaac) || !evs[0].Gone {
		t.Errorf("expired = %s", evs[0])
	}
	// Bounded per device.
	handle(t, tr, t0, ack4(t, macDev1, 2, "192.0.2.50", 60))
	var many []netip.Addr
	for i := range 100 {
		many = append(many, netip.MustParseAddr(fmt.Sprintf("2001:db8:1::%x", 0x1000+i)))
	}
	evs = tr.Learn(macDev1, many, t0)
	if len(evs[0].Added) != maxLearnedPerDevice {
		t.Errorf("learned %d addresses, want the cap %d", len(evs[0].Added), maxLearnedPerDevice)
	}
}

func TestTrackerRateLimit(t *testing.T) {
	tr := NewTracker(TrackerConfig{RatePerMAC: 1, BurstPerMAC: 5})
	f := request4(t, macDev1, 1)
	for range 50 {
		handle(t, tr, t0, f)
	}
	if s := tr.Stats(); s.RateLimited != 45 {
		t.Errorf("RateLimited = %d, want 45", s.RateLimited)
	}
	// Another MAC is not affected, and the bucket refills.
	handle(t, tr, t0, request4(t, macDev2, 1))
	handle(t, tr, t0.Add(2*time.Second), f, f)
	if s := tr.Stats(); s.RateLimited != 45 {
		t.Errorf("RateLimited = %d after refill, want 45", s.RateLimited)
	}
}

// A flood of requests from random MACs keeps memory bounded and does not
// stop a real device from binding.
func TestTrackerBounds(t *testing.T) {
	tr := NewTracker(TrackerConfig{MaxDevices: 8, MaxPending: 16})
	for i := range 1000 {
		mac := net.HardwareAddr{0x02, 0xff, 0, 0, byte(i >> 8), byte(i)}
		handle(t, tr, t0.Add(time.Duration(i)*time.Millisecond), request4(t, mac, 1, withMUD(urlA)),
			v6Client(mac, v6Msg(t, dhcpv6.MessageTypeSolicit, mac, byte(i))))
	}
	s := tr.Stats()
	if s.PendingCount > 16 || len(tr.xid6) > 16 || s.Evicted == 0 {
		t.Errorf("pending %d, xids %d, evicted %d", s.PendingCount, len(tr.xid6), s.Evicted)
	}
	if len(tr.buckets) > 8+16 {
		t.Errorf("rate-limit buckets = %d", len(tr.buckets))
	}
	// In the middle of the flood (every bucket busy), a real device that
	// was never seen still gets through the rate limiter.
	evs := handle(t, tr, t0.Add(time.Second), ack4(t, macDev1, 1, "192.0.2.50", 3600))
	wantKinds(t, evs, KindBound)
	now := t0.Add(time.Hour) // buckets refilled
	for i := range 20 {
		mac := net.HardwareAddr{0x02, 0xee, 0, 0, 0, byte(i)}
		handle(t, tr, now, ack4(t, mac, 1, fmt.Sprintf("192.0.2.%d", 100+i), 3600))
	}
	if s := tr.Stats(); s.Devices != 8 || s.DeviceCap != 13 {
		t.Errorf("devices %d, capped %d", s.Devices, s.DeviceCap)
	}
}

func TestHandleFrameErrors(t *testing.T) {
	tr := NewTracker(TrackerConfig{})
	if _, err := tr.HandleFrame([]byte{1, 2, 3}, "x", t0); !errors.Is(err, ErrNotDHCP) {
		t.Errorf("short frame: %v", err)
	}
	bad := ethUDP(macDev1, macBcast, netip.IPv4Unspecified(), netip.MustParseAddr("255.255.255.255"), 68, 67, []byte{1, 2, 3})
	if _, err := tr.HandleFrame(bad, "x", t0); err == nil || errors.Is(err, ErrNotDHCP) {
		t.Errorf("truncated DHCP: %v", err)
	}
	dns := ethUDP(macDev1, macGW, netip.MustParseAddr("192.0.2.10"), ipGW4, 5353, 53, []byte{1, 2, 3})
	if _, err := tr.HandleFrame(dns, "x", t0); !errors.Is(err, ErrNotDHCP) {
		t.Errorf("DNS frame: %v", err)
	}
	s := tr.Stats()
	if s.Frames != 3 || s.NotDHCP != 2 || s.Malformed != 1 {
		t.Errorf("stats = %+v", s)
	}
}
