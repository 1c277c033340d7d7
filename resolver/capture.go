package resolver

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"time"

	"github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
)

const (
	ethPAll        = 0x0003 // ETH_P_ALL: every protocol, both directions
	packetOutgoing = 4      // PACKET_OUTGOING
	snapLen        = 65535
)

// Capture is an AF_PACKET socket on one LAN interface that receives the
// DNS responses the gateway sends out of it (its own resolver's answers
// and routed ones): frames in the outgoing direction, IPv4 or IPv6, UDP or
// TCP from port 53, non-fragments. Responses merely bridged between two
// LAN ports, or received by the gateway, are not captured: a LAN host
// cannot feed the snooper forged answers.
type Capture struct {
	ifname string
	conn   *packet.Conn
}

// snoopFilter is the BPF program of a Capture. Without outgoingOnly it
// also accepts received frames (used by tests: the x/net/bpf VM does not
// know the packet-type extension).
func snoopFilter(outgoingOnly bool) []bpf.Instruction {
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
	filter, err := bpf.Assemble(snoopFilter(true))
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: assembling BPF: %w", ifname, err)
	}
	conn, err := packet.Listen(ifi, packet.Raw, ethPAll, &packet.Config{Filter: filter})
	if err != nil {
		return nil, fmt.Errorf("opening DNS capture on %s: %w", ifname, err)
	}
	return &Capture{ifname: ifname, conn: conn}, nil
}

// Interface is the name of the captured interface.
func (c *Capture) Interface() string { return c.ifname }

// Close closes the socket.
func (c *Capture) Close() error { return c.conn.Close() }

// capture reads frames from c until ctx ends, and emits their updates.
func (r *Resolver) capture(ctx context.Context, c *Capture) {
	stop := context.AfterFunc(ctx, func() { c.Close() })
	defer func() {
		if stop() {
			c.Close()
		}
	}()
	buf := make([]byte, snapLen)
	for {
		n, _, err := c.conn.ReadFrom(buf)
		now := time.Now()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return
			}
			r.log.Warn("resolver: reading DNS capture", slog.String("iface", c.ifname), slog.Any("err", err))
			select {
			case <-ctx.Done():
				return
			case <-time.After(100 * time.Millisecond):
			}
			continue
		}
		for _, u := range r.HandleFrame(buf[:n], now) {
			r.emit(ctx, u)
		}
	}
}
