package e2e

import (
	"encoding/binary"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/mdlayher/packet"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Sizes of the flood: made-up MACs announcing distinct URLs, of which the
// first slowURLs point at paths the MUD server holds for slowFor.
const (
	floodMACs = 2000
	slowURLs  = 160
	slowFor   = 10 * time.Second
)

// One host on one bridge port (lan1) sends DHCPDISCOVERs from 2,000
// made-up MACs, each announcing its own MUD URL — 160 of them on a path
// the MUD server answers only after 10 s, the others on paths it does not
// serve — and keeps sending, while a real device (udhcpc) joins on another
// port (lan2). The real device is enforced promptly (neither failed nor
// stuck in fetching), the flood raises a fetch-flood event naming lan1,
// and once the flood stops its records are forgotten (forget_after 20 s).
func TestAdversaryDHCPFloodOnOnePort(t *testing.T) {
	e := newEnv(t, envConfig{devices: 2, gw: gwlab.Config{Policy: "  forget_after: 20s\n"}})
	e.publish(bulb(bulbURL, "Example", "lightbulb2000"))
	e.gw.MUD.Hang("/slow/", slowFor)
	flooder, dev := e.lab.Devices[0], e.lab.Devices[1]

	frames := make([][]byte, floodMACs)
	fake := map[string]bool{}
	last := ""
	for i := range frames {
		mac := net.HardwareAddr{0x02, 0xf1, 0, 0, byte(i >> 8), byte(i)}
		path := fmt.Sprintf("/junk/c%d.json", i)
		if i < slowURLs {
			path = fmt.Sprintf("/slow/s%d.json", i)
		}
		f, err := discoverFrame(mac, uint32(i), "https://"+mudHost+path)
		if err != nil {
			t.Fatal(err)
		}
		frames[i], fake[mac.String()], last = f, true, mac.String()
	}
	stop := startFlood(t, flooder, frames)
	defer stop()

	// The flood is in mudd: its port's fetches are queued, and it says so.
	var flood api.Event
	err := gwlab.Poll(e.ctx, 60*time.Second, func() error {
		for _, ev := range e.events(nil) {
			if ev.Kind == "fetch-flood" {
				flood = ev
				return nil
			}
		}
		return fmt.Errorf("no fetch-flood event yet")
	})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(flood.Message, "port "+flooder.Port+":") {
		t.Errorf("fetch-flood event does not name %s: %q", flooder.Port, flood.Message)
	}
	// Every made-up MAC is known to mudd before the real device comes.
	var seen map[string]api.Device
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(time.Second) {
		if seen = e.floodDevices(fake); len(seen) == floodMACs {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("mudd lists %d of the %d flood devices after 60 s", len(seen), floodMACs)
		}
	}
	t.Logf("the flood's %d devices are in mudd; its event: %s", len(seen), flood.Message)
	if d := seen[last]; d.Port != flooder.Port {
		t.Errorf("a flood device is on port %q, want %s", d.Port, flooder.Port)
	}

	// A real device joins on the other port, while the flood goes on.
	joined := time.Now()
	e.join(1, gwlab.Udhcpc, "bulb", bulbURL)
	d, err := e.gw.WaitState(e.ctx, dev.MAC.String(), api.StateEnforced, 15*time.Second)
	if err != nil {
		t.Fatalf("the device on %s is not enforced within 15 s of joining: %v", dev.Port, err)
	}
	t.Logf("device on %s enforced %.1f s after it joined, during the flood on %s", dev.Port, time.Since(joined).Seconds(), flooder.Port)
	if d.Port != dev.Port || d.Enforcement != api.EnforcementEnforced {
		t.Errorf("the device: port %q, enforcement %q", d.Port, d.Enforcement)
	}
	e.refuse("enforced during the flood: bulb → other:8080", dev.NS, e.other.IPv4, otherPort)

	// The flood stops; its records go once not seen for forget_after.
	stop()
	for deadline := time.Now().Add(90 * time.Second); ; time.Sleep(time.Second) {
		n := len(e.floodDevices(fake))
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Errorf("%d flood devices still listed 90 s after the flood stopped", n)
			break
		}
	}
	if !hasEvent(e.events(nil), "forgotten", "port "+flooder.Port+": ") {
		t.Error("no forgotten event naming the flood's port")
	}
	if _, ok, err := e.gw.Device(e.ctx, dev.MAC.String()); err != nil || !ok {
		t.Errorf("the enforced device was forgotten too (%v)", err)
	}
}

