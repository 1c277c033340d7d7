package enforcer

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/openmud/mud/internal/netns"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"
)

// deleteConntrack deletes the conntrack entries from, to or answered by
// the addresses (routed flows, and bridged ones conntrack tracks). The
// kernel walks its whole conntrack hash table for a dump (262,144 buckets
// on a machine with a few GiB, ~10 ms), so both IP versions are dumped in
// one walk and each entry is looked up once in the set of addresses. A
// gateway with thousands of devices holds tens of thousands of entries
// (every DHCP exchange leaves one), so the dump is read into one reused
// buffer and scanned in place: nothing is allocated for an entry that is
// kept.
func (e *Enforcer) deleteConntrack(addrs []netip.Addr) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	if len(want) == 0 {
		return nil
	}
	return netns.DoFd(e.nsFd, func() error {
		if e.ctBuf == nil {
			// The kernel fills one dump message up to 32 KiB.
			e.ctBuf = make([]byte, 64<<10)
		}
		victims, err := dumpConntrack(e.ctBuf, func(msg []byte) bool { return conntrackOf(msg, want) })
		var errs []error
		if err != nil {
			// An interrupted dump (the table changed meanwhile) still
			// gives what it read.
			errs = append(errs, fmt.Errorf("dumping conntrack entries: %w", err))
		}
		for _, v := range victims {
			// The entry as dumped identifies itself (tuple, zone, id).
			del := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_DELETE, unix.NLM_F_ACK)
			del.AddData(&nl.Nfgenmsg{NfgenFamily: v[0], Version: nl.NFNETLINK_V0})
			del.AddRawData(v[4:])
			if _, err := del.Execute(unix.NETLINK_NETFILTER, 0); err != nil && !errors.Is(err, unix.ENOENT) {
				errs = append(errs, fmt.Errorf("deleting a conntrack entry: %w", err))
			}
		}
		return errors.Join(errs...)
	})
}

// dumpConntrack dumps the conntrack table of the calling thread's
// namespace (both IP versions), reading it into buf, and returns a copy of
// each entry (its nfgenmsg and attributes) that keep accepts.
func dumpConntrack(buf []byte, keep func(msg []byte) bool) ([][]byte, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("opening ctnetlink: %w", err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("binding ctnetlink: %w", err)
	}
	const seq = 1
	req := make([]byte, unix.NLMSG_HDRLEN+4)
	binary.NativeEndian.PutUint32(req[0:4], uint32(len(req)))
	binary.NativeEndian.PutUint16(req[4:6], unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_GET)
	binary.NativeEndian.PutUint16(req[6:8], unix.NLM_F_REQUEST|unix.NLM_F_DUMP)
	binary.NativeEndian.PutUint32(req[8:12], seq)
	req[16] = unix.AF_UNSPEC // nfgenmsg: family, version, resource id
	req[17] = nl.NFNETLINK_V0
	if err := unix.Sendto(fd, req, 0, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return nil, fmt.Errorf("asking for the conntrack table: %w", err)
	}
	var out [][]byte
	var interrupted bool
	for {
		n, _, err := unix.Recvfrom(fd, buf, 0)
		if err != nil {
			if errors.Is(err, unix.EINTR) {
				continue
			}
			return out, fmt.Errorf("reading the conntrack table: %w", err)
		}
		for b := buf[:n]; len(b) >= unix.NLMSG_HDRLEN; {
			l := int(binary.NativeEndian.Uint32(b[0:4]))
			if l < unix.NLMSG_HDRLEN || l > len(b) {
				return out, errors.New("reading the conntrack table: truncated netlink message")
			}
			typ, flags := binary.NativeEndian.Uint16(b[4:6]), binary.NativeEndian.Uint16(b[6:8])
			msg := b[unix.NLMSG_HDRLEN:l]
			if flags&unix.NLM_F_DUMP_INTR != 0 {
				interrupted = true
			}
			switch typ {
			case unix.NLMSG_DONE:
				if interrupted {
					return out, errors.New("the conntrack table changed during the dump")
				}
				return out, nil
			case unix.NLMSG_ERROR:
				if len(msg) >= 4 {
					if errno := int32(binary.NativeEndian.Uint32(msg[0:4])); errno != 0 {
						return out, fmt.Errorf("reading the conntrack table: %w", unix.Errno(-errno))
					}
				}
				return out, nil
			default:
				if keep(msg) {
					out = append(out, slices.Clone(msg))
				}
			}
			b = b[min(len(b), nlmsgAlign(l)):]
		}
	}
}

func nlmsgAlign(n int) int { return (n + unix.NLMSG_ALIGNTO - 1) &^ (unix.NLMSG_ALIGNTO - 1) }

// conntrackOf tells whether a dumped conntrack entry (nfgenmsg, then
// attributes) has one of the addresses as its original source or
// destination or its reply source.
func conntrackOf(msg []byte, want map[netip.Addr]bool) bool {
	if len(msg) < 4 {
		return false
	}
	found := false
	eachAttr(msg[4:], func(typ uint16, v []byte) bool {
		if typ != nl.CTA_TUPLE_ORIG && typ != nl.CTA_TUPLE_REPLY {
			return true
		}
		src, dst := tupleAddrs(v)
		found = want[src] || (typ == nl.CTA_TUPLE_ORIG && want[dst])
		return !found
	})
	return found
}

// tupleAddrs reads the addresses of a CTA_TUPLE_ORIG or _REPLY.
func tupleAddrs(b []byte) (src, dst netip.Addr) {
	eachAttr(b, func(typ uint16, v []byte) bool {
		if typ != nl.CTA_TUPLE_IP {
			return true
		}
		eachAttr(v, func(typ uint16, ip []byte) bool {
			var a netip.Addr
			switch len(ip) {
			case 4:
				a = netip.AddrFrom4([4]byte(ip))
			case 16:
				a = netip.AddrFrom16([16]byte(ip)).Unmap()
			default:
				return true
			}
			switch typ {
			case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
				src = a
			case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
				dst = a
			}
			return true
		})
		return false
	})
	return
}

// eachAttr calls fn with the type (flags masked) and value of each netlink
// attribute in b, until fn returns false; it stops at a malformed one.
func eachAttr(b []byte, fn func(typ uint16, v []byte) bool) {
	for len(b) >= unix.NLA_HDRLEN {
		l := int(binary.NativeEndian.Uint16(b[0:2]))
		if l < unix.NLA_HDRLEN || l > len(b) {
			return
		}
		if !fn(binary.NativeEndian.Uint16(b[2:4])&nl.NLA_TYPE_MASK, b[unix.NLA_HDRLEN:l]) {
			return
		}
		b = b[min(len(b), (l+unix.NLA_ALIGNTO-1)&^(unix.NLA_ALIGNTO-1)):]
	}
}
