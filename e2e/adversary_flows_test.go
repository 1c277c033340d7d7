package e2e

import (
	"errors"
	"fmt"
	"github.com/openmud/mud/api"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Flows opened before a device's treatment tightens must not outlive the
// change: a long-lived TCP connection and a UDP stream keep sending in both
// directions across the transition, and afterwards not one packet of
// either arrives at either end.

const (
	streamPort  = 9300
	streamEvery = 20 * time.Millisecond
	// after the transition: time for packets in flight, then the window
	// in which nothing may arrive
	streamSettle = 300 * time.Millisecond
	streamWindow = 1500 * time.Millisecond
)

// farEnd serves TCP and UDP echo on a host's port, counting what it
// receives.
func newFarEnd(t *testing.T, h *netlab.Host, port int) *netlab.Echo {
	t.Helper()
	s, err := netlab.ServeEcho(h.NS, fmt.Sprintf("0.0.0.0:%d", port))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	return s
}

// stream is a device's TCP connection and UDP stream to a far end, each
// sending a byte every streamEvery and counting what comes back.
type stream struct {
	what     string
	back     atomic.Int64
	tcp, udp net.Conn
	stop     chan struct{}
	wg       sync.WaitGroup
	sent     atomic.Int64
	far      *netlab.Echo
}

func openStream(t *testing.T, what, ns string, dst netip.Addr, far *netlab.Echo) *stream {
	t.Helper()
	s := &stream{what: what, stop: make(chan struct{}), far: far}
	var err error
	addr := netlab.HostPort(dst, streamPort).String()
	if s.tcp, err = netlab.Dial(ns, "tcp", addr, passWait); err != nil {
		t.Fatalf("%s: TCP: %v", what, err)
	}
	if s.udp, err = netlab.Dial(ns, "udp", addr, passWait); err != nil {
		t.Fatalf("%s: UDP: %v", what, err)
	}
	for _, c := range []net.Conn{s.tcp, s.udp} {
		s.wg.Add(2)
		go func() {
			defer s.wg.Done()
			buf := make([]byte, 64)
			for {
				n, err := c.Read(buf)
				if n > 0 {
					s.back.Add(int64(n))
				}
				if err != nil && (errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF)) {
					return
				}
			}
		}()
		go func() {
			defer s.wg.Done()
			t := time.NewTicker(streamEvery)
			defer t.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-t.C:
				}
				_ = c.SetWriteDeadline(time.Now().Add(streamEvery))
				if _, err := c.Write([]byte{'x'}); err == nil {
					s.sent.Add(1)
				}
			}
		}()
	}
	return s
}

func (s *stream) close() {
	select {
	case <-s.stop:
		return
	default:
	}
	close(s.stop)
	s.tcp.Close()
	s.udp.Close()
	s.wg.Wait()
}

