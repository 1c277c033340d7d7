// Package nftmon watches nftables for changes to a set of tables: it
// subscribes to the kernel's nftables netlink notifications
// (NFNLGRP_NFTABLES) inside a network namespace and reports every committed
// transaction that touched a watched table as an Event naming what changed,
// and the netlink port id of the socket that made the change — so that the
// owner of the tables can tell its own transactions from anyone else's and
// restore its state at once. When notifications are lost (the receive buffer
// overflowed) it says so with a Resync event instead of carrying on.
//
// An overflow has a tail the kernel does not announce: after the first
// dropped message it marks the socket congested and drops every further
// notification, without another ENOBUFS, until the reader has emptied the
// receive queue (net/netlink/af_netlink.c: NETLINK_S_CONGESTED). So on
// ENOBUFS the Monitor empties the queue first and only then sends the
// Resync: every change it did not report was committed before the Resync
// was sent, and a comparison made after receiving it sees them all.
//
// The decoding is this package's own, not google/nftables' Monitor: that one
// decodes every rule's expressions into Go values (deleting a table of
// 300,000 rules means 300,000 decoded rules), ends at the first receive
// error (ENOBUFS included), and its goroutine blocks forever on a reader
// that went away. Here a notification costs its header and a few
// attributes, the socket outlives an overrun, and the kernel can be told to
// drop the notifications of our own transactions before they reach the
// receive buffer (IgnorePorts).
//
// Use:
//
//	m, err := nftmon.Open(nftmon.Config{NetNSFd: fd, Tables: []nftmon.Table{
//		{Family: nftables.TableFamilyINet, Name: "mud"}, {Family: nftables.TableFamilyBridge, Name: "mud"}}})
//	port, err := nftmon.FDPortID(batchSocketFd) // or nftmon.PortID(conn)
//	err = m.IgnorePorts(port)                   // before the socket's first batch
//	go m.Run(ctx)
//	for e := range m.Events() {
//		// e.Resync: compare everything; else e.String() names the change.
//	}
//
// What the kernel does not notify is not reported: set elements that time
// out, and tables released because their owner socket closed.
package nftmon

import (
	"context"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/openmud/mud/internal/netns"
	"golang.org/x/sys/unix"
)

// Config configures a Monitor.
type Config struct {
	// NetNSFd is an open network namespace handle to watch in; <= 0 means
	// the current namespace.
	NetNSFd int
	// Tables are the tables to report changes of; empty reports every
	// table.
	Tables []Table
	// ReadBuffer is the socket's receive buffer in bytes (default 32 MiB;
	// set with SO_RCVBUFFORCE, so root or CAP_NET_ADMIN is not limited by
	// net.core.rmem_max). When it overflows, the Monitor sends a Resync.
	ReadBuffer int
}

// DefaultReadBuffer is Config.ReadBuffer's default.
const DefaultReadBuffer = 32 << 20

// Monitor is one subscription. Open it, run Run in a goroutine, read Events.
type Monitor struct {
	f      *os.File
	raw    syscall.RawConn
	port   uint32
	events chan Event
	col    collector

	ignoreMu sync.Mutex // serialises IgnorePorts (the set and the filter)
	ignore   atomic.Pointer[map[uint32]bool]
	running  atomic.Bool
	done     chan struct{}
	close    sync.Once

	tap func([]byte) // tests: sees each datagram
}

// Open subscribes to nftables notifications in the configured namespace.
// Changes committed before Open are not reported: compare the tables once
// after it.
func Open(cfg Config) (*Monitor, error) {
	fd := -1
	err := netns.DoFd(cfg.NetNSFd, func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("opening netfilter netlink socket: %w", err)
		}
		return nil
	})
	if err != nil {
		return nil, err
	}
	m := &Monitor{events: make(chan Event, 64), done: make(chan struct{})}
	if err := m.setup(fd, cfg); err != nil {
		unix.Close(fd)
		return nil, err
	}
	m.f = os.NewFile(uintptr(fd), "nftables-monitor")
	if m.raw, err = m.f.SyscallConn(); err != nil {
		m.f.Close()
		return nil, fmt.Errorf("nftables monitor socket: %w", err)
	}
	if len(cfg.Tables) > 0 {
		m.col.watch = make(map[Table]bool, len(cfg.Tables))
		for _, t := range cfg.Tables {
			m.col.watch[t] = true
		}
	}
	m.col.ignored = func(port uint32) bool {
		p := m.ignore.Load()
		return p != nil && (*p)[port]
	}
	return m, nil
}

func (m *Monitor) setup(fd int, cfg Config) error {
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("binding netfilter netlink socket: %w", err)
	}
	size := cfg.ReadBuffer
	if size <= 0 {
		size = DefaultReadBuffer
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, size); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, size); err != nil {
			return fmt.Errorf("setting the receive buffer to %d bytes: %w", size, err)
		}
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_ADD_MEMBERSHIP, unix.NFNLGRP_NFTABLES); err != nil {
		return fmt.Errorf("joining the nftables notification group: %w", err)
	}
	port, err := FDPortID(fd)
	if err != nil {
		return err
	}
	m.port = port
	return nil
}

// PortID is the monitor socket's own port id.
func (m *Monitor) PortID() uint32 { return m.port }

// Events delivers the changes; it is closed when Run returns. Run waits
// while the channel is full, and if the kernel's notifications overflow the
// socket meanwhile, the next event is a Resync.
func (m *Monitor) Events() <-chan Event { return m.events }

