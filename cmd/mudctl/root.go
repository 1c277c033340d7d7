package main

import (
	"errors"
	"fmt"
	"io"
	"os"

	"github.com/openmud/mud/config"
	"github.com/spf13/cobra"
)

// Exit codes shared by all commands.
const (
	exitOK      = 0
	exitInvalid = 1 // the input was read and is not acceptable
	exitUsage   = 2 // bad usage, or an I/O error
)

// exitError carries the exit code a command wants; its message (if any) has
// already been printed when silent is set.
type exitError struct {
	code   int
	err    error
	silent bool
}

func (e *exitError) Error() string {
	if e.err == nil {
		return fmt.Sprintf("exit status %d", e.code)
	}
	return e.err.Error()
}

func (e *exitError) Unwrap() error { return e.err }

// ioError marks a failure to read or write (exit 2).
func ioError(err error) error { return &exitError{code: exitUsage, err: err} }

const defaultSocket = "/run/mud/mudd.sock"

// socketDefault is where mudctl finds mudd: $MUDCTL_SOCKET, else the
// socket mudd's configuration file names (OpenWrt moves it), else the
// packaged default. A configuration mudctl cannot read (permissions, a
// broken file) is not mudctl's business: mudd check-config reports it.
func socketDefault(env, configPath string) string {
	if env != "" {
		return env
	}
	if c, err := config.Load(configPath); err == nil && c.Socket != "" {
		return c.Socket
	}
	return defaultSocket
}

// newRootCmd builds the command tree. Each call returns a fresh tree, so
// tests can run commands in-process without shared state.
func newRootCmd() *cobra.Command {
	socket := socketDefault(os.Getenv("MUDCTL_SOCKET"), config.DefaultPath)
	root := &cobra.Command{
		Use:           "mudctl",
		Short:         "Inspect and manage MUD (RFC 8520) enforcement",
		Version:       version,
		SilenceUsage:  true,
		SilenceErrors: true,
		PersistentPreRunE: func(cmd *cobra.Command, args []string) error {
			if _, err := outputFormat(cmd); err != nil {
				return err
			}
			return nil
		},
	}
	root.PersistentFlags().StringP("output", "o", "table", "output format: table or json")
	root.PersistentFlags().String("socket", socket, "mudd control socket (default: $MUDCTL_SOCKET, else mudd's configured socket)")
	root.SetVersionTemplate("mudctl {{.Version}}\n")
	root.AddCommand(newLintCmd(), newExplainCmd(), newCompileCmd())
	root.AddCommand(newVerifyCmd(), newFetchCmd(), newSnoopCmd())
	addDaemonCommands(root)
	return root
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
		return "", fmt.Errorf("invalid output format %q: use table or json", v)
	}
}

// run executes mudctl with args and returns the process exit code.
func run(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	root := newRootCmd()
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	err := root.Execute()
	if err == nil {
		return exitOK
	}
	var ee *exitError
	if errors.As(err, &ee) {
		if !ee.silent && ee.err != nil {
			fmt.Fprintln(stderr, "mudctl:", ee.err)
		}
		return ee.code
	}
	// Anything cobra itself returns is a usage error (unknown flag or
	// command, wrong number of arguments).
	fmt.Fprintln(stderr, "mudctl:", err)
	return exitUsage
}
