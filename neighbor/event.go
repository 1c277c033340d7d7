package neighbor

import (
	"net"
	"net/netip"
	"time"
)

// Kind is what happened to a binding of an address to a MAC.
type Kind string

// Event kinds.
const (
	// KindLearned: the MAC holds an address it did not hold before.
	KindLearned Kind = "learned"
	// KindRefreshed: an address the MAC holds was seen again: at most once
	// per Config.RefreshEvery, and whenever a tentative address is seen in
	// use.
	KindRefreshed Kind = "refreshed"
	// KindExpired: the MAC no longer holds the address (Reason says why:
	// not seen for the TTL, replaced under the per-device bound, released,
	// lost duplicate address detection, evicted, outside the prefixes).
	KindExpired Kind = "expired"
	// KindConflict: MAC claimed an address Holder holds, and was refused;
	// or MAC's tentative address was defended by Holder (duplicate address
	// detection failed) and went to Holder. An address never moves between
	// MACs without one.
	KindConflict Kind = "conflict"
)

// Source is what an address was seen in.
type Source string

// Sources.
const (
	// SourceNetlink: the kernel's neighbour table (RTM_NEWNEIGH).
	SourceNetlink Source = "netlink"
	// SourceARP: an ARP request or reply from the address.
	SourceARP Source = "arp"
	// SourceND: a Router Solicitation, Neighbor Solicitation or Neighbor
	// Advertisement from (or advertising) the address.
	SourceND Source = "nd"
	// SourceDAD: Duplicate Address Detection (a Neighbor Solicitation from
	// the unspecified address, RFC 4862 §5.4.2) or an ARP probe (RFC 5227
	// §2.1.1): the address is about to be used.
	SourceDAD Source = "dad"
	// SourceAdmin: an address the caller pinned (Learner.Pin).
	SourceAdmin Source = "admin"
	// SourceRestored: an address the caller remembered from before a
	// restart (Learner.Restore), dated by when it was last seen then.
	SourceRestored Source = "restored"
)

// Event is one change of who holds which address.
type Event struct {
	Kind Kind
	// Time is when the address was seen (the kernel's receive time of the
	// frame, or what its neighbour table says), or when the change was
	// decided (expiry, release).
	Time   time.Time
	MAC    net.HardwareAddr
	Addr   netip.Addr
	Source Source
	// Interface is the interface the address was seen on; Port the bridge
	// port behind which MAC is (from the bridge's forwarding database), ""
	// when not known.
	Interface string
	Port      string
	// LinkLocal: an IPv6 link-local address (fe80::/10), learned whatever
	// the prefixes, never routed.
	LinkLocal bool
	// Tentative: only claimed by duplicate address detection so far.
	Tentative bool
	// Pinned: a static binding (Pin, or BindOnFirstUse).
	Pinned bool
	// Holder is, in a conflict, the MAC that keeps the address.
	Holder net.HardwareAddr
	// Reason explains expiries and conflicts in words.
	Reason string
}

// Binding is one address a MAC holds.
type Binding struct {
	MAC  net.HardwareAddr
	Addr netip.Addr
	// Source is what saw it last.
	Source Source
	// FirstSeen and LastSeen are when it was first and last seen (zero for
	// a pinned address not seen yet).
	FirstSeen, LastSeen time.Time
	Interface, Port     string
	LinkLocal           bool
	Tentative           bool
	Pinned              bool
}

// Stats are the learner's counters. Everything dropped is counted.
type Stats struct {
	Frames        uint64 // frames read from the packet sockets
	Malformed     uint64 // frames refused by the parser (ErrMalformed)
	NotNeighbor   uint64 // frames that were neither ARP nor RS/NS/NA (~0 behind the BPF filter)
	QueueDrops    uint64 // frames and kernel updates dropped because the queue to the learner was full
	KernelUpdates uint64 // neighbour table updates read
	KernelResyncs uint64 // neighbour subscriptions restarted (an overrun or error), each with a full dump
	Claims        uint64 // addresses claimed (by frames and the kernel)
	OutsideLAN    uint64 // claims of addresses outside the LAN prefixes (not link-local)
	RateLimited   uint64 // claims dropped by the per-MAC, new-MAC or global rate limit (sightings of what a MAC holds are not limited)
	Conflicts     uint64 // claims refused because another MAC holds the address (all, also those not reported again)
	Replaced      uint64 // addresses dropped by the per-device bound (the least recently seen, which may be the one just claimed)
	Evicted       uint64 // MACs dropped (with their addresses) to make room in a full table
	Refused       uint64 // claims refused because the table was full of MACs that may not be evicted
	Expired       uint64 // addresses that aged out
	Events        uint64 // events emitted
	MACs          uint64 // MACs tracked now
	Addrs         uint64 // addresses tracked now (pinned ones included)
}
