package nftwire

import (
	"encoding/binary"
	"fmt"
	"net/netip"

	"github.com/openmud/mud/enforcer/plan"
)

// Key codecs. A set's key is the concatenation of its fields as nft's
// registers hold them: every field padded to a multiple of 4 bytes, marks
// (ids) in host byte order as meta mark and meta secmark hold them,
// addresses, ports and protocol numbers in network byte order. Decoding
// is the exact inverse of encoding; a key of the wrong length is an error.

var native = binary.NativeEndian

// AppendKey appends a key's bytes; for an interval (NetKey) the start's,
// AppendKeyEnd gives the end's.
func AppendKey(b []byte, k plan.Key) []byte {
	switch k := k.(type) {
	case plan.MarkKey:
		return native.AppendUint32(b, uint32(k))
	case plan.MACKey:
		return append(b, k[:]...)
	case plan.AddrKey:
		return appendAddr(b, netip.Addr(k))
	case plan.GuardKey:
		return appendAddr(append(append(b, k.MAC[:]...), 0, 0), k.Addr)
	case plan.NetKey:
		return appendAddr(native.AppendUint32(b, k.ID), k.First)
	case plan.PeerGroupKey:
		return native.AppendUint32(native.AppendUint32(b, k.Peer), k.Group)
	case plan.ACLKey:
		b = native.AppendUint32(native.AppendUint32(b, k.Dispatch), k.Group)
		return append(b, k.Family, 0, 0, 0, k.Proto, 0, 0, 0, byte(k.Port>>8), byte(k.Port), 0, 0)
	case plan.FlowKey:
		b = append(append(append(append(b, k.SrcMAC[:]...), 0, 0), k.DstMAC[:]...), 0, 0)
		b = appendAddr(appendAddr(b, k.Src), k.Dst)
		return append(b, k.Proto, 0, 0, 0, byte(k.A>>8), byte(k.A), 0, 0, byte(k.B>>8), byte(k.B), 0, 0)
	}
	panic(fmt.Sprintf("nftwire: no codec for key %T", k))
}

// AppendKeyEnd appends the end of an interval key (nil: k is no interval).
func AppendKeyEnd(b []byte, k plan.Key) []byte {
	if k, ok := k.(plan.NetKey); ok {
		return appendAddr(native.AppendUint32(b, k.ID), k.Last)
	}
	return nil
}

// DecodeKey reads a key of type t from its bytes (and, for an interval,
// its end's).
func DecodeKey(t plan.KeyType, key, end []byte) (plan.Key, error) {
	bad := func() (plan.Key, error) {
		return nil, fmt.Errorf("nftwire: a key of %d bytes is not of key type %d", len(key), t)
	}
	addr := func(b []byte) netip.Addr { a, _ := netip.AddrFromSlice(b); return a }
	mac := func(b []byte) (m plan.MACKey) { copy(m[:], b); return m }
	zero := func(b ...byte) bool {
		for _, x := range b {
			if x != 0 {
				return false
			}
		}
		return true
	}
	switch t {
	case plan.KeyMark:
		if len(key) != 4 {
			return bad()
		}
		return plan.MarkKey(native.Uint32(key)), nil
	case plan.KeyMAC:
		if len(key) != 6 && (len(key) != 8 || !zero(key[6:]...)) {
			return bad()
		}
		return mac(key), nil
	case plan.KeyIPv4, plan.KeyIPv6:
		if len(key) != addrLen(t == plan.KeyIPv6) {
			return bad()
		}
		return plan.AddrKey(addr(key)), nil
	case plan.KeyMACIPv4, plan.KeyMACIPv6:
		if len(key) != 8+addrLen(t == plan.KeyMACIPv6) || !zero(key[6:8]...) {
			return bad()
		}
		return plan.GuardKey{MAC: mac(key), Addr: addr(key[8:])}, nil
	case plan.KeyMarkIPv4, plan.KeyMarkIPv6:
		n := 4 + addrLen(t == plan.KeyMarkIPv6)
		if len(key) != n || len(end) != n {
			return bad()
		}
		return plan.NetKey{ID: native.Uint32(key), First: addr(key[4:]), Last: addr(end[4:])}, nil
	case plan.KeyMarkMark:
		if len(key) != 8 {
			return bad()
		}
		return plan.PeerGroupKey{Peer: native.Uint32(key), Group: native.Uint32(key[4:])}, nil
	case plan.KeyACL:
		if len(key) != 20 || !zero(key[9:12]...) || !zero(key[13:16]...) || !zero(key[18:20]...) {
			return bad()
		}
		return plan.ACLKey{Dispatch: native.Uint32(key), Group: native.Uint32(key[4:]), Family: key[8], Proto: key[12],
			Port: binary.BigEndian.Uint16(key[16:])}, nil
	case plan.KeyFlow4, plan.KeyFlow6:
		n := addrLen(t == plan.KeyFlow6)
		if len(key) != 16+2*n+12 || !zero(key[6:8]...) || !zero(key[14:16]...) {
			return bad()
		}
		l4 := key[16+2*n:]
		if !zero(l4[1:4]...) || !zero(l4[6:8]...) || !zero(l4[10:12]...) {
			return bad()
		}
		return plan.FlowKey{SrcMAC: mac(key), DstMAC: mac(key[8:]), Src: addr(key[16 : 16+n]), Dst: addr(key[16+n : 16+2*n]),
			Proto: l4[0], A: binary.BigEndian.Uint16(l4[4:]), B: binary.BigEndian.Uint16(l4[8:])}, nil
	}
	return bad()
}

// appendAddr appends an address's 4 or 16 bytes (without allocating).
func appendAddr(b []byte, a netip.Addr) []byte {
	if a.Is4() {
		x := a.As4()
		return append(b, x[:]...)
	}
	x := a.As16()
	return append(b, x[:]...)
}

func addrLen(six bool) int {
	if six {
		return 16
	}
	return 4
}
