// Package cli holds what mudd's and mudctl's command lines share: the exit
// codes, the error type that carries one, and the way a command tree is run.
// The command trees themselves are in internal/cli/mudd and
// internal/cli/mudctl; cmd/mudd is one binary that is both (it runs mudctl
// when invoked under that name).
//
// Exit codes, the same in both programs:
//
//	0  success
//	1  a finding or a refusal: an invalid file, a signature that does not
//	   verify, the daemon refused the request, a capture or the daemon
//	   could not start or failed
//	2  a usage error (unknown command or flag, wrong arguments), or input
//	   that could not be read or written
package cli

import (
	"context"
	"errors"
	"fmt"
	"io"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"
)

// Exit codes shared by mudd and mudctl.
const (
	ExitOK      = 0
	ExitFailure = 1 // a finding or a refusal
	ExitUsage   = 2 // bad usage, or an I/O error
)

// ExitCodesHelp documents the exit codes in a command's long help (and so
// in its man page: the long help is Markdown there, and the indented list
// a preformatted block).
const ExitCodesHelp = `Exit status:

    0  success
    1  a finding or a refusal: an invalid MUD file, a signature that
       does not verify, the daemon refused the request, a capture that
       could not start or failed
    2  a usage error (unknown command or flag, wrong arguments), or
       input that could not be read or written (a missing file, mudd
       unreachable)
`

// ExitError carries the exit code a command wants. Its message is printed
// unless Silent is set (the command has already said why).
type ExitError struct {
	Code   int
	Err    error
	Silent bool
}

func (e *ExitError) Error() string {
	if e.Err == nil {
		return fmt.Sprintf("exit status %d", e.Code)
	}
	return e.Err.Error()
}

func (e *ExitError) Unwrap() error { return e.Err }

// Failure is a finding or a refusal (exit 1).
func Failure(err error) error { return &ExitError{Code: ExitFailure, Err: err} }

// IOError is a failure to read or write (exit 2).
func IOError(err error) error { return &ExitError{Code: ExitUsage, Err: err} }

// Usage is a usage error found by the command itself (exit 2).
func Usage(format string, a ...any) error {
	return &ExitError{Code: ExitUsage, Err: fmt.Errorf(format, a...)}
}

// Exit ends with code; the command has printed why.
func Exit(code int) error { return &ExitError{Code: code, Silent: true} }

// Finish prepares a command tree to be run: every RunE and
// PersistentPreRunE in it reports an error that carries no exit code as a
// failure (exit 1), so that only the errors cobra finds itself (unknown
// command or flag, wrong number of arguments, a required flag missing)
// are usage errors. Call it once the tree is complete.
func Finish(root *cobra.Command) *cobra.Command {
	var walk func(*cobra.Command)
	walk = func(c *cobra.Command) {
		if run := c.RunE; run != nil {
			c.RunE = func(cmd *cobra.Command, args []string) error { return asFailure(run(cmd, args)) }
		}
		if pre := c.PersistentPreRunE; pre != nil {
			c.PersistentPreRunE = func(cmd *cobra.Command, args []string) error { return asFailure(pre(cmd, args)) }
		}
		for _, sub := range c.Commands() {
			walk(sub)
		}
	}
	walk(root)
	return root
}

func asFailure(err error) error {
	var ee *ExitError
	if err == nil || errors.As(err, &ee) {
		return err
	}
	return Failure(err)
}

// Run executes root with args and returns the process exit code. Errors
// are printed to stderr after the program's name.
func Run(ctx context.Context, root *cobra.Command, args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if args == nil {
		args = []string{} // cobra reads os.Args for nil
	}
	root.SetArgs(args)
	root.SetIn(stdin)
	root.SetOut(stdout)
	root.SetErr(stderr)
	if versionAsked(root, args) {
		if _, err := fmt.Fprintf(stdout, "%s %s\n", root.Name(), root.Version); err != nil {
			return Code(root, IOError(err), stderr)
		}
		return ExitOK
	}
	cmd, err := root.ExecuteContextC(ctx)
	return Code(cmd, err, stderr)
}

// versionAsked reports whether args ask for root's version, deciding as
// cobra does: --version (or -v) given to the root command itself, without
// --help. Run prints it as "NAME VERSION" rather than letting cobra print
// it through a version template: a text/template that can run makes the
// linker keep every exported method of every type in the binary (templates
// call methods by name), which made mudd a third larger.
func versionAsked(root *cobra.Command, args []string) bool {
	if root.Version == "" {
		return false
	}
	// As ExecuteC does before it looks for the command.
	root.InitDefaultHelpCmd()
	root.InitDefaultHelpFlag()
	root.InitDefaultVersionFlag()
	cmd, rest, err := root.Find(args)
	if err != nil || cmd != root || root.Flags().Lookup("version") == nil {
		return false
	}
	// The root's flags parsed into a copy: only help and version are kept,
	// the others are parsed (so that a flag's argument is not taken for
	// one) and dropped, and root's own flags stay unparsed for cobra.
	fs := pflag.NewFlagSet(root.Name(), pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	var help, version bool
	root.Flags().VisitAll(func(f *pflag.Flag) {
		switch f.Name {
		case "help":
			fs.BoolVarP(&help, f.Name, f.Shorthand, false, "")
		case "version":
			fs.BoolVarP(&version, f.Name, f.Shorthand, false, "")
		default:
			fs.VarPF(ignored(f.Value.Type()), f.Name, f.Shorthand, "").NoOptDefVal = f.NoOptDefVal
		}
	})
	return fs.Parse(rest) == nil && version && !help
}

// ignored is a flag value that accepts anything and keeps nothing.
type ignored string

func (ignored) Set(string) error { return nil }
func (ignored) String() string   { return "" }
func (t ignored) Type() string   { return string(t) }

// Code maps the error of cmd (the command ExecuteC found, or nil) to an
// exit code, printing its message after the program's name.
func Code(cmd *cobra.Command, err error, stderr io.Writer) int {
	if err == nil {
		return ExitOK
	}
	name := "mud"
	if cmd != nil {
		name = cmd.Root().Name()
	}
	var ee *ExitError
	if errors.As(err, &ee) {
		if !ee.Silent && ee.Err != nil {
			fmt.Fprintf(stderr, "%s: %v\n", name, ee.Err)
		}
		return ee.Code
	}
	// What reaches here was found by cobra before any command ran: an
	// unknown command or flag, wrong arguments, a required flag missing.
	fmt.Fprintf(stderr, "%s: %v\n", name, err)
	if cmd != nil {
		fmt.Fprintf(stderr, "Run '%s --help' for usage.\n", cmd.CommandPath())
	}
	return ExitUsage
}
