package api

import (
	"net"
	"os/user"
	"strconv"

	"golang.org/x/sys/unix"
)

// peerCaller reads the connecting process's credentials (SO_PEERCRED).
func peerCaller(c net.Conn) Caller {
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return Caller{}
	}
	raw, err := uc.SyscallConn()
	if err != nil {
		return Caller{}
	}
	var cred *unix.Ucred
	var cerr error
	if err := raw.Control(func(fd uintptr) {
		cred, cerr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil || cerr != nil {
		return Caller{}
	}
	caller := Caller{Known: true, UID: cred.Uid, GID: cred.Gid, PID: cred.Pid}
	if u, err := user.LookupId(strconv.FormatUint(uint64(cred.Uid), 10)); err == nil {
		caller.User = u.Username
	}
	return caller
}
