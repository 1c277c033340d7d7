package resolver

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

const (
	ethPAll        = 0x0003 // ETH_P_ALL: every protocol, both directions
	packetOutgoing = 4      // PACKET_OUTGOING
	snapLen        = 65535
	sizeofAuxdata  = int(unsafe.Sizeof(unix.TpacketAuxdata{}))
)

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
	ifname string
	index  int
	conn   *packet.Conn
	raw    syscall.RawConn
	bridge bool
	hold   bool // releases held answers (set by Run before reading)
}

// frameInfo is what the kernel says about a captured frame besides its
// bytes (PACKET_AUXDATA).
type frameInfo struct {
	// vlan: the frame has a VLAN tag outside its bytes.
	vlan bool
	// csumPartial: the transport checksum is left to the NIC.
	csumPartial bool
}

// snoopFilter is the BPF program of a Capture. Without outgoingOnly it
// also accepts received frames (used by tests: the x/net/bpf VM does not
// know the packet-type and mark extensions). With a non-zero skipMark it
// drops frames whose mark has all of skipMark's bits: released answers.
func snoopFilter(outgoingOnly bool, skipMark uint32) []bpf.Instruction {
	// Jump offsets are relative: target = index + 1 + skip. The body ends
	// with accept at len-2 and drop at len-1.
	body := []bpf.Instruction{
		/* 0 */ bpf.LoadAbsolute{Off: 12, Size: 2},
		/* 1 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x0800, SkipFalse: 8}, // -> 10 (IPv6)
		// IPv4: UDP or TCP, not a later fragment, source port 53.
		/* 2 */ bpf.LoadAbsolute{Off: 23, Size: 1},
		/* 3 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1}, // -> 5
		/* 4 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 12}, // -> 17 drop
		/* 5 */ bpf.LoadAbsolute{Off: 20, Size: 2},
		/* 6 */ bpf.JumpIf{Cond: bpf.JumpBitsSet, Val: 0x1fff, SkipTrue: 10}, // -> 17 drop
		/* 7 */ bpf.LoadMemShift{Off: 14},
		/* 8 */ bpf.LoadIndirect{Off: 14, Size: 2},
		/* 9 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 53, SkipTrue: 6, SkipFalse: 7}, // -> 16 / 17
		// IPv6: next header UDP or TCP, source port 53.
		/* 10 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 0x86dd, SkipFalse: 6}, // -> 17 drop
		/* 11 */ bpf.LoadAbsolute{Off: 20, Size: 1},
		/* 12 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 17, SkipTrue: 1}, // -> 14
		/* 13 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 6, SkipFalse: 3}, // -> 17 drop
		/* 14 */ bpf.LoadAbsolute{Off: 54, Size: 2},
		/* 15 */ bpf.JumpIf{Cond: bpf.JumpEqual, Val: 53, SkipFalse: 1}, // -> 17 drop
		/* 16 */ bpf.RetConstant{Val: snapLen},
		/* 17 */ bpf.RetConstant{Val: 0},
	}
	if !outgoingOnly {
		return body
	}
	// Each prefix jumps to the last instruction (drop) of what follows it.
	if skipMark != 0 {
		body = append([]bpf.Instruction{
			bpf.LoadExtension{Num: bpf.ExtMark},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: skipMark},
			bpf.JumpIf{Cond: bpf.JumpEqual, Val: skipMark, SkipTrue: uint8(len(body) - 1)},
		}, body...)
	}
	return append([]bpf.Instruction{
		bpf.LoadExtension{Num: bpf.ExtType},
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: packetOutgoing, SkipFalse: uint8(len(body) - 1)}, // -> drop
	}, body...)
}

// OpenCapture opens a capture socket on the interface ifname of the
// calling thread's network namespace (needs CAP_NET_RAW). Give it to
// Config.Captures, or let Run open Config.SnoopInterfaces.
func OpenCapture(ifname string) (*Capture, error) {
	ifi, err := net.InterfaceByName(ifname)
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: %w", ifname, err)
	}
	filter, err := bpf.Assemble(snoopFilter(true, 0))
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: assembling BPF: %w", ifname, err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, ethPAll, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: %w", ifname, err)
	}
	c := &Capture{ifname: ifname, index: ifi.Index, conn: conn}
	if c.raw, err = conn.SyscallConn(); err != nil {
		conn.Close()
		return nil, fmt.Errorf("opening DNS capture on %s: %w", ifname, err)
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_PACKET, unix.PACKET_AUXDATA, 1)
		// A bridge's driver is "bridge"; the ioctl answers for the
		// socket's namespace.
		if info, err := unix.IoctlGetEthtoolDrvinfo(int(fd), ifname); err == nil {
			c.bridge = unix.ByteSliceToString(info.Driver[:]) == "bridge"
		}
	}); err != nil || serr != nil {
		conn.Close()
		return nil, fmt.Errorf("opening DNS capture on %s: enabling auxiliary data: %w", ifname, errors.Join(err, serr))
	}
	return c, nil
}

