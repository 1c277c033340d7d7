package plan

import (
	"fmt"
	"net"
	"net/netip"
)

// Key is the key of a set element, one Go type per key type (KeyType).
// Keys are comparable: equal keys name the same element. Package nftwire
// encodes and decodes them.
type Key interface {
	fmt.Stringer
	// Fits tells whether the key is of a set's key type.
	Fits(KeyType) bool
}

// MarkKey is a 32-bit id (a dispatch id), key type mark.
type MarkKey uint32

func (k MarkKey) String() string    { return fmt.Sprintf("0x%08x", uint32(k)) }
func (MarkKey) Fits(t KeyType) bool { return t == KeyMark }

// MACKey is an Ethernet address, key type ether_addr.
type MACKey [6]byte

// MACOf is the key of a 6-byte hardware address (a device's MAC).
func MACOf(hw net.HardwareAddr) MACKey {
	var k MACKey
	copy(k[:], hw)
	return k
}

func (k MACKey) String() string    { return net.HardwareAddr(k[:]).String() }
func (MACKey) Fits(t KeyType) bool { return t == KeyMAC }

// AddrKey is an IPv4 or IPv6 address, key type ipv4_addr or ipv6_addr.
type AddrKey netip.Addr

func (k AddrKey) String() string      { return netip.Addr(k).String() }
func (k AddrKey) Fits(t KeyType) bool { return t == addrKeyType(netip.Addr(k), KeyIPv4, KeyIPv6) }

func addrKeyType(a netip.Addr, v4, v6 KeyType) KeyType {
	switch {
	case a.Is4():
		return v4
	case a.Is6():
		return v6
	}
	return 0
}

// GuardKey is a device's MAC and an address bound to it (sets guard4 and
// guard6): ether_addr . ipv4_addr or ether_addr . ipv6_addr.
type GuardKey struct {
	MAC  MACKey
	Addr netip.Addr
}

func (k GuardKey) String() string      { return k.MAC.String() + " . " + k.Addr.String() }
func (k GuardKey) Fits(t KeyType) bool { return t == addrKeyType(k.Addr, KeyMACIPv4, KeyMACIPv6) }

// NetKey is a range of addresses of the configured classes (maps net4 and
// net6): mark . ipv4_addr or mark . ipv6_addr, from First to Last. ID is 0
// (the concatenation is what makes the kernel take a range end per
// element).
type NetKey struct {
	ID          uint32
	First, Last netip.Addr
}

func (k NetKey) String() string {
	r := k.First.String() + "-" + k.Last.String()
	for bits := k.First.BitLen(); bits >= 0; bits-- {
		if p := netip.PrefixFrom(k.First, bits); p.Masked().Addr() == k.First {
			if _, l := prefixRange(p); l == k.Last {
				r = p.String()
				break
			}
		}
	}
	return fmt.Sprintf("%d . %s", k.ID, r)
}

func (k NetKey) Fits(t KeyType) bool {
	return t == addrKeyType(k.First, KeyMarkIPv4, KeyMarkIPv6) && k.First.BitLen() == k.Last.BitLen() && !k.Last.Less(k.First)
}

// PeerGroupKey says that a group of several peers contains a peer (set
// peergrp): mark . mark.
type PeerGroupKey struct {
	Peer, Group uint32
}

func (k PeerGroupKey) String() string    { return fmt.Sprintf("0x%08x . 0x%08x", k.Peer, k.Group) }
func (PeerGroupKey) Fits(t KeyType) bool { return t == KeyMarkMark }

// ACLKey is one allowed (peer group, protocol, remote port) of an
// allow-only policy (sets acl_out and acl_in): dispatch id . group id .
// family . protocol . remote port. Family is 0 (any), NFPROTO_IPV4 or
// NFPROTO_IPV6, with bit 0x80 for the stateless form of
// direction-initiated; Proto 0 is any protocol, Port 0 any port.
type ACLKey struct {
	Dispatch, Group uint32
	Family          uint8
	Proto           uint8
	Port            uint16
}

func (k ACLKey) String() string {
	return fmt.Sprintf("0x%08x . 0x%08x . 0x%02x . %s . %d", k.Dispatch, k.Group, k.Family, protoName(k.Proto), k.Port)
}
func (ACLKey) Fits(t KeyType) bool { return t == KeyACL }

// FlowKey is a bridged flow the reflexive mode remembers (sets flows4 and
// flows6, filled by the packet path): the two MACs, the two addresses, the
// protocol and two 16-bit fields: TCP and UDP ports, or an ICMP echo's
// identifier and, in the high byte of B, the request type.
type FlowKey struct {
	SrcMAC, DstMAC MACKey
	Src, Dst       netip.Addr
	Proto          uint8
	A, B           uint16
}

func (k FlowKey) String() string {
	return fmt.Sprintf("%s . %s . %s . %s . %s . %d . %d", k.SrcMAC, k.DstMAC, k.Src, k.Dst, protoName(k.Proto), k.A, k.B)
}

func (k FlowKey) Fits(t KeyType) bool {
	return t == addrKeyType(k.Src, KeyFlow4, KeyFlow6) && k.Src.BitLen() == k.Dst.BitLen()
}

// Involves tells whether the flow is from or to a MAC.
func (k FlowKey) Involves(mac MACKey) bool { return k.SrcMAC == mac || k.DstMAC == mac }
