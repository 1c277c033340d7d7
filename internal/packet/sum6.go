package packet

import (
	"encoding/binary"
	"net/netip"
)

// Checksum6 is the Internet checksum (RFC 1071) of an upper-layer message
// under the IPv6 pseudo-header (RFC 8200 §8.1) of src, dst and next header
// proto. Over a message whose checksum field holds zero it is the value to
// put there; over a message as received it is zero when the message's
// checksum is right. src and dst are IPv6 addresses; msg is the whole
// message (ICMPv6, UDP, TCP), at most 65535 octets in practice.
func Checksum6(src, dst netip.Addr, proto uint8, msg []byte) uint16 {
	s, d := src.As16(), dst.As16()
	var tail [8]byte
	binary.BigEndian.PutUint32(tail[0:4], uint32(len(msg)))
	tail[7] = proto
	return ^fold(sum16(sum16(sum16(sum16(0, s[:]), d[:]), tail[:]), msg))
}
