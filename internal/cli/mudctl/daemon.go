package mudctl

// Daemon commands: mudctl talking to mudd over the control socket
// (package api). Exit codes: 0 ok, 1 the daemon said no (not found,
// conflict, refused), 2 usage, or mudd cannot be reached.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/store"
	"github.com/spf13/cobra"
)

// daemonTimeout bounds one request (not a followed event stream).
const daemonTimeout = 30 * time.Second

// addDaemonCommands adds every command that needs a running mudd.
func addDaemonCommands(root *cobra.Command) {
	for _, c := range []*cobra.Command{
		newDaemonStatusCmd(),
		newDaemonDevicesCmd(),
		newDaemonDeviceCmd(),
		newDaemonPolicyCmd(),
		newDaemonGraphCmd(),
		newDaemonEventsCmd(),
		newDaemonViolationsCmd(),
		newDaemonActionCmd("approve", "Enforce a pending device's MUD file", (*api.Client).Approve, true),
		newDaemonActionCmd("reject", "Refuse a pending device's MUD file (it keeps the fallback)", (*api.Client).Reject, true),
		newDaemonActionCmd("quarantine", "Cut a device to the quarantine policy, ending its connections", (*api.Client).Quarantine, false),
		newDaemonActionCmd("release", "Lift a device's quarantine", (*api.Client).Release, false),
		newDaemonBindCmd(),
		newDaemonOverrideCmd(),
		newDaemonControllersCmd(),
		newDaemonRefreshCmd(),
		newDaemonImportCmd(),
	} {
		c.GroupID = groupDaemon
		root.AddCommand(c)
	}
}

// addReasonFlag adds --reason, kept with an admin action in the event log.
func addReasonFlag(cmd *cobra.Command, p *string) {
	cmd.Flags().StringVar(p, "reason", "", "why (kept in the event log)")
}

// daemonRun calls fn with a client for the --socket and a request
// context, and turns its error into mudctl's exit codes.
func daemonRun(cmd *cobra.Command, fn func(ctx context.Context, c *api.Client, format string) error) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	c := api.NewClient(socketFlag(cmd))
	defer c.Close()
	ctx, cancel := context.WithTimeout(cmd.Context(), daemonTimeout)
	defer cancel()
	return daemonExit(fn(ctx, c, format))
}

// daemonExit maps an error to an exit code: 1 when the daemon answered
// no, 2 when it could not be reached (or anything else went wrong here).
func daemonExit(err error) error {
	var ee *cli.ExitError
	var ae *api.Error
	switch {
	case err == nil:
		return nil
	case errors.As(err, &ee):
		return err
	case errors.As(err, &ae):
		return cli.Failure(err)
	}
	return cli.IOError(err)
}

// daemonShow runs get and prints its answer: as JSON with -o json, else
// with show.
func daemonShow[T any](cmd *cobra.Command, get func(*api.Client, context.Context) (T, error), show func(io.Writer, T) error) error {
	return daemonRun(cmd, func(ctx context.Context, c *api.Client, format string) error {
		v, err := get(c, ctx)
		if err != nil {
			return err
		}
		if format == "json" {
			return writeJSON(cmd.OutOrStdout(), v)
		}
		return show(cmd.OutOrStdout(), v)
	})
}

// onDevice adapts a per-device call to daemonShow, checking the MAC first.
// Calls take the client first, as method expressions of api.Client do.
func onDevice[T any](arg string, get func(*api.Client, context.Context, string) (T, error)) func(*api.Client, context.Context) (T, error) {
	return func(c *api.Client, ctx context.Context) (T, error) {
		mac, err := macArg(arg)
		if err != nil {
			var zero T
			return zero, err
		}
		return get(c, ctx, mac)
	}
}

// macArg normalises a MAC argument.
func macArg(s string) (string, error) {
	mac, err := store.NormalizeMAC(s)
	if err != nil {
		return "", cli.Usage("%q is not a MAC address (want e.g. 02:00:5e:10:00:01)", s)
	}
	return mac, nil
}

func newDaemonStatusCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "status",
		Short: "Show mudd's health: devices by state, policies, enforcer (--fleet: every gateway's)",
		Long: `status shows mudd's health: its devices by state, the policies installed,
the enforcer.

With --fleet it reads the fleet's etcd cluster instead: every gateway that
has keys there, alive (its liveness lease is current) or down (its device
summaries stay, its lease has gone), its devices by state and by
enforcement, and the shared decisions by kind. Exit status 1 when a key
could not be understood (its gateway's ERRORS column counts it; mudctl
--fleet devices shows it); 2 when store.backend is not etcd or etcd does
not answer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fleetFlag(cmd) {
				return runFleetStatus(cmd)
			}
			return daemonShow(cmd, (*api.Client).Status, printStatus)
		},
	}
}

func newDaemonDevicesCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "devices",
		Short: "List the devices mudd knows (--fleet: every gateway's)",
		Long: `devices lists the devices mudd knows.

With --fleet it lists the devices of every gateway of the fleet, as each
gateway last published them in etcd, with a GATEWAY column ("(down)" when
the gateway's liveness lease has gone: the row is what it published last).
A key that could not be understood is an ERROR row naming its gateway and
key, and the exit status is then 1; 2 when store.backend is not etcd or
etcd does not answer.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if fleetFlag(cmd) {
				return runFleetDevices(cmd)
			}
			return daemonShow(cmd, (*api.Client).Devices, printDevices)
		},
	}
}

func newDaemonDeviceCmd() *cobra.Command {
	dev := groupCmd("device", "Inspect one device")
	dev.AddCommand(&cobra.Command{
		Use:   "show MAC",
		Short: "Show a device: addresses, state, MUD file, overrides",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return daemonShow(cmd, onDevice(args[0], deviceWithViolations), printDeviceWithViolations)
		},
	})
	return dev
}

// recentViolations is how many of a device's violation records device
// show prints.
const recentViolations = 5

// deviceShown is a device and its most recent violation records; as JSON
// it is the device only, as api.Device is.
type deviceShown struct {
	api.Device
	violations []api.Violation
}

func deviceWithViolations(c *api.Client, ctx context.Context, mac string) (deviceShown, error) {
	d, err := c.Device(ctx, mac)
	if err != nil {
		return deviceShown{}, err
	}
	vs, err := c.Violations(ctx, mac)
	if err != nil {
		return deviceShown{}, err
	}
	return deviceShown{Device: d, violations: vs[:min(len(vs), recentViolations)]}, nil
}

func printDeviceWithViolations(w io.Writer, d deviceShown) error {
	if err := printDevice(w, d.Device); err != nil {
		return err
	}
	if len(d.violations) == 0 {
		return nil
	}
	fmt.Fprintln(w, "\nrecent violations (mudctl violations MAC lists them all):")
	return printViolations(w, d.violations)
}

func newDaemonViolationsCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "violations [MAC]",
		Short: "List what devices tried and were refused: peer, protocol, port, how often",
		Long: `violations lists the violation records mudd keeps from the drops the
enforcer logs: per device, direction, peer, protocol and port, with the
number of drops and when they were first and last seen, most recently
seen first. With a MAC, that device's only. The enforcer's log is
rate-limited, so a count is a lower bound.`,
		Args: cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			mac := ""
			if len(args) == 1 {
				var err error
				if mac, err = macArg(args[0]); err != nil {
					return err
				}
			}
			get := func(c *api.Client, ctx context.Context) ([]api.Violation, error) { return c.Violations(ctx, mac) }
			return daemonShow(cmd, get, printViolations)
		},
	}
}

func newDaemonPolicyCmd() *cobra.Command {
	pol := groupCmd("policy", "Inspect the policy in force for a device")
	var nft bool
	show := &cobra.Command{
		Use:   "show MAC",
		Short: "Show a device's rules in order, with packet and byte counters",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			get := func(c *api.Client, ctx context.Context, mac string) (api.PolicyView, error) {
				return c.Policy(ctx, mac, nft)
			}
			return daemonShow(cmd, onDevice(args[0], get), printPolicy)
		},
	}
	show.Flags().BoolVar(&nft, "nft", false, "also show the device's nftables ruleset as the kernel holds it (nft syntax, ids as installed)")
	pol.AddCommand(show)
	return pol
}

