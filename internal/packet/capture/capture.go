// Package capture reads and sends Ethernet frames on Linux AF_PACKET
// sockets: the DHCP snooper's, the resolver's DNS capture (which also
// re-injects the answers it held), and the frames tests send as a device.
//
// A socket is opened inside a network namespace when asked (internal/netns)
// and bound to one interface. Its classic BPF filter is attached before the
// socket is bound, so that no frame the filter refuses is ever queued, and
// the filter decides in the kernel what else is kept: the direction a frame
// went (Filter.Direction), whether it carries a packet mark (Filter.SkipMark),
// and the caller's own program (Filter.Program). Reading gives each frame with
// what the kernel knows about it (Info): its direction, a VLAN tag the NIC or
// the kernel took out of the frame (put back in place, so that the bytes read
// are the frame as it was on the wire), whether its transport checksum is
// still to be filled in, and, when asked, the kernel's receive time.
package capture

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"syscall"
	"time"
	"unsafe"

	afpacket "github.com/mdlayher/packet"
	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/packet"
)

// Direction is which way a frame went through the interface.
type Direction uint8

const (
	// Both: frames in either direction (as a Filter.Direction).
	Both Direction = iota
	// Incoming frames were received by the interface (addressed to this
	// host, broadcast, multicast, or to another host).
	Incoming
	// Outgoing frames were sent out of the interface by this host (its own
	// or forwarded).
	Outgoing
)

func (d Direction) String() string {
	switch d {
	case Both:
		return "both"
	case Incoming:
		return "incoming"
	case Outgoing:
		return "outgoing"
	}
	return fmt.Sprintf("Direction(%d)", uint8(d))
}

// SnapLen is the most of a frame a filter that accepts it keeps when its
// program does not say less: all of it.
const SnapLen = 0xffff

// Filter decides in the kernel which frames a socket queues.
type Filter struct {
	// Program is a classic BPF program run on each frame (as the kernel
	// has it: a tag the NIC took off is not in the bytes), which returns
	// how many octets to keep, 0 to drop. Nil keeps every frame whole.
	Program []bpf.Instruction
	// Direction keeps only the frames that went one way; Both keeps all.
	Direction Direction
	// SkipMark, if not zero, drops frames whose packet mark has all its
	// bits (frames a socket with Config.Mark sent, for instance).
	SkipMark uint32
}

// Assemble assembles the filter: Direction and SkipMark are tested first,
// with the kernel's BPF extensions (which x/net/bpf's VM does not run: test
// Program alone there), then Program.
func (f Filter) Assemble() ([]bpf.RawInstruction, error) {
	prog := f.Program
	if prog == nil {
		prog = []bpf.Instruction{bpf.RetConstant{Val: SnapLen}}
	}
	var pre []bpf.Instruction
	// Each test of the prefix jumps to a drop after Program when it fails.
	switch f.Direction {
	case Both:
	case Incoming:
		pre = append(pre, bpf.LoadExtension{Num: bpf.ExtType}, jumpDrop(bpf.JumpNotEqual, unix.PACKET_OUTGOING))
	case Outgoing:
		pre = append(pre, bpf.LoadExtension{Num: bpf.ExtType}, jumpDrop(bpf.JumpEqual, unix.PACKET_OUTGOING))
	default:
		return nil, fmt.Errorf("assembling the capture filter: unknown direction %d", f.Direction)
	}
	if f.SkipMark != 0 {
		pre = append(pre,
			bpf.LoadExtension{Num: bpf.ExtMark},
			bpf.ALUOpConstant{Op: bpf.ALUOpAnd, Val: f.SkipMark},
			jumpDrop(bpf.JumpNotEqual, f.SkipMark))
	}
	all := make([]bpf.Instruction, 0, len(pre)+len(prog)+1)
	all = append(all, pre...)
	all = append(all, prog...)
	all = append(all, bpf.RetConstant{Val: 0})
	drop := len(all) - 1
	for i, ins := range pre {
		if j, ok := ins.(bpf.JumpIf); ok && j.SkipFalse == dropMarker {
			skip := drop - i - 1
			if skip > 255 {
				return nil, fmt.Errorf("assembling the capture filter: program too long (%d instructions)", len(prog))
			}
			j.SkipFalse = uint8(skip)
			all[i] = j
		}
	}
	raw, err := bpf.Assemble(all)
	if err != nil {
		return nil, fmt.Errorf("assembling the capture filter: %w", err)
	}
	return raw, nil
}

