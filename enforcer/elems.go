package enforcer

import (
	"encoding/binary"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// Set elements are most of a batch (about ten per device). google/nftables
// encodes each through several allocating MarshalAttributes calls; at
// 100,000 elements that costs more than the kernel's work. We encode
// element messages directly, in the same wire format.

// attrBuf appends netlink attributes to a byte slice.
type attrBuf []byte

func (b attrBuf) attr(typ uint16, payload []byte) attrBuf {
	l := 4 + len(payload)
	b = binary.NativeEndian.AppendUint16(b, uint16(l))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, payload...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// open starts a nested attribute; close patches its length.
func (b attrBuf) open(typ uint16) (attrBuf, int) {
	at := len(b)
	b = binary.NativeEndian.AppendUint16(b, 0)
	b = binary.NativeEndian.AppendUint16(b, typ|unix.NLA_F_NESTED)
	return b, at
}

func (b attrBuf) close(at int) attrBuf {
	binary.NativeEndian.PutUint16(b[at:], uint16(len(b)-at))
	return b
}

func cstr(s string) []byte { return append([]byte(s), 0) }

// elemMsgs encodes add (or delete) messages for elements of one set, each
// message's element list under 60,000 bytes: the list is one attribute with
// a 16-bit length, which would otherwise wrap (google/nftables does not
// check, and the kernel then parses garbage or loses elements).
func elemMsgs(f tfam, set string, elems []*elemSpec, del bool, now time.Time) []netlink.Message {
	typ, flags := unix.NFT_MSG_NEWSETELEM, netlink.Request|netlink.Create
	if del {
		typ, flags = unix.NFT_MSG_DELSETELEM, netlink.Request
	}
	family := byte(unix.NFPROTO_INET)
	if f == famBridge {
		family = unix.NFPROTO_BRIDGE
	}
	var msgs []netlink.Message
	for i := 0; i < len(elems); {
		// Messages are cut at ~60 KB: allocate once what this one needs.
		b := append(make(attrBuf, 0, min(64<<10, 96+80*(len(elems)-i))), family, 0, 0, 0)
		b = b.attr(unix.NFTA_SET_ELEM_LIST_TABLE, cstr(tableName))
		b = b.attr(unix.NFTA_SET_ELEM_LIST_SET, cstr(set))
		b, list := b.open(unix.NFTA_SET_ELEM_LIST_ELEMENTS)
		n := 0
		for ; i < len(elems) && len(b)-list < 60000; i++ {
			e := elems[i]
			n++
			var item int
			b, item = b.open(uint16(n))
			var k int
			b, k = b.open(unix.NFTA_SET_ELEM_KEY)
			b = b.attr(unix.NFTA_DATA_VALUE, e.key).close(k)
			if len(e.keyEnd) > 0 {
				b, k = b.open(nftaSetElemKeyEnd)
				b = b.attr(unix.NFTA_DATA_VALUE, e.keyEnd).close(k)
			}
			if !del && !e.expires.IsZero() {
				b = b.attr(unix.NFTA_SET_ELEM_TIMEOUT, binary.BigEndian.AppendUint64(nil, uint64(e.expires.Sub(now).Milliseconds())))
			}
			if e.data != nil && !del {
				var d int
				b, d = b.open(unix.NFTA_SET_ELEM_DATA)
				b = b.attr(unix.NFTA_DATA_VALUE, e.data).close(d)
			}
			if e.verdict != nil && !del {
				var d, v int
				b, d = b.open(unix.NFTA_SET_ELEM_DATA)
				b, v = b.open(unix.NFTA_DATA_VERDICT)
				b = b.attr(unix.NFTA_VERDICT_CODE, binary.BigEndian.AppendUint32(nil, uint32(int32(e.verdict.Kind))))
				if e.verdict.Chain != "" {
					b = b.attr(unix.NFTA_VERDICT_CHAIN, cstr(e.verdict.Chain))
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

// NFTA_SET_ELEM_KEY_END (linux/netfilter/nf_tables.h) is missing from x/sys.
const nftaSetElemKeyEnd = 10