func newDaemonEventsCmd() *cobra.Command {
	var (
		follow bool
		since  uint64
		tail   int
	)
	cmd := &cobra.Command{
		Use:   "events",
		Short: "Show the event log (state changes, admin actions); -f follows",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if tail < 0 {
				return cli.Usage("--tail must not be negative")
			}
			q := api.EventsQuery{Since: since, Tail: tail}
			if !follow {
				get := func(c *api.Client, ctx context.Context) ([]api.Event, error) { return c.Events(ctx, q) }
				return daemonShow(cmd, get, printEvents)
			}
			return daemonFollow(cmd, q)
		},
	}
	cmd.Flags().BoolVarP(&follow, "follow", "f", false, "keep printing events as they happen (Ctrl-C stops)")
	cmd.Flags().Uint64Var(&since, "since", 0, "only events after this sequence number")
	cmd.Flags().IntVarP(&tail, "tail", "n", 0, "only the last N events (0: all)")
	return cmd
}

// daemonFollow streams events until interrupted; with -o json, one JSON
// object per line.
func daemonFollow(cmd *cobra.Command, q api.EventsQuery) error {
	format, err := outputFormat(cmd)
	if err != nil {
		return err
	}
	c := api.NewClient(socketFlag(cmd))
	defer c.Close()
	ctx, stop := signal.NotifyContext(cmd.Context(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	w := cmd.OutOrStdout()
	if format == "table" {
		if err := printEventHeader(w); err != nil {
			return err
		}
	}
	err = c.FollowEvents(ctx, q, func(e api.Event) error {
		if format == "json" {
			return writeJSONLine(w, e)
		}
		return printEventLine(w, e)
	})
	switch {
	case errors.Is(err, context.Canceled):
		return nil // interrupted: a normal end of -f
	case errors.Is(err, io.EOF):
		return cli.IOError(errors.New("mudd ended the event stream (stopping or restarting?)"))
	}
	return daemonExit(err)
}

type clientAction func(*api.Client, context.Context, string, api.ActionRequest) (api.Device, error)

func newDaemonActionCmd(name, short string, call clientAction, allFlag bool) *cobra.Command {
	var req api.ActionRequest
	cmd := &cobra.Command{
		Use:   name + " MAC",
		Short: short,
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			get := func(c *api.Client, ctx context.Context, mac string) (api.Device, error) {
				return call(c, ctx, mac, req)
			}
			return daemonShow(cmd, onDevice(args[0], get), printDeviceChange)
		},
	}
	addReasonFlag(cmd, &req.Reason)
	if allFlag {
		cmd.Flags().BoolVar(&req.AllWithURL, "all", false, "apply to every device announcing the same MUD URL")
	}
	return cmd
}

func newDaemonBindCmd() *cobra.Command {
	var (
		req    api.BindRequest
		unbind bool
		ips    []string
	)
	cmd := &cobra.Command{
		Use:   "bind MAC MUD_URL [--ip ADDR]...",
		Short: "Assign a MUD URL and static addresses to a device that emits none (--clear removes it)",
		Long: `Assign a MUD URL to a device that emits none, and its static addresses.

Each --ip is a static address of the device: it must be inside a LAN
prefix and held by no other device. It is bound to the device like a DHCP
lease's address: the device may send from it, and from nothing else that
is not bound to it. Without --ip, the first address of each family the
device uses (ARP, neighbour discovery) while it has no DHCP lease is bound
to it (an address-bound event). Binding again replaces the addresses.`,
		Args: cobra.RangeArgs(1, 2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if unbind == (len(args) == 2) {
				return cli.Usage("give either a MUD URL or --clear")
			}
			if unbind && len(ips) > 0 {
				return cli.Usage("--ip needs a MUD URL, not --clear")
			}
			if len(args) == 2 {
				req.MUDURL = args[1]
			}
			for _, s := range ips {
				a, err := netip.ParseAddr(s)
				if err != nil {
					return cli.Usage("--ip %q is not an IP address", s)
				}
				req.IPs = append(req.IPs, a)
			}
			get := func(c *api.Client, ctx context.Context, mac string) (api.Device, error) {
				return c.Bind(ctx, mac, req)
			}
			return daemonShow(cmd, onDevice(args[0], get), printDeviceChange)
		},
	}
	addReasonFlag(cmd, &req.Reason)
	cmd.Flags().BoolVar(&unbind, "clear", false, "remove the device's binding")
	cmd.Flags().StringArrayVar(&ips, "ip", nil, "a static address of the device (repeat for more)")
	return cmd
}

func newDaemonOverrideCmd() *cobra.Command {
	var (
		to, from, proto, port, comment string
		inbound                        bool
	)
	cmd := &cobra.Command{
		Use:   "override MAC allow|deny|clear|list",
		Short: "Add, clear or list a device's own allow/deny entries (checked before its MUD policy)",
		Long: `Add, clear or list a device's own allow/deny entries. They are checked, in
order, before the rules of the device's MUD file.

    override MAC allow --to 198.51.100.7 --proto tcp --port 443
    override MAC deny  --to ads.example.com
    override MAC allow --from 192.0.2.0/24 --proto tcp --port 22   # inbound
    override MAC deny  --inbound                                    # all inbound
    override MAC clear
    override MAC list

--to names the remote side of traffic from the device (an address, a prefix
or a DNS name); --from, of traffic to the device. --port is the destination
port: the remote's for --to, the device's for --from.`,
		Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			verb := args[1]
			ruleFlags := to != "" || from != "" || proto != "" || port != "" || comment != "" || inbound
			var req api.OverrideRequest
			switch verb {
			case "allow", "deny":
				var err error
				if req, err = overrideRequest(verb, to, from, proto, port, comment, inbound); err != nil {
					return err
				}
			case "clear", "list":
				if ruleFlags {
					return cli.Usage("override %s takes no rule flags", verb)
				}
			default:
				return cli.Usage("override: %q: want allow, deny, clear or list", verb)
			}
			get := func(c *api.Client, ctx context.Context, mac string) (api.Overrides, error) {
				switch verb {
				case "clear":
					return api.Overrides{MAC: mac, Rules: []api.Override{}}, c.ClearOverrides(ctx, mac)
				case "list":
					d, err := c.Device(ctx, mac)
					return api.Overrides{MAC: mac, Rules: orNone(d.Overrides)}, err
				}
				return c.AddOverride(ctx, mac, req)
			}
			return daemonShow(cmd, onDevice(args[0], get), printOverrides)
		},
	}
	f := cmd.Flags()
	f.StringVar(&to, "to", "", "remote address, prefix or DNS name the device sends to")
	f.StringVar(&from, "from", "", "remote address, prefix or DNS name that sends to the device")
	f.BoolVar(&inbound, "inbound", false, "the entry is for traffic to the device (implied by --from)")
	f.StringVar(&proto, "proto", "", "tcp, udp, icmp, icmpv6 or a protocol number (default any)")
	f.StringVar(&port, "port", "", "destination port N or range N-M (needs --proto tcp or udp)")
	f.StringVar(&comment, "comment", "", "a note kept with the entry")
	return cmd
}

