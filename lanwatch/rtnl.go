package lanwatch

import (
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/netns"
)

// What the kernel's rtnetlink dumps say, decoded: links, bridge port flags,
// addresses, forwarding entries and tc filters. Every dump is read whole
// and decoded here; nothing is cached between reads.

const (
	sizeofIfInfomsg  = unix.SizeofIfInfomsg // family, pad, type, index, flags, change
	sizeofIfAddrmsg  = unix.SizeofIfAddrmsg // family, prefixlen, flags, scope, index
	sizeofNdMsg      = unix.SizeofNdMsg     // family, pads, ifindex, state, flags, type
	sizeofTcMsg      = 20                   // family, pads, ifindex, handle, parent, info
	tcIngressParent  = 0xFFFFFFF2           // TC_H_MAKE(TC_H_CLSACT, TC_H_MIN_INGRESS): ingress and clsact
	dumpAttempts     = 4                    // a dump interrupted by a change is read again
	nudStaticEntries = unix.NUD_PERMANENT | unix.NUD_NOARP
	xdpAttachedNone  = 0 // XDP_ATTACHED_NONE
)

var errDumpInterrupted = errors.New("the kernel's dump was interrupted by concurrent changes each time")

// dialNetlink opens a netlink socket of the given family in the namespace,
// joined to groups (a bitmask of the first 32 groups).
func dialNetlink(nsFd, family int, groups uint32) (*netlink.Conn, error) {
	var c *netlink.Conn
	err := netns.DoFd(nsFd, func() (err error) {
		c, err = netlink.Dial(family, &netlink.Config{Groups: groups})
		return err
	})
	return c, err
}

// rtnl asks the kernel for dumps over one NETLINK_ROUTE socket.
type rtnl struct{ c *netlink.Conn }

func (r rtnl) dump(typ netlink.HeaderType, data []byte) ([]netlink.Message, error) {
	for range dumpAttempts {
		msgs, err := r.c.Execute(netlink.Message{Header: netlink.Header{Type: typ, Flags: netlink.Request | netlink.Dump}, Data: data})
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(msgs, func(m netlink.Message) bool { return m.Header.Flags&netlink.DumpInterrupted != 0 }) {
			return msgs, nil
		}
	}
	return nil, errDumpInterrupted
}

// dumpFamily dumps messages of type typ for one address family, with a
// request header of size bytes; what names the dump in errors.
func (r rtnl) dumpFamily(typ netlink.HeaderType, size int, family byte, what string) ([]netlink.Message, error) {
	req := make([]byte, size)
	req[0] = family
	msgs, err := r.dump(typ, req)
	if err != nil {
		return nil, fmt.Errorf("listing %s: %w", what, err)
	}
	return msgs, nil
}

// link is one interface of the namespace.
type link struct {
	index    int
	name     string
	master   int    // IFLA_MASTER: the bridge (or bond) it is a port of
	kind     string // IFLA_INFO_KIND
	ether    bool
	switchID string // IFLA_PHYS_SWITCH_ID, hex
	xdp      bool
}

// links dumps every interface (RTM_GETLINK, AF_UNSPEC).
func (r rtnl) links() (map[int]link, error) {
	msgs, err := r.dumpFamily(unix.RTM_GETLINK, sizeofIfInfomsg, unix.AF_UNSPEC, "links")
	if err != nil {
		return nil, err
	}
	out := make(map[int]link, len(msgs))
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK {
			continue
		}
		l, err := decodeLink(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding a link: %w", err)
		}
		out[l.index] = l
	}
	return out, nil
}

