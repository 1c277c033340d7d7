package dhcpsnoop

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/packet/capture"
)

// Capture says where the Snooper captures DHCP, which decides which DHCP
// servers it can follow.
//
// A bridge (br-lan) hands its own host only the frames addressed to it:
// broadcasts, and unicast to the gateway's MAC. When the DHCP server is
// the gateway (dnsmasq, odhcpd on br-lan), every exchange passes the
// gateway and capturing on the bridge sees it all. When the server is
// another host on the LAN (a second router, a campus DHCP server on a
// bridge port), its unicast OFFERs and ACKs, the clients' unicast renewals
// (RFC 2131 §4.4.5: RENEWING is unicast to the server) and their releases
// go from one bridge port to another and never reach the bridge's host:
// only the ports see them.
type Capture string

const (
	// CaptureBridge captures on the configured interfaces only: enough
	// when the gateway runs the DHCP server (or relays for it).
	CaptureBridge Capture = "bridge"
	// CapturePorts captures, for each configured interface that is a
	// bridge, on every one of its ports too, following ports as they are
	// added and removed: the frames each port receives, and on the bridge
	// the frames the gateway itself sends. Each frame is read once, where
	// it entered the bridge, however many ports it leaves by. The kernel's
	// filter runs on every frame a port receives, and keeps only DHCP.
	// Frames a hardware switch forwards between its own ports (DSA
	// switches with offloaded bridging) never reach the CPU: no capture
	// sees them.
	CapturePorts Capture = "ports"
	// CapturePromiscuous captures on the configured interfaces in
	// promiscuous mode: a bridge in promiscuous mode hands its host a copy
	// of every frame it forwards, which the host's stack then drops. It
	// sees what CapturePorts sees, at the price of that copy of all
	// forwarded traffic, and it also works on an interface that is not a
	// bridge (a port mirror, a hub).
	CapturePromiscuous Capture = "promiscuous"
)

// source is one socket's interface and what its frames count as.
type source struct {
	name  string            // the interface captured on
	iface string            // the configured interface events name
	dir   capture.Direction // the frames kept
}

// sources are the sockets Run opens at start, and the bridges whose ports
// followPorts captures on (CapturePorts).
func (s *Snooper) sources() (srcs []source, bridges []string, err error) {
	if s.cfg.Capture != CapturePorts {
		for _, name := range s.cfg.Interfaces {
			srcs = append(srcs, source{name: name, iface: name})
		}
		return srcs, nil, nil
	}
	err = netns.Do(s.cfg.NetNS, func() error {
		for _, name := range s.cfg.Interfaces {
			l, err := netlink.LinkByName(name)
			if err != nil {
				return fmt.Errorf("dhcpsnoop: interface %s: %w", name, err)
			}
			if l.Type() != "bridge" {
				srcs = append(srcs, source{name: name, iface: name})
				continue
			}
			// On the bridge, only what the gateway sends: what the
			// ports receive is read on the ports, once.
			srcs = append(srcs, source{name: name, iface: name, dir: capture.Outgoing})
			bridges = append(bridges, name)
		}
		return nil
	})
	return srcs, bridges, err
}

// portCapture is one running capture on a bridge port.
type portCapture struct {
	cancel context.CancelFunc
	done   chan struct{}
}

// followPorts captures on the ports of bridge (frames they receive) until
// ctx ends, listing them every PortScanInterval: a port that appears (a
// Wi-Fi interface hostapd creates, a cable plugged into a new VLAN port)
// is captured on from the next listing, one that leaves is closed. It owns
// every port socket and waits for their goroutines before returning.
func (s *Snooper) followPorts(ctx context.Context, bridge string) {
	var nl *netlink.Handle
	err := netns.Do(s.cfg.NetNS, func() (err error) {
		nl, err = netlink.NewHandle(unix.NETLINK_ROUTE)
		return err
	})
	if err != nil {
		s.log.Error("cannot list the bridge's ports: only the bridge is captured", "bridge", bridge, "err", err)
		return
	}
	defer nl.Close()
	ports := map[string]*portCapture{}
	defer func() {
		for _, p := range ports {
			p.cancel()
			<-p.done
		}
		s.c.ports.Add(-uint64(len(ports)))
	}()
	failed := false
	scan := func() {
		names, err := bridgePorts(nl, bridge)
		if err != nil {
			if !failed {
				s.log.Warn("listing the bridge's ports failed; retrying", "bridge", bridge, "err", err)
			}
			failed = true
			return
		}
		failed = false
		for name, p := range ports {
			select {
			case <-p.done: // the port went away, or its socket broke
			default:
				if slices.Contains(names, name) {
					continue
				}
				p.cancel()
				<-p.done
				s.log.Info("stopped capturing on a port that left the bridge", "bridge", bridge, "port", name)
			}
			delete(ports, name)
			s.c.ports.Add(^uint64(0))
		}
		for _, name := range names {
			if _, ok := ports[name]; ok {
				continue
			}
			src := source{name: name, iface: bridge, dir: capture.Incoming}
			conn, err := s.open(src)
			if err != nil {
				s.log.Debug("cannot capture on the port yet; retrying", "bridge", bridge, "port", name, "err", err)
				continue
			}
			pctx, cancel := context.WithCancel(ctx)
			p := &portCapture{cancel: cancel, done: make(chan struct{})}
			ports[name] = p
			s.c.ports.Add(1)
			go func() {
				defer close(p.done)
				defer conn.Close()
				stop := context.AfterFunc(pctx, func() { _ = conn.SetReadDeadline(time.Unix(1, 0)) })
				defer stop()
				buf := make([]byte, captureLen+4)
				if err := s.readLoop(pctx, bridge, conn, buf); err != nil && pctx.Err() == nil {
					s.log.Debug("capture on a port ended", "bridge", bridge, "port", name, "err", err)
				}
			}()
			s.log.Debug("capturing on a bridge port", "bridge", bridge, "port", name)
		}
	}
	scan()
	t := time.NewTicker(s.cfg.PortScanInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			scan()
		}
	}
}

// bridgePorts lists the names of the interfaces whose master is bridge.
func bridgePorts(nl *netlink.Handle, bridge string) ([]string, error) {
	br, err := nl.LinkByName(bridge)
	if err != nil {
		return nil, err
	}
	links, err := nl.LinkList()
	if err != nil {
		return nil, err
	}
	idx := br.Attrs().Index
	var names []string
	for _, l := range links {
		if a := l.Attrs(); a.MasterIndex == idx && a.Index != idx {
			names = append(names, a.Name)
		}
	}
	return names, nil
}
