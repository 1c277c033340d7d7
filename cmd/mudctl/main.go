// Command mudctl is the administrator's CLI for mud (package
// internal/cli/mudctl). The mudd binary is mudctl too when invoked under
// that name; this command builds mudctl alone, for go install.
package main

import (
	"os"

	"github.com/openmud/mud/internal/cli/mudctl"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(mudctl.Main(version, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