// dropMarker marks the jumps of the prefix to resolve to the final drop.
const dropMarker = 0xff

// jumpDrop continues when A cond v holds and drops otherwise.
func jumpDrop(cond bpf.JumpTest, v uint32) bpf.JumpIf {
	return bpf.JumpIf{Cond: cond, Val: v, SkipFalse: dropMarker}
}

// dropAll is the filter of a socket that only sends.
var dropAll = []bpf.RawInstruction{{Op: 0x06, K: 0}} // ret #0

// Config configures a socket. The zero value captures every frame in
// both directions in the calling thread's namespace.
type Config struct {
	// NetNS is the name of a network namespace (/var/run/netns/NAME) to
	// open the socket in; NetNSFd an open handle of one. At most one may
	// be set; neither: the calling thread's namespace.
	NetNS   string
	NetNSFd int
	// Filter decides which frames are queued for reading.
	Filter Filter
	// SendOnly queues no frame at all, whatever Filter says: for sockets
	// that only send.
	SendOnly bool
	// Promiscuous puts the interface in promiscuous mode while the socket
	// is open.
	Promiscuous bool
	// Timestamps asks the kernel for each frame's receive time (Info.Time).
	Timestamps bool
	// Mark is the packet mark of the frames the socket sends (SO_MARK;
	// needs CAP_NET_ADMIN); 0 for none.
	Mark uint32
}

// Conn is a packet socket bound to one interface. ReadFrame is for one
// goroutine at a time; Send and the setters may be called from any.
type Conn struct {
	ifname string
	index  int
	conn   *afpacket.Conn
	raw    syscall.RawConn
	oob    []byte // the reader's
}

// Open opens a packet socket on interface ifname (needs CAP_NET_RAW).
func Open(ifname string, cfg Config) (*Conn, error) {
	c, err := open(ifname, cfg)
	if err != nil {
		return nil, fmt.Errorf("opening a packet socket on %s: %w", ifname, err)
	}
	return c, nil
}

func open(ifname string, cfg Config) (*Conn, error) {
	if cfg.NetNS != "" && cfg.NetNSFd > 0 {
		return nil, errors.New("both a namespace name and a namespace handle given")
	}
	filter := dropAll
	if !cfg.SendOnly {
		var err error
		if filter, err = cfg.Filter.Assemble(); err != nil {
			return nil, err
		}
	}
	var c *Conn
	in := func() error {
		ifi, err := net.InterfaceByName(ifname)
		if err != nil {
			return err
		}
		// Listen attaches the filter before it binds the socket to the
		// interface and protocol: nothing is queued before.
		pc, err := afpacket.Listen(ifi, afpacket.Raw, unix.ETH_P_ALL, &afpacket.Config{Filter: filter})
		if err != nil {
			return err
		}
		c = &Conn{ifname: ifname, index: ifi.Index, conn: pc,
			oob: make([]byte, unix.CmsgSpace(sizeofAuxdata)+unix.CmsgSpace(sizeofTimespec))}
		if err := c.setup(cfg); err != nil {
			pc.Close()
			return err
		}
		return nil
	}
	var err error
	if cfg.NetNS != "" {
		err = netns.Do(cfg.NetNS, in)
	} else {
		err = netns.DoFd(cfg.NetNSFd, in)
	}
	return c, err
}

func (c *Conn) setup(cfg Config) error {
	var err error
	if c.raw, err = c.conn.SyscallConn(); err != nil {
		return err
	}
	if !cfg.SendOnly {
		if err := c.setsockopt(unix.SOL_PACKET, unix.PACKET_AUXDATA, 1); err != nil {
			return fmt.Errorf("enabling auxiliary data: %w", err)
		}
	}
	if cfg.Timestamps {
		if err := c.setsockopt(unix.SOL_SOCKET, unix.SO_TIMESTAMPNS, 1); err != nil {
			return fmt.Errorf("enabling timestamps: %w", err)
		}
	}
	if cfg.Mark != 0 {
		if err := c.SetMark(cfg.Mark); err != nil {
			return err
		}
	}
	if cfg.Promiscuous {
		if err := c.conn.SetPromiscuous(true); err != nil {
			return fmt.Errorf("entering promiscuous mode: %w", err)
		}
	}
	return nil
}

