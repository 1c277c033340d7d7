package api

import (
	"errors"
	"fmt"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"syscall"
	"time"
)

// SocketMode is the control socket's permission: owner and group may
// connect, nobody else.
const SocketMode = 0o660

// Listen opens the control socket at path for Serve. It creates the parent
// directory (0755) if missing; replaces a stale socket left by a mudd that
// died, but refuses to start when something answers on it (another mudd)
// or when path is not a socket. The socket gets mode 0660 and, when group
// is not empty, that group (by name). The socket is created under a
// temporary name and renamed into place, so it is never reachable with
// other permissions. Closing the listener removes the socket.
func Listen(path, group string) (net.Listener, error) {
	fail := func(err error) (net.Listener, error) {
		return nil, fmt.Errorf("control socket %s: %w", path, err)
	}
	gid := -1
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			return fail(fmt.Errorf("group %q: %w", group, err))
		}
		if gid, err = strconv.Atoi(g.Gid); err != nil {
			return fail(fmt.Errorf("group %q has gid %q: %w", group, g.Gid, err))
		}
	}
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fail(err)
	}
	if err := removeStale(path); err != nil {
		return fail(err)
	}
	tmp := filepath.Join(dir, fmt.Sprintf(".%s.%d.tmp", filepath.Base(path), os.Getpid()))
	_ = os.Remove(tmp)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: tmp, Net: "unix"})
	if err != nil {
		return fail(err)
	}
	ln.SetUnlinkOnClose(false)
	err = os.Chmod(tmp, SocketMode)
	if err == nil && gid >= 0 {
		if err = os.Chown(tmp, -1, gid); err != nil {
			err = fmt.Errorf("set group %q: %w", group, err)
		}
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		_ = ln.Close()
		_ = os.Remove(tmp)
		return fail(err)
	}
	return &socketListener{UnixListener: ln, path: path}, nil
}

// removeStale removes path if it is a socket nobody answers on.
func removeStale(path string) error {
	fi, err := os.Lstat(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	if fi.Mode()&os.ModeSocket == 0 {
		return errors.New("exists and is not a socket; refusing to replace it")
	}
	c, err := net.DialTimeout("unix", path, time.Second)
	if err == nil {
		_ = c.Close()
		return errors.New("another process (mudd?) is listening on it")
	}
	if !errors.Is(err, syscall.ECONNREFUSED) {
		return fmt.Errorf("cannot tell whether it is in use: %w", err)
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("remove stale socket: %w", err)
	}
	return nil
}

// socketListener reports and, on Close, removes the final socket path
// (the UnixListener knows only the temporary name).
type socketListener struct {
	*net.UnixListener
	path string
}

func (l *socketListener) Addr() net.Addr { return &net.UnixAddr{Name: l.path, Net: "unix"} }

func (l *socketListener) Close() error {
	err := l.UnixListener.Close()
	if rerr := os.Remove(l.path); rerr != nil && !errors.Is(rerr, os.ErrNotExist) && err == nil {
		err = rerr
	}
	return err
}
