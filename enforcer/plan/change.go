package plan

import (
	"net"
	"net/netip"
	"reflect"
	"slices"
	"time"

	"github.com/openmud/mud/policy"
)

// What changed in the model, object by object: which objects a desired
// state changes (Sync), and whose flows a change ends.

// samePolicy tells whether two policies are the same.
func samePolicy(a, b *policy.Policy) bool { return reflect.DeepEqual(a, b) }

// sameRules tells whether two policies match the same packets the same
// way (their ACEs; not their URL or notes).
func sameRules(a, b *policy.Policy) bool {
	if a == nil || b == nil {
		return a == b
	}
	return rulesEqual(a.FromDevice, b.FromDevice) && rulesEqual(a.ToDevice, b.ToDevice)
}

func rulesEqual(a, b []policy.Rule) bool {
	return len(a) == len(b) && (len(a) == 0 || reflect.DeepEqual(a, b))
}

func overridesEqual(a, b Overrides) bool {
	return rulesEqual(a.FromDevice, b.FromDevice) && rulesEqual(a.ToDevice, b.ToDevice)
}

// sameDevice tells whether two (normalised) devices are the same.
func sameDevice(a, b *Device) bool {
	return slices.Equal(a.MAC, b.MAC) && a.PolicyID == b.PolicyID && a.Mode == b.Mode &&
		slices.Equal(a.IPv4s, b.IPv4s) && slices.Equal(a.IPv6s, b.IPv6s) && overridesEqual(a.Overrides, b.Overrides)
}

// samePeer tells whether a peer's addresses are the same, with expiries
// less than a second apart (a TTL recomputed from the same answer).
func samePeer(a, b map[netip.Prefix]time.Time) bool {
	if len(a) != len(b) {
		return false
	}
	for p, ea := range a {
		eb, ok := b[p]
		if !ok || ea.IsZero() != eb.IsZero() {
			return false
		}
		if d := ea.Sub(eb); d >= time.Second || d <= -time.Second {
			return false
		}
	}
	return true
}

// samePeerElements tells whether a peer's new elements (at now) are its
// addresses m, with expiries less than a second apart.
func samePeerElements(m map[netip.Prefix]time.Time, els []Element, now time.Time) bool {
	if len(els) == len(m) {
		// the usual case: the same list again, normalised already
		same := true
		for i, e := range els {
			exp, ok := m[e.Prefix]
			for _, prev := range els[:i] {
				ok = ok && prev.Prefix != e.Prefix // each of m's once
			}
			if !ok || (e.Timeout > 0) == exp.IsZero() {
				same = false
				break
			}
			if d := now.Add(e.Timeout).Sub(exp); e.Timeout > 0 && (d >= time.Second || d <= -time.Second) {
				same = false
				break
			}
		}
		if same {
			return true
		}
	}
	n, err := normalizePeer(els, now)
	return err == nil && samePeer(m, n)
}

// endFlows lists the devices whose treatment a change tightens, so that
// flows accepted under the old rules do not outlive them: a device new to
// the model (it was unrestricted: fetching, pending, a device without MUD
// being quarantined) unless the kernel already held it as now (the first
// commit after a restart), a device leaving it, another mode or policy,
// changed overrides, a changed policy, addresses no longer bound.
func (pl *Planner) endFlows(ch *change, delta *owners) Flows {
	prev := pl.m
	var cut []netip.Addr
	var macs []net.HardwareAddr
	changedPol := map[string]bool{}
	if ch.full {
		for id, p := range prev.policies {
			if !sameRules(p, ch.policies[id]) {
				changedPol[id] = true
			}
		}
	} else {
		for id, np := range ch.policies {
			if p := prev.policies[id]; p != nil && !sameRules(p, np) {
				changedPol[id] = true
			}
		}
	}
	devChanged := func(od, nd *Device) {
		if nd == nil || od.Mode != nd.Mode || od.PolicyID != nd.PolicyID || !overridesEqual(od.Overrides, nd.Overrides) ||
			(od.Mode == Enforce && changedPol[od.PolicyID]) {
			cut = append(cut, devAddrs(od)...)
			if nd != nil {
				cut = append(cut, removedAddrs(nd, od)...) // addresses it gained
			}
			macs = append(macs, od.MAC)
		} else if gone := removedAddrs(od, nd); len(gone) > 0 {
			cut = append(cut, gone...)
			macs = append(macs, od.MAC)
		}
	}
	arrived := func(mac string, nd *Device) {
		if nd == nil {
			return
		}
		if pl.inst == nil && pl.inherited != nil {
			if old, ok := pl.inherited[MACOf(nd.MAC)]; ok {
				if e := fromDevElem(delta.devices[mac]); e != nil && e.sameValue(&old) {
					return
				}
			}
		}
		cut = append(cut, devAddrs(nd)...)
		macs = append(macs, nd.MAC)
	}
	if ch.full || len(changedPol) > 0 {
		// Every device may be affected: walk them all.
		for mac, od := range prev.devices {
			nd, touched := ch.devices[mac]
			switch {
			case touched || ch.full:
				devChanged(od, nd)
			case od.Mode == Enforce && changedPol[od.PolicyID]:
				cut = append(cut, devAddrs(od)...)
				macs = append(macs, od.MAC)
			}
		}
	} else {
		// Only the changed devices: an incremental change costs what it
		// touches, not the number of devices installed.
		for mac, nd := range ch.devices {
			if od := prev.devices[mac]; od != nil {
				devChanged(od, nd)
			}
		}
	}
	for mac, nd := range ch.devices {
		if prev.devices[mac] == nil {
			arrived(mac, nd)
		}
	}
	if pl.cfg.BridgeConntrack {
		macs = nil // no remembered bridged flows
	}
	return Flows{Addrs: cut, MACs: macs}
}

// fromDevElem is a device's element of the inet table's from_dev map.
func fromDevElem(pc *pieces) *Elem {
	if pc != nil {
		for _, x := range pc.elems {
			if x.ref == (SetRef{Inet, setFromDev}) {
				return x.elem
			}
		}
	}
	return nil
}

// removedAddrs are the addresses od has and nd has not.
func removedAddrs(od, nd *Device) []netip.Addr {
	var out []netip.Addr
	for _, a := range devAddrs(od) {
		if !hasAddr(nd, a) {
			out = append(out, a)
		}
	}
	return out
}
