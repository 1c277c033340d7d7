// Command mudd is the MUD (RFC 8520) enforcement daemon for a Linux
// gateway, and mudctl, its CLI, in one binary: invoked as mudctl (a
// symbolic link named so, as the packages install /usr/bin/mudctl →
// /usr/sbin/mudd) it runs mudctl, otherwise mudd. The command lines are
// packages internal/cli/mudd and internal/cli/mudctl.
//
// Usage:
//
//	mudd [--config /etc/mud/mudd.yaml]
//	mudd --version
//	mudd check-config [--config FILE]   # exit 0 valid, 1 invalid
//	mudctl COMMAND ...                  # see mudctl --help
package main

import (
	"os"
	"path/filepath"

	"github.com/openmud/mud/internal/cli/mudctl"
	"github.com/openmud/mud/internal/cli/mudd"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	if filepath.Base(os.Args[0]) == "mudctl" {
		os.Exit(mudctl.Main(version, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(mudd.Main(version, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
