// Package nftbatch sends nftables batches built with google/nftables on a
// raw NETLINK_NETFILTER socket of its own: one sendmsg per batch, one ACK,
// every failing message reported, and tables that can be owned by the
// socket. The enforcer and the DNS hold table (enforcer/dnshold) use it.
package nftbatch

import (
	"encoding/binary"
	"errors"
	"fmt"
	"strings"
	"syscall"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/nftmon"
	"golang.org/x/sys/unix"
)

// The transport. google/nftables marshals every object well, but its Flush
// asks the kernel for an ACK of every message and an ECHO of every rule, and
// reads them one recvmsg at a time. At 10,000 policies (~300,000 rules) that
// is hundreds of megabytes of replies: the receive buffer overflows (ENOBUFS)
// after the kernel has already committed, so the caller cannot even tell
// whether the batch was applied. We therefore let google/nftables build the
// messages against a capturing test dialer, and send the batch ourselves on a
// raw NETLINK_NETFILTER socket with an ACK requested on the last message only:
// the kernel still reports every failing message, and a batch costs one
// sendmsg and a few recvmsg.

// Capture is a google/nftables connection that never talks to a kernel: it
// collects the messages of one batch.
type Capture struct {
	// Conn builds the batch (AddTable, AddRule, ...); Take collects it.
	Conn *nftables.Conn
	msgs []netlink.Message
}

// NewCapture returns an empty Capture.
func NewCapture() (*Capture, error) {
	c := &Capture{}
	conn, err := nftables.New(nftables.WithTestDial(func(req []netlink.Message) ([]netlink.Message, error) {
		if req == nil {
			// Flush reads one reply per message: hand it a success ACK.
			return []netlink.Message{{Header: netlink.Header{Type: netlink.Error}, Data: make([]byte, 20)}}, nil
		}
		// google/nftables does not reuse the buffers: no copy needed.
		c.msgs = append(c.msgs, req...)
		return nil, nil
	}))
	if err != nil {
		return nil, fmt.Errorf("creating capturing nftables connection: %w", err)
	}
	c.Conn = conn
	return c, nil
}

// Take returns the captured batch (BATCH_BEGIN … BATCH_END) and resets.
func (c *Capture) Take() ([]netlink.Message, error) {
	c.msgs = nil
	if err := c.Conn.Flush(); err != nil {
		return nil, fmt.Errorf("marshalling nftables batch: %w", err)
	}
	msgs := c.msgs
	c.msgs = nil
	return msgs, nil
}

// Conn is a NETLINK_NETFILTER socket inside the target namespace. Its
// life is that of the tables it created with the owner flag.
type Conn struct {
	fd      int
	seq     uint32
	sndbuf  int
	recvBuf []byte
}

// Open opens the socket inside the namespace nsFd (<= 0: the current one).
func Open(nsFd int) (*Conn, error) {
	var fd int
	open := func() error {
		var err error
		fd, err = unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
		if err != nil {
			return fmt.Errorf("opening netfilter netlink socket: %w", err)
		}
		return unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK})
	}
	if err := netns.DoFd(nsFd, open); err != nil {
		if fd > 0 {
			unix.Close(fd)
		}
		return nil, err
	}
	rc := &Conn{fd: fd, recvBuf: make([]byte, 1<<20)}
	// Replies are few (one ACK, plus one error per failing message), but
	// a large receive buffer keeps a burst of errors from being lost.
	_ = setBuf(fd, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, 8<<20)
	rc.sndbuf = 8 << 20
	_ = setBuf(fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, rc.sndbuf)
	tv := unix.Timeval{Sec: 30}
	if err := unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &tv); err != nil {
		unix.Close(fd)
		return nil, fmt.Errorf("setting netlink receive timeout: %w", err)
	}
	return rc, nil
}

func setBuf(fd, force, plain, size int) error {
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, force, size); err != nil {
		return unix.SetsockoptInt(fd, unix.SOL_SOCKET, plain, size)
	}
	return nil
}

// Close closes the socket; the kernel deletes the tables it owned.
func (rc *Conn) Close() { unix.Close(rc.fd) }

// BatchError is returned when the kernel rejected a batch. Nothing of the
// batch was applied (nf_tables transactions are all-or-nothing).
type BatchError struct {
	Errors []string // one per failing message: "NEWRULE: invalid argument"
	errnos []syscall.Errno
}

// Has reports whether the kernel refused a message with errno.
func (e *BatchError) Has(errno syscall.Errno) bool {
	for _, n := range e.errnos {
		if n == errno {
			return true
		}
	}
	return false
}

// Error names each distinct refusal once, with how often it occurred: a
// batch of thousands of elements may be refused as often for one reason.
func (e *BatchError) Error() string {
	counts := make(map[string]int, len(e.Errors))
	var distinct []string
	for _, s := range e.Errors {
		if counts[s] == 0 {
			distinct = append(distinct, s)
		}
		counts[s]++
	}
	var b strings.Builder
	b.WriteString("kernel rejected nftables batch: ")
	for i, s := range distinct {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(s)
		if n := counts[s]; n > 1 {
			fmt.Fprintf(&b, " (%d times)", n)
		}
	}
	return b.String()
}

var msgNames = map[uint16]string{
	unix.NFT_MSG_NEWTABLE: "NEWTABLE", unix.NFT_MSG_DELTABLE: "DELTABLE",
	unix.NFT_MSG_NEWCHAIN: "NEWCHAIN", unix.NFT_MSG_DELCHAIN: "DELCHAIN",
	unix.NFT_MSG_NEWRULE: "NEWRULE", unix.NFT_MSG_DELRULE: "DELRULE",
	unix.NFT_MSG_NEWSET: "NEWSET", unix.NFT_MSG_DELSET: "DELSET",
	unix.NFT_MSG_NEWSETELEM: "NEWSETELEM", unix.NFT_MSG_DELSETELEM: "DELSETELEM",
}

