// Package neighbor learns which addresses each LAN device holds, as they
// appear, so that the enforcer's source guard can let a device send from
// its SLAAC, privacy and static addresses, and from nothing else.
//
// Two sources feed one table:
//
//   - Frames captured on the LAN bridge (internal/packet/capture), kept in
//     the kernel by a BPF filter (Filter): ARP requests and replies,
//     gratuitous ARP and ARP probes (RFC 826, RFC 5227), and IPv6 Router
//     Solicitations, Neighbor Solicitations and Advertisements (RFC 4861),
//     Duplicate Address Detection among them (RFC 4862 §5.4: a
//     solicitation from :: for a tentative address). A device that
//     configures an address with DAD solicits for it before it uses it, so
//     the address is learned before the first packet from it reaches the
//     gateway. ParseFrame reads one frame; it is pure and bounds-checked.
//   - The kernel's neighbour table (RTM_NEWNEIGH on RTNLGRP_NEIGH, with a
//     dump first): entries of the LAN interfaces in a valid state are
//     sightings, dated by when the kernel last confirmed them; a failed
//     entry ends its address; the bridge's forwarding database names the
//     port behind each MAC.
//
// The rules of the table (Learner):
//
//   - Only addresses inside the LAN prefixes are learned (Config.Prefixes,
//     SetPrefixes), and IPv6 link-local addresses (flagged). Never the
//     gateway's own addresses, a subnet's network, broadcast or anycast
//     addresses.
//   - An address another MAC holds (seen within its TTL, or pinned) is
//     refused and reported as a conflict naming both MACs: never moved
//     silently. It may move once its holder's binding has expired or the
//     caller released it (Release). One exception, from RFC 4862 §5.4.3:
//     a MAC that defends an address another has only probed (DAD) within
//     Config.DADWindow keeps it, and the prober loses it (a conflict and
//     an expired event).
//   - Each MAC holds at most Config.MaxV4PerMAC and MaxV6PerMAC addresses;
//     the least recently seen makes room. Addresses not seen for TTL4 or
//     TTL6 expire.
//   - Pinned addresses (Pin: an administrator's static binding) never age
//     and never move. BindOnFirstUse pins the first address a device the
//     caller knows is bound without addresses is seen using.
//   - Restore replays what the caller remembered from before a restart (an
//     address and when it was last seen): it follows the rules above and
//     ages from that time, but spends no rate limit, as it is the
//     gateway's own record.
//   - Every frame is hostile: claims are rate-limited per MAC, new MACs and
//     globally; the table holds at most Config.MaxMACs MACs and MaxAddrs
//     addresses, evicting the least recently seen MAC the caller does not
//     protect (Keep). Everything dropped is counted (Stats).
//
// Changes are events (learned, refreshed, expired, conflict) on one
// channel, in order; Addrs and Holder answer queries. Nothing read from
// the network is used as a format string; logs use slog attributes.
package neighbor
