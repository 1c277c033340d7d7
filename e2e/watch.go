// Package e2e proves mudd end to end: in network namespace labs built by
// internal/lab/gwlab, the mudd and mudctl binaries, dnsmasq, udhcpc and dhclient,
// an HTTPS MUD server signed by a lab CA and internet hosts are real; each
// test is one behaviour of a MUD gateway and asserts what an admin relies
// on — connections that pass or are refused, `mudctl devices -o json`, the
// kernel's ruleset seen with nft. They need root (`CI=true go test -race
// ./e2e/` fails rather than skips without it) and build the binaries
// themselves; the arrival benchmark runs with
// `go test -run '^$' -bench Arrival -benchtime 100x ./e2e/`.
//
// This file holds the outside observers the tests and the arrival benchmark
// share: a capture of the DHCPACKs the gateway sends and a netlink monitor
// of nftables changes, both in the gateway namespace and timestamped with
// one clock (the wall clock: the kernel stamps each captured frame, this
// process each notification it reads), so that the time from a device's
// ACK to its policy being active in the kernel is measured from outside
// mudd.
package e2e

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// ack is a DHCPACK the gateway sent (or a DHCPDISCOVER it received), when
// the kernel passed it to the capture (its receive timestamp).
type ack struct {
	mac net.HardwareAddr
	ip  netip.Addr
	at  time.Time
}

// elemAdd is one set element added to an nftables table, when this process
// read the kernel's notification (sent at commit).
type elemAdd struct {
	table string
	set   string
	key   []byte // the key, and for intervals the key end after it
	at    time.Time
}

