package framegen

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/internal/packet"
)

var testClient = Client{MAC: net.HardwareAddr{0x02, 0x5c, 0, 0, 0, 7}, Hostname: "dev7", MUDURL: "https://mud.example.com/a.json"}

// The client's messages are what dhcpsnoop, mudd's parser, reads as a
// client's DISCOVER and SOLICIT with the MUD URL (RFC 8520 §10), the MAC
// and the transaction id.
func TestClientMessagesParse(t *testing.T) {
	for _, tc := range []struct {
		name   string
		build  func(Client, uint32) ([]byte, error)
		family int
		typ    string
	}{
		{"DHCPv4", discover, 4, "DISCOVER"},
		{"DHCPv6", solicit, 6, "SOLICIT"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f, err := tc.build(testClient, 0x123457)
			if err != nil {
				t.Fatal(err)
			}
			m, err := dhcpsnoop.ParseFrame(f)
			if err != nil {
				t.Fatal(err)
			}
			if m.Family != tc.family || m.Type != tc.typ || !m.FromClient || m.XID != 0x123457 {
				t.Errorf("family %d type %s from client %v xid %#x", m.Family, m.Type, m.FromClient, m.XID)
			}
			if !bytes.Equal(m.ClientMAC, testClient.MAC) || string(m.MUDURL) != testClient.MUDURL || m.Hostname != testClient.Hostname {
				t.Errorf("client MAC %s, MUD URL %q, hostname %q", m.ClientMAC, m.MUDURL, m.Hostname)
			}
		})
	}
}

// The IPv6 frames' checksums are right: UDP of a SOLICIT and ICMPv6 of a
// neighbour solicitation (RFC 8200 §8.1: zero over the message as sent).
func TestChecksums6(t *testing.T) {
	sol, err := solicit(testClient, 1)
	if err != nil {
		t.Fatal(err)
	}
	ns := solicitNeighbour(testClient.MAC, netip.MustParseAddr("2001:db8:1::1"))
	for _, f := range [][]byte{sol, ns} {
		var fr packet.Frame
		if err := packet.Decode(f, &fr); err != nil {
			t.Fatal(err)
		}
		if s := packet.Checksum6(fr.IP.Src, fr.IP.Dst, fr.IP.Protocol, fr.IP.Payload); s != 0 {
			t.Errorf("protocol %d: checksum over the message is %#x, want 0", fr.IP.Protocol, s)
		}
		if fr.IP.Src != LinkLocal(testClient.MAC) {
			t.Errorf("source %s, want the client's link-local address", fr.IP.Src)
		}
	}
}

// The DHCPv4 frame's IPv4 header checksum is right.
func TestChecksum4(t *testing.T) {
	f, err := discover(testClient, 1)
	if err != nil {
		t.Fatal(err)
	}
	if s := ipv4Checksum(f[14:34]); s != 0 {
		t.Errorf("header checksum over the header is %#x, want 0", s)
	}
}

// A RELEASE is what dhcpsnoop reads as the client's release of the
// addresses it names (RFC 8415 §18.2.7; RFC 2131 §4.4.6: ciaddr), so
// that a snooping gateway ends the lease; and what the server needs to
// find the lease: the client's DUID-LL and IAID, the server's identifier
// (DHCPv6), or option 61 and option 54 (DHCPv4).
func TestReleaseParses(t *testing.T) {
	t.Run("DHCPv6", func(t *testing.T) {
		a, b := netip.MustParseAddr("2001:db8:1::1a2b"), netip.MustParseAddr("2001:db8:1::3c4d")
		server := &dhcpv6.DUIDLL{HWType: iana.HWTypeEthernet, LinkLayerAddr: net.HardwareAddr{0x02, 0, 0, 0, 0, 1}}
		f, err := release6(testClient, 0x123457, dhcpv6.OptServerID(server), [4]byte{0, 0, 0, 7}, []netip.Addr{a, b})
		if err != nil {
			t.Fatal(err)
		}
		m, err := dhcpsnoop.ParseFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Family != 6 || m.Type != "RELEASE" || !m.FromClient || m.XID != 0x123457 || !bytes.Equal(m.ClientMAC, testClient.MAC) {
			t.Errorf("family %d type %s from client %v xid %#x client %s", m.Family, m.Type, m.FromClient, m.XID, m.ClientMAC)
		}
		if len(m.Addrs) != 2 || m.Addrs[0].Addr != a || m.Addrs[1].Addr != b {
			t.Errorf("addresses %v, want %s and %s", m.Addrs, a, b)
		}
		var fr packet.Frame
		if err := packet.Decode(f, &fr); err != nil {
			t.Fatal(err)
		}
		d, err := dhcpv6.FromBytes(fr.UDP.Payload)
		if err != nil {
			t.Fatal(err)
		}
		msg := d.(*dhcpv6.Message)
		ia := msg.Options.OneIANA()
		if ia == nil || ia.IaId != [4]byte{0, 0, 0, 7} {
			t.Errorf("IA_NA %v, want IAID 7", ia)
		}
		if got := msg.Options.ServerID(); got == nil || !got.Equal(server) {
			t.Errorf("server identifier %v", got)
		}
		if cid := msg.Options.ClientID(); cid == nil || !cid.Equal(duid(testClient)) {
			t.Errorf("client identifier %v, want the DUID-LL of the SOLICIT", cid)
		}
		if _, err := release6(testClient, 1, nil, [4]byte{}, []netip.Addr{a}); err == nil {
			t.Error("a RELEASE without a server identifier was built")
		}
	})
	t.Run("DHCPv4", func(t *testing.T) {
		a := netip.MustParseAddr("192.0.2.150")
		f, err := release4(testClient, 0x123457, net.IPv4(192, 0, 2, 1), a)
		if err != nil {
			t.Fatal(err)
		}
		m, err := dhcpsnoop.ParseFrame(f)
		if err != nil {
			t.Fatal(err)
		}
		if m.Family != 4 || m.Type != "RELEASE" || !m.FromClient || m.ClientIP != a || !bytes.Equal(m.ClientMAC, testClient.MAC) || m.SrcIP != a {
			t.Errorf("family %d type %s from client %v ciaddr %s client %s source %s", m.Family, m.Type, m.FromClient, m.ClientIP, m.ClientMAC, m.SrcIP)
		}
		if !bytes.Equal(m.ClientID, append([]byte{1}, testClient.MAC...)) {
			t.Errorf("client identifier %x, want the REQUEST's", m.ClientID)
		}
		if s := ipv4Checksum(f[14:34]); s != 0 {
			t.Errorf("header checksum over the header is %#x, want 0", s)
		}
		if _, err := release4(testClient, 1, nil, a); err == nil {
			t.Error("a DHCPRELEASE without a server identifier was built")
		}
	})
}
