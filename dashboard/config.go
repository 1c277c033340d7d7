package dashboard

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// Defaults of Config.
const (
	// DefaultListen is loopback only: the dashboard is for the gateway's
	// administrator, reached over SSH port forwarding or a local browser.
	DefaultListen = "127.0.0.1:8413"
	// DefaultSessionLifetime is how long a login lasts.
	DefaultSessionLifetime = 8 * time.Hour
	// PasswordCost is the bcrypt cost HashPassword uses: bcrypt's default,
	// about 50 ms on a desktop CPU and under a second on a router's.
	PasswordCost = bcrypt.DefaultCost
	// MaxPasswordLen is bcrypt's limit, in bytes.
	MaxPasswordLen = 72
)

// Config is the dashboard's configuration. The zero value of a field takes
// its default; PasswordHash is required.
type Config struct {
	// Listen is the TCP address to serve on (ListenAndServe). An address
	// other than loopback needs TLS: the password and the session cookie
	// must not cross the network in clear.
	Listen string
	// PasswordHash is the bcrypt hash of the administrator's password, as
	// HashPassword (`mudd hash-password`) writes it.
	PasswordHash string
	// SessionLifetime is how long a login lasts.
	SessionLifetime time.Duration
	// TLSCert and TLSKey are PEM files; both or neither. With them the
	// dashboard is served over HTTPS and its cookies are Secure.
	TLSCert, TLSKey string
}

// withDefaults fills in the defaults and checks the configuration.
func (c Config) withDefaults() (Config, error) {
	if c.Listen == "" {
		c.Listen = DefaultListen
	}
	if c.SessionLifetime == 0 {
		c.SessionLifetime = DefaultSessionLifetime
	}
	if c.SessionLifetime < time.Minute {
		return c, fmt.Errorf("dashboard: session lifetime %s is shorter than a minute", c.SessionLifetime)
	}
	if c.PasswordHash == "" {
		return c, errors.New("dashboard: no password hash (make one with `mudd hash-password`)")
	}
	if _, err := bcrypt.Cost([]byte(c.PasswordHash)); err != nil {
		return c, fmt.Errorf("dashboard: the password hash is not a bcrypt hash: %w", err)
	}
	if (c.TLSCert == "") != (c.TLSKey == "") {
		return c, errors.New("dashboard: TLS needs both a certificate and a key")
	}
	host, _, err := net.SplitHostPort(c.Listen)
	if err != nil {
		return c, fmt.Errorf("dashboard: listen address %q: %w", c.Listen, err)
	}
	if !isLoopback(host) && c.TLSCert == "" {
		return c, fmt.Errorf("dashboard: listen address %q is not loopback: it needs TLS (a certificate and a key)", c.Listen)
	}
	return c, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Validate checks a configuration as New would.
func (c Config) Validate() error {
	_, err := c.withDefaults()
	return err
}

// HashPassword returns the bcrypt hash of an administrator's password, for
// Config.PasswordHash: what `mudd hash-password` prints. The password must
// be 8 to 72 bytes long.
func HashPassword(password []byte) (string, error) {
	return hashPassword(password, PasswordCost)
}

func hashPassword(password []byte, cost int) (string, error) {
	switch {
	case len(password) < 8:
		return "", errors.New("the password is shorter than 8 bytes")
	case len(password) > MaxPasswordLen:
		return "", fmt.Errorf("the password is longer than %d bytes (bcrypt's limit)", MaxPasswordLen)
	}
	h, err := bcrypt.GenerateFromPassword(password, cost)
	if err != nil {
		return "", err
	}
	return string(h), nil
}