// IgnorePorts makes the Monitor leave out the transactions of sockets with
// these port ids (your own; see PortID), replacing the previous list. The
// kernel then drops their notifications before they reach the receive
// buffer, so a large transaction of yours cannot overflow it; their
// generation notifications still arrive, so a lost foreign transaction is
// still noticed. Call it before the socket's first transaction. At most
// MaxIgnoredPorts.
func (m *Monitor) IgnorePorts(ports ...uint32) error {
	if len(ports) > MaxIgnoredPorts {
		return fmt.Errorf("%d ports to ignore, at most %d", len(ports), MaxIgnoredPorts)
	}
	m.ignoreMu.Lock()
	defer m.ignoreMu.Unlock()
	set := make(map[uint32]bool, len(ports))
	for _, p := range ports {
		set[p] = true
	}
	prog, err := ignoreFilter(ports)
	if err != nil {
		return err
	}
	var serr error
	err = m.raw.Control(func(fd uintptr) {
		if len(ports) == 0 {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_DETACH_FILTER, 0)
			if errors.Is(serr, unix.ENOENT) {
				serr = nil // no filter attached
			}
			return
		}
		serr = unix.SetsockoptSockFprog(int(fd), unix.SOL_SOCKET, unix.SO_ATTACH_FILTER, prog)
	})
	if err = errors.Join(err, serr); err != nil {
		return fmt.Errorf("setting the socket filter of the nftables monitor: %w", err)
	}
	// Userspace filtering too: messages already queued under the old
	// filter are judged by the new list.
	m.ignore.Store(&set)
	return nil
}

// Run reads notifications and sends Events until ctx ends (it returns
// ctx.Err()) or Close is called (it returns nil). It closes Events when it
// returns. Call it once.
func (m *Monitor) Run(ctx context.Context) error {
	if !m.running.CompareAndSwap(false, true) {
		return errors.New("nftables monitor: Run called twice")
	}
	defer close(m.events)
	stop := context.AfterFunc(ctx, func() { _ = m.f.SetReadDeadline(time.Unix(1, 0)) })
	defer stop()
	buf := make([]byte, 256<<10)
	var out []Event
	for {
		n, err := m.recv(buf)
		out = out[:0]
		switch {
		case ctx.Err() != nil:
			return ctx.Err()
		case m.closed():
			return nil
		case errors.Is(err, unix.ENOBUFS):
			n, err := m.drain(buf)
			if err != nil {
				return fmt.Errorf("discarding nftables notifications after an overrun: %w", err)
			}
			out = m.col.lost(out, fmt.Sprintf("the monitor's receive buffer overflowed; %d queued datagrams discarded", n))
		case errors.Is(err, errTruncated):
			out = m.col.lost(out, fmt.Sprintf("a notification datagram was larger than %d bytes", len(buf)))
			buf = make([]byte, 2*len(buf))
		case err != nil:
			return fmt.Errorf("reading nftables notifications: %w", err)
		default:
			if m.tap != nil {
				m.tap(buf[:n])
			}
			out = m.col.datagram(buf[:n], out)
		}
		for _, e := range out {
			select {
			case m.events <- e:
			case <-ctx.Done():
				return ctx.Err()
			case <-m.done:
				return nil
			}
		}
	}
}

var errTruncated = errors.New("datagram truncated")

// drain discards the datagrams queued on the socket until it is empty,
// which ends the kernel's congestion state. It returns how many it read.
func (m *Monitor) drain(buf []byte) (int, error) {
	n := 0
	var rerr error
	err := m.raw.Control(func(fd uintptr) {
		for {
			_, _, _, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
			switch {
			case rerr == nil:
				n++
			case errors.Is(rerr, unix.EAGAIN):
				rerr = nil
				return
			case errors.Is(rerr, unix.ENOBUFS), errors.Is(rerr, unix.EINTR):
				// Another overflow while draining: keep going.
			default:
				return
			}
		}
	})
	return n, errors.Join(err, rerr)
}

// recv reads one datagram, waiting in the runtime's poller.
func (m *Monitor) recv(buf []byte) (int, error) {
	var n, flags int
	var rerr error
	err := m.raw.Read(func(fd uintptr) bool {
		n, _, flags, _, rerr = unix.Recvmsg(int(fd), buf, nil, unix.MSG_DONTWAIT)
		return !errors.Is(rerr, unix.EAGAIN) && !errors.Is(rerr, unix.EINTR)
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case flags&unix.MSG_TRUNC != 0:
		return 0, errTruncated
	}
	return n, nil
}

func (m *Monitor) closed() bool {
	select {
	case <-m.done:
		return true
	default:
		return false
	}
}

// Close stops Run and closes the socket.
func (m *Monitor) Close() error {
	var err error
	m.close.Do(func() {
		close(m.done)
		err = m.f.Close()
	})
	return err
}

// PortID is the netlink port id of a netlink socket, such as a
// *netlink.Conn of github.com/mdlayher/netlink: what the kernel puts in the
// notifications of the transactions sent on it.
func PortID(c syscall.Conn) (uint32, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return 0, fmt.Errorf("netlink port id: %w", err)
	}
	var port uint32
	var perr error
	if err := raw.Control(func(fd uintptr) { port, perr = FDPortID(int(fd)) }); err != nil {
		return 0, fmt.Errorf("netlink port id: %w", err)
	}
	return port, perr
}

// FDPortID is PortID for a socket's file descriptor.
func FDPortID(fd int) (uint32, error) {
	sa, err := unix.Getsockname(fd)
	if err != nil {
		return 0, fmt.Errorf("netlink port id: %w", err)
	}
	nl, ok := sa.(*unix.SockaddrNetlink)
	if !ok {
		return 0, fmt.Errorf("netlink port id: socket %d is not a netlink socket", fd)
	}
	return nl.Pid, nil
}
