package capture_test

import (
	"bytes"
	"context"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// A Reader hands over every frame of its interface, and outlives it: the
// interface deleted and created again, the Reader opens a new socket and
// reads on. It returns once its context is done.
func TestLabReaderReopens(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	ns := lab.Devices[0].NS
	const iface = "rd0"
	addLink := func() {
		t.Helper()
		for _, args := range [][]string{
			{"link", "add", iface, "type", "veth", "peer", "name", "rd1"},
			{"link", "set", iface, "up"}, {"link", "set", "rd1", "up"},
		} {
			if out, err := lab.Run(t.Context(), ns, "ip", args...); err != nil {
				t.Fatalf("ip %v: %v: %s", args, err, out)
			}
		}
	}
	addLink()
	var opens atomic.Int32
	open := func() (*capture.Conn, error) {
		opens.Add(1)
		return capture.Open(iface, capture.Config{NetNS: ns, Filter: capture.Filter{Program: experimental}})
	}
	conn, err := open()
	if err != nil {
		t.Fatal(err)
	}
	var (
		mu  sync.Mutex
		got [][]byte
	)
	seen := func(tag string) bool {
		mu.Lock()
		defer mu.Unlock()
		for _, f := range got {
			if bytes.Contains(f, []byte(tag)) {
				return true
			}
		}
		return false
	}
	r := capture.Reader{
		Interface: iface, Open: open, BufLen: 2048,
		Handle: func(f []byte, _ capture.Info) {
			mu.Lock()
			got = append(got, bytes.Clone(f))
			mu.Unlock()
		},
		Logger: slog.New(slog.DiscardHandler),
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx, conn) }()
	defer func() { cancel(); <-done }()

	// send sends a frame tagged tag on the interface until the Reader has
	// it.
	send := func(tag string) {
		t.Helper()
		s, err := capture.Open(iface, capture.Config{NetNS: ns, SendOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		deadline := time.Now().Add(10 * time.Second)
		for !seen(tag) {
			if time.Now().After(deadline) {
				t.Fatalf("the Reader never had %q", tag)
			}
			if err := s.Send(frameFrom(lab.Devices[0].MAC, tag)); err != nil {
				t.Fatal(err)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	send("before")
	if out, err := lab.Run(t.Context(), ns, "ip", "link", "del", iface); err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	addLink()
	send("after")
	if n := opens.Load(); n < 2 {
		t.Errorf("%d sockets opened: the first one read on", n)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return when its context ended")
	}
}
