package mudctl

import (
	"context"
	"errors"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/policy/graph"
	"github.com/openmud/mud/policy/graph/apigraph"
	"github.com/spf13/cobra"
)

// newDaemonGraphCmd draws a device's policy: DOT by default, SVG through
// Graphviz with --svg.
func newDaemonGraphCmd() *cobra.Command {
	var svg bool
	cmd := &cobra.Command{
		Use:   "graph MAC",
		Short: "Draw a device's policy: the peers it may talk to, as DOT (or SVG with --svg)",
		Long: `graph prints the policy in force for a device as a Graphviz DOT graph: the
device in the middle, one node per peer its MUD file and overrides name,
edges labelled by direction, protocol, port and who opens the connection,
and the default deny. Pipe it to dot(1), or use --svg, which runs
Graphviz's dot when it is installed.`,
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mac, err := macArg(args[0])
			if err != nil {
				return err
			}
			return daemonRun(cmd, func(ctx context.Context, c *api.Client, _ string) error {
				v, err := c.Policy(ctx, mac, false)
				if err != nil {
					return err
				}
				dot, err := apigraph.DOT(v, mac)
				if err != nil {
					return cli.Failure(err)
				}
				if svg {
					out, err := graph.SVG(ctx, dot)
					if errors.Is(err, graph.ErrNoGraphviz) {
						return cli.Failure(errors.New("--svg needs Graphviz's dot (install graphviz), or print DOT without --svg"))
					}
					if err != nil {
						return cli.Failure(err)
					}
					dot = out
				}
				_, err = cmd.OutOrStdout().Write(dot)
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&svg, "svg", false, "print SVG, drawn by Graphviz's dot")
	return cmd
}