// overrideRequest builds and checks an allow/deny entry from the flags.
func overrideRequest(verb, to, from, proto, port, comment string, inbound bool) (api.OverrideRequest, error) {
	req := api.OverrideRequest{Protocol: proto, Port: port, Comment: comment, Direction: api.FromDevice}
	req.Verdict = map[string]api.OverrideVerdict{"allow": api.Allow, "deny": api.Deny}[verb]
	peer := to
	switch {
	case to != "" && (from != "" || inbound):
		return req, cli.Usage("--to is for traffic from the device; --from and --inbound for traffic to it")
	case from != "" || inbound:
		req.Direction, peer = api.ToDevice, from
	}
	if peer != "" {
		if _, err := netip.ParsePrefix(peer); err == nil {
			req.Peer = peer
		} else if _, err := netip.ParseAddr(peer); err == nil {
			req.Peer = peer
		} else {
			req.DNSName = peer
		}
	}
	if err := req.Validate(); err != nil {
		return req, cli.Usage("%v", err)
	}
	return req, nil
}

func newDaemonControllersCmd() *cobra.Command {
	ctl := groupCmd("controllers", "List or set controller addresses (RFC 8520 §4.6, §4.7)")
	ctl.AddCommand(&cobra.Command{
		Use:   "list",
		Short: "List controller and my-controller mappings",
		Args:  cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return daemonShow(cmd, (*api.Client).Controllers, printControllers)
		},
	})
	for _, remove := range []bool{false, true} {
		var my bool
		sub := &cobra.Command{
			Use:   "set URI ADDR...",
			Short: "Set the addresses (or prefixes) of a controller class URI",
			Args:  cobra.MinimumNArgs(2),
		}
		if remove {
			sub.Use, sub.Short, sub.Args = "remove URI", "Remove the addresses set for a controller class URI", cobra.ExactArgs(1)
		}
		sub.RunE = func(cmd *cobra.Command, args []string) error {
			req := api.ControllerRequest{URI: args[0], MyController: my, Addrs: args[1:]}
			get := func(c *api.Client, ctx context.Context) ([]api.Controller, error) {
				got, err := c.SetController(ctx, req)
				return []api.Controller{got}, err
			}
			return daemonShow(cmd, get, printControllers)
		}
		sub.Flags().BoolVar(&my, "my", false, "URI is a MUD URL: the mapping is of its my-controller (RFC 8520 §4.7)")
		ctl.AddCommand(sub)
	}
	return ctl
}

