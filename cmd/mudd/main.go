// Command mudd is the MUD (RFC 8520) enforcement daemon for a Linux
// gateway: it snoops DHCP for the MUD URLs devices announce, fetches and
// verifies their MUD files, and installs per-device allow-lists in nftables
// through package manager, which does all the work; this command only
// wires the parts together.
//
// Usage:
//
//	mudd [--config /etc/mud/mudd.yaml]
//	mudd --version
//	mudd check-config [--config FILE]   # exit 0 valid, 1 invalid
//
// Signals:
//
//   - SIGHUP re-reads the configuration file. What changes live: the
//     controller and my-controller mappings, policy.on_failure,
//     policy.local_networks and log.level. Everything else (interfaces,
//     state_dir, socket, trust anchors, fetch and dns settings, metrics
//     listener, nft priorities, log.format) needs a restart; mudd logs
//     which of those changed and keeps the old values.
//   - SIGTERM and SIGINT stop mudd cleanly. Its nftables tables stay in
//     the kernel on purpose: a MUD device must never be left open while
//     mudd restarts or is upgraded, and the next start reconciles the
//     kernel to the stored desired state in one atomic transaction. To
//     remove enforcement, delete the tables (nft delete table inet mud;
//     nft delete table bridge mud).
//
// With systemd (Type=notify), mudd sends READY=1 once the kernel holds the
// stored state and WATCHDOG=1 at half the WatchdogSec interval while its
// manager answers.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/openmud/mud/config"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

// run parses the command line and returns the exit code.
func run(args []string, stdout, stderr io.Writer) int {
	if len(args) > 0 && args[0] == "check-config" {
		return checkConfig(args[1:], stdout, stderr)
	}
	fs := flag.NewFlagSet("mudd", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration `file`")
	showVersion := fs.Bool("version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if *showVersion {
		fmt.Fprintf(stdout, "mudd %s\n", version)
		return 0
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mudd: unexpected argument %q (commands: check-config)\n", fs.Arg(0))
		return 2
	}
	if err := daemon(*path, stderr); err != nil {
		fmt.Fprintf(stderr, "mudd: %v\n", err)
		return 1
	}
	return 0
}

// checkConfig validates a configuration file: exit 0 when it is usable,
// 1 when it is not (the error names the key), 2 on a usage error.
func checkConfig(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mudd check-config", flag.ContinueOnError)
	fs.SetOutput(stderr)
	path := fs.String("config", config.DefaultPath, "configuration `file`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mudd check-config: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	if _, err := config.Load(*path); err != nil {
		fmt.Fprintf(stderr, "%s: %v\n", *path, err)
		return 1
	}
	fmt.Fprintf(stdout, "%s: ok\n", *path)
	return 0
}