func decodeLink(b []byte) (link, error) {
	if len(b) < sizeofIfInfomsg {
		return link{}, errors.New("short ifinfomsg")
	}
	l := link{
		ether: binary.NativeEndian.Uint16(b[2:4]) == unix.ARPHRD_ETHER,
		index: int(int32(binary.NativeEndian.Uint32(b[4:8]))),
	}
	ad, err := netlink.NewAttributeDecoder(b[sizeofIfInfomsg:])
	if err != nil {
		return l, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_IFNAME:
			l.name = ad.String()
		case unix.IFLA_MASTER:
			l.master = int(ad.Uint32())
		case unix.IFLA_PHYS_SWITCH_ID:
			l.switchID = hex.EncodeToString(ad.Bytes())
		case unix.IFLA_LINKINFO:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_KIND {
						l.kind = nad.String()
					}
				}
				return nil
			})
		case unix.IFLA_XDP:
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_XDP_ATTACHED {
						l.xdp = nad.Uint8() != xdpAttachedNone
					}
				}
				return nil
			})
		}
	}
	return l, ad.Err()
}

// brport is a bridge port's flags (IFLA_PROTINFO of an AF_BRIDGE link).
type brport struct {
	master                                                            int
	isolated, hairpin, learning, unicastFlood, proxyARP, proxyARPWiFi bool
}

// bridgePorts dumps the bridge ports' flags (RTM_GETLINK, AF_BRIDGE:
// `bridge -d link`), by port index.
func (r rtnl) bridgePorts() (map[int]brport, error) {
	msgs, err := r.dumpFamily(unix.RTM_GETLINK, sizeofIfInfomsg, unix.AF_BRIDGE, "bridge ports")
	if err != nil {
		return nil, err
	}
	out := map[int]brport{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < sizeofIfInfomsg {
			continue
		}
		index := int(int32(binary.NativeEndian.Uint32(m.Data[4:8])))
		p, ok, err := decodeBrport(m.Data[sizeofIfInfomsg:])
		if err != nil {
			return nil, fmt.Errorf("decoding bridge port %d: %w", index, err)
		}
		if ok {
			out[index] = p
		}
	}
	return out, nil
}

func decodeBrport(b []byte) (brport, bool, error) {
	var p brport
	found := false
	ad, err := netlink.NewAttributeDecoder(b)
	if err != nil {
		return p, false, err
	}
	for ad.Next() {
		switch ad.Type() {
		case unix.IFLA_MASTER:
			p.master = int(ad.Uint32())
		case unix.IFLA_PROTINFO:
			found = true
			flags := map[uint16]*bool{
				unix.IFLA_BRPORT_ISOLATED: &p.isolated, unix.IFLA_BRPORT_MODE: &p.hairpin,
				unix.IFLA_BRPORT_LEARNING: &p.learning, unix.IFLA_BRPORT_UNICAST_FLOOD: &p.unicastFlood,
				unix.IFLA_BRPORT_PROXYARP: &p.proxyARP, unix.IFLA_BRPORT_PROXYARP_WIFI: &p.proxyARPWiFi,
			}
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if f, ok := flags[nad.Type()]; ok && len(nad.Bytes()) > 0 {
						*f = nad.Bytes()[0] != 0
					}
				}
				return nil
			})
		}
	}
	return p, found && p.master != 0, ad.Err()
}

// ifAddr is one address of an interface.
type ifAddr struct {
	index  int
	prefix netip.Prefix // the address with its prefix length, not masked
}

// addrs dumps every address (RTM_GETADDR), leaving out those whose
// duplicate address detection failed.
func (r rtnl) addrs() ([]ifAddr, error) {
	msgs, err := r.dumpFamily(unix.RTM_GETADDR, sizeofIfAddrmsg, unix.AF_UNSPEC, "addresses")
	if err != nil {
		return nil, err
	}
	var out []ifAddr
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWADDR {
			continue
		}
		a, ok, err := decodeAddr(m.Data)
		if err != nil {
			return nil, fmt.Errorf("decoding an address: %w", err)
		}
		if ok {
			out = append(out, a)
		}
	}
	return out, nil
}