// Send transmits one batch in one sendmsg and waits for the kernel's
// verdict: nil, a *BatchError naming every failing message, or an error
// that leaves the outcome unknown (the caller must reconcile).
func (rc *Conn) Send(batch []netlink.Message) error {
	if len(batch) <= 2 {
		return nil // BATCH_BEGIN + BATCH_END only: nothing to do
	}
	kinds := make(map[uint32]string, 8)
	total := 0
	for _, m := range batch {
		total += 16 + (len(m.Data)+3)&^3
	}
	buf := make([]byte, 0, total)
	last := len(batch) - 2 // the last message inside the batch
	for i := range batch {
		m := batch[i]
		rc.seq++
		m.Header.Sequence = rc.seq
		m.Header.PID = 0
		if i > 0 && i < len(batch)-1 {
			m.Header.Flags &^= netlink.Acknowledge | netlink.HeaderFlags(unix.NLM_F_ECHO)
			if i == last {
				m.Header.Flags |= netlink.Acknowledge
			}
			kinds[rc.seq] = describe(m)
		}
		buf = appendMsg(buf, m)
	}
	lastSeq := rc.seq - 1
	beginSeq := rc.seq - uint32(len(batch)) + 1
	// The whole batch must fit one skb, so the send buffer grows with it.
	if need := len(buf) + 64<<10; need > rc.sndbuf {
		if err := setBuf(rc.fd, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, need*2); err != nil {
			return fmt.Errorf("growing netlink send buffer to %d bytes: %w", need*2, err)
		}
		rc.sndbuf = need * 2
	}
	if err := unix.Sendto(rc.fd, buf, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fmt.Errorf("sending nftables batch (%d bytes): %w", len(buf), err)
	}
	var errs []string
	var errnos []syscall.Errno
	for {
		n, _, err := unix.Recvfrom(rc.fd, rc.recvBuf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			// ENOBUFS or a timeout: the outcome is unknown; the caller
			// must reconcile from scratch.
			return fmt.Errorf("reading nftables batch result: %w", err)
		}
		msgs, err := syscall.ParseNetlinkMessage(rc.recvBuf[:n])
		if err != nil {
			return fmt.Errorf("parsing nftables batch result: %w", err)
		}
		for _, m := range msgs {
			if m.Header.Type != unix.NLMSG_ERROR || len(m.Data) < 20 {
				continue
			}
			code := int32(binary.NativeEndian.Uint32(m.Data[0:4]))
			seq := binary.NativeEndian.Uint32(m.Data[12:16]) // the original header's nlmsg_seq
			if seq < beginSeq || seq > lastSeq+1 {
				continue // a late answer to an earlier batch
			}
			if code != 0 && seq == beginSeq {
				// The kernel refused the batch as a whole (EPERM without
				// CAP_NET_ADMIN): it answers the begin message only.
				errno := syscall.Errno(-code)
				if errno == syscall.EPERM {
					return fmt.Errorf("nftables refused the batch: %w (mudd needs CAP_NET_ADMIN)", errno)
				}
				return &BatchError{Errors: append(errs, fmt.Sprintf("BATCH: %v", errno)), errnos: append(errnos, errno)}
			}
			if code != 0 {
				errs = append(errs, fmt.Sprintf("%s: %v", kinds[seq], syscall.Errno(-code)))
				errnos = append(errnos, syscall.Errno(-code))
			}
			if seq == lastSeq {
				if len(errs) > 0 {
					return &BatchError{Errors: errs, errnos: errnos}
				}
				return nil
			}
		}
	}
}

// appendMsg encodes one netlink message (header in host byte order, data
// padded to 4 bytes).
func appendMsg(buf []byte, m netlink.Message) []byte {
	l := 16 + len(m.Data)
	buf = binary.NativeEndian.AppendUint32(buf, uint32(l))
	buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Type))
	buf = binary.NativeEndian.AppendUint16(buf, uint16(m.Header.Flags))
	buf = binary.NativeEndian.AppendUint32(buf, m.Header.Sequence)
	buf = binary.NativeEndian.AppendUint32(buf, m.Header.PID)
	buf = append(buf, m.Data...)
	for len(buf)%4 != 0 {
		buf = append(buf, 0)
	}
	return buf
}

// describe names a message and the object it is about, for error reports.
func describe(m netlink.Message) string {
	typ := uint16(m.Header.Type) & 0xff
	name := msgNames[typ]
	var attr uint16
	switch typ {
	case unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM:
		attr = unix.NFTA_SET_ELEM_LIST_SET
	case unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE:
		attr = unix.NFTA_RULE_CHAIN
	case unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN:
		attr = unix.NFTA_CHAIN_NAME
	case unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET:
		attr = unix.NFTA_SET_NAME
	default:
		return name
	}
	if len(m.Data) < 4 {
		return name
	}
	ad, err := netlink.NewAttributeDecoder(m.Data[4:])
	if err != nil {
		return name
	}
	for ad.Next() {
		if ad.Type() == attr {
			return name + " " + ad.String()
		}
	}
	return name
}

// PortID is the socket's netlink port id: the nlmsg_pid of the
// notifications the kernel sends about the batches sent on it, so that a
// watcher of nftables changes can tell them from anyone else's.
func (rc *Conn) PortID() (uint32, error) { return nftmon.FDPortID(rc.fd) }
