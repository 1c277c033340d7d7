package mudctl

import (
	"encoding/json"
	"fmt"
	"io"

	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
	"github.com/spf13/cobra"
)

// loadPolicy reads, validates and compiles one MUD file. Findings go to
// stderr: errors make the command fail with exit 1, warnings are shown.
func loadPolicy(cmd *cobra.Command, name string) (*mudfile.File, *policy.Policy, error) {
	data, err := readMUDFile(name)
	if err != nil {
		return nil, nil, cli.IOError(err)
	}
	res := mudfile.Parse(data)
	printFindings(cmd.ErrOrStderr(), name, res)
	if !res.Valid() {
		return nil, nil, cli.Failure(fmt.Errorf("%s is not a valid MUD file (see mudctl lint %s)", name, name))
	}
	p, err := policy.Compile(res.File, policy.Context{})
	if err != nil {
		return nil, nil, cli.Failure(fmt.Errorf("%s: %w", name, err))
	}
	return res.File, p, nil
}

func printFindings(w io.Writer, name string, res *mudfile.Result) {
	for _, f := range res.Findings {
		fmt.Fprintf(w, "%s: %s: %s: %s\n", name, f.Severity, f.Path, f.Message)
	}
}

// explainRule is one rule in `explain -o json`.
type explainRule struct {
	Direction string `json:"direction"`
	Name      string `json:"name"`
	Text      string `json:"text"`
	Default   bool   `json:"default,omitempty"`
}

func newExplainCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "explain FILE",
		Short: "Say in plain words what a MUD file lets the device do",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			f, p, err := loadPolicy(cmd, args[0])
			if err != nil {
				return err
			}
			out := cmd.OutOrStdout()
			if format == "table" {
				_, err := io.WriteString(out, policy.Explain(f, p))
				if err != nil {
					return cli.IOError(fmt.Errorf("write: %w", err))
				}
				return nil
			}
			var rules []explainRule
			for _, d := range []policy.Direction{policy.FromDevice, policy.ToDevice} {
				for _, r := range p.Rules(d) {
					rules = append(rules, explainRule{Direction: d.String(), Name: r.Name, Text: policy.Describe(d, r), Default: r.Default})
				}
			}
			v := struct {
				File          string        `json:"file"`
				MUD           mudfile.MUD   `json:"mud"`
				Rules         []explainRule `json:"rules"`
				NeedsApproval []string      `json:"needs_approval,omitempty"`
				Notes         []string      `json:"notes,omitempty"`
			}{args[0], f.MUD, rules, p.NeedsApproval, p.Notes}
			return writeJSON(out, v)
		},
	}
}

func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	if err := enc.Encode(v); err != nil {
		return cli.IOError(fmt.Errorf("write: %w", err))
	}
	return nil
}
