package plan

import (
	"encoding/binary"
	"fmt"
	"strings"

	"github.com/google/nftables/expr"
	"github.com/openmud/mud/policy"
)

// Header fields of RFC 8519 (ietf-packet-fields) beyond addresses,
// protocol, ports and ICMP type and code: each is an exact comparison of
// some bits of the IP or transport header, the same in both tables.
// mudfile refuses, with a finding, the fields whose value at our hooks is
// not what the file means (TTL, lengths, fragment offset and flags, ICMP
// rest-of-header); policy.Rule.Fields holds the others.

// fieldLoc is where a field is: len bytes at off of the network (nh) or
// transport header, the bits of mask, the value shifted left by shift.
type fieldLoc struct {
	th         bool
	off, len   uint32
	mask       uint32 // 0: all bits
	shift      uint
	name       string // nft's name, for the text
	v4, v6, l4 bool   // which packets have it (l4: TCP)
}

var fieldLocs = map[policy.Field][]fieldLoc{
	policy.FieldDSCP: {{off: 1, len: 1, mask: 0xfc, shift: 2, name: "ip dscp", v4: true},
		{off: 0, len: 2, mask: 0x0fc0, shift: 6, name: "ip6 dscp", v6: true}},
	policy.FieldECN: {{off: 1, len: 1, mask: 0x03, name: "ip ecn", v4: true},
		{off: 1, len: 1, mask: 0x30, shift: 4, name: "ip6 ecn", v6: true}},
	policy.FieldIHL:            {{off: 0, len: 1, mask: 0x0f, name: "ip hdrlength", v4: true}},
	policy.FieldIPv4Flags:      {{off: 6, len: 1, mask: 0xe0, name: "ip frag-off & 0xe000 ==", v4: true}},
	policy.FieldIdentification: {{off: 4, len: 2, name: "ip id", v4: true}},
	policy.FieldFlowLabel:      {{off: 1, len: 3, mask: 0x0fffff, name: "ip6 flowlabel", v6: true}},
	policy.FieldTCPSeq:         {{th: true, off: 4, len: 4, name: "tcp sequence", l4: true}},
	policy.FieldTCPAck:         {{th: true, off: 8, len: 4, name: "tcp ackseq", l4: true}},
	policy.FieldTCPDataOffset:  {{th: true, off: 12, len: 1, mask: 0xf0, shift: 4, name: "tcp doff", l4: true}},
	policy.FieldTCPReserved:    {{th: true, off: 12, len: 1, mask: 0x0f, name: "tcp reserved", l4: true}},
	policy.FieldTCPFlags:       {{th: true, off: 13, len: 1, name: "tcp flags ==", l4: true}},
	policy.FieldTCPWindow:      {{th: true, off: 14, len: 2, name: "tcp window", l4: true}},
	policy.FieldTCPUrgent:      {{th: true, off: 18, len: 2, name: "tcp urgptr", l4: true}},
}

// beBytes is v as n big-endian bytes.
func beBytes(v uint32, n uint32) []byte {
	b := binary.BigEndian.AppendUint32(nil, v)
	return b[4-n:]
}

var tcpFlagNames = []string{"cwr", "ece", "urg", "ack", "psh", "rst", "syn", "fin"}

// fField matches one header field in a packet of IP version v (4 or 6)
// and protocol proto.
func fField(v int, proto uint8, fm policy.FieldMatch) (frag, error) {
	if fm.Field == policy.FieldTCPOptions {
		if proto != policy.ProtoTCP {
			return frag{}, fmt.Errorf("%s needs protocol tcp (protocol %d)", fm.Field, proto)
		}
		return fTCPOptions(fm.Bytes)
	}
	locs, ok := fieldLocs[fm.Field]
	if !ok {
		return frag{}, fmt.Errorf("unknown header field %q", fm.Field)
	}
	for _, l := range locs {
		if (l.v4 && v != 4) || (l.v6 && v != 6) || (l.l4 && proto != policy.ProtoTCP) {
			continue
		}
		mask := l.mask
		if mask == 0 {
			mask = uint32(1)<<(8*l.len) - 1
		}
		if fm.Value > mask>>l.shift {
			return frag{}, fmt.Errorf("%s %d does not fit in its %d bits", fm.Field, fm.Value, popcount(mask))
		}
		base := expr.PayloadBaseNetworkHeader
		if l.th {
			base = expr.PayloadBaseTransportHeader
		}
		ex := []expr.Any{&expr.Payload{DestRegister: reg1, Base: base, Offset: l.off, Len: l.len}}
		if l.mask != 0 {
			ex = append(ex, &expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: l.len,
				Mask: beBytes(l.mask, l.len), Xor: make([]byte, l.len)})
		}
		ex = append(ex, cmpEq(reg1, beBytes(fm.Value<<l.shift, l.len)))
		val := fmt.Sprint(fm.Value)
		switch fm.Field {
		case policy.FieldTCPFlags:
			var set []string
			for i, n := range tcpFlagNames {
				if fm.Value&(0x80>>i) != 0 {
					set = append(set, n)
				}
			}
			val = "0x0"
			if len(set) > 0 {
				val = strings.Join(set, " | ")
			}
		case policy.FieldIPv4Flags:
			val = fmt.Sprintf("0x%04x", fm.Value<<8)
		}
		return frag{l.name + " " + val, ex}, nil
	}
	what := "TCP"
	if !locs[0].l4 {
		what = "an IP version that has it"
	}
	return frag{}, fmt.Errorf("%s needs %s (IPv%d, protocol %d)", fm.Field, what, v, proto)
}

func popcount(m uint32) int {
	n := 0
	for ; m != 0; m &= m - 1 {
		n++
	}
	return n
}

// fTCPOptions matches a segment whose options are exactly b: the data
// offset says so many bytes, and they are b.
func fTCPOptions(b []byte) (frag, error) {
	if len(b) == 0 || len(b) > 40 || len(b)%4 != 0 {
		return frag{}, fmt.Errorf("tcp options of %d bytes: want 4..40, a multiple of 4", len(b))
	}
	doff := 5 + uint32(len(b))/4
	ex := []expr.Any{
		&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 12, Len: 1},
		&expr.Bitwise{SourceRegister: reg1, DestRegister: reg1, Len: 1, Mask: []byte{0xf0}, Xor: []byte{0}},
		cmpEq(reg1, []byte{byte(doff << 4)}),
	}
	text := fmt.Sprintf("tcp doff %d", doff)
	for i := 0; i < len(b); i += 16 {
		chunk := b[i:min(i+16, len(b))]
		ex = append(ex,
			&expr.Payload{DestRegister: reg1, Base: expr.PayloadBaseTransportHeader, Offset: 20 + uint32(i), Len: uint32(len(chunk))},
			cmpEq(reg1, chunk))
		text += fmt.Sprintf(" @th,%d,%d 0x%x", (20+i)*8, len(chunk)*8, chunk)
	}
	return frag{text, ex}, nil
}
