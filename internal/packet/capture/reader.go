package capture

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"time"
)

// Reader reads the frames of one interface for as long as a context lasts,
// outliving its socket: when reading fails (the interface went away:
// bridges are recreated at run time), it closes the socket and opens a new
// one, with back-off from 1 s doubling to 30 s, until that works.
type Reader struct {
	// Interface names the interface, for the logs.
	Interface string
	// Open opens the socket again.
	Open func() (*Conn, error)
	// Handle is called for each frame read, in order; frame is valid
	// during the call only.
	Handle func(frame []byte, info Info)
	// BufLen is the longest frame expected (4 octets are added for a VLAN
	// tag the kernel held apart).
	BufLen int
	// Logger receives the failures and reopenings.
	Logger *slog.Logger
}

// Run reads from conn, and from the sockets that replace it, until ctx is
// done; it closes the socket it holds before it returns.
func (r Reader) Run(ctx context.Context, conn *Conn) {
	buf := make([]byte, r.BufLen+4)
	for conn != nil {
		stop := context.AfterFunc(ctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
		err := r.read(ctx, conn, buf)
		stop()
		conn.Close()
		if ctx.Err() != nil {
			return
		}
		r.Logger.Warn("capture failed; reopening", "interface", r.Interface, "err", err)
		conn = r.reopen(ctx)
	}
}

func (r Reader) read(ctx context.Context, conn *Conn, buf []byte) error {
	for {
		f, info, err := conn.ReadFrame(buf)
		if err == nil {
			r.Handle(f, info)
			continue
		}
		var ne net.Error
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.As(err, &ne) && ne.Timeout():
		default:
			return err
		}
	}
}

// reopen opens the socket again, with back-off, until it works or ctx is
// done (nil).
func (r Reader) reopen(ctx context.Context) *Conn {
	for backoff := time.Second; ; backoff = min(2*backoff, 30*time.Second) {
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(backoff):
		}
		c, err := r.Open()
		if err == nil {
			r.Logger.Info("capture reopened", "interface", r.Interface)
			return c
		}
		r.Logger.Warn("reopening capture failed", "interface", r.Interface, "err", err)
	}
}
