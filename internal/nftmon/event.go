package nftmon

import (
	"fmt"
	"strconv"
	"strings"
	"unicode"

	"github.com/google/nftables"
)

// Table names one nftables table: its family and name.
type Table struct {
	Family nftables.TableFamily
	Name   string
}

func (t Table) String() string { return familyName(t.Family) + " " + clean(t.Name) }

func familyName(f nftables.TableFamily) string {
	switch f {
	case nftables.TableFamilyINet:
		return "inet"
	case nftables.TableFamilyIPv4:
		return "ip"
	case nftables.TableFamilyIPv6:
		return "ip6"
	case nftables.TableFamilyARP:
		return "arp"
	case nftables.TableFamilyNetdev:
		return "netdev"
	case nftables.TableFamilyBridge:
		return "bridge"
	}
	return "family" + strconv.Itoa(int(f))
}

// Kind is the kind of object a change is about.
type Kind uint8

// The kinds of nftables objects.
const (
	KindTable Kind = iota + 1
	KindChain
	KindRule
	KindSet // sets and maps (the kernel's notifications do not tell them apart)
	KindElement
	KindObject // stateful objects: counters, quotas, limits, ...
	KindFlowtable
)

var kindNames = [...]string{KindTable: "table", KindChain: "chain", KindRule: "rule", KindSet: "set",
	KindElement: "element", KindObject: "object", KindFlowtable: "flowtable"}

func (k Kind) String() string {
	if int(k) < len(kindNames) && kindNames[k] != "" {
		return kindNames[k]
	}
	return "kind" + strconv.Itoa(int(k))
}

// Op is what happened to the object.
type Op uint8

// The operations. The kernel reports a new object, an update of an existing
// one (a chain's policy, a table's dormant flag) and an added element alike
// as OpNew; a flush arrives as one OpDelete per object it removed, and
// deleting a table reports the deletion of everything in it.
const (
	OpNew Op = iota + 1
	OpDelete
)

func (o Op) String() string {
	switch o {
	case OpNew:
		return "new"
	case OpDelete:
		return "delete"
	}
	return "op" + strconv.Itoa(int(o))
}

// Change is one change to a watched table, or a run of consecutive
// notifications of the same transaction about the same object (a flushed
// chain is one Change of KindRule, OpDelete, Count = rules deleted).
type Change struct {
	Kind  Kind
	Op    Op
	Table Table
	// Name is the chain of a rule, the set of elements, else the object's
	// own name (empty for KindTable).
	Name string
	// Handle is the kernel's handle of the object (a rule's handle for
	// KindRule); valid when Count is 1.
	Handle uint64
	// Count is the number of notifications merged into this Change.
	Count int
	// Elements is the number of set elements the notifications carried
	// (KindElement only).
	Elements int
}

// Event is one committed nftables transaction that changed a watched table,
// or (Resync) the news that notifications were lost.
type Event struct {
	// Resync means changes may have been missed (the socket's receive
	// buffer overflowed, a transaction's generation was skipped, or a
	// notification could not be decoded): compare everything. Reason says
	// which; the other fields are empty.
	Resync bool
	Reason string

	// Gen is the ruleset generation the transaction created.
	Gen uint32
	// PortID is the netlink port id of the socket that sent the
	// transaction (the NEWGEN notification's nlmsg_pid). Compare it with
	// PortID of your own sockets to recognise your own transactions.
	PortID uint32
	// TaskID and Process are the kernel's word on who committed: the
	// committing thread's id (NFTA_GEN_PROC_PID: a thread id, which is
	// the process id only for a single-threaded program like nft) and
	// its command name. For messages, not for attribution.
	TaskID  uint32
	Process string

	// Changes to the watched tables, in the kernel's order. At most
	// MaxChanges are kept; Omitted counts the notifications left out.
	Changes []Change
	Omitted int
}

// MaxChanges bounds Event.Changes: deleting a table of 300,000 rules is
// summarised, not listed.
const MaxChanges = 1024

