//go:build nodashboard

package mudd

import (
	"context"
	"errors"
	"log/slog"

	"github.com/openmud/mud/config"
)

// This mudd is built without the web dashboard (build tag nodashboard, as
// the OpenWrt package is, for its size).

// errNoDashboard is why a configured dashboard cannot start.
var errNoDashboard = errors.New("dashboard.listen is set, but this mudd was built without the web dashboard " +
	"(build tag nodashboard, as the OpenWrt package is): leave dashboard.listen empty, or use a build with it")

func checkDashboard(cfg config.Config) error {
	if cfg.Dashboard.Listen == "" {
		return nil
	}
	return errNoDashboard
}

func serveDashboard(context.Context, config.Config, *slog.Logger) error { return errNoDashboard }

func hashPassword([]byte) (string, error) {
	return "", errors.New("this mudd was built without the web dashboard (build tag nodashboard): it has no use for a password hash")
}
