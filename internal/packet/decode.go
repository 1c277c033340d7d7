// Package packet decodes the Ethernet frames mud captures: Ethernet II with
// up to two VLAN tags (802.1Q, 802.1ad QinQ), IPv4 with options, IPv6 with
// its extension headers, UDP and TCP. Its subpackage capture reads and
// sends them on AF_PACKET sockets.
//
// Decode fills a Frame with views into the bytes it is given: nothing is
// copied or allocated for a well-formed frame, and a view is valid as long as
// those bytes are. Every length is checked against what is present before
// anything is read, and a frame that is malformed gets an *Error naming the
// layer, the offset and what was wrong; the layers decoded before it stay
// valid in the Frame. A frame that is merely of another kind (ARP, ICMP,
// a later IP fragment) is not an error: Decode stops where it has nothing
// more to decode, and the Frame says how far it got.
//
// What is decoded, and the limits:
//
//   - Ethernet II; at most MaxTags VLAN tags (TPID 0x8100 or 0x88a8), outer
//     first. A frame with more tags is an error.
//   - IPv4: version, header length (options are checked to be well-formed
//     TLVs, RFC 791), total length (what follows it is link-layer padding,
//     not payload), fragmentation. The header checksum is not checked.
//   - IPv6: the fixed header and the extension headers of RFC 8200 §4:
//     hop-by-hop options (first only), routing, fragment (once) and
//     destination options, at most MaxExtHeaders of them. Any other next
//     header ends the chain and is the upper-layer protocol. Jumbograms
//     (payload length 0 with a Jumbo Payload option) are not decoded.
//   - Fragments are flagged (IP.Fragmented). A later fragment (offset not
//     zero) has no transport header, so none is decoded; a first fragment's
//     is, and its payload is only what this fragment carries.
//   - UDP: the length field must cover the header and fit what is present
//     (the payload is cut to it); TCP: the data offset must too (the
//     payload starts after the options). Checksums are not checked.
package packet

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
)

// EtherTypes, IP protocol numbers and the bounds of Decode.
const (
	EtherTypeIPv4 = 0x0800
	EtherTypeIPv6 = 0x86dd
	EtherTypeVLAN = 0x8100 // 802.1Q C-tag
	EtherTypeQinQ = 0x88a8 // 802.1ad S-tag

	ProtoHopByHop = 0
	ProtoTCP      = 6
	ProtoUDP      = 17
	ProtoRouting  = 43
	ProtoFragment = 44
	ProtoDstOpts  = 60

	// MaxTags is how many VLAN tags a frame may carry (QinQ: two).
	MaxTags = 2
	// MaxExtHeaders bounds the IPv6 extension headers walked: RFC 8200
	// §4.1's recommended order has at most six, and the bound keeps the
	// work per frame small whatever a crafted chain says.
	MaxExtHeaders = 8
)

// Frame is a decoded Ethernet frame. Its slices are views into the decoded
// bytes. Decode says how far it got: IP.Version is 0 when no IP header was
// decoded, Transport is 0 when no UDP or TCP header was.
type Frame struct {
	Dst, Src net.HardwareAddr // 6 octets each
	// Tags are the VLAN tags, outer first; NumTags of them are set.
	Tags    [MaxTags]Tag
	NumTags int
	// EtherType is the type of the payload, after any tags.
	EtherType uint16
	// Payload is everything after the Ethernet header and tags, padding
	// included.
	Payload []byte

	IP IP

	// Transport is ProtoUDP or ProtoTCP when that header was decoded (and
	// UDP or TCP is set), 0 otherwise.
	Transport uint8
	UDP       UDP
	TCP       TCP
}

// Tag is one VLAN tag.
type Tag struct {
	TPID uint16 // EtherTypeVLAN or EtherTypeQinQ
	TCI  uint16 // priority (3 bits), drop eligible (1), VLAN id (12)
}

// VID is the tag's VLAN id.
func (t Tag) VID() uint16 { return t.TCI & 0x0fff }

