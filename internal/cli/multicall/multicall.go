// Package multicall builds mud's binary the way it is installed: one
// executable, mudd (package cmd/mudd), that runs as mudctl when it is
// invoked under that name, and mudctl as a symbolic link to it
// (/usr/bin/mudctl → /usr/sbin/mudd in the packages). The tests and labs
// that run the binaries build them with it.
package multicall

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
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
	// Env is added to go build's environment: another target, as
	// GOARCH=mipsle GOMIPS=softfloat.
	Env []string
	// Tags are build tags: nodashboard leaves the web dashboard out, as
	// the OpenWrt package's build does.
	Tags []string
}

// Build compiles the binary as dir/mudd (static: CGO_ENABLED=0,
// -trimpath) and links dir/mudctl to it. It needs the go command, and
// builds in this module (ModuleDir) with the dependency versions of its
// go.mod, also when called from a module that requires this one.
func Build(dir string, o Options) (mudd, mudctl string, err error) {
	mod, err := ModuleDir()
	if err != nil {
		return "", "", err
	}
	if mudd, err = filepath.Abs(filepath.Join(dir, "mudd")); err != nil {
		return "", "", err
	}
	ldflags := ""
	if o.Strip {
		ldflags = "-s -w"
	}
	if o.Version != "" {
		ldflags += " -X main.version=" + o.Version
	}
	args := []string{"build", "-trimpath", "-ldflags", ldflags}
	if len(o.Tags) > 0 {
		args = append(args, "-tags", strings.Join(o.Tags, ","))
	}
	cmd := exec.Command("go", append(args, "-o", mudd, Package)...)
	cmd.Dir = mod
	cmd.Env = append(append(os.Environ(), "CGO_ENABLED=0"), o.Env...)
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", "", fmt.Errorf("go build %s: %w\n%s", Package, err, out)
	}
	if mudctl, err = Link(mudd, filepath.Dir(mudd)); err != nil {
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

// ModuleDir returns the directory of this module, github.com/openmud/mud,
// as the go command resolves it from the working directory: the main
// module's, or where a module that requires it (packaging/go.mod) finds it.
func ModuleDir() (string, error) {
	var stderr bytes.Buffer
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", module)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return "", fmt.Errorf("locating module %s: %w\n%s", module, err, stderr.Bytes())
	}
	dir := strings.TrimSpace(string(out))
	if dir == "" {
		return "", fmt.Errorf("locating module %s: go list names no directory", module)
	}
	return dir, nil
}

// module is the path of the module Package is in.
const module = "github.com/openmud/mud"
