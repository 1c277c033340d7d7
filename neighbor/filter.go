package neighbor

import (
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet"
	"github.com/openmud/mud/internal/packet/capture"
)

// captureLen is how much of a frame the filter keeps: an Ethernet frame of
// the usual 1500-octet MTU with two VLAN tags. Neighbour discovery is
// never longer (the checksum needs the whole message; a truncated one is
// refused).
const captureLen = 1522

// Filter returns the classic BPF program the learner's packet sockets run in
// the kernel: it keeps ARP, and IPv6 with hop limit 255 whose next header
// is ICMPv6 (no extension headers) of type Router Solicitation, Neighbor
// Solicitation or Neighbor Advertisement; everything else is dropped before
// it is queued. Offsets are those of an untagged frame, as the kernel hands
// frames to the filter with any VLAN tag held apart.
func Filter() ([]bpf.Instruction, error) {
	a := capture.NewProgram()
	a.Add(bpf.LoadAbsolute{Off: 12, Size: 2}) // EtherType
	a.JumpEqual(etherTypeARP, "accept", "")
	a.JumpEqual(packet.EtherTypeIPv6, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 6, Size: 2}) // next header, hop limit
	a.JumpEqual(protoICMPv6<<8|255, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 40, Size: 1}) // ICMPv6 type
	a.JumpEqual(icmpRS, "accept", "")
	a.JumpEqual(icmpNS, "accept", "")
	a.JumpEqual(icmpNA, "accept", "drop")
	a.Label("accept")
	a.Add(bpf.RetConstant{Val: captureLen})
	a.Label("drop")
	a.Add(bpf.RetConstant{Val: 0})
	prog, err := a.Instructions()
	if err != nil {
		return nil, fmt.Errorf("neighbor: assembling the capture filter: %w", err)
	}
	return prog, nil
}
