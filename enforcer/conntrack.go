package enforcer

import (
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
// one walk and each entry is looked up once in the set of addresses.
func (e *Enforcer) deleteConntrack(addrs []netip.Addr) error {
	want := make(map[netip.Addr]bool, len(addrs))
	for _, a := range addrs {
		want[a.Unmap()] = true
	}
	if len(want) == 0 {
		return nil
	}
	return netns.DoFd(e.nsFd, func() error {
		dump := nl.NewNetlinkRequest(unix.NFNL_SUBSYS_CTNETLINK<<8|nl.IPCTNL_MSG_CT_GET, unix.NLM_F_DUMP)
		dump.AddData(&nl.Nfgenmsg{NfgenFamily: unix.AF_UNSPEC, Version: nl.NFNETLINK_V0})
		var victims [][]byte
		err := dump.ExecuteIter(unix.NETLINK_NETFILTER, 0, func(msg []byte) bool {
			if conntrackOf(msg, want) {
				victims = append(victims, slices.Clone(msg))
			}
			return true
		})
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

// conntrackOf tells whether a dumped conntrack entry (nfgenmsg, then
// attributes) has one of the addresses as its original source or
// destination or its reply source.
func conntrackOf(msg []byte, want map[netip.Addr]bool) bool {
	if len(msg) < 4 {
		return false
	}
	attrs, err := nl.ParseRouteAttr(msg[4:])
	if err != nil {
		return false
	}
	for _, a := range attrs {
		typ := a.Attr.Type & nl.NLA_TYPE_MASK
		if typ != nl.CTA_TUPLE_ORIG && typ != nl.CTA_TUPLE_REPLY {
			continue
		}
		src, dst := tupleAddrs(a.Value)
		if want[src] || (typ == nl.CTA_TUPLE_ORIG && want[dst]) {
			return true
		}
	}
	return false
}

// tupleAddrs reads the addresses of a CTA_TUPLE_ORIG or _REPLY.
func tupleAddrs(b []byte) (src, dst netip.Addr) {
	attrs, err := nl.ParseRouteAttr(b)
	if err != nil {
		return
	}
	for _, a := range attrs {
		if a.Attr.Type&nl.NLA_TYPE_MASK != nl.CTA_TUPLE_IP {
			continue
		}
		ips, err := nl.ParseRouteAttr(a.Value)
		if err != nil {
			return
		}
		for _, ip := range ips {
			addr, ok := netip.AddrFromSlice(ip.Value)
			if !ok {
				continue
			}
			switch ip.Attr.Type & nl.NLA_TYPE_MASK {
			case nl.CTA_IP_V4_SRC, nl.CTA_IP_V6_SRC:
				src = addr.Unmap()
			case nl.CTA_IP_V4_DST, nl.CTA_IP_V6_DST:
				dst = addr.Unmap()
			}
		}
	}
	return
}
