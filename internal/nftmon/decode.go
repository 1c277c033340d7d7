package nftmon

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// The kernel's notifications (net/netfilter/nf_tables_api.c): within one
// transaction it sends one message per changed object (coalesced into
// datagrams of the same transaction), all with nlmsg_pid set to the port id
// of the socket that sent the batch, then one NFT_MSG_NEWGEN datagram whose
// nlmsg_pid is that port id again and whose NFTA_GEN_ID is the new
// generation. Generations count up by one per committed transaction (a
// rejected batch commits nothing and has no generation). NFTA_GEN_PROC_PID
// is the committing thread's id, not a port id. Neither tables released
// with their owner socket nor set elements that time out are notified. The
// DESTROY message types are read as deletions.

// Message types past x/sys/unix's list (Linux 6.3).
const (
	msgDestroyTable     = 0x1a
	msgDestroyChain     = 0x1b
	msgDestroyRule      = 0x1c
	msgDestroySet       = 0x1d
	msgDestroySetElem   = 0x1e
	msgDestroyObj       = 0x1f
	msgDestroyFlowtable = 0x20
)

// Attributes missing from x/sys/unix (include/uapi/linux/netfilter/nf_tables.h).
const (
	attrTableHandle     = 4      // NFTA_TABLE_HANDLE
	attrSetHandle       = 16     // NFTA_SET_HANDLE
	attrObjHandle       = 6      // NFTA_OBJ_HANDLE
	attrFlowtableTable  = 1      // NFTA_FLOWTABLE_TABLE
	attrFlowtableName   = 2      // NFTA_FLOWTABLE_NAME
	attrFlowtableHandle = 5      // NFTA_FLOWTABLE_HANDLE
	attrTypeMask        = 0x3fff // NLA_TYPE_MASK: without NLA_F_NESTED and NLA_F_NET_BYTEORDER
)

// msgSpec says how to read one notification type: which attributes hold
// the table, the name (chain of a rule, set of elements) and the handle.
type msgSpec struct {
	kind                Kind
	op                  Op
	table, name, handle uint16
	elements            uint16 // NFTA_SET_ELEM_LIST_ELEMENTS, for elements
	noName              bool   // tables: the table attribute is the name
}

var specs = func() map[uint8]msgSpec {
	table := msgSpec{kind: KindTable, table: unix.NFTA_TABLE_NAME, handle: attrTableHandle, noName: true}
	chain := msgSpec{kind: KindChain, table: unix.NFTA_CHAIN_TABLE, name: unix.NFTA_CHAIN_NAME, handle: unix.NFTA_CHAIN_HANDLE}
	rule := msgSpec{kind: KindRule, table: unix.NFTA_RULE_TABLE, name: unix.NFTA_RULE_CHAIN, handle: unix.NFTA_RULE_HANDLE}
	set := msgSpec{kind: KindSet, table: unix.NFTA_SET_TABLE, name: unix.NFTA_SET_NAME, handle: attrSetHandle}
	elem := msgSpec{kind: KindElement, table: unix.NFTA_SET_ELEM_LIST_TABLE, name: unix.NFTA_SET_ELEM_LIST_SET,
		elements: unix.NFTA_SET_ELEM_LIST_ELEMENTS}
	obj := msgSpec{kind: KindObject, table: unix.NFTA_OBJ_TABLE, name: unix.NFTA_OBJ_NAME, handle: attrObjHandle}
	flow := msgSpec{kind: KindFlowtable, table: attrFlowtableTable, name: attrFlowtableName,
		handle: attrFlowtableHandle}
	m := map[uint8]msgSpec{}
	for _, s := range []struct {
		spec          msgSpec
		add, del, des uint8
	}{
		{table, unix.NFT_MSG_NEWTABLE, unix.NFT_MSG_DELTABLE, msgDestroyTable},
		{chain, unix.NFT_MSG_NEWCHAIN, unix.NFT_MSG_DELCHAIN, msgDestroyChain},
		{rule, unix.NFT_MSG_NEWRULE, unix.NFT_MSG_DELRULE, msgDestroyRule},
		{set, unix.NFT_MSG_NEWSET, unix.NFT_MSG_DELSET, msgDestroySet},
		{elem, unix.NFT_MSG_NEWSETELEM, unix.NFT_MSG_DELSETELEM, msgDestroySetElem},
		{obj, unix.NFT_MSG_NEWOBJ, unix.NFT_MSG_DELOBJ, msgDestroyObj},
		{flow, unix.NFT_MSG_NEWFLOWTABLE, unix.NFT_MSG_DELFLOWTABLE, msgDestroyFlowtable},
	} {
		add, del := s.spec, s.spec
		add.op, del.op = OpNew, OpDelete
		m[s.add], m[s.del], m[s.des] = add, del, del
	}
	return m
}()

var errAttr = errors.New("malformed netlink attribute")

// attrs calls fn for each attribute of b (netlink TLVs, 4-byte aligned).
func attrs(b []byte, fn func(typ uint16, v []byte) error) error {
	for len(b) > 0 {
		if len(b) < 4 {
			return errAttr
		}
		l := int(binary.NativeEndian.Uint16(b))
		if l < 4 || l > len(b) {
			return errAttr
		}
		if err := fn(binary.NativeEndian.Uint16(b[2:])&attrTypeMask, b[4:l]); err != nil {
			return err
		}
		b = b[min((l+3)&^3, len(b)):]
	}
	return nil
}

// str is a NUL-terminated string attribute.
func str(v []byte) string {
	if i := bytes.IndexByte(v, 0); i >= 0 {
		v = v[:i]
	}
	return string(v)
}