func (c *Conn) setsockopt(level, opt, v int) error {
	var serr error
	err := c.raw.Control(func(fd uintptr) { serr = unix.SetsockoptInt(int(fd), level, opt, v) })
	return errors.Join(err, serr)
}

// Interface is the name of the interface the socket is bound to.
func (c *Conn) Interface() string { return c.ifname }

// Index is the interface's index.
func (c *Conn) Index() int { return c.index }

// Driver is the name of the interface's driver ("bridge", "veth", ...),
// as ethtool reports it.
func (c *Conn) Driver() (string, error) {
	var (
		name string
		derr error
	)
	err := c.raw.Control(func(fd uintptr) {
		// The ioctl answers for the socket's namespace.
		info, err := unix.IoctlGetEthtoolDrvinfo(int(fd), c.ifname)
		if err != nil {
			derr = err
			return
		}
		name = unix.ByteSliceToString(info.Driver[:])
	})
	if err := errors.Join(err, derr); err != nil {
		return "", fmt.Errorf("reading the driver of %s: %w", c.ifname, err)
	}
	return name, nil
}

// SetFilter replaces the socket's filter.
func (c *Conn) SetFilter(f Filter) error {
	raw, err := f.Assemble()
	if err != nil {
		return err
	}
	if err := c.conn.SetBPF(raw); err != nil {
		return fmt.Errorf("setting the filter of the packet socket on %s: %w", c.ifname, err)
	}
	return nil
}

// SetMark sets the packet mark of the frames the socket sends.
func (c *Conn) SetMark(mark uint32) error {
	if err := c.setsockopt(unix.SOL_SOCKET, unix.SO_MARK, int(mark)); err != nil {
		return fmt.Errorf("setting the mark of the packet socket on %s: %w", c.ifname, err)
	}
	return nil
}

// SetReadDeadline makes a blocked or future ReadFrame return a timeout
// error (net.Error) at t; a time in the past wakes the reader at once.
func (c *Conn) SetReadDeadline(t time.Time) error { return c.conn.SetReadDeadline(t) }

// Close closes the socket.
func (c *Conn) Close() error { return c.conn.Close() }

// Info is what the kernel says about a frame besides its bytes.
type Info struct {
	// Direction is Incoming or Outgoing.
	Direction Direction
	// PacketType is the kernel's PACKET_HOST, PACKET_BROADCAST,
	// PACKET_MULTICAST, PACKET_OTHERHOST or PACKET_OUTGOING.
	PacketType uint8
	// Tagged: the kernel held the frame's VLAN tag outside its bytes (the
	// NIC stripped it, or the kernel did on receive) and ReadFrame put it
	// back after the MAC addresses. Tag is that tag.
	Tagged bool
	Tag    packet.Tag
	// ChecksumPartial: the frame's transport checksum is left to the NIC
	// (TP_STATUS_CSUMNOTREADY): the header holds only the pseudo-header
	// sum. packet.FillUDPChecksum completes it before a frame is sent again.
	ChecksumPartial bool
	// Len is the frame's length on the wire (tag included); Truncated
	// says that less was read, because the filter or the buffer kept less.
	Len       int
	Truncated bool
	// Time is when the kernel received the frame (Config.Timestamps);
	// zero without.
	Time time.Time
}

const (
	sizeofAuxdata  = int(unsafe.Sizeof(unix.TpacketAuxdata{}))
	sizeofTimespec = int(unsafe.Sizeof(unix.Timespec{}))
)

