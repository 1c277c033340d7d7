//go:build !nofleet

package mudd

import (
	"log/slog"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/internal/fleetlink"
)

// openFleet opens the connection to the site's etcd cluster of
// store.backend etcd (it does not wait for etcd).
func openFleet(cfg config.Config, log *slog.Logger) (fleetLink, error) {
	fc, err := fleetlink.Config(cfg.Store.Etcd, cfg.StateDir, log)
	if err != nil {
		return nil, err
	}
	return fleetlink.Open(fc)
}
