// Command mudlab runs the MUD enforcement demonstration (`sudo make demo`):
// a gateway with dnsmasq and mudd, an HTTPS MUD server, internet hosts and
// DHCP-speaking devices, all in network namespaces that it removes again
// when it finishes, fails or is interrupted. It exits non-zero when any
// demonstrated expectation does not hold. See package internal/lab/demo.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"syscall"

	"github.com/openmud/mud/internal/lab/demo"
)

func main() {
	mudd := flag.String("mudd", "bin/mudd", "mudd binary to run in the gateway namespace")
	mudctl := flag.String("mudctl", "", "mudctl binary (default: the mudd binary invoked as mudctl)")
	logs := flag.Bool("logs", false, "also print mudd's and dnsmasq's logs at the end")
	flag.Parse()
	// Ctrl-C or SIGTERM cancels the demo; Run still cleans up before it
	// returns.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := demo.Run(ctx, demo.Options{Mudd: *mudd, Mudctl: *mudctl, Out: os.Stdout, Logs: *logs}); err != nil {
		fmt.Fprintf(os.Stderr, "mudlab: %v\n", err)
		stop()
		os.Exit(1)
	}
}