// ReadFrame reads the next frame into buf and returns it, a slice of buf,
// with what the kernel says about it. A VLAN tag the kernel held apart is
// put back into the frame, which then starts at buf[0]; an untagged frame
// starts at buf[4]: buf must hold the longest frame expected plus 4 octets.
// It blocks until a frame arrives or the read deadline passes.
func (c *Conn) ReadFrame(buf []byte) ([]byte, Info, error) {
	if len(buf) < 4+14 {
		return nil, Info{}, fmt.Errorf("reading from %s: a %d-octet buffer is too small", c.ifname, len(buf))
	}
	var (
		n, oobn, flags int
		from           unix.Sockaddr
		rerr           error
	)
	err := c.raw.Read(func(fd uintptr) bool {
		n, oobn, flags, from, rerr = unix.Recvmsg(int(fd), buf[4:], c.oob, 0)
		return !errors.Is(rerr, unix.EAGAIN)
	})
	if err == nil {
		err = rerr
	}
	if err != nil {
		return nil, Info{}, err
	}
	info := Info{Direction: Incoming, Len: n, Truncated: flags&unix.MSG_TRUNC != 0}
	if sll, ok := from.(*unix.SockaddrLinklayer); ok {
		info.PacketType = sll.Pkttype
		if sll.Pkttype == unix.PACKET_OUTGOING {
			info.Direction = Outgoing
		}
	}
	oob := c.oob[:oobn]
	for len(oob) > 0 {
		hdr, data, rest, err := unix.ParseOneSocketControlMessage(oob)
		if err != nil {
			break
		}
		oob = rest
		switch {
		case hdr.Level == unix.SOL_PACKET && hdr.Type == unix.PACKET_AUXDATA && len(data) >= sizeofAuxdata:
			status := binary.NativeEndian.Uint32(data[0:4])
			info.Len = int(binary.NativeEndian.Uint32(data[4:8]))
			info.Truncated = info.Truncated || binary.NativeEndian.Uint32(data[8:12]) < uint32(info.Len)
			info.ChecksumPartial = status&unix.TP_STATUS_CSUMNOTREADY != 0
			tci := binary.NativeEndian.Uint16(data[16:18])
			if status&unix.TP_STATUS_VLAN_VALID != 0 || tci != 0 {
				tpid := uint16(packet.EtherTypeVLAN)
				if status&unix.TP_STATUS_VLAN_TPID_VALID != 0 {
					tpid = binary.NativeEndian.Uint16(data[18:20])
				}
				info.Tagged, info.Tag = true, packet.Tag{TPID: tpid, TCI: tci}
			}
		case hdr.Level == unix.SOL_SOCKET && hdr.Type == unix.SCM_TIMESTAMPNS && len(data) >= sizeofTimespec:
			var sec, nsec int64
			if sizeofTimespec == 16 {
				sec, nsec = int64(binary.NativeEndian.Uint64(data[0:8])), int64(binary.NativeEndian.Uint64(data[8:16]))
			} else {
				sec, nsec = int64(int32(binary.NativeEndian.Uint32(data[0:4]))), int64(int32(binary.NativeEndian.Uint32(data[4:8])))
			}
			info.Time = time.Unix(sec, nsec)
		}
	}
	if !info.Tagged || n < 12 {
		info.Tagged, info.Tag = false, packet.Tag{}
		return buf[4 : 4+n], info, nil
	}
	// Put the tag back between the MAC addresses and the EtherType.
	copy(buf[0:12], buf[4:16])
	binary.BigEndian.PutUint16(buf[12:14], info.Tag.TPID)
	binary.BigEndian.PutUint16(buf[14:16], info.Tag.TCI)
	info.Len += 4
	return buf[:n+4], info, nil
}

// Send sends frame, whole with its Ethernet header, out of the interface
// (with Config.Mark's mark). It is the way a captured frame is re-injected.
func (c *Conn) Send(frame []byte) error {
	if len(frame) < 14 {
		return fmt.Errorf("sending on %s: a %d-octet frame has no Ethernet header", c.ifname, len(frame))
	}
	_, err := c.conn.WriteTo(frame, &afpacket.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
	return err
}

// WriteTo sends b, a whole frame, out of the interface. addr is a
// *github.com/mdlayher/packet.Addr, which a raw socket does not use beyond
// checking it; Send needs none.
func (c *Conn) WriteTo(b []byte, addr net.Addr) (int, error) { return c.conn.WriteTo(b, addr) }