// IP is an IPv4 or IPv6 header, with IPv6's extension headers.
type IP struct {
	// Version is 4 or 6; 0 when the frame carries no IP or it was not
	// decoded.
	Version int
	// Header is the IPv4 header with its options, or the IPv6 fixed header.
	Header   []byte
	Src, Dst netip.Addr
	// TTL is the IPv4 time to live or the IPv6 hop limit.
	TTL uint8
	// Protocol is the upper-layer protocol: the IPv4 protocol, or the next
	// header that ended IPv6's extension header chain.
	Protocol uint8
	// Options are the IPv4 options (empty without).
	Options []byte
	// Ext are the IPv6 extension headers in order; NumExt of them are set.
	Ext    [MaxExtHeaders]ExtHeader
	NumExt int
	// Frag describes fragmentation.
	Frag Fragment
	// Payload is the upper-layer data: after the header (and extension
	// headers), up to the length the header gives.
	Payload []byte
	// PayloadOffset is the offset of Payload in the frame.
	PayloadOffset int
}

// ExtHeader is one IPv6 extension header.
type ExtHeader struct {
	Type uint8  // ProtoHopByHop, ProtoRouting, ProtoFragment or ProtoDstOpts
	Data []byte // the whole header, its next-header and length octets included
}

// Fragment is what an IP header says about fragmentation.
type Fragment struct {
	// Present: an IPv4 header with more-fragments set or an offset, or an
	// IPv6 fragment header (even an atomic one, RFC 6946).
	Present bool
	// Offset of this fragment's data in the datagram, in octets.
	Offset int
	// More is the more-fragments flag.
	More bool
	// ID is the identification (16 bits in IPv4, 32 in IPv6).
	ID uint32
}

// Fragmented reports whether the packet is a fragment of a datagram: its
// payload may not be the whole datagram, and when Frag.Offset is not zero
// it has no transport header.
func (ip *IP) Fragmented() bool { return ip.Frag.Present }

// whole reports whether the packet holds its whole datagram.
func (ip *IP) whole() bool { return ip.Frag.Offset == 0 && !ip.Frag.More }

// UDP is a UDP header and its payload.
type UDP struct {
	Header           []byte // 8 octets
	SrcPort, DstPort uint16
	Length           uint16
	Checksum         uint16
	// Payload is the data, cut to Length (in a first fragment, what the
	// fragment carries).
	Payload []byte
}

// TCP is a TCP header and its payload.
type TCP struct {
	Header           []byte // with the options
	SrcPort, DstPort uint16
	Seq, Ack         uint32
	Flags            uint16 // the nine flag bits, FIN in bit 0
	Window           uint16
	Options          []byte
	Payload          []byte
}

// ErrMalformed is matched (errors.Is) by every error Decode returns.
var ErrMalformed = errors.New("malformed frame")

// Error is what Decode found wrong.
type Error struct {
	Layer  string // "Ethernet", "802.1Q tag", "IPv4", "IPv6", "IPv6 extension header", "UDP", "TCP"
	Offset int    // of the layer's first octet in the frame
	Reason string
}

func (e *Error) Error() string {
	return fmt.Sprintf("%s at offset %d: %s", e.Layer, e.Offset, e.Reason)
}

// Is makes errors.Is(err, ErrMalformed) true.
func (e *Error) Is(target error) bool { return target == ErrMalformed }

func errf(layer string, off int, format string, a ...any) error {
	return &Error{Layer: layer, Offset: off, Reason: fmt.Sprintf(format, a...)}
}

