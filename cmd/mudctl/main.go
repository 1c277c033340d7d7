// Command mudctl is the administrator's CLI for mud: offline commands that
// lint, explain and compile MUD files, and daemon commands that talk to
// mudd over its unix socket. Logic lives in the packages; this is wiring.
package main

import (
	"os"
)

// version is set by the Makefile (-ldflags -X main.version=...).
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
