// Package multicall builds mud's binary the way it is installed: one
// executable, mudd (package cmd/mudd), that runs as mudctl when it is
// invoked under that name, and mudctl as a symbolic link to it
// (/usr/bin/mudctl → /usr/sbin/mudd in the packages). The tests and labs
// that run the binaries build them with it.
package multicall

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// Package is the import path of the multicall binary.
const Package = "github.com/openmud/mud/cmd/mudd"

// Options of Build.
type Options struct {
	// Version is set as main.version (empty: the binary's default, "dev").
	Version string
	// Strip drops the symbol table and debug information (-s -w), as
	// release builds do.
	Strip bool
}

// Build compiles the binary as dir/mudd (static: CGO_ENABLED=0,
// -trimpath) and links dir/mudctl to it. It needs the go command and runs
// inside this module.
func Build(dir string, o Options) (mudd, mudctl string, err error) {
	mudd = filepath.Join(dir, "mudd")
	ldflags := ""
	if o.Strip {
		ldflags = "-s -w"
	}
	if o.Version != "" {
		ldflags += " -X main.version=" + o.Version
	}
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", ldflags, "-o", mudd, Package)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build %s: %w\n%s", Package, err, out)
	}
	if mudctl, err = Link(mudd, dir); err != nil {
		return "", "", err
	}
	return mudd, mudctl, nil
}

// Link makes dir/mudctl a symbolic link to the mudd binary and returns its
// path. The link is relative when both are in one directory, so that the
// directory can be copied.
func Link(mudd, dir string) (string, error) {
	mudctl := filepath.Join(dir, "mudctl")
	target, err := filepath.Abs(mudd)
	if err != nil {
		return "", fmt.Errorf("linking mudctl to mudd: %w", err)
	}
	if abs, err := filepath.Abs(dir); err == nil && filepath.Dir(target) == abs {
		target = filepath.Base(target)
	}
	if err := os.Symlink(target, mudctl); err != nil {
		return "", fmt.Errorf("linking mudctl to mudd: %w", err)
	}
	return mudctl, nil
}