func newDaemonRefreshCmd() *cobra.Command {
	return &cobra.Command{
		Use:   "refresh [MAC]",
		Short: "Re-fetch MUD files and re-resolve names, for one device or all",
		Args:  cobra.MaximumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			get := func(c *api.Client, ctx context.Context) (api.RefreshResult, error) { return c.Refresh(ctx, "") }
			if len(args) == 1 {
				get = onDevice(args[0], (*api.Client).Refresh)
			}
			return daemonShow(cmd, get, printRefresh)
		},
	}
}

// maxImportFile bounds what import reads from disk (MUD files are small).
const maxImportFile = 1 << 20

func newDaemonImportCmd() *cobra.Command {
	var sig, reason string
	cmd := &cobra.Command{
		Use:   "import FILE --signature SIG",
		Short: "Give mudd a MUD file obtained out of band (it is still verified)",
		Args:  cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			file, err := readLimited(args[0])
			if err != nil {
				return err
			}
			sigBytes, err := readLimited(sig)
			if err != nil {
				return err
			}
			get := func(c *api.Client, ctx context.Context) (api.ImportResult, error) {
				return c.Import(ctx, api.ImportRequest{File: file, Signature: sigBytes, Reason: reason})
			}
			return daemonShow(cmd, get, printImport)
		},
	}
	addSignatureFlag(cmd, &sig)
	addReasonFlag(cmd, &reason)
	return cmd
}

// readLimited reads a file of at most maxImportFile bytes (exit 2 if not).
func readLimited(name string) ([]byte, error) {
	f, err := os.Open(name)
	if err != nil {
		return nil, cli.IOError(err)
	}
	defer f.Close()
	b, err := io.ReadAll(io.LimitReader(f, maxImportFile+1))
	if err != nil {
		return nil, cli.IOError(fmt.Errorf("read %s: %w", name, err))
	}
	if len(b) > maxImportFile {
		return nil, cli.IOError(fmt.Errorf("%s: larger than %d bytes", name, maxImportFile))
	}
	return b, nil
}
