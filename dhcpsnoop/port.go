package dhcpsnoop

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/netns"
)

// Bridge ports. A gateway's LAN is usually a bridge (br-lan) whose ports are
// the physical LAN sockets and the Wi-Fi interfaces; DHCP is captured on the
// bridge, which does not say which port a frame came in on. The bridge's
// forwarding database does: the entry it learnt from the frame's source
// address when the frame entered the bridge, before the frame reached our
// socket. Each Event names that port (Event.Port), so the manager can share
// its work fairly between ports: one host flooding DHCP from thousands of
// spoofed MACs on one port then cannot starve the devices on the others.

const (
	// portCacheTTL is how long a MAC's port is believed without asking the
	// kernel again; a device that moves is seen on its new port after it.
	portCacheTTL = 5 * time.Second
	// maxPortCache bounds the cache (it is emptied when full: a flood of
	// MACs only costs lookups, never memory).
	maxPortCache = 4096
	// dumpEvery is how often, at most, a bridge's whole forwarding
	// database is read when a lookup finds nothing (see dumpPort).
	dumpEvery = 500 * time.Millisecond
)

// portFinder looks MACs up in the forwarding database of the captured
// bridges, over one rtnetlink socket opened in the capture's namespace. It
// is not safe for concurrent use: the Snooper's Run goroutine owns it.
type portFinder struct {
	conn  *netlink.Conn
	links map[string]linkInfo // captured interface → what it is
	names map[uint32]string   // port ifindex → name
	cache map[portKey]portEntry
	dumps map[uint32]fdbDump // bridge ifindex → its last full read
	c     *counters
}

// fdbDump is a bridge's forwarding database as last read in full.
type fdbDump struct {
	at    time.Time
	ports map[hwKey]uint32
}

type linkInfo struct {
	index  uint32
	bridge bool
}

type portKey struct {
	iface string
	mac   hwKey
}

type portEntry struct {
	port string
	at   time.Time
}

// newPortFinder opens the rtnetlink socket in namespace ns (the current
// one when empty).
func newPortFinder(ns string, c *counters) (*portFinder, error) {
	var conn *netlink.Conn
	err := netns.Do(ns, func() (err error) {
		conn, err = netlink.Dial(unix.NETLINK_ROUTE, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("dhcpsnoop: opening rtnetlink for bridge ports: %w", err)
	}
	return &portFinder{conn: conn, links: map[string]linkInfo{}, names: map[uint32]string{},
		cache: map[portKey]portEntry{}, dumps: map[uint32]fdbDump{}, c: c}, nil
}

func (p *portFinder) close() { _ = p.conn.Close() }

// port is the name of the port of iface on which frames from mac arrive:
// the bridge port whose forwarding entry holds mac when iface is a bridge,
// iface itself when it is not, "" when the bridge has no entry for mac
// (yet, or any more) or the kernel could not be asked.
func (p *portFinder) port(iface string, mac net.HardwareAddr, now time.Time) string {
	key, ok := keyOf(mac)
	if !ok || iface == "" {
		return ""
	}
	li, ok := p.links[iface]
	if !ok {
		var err error
		if li, err = p.link(iface); err != nil {
			p.c.portErrs.Add(1)
			return "" // asked again next time: the interface may come back
		}
		p.links[iface] = li
	}
	if !li.bridge {
		return iface
	}
	ck := portKey{iface, key}
	if e, ok := p.cache[ck]; ok && now.Sub(e.at) < portCacheTTL && !now.Before(e.at) {
		return e.port
	}
	idx, err := p.fdbPort(li.index, mac)
	if errors.Is(err, unix.ENOENT) {
		if i, ok := p.dumpPort(li.index, key, now); ok {
			idx, err = i, nil
		}
	}
	switch {
	case errors.Is(err, unix.ENOENT):
		p.c.portUnknown.Add(1)
		return ""
	case err != nil:
		p.c.portErrs.Add(1)
		delete(p.links, iface) // the bridge may have been recreated
		return ""
	case idx == li.index:
		return "" // the bridge's own address, not a device's
	}
	name, ok := p.names[idx]
	if !ok {
		if name, err = p.linkName(idx); err != nil {
			p.c.portErrs.Add(1)
			return ""
		}
		p.names[idx] = name
	}
	if len(p.cache) >= maxPortCache {
		clear(p.cache)
	}
	p.cache[ck] = portEntry{port: name, at: now}
	return name
}

// fdbPort asks the bridge with index br which port holds mac: RTM_GETNEIGH
// for AF_BRIDGE with NDA_LLADDR and NDA_MASTER (`bridge fdb get MAC br BR`).
func (p *portFinder) fdbPort(br uint32, mac net.HardwareAddr) (uint32, error) {
	ae := netlink.NewAttributeEncoder()
	ae.Bytes(unix.NDA_LLADDR, mac)
	ae.Uint32(unix.NDA_MASTER, br)
	attrs, err := ae.Encode()
	if err != nil {
		return 0, err
	}
	ndm := make([]byte, unix.SizeofNdMsg) // family, pads, ifindex, state, flags, type
	ndm[0] = unix.AF_BRIDGE
	msgs, err := p.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETNEIGH, Flags: netlink.Request},
		Data:   append(ndm, attrs...),
	})
	if err != nil {
		return 0, err
	}
	for _, m := range msgs {
		if m.Header.Type == unix.RTM_NEWNEIGH && len(m.Data) >= unix.SizeofNdMsg {
			return binary.NativeEndian.Uint32(m.Data[4:8]), nil
		}
	}
	return 0, unix.ENOENT
}

