package enforcer

import "github.com/openmud/mud/enforcer/plan"

// The enforcer's input and output types are the planner's (package plan);
// these aliases keep their names in this package.
type (
	// Mode is how a device is treated.
	Mode = plan.Mode
	// Device is one MUD device as the enforcer sees it: a MAC, the
	// addresses bound to it, the policy it gets and how.
	Device = plan.Device
	// Overrides are per-device rules by direction.
	Overrides = plan.Overrides
	// Element is one address range of a peer, with an optional lifetime
	// (the DNS TTL).
	Element = plan.Element
	// PeerChange adds and removes some addresses of a peer.
	PeerChange = plan.PeerChange
	// Desired is the complete state the enforcer should install.
	Desired = plan.Desired
	// Update is a set of changes applied in one transaction.
	Update = plan.Update
	// RuleCounter is the traffic one rule of a policy matched.
	RuleCounter = plan.RuleCounter
	// ReplyMode says how replies of permitted bridged flows pass, for one
	// IP version.
	ReplyMode = plan.ReplyMode
	// ReplyModes are the modes of both IP versions.
	ReplyModes = plan.ReplyModes
	// RenderOptions tune Render.
	RenderOptions = plan.RenderOptions
)

// The modes.
const (
	// Enforce applies the device's policy (and its overrides, if any).
	Enforce = plan.Enforce
	// Quarantine allows only DHCP, and DNS to the gateway itself.
	Quarantine = plan.Quarantine
	// Block allows what Quarantine allows: the device waits for an
	// administrator's approval.
	Block = plan.Block
)

// The reply modes.
const (
	ReplyConntrack     = plan.ReplyConntrack
	ReplyInetConntrack = plan.ReplyInetConntrack
	ReplyReflexive     = plan.ReplyReflexive
)

// DefaultBridgeFlows bounds the flow sets when Config.BridgeFlows is 0.
const DefaultBridgeFlows = plan.DefaultBridgeFlows
