// Package mudd is the command line of mudd, the MUD (RFC 8520) enforcement
// daemon for a Linux gateway, and its wiring: it snoops DHCP for the MUD
// URLs devices announce, fetches and verifies their MUD files, and installs
// per-device allow-lists in nftables through package manager, which does
// all the work; this package only wires the parts together. cmd/mudd runs
// it; internal/gendocs makes its man pages.
package mudd

import (
	"context"
	"io"
	"strings"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/internal/cli"
	"github.com/spf13/cobra"
)

const longHelp = `mudd watches DHCP on the LAN interfaces for the MUD URLs devices announce
(RFC 8520 §10), fetches and verifies their MUD files, and installs a
per-device allow-list in nftables. It runs until SIGTERM or SIGINT.

Signals:

    SIGHUP     re-reads the configuration file. What changes live: the
               controller and my-controller mappings, policy.on_failure,
               policy.local_networks and log.level. Everything else
               (interfaces, state_dir, socket, trust anchors, the fetch,
               dns, addresses, violations and nft settings, the metrics
               listener, the dashboard, log.format) needs a restart; mudd
               logs which of those changed and keeps the old values.
    SIGTERM    (and SIGINT) stops mudd cleanly. Its nftables tables stay
               in the kernel on purpose: a MUD device must never be left
               open while mudd restarts or is upgraded, and the next start
               reconciles the kernel to the stored desired state in one
               atomic transaction. To remove enforcement, delete the
               tables: nft delete table inet mud; nft delete table bridge
               mud.

The prefixes of the LAN interfaces are followed as they change, without
a reload: local-networks (unless policy.local_networks sets it) and the
prefixes inside which the addresses devices use are learned follow them.

With dashboard.listen set, mudd serves its web dashboard there (the
devices, each device's policy, pending approvals, events), loopback only
unless dashboard.tls_cert and tls_key are set; it logs in with the
password whose hash dashboard.password_hash holds (mudd hash-password
prints one). It asks mudd through the control socket, as mudctl does.
A mudd built with the tag nodashboard (the OpenWrt package) has no
dashboard and refuses a configured dashboard.listen.

With systemd (Type=notify), mudd sends READY=1 once the kernel holds the
stored state and DHCP capture has started, and WATCHDOG=1 at half the
WatchdogSec interval while its manager answers.

Exit status:

    0  stopped by SIGTERM or SIGINT
    1  the configuration is invalid, or a part of mudd could not start
       or failed
    2  a usage error (unknown command or flag, an argument)`

// NewRoot builds mudd's command tree: `mudd [--config FILE]` runs the
// daemon, `mudd check-config` validates a configuration file, `mudd
// hash-password` hashes the dashboard's password. Each call
// returns a fresh tree; building it reads nothing.
func NewRoot(version string) *cobra.Command {
	var path string
	root := &cobra.Command{
		Use:           "mudd",
		Short:         "MUD (RFC 8520) enforcement daemon",
		Long:          longHelp,
		Version:       version,
		Args:          cobra.NoArgs,
		SilenceUsage:  true,
		SilenceErrors: true,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemon(path, version, cmd.ErrOrStderr())
		},
	}
	root.CompletionOptions.DisableDefaultCmd = true
	root.InitDefaultVersionFlag() // cli.Run prints the version, without a template
	root.PersistentFlags().StringVar(&path, "config", config.DefaultPath, "configuration `file`")
	root.AddCommand(&cobra.Command{
		Use:   "check-config",
		Short: "Check a configuration file (exit 0 valid, 1 invalid, 2 usage error)",
		Long: `Check a configuration file as mudd would load it: unknown keys, wrong
types and invalid values are reported with the key they concern.

Exit status: 0 valid, 1 invalid or unreadable, 2 usage error.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := config.Load(path)
			if err != nil {
				return cli.Failure(err)
			}
			if err := checkDashboard(cfg); err != nil {
				return cli.Failure(err)
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), path+": ok\n"); err != nil {
				return cli.IOError(err)
			}
			return nil
		},
	})
	root.AddCommand(hashPasswordCmd())
	return cli.Finish(root)
}

// Main runs mudd with args (without the program name) and returns the
// process exit code.
func Main(version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Run(context.Background(), NewRoot(version), singleDash(args), stdin, stdout, stderr)
}

// singleDash accepts the single-dash spellings of mudd's long flags
// (-config FILE, -config=FILE, -version, -help), which its command line
// has always taken, by giving them their second dash. mudd has no
// one-letter flags these could be mistaken for.
func singleDash(args []string) []string {
	out := make([]string, len(args))
	for i, a := range args {
		name, _, _ := strings.Cut(a, "=")
		switch name {
		case "-config", "-version", "-help":
			a = "-" + a
		case "--":
			return append(out[:i], args[i:]...)
		}
		out[i] = a
	}
	return out
}
