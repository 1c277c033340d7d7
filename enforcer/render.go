package enforcer

import (
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/policy"
)

// Render returns, in nft syntax, what the enforcer would install for policy
// p and one device using it (dev; a sample device when dev.MAC is nil),
// from the same code that plans the netlink batches. Its ids are
// illustrative (the text says so): a running Enforcer's RenderDevice shows
// the installed ones.
func Render(p policy.Policy, dev Device, ro RenderOptions) (string, error) {
	return plan.Render(p, dev, ro)
}
