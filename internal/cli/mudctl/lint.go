package mudctl

import (
	"encoding/json"
	"fmt"
	"io"
	"os"

	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/mudfile"
	"github.com/spf13/cobra"
)

// lintIssue is one entry of errors or warnings in `lint -o json`.
type lintIssue struct {
	Path    string `json:"path"`
	Message string `json:"message"`
}

// lintReport is the JSON object `lint -o json` prints per file.
type lintReport struct {
	File     string      `json:"file"`
	Valid    bool        `json:"valid"`
	Errors   []lintIssue `json:"errors"`
	Warnings []lintIssue `json:"warnings"`
}

func newLintCmd() *cobra.Command {
	var strict bool
	cmd := &cobra.Command{
		Use:   "lint FILE...",
		Short: "Check MUD files (exit 0 valid, 1 invalid, 2 usage or I/O error)",
		Long: `Check MUD files against RFC 8520, RFC 8519 and ietf-acldns, and report
every finding with its JSON path. Warnings (normalised quirks, ignored nodes)
leave a file valid unless --strict is given.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			code := cli.ExitOK
			enc := json.NewEncoder(cmd.OutOrStdout())
			for _, name := range args {
				rep, readErr := lintFile(name, strict)
				if readErr != nil {
					fmt.Fprintf(cmd.ErrOrStderr(), "mudctl: %v\n", readErr)
					code = cli.ExitUsage
				} else if !rep.Valid && code == cli.ExitOK {
					code = cli.ExitFailure
				}
				if format == "json" {
					if err := enc.Encode(rep); err != nil {
						return cli.IOError(fmt.Errorf("write: %w", err))
					}
					continue
				}
				printLintTable(cmd.OutOrStdout(), rep)
			}
			if code != cli.ExitOK {
				return cli.Exit(code)
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&strict, "strict", false, "treat warnings as errors")
	return cmd
}

// lintFile reads and checks one file. A read error is returned and also
// recorded in the report so JSON consumers see one object per file.
func lintFile(name string, strict bool) (lintReport, error) {
	rep := lintReport{File: name, Errors: []lintIssue{}, Warnings: []lintIssue{}}
	data, err := readMUDFile(name)
	if err != nil {
		rep.Errors = append(rep.Errors, lintIssue{Path: "/", Message: err.Error()})
		return rep, err
	}
	res := mudfile.Parse(data)
	for _, f := range res.Findings {
		is := lintIssue{Path: f.Path, Message: f.Message}
		if f.Severity == mudfile.Error || strict {
			rep.Errors = append(rep.Errors, is)
		} else {
			rep.Warnings = append(rep.Warnings, is)
		}
	}
	rep.Valid = res.File != nil && len(rep.Errors) == 0
	return rep, nil
}

func printLintTable(w io.Writer, rep lintReport) {
	verdict := "valid"
	if !rep.Valid {
		verdict = "INVALID"
	}
	fmt.Fprintf(w, "%s: %s (%d errors, %d warnings)\n", rep.File, verdict, len(rep.Errors), len(rep.Warnings))
	for _, is := range rep.Errors {
		fmt.Fprintf(w, "  error:   %s\n           %s\n", is.Path, is.Message)
	}
	for _, is := range rep.Warnings {
		fmt.Fprintf(w, "  warning: %s\n           %s\n", is.Path, is.Message)
	}
}

// readMUDFile reads a file, refusing early one larger than mudfile accepts
// so that a huge file is never loaded whole.
func readMUDFile(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, fmt.Errorf("read MUD file: %w", err)
	}
	defer f.Close()
	limit := int64(mudfile.DefaultLimits().MaxBytes)
	// One byte more than the limit, so that mudfile reports the size.
	data, err := io.ReadAll(io.LimitReader(f, limit+1))
	if err != nil {
		return nil, fmt.Errorf("read MUD file %s: %w", name, err)
	}
	return data, nil
}
