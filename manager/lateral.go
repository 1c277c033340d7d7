package manager

import (
	"context"
	"slices"
	"strings"

	"github.com/openmud/mud/lanwatch"
)

// Where lateral enforcement cannot reach: package lanwatch inspects the
// ports of the LAN bridges at start and whenever they change, and says
// where traffic between devices passes without crossing the bridge, where
// mudd's rules see it (a Wi-Fi access point forwarding between its
// clients, hardware switch ports, an XDP program or tc filters on a port,
// several devices behind one port, a LAN interface that is no bridge).
// Its warnings and errors are the gateway's lateral gaps: Status lists
// them, and each one that appears or goes is an event
// ("lateral-unenforced", "lateral-ended").

// LateralGap is one place where lateral traffic may pass without mudd's
// rules.
type LateralGap struct {
	// LAN is the LAN interface; Port the bridge port, "" when the finding
	// is about the LAN interface itself (not a bridge, a hardware switch
	// whose ports are in it).
	LAN, Port string
	// Severity is "error" (traffic passes without the rules) or
	// "warning" (it may).
	Severity string
	// Reason says what happens, naming the port; Fix what to configure.
	Reason, Fix string
}

func (g LateralGap) where() string {
	if g.Port == "" {
		return g.LAN
	}
	return g.LAN + " port " + g.Port
}

func (g LateralGap) message() string {
	if g.Fix == "" {
		return g.where() + ": " + g.Reason
	}
	return g.where() + ": " + g.Reason + " (" + g.Fix + ")"
}

// LateralGaps are the report's warnings and errors, in the report's order.
func LateralGaps(r lanwatch.Report) []LateralGap {
	var out []LateralGap
	add := func(lan, port string, fs []lanwatch.Finding) {
		for _, f := range fs {
			if f.Severity == lanwatch.Error || f.Severity == lanwatch.Warning {
				out = append(out, LateralGap{LAN: lan, Port: port, Severity: string(f.Severity), Reason: f.Text, Fix: f.Fix})
			}
		}
	}
	for _, l := range r.LANs {
		add(l.Name, "", l.Findings)
		for _, p := range l.Ports {
			add(l.Name, p.Name, p.Findings)
		}
	}
	return out
}

// SetLateral follows package lanwatch's report of the LAN bridges' ports:
// each gap that appeared is a "lateral-unenforced" event, each that went
// a "lateral-ended" event, and Status lists those there are.
func (m *Manager) SetLateral(ctx context.Context, r lanwatch.Report) error {
	gaps := LateralGaps(r)
	return m.do(ctx, func() error {
		m.onLateral(gaps)
		return nil
	})
}

func (m *Manager) onLateral(gaps []LateralGap) {
	same := func(a, b LateralGap) bool { return a.LAN == b.LAN && a.Port == b.Port && a.Reason == b.Reason }
	for _, old := range m.lateral {
		if !slices.ContainsFunc(gaps, func(g LateralGap) bool { return same(g, old) }) {
			m.event("", "lateral-ended", "", "", old.where()+": no longer: "+old.Reason)
		}
	}
	for _, g := range gaps {
		if !slices.ContainsFunc(m.lateral, func(o LateralGap) bool { return same(g, o) }) {
			m.event("", "lateral-unenforced", "", "", g.message())
		}
	}
	m.lateral = slices.Clone(gaps)
	if len(gaps) > 0 {
		where := make([]string, len(gaps))
		for i, g := range gaps {
			where[i] = g.where()
		}
		m.log.Warn("lateral traffic not enforced everywhere", "where", strings.Join(where, ", "))
	}
}
