package dhcpsnoop

import (
	"fmt"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet"
	"github.com/openmud/mud/internal/packet/capture"
)

// captureLen is how much of a frame the filter keeps: all of it, since
// DHCP options can fill a jumbo frame.
const captureLen = 0xffff

// DHCPFilter returns the classic BPF program the snooper attaches to its
// packet sockets: it accepts untagged IPv4 UDP to or from port 67 or 68
// (first fragments only: later ones carry no UDP header) and IPv6 UDP to or
// from port 546 or 547 with UDP as the first next header, and drops the
// rest in the kernel, so that non-DHCP traffic never reaches userspace.
//
// VLAN-tagged frames are not matched: Linux strips the tag before packet
// sockets see the frame on an interface with VLAN offload (the capture puts
// it back, and ParseFrame skips it), and the snooper is meant to listen on
// the VLAN (or bridge) interface itself.
func DHCPFilter() ([]bpf.Instruction, error) {
	a := capture.NewProgram()
	a.Add(bpf.LoadAbsolute{Off: 12, Size: 2}) // ethertype
	a.JumpEqual(etherTypeV4, "", "v6")
	a.Add(bpf.LoadAbsolute{Off: 14 + 9, Size: 1}) // IPv4 protocol
	a.JumpEqual(17, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 6, Size: 2}) // flags + fragment offset
	a.JumpBitsSet(0x1fff, "drop", "")
	a.Add(bpf.LoadMemShift{Off: 14}) // X = IPv4 header length
	a.Add(bpf.LoadIndirect{Off: 14, Size: 2})
	a.JumpEqual(portBOOTPS, "accept", "")
	a.JumpEqual(portBOOTPC, "accept", "")
	a.Add(bpf.LoadIndirect{Off: 16, Size: 2})
	a.JumpEqual(portBOOTPS, "accept", "")
	a.JumpEqual(portBOOTPC, "accept", "drop")
	a.Label("v6")
	a.JumpEqual(etherTypeV6, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 6, Size: 1}) // next header
	a.JumpEqual(17, "", "drop")
	a.Add(bpf.LoadAbsolute{Off: 14 + 40, Size: 2})
	a.JumpEqual(portDHCP6C, "accept", "")
	a.JumpEqual(portDHCP6S, "accept", "")
	a.Add(bpf.LoadAbsolute{Off: 14 + 42, Size: 2})
	a.JumpEqual(portDHCP6C, "accept", "")
	a.JumpEqual(portDHCP6S, "accept", "drop")
	a.Label("accept")
	a.Add(bpf.RetConstant{Val: captureLen})
	a.Label("drop")
	a.Add(bpf.RetConstant{Val: 0})
	prog, err := a.Instructions()
	if err != nil {
		return nil, fmt.Errorf("assembling the DHCP capture filter: %w", err)
	}
	return prog, nil
}

// isConfirmation reports, cheaply and without full parsing, whether an
// (already filtered) frame is a server's DHCPACK or a DHCPv6 Reply (plain or
// in a Relay-Reply). The capture path queues those ahead of everything else:
// a flood of requests (a DHCP starvation attack) must not push out the one
// frame that tells us a real device got its lease. A forged ACK only gets
// the same treatment as the flood.
func isConfirmation(f []byte) bool {
	var fr packet.Frame
	if packet.Decode(f, &fr) != nil || fr.Transport != packet.ProtoUDP || fr.IP.Fragmented() {
		return false
	}
	u := &fr.UDP
	switch fr.IP.Version {
	case 4:
		if u.SrcPort != portBOOTPS || len(u.Payload) < 240 {
			return false
		}
		// Scan the options (after the 236-octet header and the cookie)
		// for message type 53 = ACK.
		opts := u.Payload[240:]
		for i := 0; i+1 < len(opts); {
			switch opts[i] {
			case 0:
				i++
				continue
			case 255:
				return false
			case 53:
				return opts[i+1] == 1 && i+2 < len(opts) && opts[i+2] == 5
			}
			i += 2 + int(opts[i+1])
		}
	case 6:
		t := byte(0)
		if len(u.Payload) > 0 {
			t = u.Payload[0]
		}
		return u.SrcPort == portDHCP6S && (t == 7 || t == 13)
	}
	return false
}