// Decode decodes frame into f, overwriting all of f. It returns nil when
// frame is well-formed as far as it goes, else an *Error; either way f
// holds the layers decoded before the error. It never panics.
func Decode(frame []byte, f *Frame) error {
	*f = Frame{}
	if len(frame) < 14 {
		return errf("Ethernet", 0, "%d octets, shorter than the 14-octet header", len(frame))
	}
	f.Dst, f.Src = frame[0:6:6], frame[6:12:12]
	et := binary.BigEndian.Uint16(frame[12:14])
	off := 14
	for et == EtherTypeVLAN || et == EtherTypeQinQ {
		if f.NumTags == MaxTags {
			return errf("802.1Q tag", off-2, "more than %d VLAN tags", MaxTags)
		}
		if len(frame)-off < 4 {
			return errf("802.1Q tag", off-2, "truncated: %d octets after the TPID, want 4", len(frame)-off)
		}
		f.Tags[f.NumTags] = Tag{TPID: et, TCI: binary.BigEndian.Uint16(frame[off:])}
		f.NumTags++
		et = binary.BigEndian.Uint16(frame[off+2:])
		off += 4
	}
	f.EtherType, f.Payload = et, frame[off:]
	var err error
	switch et {
	case EtherTypeIPv4:
		err = f.IP.decode4(f.Payload, off)
	case EtherTypeIPv6:
		err = f.IP.decode6(f.Payload, off)
	default:
		return nil
	}
	if err != nil || f.IP.Frag.Offset != 0 {
		return err
	}
	l4off := f.IP.PayloadOffset
	switch f.IP.Protocol {
	case ProtoUDP:
		err = f.UDP.decode(f.IP.Payload, l4off, f.IP.whole())
		if err == nil {
			f.Transport = ProtoUDP
		}
	case ProtoTCP:
		err = f.TCP.decode(f.IP.Payload, l4off)
		if err == nil {
			f.Transport = ProtoTCP
		}
	}
	return err
}

func (ip *IP) decode4(p []byte, off int) error {
	const layer = "IPv4"
	if len(p) < 20 {
		return errf(layer, off, "%d octets, shorter than the 20-octet header", len(p))
	}
	if v := p[0] >> 4; v != 4 {
		return errf(layer, off, "version %d", v)
	}
	ihl := int(p[0]&0x0f) * 4
	if ihl < 20 {
		return errf(layer, off, "header length %d, below 20", ihl)
	}
	total := int(binary.BigEndian.Uint16(p[2:4]))
	switch {
	case total < ihl:
		return errf(layer, off, "total length %d, shorter than the %d-octet header", total, ihl)
	case total > len(p):
		return errf(layer, off, "total length %d exceeds the %d octets present", total, len(p))
	}
	if err := checkOptions4(p[20:ihl], off+20); err != nil {
		return err
	}
	ff := binary.BigEndian.Uint16(p[6:8])
	// Field by field: Decode zeroed ip, and a composite literal would
	// build and copy the whole struct.
	ip.Version = 4
	ip.Header = p[:ihl:ihl]
	ip.Src = netip.AddrFrom4([4]byte(p[12:16]))
	ip.Dst = netip.AddrFrom4([4]byte(p[16:20]))
	ip.TTL = p[8]
	ip.Protocol = p[9]
	ip.Options = p[20:ihl:ihl]
	ip.Frag.Offset = int(ff&0x1fff) * 8
	ip.Frag.More = ff&0x2000 != 0
	ip.Frag.ID = uint32(binary.BigEndian.Uint16(p[4:6]))
	ip.Frag.Present = ip.Frag.More || ip.Frag.Offset != 0
	ip.Payload = p[ihl:total:total]
	ip.PayloadOffset = off + ihl
	return nil
}

// checkOptions4 checks that IPv4 options are well-formed TLVs: End of
// Option List and No Operation are one octet, every other option has a
// length octet of at least 2 that fits in the header.
func checkOptions4(opts []byte, off int) error {
	for i := 0; i < len(opts); {
		switch opts[i] {
		case 0: // end of option list: the rest is padding
			return nil
		case 1:
			i++
			continue
		}
		if i+1 >= len(opts) {
			return errf("IPv4 option", off+i, "option %d has no length octet", opts[i])
		}
		n := int(opts[i+1])
		if n < 2 || i+n > len(opts) {
			return errf("IPv4 option", off+i, "option %d has length %d, %d octets of options left", opts[i], n, len(opts)-i)
		}
		i += n
	}
	return nil
}

