package e2e

import (
	"encoding/binary"
	"fmt"
	"runtime"
	"unsafe"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/lab/netlab"
)

// attachXDPRedirect attaches, in generic (SKB) mode, an XDP program to dev
// in namespace ns that redirects every frame arriving on dev out of to
// (bpf_redirect), so that the frames bypass the bridge dev is a port of:
// the kind of program a fast path or an offload loads. detach removes it.
func attachXDPRedirect(ns, dev, to string) (detach func() error, err error) {
	var fd int
	err = netlab.Do(ns, func() error {
		link, err := vnl.LinkByName(dev)
		if err != nil {
			return err
		}
		target, err := vnl.LinkByName(to)
		if err != nil {
			return err
		}
		if fd, err = loadXDPRedirect(target.Attrs().Index); err != nil {
			return err
		}
		defer unix.Close(fd) // the attached program keeps its own reference
		return vnl.LinkSetXdpFdWithFlags(link, fd, nl.XDP_FLAGS_SKB_MODE)
	})
	if err != nil {
		return nil, fmt.Errorf("attaching an XDP program to %s in %s: %w", dev, ns, err)
	}
	return func() error {
		return netlab.Do(ns, func() error {
			link, err := vnl.LinkByName(dev)
			if err != nil {
				return err
			}
			return vnl.LinkSetXdpFdWithFlags(link, -1, nl.XDP_FLAGS_SKB_MODE)
		})
	}, nil
}

// loadXDPRedirect loads `return bpf_redirect(ifindex, 0);` as an XDP
// program and returns its file descriptor.
func loadXDPRedirect(ifindex int) (int, error) {
	insn := func(code, regs uint8, off int16, imm int32) []byte {
		b := []byte{code, regs, 0, 0, 0, 0, 0, 0}
		binary.NativeEndian.PutUint16(b[2:], uint16(off))
		binary.NativeEndian.PutUint32(b[4:], uint32(imm))
		return b
	}
	var insns []byte
	insns = append(insns, insn(0xb7, 0x01, 0, int32(ifindex))...) // BPF_ALU64|BPF_MOV|BPF_K r1 = ifindex
	insns = append(insns, insn(0xb7, 0x02, 0, 0)...)              // r2 = 0 (flags)
	insns = append(insns, insn(0x85, 0x00, 0, 23)...)             // BPF_JMP|BPF_CALL bpf_redirect (BPF_FUNC_redirect)
	insns = append(insns, insn(0x95, 0x00, 0, 0)...)              // BPF_JMP|BPF_EXIT: r0, XDP_REDIRECT
	license := []byte("GPL\x00")
	attr := make([]byte, 128) // union bpf_attr, BPF_PROG_LOAD's fields first
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_XDP)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)/8))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		return -1, fmt.Errorf("loading an XDP program: %w", errno)
	}
	return int(fd), nil
}
