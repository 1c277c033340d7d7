package neighbor

import (
	"context"
	"errors"
	"maps"
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/vishvananda/netlink"
	"github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// The kernel's side. The learner subscribes to RTNLGRP_NEIGH in the
// interfaces' namespace, with a dump of what is there first, and reads:
//
//   - IPv4 and IPv6 neighbour entries of the LAN interfaces: an entry in
//     a valid state is a sighting of its address at its MAC, when the
//     kernel last confirmed it (NDA_CACHEINFO); NUD_FAILED is the kernel's
//     word that the address no longer answers;
//   - the forwarding database entries of the LAN bridges (AF_BRIDGE): the
//     port behind each MAC, which events name.
//
// An overrun of the subscription's socket (ENOBUFS) ends it; a new one
// starts with a full dump, so nothing is lost for long. The gateway's own
// addresses on the LAN interfaces are read every ownEvery: no device may
// hold them.

const (
	ownEvery      = 10 * time.Second
	maxLinkNames  = 1024
	kernelRetry   = time.Second
	userHZ        = 100 // clock ticks a second of NDA_CACHEINFO (USER_HZ)
	validNeighbor = netlink.NUD_REACHABLE | netlink.NUD_STALE | netlink.NUD_DELAY | netlink.NUD_PROBE | netlink.NUD_PERMANENT
)

type kernelKind uint8

const (
	kernelSighting kernelKind = iota + 1
	kernelFailed
	kernelPort
	kernelOwn
)

// kernelItem is one thing the kernel said, on its way to the learner.
type kernelItem struct {
	kind  kernelKind
	claim claim // kernelSighting, kernelFailed (mac may be zero)
	port  string
	own   map[netip.Addr]macKey
}

// apply applies a kernel item to the table.
func (l *Learner) apply(k kernelItem) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.cfg.Now()
	switch k.kind {
	case kernelSighting:
		l.t.observe(k.claim, now)
	case kernelFailed:
		l.t.failed(k.claim.addr, k.claim.mac, now)
	case kernelPort:
		l.t.setPort(k.claim.mac, k.port)
	case kernelOwn:
		l.t.setOwn(k.own, now)
	}
}

// follow reads the kernel until ctx is done.
func (l *Learner) follow(ctx context.Context) {
	if l.cfg.NoNetlink {
		return
	}
	ns := netns.None()
	if l.cfg.NetNS != "" {
		var err error
		if ns, err = netns.GetFromName(l.cfg.NetNS); err != nil {
			l.log.Warn("namespace unavailable; the kernel's neighbour table will not be followed", "netns", l.cfg.NetNS, "err", err)
			return
		}
		defer ns.Close()
	}
	h, err := netlink.NewHandleAt(ns)
	if err != nil {
		l.log.Warn("rtnetlink unavailable; the kernel's neighbour table will not be followed", "err", err)
		return
	}
	defer h.Close()
	k := &kernelReader{l: l, h: h, names: map[int]string{}}
	own := time.NewTicker(ownEvery)
	defer own.Stop()
	k.readOwn(ctx)

	var (
		updates <-chan netlink.NeighUpdate
		stop    func()
		retry   <-chan time.Time
	)
	defer func() {
		if stop != nil {
			stop()
		}
	}()
	retry = time.After(0)
	for {
		select {
		case <-ctx.Done():
			return
		case <-own.C:
			k.readOwn(ctx)
		case <-retry:
			retry = nil
			var err error
			if updates, stop, err = subscribe(ns, l); err != nil {
				l.log.Warn("subscribing to neighbour updates failed", "err", err, "retry_in", kernelRetry)
				retry = time.After(kernelRetry)
			}
		case u, ok := <-updates:
			if !ok {
				l.kernelResyncs.Add(1)
				stop()
				updates, stop = nil, nil
				retry = time.After(kernelRetry)
				continue
			}
			l.kernelUpdates.Add(1)
			if item, ok := k.convert(u); ok {
				select {
				case l.kernel <- item:
				case <-ctx.Done():
					return
				}
			}
		}
	}
}

