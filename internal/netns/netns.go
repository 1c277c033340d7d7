// Package netns runs code inside a Linux network namespace. Sockets (and
// netlink connections) created there stay in that namespace after the call
// returns, which is how mudd's parts work on a gateway's LAN namespace and
// how the lab tests reach theirs.
package netns

import (
	"errors"
	"fmt"
	"runtime"

	"github.com/vishvananda/netns"
)

// Do runs fn on an OS thread that has entered the named namespace (as made
// by `ip netns add`, under /var/run/netns). An empty name runs fn in place.
func Do(name string, fn func() error) error {
	if name == "" {
		return fn()
	}
	target, err := netns.GetFromName(name)
	if err != nil {
		return fmt.Errorf("opening network namespace %s: %w", name, err)
	}
	defer target.Close()
	if err := DoFd(int(target), fn); err != nil {
		return fmt.Errorf("in network namespace %s: %w", name, err)
	}
	return nil
}

// DoFd is Do for an open namespace file descriptor. fd <= 0 runs fn in
// place: callers' zero-valued configs mean "this namespace", and 0 is stdin,
// never a namespace they opened.
func DoFd(fd int, fn func() error) error {
	if fd <= 0 {
		return fn()
	}
	runtime.LockOSThread()
	orig, err := netns.Get()
	if err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("reading current network namespace: %w", err)
	}
	defer orig.Close()
	if err := netns.Set(netns.NsHandle(fd)); err != nil {
		runtime.UnlockOSThread()
		return fmt.Errorf("entering network namespace: %w", err)
	}
	fnErr := fn()
	if err := netns.Set(orig); err != nil {
		// This thread is stuck in the wrong namespace: keep it locked so the
		// runtime discards it with this goroutine.
		return errors.Join(fnErr, fmt.Errorf("returning to the original network namespace: %w", err))
	}
	runtime.UnlockOSThread()
	return fnErr
}
