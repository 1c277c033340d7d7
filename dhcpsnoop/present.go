package dhcpsnoop

import (
	"net"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/netns"
)

// Devices that joined while the snooper was not running did their DHCP
// unseen. When Run starts, the kernel already knows many of them: a
// bridge's forwarding database holds the MAC of every host whose frames
// it forwarded lately, and the neighbour table the hosts the gateway
// talked to. Each such MAC the tracker has no lease for becomes a
// KindPresent event, so that the manager lists the device at once; what
// it announces, and its lease, come with its next DHCP exchange.

// maxPresentNeighbours bounds the present events of one start.
const maxPresentNeighbours = 1 << 16

// present lists the devices on the configured interfaces that the tracker
// holds no lease for, in MAC order; nil when the kernel cannot be asked
// (logged: it only delays what the next DHCP exchange says).
func (s *Snooper) present(now time.Time) []Event {
	type found struct {
		iface, reason string
	}
	seen := map[hwKey]found{}
	limit := min(s.tracker.cfg.MaxDevices, maxPresentNeighbours)
	add := func(mac net.HardwareAddr, iface, reason string) {
		k, ok := keyOf(mac)
		if !ok || mac[0]&1 != 0 || k == (hwKey{}) || len(seen) >= limit {
			return
		}
		if _, dup := seen[k]; !dup && s.tracker.bound[k] == nil {
			seen[k] = found{iface, reason}
		}
	}
	err := netns.Do(s.cfg.NetNS, func() error {
		nl, err := netlink.NewHandle(unix.NETLINK_ROUTE)
		if err != nil {
			return err
		}
		defer nl.Close()
		var fdb []netlink.Neigh
		for _, name := range s.cfg.Interfaces {
			l, err := nl.LinkByName(name)
			if err != nil {
				s.log.Warn("cannot list the devices present on an interface", "interface", name, "err", err)
				continue
			}
			idx := l.Attrs().Index
			if l.Type() == "bridge" {
				if fdb == nil {
					if fdb, err = nl.NeighList(0, unix.AF_BRIDGE); err != nil {
						s.log.Warn("cannot read the bridge forwarding database", "err", err)
					}
				}
				for _, n := range fdb {
					// Learnt entries only: the bridge's and its ports' own
					// addresses are permanent.
					if n.MasterIndex == idx && n.LinkIndex != idx && n.State&netlink.NUD_PERMANENT == 0 && n.Flags&netlink.NTF_SELF == 0 {
						add(n.HardwareAddr, name, "found in the bridge's forwarding database when mudd started")
					}
				}
			}
			neighs, err := nl.NeighList(idx, netlink.FAMILY_ALL)
			if err != nil {
				s.log.Warn("cannot read the neighbour table", "interface", name, "err", err)
				continue
			}
			for _, n := range neighs {
				if n.State&(netlink.NUD_REACHABLE|netlink.NUD_STALE|netlink.NUD_DELAY|netlink.NUD_PROBE) != 0 {
					add(n.HardwareAddr, name, "found in the neighbour table when mudd started")
				}
			}
		}
		return nil
	})
	if err != nil {
		s.log.Warn("cannot list the devices already present", "err", err)
		return nil
	}
	keys := make([]hwKey, 0, len(seen))
	for k := range seen {
		keys = append(keys, k)
	}
	slices.SortFunc(keys, func(a, b hwKey) int { return slices.Compare(a[:], b[:]) })
	evs := make([]Event, 0, len(keys))
	for _, k := range keys {
		f := seen[k]
		evs = append(evs, Event{Kind: KindPresent, Time: now, Interface: f.iface, MAC: k.mac(), Reason: f.reason})
	}
	s.c.present.Store(uint64(len(evs)))
	s.c.events.Add(uint64(len(evs)))
	return evs
}
