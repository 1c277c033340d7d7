package nftmon

import (
	"encoding/binary"
	"fmt"

	"golang.org/x/net/bpf"
	"golang.org/x/sys/unix"
)

// MaxIgnoredPorts bounds IgnorePorts (the filter's jumps are 8-bit).
const MaxIgnoredPorts = 64

// ignoreFilter is a classic BPF socket filter that drops datagrams whose
// first message comes from one of ports, except generation notifications.
// The kernel coalesces only notifications of one transaction into a
// datagram, and sends the NEWGEN in a datagram of its own, so the first
// message speaks for the datagram.
//
// BPF loads fields in network byte order; netlink headers are in host byte
// order, so the constants are the host's bytes read big-endian.
func ignoreFilter(ports []uint32) (*unix.SockFprog, error) {
	raw, err := bpf.Assemble(ignoreProgram(ports))
	if err != nil {
		return nil, fmt.Errorf("assembling the socket filter: %w", err)
	}
	filter := make([]unix.SockFilter, len(raw))
	for i, r := range raw {
		filter[i] = unix.SockFilter{Code: r.Op, Jt: r.Jt, Jf: r.Jf, K: r.K}
	}
	return &unix.SockFprog{Len: uint16(len(filter)), Filter: &filter[0]}, nil
}

func ignoreProgram(ports []uint32) []bpf.Instruction {
	const (
		offType = 4  // nlmsg_type
		offPort = 12 // nlmsg_pid
	)
	genType := hostBE16(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWGEN)
	n := len(ports)
	prog := []bpf.Instruction{
		bpf.LoadAbsolute{Off: offType, Size: 2},
		// A generation: jump over the port load and the n tests to the
		// accept.
		bpf.JumpIf{Cond: bpf.JumpEqual, Val: uint32(genType), SkipTrue: uint8(n + 1)},
		bpf.LoadAbsolute{Off: offPort, Size: 4},
	}
	for i, p := range ports {
		// Skip the remaining tests and the accept to reach the drop.
		prog = append(prog, bpf.JumpIf{Cond: bpf.JumpEqual, Val: hostBE32(p), SkipTrue: uint8(n - i)})
	}
	return append(prog, bpf.RetConstant{Val: ^uint32(0)}, bpf.RetConstant{Val: 0})
}

func hostBE16(v uint16) uint16 {
	return binary.BigEndian.Uint16(binary.NativeEndian.AppendUint16(nil, v))
}

func hostBE32(v uint32) uint32 {
	return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, v))
}
