//go:build !nodashboard

package mudd

import (
	"context"
	"log/slog"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dashboard"
)

// dashboardConfig is the dashboard's configuration from mudd's.
func dashboardConfig(c config.Dashboard) dashboard.Config {
	return dashboard.Config{Listen: c.Listen, PasswordHash: c.PasswordHash, SessionLifetime: c.SessionLifetime,
		TLSCert: c.TLSCert, TLSKey: c.TLSKey}
}

// checkDashboard checks dashboard.* as the dashboard will use it, before
// anything starts; nothing to check when it is off.
func checkDashboard(cfg config.Config) error {
	if cfg.Dashboard.Listen == "" {
		return nil
	}
	return dashboardConfig(cfg.Dashboard).Validate()
}

// serveDashboard serves the web dashboard on dashboard.listen until ctx
// ends. It talks to mudd as mudctl does, through the control socket, so it
// can do nothing mudctl cannot.
func serveDashboard(ctx context.Context, cfg config.Config, log *slog.Logger) error {
	c := api.NewClient(cfg.Socket)
	defer c.Close()
	dc := dashboardConfig(cfg.Dashboard)
	h, err := dashboard.New(dc, c)
	if err != nil {
		return err
	}
	log.Info("dashboard listening", "listen", cfg.Dashboard.Listen, "tls", cfg.Dashboard.TLSCert != "")
	return dashboard.ListenAndServe(ctx, dc, h)
}

// hashPassword is dashboard.HashPassword.
func hashPassword(pw []byte) (string, error) { return dashboard.HashPassword(pw) }
