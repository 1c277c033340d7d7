package mudctl

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os/signal"
	"syscall"

	"github.com/spf13/cobra"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/internal/cli"
)

// newSnoopCmd is `mudctl snoop IFACE...`: watch DHCP on the interfaces and
// print lease and MUD URL events as they happen, without the daemon, so an
// admin can check what a device announces. Needs CAP_NET_RAW.
func newSnoopCmd() *cobra.Command {
	var netns, capture string
	cmd := &cobra.Command{
		Use:   "snoop IFACE...",
		Short: "Watch DHCP for MUD URLs and leases, printing events as they happen",
		Long: `Captures DHCPv4 and DHCPv6 on the given interfaces (both directions) and prints one line
per event: a MUD URL announced, a lease bound, renewed, changed, released or expired,
and flags (invalid URL, v4/v6 URL mismatch, chaddr spoofing). -o json prints JSON lines.
Needs CAP_NET_RAW. Stops on Ctrl-C (exit 0); a capture that cannot start (no such
interface, no CAP_NET_RAW) is exit 1. --capture ports also captures on every port of an
interface that is a bridge, to see a DHCP server elsewhere on the LAN (its unicast
answers and the clients' renewals never reach the bridge itself).`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			format, err := outputFormat(cmd)
			if err != nil {
				return err
			}
			s, err := dhcpsnoop.New(dhcpsnoop.Config{
				Interfaces: args,
				NetNS:      netns,
				Capture:    dhcpsnoop.Capture(capture),
				Logger:     slog.New(slog.NewTextHandler(cmd.ErrOrStderr(), &slog.HandlerOptions{Level: slog.LevelWarn})),
			})
			if err != nil {
				return cli.Usage("%v", err) // an impossible interface name, one given twice, an unknown capture mode
			}
			ctx, stop := signal.NotifyContext(cmdContext(cmd), syscall.SIGINT, syscall.SIGTERM)
			defer stop()
			runErr := make(chan error, 1)
			go func() { runErr <- s.Run(ctx) }()
			out := cmd.OutOrStdout()
			enc := json.NewEncoder(out)
			var werr error
			for ev := range s.Events() { // closed when Run returns
				if werr != nil {
					continue // output broken: drain until Run has stopped
				}
				if format == "json" {
					werr = enc.Encode(ev)
				} else {
					_, werr = fmt.Fprintln(out, ev.String())
				}
				if werr != nil {
					stop()
				}
			}
			if rerr := <-runErr; rerr != nil {
				return captureError(rerr)
			}
			if werr != nil {
				return cli.IOError(fmt.Errorf("write: %w", werr))
			}
			return nil
		},
	}
	cmd.Flags().StringVar(&capture, "capture", string(dhcpsnoop.CaptureBridge), "capture `mode`: bridge (the interfaces), ports (also a bridge's ports) or promiscuous")
	cmd.Flags().StringVar(&netns, "netns", "", "capture inside this named network `namespace` (/var/run/netns/NAME)")
	return cmd
}

// captureError is a capture that could not start or failed (exit 1), with
// a hint when the cause is a missing privilege.
func captureError(err error) error {
	if errors.Is(err, fs.ErrPermission) {
		return cli.Failure(fmt.Errorf("capture failed: %w (snoop needs CAP_NET_RAW: run it as root)", err))
	}
	return cli.Failure(fmt.Errorf("capture failed: %w", err))
}

func cmdContext(cmd *cobra.Command) context.Context {
	if ctx := cmd.Context(); ctx != nil {
		return ctx
	}
	return context.Background()
}