// Arrivals records DHCPACKs leaving the gateway's LAN bridge and set
// elements added to table `mud` (inet or bridge) in the gateway namespace.
// A device's policy counts as active once an element whose key holds both
// its MAC and its leased IPv4 address is in the kernel: its binding (the
// source guard and dispatch to its policy) is what the ACK makes mudd add;
// the policy itself may already be there from the DHCPDISCOVER, which
// announces the MUD URL.
type Arrivals struct {
	mu        sync.Mutex
	discovers []ack // ip unset
	acks      []ack
	elems     []elemAdd
	errs      []error
	wake      chan struct{} // closed and replaced whenever something is recorded

	pc     *capture.Conn
	nl     *netlink.Conn
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// WatchArrivals starts both observers in namespace ns (the gateway's) on
// the LAN bridge iface. Close stops them.
func WatchArrivals(ns, iface string) (*Arrivals, error) {
	a := &Arrivals{wake: make(chan struct{})}
	filter, err := dhcpsnoop.DHCPFilter()
	if err != nil {
		return nil, fmt.Errorf("assembling the DHCP filter: %w", err)
	}
	a.pc, err = capture.Open(iface, capture.Config{NetNS: ns, Filter: capture.Filter{Program: filter}, Timestamps: true})
	if err != nil {
		return nil, err
	}
	// Netlink sockets belong to the namespace they are created in.
	err = netlab.Do(ns, func() (err error) {
		a.nl, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	})
	if err != nil {
		a.pc.Close()
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	// A full reconcile notifies thousands of elements at once.
	_ = a.nl.SetReadBuffer(8 << 20)
	if err := a.nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		a.pc.Close()
		a.nl.Close()
		return nil, fmt.Errorf("joining NFNLGRP_NFTABLES: %w", err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	a.cancel = cancel
	a.wg.Add(2)
	go a.readACKs(ctx)
	go a.readNFT(ctx)
	return a, nil
}

// Close stops the observers and waits for them.
func (a *Arrivals) Close() {
	a.cancel()
	// Unblock the reads; their errors after cancel are expected.
	_ = a.pc.SetReadDeadline(time.Unix(1, 0))
	a.nl.Close()
	a.wg.Wait()
	a.pc.Close()
}

func (a *Arrivals) readACKs(ctx context.Context) {
	defer a.wg.Done()
	buf := make([]byte, 2048+4)
	for {
		f, info, err := a.pc.ReadFrame(buf)
		if err != nil {
			if ctx.Err() == nil {
				a.fail(fmt.Errorf("capturing DHCP: %w", err))
			}
			return
		}
		at := info.Time
		if at.IsZero() {
			at = time.Now()
		}
		m, err := dhcpsnoop.ParseFrame(f)
		if err != nil || m.Family != 4 {
			continue
		}
		switch {
		case m.Type == "DISCOVER" && m.FromClient:
			a.record(func() { a.discovers = append(a.discovers, ack{mac: m.ClientMAC, at: at}) })
		case m.Type == "ACK" && !m.FromClient && m.YourIP.IsValid():
			a.record(func() { a.acks = append(a.acks, ack{mac: m.ClientMAC, ip: m.YourIP, at: at}) })
		}
	}
}

func (a *Arrivals) readNFT(ctx context.Context) {
	defer a.wg.Done()
	newElem := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)
	for {
		msgs, err := a.nl.Receive()
		at := time.Now()
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			// ENOBUFS: notifications were lost; say so rather than measure
			// from a partial view.
			a.fail(fmt.Errorf("reading nftables notifications: %w", err))
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return
		}
		for _, m := range msgs {
			if m.Header.Type != newElem {
				continue
			}
			adds, err := parseNewSetElem(m.Data, at)
			if err != nil {
				a.fail(err)
				continue
			}
			a.record(func() { a.elems = append(a.elems, adds...) })
		}
	}
}

func (a *Arrivals) record(fn func()) {
	a.mu.Lock()
	fn()
	close(a.wake)
	a.wake = make(chan struct{})
	a.mu.Unlock()
}

func (a *Arrivals) fail(err error) { a.record(func() { a.errs = append(a.errs, err) }) }

// parseNewSetElem decodes an NFT_MSG_NEWSETELEM notification: nfgenmsg,
// then the table, the set and the list of elements.
func parseNewSetElem(data []byte, at time.Time) ([]elemAdd, error) {
	if len(data) < 4 {
		return nil, errors.New("short NEWSETELEM notification")
	}
	ad, err := netlink.NewAttributeDecoder(data[4:])
	if err != nil {
		return nil, fmt.Errorf("decoding NEWSETELEM: %w", err)
	}
	var table, set string
	var out []elemAdd
	for ad.Next() {
		switch ad.Type() {
		case unix.NFTA_SET_ELEM_LIST_TABLE:
			table = ad.String()
		case unix.NFTA_SET_ELEM_LIST_SET:
			set = ad.String()
		case unix.NFTA_SET_ELEM_LIST_ELEMENTS:
			ad.Nested(func(list *netlink.AttributeDecoder) error {
				for list.Next() {
					if list.Type() != unix.NFTA_LIST_ELEM {
						continue
					}
					var key []byte
					list.Nested(func(el *netlink.AttributeDecoder) error {
						for el.Next() {
							if t := el.Type(); t == unix.NFTA_SET_ELEM_KEY || t == nftaSetElemKeyEnd {
								el.Nested(func(d *netlink.AttributeDecoder) error {
									for d.Next() {
										if d.Type() == unix.NFTA_DATA_VALUE {
											key = append(key, d.Bytes()...)
										}
									}
									return nil
								})
							}
						}
						return nil
					})
					out = append(out, elemAdd{key: key, at: at})
				}
				return nil
			})
		}
	}
	if err := ad.Err(); err != nil {
		return nil, fmt.Errorf("decoding NEWSETELEM: %w", err)
	}
	for i := range out {
		out[i].table, out[i].set = table, set
	}
	return out, nil
}

// Latency is one device's arrival as seen from outside mudd.
type Latency struct {
	IP netip.Addr
	// Discover is when the device's first DHCPDISCOVER, which announces
	// its MUD URL, reached the gateway (mudd starts fetching then).
	Discover time.Time
	ACK      time.Time // the DHCPACK left the gateway
	Active   time.Time // an element with the MAC and the address was committed
	Duration time.Duration
}

// Wait waits until a DHCPACK for mac and then an element of table `mud`
// holding mac and the acknowledged address have been seen, and returns the
// time between them.
func (a *Arrivals) Wait(ctx context.Context, mac net.HardwareAddr) (Latency, error) {
	for {
		a.mu.Lock()
		if len(a.errs) > 0 {
			err := errors.Join(a.errs...)
			a.mu.Unlock()
			return Latency{}, err
		}
		l, ok := a.find(mac)
		wake := a.wake
		a.mu.Unlock()
		if ok {
			return l, nil
		}
		select {
		case <-ctx.Done():
			return l, fmt.Errorf("waiting for %s's ACK (%v) and active binding (%v): %w", mac, l.ACK, l.Active, context.Cause(ctx))
		case <-wake:
		}
	}
}

func (a *Arrivals) find(mac net.HardwareAddr) (Latency, bool) {
	var l Latency
	for _, k := range a.discovers {
		if bytes.Equal(k.mac, mac) {
			l.Discover = k.at
			break
		}
	}
	for _, k := range a.acks {
		if bytes.Equal(k.mac, mac) {
			l.IP, l.ACK = k.ip, k.at
			break
		}
	}
	if !l.IP.IsValid() {
		return l, false
	}
	ip := l.IP.As4()
	for _, e := range a.elems {
		if e.table == "mud" && bytes.Contains(e.key, mac) && bytes.Contains(e.key, ip[:]) {
			l.Active = e.at
			l.Duration = l.Active.Sub(l.ACK)
			return l, true
		}
	}
	return l, false
}

// macFor is the i-th MAC of the benchmark's arrivals (locally administered).
func macFor(i int) net.HardwareAddr {
	m := make(net.HardwareAddr, 6)
	m[0] = 0x02
	m[1] = 0xbe
	binary.BigEndian.PutUint32(m[2:], uint32(i))
	return m
}

// nftaSetElemKeyEnd is NFTA_SET_ELEM_KEY_END (the end of an interval in
// concatenated sets), which x/sys/unix does not name.
const nftaSetElemKeyEnd = 10
