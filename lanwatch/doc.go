// Package lanwatch follows a gateway's LAN interfaces inside a network
// namespace: the prefixes on them, and whether their bridge ports let
// lateral traffic (device to device) through the bridge, where mudd's
// `table bridge mud` filters it, or past it.
//
// # Prefixes
//
// The LAN prefixes are the default of MUD's local-networks abstraction
// (RFC 8520 §4.5) and the enforcer's BridgeLAN. They move: IPv6 prefix
// delegation hands the gateway a new prefix, an administrator adds an
// address to br-lan. A Watcher subscribes to the kernel's link and address
// notifications (RTNLGRP_LINK, RTNLGRP_IPV4_IFADDR, RTNLGRP_IPV6_IFADDR)
// and, 200 ms after the first of a burst, reads the addresses again:
// Prefixes is the current set (global and unique local IPv6, IPv4; not
// link-local; masked, sorted) and Changes delivers each change with the
// sets before and after. If notifications are lost because the receive
// buffer overflowed (ENOBUFS), the Watcher opens a new subscription and
// reads everything anew, so a change made during the overflow is reported
// all the same (Overruns counts these).
//
// # Where lateral rules cannot reach
//
// mudd sees lateral traffic only when it crosses the software bridge.
// Traffic that is forwarded before it gets there is not filtered, and
// nothing else says so. At start, on every link notification (a port added
// or removed, a bridge port flag changed) and every Config.Recheck, the
// Watcher inspects each port of each LAN bridge and reports (Report,
// Reports):
//
//   - Wi-Fi access points (nl80211 interface type AP or P2P GO): without
//     client isolation the access point forwards between its own stations,
//     and that traffic never reaches the bridge: an error. Isolation is read
//     from mac80211's debugfs flag, else from hostapd's configuration file
//     (hostapd's control interface does not report it); when neither says,
//     it is "unknown", a warning. With isolation and hairpin on the port,
//     the stations' traffic goes up to the bridge and back out through
//     mudd's rules; with isolation and hairpin off it is dropped, so MUD
//     rules that allow it cannot take effect. Wi-Fi clients of another
//     access point, mesh points, ad-hoc and WDS links forward among their
//     peers themselves: warnings.
//   - Hardware switch ports (DSA, or any port with a switch id,
//     IFLA_PHYS_SWITCH_ID): two ports of one switch in the bridge forward
//     between themselves in the switch, unless both are isolated: an error.
//     The kernel does not say per port whether forwarding is offloaded, so
//     any two ports of one switch count.
//   - Bridge port flags: isolated ports (the bridge drops traffic between
//     two isolated ports before any netfilter hook), hairpin, proxy ARP,
//     learning or unicast flooding off.
//   - What can forward frames before the bridge: an XDP program on the
//     port, tc ingress filters (tc's ingress or clsact qdisc; OpenWrt's
//     bridger offload is one). Programs attached through tcx (bpf links,
//     Linux 6.6) are not seen.
//   - More than one device behind one port (the bridge learnt several
//     source addresses there): a switch or access point beyond the gateway
//     forwards between them. This follows the bridge's forwarding entries,
//     so it appears and goes away as they are learnt and age out.
//   - A LAN interface that is not a bridge: its devices reach each other
//     through what it is plugged into, never through the gateway.
//
// Decide holds all these judgements and depends only on the facts it is
// given (PortFacts), so every case is tested without the hardware.
//
// # Routing all lateral traffic through the bridge
//
// Wi-Fi: client isolation on the access point and hairpin on its bridge
// port. hostapd: ap_isolate=1 in the BSS; then `bridge link set dev wlan0
// hairpin on`. Proxy ARP (hostapd proxy_arp=1, which sets the port's
// proxy_arp_wifi) answers ARP and neighbour solicitations for the stations
// but does not forward their traffic: hairpin is still needed. OpenWrt:
// option isolate '1' in the wifi-iface section; note that OpenWrt's netifd
// turns hairpin off on the port of an isolated access point each time it
// adds it to the bridge (hairpin there follows multicast_to_unicast and
// proxy_arp, and isolation forces it off), so stations of that access point
// cannot reach each other at all unless hairpin is set again afterwards —
// which the report shows.
//
// Hardware switches: Linux has no setting that keeps a DSA or switchdev
// port in a bridge but makes the switch hand every frame to the CPU. Two
// settings keep lateral traffic from passing unfiltered:
//
//   - Isolate the switch's ports from each other (`bridge link set dev lan1
//     isolated on` on each; OpenWrt: a config device section with option
//     name 'lan1' and option isolate '1'). DSA drivers that cannot isolate
//     in hardware refuse the flag. Isolated ports reach the gateway and the
//     non-isolated ports, not each other: that traffic is dropped, not
//     filtered by MUD rules, so devices whose MUD files allow them to talk
//     to each other (same-manufacturer, model, local-networks) cannot.
//   - Put MUD devices' ports in VLANs of their own (OpenWrt: bridge-vlan
//     sections of br-lan, one per VLAN, each with its own interface and
//     subnet, all of them in mudd.yaml's interfaces): the switch forwards
//     only within a VLAN, so traffic between VLANs is routed by the gateway,
//     where `table inet mud` filters it.
//
// Devices that must talk to each other under MUD rules in one subnet need
// ports on different switches, or the gateway's own network cards.
//
// A switch or access point beyond a gateway port forwards between the
// devices behind it without the gateway: give MUD devices ports of their
// own, or isolate them on that switch or access point.
//
// Use:
//
//	w, err := lanwatch.New(lanwatch.Config{NetNSFd: fd, Interfaces: cfg.Interfaces})
//	prefixes, report := w.Prefixes(), w.Report() // the state at start
//	go w.Run(ctx)
//	for {
//		select {
//		case c := <-w.Changes(): // c.Old, c.New; c.Added(), c.Removed()
//		case r := <-w.Reports(): // r.Summary(): one line per problem
//		}
//	}
package lanwatch
