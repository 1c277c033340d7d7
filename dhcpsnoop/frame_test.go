package dhcpsnoop

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet/capture"
)

// Real frames captured in the lab (testdata/frames/README.md).
func TestFixtures(t *testing.T) {
	frames := testdataFrames(t)
	mac := func(n byte) string { return net.HardwareAddr{2, 0, 0, 0, 1, n}.String() }
	for _, tc := range []struct {
		file      string
		family    int
		typ       string
		client    bool
		clientMAC string
		url       string // raw option value
		hostname  string
		yourIP    string
		lease     time.Duration
		addrs     int
	}{
		{"udhcpc-discover-mud.bin", 4, "DISCOVER", true, mac(1), urlA + " reserved", "bulb-1", "", 0, 0},
		{"udhcpc-request-mud.bin", 4, "REQUEST", true, mac(1), urlA + " reserved", "bulb-1", "", 0, 0},
		{"dnsmasq-ack4.bin", 4, "ACK", false, mac(1), "", "bulb-1", "192.0.2.50", 2 * time.Minute, 0},
		{"udhcpc-renew.bin", 4, "REQUEST", true, mac(1), urlA + " reserved", "bulb-1", "", 0, 0},
		{"dnsmasq-ack4-renew.bin", 4, "ACK", false, mac(1), "", "bulb-1", "192.0.2.50", 2 * time.Minute, 0},
		{"dnsmasq-nak4.bin", 4, "NAK", false, mac(1), "", "", "", 0, 0},
		{"udhcpc-discover-http.bin", 4, "DISCOVER", true, mac(5), "http://insecure.example/thing", "", "", 0, 0},
		{"udhcpc-discover-nourl.bin", 4, "DISCOVER", true, mac(7), "", "", "", 0, 0},
		{"dhclient-request-mud.bin", 4, "REQUEST", true, mac(2), urlB, "cam-2", "", 0, 0},
		{"dnsmasq-ack4-dhclient.bin", 4, "ACK", false, mac(2), "", "cam-2", "192.0.2.163", 2 * time.Minute, 0},
		{"dhclient-release4.bin", 4, "RELEASE", true, mac(2), urlB, "cam-2", "", 0, 0},
		{"nclient4-discover-mud.bin", 4, "DISCOVER", true, mac(4), urlA, "nclient", "", 0, 0},
		{"nclient4-release.bin", 4, "RELEASE", true, mac(4), "", "", "", 0, 0},
		{"dhclient6-solicit-mud.bin", 6, "SOLICIT", true, mac(3), urlA, "", "", 0, 0},
		{"dnsmasq-advertise6.bin", 6, "ADVERTISE", false, mac(3), "", "", "", 2 * time.Minute, 1},
		{"dhclient6-request-mud.bin", 6, "REQUEST", true, mac(3), urlA, "", "", 2*time.Hour + 5*time.Minute, 1},
		{"dnsmasq-reply6.bin", 6, "REPLY", false, mac(3), "", "", "", 2 * time.Minute, 1},
		{"dhclient6-release.bin", 6, "RELEASE", true, mac(3), urlA, "", "", 0, 1},
		{"dnsmasq-reply6-release.bin", 6, "REPLY", false, mac(3), "", "", "", 0, 0},
	} {
		t.Run(tc.file, func(t *testing.T) {
			f, ok := frames[tc.file]
			if !ok {
				t.Fatalf("missing testdata/frames/%s", tc.file)
			}
			m, err := ParseFrame(f)
			if err != nil {
				t.Fatal(err)
			}
			if m.Family != tc.family || m.Type != tc.typ || m.FromClient != tc.client || m.ClientMAC.String() != tc.clientMAC ||
				string(m.MUDURL) != tc.url || m.Hostname != tc.hostname || m.LeaseTime != tc.lease || len(m.Addrs) != tc.addrs {
				t.Errorf("parsed %+v", m)
			}
			if tc.yourIP != "" && m.YourIP.String() != tc.yourIP {
				t.Errorf("yiaddr = %s", m.YourIP)
			}
			if (tc.url == "") != (m.MUDURL == nil) {
				t.Errorf("MUD option presence: %q", m.MUDURL)
			}
		})
	}
	// Replaying the dhclient -6 exchange gives arrival and release.
	tr := NewTracker(TrackerConfig{})
	var evs []Event
	for _, name := range []string{"dhclient6-solicit-mud.bin", "dnsmasq-advertise6.bin", "dhclient6-request-mud.bin",
		"dnsmasq-reply6.bin", "dhclient6-release.bin", "dnsmasq-reply6-release.bin"} {
		evs = append(evs, handle(t, tr, t0, frames[name])...)
	}
	if got := kinds(evs); !slices.Equal(got, []Kind{KindAnnounced, KindBound, KindReleased}) {
		t.Errorf("dhclient -6 replay: %v", got)
	}
	// The oversize URL dhclient split over two options (RFC 3396).
	m, err := ParseFrame(frames["dhclient-discover-oversize.bin"])
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ParseMUDURL(m.MUDURL); !errors.Is(err, ErrURLTooLong) || len(m.MUDURL) != len("https://big.example/")+280 {
		t.Errorf("oversize: %d octets, %v", len(m.MUDURL), err)
	}
}

