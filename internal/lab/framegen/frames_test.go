package framegen

import (
	"bytes"
	"net"
	"net/netip"
	"testing"

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
		if fr.IP.Src != linkLocal(testClient.MAC) {
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
