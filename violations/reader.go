package violations

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// Config configures a Reader (and a Table: the bounds and hooks).
type Config struct {
	// NetNS is the path or name of the network namespace whose NFLOG group
	// is read (where the enforcer's tables are); empty means the current
	// one. NetNSFd, if positive, is an open namespace handle and wins.
	NetNS   string
	NetNSFd int
	// Group is the NFLOG group the enforcer logs to (enforcer.Config
	// LogGroup, mudd.yaml nft.log_group).
	Group uint16
	// ReadBuffer is the socket's receive buffer (default 1 MiB).
	ReadBuffer int

	// MaxRecords bounds the records held in all (default
	// DefaultMaxRecords), MaxPerDevice those of one device (default
	// DefaultMaxPerDevice). The least recently seen record is evicted.
	MaxRecords   int
	MaxPerDevice int
	// Rate and Burst limit the deliveries on Updates per device: a token
	// bucket of Burst tokens refilled at Rate per second (defaults
	// DefaultRate, DefaultBurst). UpdatesBuffer is the channel's capacity
	// (default DefaultUpdatesBuffer); a full channel holds deliveries back
	// rather than blocking the reader.
	Rate          float64
	Burst         int
	UpdatesBuffer int
	// FlushInterval is how often Run delivers what the rate limit held
	// back (default 250 ms).
	FlushInterval time.Duration
	// MetricDevices is how many devices Counters reports one by one
	// (default DefaultMetricDevices).
	MetricDevices int

	// NameOf, if set, names a peer when a record is created: the DNS name
	// the device was answered for addr (the manager knows it from the
	// resolver). mac is nil when the device's MAC is not known.
	NameOf func(mac net.HardwareAddr, addr netip.Addr) string
	// DeviceOf, if set, gives the MAC of the device holding addr, for
	// drops whose packet does not carry it: routed packets to a device
	// (their link-layer header is the WAN side's). Without it, or when it
	// returns nil, such records are keyed by the device's address.
	DeviceOf func(addr netip.Addr) net.HardwareAddr
	// Now is the clock (default time.Now).
	Now func() time.Time

	// tap, in tests, sees each NFLOG message as read (nlmsghdr included).
	tap func([]byte)
}

func (c *Config) defaults() {
	if c.MaxRecords <= 0 {
		c.MaxRecords = DefaultMaxRecords
	}
	if c.MaxPerDevice <= 0 {
		c.MaxPerDevice = DefaultMaxPerDevice
	}
	if c.MaxPerDevice > c.MaxRecords {
		c.MaxPerDevice = c.MaxRecords
	}
	if c.Rate <= 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = DefaultBurst
	}
	if c.UpdatesBuffer <= 0 {
		c.UpdatesBuffer = DefaultUpdatesBuffer
	}
	if c.FlushInterval <= 0 {
		c.FlushInterval = 250 * time.Millisecond
	}
	if c.MetricDevices <= 0 {
		c.MetricDevices = DefaultMetricDevices
	}
	if c.ReadBuffer <= 0 {
		c.ReadBuffer = 1 << 20
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Reader reads the enforcer's logged drops from an NFLOG group and
// aggregates them in its Table.
type Reader struct {
	*Table
	conn   *netlink.Conn
	parser Parser
	closed chan struct{}
	once   sync.Once
}

// Open binds the NFLOG group in the configured namespace and asks for
// whole packets. Only one socket can bind a group in a namespace: Open
// fails (EBUSY) when another (ulogd, a second mudd) has it.
func Open(cfg Config) (*Reader, error) {
	cfg.defaults()
	fd := cfg.NetNSFd
	if fd <= 0 && cfg.NetNS != "" {
		var h netns.NsHandle
		var err error
		if h, err = netns.GetFromPath(cfg.NetNS); err != nil {
			if h, err = netns.GetFromName(cfg.NetNS); err != nil {
				return nil, fmt.Errorf("opening network namespace %s: %w", cfg.NetNS, err)
			}
		}
		defer h.Close()
		fd = int(h)
	}
	conn, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: max(fd, 0)})
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	r := &Reader{Table: NewTable(cfg), conn: conn, closed: make(chan struct{})}
	if err := conn.SetReadBuffer(cfg.ReadBuffer); err != nil {
		conn.Close()
		return nil, fmt.Errorf("setting the receive buffer: %w", err)
	}
	if err := r.bind(); err != nil {
		conn.Close()
		return nil, err
	}
	return r, nil
}