// String is one line for a log or an event store, e.g. "element deleted from
// set guard4 in table bridge mud by port 12345 (nft, task 4242)". A deleted
// table is one phrase with the number of objects deleted with it.
func (e Event) String() string {
	if e.Resync {
		return "nftables changes may have been missed (" + e.Reason + "): compare everything"
	}
	// Tables deleted by this transaction, with what went with them.
	var gone []Table
	inGone := map[Table]*[KindFlowtable + 1]int{}
	for _, c := range e.Changes {
		if c.Kind == KindTable && c.Op == OpDelete && inGone[c.Table] == nil {
			gone = append(gone, c.Table)
			inGone[c.Table] = new([KindFlowtable + 1]int)
		}
	}
	var parts []string
	rest := 0
	for _, c := range e.Changes {
		if n := inGone[c.Table]; n != nil && c.Op == OpDelete && c.Kind != KindTable && c.Kind < KindFlowtable+1 {
			n[c.Kind] += c.Count
			continue
		}
		if c.Kind == KindTable && c.Op == OpDelete {
			continue
		}
		rest++
		if len(parts) < 6 {
			parts = append(parts, c.String())
		}
	}
	for i := len(gone) - 1; i >= 0; i-- {
		parts = append([]string{tableGone(gone[i], inGone[gone[i]])}, parts...)
	}
	var b strings.Builder
	b.WriteString(strings.Join(parts, "; "))
	if more := rest - min(rest, 6) + e.Omitted; more > 0 {
		fmt.Fprintf(&b, "; and %d more changes", more)
	}
	fmt.Fprintf(&b, " by port %d", e.PortID)
	if e.Process != "" || e.TaskID != 0 {
		fmt.Fprintf(&b, " (%s, task %d)", clean(e.Process), e.TaskID)
	}
	return b.String()
}

// tableGone is "table inet mud deleted (2 chains, 1 set, 4 rules)".
func tableGone(t Table, n *[KindFlowtable + 1]int) string {
	var with []string
	for _, k := range []Kind{KindChain, KindSet, KindRule, KindElement, KindObject, KindFlowtable} {
		if n[k] > 0 {
			with = append(with, plural(n[k], k.String()))
		}
	}
	s := "table " + t.String() + " deleted"
	if len(with) > 0 {
		s += " (" + strings.Join(with, ", ") + ")"
	}
	return s
}

func plural(n int, what string) string {
	if n == 1 {
		return "1 " + what
	}
	return strconv.Itoa(n) + " " + what + "s"
}

// String describes the change in words, e.g. "4 rules deleted from chain
// pol_3_out in table inet mud".
func (c Change) String() string {
	in := " in table " + c.Table.String()
	name := clean(c.Name)
	switch c.Kind {
	case KindTable:
		return "table " + c.Table.String() + " " + c.verb()
	case KindRule:
		what := "rule " + strconv.FormatUint(c.Handle, 10)
		if c.Count != 1 {
			what = plural(c.Count, "rule")
		}
		return what + " " + c.moved() + " chain " + name + in
	case KindElement:
		what := "element"
		if c.Elements != 1 {
			what = plural(c.Elements, "element")
		}
		return what + " " + c.moved() + " set " + name + in
	}
	what := c.Kind.String() + " " + name + in + " " + c.verb()
	if c.Count != 1 {
		what += " (" + strconv.Itoa(c.Count) + " times)"
	}
	return what
}

// verb is for objects that are created or deleted as a whole.
func (c Change) verb() string {
	if c.Op == OpDelete {
		return "deleted"
	}
	return "created or updated"
}

// moved is for rules and elements, which are added to or deleted from a
// container.
func (c Change) moved() string {
	if c.Op == OpDelete {
		return "deleted from"
	}
	return "added to"
}

// clean makes a name from the kernel safe to print on one line: names with
// spaces, quotes or unprintable characters are quoted.
func clean(s string) string {
	if s == "" {
		return `""`
	}
	for _, r := range s {
		if !unicode.IsPrint(r) || unicode.IsSpace(r) || r == '"' || r == ';' {
			return strconv.Quote(s)
		}
	}
	return s
}
