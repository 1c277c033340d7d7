package mudctl

import (
	"fmt"
	"io"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/policy"
	"github.com/spf13/cobra"
)

func newCompileCmd() *cobra.Command {
	var nft bool
	cmd := &cobra.Command{
		Use:   "compile FILE [--nft]",
		Short: "Show the policy a MUD file compiles to (--nft: the nftables ruleset mudd would install for a sample device)",
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
			text := policy.Text(p)
			if nft {
				// The same code that builds mudd's netlink batch, for a
				// sample device (02:00:5e:00:53:01, 192.0.2.10,
				// 2001:db8:1::10) with peers left for the resolver to fill.
				if text, err = enforcer.Render(*p, enforcer.Device{}, enforcer.RenderOptions{}); err != nil {
					return cli.Failure(fmt.Errorf("%s: %w", args[0], err))
				}
			} else if format == "json" {
				return writeJSON(cmd.OutOrStdout(), api.NewCompiledPolicy(p))
			}
			if _, err := io.WriteString(cmd.OutOrStdout(), text); err != nil {
				return cli.IOError(fmt.Errorf("write: %w", err))
			}
			return nil
		},
	}
	cmd.Flags().BoolVar(&nft, "nft", false, "print the nftables ruleset (nft syntax) for a sample device instead (its ids are illustrative)")
	return cmd
}