// subscribe starts a neighbour subscription with a dump of the table. stop
// ends it and waits for the library's reader, which blocks on the channel
// until the channel is drained.
func subscribe(ns netns.NsHandle, l *Learner) (<-chan netlink.NeighUpdate, func(), error) {
	ch := make(chan netlink.NeighUpdate, 256)
	done := make(chan struct{})
	var stopping atomic.Bool
	err := netlink.NeighSubscribeWithOptions(ch, done, netlink.NeighSubscribeOptions{
		Namespace:    &ns,
		ListExisting: true,
		ErrorCallback: func(err error) {
			switch {
			case stopping.Load():
			case errors.Is(err, netlink.ErrDumpInterrupted):
				// The table changed during the dump: the updates that
				// follow carry the changes.
				l.log.Debug("neighbour dump interrupted", "err", err)
			default:
				l.log.Warn("neighbour subscription failed; subscribing again", "err", err)
			}
		},
		ReceiveBufferSize: 1 << 20,
	})
	if err != nil {
		close(done)
		return nil, nil, err
	}
	stop := func() {
		stopping.Store(true)
		close(done)
		for range ch {
		}
	}
	return ch, stop, nil
}

// kernelReader converts what the kernel says; it belongs to follow.
type kernelReader struct {
	l     *Learner
	h     *netlink.Handle
	names map[int]string // interface index → name
	own   map[netip.Addr]macKey
}

// name is the name of the interface with index idx, "" when unknown.
func (k *kernelReader) name(idx int) string {
	if idx <= 0 {
		return ""
	}
	if n, ok := k.names[idx]; ok {
		return n
	}
	link, err := k.h.LinkByIndex(idx)
	if err != nil {
		return ""
	}
	if len(k.names) >= maxLinkNames {
		clear(k.names)
	}
	k.names[idx] = link.Attrs().Name
	return link.Attrs().Name
}

// lan reports whether the interface with index idx is a LAN interface,
// and its name.
func (k *kernelReader) lan(idx int) (string, bool) {
	n := k.name(idx)
	for _, want := range k.l.cfg.Interfaces {
		if n == want {
			return n, true
		}
	}
	return "", false
}

// convert turns a neighbour update into an item for the learner.
func (k *kernelReader) convert(u netlink.NeighUpdate) (kernelItem, bool) {
	n := &u.Neigh
	mac, macOK := keyOf(n.HardwareAddr)
	switch n.Family {
	case unix.AF_INET, unix.AF_INET6:
		iface, ok := k.lan(n.LinkIndex)
		addr, aok := netip.AddrFromSlice(n.IP)
		if !ok || !aok || u.Type != unix.RTM_NEWNEIGH || n.Flags&netlink.NTF_PROXY != 0 {
			return kernelItem{}, false
		}
		c := claim{mac: mac, addr: addr.Unmap(), source: SourceNetlink, iface: iface}
		now := k.l.cfg.Now()
		switch {
		case n.State&netlink.NUD_FAILED != 0:
			return kernelItem{kind: kernelFailed, claim: c}, true
		case n.State&validNeighbor != 0 && macOK:
			c.at = now
			if n.State&netlink.NUD_PERMANENT == 0 {
				c.at = now.Add(-time.Duration(n.Confirmed) * (time.Second / userHZ))
			}
			return kernelItem{kind: kernelSighting, claim: c}, true
		}
	case unix.AF_BRIDGE:
		if _, ok := k.lan(n.MasterIndex); !ok || !macOK || n.LinkIndex == n.MasterIndex || n.State&netlink.NUD_PERMANENT != 0 {
			return kernelItem{}, false
		}
		item := kernelItem{kind: kernelPort, claim: claim{mac: mac}}
		if u.Type == unix.RTM_NEWNEIGH {
			if item.port = k.name(n.LinkIndex); item.port == "" {
				return kernelItem{}, false
			}
		}
		return item, true
	}
	return kernelItem{}, false
}

// readOwn reads the gateway's addresses on the LAN interfaces and hands
// them to the learner when they changed.
func (k *kernelReader) readOwn(ctx context.Context) {
	own := map[netip.Addr]macKey{}
	for _, name := range k.l.cfg.Interfaces {
		link, err := k.h.LinkByName(name)
		if err != nil {
			continue
		}
		mac, _ := keyOf(link.Attrs().HardwareAddr)
		addrs, err := k.h.AddrList(link, netlink.FAMILY_ALL)
		if err != nil {
			continue
		}
		for _, a := range addrs {
			if ip, ok := netip.AddrFromSlice(a.IP); ok {
				own[ip.Unmap()] = mac
			}
		}
	}
	if maps.Equal(own, k.own) {
		return
	}
	k.own = own
	select {
	case k.l.kernel <- kernelItem{kind: kernelOwn, own: maps.Clone(own)}:
	case <-ctx.Done():
	}
}