// Messages built with insomniacslk's builders, including what the real
// captures lack: relayed DHCPv4 and DHCPv6 (RFC 8520 §10), VLAN tags, IPv6
// extension headers, fragments, padding.
func TestParseFrameBuilt(t *testing.T) {
	relayed4 := v4Client(t, macRelay, v4Msg(t, dhcpv4.MessageTypeRequest, macDev1, 1, withMUD(urlA),
		dhcpv4.WithGatewayIP(net.ParseIP("192.0.2.254"))))
	sol := v6Msg(t, dhcpv6.MessageTypeSolicit, macDev2, 1, mud6(urlB))
	dhcpv6.WithFQDN(0, "thermo.example")(sol)
	fw, err := dhcpv6.EncapsulateRelay(sol, dhcpv6.MessageTypeRelayForward, net.ParseIP("2001:db8:1::fd"), net.ParseIP("fe80::2"))
	if err != nil {
		t.Fatal(err)
	}
	relayed6 := ethUDP(macRelay, macGW, netip.MustParseAddr("2001:db8:1::fd"), netip.MustParseAddr("2001:db8:1::1"), 547, 547, fw.ToBytes())
	var deep dhcpv6.DHCPv6 = sol
	for range maxRelayDepth + 1 {
		if deep, err = dhcpv6.EncapsulateRelay(deep, dhcpv6.MessageTypeRelayForward, net.IPv6loopback, net.IPv6loopback); err != nil {
			t.Fatal(err)
		}
	}
	tooDeep := ethUDP(macRelay, macGW, netip.MustParseAddr("2001:db8:1::fd"), netip.MustParseAddr("2001:db8:1::1"), 547, 547, deep.ToBytes())

	plain4 := request4(t, macDev1, 1, withMUD(urlA))
	vlan := append(append(append([]byte{}, plain4[:12]...), 0x81, 0x00, 0x00, 0x0a), plain4[12:]...)
	padded := append(append([]byte{}, plain4...), make([]byte, 40)...)
	frag4 := append([]byte{}, plain4...)
	frag4[14+6] = 0x20 // more fragments
	plain6 := v6Client(macDev1, v6Msg(t, dhcpv6.MessageTypeSolicit, macDev1, 1, mud6(urlA)))
	hbh := withV6Ext(plain6, 0)
	frag6 := withV6Ext(plain6, 44)

	for _, tc := range []struct {
		name    string
		frame   []byte
		err     error
		relayed bool
		mac     net.HardwareAddr
		url     string
		host    string
	}{
		{"relayed v4", relayed4, nil, true, macDev1, urlA, ""},
		{"relay-forward v6, client from DUID", relayed6, nil, true, macDev2, urlB, "thermo.example"},
		{"relay nesting too deep", tooDeep, errAny, false, nil, "", ""},
		{"802.1Q tag", vlan, nil, false, macDev1, urlA, ""},
		{"ethernet padding", padded, nil, false, macDev1, urlA, ""},
		{"IPv6 hop-by-hop header", hbh, nil, false, macDev1, urlA, ""},
		{"IPv4 fragment", frag4, ErrFragmented, false, nil, "", ""},
		{"IPv6 fragment", frag6, ErrFragmented, false, nil, "", ""},
		{"truncated", plain4[:40], ErrNotDHCP, false, nil, "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m, err := ParseFrame(tc.frame)
			switch {
			case tc.err == errAny && err != nil:
				return
			case !errors.Is(err, tc.err):
				t.Fatalf("err = %v, want %v", err, tc.err)
			case err != nil:
				return
			}
			if m.Relayed != tc.relayed || m.ClientMAC.String() != tc.mac.String() || string(m.MUDURL) != tc.url || m.Hostname != tc.host {
				t.Errorf("parsed %+v", m)
			}
		})
	}
}

var errAny = errors.New("any error")

