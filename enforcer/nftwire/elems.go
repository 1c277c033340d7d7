package nftwire

import (
	"encoding/binary"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/plan"
	"golang.org/x/sys/unix"
)

// Set elements are most of a batch (about ten per device). google/nftables
// encodes each through several allocating MarshalAttributes calls; at
// 100,000 elements that costs more than the kernel's work. We encode
// element messages directly, in the same wire format.

// attrBuf appends netlink attributes to a byte slice.
type attrBuf []byte

func (b attrBuf) attr(typ uint16, payload []byte) attrBuf {
	b, at := b.start(typ)
	b = append(b, payload...)
	return b.end(at)
}

// start begins an attribute whose payload the caller appends; end patches
// its length and pads it.
func (b attrBuf) start(typ uint16) (attrBuf, int) {
	at := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ)
	return b, at
}

func (b attrBuf) end(at int) attrBuf {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// open starts a nested attribute; close patches its length.
func (b attrBuf) open(typ uint16) (attrBuf, int) { return b.start(typ | unix.NLA_F_NESTED) }

func (b attrBuf) close(at int) attrBuf {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// ElemOp is what an element message does.
type ElemOp uint8

// The element operations.
const (
	ElemAdd     ElemOp = iota // NFT_MSG_NEWSETELEM: add (an element of the same value gets the new timeout)
	ElemDelete                // NFT_MSG_DELSETELEM: delete; fails if the element is not there
	ElemDestroy               // NFT_MSG_DESTROYSETELEM (Linux 6.3): delete if there
)

// nftMsgDestroySetElem is NFT_MSG_DESTROYSETELEM, missing from x/sys.
const nftMsgDestroySetElem = 30

// NFTA_SET_ELEM_KEY_END (linux/netfilter/nf_tables.h) is missing from x/sys.
const nftaSetElemKeyEnd = 10

// ElemMsgs encodes messages for elements of one set, each message's
// element list under 60,000 bytes: the list is one attribute with a
// 16-bit length, which would otherwise wrap (google/nftables does not
// check, and the kernel then parses garbage or loses elements). Added
// elements with an expiry get the timeout left at now (at least 1 ms: a
// timeout of 0 would make them permanent).
func ElemMsgs(set plan.SetRef, elems []*plan.Elem, op ElemOp, now time.Time) []netlink.Message {
	return elemMsgs(plan.TableName, set, elems, op, now)
}

func elemMsgs(table string, set plan.SetRef, elems []*plan.Elem, op ElemOp, now time.Time) []netlink.Message {
	typ, flags := unix.NFT_MSG_NEWSETELEM, netlink.Request|netlink.Create
	switch op {
	case ElemDelete:
		typ, flags = unix.NFT_MSG_DELSETELEM, netlink.Request
	case ElemDestroy:
		typ, flags = nftMsgDestroySetElem, netlink.Request
	}
	family := byte(unix.NFPROTO_INET)
	if set.Family == plan.Bridge {
		family = unix.NFPROTO_BRIDGE
	}
	add := op == ElemAdd
	var msgs []netlink.Message
	var tmp [8]byte // an attribute's payload, without allocating one per element
	for i := 0; i < len(elems); {
		// Messages are cut at ~60 KB: allocate once what this one needs.
		b := append(make(attrBuf, 0, min(64<<10, 96+80*(len(elems)-i))), family, 0, 0, 0)
		b = b.attr(unix.NFTA_SET_ELEM_LIST_TABLE, cstr(table))
		b = b.attr(unix.NFTA_SET_ELEM_LIST_SET, cstr(set.Name))
		b, list := b.open(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		n := 0
		for ; i < len(elems) && len(b)-list < 60000; i++ {
			e := elems[i]
			n++
			var item, k, v int
			b, item = b.open(uint16(n))
			b, k = b.open(unix.NFTA_SET_ELEM_KEY)
			b, v = b.start(unix.NFTA_DATA_VALUE)
			b = attrBuf(AppendKey(b, e.Key)).end(v).close(k)
			if _, ok := e.Key.(plan.NetKey); ok {
				b, k = b.open(nftaSetElemKeyEnd)
				b, v = b.start(unix.NFTA_DATA_VALUE)
				b = attrBuf(AppendKeyEnd(b, e.Key)).end(v).close(k)
			}
			if add && !e.Expires.IsZero() {
				ms := max(e.Expires.Sub(now).Milliseconds(), 1)
				binary.BigEndian.PutUint64(tmp[:], uint64(ms))
				b = b.attr(unix.NFTA_SET_ELEM_TIMEOUT, tmp[:8])
			}
			if add && e.Mark != 0 {
				var d int
				b, d = b.open(unix.NFTA_SET_ELEM_DATA)
				native.PutUint32(tmp[:], e.Mark)
				b = b.attr(unix.NFTA_DATA_VALUE, tmp[:4]).close(d)
			}
			if add && e.Verdict.Kind != plan.VerdictNone {
				var d int
				b, d = b.open(unix.NFTA_SET_ELEM_DATA)
				b, v = b.open(unix.NFTA_DATA_VERDICT)
				b = b.attr(unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, uint32(verdictCode(e.Verdict.Kind))))
				if e.Verdict.Chain != "" {
					b = b.attr(unix.NFTA_VERDICT_CHAIN, cstr(e.Verdict.Chain))
				}
				b = b.close(v).close(d)
			}
			b = b.close(item)
		}
		b = b.close(list)
		msgs = append(msgs, netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ), Flags: flags},
			Data:   b,
		})
	}
	return msgs
}

// Verdict codes of the kernel (NF_ACCEPT, NF_DROP, NFT_RETURN, NFT_JUMP,
// NFT_GOTO).
func verdictCode(k plan.VerdictKind) int32 {
	switch k {
	case plan.VerdictAccept:
		return 1
	case plan.VerdictDrop:
		return 0
	case plan.VerdictReturn:
		return -5
	case plan.VerdictJump:
		return -3
	case plan.VerdictGoto:
		return -4
	}
	return -1
}

func verdictKind(code int32) plan.VerdictKind {
	for _, k := range []plan.VerdictKind{plan.VerdictAccept, plan.VerdictDrop, plan.VerdictReturn, plan.VerdictJump, plan.VerdictGoto} {
		if verdictCode(k) == code {
			return k
		}
	}
	return plan.VerdictNone
}
