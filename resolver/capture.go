package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"sync"
	"time"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet"
	"github.com/openmud/mud/internal/packet/capture"
)

// snapLen is how much of a DNS answer the capture keeps: all of it.
const snapLen = capture.SnapLen

// Capture is an AF_PACKET socket on one LAN interface that receives the
// DNS responses the gateway sends out of it (its own resolver's answers
// and routed ones, which HandleFrame tells apart by their source, see
// trust.go): frames in the outgoing direction, IPv4 or IPv6, UDP or
// TCP from port 53, non-fragments. Responses merely bridged between two
// LAN ports, or received by the gateway, are not captured; one a LAN host
// has the gateway route back onto the LAN is, and is refused by its source
// like any routed answer.
//
// On a bridge, a Capture also releases the answers the hold table held
// (Config.HoldMark): it re-injects them with the hold mark, and its filter
// skips marked frames, so that no capture sees a released answer again.
type Capture struct {
	conn   *capture.Conn
	bridge bool
	hold   bool // releases held answers (set by Run before reading)
}

// snoopFilter is the BPF program of a Capture, without the direction and
// mark tests the socket adds (capture.Filter): IPv4 UDP or TCP from port
// 53, not a later fragment, or IPv6 with UDP or TCP as the first next
// header, from port 53.
func snoopFilter() ([]bpf.Instruction, error) {
	a := capture.NewProgram()
	a.Add(bpf.LoadAbsolute{Off: 12, Size: 2}) // ethertype
	a.JumpEqual(packet.EtherTypeIPv4, "", "v6")
	a.Add(bpf.LoadAbsolute{Off: 14 + 9, Size: 1}) // IPv4 protocol
	a.JumpEqual(packet.ProtoUDP, "v4port", "")
	a.JumpEqual(packet.ProtoTCP, "", "drop")
	a.Label("v4port")
	a.Add(bpf.LoadAbsolute{Off: 14 + 6, Size: 2}) // flags + fragment offset
	a.JumpBitsSet(0x1fff, "drop", "")
	a.Add(bpf.LoadMemShift{Off: 14}) // X = IPv4 header length
	a.Add(bpf.LoadIndirect{Off: 14, Size: 2})
	a.JumpEqual(53, "accept", "drop")
	a.Label("v6")
	a.JumpEqual(packet.EtherTypeIPv6, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 6, Size: 1}) // next header
	a.JumpEqual(packet.ProtoUDP, "v6port", "")
	a.JumpEqual(packet.ProtoTCP, "", "drop")
	a.Label("v6port")
	a.Add(bpf.LoadAbsolute{Off: 14 + 40, Size: 2})
	a.JumpEqual(53, "accept", "drop")
	a.Label("accept")
	a.Add(bpf.RetConstant{Val: snapLen})
	a.Label("drop")
	a.Add(bpf.RetConstant{Val: 0})
	return a.Instructions()
}

// captureFilter is a Capture's filter: outgoing DNS answers, skipping
// frames with skipMark (released answers) when it is not zero.
func captureFilter(skipMark uint32) (capture.Filter, error) {
	prog, err := snoopFilter()
	if err != nil {
		return capture.Filter{}, fmt.Errorf("assembling the DNS capture filter: %w", err)
	}
	return capture.Filter{Program: prog, Direction: capture.Outgoing, SkipMark: skipMark}, nil
}

// OpenCapture opens a capture socket on the interface ifname of the
// calling thread's network namespace (needs CAP_NET_RAW). Give it to
// Config.Captures, or let Run open Config.SnoopInterfaces.
func OpenCapture(ifname string) (*Capture, error) {
	filter, err := captureFilter(0)
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: %w", ifname, err)
	}
	conn, err := capture.Open(ifname, capture.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture: %w", err)
	}
	c := &Capture{conn: conn}
	// A bridge's driver is "bridge".
	if d, err := conn.Driver(); err == nil {
		c.bridge = d == "bridge"
	}
	return c, nil
}

// Interface is the name of the captured interface.
func (c *Capture) Interface() string { return c.conn.Interface() }

// Bridge reports whether the captured interface is a bridge, where
// answers can be held.
func (c *Capture) Bridge() bool { return c.bridge }

// Close closes the socket.
func (c *Capture) Close() error { return c.conn.Close() }

// enableHold makes c release held answers: its sends carry mark and its
// filter skips frames that do (its own sends it never sees anyway).
func (c *Capture) enableHold(mark uint32) error {
	filter, err := captureFilter(mark)
	if err != nil {
		return err
	}
	if err := c.conn.SetFilter(filter); err != nil {
		return err
	}
	if err := c.conn.SetMark(mark); err != nil {
		return fmt.Errorf("setting the hold mark: %w", err)
	}
	c.hold = true
	return nil
}

