package dhcpsnoop

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
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
// sockets see the frame on an interface with VLAN offload, and the snooper is
// meant to listen on the VLAN (or bridge) interface itself.
func DHCPFilter() ([]bpf.RawInstruction, error) {
	a := newAsm()
	a.add(bpf.LoadAbsolute{Off: 12, Size: 2}) // ethertype
	a.jeq(etherTypeV4, "", "v6")
	a.add(bpf.LoadAbsolute{Off: 14 + 9, Size: 1}) // IPv4 protocol
	a.jeq(17, "", "drop")
	a.add(bpf.LoadAbsolute{Off: 14 + 6, Size: 2}) // flags + fragment offset
	a.jset(0x1fff, "drop", "")
	a.add(bpf.LoadMemShift{Off: 14}) // X = IPv4 header length
	a.add(bpf.LoadIndirect{Off: 14, Size: 2})
	a.jeq(portBOOTPS, "accept", "")
	a.jeq(portBOOTPC, "accept", "")
	a.add(bpf.LoadIndirect{Off: 16, Size: 2})
	a.jeq(portBOOTPS, "accept", "")
	a.jeq(portBOOTPC, "accept", "drop")
	a.label("v6")
	a.jeq(etherTypeV6, "", "drop")
	a.add(bpf.LoadAbsolute{Off: 14 + 6, Size: 1}) // next header
	a.jeq(17, "", "drop")
	a.add(bpf.LoadAbsolute{Off: 14 + 40, Size: 2})
	a.jeq(portDHCP6C, "accept", "")
	a.jeq(portDHCP6S, "accept", "")
	a.add(bpf.LoadAbsolute{Off: 14 + 42, Size: 2})
	a.jeq(portDHCP6C, "accept", "")
	a.jeq(portDHCP6S, "accept", "drop")
	a.label("accept")
	a.add(bpf.RetConstant{Val: captureLen})
	a.label("drop")
	a.add(bpf.RetConstant{Val: 0})
	prog, err := a.assemble()
	if err != nil {
		return nil, fmt.Errorf("assembling the DHCP capture filter: %w", err)
	}
	return prog, nil
}

// asm is a tiny assembler with symbolic jump targets, so that the filter
// above can be read and changed without counting instructions by hand.
type asm struct {
	ins    []bpf.Instruction
	jumps  map[int][2]string // instruction index → true/false target labels
	labels map[string]int
}

func newAsm() *asm { return &asm{jumps: map[int][2]string{}, labels: map[string]int{}} }

func (a *asm) add(i bpf.Instruction) { a.ins = append(a.ins, i) }
func (a *asm) label(name string)     { a.labels[name] = len(a.ins) }

// jeq and jset jump to the named labels; "" means the next instruction.
func (a *asm) jeq(v uint32, t, f string) { a.jump(bpf.JumpEqual, v, t, f) }
func (a *asm) jset(v uint32, t, f string) {
	a.jump(bpf.JumpBitsSet, v, t, f)
}

func (a *asm) jump(c bpf.JumpTest, v uint32, t, f string) {
	a.jumps[len(a.ins)] = [2]string{t, f}
	a.add(bpf.JumpIf{Cond: c, Val: v})
}

func (a *asm) assemble() ([]bpf.RawInstruction, error) {
	skip := func(from int, label string) (uint8, error) {
		if label == "" {
			return 0, nil
		}
		to, ok := a.labels[label]
		if !ok || to <= from || to-from-1 > 255 {
			return 0, fmt.Errorf("bad jump from %d to %q", from, label)
		}
		return uint8(to - from - 1), nil
	}
	for i, targets := range a.jumps {
		j := a.ins[i].(bpf.JumpIf)
		var err error
		if j.SkipTrue, err = skip(i, targets[0]); err != nil {
			return nil, err
		}
		if j.SkipFalse, err = skip(i, targets[1]); err != nil {
			return nil, err
		}
		a.ins[i] = j
	}
	return bpf.Assemble(a.ins)
}

// isConfirmation reports, cheaply and without full parsing, whether an
// (already filtered) frame is a server's DHCPACK or a DHCPv6 Reply (plain or
// in a Relay-Reply). The capture path queues those ahead of everything else:
// a flood of requests (a DHCP starvation attack) must not push out the one
// frame that tells us a real device got its lease. A forged ACK only gets
// the same treatment as the flood.
func isConfirmation(f []byte) bool {
	if len(f) < 14 {
		return false
	}
	switch binary.BigEndian.Uint16(f[12:14]) {
	case etherTypeV4:
		ip := f[14:]
		if len(ip) < 20 {
			return false
		}
		ihl := int(ip[0]&0x0f) * 4
		if ihl < 20 || len(ip) < ihl+8+240 {
			return false
		}
		udp := ip[ihl:]
		if binary.BigEndian.Uint16(udp[0:2]) != portBOOTPS {
			return false
		}
		// Scan the options (after the 236-octet header and the cookie)
		// for message type 53 = ACK.
		opts := udp[8+240:]
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
	case etherTypeV6:
		if len(f) < 14+40+8+1 || f[14+6] != 17 {
			return false
		}
		t := f[14+40+8]
		return binary.BigEndian.Uint16(f[14+40:]) == portDHCP6S && (t == 7 || t == 13)
	}
	return false
}
