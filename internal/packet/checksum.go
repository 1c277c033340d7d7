package packet

import "encoding/binary"

// FillUDPChecksum computes the UDP checksum of a decoded frame (RFC 768,
// RFC 8200 §8.1) and writes it into the frame's bytes, through f.UDP.Header.
// It is for a frame captured on its way out whose checksum the kernel left
// to the NIC (the header then holds only the pseudo-header sum): sent again
// through a packet socket as it is, it would reach its destination with a
// bad checksum. It does nothing, and returns false, unless the frame is a
// whole UDP datagram (not a fragment, its UDP length that of the IP
// payload) without an IPv6 routing header (whose final destination the
// pseudo-header would need).
func FillUDPChecksum(f *Frame) bool {
	if f.Transport != ProtoUDP || f.IP.Fragmented() || int(f.UDP.Length) != len(f.IP.Payload) {
		return false
	}
	var pseudo [40]byte
	n := 0
	switch f.IP.Version {
	case 4:
		n += copy(pseudo[n:], f.IP.Header[12:20])
	case 6:
		for _, e := range f.IP.ExtHeaders() {
			if e.Type == ProtoRouting {
				return false
			}
		}
		n += copy(pseudo[n:], f.IP.Header[8:40])
	default:
		return false
	}
	// zero, protocol, UDP length: 4 octets for both families' sums (the
	// IPv6 pseudo-header's 32-bit length and 24 zero bits add up the same).
	pseudo[n+1] = ProtoUDP
	binary.BigEndian.PutUint16(pseudo[n+2:], f.UDP.Length)
	n += 4
	udp := f.IP.Payload
	h := f.UDP.Header
	h[6], h[7] = 0, 0
	c := ^fold(sum16(sum16(0, pseudo[:n]), udp))
	if c == 0 {
		c = 0xffff // 0 means "no checksum" in IPv4 and is invalid in IPv6
	}
	binary.BigEndian.PutUint16(h[6:8], c)
	f.UDP.Checksum = c
	return true
}

// sum16 adds b to the one's-complement sum s (RFC 1071); b starts on an
// even offset of the checksummed data.
func sum16(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}

func fold(s uint32) uint16 {
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return uint16(s)
}
