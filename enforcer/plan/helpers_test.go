package plan

import (
	"net/netip"

	"github.com/openmud/mud/policy"
)

func mustPrefix(s string) netip.Prefix { return netip.MustParsePrefix(s) }

func u16(p uint16) *policy.PortRange { return &policy.PortRange{First: p, Last: p} }