func decodeAddr(b []byte) (ifAddr, bool, error) {
	if len(b) < sizeofIfAddrmsg {
		return ifAddr{}, false, errors.New("short ifaddrmsg")
	}
	bits, flags := int(b[1]), uint32(b[2])
	index := int(binary.NativeEndian.Uint32(b[4:8]))
	ad, err := netlink.NewAttributeDecoder(b[sizeofIfAddrmsg:])
	if err != nil {
		return ifAddr{}, false, err
	}
	var local, address netip.Addr
	for ad.Next() {
		switch ad.Type() {
		case unix.IFA_LOCAL:
			local, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.IFA_ADDRESS:
			address, _ = netip.AddrFromSlice(ad.Bytes())
		case unix.IFA_FLAGS:
			flags = ad.Uint32()
		}
	}
	if err := ad.Err(); err != nil {
		return ifAddr{}, false, err
	}
	// IFA_LOCAL is the interface's own address; IFA_ADDRESS is the same,
	// or the peer's on a point-to-point link.
	a := local
	if !a.IsValid() {
		a = address
	}
	if !a.IsValid() || flags&unix.IFA_F_DADFAILED != 0 || bits > a.BitLen() {
		return ifAddr{}, false, nil
	}
	return ifAddr{index: index, prefix: netip.PrefixFrom(a.Unmap(), bits)}, true, nil
}

// learnt counts, for each bridge port, the distinct unicast addresses the
// bridge learnt behind it (RTM_GETNEIGH, AF_BRIDGE: `bridge fdb`), leaving
// out the bridge's own entries and static ones.
func (r rtnl) learnt() (map[int]int, error) {
	msgs, err := r.dumpFamily(unix.RTM_GETNEIGH, sizeofNdMsg, unix.AF_BRIDGE, "forwarding entries")
	if err != nil {
		return nil, err
	}
	macs := map[int]map[[6]byte]bool{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH {
			continue
		}
		port, mac, ok := decodeFDB(m.Data)
		if !ok {
			continue
		}
		if macs[port] == nil {
			macs[port] = map[[6]byte]bool{}
		}
		macs[port][mac] = true
	}
	out := make(map[int]int, len(macs))
	for port, set := range macs {
		out[port] = len(set)
	}
	return out, nil
}

// decodeFDB returns the port and address of a learnt unicast entry of a
// bridge's forwarding database; ok is false for anything else.
func decodeFDB(b []byte) (port int, mac [6]byte, ok bool) {
	if len(b) < sizeofNdMsg {
		return 0, mac, false
	}
	port = int(int32(binary.NativeEndian.Uint32(b[4:8])))
	state := binary.NativeEndian.Uint16(b[8:10])
	if state&nudStaticEntries != 0 {
		return 0, mac, false
	}
	ad, err := netlink.NewAttributeDecoder(b[sizeofNdMsg:])
	if err != nil {
		return 0, mac, false
	}
	master, haveMAC := 0, false
	for ad.Next() {
		switch ad.Type() {
		case unix.NDA_MASTER:
			master = int(ad.Uint32())
		case unix.NDA_LLADDR:
			if v := ad.Bytes(); len(v) == 6 {
				copy(mac[:], v)
				haveMAC = true
			}
		}
	}
	if ad.Err() != nil || master == 0 || master == port || !haveMAC || mac[0]&1 != 0 {
		return 0, mac, false
	}
	return port, mac, true
}

// ingressFilters counts the tc filters on a port's ingress (`tc filter show
// dev PORT ingress`, for an ingress or a clsact qdisc).
func (r rtnl) ingressFilters(index int) (int, error) {
	req := make([]byte, sizeofTcMsg)
	binary.NativeEndian.PutUint32(req[4:8], uint32(index))
	binary.NativeEndian.PutUint32(req[12:16], tcIngressParent)
	msgs, err := r.dump(unix.RTM_GETTFILTER, req)
	if err != nil {
		return 0, fmt.Errorf("listing tc ingress filters: %w", err)
	}
	n := 0
	for _, m := range msgs {
		if m.Header.Type == unix.RTM_NEWTFILTER {
			n++
		}
	}
	return n, nil
}
