package packet

import (
	"encoding/binary"
	"math/rand/v2"
	"testing"
)

// Checksum6 agrees with an independent RFC 1071 sum (checksumOK) over UDP
// datagrams of even and odd lengths: the value it gives for a datagram with
// a zero checksum field, written there, makes the datagram check, and it is
// zero over the datagram then; any changed octet makes it non-zero.
func TestChecksum6(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for n := range 80 {
		payload := make([]byte, n)
		for i := range payload {
			payload[i] = byte(rng.UintN(256))
		}
		var f Frame
		if err := Decode(eth(EtherTypeIPv6, ipv6(ProtoUDP, udp(546, 547, payload))), &f); err != nil {
			t.Fatal(err)
		}
		msg := f.IP.Payload
		c := Checksum6(f.IP.Src, f.IP.Dst, ProtoUDP, msg)
		binary.BigEndian.PutUint16(msg[6:8], c)
		if !checksumOK(&f) {
			t.Fatalf("%d octets of payload: %#04x does not check", n, c)
		}
		if got := Checksum6(f.IP.Src, f.IP.Dst, ProtoUDP, msg); got != 0 {
			t.Fatalf("%d octets of payload: %#04x over the checked datagram, want 0", n, got)
		}
		msg[len(msg)-1] ^= 0x10
		if Checksum6(f.IP.Src, f.IP.Dst, ProtoUDP, msg) == 0 {
			t.Fatalf("%d octets of payload: a changed datagram still sums to 0", n)
		}
		if Checksum6(f.IP.Dst, f.IP.Src, ProtoTCP, msg) == 0 {
			t.Fatalf("%d octets of payload: another pseudo-header sums to 0", n)
		}
	}
}
