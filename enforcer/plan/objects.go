package plan

import (
	"fmt"
	"time"
)

// The nftables objects a plan is made of. They are plain values: the wire
// layer (package nftwire) turns them into netlink messages, Tables applies
// them to an in-memory model of the kernel, Plan.String prints them.

// Family is the family of one of our two tables.
type Family uint8

// Our tables: table inet mud and table bridge mud.
const (
	Inet Family = iota
	Bridge
)

// Families lists both tables, in the order plans treat them.
var Families = [2]Family{Inet, Bridge}

func (f Family) String() string {
	if f == Bridge {
		return "bridge"
	}
	return "inet"
}

// TableName is the name of both our tables.
const TableName = tableName

// SetRef names a set (or map) of one of our tables.
type SetRef struct {
	Family Family
	Name   string
}

func (r SetRef) String() string { return r.Family.String() + " " + tableName + " " + r.Name }

// ChainRef names a chain of one of our tables.
type ChainRef struct {
	Family Family
	Name   string
}

func (r ChainRef) String() string { return r.Family.String() + " " + tableName + " " + r.Name }

// HookNum is the netfilter hook of a base chain.
type HookNum uint8

// The hooks our base chains use.
const (
	HookForward HookNum = iota + 1
	HookInput
)

func (h HookNum) String() string {
	switch h {
	case HookForward:
		return "forward"
	case HookInput:
		return "input"
	}
	return fmt.Sprintf("hook(%d)", uint8(h))
}

// Hook makes a chain a base chain: a filter chain on a hook, at a
// priority, with policy accept.
type Hook struct {
	Num      HookNum
	Priority int32
}

// Text is the hook as nft writes it in a chain.
func (h Hook) Text() string {
	return fmt.Sprintf("type filter hook %s priority %d; policy accept;", h.Num, h.Priority)
}

// Chain is a chain and its rules.
type Chain struct {
	ID    ChainRef
	Hook  *Hook // nil: a regular chain
	Rules []Rule
	sig   string // the hook and the rules' text: equal signatures mean equal chains
}

// KeyType is the type of a set's keys; each has a Go type implementing
// Key (keys.go).
type KeyType uint8

// The key types of our sets.
const (
	KeyMark     KeyType = iota + 1 // mark: MarkKey
	KeyMAC                         // ether_addr: MACKey
	KeyIPv4                        // ipv4_addr: AddrKey
	KeyIPv6                        // ipv6_addr: AddrKey
	KeyMACIPv4                     // ether_addr . ipv4_addr: GuardKey
	KeyMACIPv6                     // ether_addr . ipv6_addr: GuardKey
	KeyMarkIPv4                    // mark . ipv4_addr, intervals: NetKey
	KeyMarkIPv6                    // mark . ipv6_addr, intervals: NetKey
	KeyMarkMark                    // mark . mark: PeerGroupKey
	KeyACL                         // mark . mark . mark . inet_proto . inet_service: ACLKey
	KeyFlow4                       // the flow of an IPv4 packet: FlowKey
	KeyFlow6                       // the flow of an IPv6 packet: FlowKey
)

// ValueType is what a map's elements map to.
type ValueType uint8

// The value types: a set has none, a data map a mark (a dispatch or group
// id), a verdict map a verdict.
const (
	ValueNone ValueType = iota
	ValueMark
	ValueVerdict
)

// Set declares one set or map of a table.
type Set struct {
	Name     string
	Key      KeyType
	Value    ValueType
	Interval bool   // elements are ranges (NetKey: First to Last)
	Timeout  bool   // elements may expire
	Counter  bool   // every element counts its packets
	Dynamic  bool   // updated from the packet path (never by plans)
	Size     uint32 // maximum number of elements (0: unbounded)
	decl     string // nft syntax
}

// Decl is the set's declaration in nft syntax (type, flags, size).
func (s Set) Decl() string { return s.decl }

// VerdictKind is what a verdict does.
type VerdictKind uint8

// The verdicts our rules and maps use.
const (
	VerdictNone VerdictKind = iota // a rule without a verdict falls through
	VerdictAccept
	VerdictDrop
	VerdictReturn
	VerdictJump
	VerdictGoto
)

// Verdict is a rule's verdict or a verdict map element's value.
type Verdict struct {
	Kind  VerdictKind
	Chain string // jump and goto
}

func (v Verdict) String() string {
	switch v.Kind {
	case VerdictAccept:
		return "accept"
	case VerdictDrop:
		return "drop"
	case VerdictReturn:
		return "return"
	case VerdictJump:
		return "jump " + v.Chain
	case VerdictGoto:
		return "goto " + v.Chain
	}
	return fmt.Sprintf("verdict(%d)", v.Kind)
}

// Elem is an element of a set or map. Elements a plan lists are shared
// with the planner: read them, do not change them.
type Elem struct {
	Key     Key
	Mark    uint32    // a data map's value (dispatch or group id)
	Verdict Verdict   // a verdict map's value
	Expires time.Time // zero: permanent
}

// Same tells whether two elements of a set are the same (key, value and
// expiry).
func (e *Elem) Same(o *Elem) bool {
	return e.Key == o.Key && e.Mark == o.Mark && e.Verdict == o.Verdict && e.Expires.Equal(o.Expires)
}

// sameValue tells whether two elements map to the same value.
func (e *Elem) sameValue(o *Elem) bool { return e.Mark == o.Mark && e.Verdict == o.Verdict }