// Interface is the name of the captured interface.
func (c *Capture) Interface() string { return c.ifname }

// Bridge reports whether the captured interface is a bridge, where
// answers can be held.
func (c *Capture) Bridge() bool { return c.bridge }

// Close closes the socket.
func (c *Capture) Close() error { return c.conn.Close() }

// enableHold makes c release held answers: its sends carry mark and its
// filter skips frames that do (its own sends it never sees anyway).
func (c *Capture) enableHold(mark uint32) error {
	filter, err := bpf.Assemble(snoopFilter(true, mark))
	if err != nil {
		return fmt.Errorf("assembling BPF: %w", err)
	}
	if err := c.conn.SetBPF(filter); err != nil {
		return fmt.Errorf("setting the capture filter on %s: %w", c.ifname, err)
	}
	var serr error
	if err := c.raw.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_MARK, int(mark))
	}); err != nil || serr != nil {
		return fmt.Errorf("setting the hold mark on the capture on %s: %w", c.ifname, errors.Join(err, serr))
	}
	c.hold = true
	return nil
}

// read reads one frame and its auxiliary data.
func (c *Capture) read(buf, oob []byte) (int, frameInfo, error) {
	var (
		n, oobn int
		rerr    error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, _, _, rerr = unix.Recvmsg(int(fd), buf, oob, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return 0, frameInfo{}, err
	}
	var info frameInfo
	msgs, _ := unix.ParseSocketControlMessage(oob[:oobn])
	for _, m := range msgs {
		if m.Header.Level == unix.SOL_PACKET && m.Header.Type == unix.PACKET_AUXDATA && len(m.Data) >= sizeofAuxdata {
			status := binary.NativeEndian.Uint32(m.Data[0:4])
			tci := binary.NativeEndian.Uint16(m.Data[16:18])
			info.vlan = status&unix.TP_STATUS_VLAN_VALID != 0 || tci != 0
			info.csumPartial = status&unix.TP_STATUS_CSUMNOTREADY != 0
		}
	}
	return n, info, nil
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
	buf := make([]byte, snapLen)
	oob := make([]byte, unix.CmsgSpace(sizeofAuxdata))
	for {
		n, info, err := c.read(buf, oob)
		now := time.Now()
		if err != nil {
			if stop.Err() != nil {
				return
			}
			r.log.Warn("resolver: reading DNS capture", slog.String("iface", c.ifname), slog.Any("err", err))
			select {
			case <-stop.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		frame := buf[:n]
		held := c.hold && r.heldFrame(frame, info.vlan, now)
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
func (r *Resolver) applyHeld(ctx context.Context, c *Capture, frame []byte, info frameInfo, held bool, ups []Update, captured time.Time) {
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
	if held {
		r.release(c, frame, info, captured, len(failed) == 0)
	}
	if len(failed) == 0 {
		return
	}
	r.stats.applyFailures.Add(uint64(len(failed)))
	r.log.Warn("resolver: applying a snooped DNS answer failed; released it anyway, the device's first packet to it may be dropped",
		slog.String("device", ups[0].Device.String()), slog.Bool("held", held), slog.Any("err", errors.Join(errs...)))
	for _, u := range failed {
		r.emit(ctx, u)
	}
}

// release re-injects a held answer with the hold mark.
func (r *Resolver) release(c *Capture, frame []byte, info frameInfo, captured time.Time, applied bool) {
	if info.csumPartial {
		completeUDPChecksum(frame)
	}
	if _, err := c.conn.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])}); err != nil {
		r.stats.releaseErrors.Add(1)
		r.log.Warn("resolver: releasing a held DNS answer failed; the device will retry its query",
			slog.String("iface", c.ifname), slog.Any("err", err))
		return
	}
	r.stats.released.Add(1)
	if r.onRelease != nil {
		r.onRelease(time.Since(captured), applied)
	}
}
