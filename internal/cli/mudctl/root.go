// Package mudctl is the command tree of mudctl, the administrator's CLI for
// mud: offline commands that lint, explain, compile, verify and fetch MUD
// files and watch DHCP, and daemon commands that talk to mudd over its
// control socket. Logic lives in the packages; this is wiring. cmd/mudd
// runs it when invoked as mudctl, cmd/mudctl on its own; internal/gendocs
// makes its man pages and shell completions.
package mudctl

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/internal/cli"
	"github.com/spf13/cobra"
)

// DefaultSocket is where mudd listens unless its configuration says
// otherwise.
const DefaultSocket = "/run/mud/mudd.sock"

// Command groups of the top-level help.
const (
	groupOffline = "offline"
	groupDaemon  = "daemon"
)

// socketHelp documents --socket and where mudctl looks without it.
var socketHelp = fmt.Sprintf("`path` of mudd's control socket, for the daemon commands (default: $MUDCTL_SOCKET, else the socket in %s, else %s)",
	config.DefaultPath, DefaultSocket)

// resolveSocket is where mudctl finds mudd: the --socket flag, else
// $MUDCTL_SOCKET, else the socket mudd's configuration file names (OpenWrt
// moves it), else DefaultSocket. A configuration mudctl cannot read
// (permissions, a broken file) is not mudctl's business: mudd check-config
// reports it.
func resolveSocket(flag, env, configPath string) string {
	switch {
	case flag != "":
		return flag
	case env != "":
		return env
	}
	if c, err := config.Load(configPath); err == nil && c.Socket != "" {
		return c.Socket
	}
	return DefaultSocket
}

// socketFlag resolves the socket for a daemon command. Only daemon
// commands call it: offline commands never read mudd's configuration.
func socketFlag(cmd *cobra.Command) string {
	flag := ""
	if f := cmd.Flag("socket"); f != nil {
		flag = f.Value.String()
	}
	return resolveSocket(flag, os.Getenv("MUDCTL_SOCKET"), configPath(cmd))
}

// configPath is mudd's configuration file: --config, else
// config.DefaultPath.
func configPath(cmd *cobra.Command) string {
	if f := cmd.Flag("config"); f != nil && f.Value.String() != "" {
		return f.Value.String()
	}
	return config.DefaultPath
}

// NewRoot builds mudctl's command tree. Each call returns a fresh tree, so
// tests can run commands in-process without shared state. Building it
// reads nothing.
func NewRoot(version string) *cobra.Command {
	root := &cobra.Command{
		Use:   "mudctl",
		Short: "Inspect and manage MUD (RFC 8520) enforcement",
		Long: `mudctl checks MUD (RFC 8520) files and their signatures without a daemon
(lint, explain, compile, verify, fetch, snoop), and inspects and manages a
running mudd over its control socket (status, devices, approve, ...).

The daemon commands find mudd's socket in --socket, else $MUDCTL_SOCKET,
else the socket named in ` + config.DefaultPath + `, else ` + DefaultSocket + `.
Using it takes membership of mudd's socket group (or root). No other
command reads mudd's configuration.

With --fleet, status and devices read the fleet's etcd cluster instead of
mudd: every gateway sharing decisions through it (alive or down), their
devices, and the shared decisions, with the cluster and credentials of
store.etcd in mudd's configuration (--config, else ` + config.DefaultPath + `).

` + cli.ExitCodesHelp,
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			return checkFleetFlag(cmd)
		},
	}
	root.PersistentFlags().StringP("output", "o", "table", "output `format`: table or json")
	root.PersistentFlags().String("socket", "", socketHelp)
	root.PersistentFlags().String("config", "", "`path` of mudd's configuration, where the daemon commands find the socket and --fleet the etcd cluster (default "+config.DefaultPath+")")
	root.PersistentFlags().Bool("fleet", false, "status and devices: read every gateway of the fleet from etcd (store.etcd of mudd's configuration) instead of this gateway's mudd")
	root.InitDefaultVersionFlag() // cli.Run prints the version, without a template
	root.AddGroup(
		&cobra.Group{ID: groupOffline, Title: "Commands that need no daemon:"},
		&cobra.Group{ID: groupDaemon, Title: "Commands that talk to mudd:"},
	)
	for _, c := range []*cobra.Command{newLintCmd(), newExplainCmd(), newCompileCmd(), newVerifyCmd(), newFetchCmd(), newSnoopCmd()} {
		c.GroupID = groupOffline
		root.AddCommand(c)
	}
	addDaemonCommands(root)
	root.InitDefaultCompletionCmd()
	return cli.Finish(root)
}

// Main runs mudctl with args (without the program name) and returns the
// process exit code.
func Main(version string, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	return cli.Run(context.Background(), NewRoot(version), args, stdin, stdout, stderr)
}

// outputFormat returns the validated -o flag.
func outputFormat(cmd *cobra.Command) (string, error) {
	f := cmd.Flag("output")
	if f == nil {
		return "table", nil
	}
	switch v := f.Value.String(); v {
	case "table", "json":
		return v, nil
	default:
		return "", cli.Usage("invalid output format %q: use table or json", v)
	}
}

// groupCmd is a command that only holds subcommands: alone it prints its
// help; with an argument that names no subcommand it is a usage error.
func groupCmd(use, short string) *cobra.Command {
	return &cobra.Command{
		Use:   use,
		Short: short,
		Args:  cobra.NoArgs,
		RunE:  func(cmd *cobra.Command, _ []string) error { return cmd.Help() },
	}
}

// addAlias registers old as a hidden, deprecated spelling of cmd's flag
// name: it sets the same value and warns on stderr, naming the new flag.
func addAlias(cmd *cobra.Command, old, name string) {
	cmd.Flags().Var(&aliasValue{cmd: cmd, old: old, name: name}, old, "deprecated spelling of --"+name)
	_ = cmd.Flags().MarkHidden(old)
}

type aliasValue struct {
	cmd       *cobra.Command
	old, name string
	warned    bool
}

func (a *aliasValue) Set(v string) error {
	if !a.warned {
		a.warned = true
		fmt.Fprintf(a.cmd.ErrOrStderr(), "mudctl %s: warning: --%s is deprecated, use --%s\n", a.cmd.Name(), a.old, a.name)
	}
	return a.cmd.Flags().Set(a.name, v)
}

func (a *aliasValue) String() string { return "" }

func (a *aliasValue) Type() string { return a.cmd.Flags().Lookup(a.name).Value.Type() }

func fleetFlag(cmd *cobra.Command) bool {
	f := cmd.Flag("fleet")
	return f != nil && f.Value.String() == "true"
}

// checkFleetFlag refuses --fleet on commands other than status and
// devices.
func checkFleetFlag(cmd *cobra.Command) error {
	if !fleetFlag(cmd) {
		return nil
	}
	if cmd.Parent() != cmd.Root() || (cmd.Name() != "status" && cmd.Name() != "devices") {
		return cli.Usage("--fleet applies to status and devices only, not to %q", cmd.CommandPath())
	}
	return nil
}
