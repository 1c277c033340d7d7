// Package dhcpsnoop watches DHCPv4 and DHCPv6 passively on a gateway's LAN
// interfaces and turns what it sees into lease lifecycle events for the MUD
// manager: a device arrived (with the MUD URL it announced in option 161 or
// 112, RFC 8520 §10), renewed its lease, moved to another address, released
// or declined it, or let it expire.
//
// Snooping, rather than asking the DHCP server, works with whatever server the
// gateway runs (dnsmasq, odhcpd, ISC, Kea) and with relayed traffic, and it sees
// both halves of every exchange: the client's request carries the MUD URL,
// hostname and identifiers; the server's ACK or Reply carries the address and
// the lease time. A lease is only believed when a server confirms it, so a
// flood of spoofed requests cannot create bindings.
//
// The package has three layers, each usable alone:
//
//   - [ParseFrame] decodes one Ethernet frame into a [Message] (pure, no state;
//     the Ethernet, IP and UDP headers with internal/packet);
//     [ParseMUDURL] applies the RFC 8520 rules to a raw option value and
//     returns the URL in one normal form (a fragment is refused).
//   - [Tracker] is the lease state machine: it takes frames or messages with
//     an explicit time and returns [Event]s. It owns all per-device memory and
//     its bounds; tests, fuzzing and benchmarks drive it without sockets.
//   - [Snooper] captures with AF_PACKET sockets (internal/packet/capture) and a
//     kernel BPF filter that only lets DHCP through — on the LAN interfaces,
//     or also on every port of a LAN bridge ([Capture]: a DHCP server
//     elsewhere on the LAN talks to its clients by unicast between ports) —
//     feeds one Tracker from a single goroutine, sweeps
//     expired leases, learns SLAAC addresses from the kernel's neighbour table,
//     names the bridge port each event's device is on (from the bridge's
//     forwarding database, so that the manager can be fair between ports),
//     and delivers events on a channel. When it starts it reports the
//     devices the kernel already knows (forwarding database, neighbour
//     table; [KindPresent]) and the leases of the DHCP server's lease file
//     ([ParseDNSMasqLeases]): devices that joined while nothing watched.
//
// Nothing read from the network is ever passed to a shell or used as a format
// string; logging uses slog attributes.
package dhcpsnoop
