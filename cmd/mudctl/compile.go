package main

import (
	"fmt"
	"io"

	"github.com/openmud/mud/policy"
	"github.com/spf13/cobra"
)

func newCompileCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "compile FILE",
		Short: "Show the enforcer-neutral policy a MUD file compiles to",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			_, p, err := loadPolicy(cmd, args[0])
			if err != nil {
				return err
			}
			if format == "json" {
				return writeJSON(cmd.OutOrStdout(), p)
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), policy.Text(p)); err != nil {
				return ioError(fmt.Errorf("write: %w", err))
			}
			return nil
		},
	}
}
