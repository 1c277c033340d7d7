//go:build nofleet

package mudd

import (
	"errors"
	"log/slog"

	"github.com/openmud/mud/config"
)

// This mudd is built without the etcd client (build tag nofleet, as the
// OpenWrt package is: it would add several MB to a router's flash).
func openFleet(config.Config, *slog.Logger) (fleetLink, error) {
	return nil, errors.New("store.backend etcd: this mudd was built without fleet support (build tag nofleet, as the OpenWrt package is); " +
		"set store.backend: bbolt, or use a build with it")
}
