package plan

import (
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/openmud/mud/policy"
)

// Mode is how a device is treated.
type Mode uint8

const (
	// Enforce applies the device's policy (and its overrides, if any).
	Enforce Mode = iota
	// Quarantine allows only DHCP, and DNS to the gateway itself (an
	// admin or a violation put the device aside): not DNS to other hosts,
	// not NTP, no other service of the gateway, nothing lateral.
	Quarantine
	// Block allows what Quarantine allows: the device waits for an
	// administrator's approval and the configured on_failure is "block".
	Block
)

func (m Mode) String() string {
	switch m {
	case Enforce:
		return "enforce"
	case Quarantine:
		return "quarantine"
	case Block:
		return "block"
	}
	return fmt.Sprintf("mode(%d)", uint8(m))
}

// Device is one MUD device as the enforcer sees it: a MAC, the addresses
// bound to it (the IP source guard; also the keys of the to-device maps),
// the policy it gets and how.
type Device struct {
	MAC      net.HardwareAddr
	IPv4s    []netip.Addr
	IPv6s    []netip.Addr // global/ULA addresses; link-local ones always pass the guard
	PolicyID string       // required in Enforce mode
	Mode     Mode
	// Overrides are the administrator's per-device rules, evaluated before
	// the policy (first match wins; accept still goes through the policy
	// of the peer device for lateral traffic).
	Overrides Overrides
}

// Overrides are per-device rules by direction.
type Overrides struct {
	FromDevice []policy.Rule
	ToDevice   []policy.Rule
}

func (o Overrides) empty() bool { return len(o.FromDevice) == 0 && len(o.ToDevice) == 0 }

// Element is one address range of a peer, with an optional lifetime (the
// DNS TTL). Zero Timeout means permanent.
type Element struct {
	Prefix  netip.Prefix
	Timeout time.Duration
}

// Desired is the complete state the enforcer should install.
type Desired struct {
	Policies []policy.Policy
	Devices  []Device
	Peers    map[string][]Element // by policy.Peer.Key()
}

// Update is a set of changes applied in one transaction, e.g. a new device
// together with its new policy and the addresses of its peers.
type Update struct {
	SetPolicies    []policy.Policy
	RemovePolicies []string
	UpsertDevices  []Device
	RemoveDevices  []net.HardwareAddr
	// SetPeers replaces the addresses of peers (by policy.Peer.Key()); an
	// empty list removes them.
	SetPeers map[string][]Element
	// ChangePeers adds and removes single addresses of peers that hold
	// addresses (DNS names, manufacturer and model classes) without
	// restating the others: what a class of thousands gaining a member
	// costs is then that member, not the class. A key may not be in both
	// SetPeers and ChangePeers.
	ChangePeers map[string]PeerChange
}

// PeerChange is a change to some of a peer's addresses. Add sets an
// element (its timeout replaces the one the address had); Remove drops
// an address the peer holds (one it does not hold is ignored).
type PeerChange struct {
	Add    []Element
	Remove []netip.Prefix
}

// model is the planner's input state: what the kernel holds. It is
// changed (in place) only when a plan is committed.
type model struct {
	policies map[string]*policy.Policy
	devices  map[string]*Device // by MAC string
	peers    map[string]map[netip.Prefix]time.Time
}

func newModel() *model {
	return &model{
		policies: map[string]*policy.Policy{},
		devices:  map[string]*Device{},
		peers:    map[string]map[netip.Prefix]time.Time{},
	}
}

// RuleCounter is the traffic one rule of a policy matched, summed over the
// nftables rules it became (IPv4 and IPv6, routed and bridged).
type RuleCounter struct {
	PolicyID  string
	Direction policy.Direction
	Rule      string // policy.Rule.Name, or "default-deny"
	Packets   uint64
	Bytes     uint64
}