func be32(v []byte) (uint32, error) {
	if len(v) != 4 {
		return 0, errAttr
	}
	return binary.BigEndian.Uint32(v), nil
}

// decodeChange reads one object notification (the payload after the
// netlink header: nfgenmsg, then attributes).
func decodeChange(s msgSpec, data []byte) (Change, error) {
	if len(data) < 4 {
		return Change{}, errors.New("short nfgenmsg")
	}
	c := Change{Kind: s.kind, Op: s.op, Count: 1}
	c.Table.Family = nftables.TableFamily(data[0])
	var haveTable, haveName bool
	err := attrs(data[4:], func(typ uint16, v []byte) error {
		switch {
		case typ == s.table:
			c.Table.Name, haveTable = str(v), true
		case typ == s.name && !s.noName:
			c.Name, haveName = str(v), true
		case typ == s.handle && s.handle != 0:
			if len(v) != 8 {
				return errAttr
			}
			c.Handle = binary.BigEndian.Uint64(v)
		case typ == s.elements && s.elements != 0:
			return attrs(v, func(uint16, []byte) error { c.Elements++; return nil })
		}
		return nil
	})
	if err != nil {
		return Change{}, err
	}
	if !haveTable || (!haveName && !s.noName) {
		return Change{}, fmt.Errorf("%s notification without table or name", s.kind)
	}
	return c, nil
}

// gen is an NFT_MSG_NEWGEN notification.
type gen struct {
	id, task uint32
	process  string
}

func decodeGen(data []byte) (gen, error) {
	var g gen
	if len(data) < 4 {
		return g, errors.New("short nfgenmsg")
	}
	haveID := false
	err := attrs(data[4:], func(typ uint16, v []byte) error {
		var err error
		switch typ {
		case unix.NFTA_GEN_ID:
			g.id, err = be32(v)
			haveID = true
		case unix.NFTA_GEN_PROC_PID:
			g.task, err = be32(v)
		case unix.NFTA_GEN_PROC_NAME:
			g.process = str(v)
		}
		return err
	})
	if err == nil && !haveID {
		err = errors.New("generation notification without NFTA_GEN_ID")
	}
	return g, err
}

// collector turns notification datagrams into Events: it holds the changes
// of the transaction being received until its NEWGEN arrives, and checks
// that no generation was skipped. Run's goroutine owns it.
type collector struct {
	watch   map[Table]bool         // nil: every table
	ignored func(port uint32) bool // transactions not to report (nil: none)
	cur     Event
	lastGen uint32
	haveGen bool
}

// datagram decodes one datagram and appends the finished Events to out.
func (c *collector) datagram(b []byte, out []Event) []Event {
	for len(b) > 0 {
		if len(b) < unix.NLMSG_HDRLEN {
			return c.lost(out, fmt.Sprintf("undecodable notification: %d bytes left after the last message", len(b)))
		}
		l := int(binary.NativeEndian.Uint32(b))
		if l < unix.NLMSG_HDRLEN || l > len(b) {
			return c.lost(out, fmt.Sprintf("undecodable notification: message length %d in %d bytes", l, len(b)))
		}
		typ := binary.NativeEndian.Uint16(b[4:])
		port := binary.NativeEndian.Uint32(b[12:])
		data := b[unix.NLMSG_HDRLEN:l]
		b = b[min((l+3)&^3, len(b)):]
		if typ>>8 != unix.NFNL_SUBSYS_NFTABLES {
			continue // netlink control messages; nothing else is multicast here
		}
		if uint8(typ) == unix.NFT_MSG_NEWGEN {
			g, err := decodeGen(data)
			if err != nil {
				return c.lost(out, "undecodable generation notification: "+err.Error())
			}
			out = c.commit(g, port, out)
			continue
		}
		s, ok := specs[uint8(typ)]
		if !ok {
			continue
		}
		ch, err := decodeChange(s, data)
		if err != nil {
			return c.lost(out, fmt.Sprintf("undecodable %s notification: %v", s.kind, err))
		}
		if c.watch == nil || c.watch[ch.Table] {
			c.add(ch)
		}
	}
	return out
}

// add records a change of the current transaction, merging it into the
// previous one when both are about the same object.
func (c *collector) add(ch Change) {
	e := &c.cur
	if n := len(e.Changes); n > 0 {
		last := &e.Changes[n-1]
		if last.Kind == ch.Kind && last.Op == ch.Op && last.Table == ch.Table && last.Name == ch.Name {
			last.Count++
			last.Elements += ch.Elements
			return
		}
	}
	if len(e.Changes) >= MaxChanges {
		e.Omitted++
		return
	}
	e.Changes = append(e.Changes, ch)
}

// commit ends the current transaction at its NEWGEN.
func (c *collector) commit(g gen, port uint32, out []Event) []Event {
	if c.haveGen && g.id != nextGen(c.lastGen) {
		out = append(out, Event{Resync: true,
			Reason: fmt.Sprintf("generation %d followed %d: a transaction's notifications were lost", g.id, c.lastGen)})
	}
	c.lastGen, c.haveGen = g.id, true
	e := c.cur
	c.cur = Event{}
	if len(e.Changes) == 0 || (c.ignored != nil && c.ignored(port)) {
		return out
	}
	e.Gen, e.PortID, e.TaskID, e.Process = g.id, port, g.task, g.process
	return append(out, e)
}

// nextGen is the generation after g (the kernel skips 0 when it wraps).
func nextGen(g uint32) uint32 {
	if g == ^uint32(0) {
		return 1
	}
	return g + 1
}

// lost drops the transaction being received and reports a Resync.
func (c *collector) lost(out []Event, reason string) []Event {
	c.cur = Event{}
	c.haveGen = false
	return append(out, Event{Resync: true, Reason: reason})
}
