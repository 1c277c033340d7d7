//go:build nofleet

package mudctl

import (
	"github.com/openmud/mud/internal/cli"
	"github.com/spf13/cobra"
)

// This mudctl is built without the etcd client (build tag nofleet, as the
// OpenWrt package is: it would add several MB to a router's flash).

func runFleetStatus(*cobra.Command) error { return errNoFleet() }

func runFleetDevices(*cobra.Command) error { return errNoFleet() }

func errNoFleet() error {
	return cli.Usage("--fleet: this mudctl was built without fleet support (build tag nofleet, as the OpenWrt package is); run mudctl --fleet on a gateway whose mudd has it")
}
