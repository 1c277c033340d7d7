package netlab

import (
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/net/bpf"

	"github.com/openmud/mud/internal/packet/capture"
)

// SaveFrames writes every frame program lets through on iface in namespace
// ns, in both directions, into dir, one file per frame named by name (i
// counts the frames from 0), until the test ends. It is how packages
// capture the real frames their fixtures and fuzz seeds are made of.
func SaveFrames(t testing.TB, dir, ns, iface string, program []bpf.Instruction, name func(i int, frame []byte, info capture.Info) string) {
	t.Helper()
	c, err := capture.Open(iface, capture.Config{NetNS: ns, Filter: capture.Filter{Program: program}})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { c.Close(); <-done })
	go func() {
		defer close(done)
		buf := make([]byte, capture.SnapLen+4)
		for i := 0; ; i++ {
			f, info, err := c.ReadFrame(buf)
			if err != nil {
				return
			}
			_ = os.WriteFile(filepath.Join(dir, name(i, f, info)), f, 0o644)
		}
	}()
}