// dumpPort finds mac in a full read of the bridge's forwarding database,
// in any VLAN. A bridge that filters VLANs keys its entries by VLAN too,
// and a lookup without one (fdbPort) finds none of them; the dump does.
// It is read again at most every dumpEvery; in between, the last read
// answers.
func (p *portFinder) dumpPort(br uint32, key hwKey, now time.Time) (uint32, bool) {
	d, ok := p.dumps[br]
	if !ok || now.Sub(d.at) >= dumpEvery || now.Before(d.at) {
		ports, err := p.readFDB(br)
		if err != nil {
			p.c.portErrs.Add(1)
			return 0, false
		}
		d = fdbDump{at: now, ports: ports}
		p.dumps[br] = d
	}
	idx, ok := d.ports[key]
	return idx, ok
}

// readFDB dumps the forwarding database of every bridge (AF_BRIDGE
// RTM_GETNEIGH) and keeps the entries of bridge br that name a port.
func (p *portFinder) readFDB(br uint32) (map[hwKey]uint32, error) {
	ndm := make([]byte, unix.SizeofNdMsg)
	ndm[0] = unix.AF_BRIDGE
	msgs, err := p.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETNEIGH, Flags: netlink.Request | netlink.Dump},
		Data:   ndm,
	})
	if err != nil {
		return nil, err
	}
	out := map[hwKey]uint32{}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWNEIGH || len(m.Data) < unix.SizeofNdMsg {
			continue
		}
		port := binary.NativeEndian.Uint32(m.Data[4:8])
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofNdMsg:])
		if err != nil {
			continue
		}
		var master uint32
		var mac net.HardwareAddr
		for ad.Next() {
			switch ad.Type() {
			case unix.NDA_MASTER:
				master = ad.Uint32()
			case unix.NDA_LLADDR:
				mac = net.HardwareAddr(ad.Bytes())
			}
		}
		if k, ok := keyOf(mac); ok && ad.Err() == nil && master == br && port != br {
			out[k] = port
		}
	}
	return out, nil
}

// link reads an interface's index and whether it is a bridge.
func (p *portFinder) link(name string) (linkInfo, error) {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.IFLA_IFNAME, name)
	var li linkInfo
	err := p.getLink(0, ae, func(index uint32, ad *netlink.AttributeDecoder) {
		li.index = index
		if ad.Type() == unix.IFLA_LINKINFO {
			ad.Nested(func(nad *netlink.AttributeDecoder) error {
				for nad.Next() {
					if nad.Type() == unix.IFLA_INFO_KIND && nad.String() == "bridge" {
						li.bridge = true
					}
				}
				return nil
			})
		}
	})
	return li, err
}

// linkName is the name of the interface with index idx.
func (p *portFinder) linkName(idx uint32) (string, error) {
	var name string
	err := p.getLink(idx, nil, func(_ uint32, ad *netlink.AttributeDecoder) {
		if ad.Type() == unix.IFLA_IFNAME {
			name = ad.String()
		}
	})
	if err == nil && name == "" {
		err = fmt.Errorf("interface %d has no name", idx)
	}
	return name, err
}

// getLink sends RTM_GETLINK for index idx (or the name in ae) and calls fn
// for every attribute of the answer.
func (p *portFinder) getLink(idx uint32, ae *netlink.AttributeEncoder, fn func(index uint32, ad *netlink.AttributeDecoder)) error {
	ifi := make([]byte, unix.SizeofIfInfomsg) // family, pad, type, index, flags, change
	binary.NativeEndian.PutUint32(ifi[4:8], idx)
	data := ifi
	if ae != nil {
		attrs, err := ae.Encode()
		if err != nil {
			return err
		}
		data = append(data, attrs...)
	}
	msgs, err := p.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: unix.RTM_GETLINK, Flags: netlink.Request},
		Data:   data,
	})
	if err != nil {
		return err
	}
	for _, m := range msgs {
		if m.Header.Type != unix.RTM_NEWLINK || len(m.Data) < unix.SizeofIfInfomsg {
			continue
		}
		index := binary.NativeEndian.Uint32(m.Data[4:8])
		ad, err := netlink.NewAttributeDecoder(m.Data[unix.SizeofIfInfomsg:])
		if err != nil {
			return err
		}
		for ad.Next() {
			fn(index, ad)
		}
		return ad.Err()
	}
	return errors.New("no link in the answer")
}
