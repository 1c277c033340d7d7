package cli

import (
	"bytes"
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/spf13/cobra"
)

// tree is a program "prog" whose command "do" returns err.
func tree(err error) *cobra.Command {
	root := &cobra.Command{Use: "prog", SilenceErrors: true, SilenceUsage: true}
	do := &cobra.Command{Use: "do", Args: cobra.NoArgs, RunE: func(*cobra.Command, []string) error { return err }}
	do.Flags().String("name", "", "a flag")
	root.AddCommand(do)
	return Finish(root)
}

func TestExitCodes(t *testing.T) {
	for _, tc := range []struct {
		name   string
		err    error // what the command returns
		args   []string
		code   int
		stderr string
	}{
		{"success", nil, []string{"do"}, ExitOK, ""},
		{"an error without a code is a failure", errors.New("capture failed"), []string{"do"}, ExitFailure, "prog: capture failed\n"},
		{"a code the command chose", IOError(errors.New("read x: no such file")), []string{"do"}, ExitUsage, "prog: read x: no such file\n"},
		{"silent", Exit(ExitFailure), []string{"do"}, ExitFailure, ""},
		{"unknown flag", nil, []string{"do", "--frobnicate"}, ExitUsage, "prog: unknown flag: --frobnicate\nRun 'prog do --help' for usage.\n"},
		{"extra argument", nil, []string{"do", "x"}, ExitUsage, `prog: unknown command "x" for "prog do"`},
		{"unknown command", nil, []string{"frobnicate"}, ExitUsage, "Run 'prog --help' for usage."},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), tree(tc.err), tc.args, strings.NewReader(""), &out, &errb)
			if code != tc.code || !strings.Contains(errb.String(), tc.stderr) || (tc.stderr == "" && errb.Len() > 0) {
				t.Errorf("exit %d, stderr %q; want %d and %q", code, errb.String(), tc.code, tc.stderr)
			}
		})
	}
}

// --version is the root command's: it prints "NAME VERSION" whatever else
// the root's flags say, yields to --help, and is no flag of a subcommand.
func TestVersion(t *testing.T) {
	newTree := func() *cobra.Command {
		root := tree(nil)
		root.Version = "v1.2.3"
		root.PersistentFlags().String("config", "", "a flag with an argument")
		root.PersistentFlags().Bool("quiet", false, "a flag without one")
		return root
	}
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		version bool // printed
	}{
		{"long", []string{"--version"}, ExitOK, true},
		{"short", []string{"-v"}, ExitOK, true},
		{"after other flags", []string{"--config", "x.yaml", "--quiet", "--version"}, ExitOK, true},
		{"as a flag's argument", []string{"--config", "--version"}, ExitOK, false},
		{"false", []string{"--version=false"}, ExitOK, false},
		{"with help", []string{"--version", "--help"}, ExitOK, false},
		{"of a subcommand", []string{"do", "--version"}, ExitUsage, false},
		{"unknown flag", []string{"--version", "--frobnicate"}, ExitUsage, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			code := Run(context.Background(), newTree(), tc.args, strings.NewReader(""), &out, &errb)
			if printed := out.String() == "prog v1.2.3\n"; code != tc.code || printed != tc.version {
				t.Errorf("exit %d, stdout %q, stderr %q; want exit %d, version printed: %v", code, out.String(), errb.String(), tc.code, tc.version)
			}
		})
	}
}