func (ip *IP) decode6(p []byte, off int) error {
	const layer = "IPv6"
	if len(p) < 40 {
		return errf(layer, off, "%d octets, shorter than the 40-octet header", len(p))
	}
	if v := p[0] >> 4; v != 6 {
		return errf(layer, off, "version %d", v)
	}
	plen := int(binary.BigEndian.Uint16(p[4:6]))
	if 40+plen > len(p) {
		return errf(layer, off, "payload length %d exceeds the %d octets present", plen, len(p)-40)
	}
	next, rest := p[6], p[40:40+plen:40+plen]
	hoff := off + 40
	// Decode zeroed ip; the extension headers go straight into it, and the
	// fixed header's fields are set once the chain is known to be good.
	frag := &ip.Frag
	n := 0
walk:
	for {
		switch next {
		case ProtoHopByHop, ProtoRouting, ProtoDstOpts, ProtoFragment:
		default:
			break walk
		}
		const elayer = "IPv6 extension header"
		switch {
		case next == ProtoHopByHop && n > 0:
			return errf(elayer, hoff, "hop-by-hop options not right after the IPv6 header (RFC 8200 §4.1)")
		case next == ProtoFragment && frag.Present:
			return errf(elayer, hoff, "a second fragment header")
		case n == MaxExtHeaders:
			return errf(elayer, hoff, "more than %d extension headers", MaxExtHeaders)
		case len(rest) < 8:
			return errf(elayer, hoff, "header %d truncated: %d octets left, want at least 8", next, len(rest))
		}
		size := 8
		if next != ProtoFragment {
			size = (int(rest[1]) + 1) * 8
			if size > len(rest) {
				return errf(elayer, hoff, "header %d is %d octets long, %d left", next, size, len(rest))
			}
		}
		ip.Ext[n] = ExtHeader{Type: next, Data: rest[:size:size]}
		n++
		if next == ProtoFragment {
			fo := binary.BigEndian.Uint16(rest[2:4])
			*frag = Fragment{Present: true, Offset: int(fo &^ 7), More: fo&1 != 0, ID: binary.BigEndian.Uint32(rest[4:8])}
		}
		next, rest, hoff = rest[0], rest[size:], hoff+size
		if frag.Offset != 0 {
			break // a later fragment: what follows is data, not headers
		}
	}
	ip.Version = 6
	ip.Header = p[:40:40]
	ip.Src = netip.AddrFrom16([16]byte(p[8:24]))
	ip.Dst = netip.AddrFrom16([16]byte(p[24:40]))
	ip.TTL = p[7]
	ip.Protocol = next
	ip.NumExt = n
	ip.Payload = rest
	ip.PayloadOffset = hoff
	return nil
}

// ExtHeaders returns the IPv6 extension headers, in order.
func (ip *IP) ExtHeaders() []ExtHeader { return ip.Ext[:ip.NumExt] }

func (u *UDP) decode(p []byte, off int, whole bool) error {
	const layer = "UDP"
	if len(p) < 8 {
		return errf(layer, off, "%d octets, shorter than the 8-octet header", len(p))
	}
	n := int(binary.BigEndian.Uint16(p[4:6]))
	end := len(p)
	if whole {
		switch {
		case n < 8:
			return errf(layer, off, "length %d, below the 8-octet header", n)
		case n > len(p):
			return errf(layer, off, "length %d exceeds the %d octets present", n, len(p))
		}
		end = n
	}
	*u = UDP{
		Header:   p[:8:8],
		SrcPort:  binary.BigEndian.Uint16(p[0:2]),
		DstPort:  binary.BigEndian.Uint16(p[2:4]),
		Length:   uint16(n),
		Checksum: binary.BigEndian.Uint16(p[6:8]),
		Payload:  p[8:end:end],
	}
	return nil
}

func (t *TCP) decode(p []byte, off int) error {
	const layer = "TCP"
	if len(p) < 20 {
		return errf(layer, off, "%d octets, shorter than the 20-octet header", len(p))
	}
	doff := int(p[12]>>4) * 4
	switch {
	case doff < 20:
		return errf(layer, off, "data offset %d, below 20", doff)
	case doff > len(p):
		return errf(layer, off, "data offset %d exceeds the %d octets present", doff, len(p))
	}
	*t = TCP{
		Header:  p[:doff:doff],
		SrcPort: binary.BigEndian.Uint16(p[0:2]),
		DstPort: binary.BigEndian.Uint16(p[2:4]),
		Seq:     binary.BigEndian.Uint32(p[4:8]),
		Ack:     binary.BigEndian.Uint32(p[8:12]),
		Flags:   binary.BigEndian.Uint16(p[12:14]) & 0x01ff,
		Window:  binary.BigEndian.Uint16(p[14:16]),
		Options: p[20:doff:doff],
		Payload: p[doff:],
	}
	return nil
}
