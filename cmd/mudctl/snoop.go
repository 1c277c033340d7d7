package main

import (
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openmud/mud/dhcpsnoop"
)

// newSnoopCmd is `mudctl snoop IFACE...`: watch DHCP on the interfaces and
// print lease and MUD URL events as they happen, without the daemon, so an
// admin can check what a device announces. Needs CAP_NET_RAW.
func newSnoopCmd() *cobra.Command {
	var netns string
	cmd := &cobra.Command{
		Use:   "snoop IFACE...",
		Short: "Watch DHCP for MUD URLs and leases, printing events as they happen",
		Long: "Captures DHCPv4 and DHCPv6 on the given interfaces (both directions) and prints one line\n" +
			"per event: a MUD URL announced, a lease bound, renewed, changed, released or expired,\n" +
			"and flags (invalid URL, v4/v6 URL mismatch, chaddr spoofing). -o json prints JSON lines.\n" +
			"Needs CAP_NET_RAW. Stops on Ctrl-C.",
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			asJSON := false
			if f := cmd.Flag("output"); f != nil {
				asJSON = f.Value.String() == "json"
			}
			s, err := dhcpsnoop.New(dhcpsnoop.Config{
				Interfaces: args,
				NetNS:      netns,
				Logger:     slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return err
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			runErr := make(chan error, 1)
			go func() { runErr <- s.Run(ctx) }()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			for ev := range s.Events() { // closed when Run returns
				if err != nil {
					continue // output broken: drain until Run has stopped
				}
				if asJSON {
					err = enc.Encode(ev)
				} else {
					_, err = fmt.Fprintln(out, ev.String())
				}
				if err != nil {
					stop()
				}
			}
			if rerr := <-runErr; rerr != nil {
				return rerr
			}
			return err
		},
	}
	cmd.Flags().StringVar(&netns, "netns", "", "capture inside this named network namespace (/var/run/netns/NAME)")
	return cmd
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
