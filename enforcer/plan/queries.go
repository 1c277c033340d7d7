package plan

import (
	"net"
	"time"

	"github.com/openmud/mud/policy"
)

// What the enforcer asks of the planner besides plans.

// Names of the sets the enforcer reads itself.
const (
	SetFromDev = setFromDev // the device → dispatch map of both tables
	SetFlows4  = setFlows4  // the bridge table's remembered IPv4 flows (reflexive mode)
	SetFlows6  = setFlows6  // … and IPv6 flows
)

// Sets lists the sets of a table as the configuration has them.
func (pl *Planner) Sets(f Family) []Set {
	o := pl.opts(time.Time{})
	return setDefs(f, o.twoStage, o.ruleCounters, o.flowSize, o.acct)
}

// Set returns the declaration of one set of a table.
func (pl *Planner) Set(f Family, name string) (Set, bool) {
	for _, s := range pl.Sets(f) {
		if s.Name == name {
			return s, true
		}
	}
	return Set{}, false
}

// BaseChains lists the chains a packet of a table meets first: the base
// chains, the source guard and the dispatch (a quick check of the tables
// without notifications).
func (pl *Planner) BaseChains(f Family) []ChainRef {
	names := []string{chainForward}
	if f == Inet {
		names = append(names, chainInput)
	}
	names = append(names, chainGuard)
	if !pl.cfg.DirectDispatch {
		names = append(names, chainDispFwd)
		if f == Inet {
			names = append(names, chainDispIn)
		}
	}
	out := make([]ChainRef, len(names))
	for i, n := range names {
		out[i] = ChainRef{f, n}
	}
	return out
}

// RuleCount is the number of rules of an installed chain (-1: none such).
func (pl *Planner) RuleCount(id ChainRef) int {
	n := -1
	if pl.inst != nil && pl.inst.fixed != nil {
		for _, c := range pl.inst.fixed.chains {
			if c.ID == id {
				return len(c.Rules)
			}
		}
	}
	if pl.inst != nil {
		pl.inst.all(func(pc *pieces) {
			for _, c := range pc.chains {
				if c.ID == id {
					n = len(c.Rules)
				}
			}
		})
	}
	return n
}

// ConntrackProbeRule is a rule the kernel accepts in a bridge table only
// with nf_conntrack_bridge.
func ConntrackProbeRule() Rule { return Rule{frags: []frag{ctEstRel}, verdict: accept()} }

// SecmarkProbeRule is a rule the kernel accepts only with
// CONFIG_NETWORK_SECMARK.
func SecmarkProbeRule() Rule { return Rule{frags: []frag{fSecmarkIs(false), fSetSecmark0()}} }

// Policy returns an installed policy (read it, do not change it).
func (pl *Planner) Policy(id string) (*policy.Policy, bool) {
	p, ok := pl.m.policies[id]
	return p, ok
}

// Device returns an installed device (read it, do not change it).
func (pl *Planner) Device(mac net.HardwareAddr) (*Device, bool) {
	d, ok := pl.m.devices[mac.String()]
	return d, ok
}
