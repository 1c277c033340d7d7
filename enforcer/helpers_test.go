package enforcer

import (
	"net/netip"
	"time"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func timeNow() time.Time { return time.Now() }
