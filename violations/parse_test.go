package violations

import (
	"encoding/binary"
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// The files in testdata/ are NFLOG messages (nlmsghdr included) that
// Linux 6.18 sent for drops of the real enforcer in the lab
// (TestDropsBecomeViolations -capture): a camera 02:00:00:00:01:01
// (192.0.2.11, 2001:db8:1::b), another LAN host 02:00:00:00:01:02
// (192.0.2.12, 2001:db8:1::c) and a server the camera may not reach
// (203.0.113.12, 2001:db8:2::c). Bridged ones (family NFPROTO_BRIDGE)
// carry NFULA_L2HDR and a payload that starts at the IP header, as the
// inet ones do.
func readMessage(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name+".bin"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

var (
	camMAC = [6]byte{2, 0, 0, 0, 1, 1}
	cam4   = netip.MustParseAddr("192.0.2.11")
	cam6   = netip.MustParseAddr("2001:db8:1::b")
	other4 = netip.MustParseAddr("192.0.2.12")
	other6 = netip.MustParseAddr("2001:db8:1::c")
	far4   = netip.MustParseAddr("203.0.113.12")
	far6   = netip.MustParseAddr("2001:db8:2::c")
)

func TestParseCapturedMessages(t *testing.T) {
	for _, c := range []struct {
		name      string
		kind      Kind
		dir       Direction
		family    uint8
		device    [6]byte
		hasDevice bool
		devAddr   netip.Addr
		peer      netip.Addr
		proto     uint8
		port      uint16
	}{
		{"out4-tcp", DefaultDeny, Out, nfprotoIPv4, camMAC, true, cam4, far4, 6, 8080},
		{"out6-tcp", DefaultDeny, Out, nfprotoIPv6, camMAC, true, cam6, far6, 6, 8080},
		{"out4-ping", DefaultDeny, Out, nfprotoIPv4, camMAC, true, cam4, far4, 1, 8},
		// routed to the device: the link-layer header is the WAN side's
		{"in4-routed", DefaultDeny, In, nfprotoIPv4, [6]byte{}, false, cam4, far4, 6, 9999},
		// bridged to the device: the frame's destination is the device
		{"in4-bridged", DefaultDeny, In, nfprotoBridge, camMAC, true, cam4, other4, 6, 9999},
		{"out6-bridged", DefaultDeny, Out, nfprotoBridge, camMAC, true, cam6, other6, 6, 9999},
		{"guard4-udp", SourceGuard, Out, nfprotoIPv4, camMAC, true, netip.MustParseAddr("192.0.2.99"), netip.MustParseAddr("203.0.113.11"), 17, 8080},
	} {
		t.Run(c.name, func(t *testing.T) {
			var p Parser
			var d Drop
			if err := p.ParseMessage(readMessage(t, c.name), &d); err != nil {
				t.Fatal(err)
			}
			mac, ok := d.Device()
			if d.Kind != c.kind || d.Direction != c.dir || d.Family != c.family || ok != c.hasDevice || mac != c.device ||
				d.DeviceAddr() != c.devAddr || d.Peer() != c.peer || d.Protocol != c.proto || d.Port != c.port {
				t.Errorf("got %+v (device %v %v, device address %v, peer %v)\nwant %+v", d, net.HardwareAddr(mac[:]), ok, d.DeviceAddr(), d.Peer(), c)
			}
		})
	}
}

// Every prefix of a message, and every message with one octet changed,
// parses or gets a named error; nothing panics.
func TestParseDamagedMessages(t *testing.T) {
	known := map[string]bool{}
	for _, n := range errorNames {
		known[n] = true
	}
	check := func(b []byte) {
		var p Parser
		var d Drop
		err := p.ParseMessage(b, &d)
		var pe *ParseError
		if err != nil && (!errors.As(err, &pe) || !known[pe.Reason]) {
			t.Fatalf("% x: error %v is not a named ParseError", b, err)
		}
	}
	for _, name := range []string{"out4-tcp", "in4-bridged", "out6-tcp", "guard4-udp"} {
		msg := readMessage(t, name)
		for n := 0; n <= len(msg); n++ {
			b := append([]byte(nil), msg[:n]...)
			if n >= 4 {
				binary.NativeEndian.PutUint32(b, uint32(n)) // the header agrees with the cut
			}
			check(b)
		}
		for i := range msg {
			for _, v := range []byte{0, 0xff, msg[i] ^ 0x80} {
				b := append([]byte(nil), msg...)
				b[i] = v
				check(b)
			}
		}
	}
}

func TestParseErrorsAreNamed(t *testing.T) {
	msg := readMessage(t, "out4-tcp")
	attr := func(typ uint16, v []byte) []byte {
		b := binary.NativeEndian.AppendUint16(nil, uint16(4+len(v)))
		b = binary.NativeEndian.AppendUint16(b, typ)
		b = append(b, v...)
		for len(b)%4 != 0 {
			b = append(b, 0)
		}
		return b
	}
	build := func(typ uint16, attrs ...[]byte) []byte {
		body := []byte{nfprotoIPv4, 0, 0, 7}
		for _, a := range attrs {
			body = append(body, a...)
		}
		h := make([]byte, 16)
		binary.NativeEndian.PutUint32(h, uint32(16+len(body)))
		binary.NativeEndian.PutUint16(h[4:], typ)
		return append(h, body...)
	}
	var good Drop
	if err := new(Parser).ParseMessage(msg, &good); err != nil {
		t.Fatal(err)
	}
	// the payload of the captured message
	payload := msg[len(msg)-60:]
	pkt := uint16(nfnlSubsysULOG << 8)
	prefix := attr(attrPrefix, []byte(PrefixDenyOut+"\x00"))
	for _, c := range []struct {
		name string
		msg  []byte
		want string
	}{
		{"short", msg[:10], ErrShortHeader},
		{"length beyond the message", append(binary.NativeEndian.AppendUint32(nil, 4096), msg[4:]...), ErrShortHeader},
		{"config message", build(nfnlSubsysULOG<<8 | msgConfig), ErrNotPacket},
		{"another subsystem", build(3 << 8), ErrNotPacket},
		{"attribute past the end", build(pkt, []byte{200, 0, 10, 0, 'm'}), ErrBadAttribute},
		{"attribute length below 4", build(pkt, []byte{2, 0, 10, 0}), ErrBadAttribute},
		{"no prefix", build(pkt, attr(attrPayload, payload)), ErrNoPrefix},
		{"foreign prefix", build(pkt, attr(attrPrefix, []byte("ssh brute: \x00")), attr(attrPayload, payload)), ErrForeignPrefix},
		{"no payload", build(pkt, prefix), ErrNoPayload},
		{"empty payload", build(pkt, prefix, attr(attrPayload, nil)), ErrPayload},
		{"not IP", build(pkt, prefix, attr(attrPayload, []byte{0x10, 1, 2, 3})), ErrPayload},
		{"truncated IP", build(pkt, prefix, attr(attrPayload, payload[:30])), ErrPayload},
		{"short link-layer header", build(pkt, prefix, attr(attrHWHeader, []byte{1, 2, 3}), attr(attrPayload, payload)), ErrBadHWHeader},
	} {
		var d Drop
		err := new(Parser).ParseMessage(c.msg, &d)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Reason != c.want {
			t.Errorf("%s: got %v, want %s", c.name, err, c.want)
		}
	}
	// A hand-built message with only a prefix and the payload parses,
	// without a device MAC.
	var d Drop
	if err := new(Parser).ParseMessage(build(pkt, prefix, attr(attrPayload, payload)), &d); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Device(); ok || d.Peer() != good.Peer() || d.Port != good.Port {
		t.Errorf("minimal message: %+v, want the captured packet's peer and port and no MAC", d)
	}
}

// FuzzParseMessage feeds arbitrary netlink messages to the parser: it must
// return a drop or a named error, never panic, and a drop it returns must
// carry an IP peer and a known kind and direction.
func FuzzParseMessage(f *testing.F) {
	for _, name := range []string{"out4-tcp", "out6-tcp", "out4-ping", "in4-routed", "in4-bridged", "out6-bridged", "guard4-udp"} {
		f.Add(readMessage(f, name))
	}
	var p Parser
	tab := NewTable(Config{MaxRecords: 16, MaxPerDevice: 4})
	f.Fuzz(func(t *testing.T, b []byte) {
		var d Drop
		err := p.ParseMessage(b, &d)
		if err != nil {
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("unnamed error %v", err)
			}
			tab.noteMessage(err)
			return
		}
		if !d.Peer().IsValid() || d.Kind == 0 || d.Direction == 0 {
			t.Fatalf("drop without peer, kind or direction: %+v", d)
		}
		tab.Add(&d)
		if s := tab.Stats(); s.Records > 16 {
			t.Fatalf("%d records held, cap 16", s.Records)
		}
	})
}