// withV6Ext inserts an 8-octet extension header of type typ after the
// IPv6 header of an untagged frame.
func withV6Ext(f []byte, typ byte) []byte {
	out := append([]byte{}, f[:14+40]...)
	next := out[14+6]
	out[14+6] = typ
	binary.BigEndian.PutUint16(out[14+4:], binary.BigEndian.Uint16(out[14+4:])+8)
	out = append(out, next, 0, 0, 0, 0, 0, 0, 0)
	return append(out, f[14+40:]...)
}

// The kernel filter passes every DHCP frame, in both directions, and drops
// what is not DHCP; run in x/net/bpf's VM on the same frames.
func TestDHCPFilter(t *testing.T) {
	prog, err := DHCPFilter()
	if err != nil {
		t.Fatal(err)
	}
	if _, err := (capture.Filter{Program: prog}).Assemble(); err != nil {
		t.Fatal(err)
	}
	vm, err := bpf.NewVM(prog)
	if err != nil {
		t.Fatal(err)
	}
	accept := map[string][]byte{}
	for name, f := range testdataFrames(t) {
		accept[name] = f
	}
	fw, _ := dhcpv6.EncapsulateRelay(v6Msg(t, dhcpv6.MessageTypeSolicit, macDev1, 1), dhcpv6.MessageTypeRelayForward, net.IPv6loopback, net.IPv6loopback)
	accept["relay 547→547"] = ethUDP(macRelay, macGW, netip.MustParseAddr("2001:db8:1::fd"), netip.MustParseAddr("2001:db8:1::1"), 547, 547, fw.ToBytes())
	opts := request4(t, macDev1, 1)
	withOpts := append(append([]byte{}, opts[:14]...), opts[14:14+20]...)
	withOpts[14] = 0x46 // IHL 6: one word of IP options
	binary.BigEndian.PutUint16(withOpts[14+2:], binary.BigEndian.Uint16(opts[14+2:])+4)
	withOpts = append(append(withOpts, 1, 1, 1, 0), opts[14+20:]...)
	accept["IPv4 with options"] = withOpts

	frag := append([]byte{}, opts...)
	frag[14+7] = 0x10 // fragment offset, not the first fragment
	tcp := append([]byte{}, opts...)
	tcp[14+9] = 6
	drop := map[string][]byte{
		"DNS":             ethUDP(macDev1, macGW, netip.MustParseAddr("192.0.2.10"), ipGW4, 5353, 53, []byte{1}),
		"DNS v6":          ethUDP(macDev1, macGW, netip.MustParseAddr("2001:db8:1::10"), netip.MustParseAddr("2001:db8:1::1"), 5353, 53, []byte{1}),
		"ARP":             append(append([]byte{}, opts[:12]...), 0x08, 0x06, 0, 1, 8, 0, 6, 4, 0, 1),
		"later fragment":  frag,
		"TCP to port 67":  tcp,
		"short":           {1, 2, 3},
		"v6 port 547 TCP": withProto6(ethUDP(macDev1, macGW, ipDev6LL, ipAllDHCP, 546, 547, []byte{1}), 6),
	}
	for name, f := range accept {
		if n, err := vm.Run(f); err != nil || n == 0 {
			t.Errorf("%s: dropped (%d, %v)", name, n, err)
		}
	}
	for name, f := range drop {
		if n, _ := vm.Run(f); n != 0 {
			t.Errorf("%s: accepted", name)
		}
	}
}

func withProto6(f []byte, proto byte) []byte {
	f[14+6] = proto
	return f
}

func TestIsConfirmation(t *testing.T) {
	frames := testdataFrames(t)
	for name, f := range frames {
		want := strings.Contains(name, "ack4") || strings.Contains(name, "reply6")
		if got := isConfirmation(f); got != want {
			t.Errorf("%s: isConfirmation = %v, want %v", name, got, want)
		}
	}
	rep := v6Msg(t, dhcpv6.MessageTypeReply, macDev1, 1, iana6(time.Hour, "2001:db8:1::100"))
	rr, _ := dhcpv6.EncapsulateRelay(rep, dhcpv6.MessageTypeRelayReply, net.IPv6loopback, net.IPv6loopback)
	if !isConfirmation(ethUDP(macGW, macRelay, netip.MustParseAddr("2001:db8:1::1"), netip.MustParseAddr("2001:db8:1::fd"), 547, 547, rr.ToBytes())) {
		t.Error("Relay-Reply not a confirmation")
	}
	for _, f := range [][]byte{nil, {1}, ack4(t, macDev1, 1, "192.0.2.50", 60)[:300]} {
		_ = isConfirmation(f) // must not panic on short input
	}
}