// bind sends NFULNL_CFG_CMD_BIND with copy mode "packet" (the whole
// packet, up to the kernel's maximum) and a queue threshold of 1 (each
// message is sent at once), and waits for the acknowledgement. Messages
// of the group that arrive before it are handled.
func (r *Reader) bind() error {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(cfgCmd, []byte{cmdBind})
	mode := make([]byte, 6) // copy_range (be32), copy_mode, pad
	mode[4] = copyPacket
	ae.Bytes(cfgMode, mode)
	ae.Bytes(cfgQThresh, binary.BigEndian.AppendUint32(nil, 1))
	attrs, err := ae.Encode()
	if err != nil {
		return err
	}
	group := r.cfg.Group
	body := append([]byte{unix.AF_UNSPEC, 0 /* NFNETLINK_V0 */, byte(group >> 8), byte(group)}, attrs...)
	req, err := r.conn.Send(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(nfnlSubsysULOG<<8 | msgConfig),
			Flags: netlink.Request | netlink.Acknowledge},
		Data: body,
	})
	if err != nil {
		return fmt.Errorf("binding NFLOG group %d: %w", group, err)
	}
	if err := r.conn.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return err
	}
	defer r.conn.SetReadDeadline(time.Time{})
	for {
		msgs, err := r.conn.Receive()
		if err != nil {
			return fmt.Errorf("binding NFLOG group %d: %w", group, err)
		}
		for _, m := range msgs {
			if m.Header.Type == netlink.Error && m.Header.Sequence == req.Header.Sequence {
				return nil // an error code other than 0 made Receive fail
			}
			r.handle(m)
		}
	}
}

// Run reads and aggregates until ctx is done or Close is called (call it
// once), and
// delivers held-back updates every FlushInterval. It closes Updates when it
// returns. An overrun (the kernel dropped messages for want of buffer) is
// counted and reading goes on.
func (r *Reader) Run(ctx context.Context) error {
	defer close(r.updates)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tick := time.NewTicker(r.cfg.FlushInterval)
		defer tick.Stop()
		for {
			select {
			case <-ctx.Done():
				r.Close()
				return
			case <-stop:
				return
			case <-tick.C:
				r.Flush()
			}
		}
	}()
	defer wg.Wait()
	defer close(stop)
	for {
		msgs, err := r.conn.Receive()
		if err != nil {
			select {
			case <-r.closed:
				return nil
			default:
			}
			if errors.Is(err, unix.ENOBUFS) {
				r.noteOverrun()
				continue
			}
			return fmt.Errorf("reading NFLOG group %d: %w", r.cfg.Group, err)
		}
		for _, m := range msgs {
			r.handle(m)
		}
	}
}

// handle parses and aggregates one message.
func (r *Reader) handle(m netlink.Message) {
	if r.cfg.tap != nil {
		if b, err := m.MarshalBinary(); err == nil {
			r.cfg.tap(b)
		}
	}
	var d Drop
	err := r.parser.Parse(uint16(m.Header.Type), m.Data, &d)
	r.noteMessage(err)
	if err == nil {
		r.Add(&d)
	}
}

// Close closes the socket, which unbinds the group; Run returns.
func (r *Reader) Close() error {
	var err error
	r.once.Do(func() {
		close(r.closed)
		err = r.conn.Close()
	})
	return err
}
