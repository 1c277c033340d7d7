package capture_test

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net"
	"os"
	"testing"
	"time"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet"
	"github.com/openmud/mud/internal/packet/capture"
)

// frameFrom builds an Ethernet frame from src carrying a made-up EtherType
// (0x88b5, local experimental) and a payload that names it.
func frameFrom(src net.HardwareAddr, tag string) []byte {
	f := append(net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, src...)
	f = binary.BigEndian.AppendUint16(f, 0x88b5)
	return append(f, []byte(tag+"-padding-up-to-the-minimum-frame-size-of-ethernet")...)
}

// experimental keeps only frames of EtherType 0x88b5, so that the tests see
// nothing of the lab's own traffic (IPv6 router solicitations and the like).
var experimental = []bpf.Instruction{
	bpf.LoadAbsolute{Off: 12, Size: 2},
	bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x88b5, SkipFalse: 1},
	bpf.RetConstant{Val: capture.SnapLen},
	bpf.RetConstant{Val: 0},
}

// next reads frames from c until one with tag in its payload arrives, or
// fails the test after a few seconds.
func next(t *testing.T, c *capture.Conn, tag string) ([]byte, capture.Info) {
	t.Helper()
	return readUntil(t, c, tag, "")
}

// none checks that c queued no frame with tag: it reads until a frame
// with the marker end, sent after the one that must not be seen, arrives.
func none(t *testing.T, c *capture.Conn, tag, end string) {
	t.Helper()
	readUntil(t, c, end, tag)
}

func readUntil(t *testing.T, c *capture.Conn, end, forbidden string) ([]byte, capture.Info) {
	t.Helper()
	buf := make([]byte, 2048)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		f, info, err := c.ReadFrame(buf)
		if err != nil {
			t.Fatalf("reading on %s until %q: %v", c.Interface(), end, err)
		}
		if forbidden != "" && bytes.Contains(f, []byte(forbidden)) {
			t.Fatalf("%s queued %q", c.Interface(), forbidden)
		}
		if bytes.Contains(f, []byte(end)) {
			return bytes.Clone(f), info
		}
	}
}

// A device sends frames on its veth; the gateway's end of the link sees
// them incoming, the device's own socket outgoing, each socket only in the
// direction its filter asks for, marked frames skipped, a VLAN tag the
// kernel took off given back, and the kernel's timestamp.
func TestLabCapture(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	dev := lab.Devices[0]
	open := func(ns, iface string, cfg capture.Config) *capture.Conn {
		t.Helper()
		cfg.NetNS = ns
		c, err := capture.Open(iface, cfg)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	send := open(dev.NS, dev.Iface, capture.Config{SendOnly: true})
	marked := open(dev.NS, dev.Iface, capture.Config{SendOnly: true, Mark: 0x100})
	devOut := open(dev.NS, dev.Iface, capture.Config{Filter: capture.Filter{Program: experimental, Direction: capture.Outgoing}, Timestamps: true})
	devIn := open(dev.NS, dev.Iface, capture.Config{Filter: capture.Filter{Program: experimental, Direction: capture.Incoming}})
	devUnmarked := open(dev.NS, dev.Iface, capture.Config{Filter: capture.Filter{Program: experimental, SkipMark: 0x100}})
	gwIn := open(lab.GW.NS, dev.Port, capture.Config{Filter: capture.Filter{Program: experimental}, Promiscuous: true})

	before := time.Now()
	plain := frameFrom(dev.MAC, "plain")
	if err := send.Send(plain); err != nil {
		t.Fatal(err)
	}
	got, info := next(t, devOut, "plain")
	if !bytes.Equal(got, plain) || info.Direction != capture.Outgoing || info.Tagged || info.Truncated || info.Len != len(plain) {
		t.Errorf("device's outgoing capture: % x, %+v", got, info)
	}
	if info.Time.Before(before.Add(-time.Second)) || info.Time.After(time.Now()) {
		t.Errorf("kernel timestamp %v, sent at %v", info.Time, before)
	}
	got, info = next(t, gwIn, "plain")
	if !bytes.Equal(got, plain) || info.Direction != capture.Incoming || info.Time != (time.Time{}) {
		t.Errorf("gateway's capture: % x, %+v", got, info)
	}

	// 802.1Q: the receiving kernel takes the tag out of the frame; the
	// capture puts it back.
	tagged := frameFrom(dev.MAC, "tagged")
	tagged = append(tagged[:12:12], append([]byte{0x81, 0x00, 0x20, 0x0a}, tagged[12:]...)...)
	if err := send.Send(tagged); err != nil {
		t.Fatal(err)
	}
	got, info = next(t, gwIn, "tagged")
	if !bytes.Equal(got, tagged) || info.Len != len(tagged) || !info.Tagged || info.Tag.VID() != 10 || info.Tag.TPID != packet.EtherTypeVLAN {
		t.Errorf("tagged frame read as % x (%+v), sent % x", got, info, tagged)
	}
	var f packet.Frame
	if err := packet.Decode(got, &f); err != nil || f.NumTags != 1 || f.Tags[0].VID() != 10 || f.EtherType != 0x88b5 {
		t.Errorf("tagged frame decoded as %+v: %v", f, err)
	}

	// A marked send: skipped by the socket that skips the mark, seen by
	// the one without a mark test; the incoming-only socket sees none of
	// the device's sends.
	if err := marked.Send(frameFrom(dev.MAC, "marked")); err != nil {
		t.Fatal(err)
	}
	if err := send.Send(frameFrom(dev.MAC, "end")); err != nil {
		t.Fatal(err)
	}
	next(t, devOut, "marked")
	none(t, devUnmarked, "marked", "end")

	// The other way: the gateway's port sends, the device receives. The
	// incoming-only socket saw none of the device's own sends: the
	// gateway's frame is the first it has.
	gwSend := open(lab.GW.NS, dev.Port, capture.Config{SendOnly: true})
	back := frameFrom(lab.GW.MAC, "from-gw")
	if err := gwSend.Send(back); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, 2048)
	_ = devIn.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, info, err := devIn.ReadFrame(buf)
	if err != nil || !bytes.Equal(got, back) || info.Direction != capture.Incoming || info.PacketType != 1 /* PACKET_BROADCAST */ {
		t.Errorf("device's incoming capture: % x, %+v, %v; want the gateway's frame first", got, info, err)
	}
	if err := send.Send(frameFrom(dev.MAC, "end2")); err != nil {
		t.Fatal(err)
	}
	none(t, devOut, "from-gw", "end2")

	// A socket that only sends queues nothing.
	_ = send.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
	if _, _, err := send.ReadFrame(buf); !errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("send-only socket read: %v, want its deadline", err)
	}
}

// The driver names what the interface is: the resolver holds answers only
// on bridges.
func TestLabDriver(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	for iface, want := range map[string]string{netlab.LANBridge: "bridge", lab.Devices[0].Port: "veth"} {
		c, err := capture.Open(iface, capture.Config{NetNS: lab.GW.NS, SendOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		if d, err := c.Driver(); err != nil || d != want {
			t.Errorf("driver of %s: %q, %v; want %q", iface, d, err, want)
		}
		c.Close()
	}
	if _, err := capture.Open("no-such-if", capture.Config{NetNS: lab.GW.NS}); err == nil {
		t.Error("opened a socket on an interface that does not exist")
	}
}