// flowing waits until both directions carry data.
func (s *stream) flowing(t *testing.T) {
	t.Helper()
	far, back := s.far.Received(), s.back.Load()
	err := gwlab.Poll(t.Context(), passWait, func() error {
		if s.far.Received() < far+10 || s.back.Load() < back+10 {
			return fmt.Errorf("far end got %d, device got %d back", s.far.Received()-far, s.back.Load()-back)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("%s: the stream does not flow before the transition: %v", s.what, err)
	}
}

// stopped asserts that after the transition nothing arrives at either end
// over a window, while the device keeps sending.
func (s *stream) stopped(t *testing.T) {
	t.Helper()
	time.Sleep(streamSettle)
	far, back, sent := s.far.Received(), s.back.Load(), s.sent.Load()
	time.Sleep(streamWindow)
	if s.sent.Load()-sent < 10 {
		t.Errorf("%s: the device stopped sending (%d writes in the window)", s.what, s.sent.Load()-sent)
	}
	if n := s.far.Received() - far; n != 0 {
		t.Errorf("%s: %d bytes reached the far end after the transition", s.what, n)
	}
	if n := s.back.Load() - back; n != 0 {
		t.Errorf("%s: %d bytes came back to the device after the transition", s.what, n)
	}
}

// A device whose MUD server answers slowly is unrestricted while mudd
// fetches: what it opens to a host its file forbids ends when its policy
// is enforced.
func TestAdversaryFlowsUnrestrictedToEnforced(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	if err := e.gw.MUD.Delay(bulbURL, 4*time.Second); err != nil {
		t.Fatal(err)
	}
	far := newFarEnd(t, e.other, streamPort)
	h := e.lab.Devices[0]
	_, _ = e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	if d, _, err := e.gw.Device(e.ctx, h.MAC.String()); err != nil || d.State == api.StateEnforced {
		t.Fatalf("the device is %s before its file arrived (%v)", d.State, err)
	}
	s := openStream(t, "bulb → other (forbidden by its file), opened while fetching", h.NS, e.other.IPv4, far)
	defer s.close()
	s.flowing(t)
	e.waitState(h, api.StateEnforced)
	s.stopped(t)
}

// `mudctl quarantine` of a device without MUD, and of an enforced device
// whose file permits the stream.
func TestAdversaryFlowsQuarantine(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2})
	u := "https://" + mudHost + "/streamer.json"
	e.publish(gwlab.File{URL: u, Mfg: "Example", Model: "streamer",
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: streamPort}, {Remote: cloudHost, Protocol: 17, RemotePort: streamPort}},
	})
	lap, dev := e.lab.Devices[0], e.lab.Devices[1]
	e.join(0, gwlab.Udhcpc, "laptop", "")
	e.join(1, gwlab.Udhcpc, "streamer", u)
	e.waitState(dev, api.StateEnforced)
	far, farCloud := newFarEnd(t, e.other, streamPort), newFarEnd(t, e.cloud, streamPort)
	ls := openStream(t, "laptop (no MUD) → other", lap.NS, e.other.IPv4, far)
	defer ls.close()
	ls.flowing(t)
	e.mudctl("quarantine", lap.MAC.String())
	ls.stopped(t)

	cloud := e.resolve(dev, cloudHost)
	ds := openStream(t, "streamer → cloud (permitted while enforced)", dev.NS, cloud, farCloud)
	defer ds.close()
	ds.flowing(t)
	e.mudctl("quarantine", dev.MAC.String())
	ds.stopped(t)
}

// A lateral (bridged) flow between two devices of one manufacturer ends
// when one of them is quarantined, in both bridged reply modes.
func TestAdversaryFlowsLateralQuarantine(t *testing.T) {
	t.Parallel()
	for _, on := range []string{"0", "1"} {
		t.Run("bridge-nf-call "+on, func(t *testing.T) {
			e := newEnv(t, envConfig{devices: 2, sysctls: []string{"net.bridge.bridge-nf-call-iptables=" + on, "net.bridge.bridge-nf-call-ip6tables=" + on}})
			u := "https://" + mudHost + "/things-stream.json"
			f := gwlab.File{URL: u, Mfg: "Example Things", Model: "things-stream",
				From: []gwlab.Rule{{MUD: sameMfg(), RemotePort: streamPort}, {MUD: sameMfg(), Protocol: 17, RemotePort: streamPort}},
				To:   []gwlab.Rule{{MUD: sameMfg(), LocalPort: streamPort}, {MUD: sameMfg(), Protocol: 17, LocalPort: streamPort}},
			}
			e.publish(f)
			a, b := e.lab.Devices[0], e.lab.Devices[1]
			e.join(0, gwlab.Udhcpc, "a", u)
			_, bIP := e.join(1, gwlab.Udhcpc, "b", u)
			e.waitState(a, api.StateEnforced)
			e.waitState(b, api.StateEnforced)
			far := newFarEnd(t, b, streamPort)
			s := openStream(t, "a → b (lateral, same manufacturer)", a.NS, bIP, far)
			defer s.close()
			s.flowing(t)
			e.mudctl("quarantine", b.MAC.String())
			s.stopped(t)
		})
	}
}