// capture reads frames from c until stop ends, and delivers their updates
// (emitted on the channel until ctx ends, or applied with Config.Apply),
// releasing the answers the hold table held. It closes c.
func (r *Resolver) capture(ctx, stop context.Context, c *Capture) {
	// Wake the reader with a deadline rather than closing the socket:
	// held answers still in flight are released through it.
	unblock := context.AfterFunc(stop, func() { _ = c.conn.SetReadDeadline(time.Unix(1, 0)) })
	var inflight sync.WaitGroup
	defer func() {
		unblock()
		inflight.Wait()
		c.Close()
	}()
	buf := make([]byte, snapLen+4) // room for a VLAN tag the kernel held apart
	for {
		frame, info, err := c.conn.ReadFrame(buf)
		now := time.Now()
		if err != nil {
			if stop.Err() != nil {
				return
			}
			r.log.Warn("resolver: reading DNS capture", slog.String("iface", c.Interface()), slog.Any("err", err))
			select {
			case <-stop.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		held := c.hold && r.heldFrame(frame, info.Tagged, now)
		if held {
			r.stats.held.Add(1)
		}
		ups := r.HandleFrame(frame, now)
		switch {
		case len(ups) == 0:
			if held {
				r.release(c, frame, info, now, false)
			}
			continue
		case r.cfg.Apply == nil:
			// No Apply means no hold (New checks): the channel it is.
			for _, u := range ups {
				r.emit(ctx, u)
			}
			continue
		}
		select {
		case r.applying <- struct{}{}:
			f := slices.Clone(frame)
			inflight.Go(func() {
				defer func() { <-r.applying }()
				r.applyHeld(ctx, c, f, info, held, ups, now)
			})
		default:
			// Too many answers waiting for Apply: release this one now
			// (its race is lost) and let the manager apply it from the
			// channel.
			r.log.Warn("resolver: too many DNS answers waiting to be applied; releasing one unapplied",
				slog.String("device", ups[0].Device.String()), slog.String("name", ups[0].Name))
			if held {
				r.release(c, frame, info, now, false)
			}
			for _, u := range ups {
				r.emit(ctx, u)
			}
		}
	}
}

// applyHeld applies a snooped answer's updates with Config.Apply, bounded
// by ApplyTimeout, then releases the answer if it was held. Updates Apply
// failed on go to the channel: applied late is better than never.
func (r *Resolver) applyHeld(ctx context.Context, c *Capture, frame []byte, info capture.Info, held bool, ups []Update, captured time.Time) {
	actx, cancel := context.WithTimeout(ctx, r.cfg.ApplyTimeout)
	var (
		failed []Update
		errs   []error
	)
	for _, u := range ups {
		if err := r.cfg.Apply(actx, u); err != nil {
			failed = append(failed, u)
			errs = append(errs, fmt.Errorf("%s: %w", u.Name, err))
		}
	}
	cancel()
	// Failures are counted before the release, so that whoever sees the
	// answer arrive also sees them counted.
	r.stats.applyFailures.Add(uint64(len(failed)))
	if held {
		r.release(c, frame, info, captured, len(failed) == 0)
	}
	if len(failed) == 0 {
		return
	}
	r.log.Warn("resolver: applying a snooped DNS answer failed; released it anyway, the device's first packet to it may be dropped",
		slog.String("device", ups[0].Device.String()), slog.Bool("held", held), slog.Any("err", errors.Join(errs...)))
	for _, u := range failed {
		r.emit(ctx, u)
	}
}

// release re-injects a held answer with the hold mark.
func (r *Resolver) release(c *Capture, frame []byte, info capture.Info, captured time.Time, applied bool) {
	if info.ChecksumPartial {
		completeUDPChecksum(frame)
	}
	if err := c.conn.Send(frame); err != nil {
		r.stats.releaseErrors.Add(1)
		r.log.Warn("resolver: releasing a held DNS answer failed; the device will retry its query",
			slog.String("iface", c.Interface()), slog.Any("err", err))
		return
	}
	r.stats.released.Add(1)
	if r.onRelease != nil {
		r.onRelease(time.Since(captured), applied)
	}
}

// completeUDPChecksum fills in the UDP checksum of a held frame whose
// checksum the kernel left to the (virtual) NIC: a frame captured on its
// way out carries only the pseudo-header sum, and re-injected through a
// packet socket it would reach the device with a bad checksum. Frames that
// are not whole UDP datagrams are left alone (fragments are checksummed
// before fragmentation).
func completeUDPChecksum(frame []byte) {
	var f packet.Frame
	if packet.Decode(frame, &f) == nil {
		packet.FillUDPChecksum(&f)
	}
}