// floodDevices are the devices mudd lists among the made-up MACs.
func (e *env) floodDevices(fake map[string]bool) map[string]api.Device {
	e.t.Helper()
	ds, err := e.gw.Devices(e.ctx)
	if err != nil {
		e.t.Fatal(err)
	}
	out := map[string]api.Device{}
	for _, d := range ds {
		if fake[d.MAC] {
			out[d.MAC] = d
		}
	}
	return out
}

// startFlood sends frames from h's interface, over and over at about 500
// a second, until the returned stop is called (also at the test's end).
func startFlood(t *testing.T, h *netlab.Host, frames [][]byte) (stop func()) {
	t.Helper()
	c, err := netlab.RawConn(h)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	var sent atomic.Int64
	var wg sync.WaitGroup
	wg.Go(func() {
		tick := time.NewTicker(10 * time.Millisecond)
		defer tick.Stop()
		bcast := &packet.Addr{HardwareAddr: net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}}
		for i := 0; ; {
			select {
			case <-done:
				return
			case <-tick.C:
			}
			for range 5 {
				if _, err := c.WriteTo(frames[i%len(frames)], bcast); err == nil {
					sent.Add(1)
				}
				i++
			}
		}
	})
	var once sync.Once
	stop = func() {
		once.Do(func() {
			close(done)
			wg.Wait()
			c.Close()
			t.Logf("flood: %d frames sent", sent.Load())
		})
	}
	t.Cleanup(stop)
	return stop
}

// discoverFrame is a broadcast DHCPDISCOVER from mac announcing mudURL
// (option 161), framed in Ethernet, IPv4 and UDP as a client sends it.
func discoverFrame(mac net.HardwareAddr, xid uint32, mudURL string) ([]byte, error) {
	var id dhcpv4.TransactionID
	binary.BigEndian.PutUint32(id[:], xid)
	d, err := dhcpv4.NewDiscovery(mac, dhcpv4.WithTransactionID(id),
		dhcpv4.WithGeneric(dhcpv4.GenericOptionCode(161), []byte(mudURL)))
	if err != nil {
		return nil, err
	}
	payload := d.ToBytes()
	udp := binary.BigEndian.AppendUint16(nil, 68)
	udp = binary.BigEndian.AppendUint16(udp, 67)
	udp = binary.BigEndian.AppendUint16(udp, uint16(8+len(payload)))
	udp = binary.BigEndian.AppendUint16(udp, 0) // no checksum (IPv4 allows it)
	udp = append(udp, payload...)
	ip := []byte{0x45, 0, 0, 0, 0, 0, 0, 0, 64, 17, 0, 0, 0, 0, 0, 0, 255, 255, 255, 255}
	binary.BigEndian.PutUint16(ip[2:], uint16(20+len(udp)))
	binary.BigEndian.PutUint16(ip[10:], ipChecksum(ip))
	f := append([]byte{0xff, 0xff, 0xff, 0xff, 0xff, 0xff}, mac...)
	f = binary.BigEndian.AppendUint16(f, 0x0800)
	return append(append(f, ip...), udp...), nil
}

// ipChecksum is the IPv4 header checksum (RFC 791).
func ipChecksum(h []byte) uint16 {
	var sum uint32
	for i := 0; i+1 < len(h); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(h[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}
