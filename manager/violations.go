package manager

import (
	"context"
	"io"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"time"

	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
	"github.com/openmud/mud/violations"
)

// Violations is what the manager needs of package violations: the records
// of what devices tried and were refused (*violations.Reader reads them
// from the enforcer's log group; *violations.Table holds them, for tests).
type Violations interface {
	Updates() <-chan violations.Violation
	List(mac net.HardwareAddr) []violations.Violation
	Snapshot() []violations.Violation
	WriteMetrics(w io.Writer) error
}

// AutoQuarantine quarantines a device that commits After distinct
// violations within Window; After 0 never does.
type AutoQuarantine struct {
	After  int
	Window time.Duration
}

// Violations returns the violation records of one device (mac), or of
// every device (mac ""), most recently seen first. It does not wait for
// the manager's loop.
func (m *Manager) Violations(ctx context.Context, mac string) ([]violations.Violation, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	v := m.cfg.Violations
	if v == nil {
		return nil, nil
	}
	if mac == "" {
		return v.Snapshot(), nil
	}
	hw, err := net.ParseMAC(mac)
	if err != nil {
		return nil, errorf(ErrInvalid, "%q is not a MAC address", mac)
	}
	return v.List(hw), nil
}

// DeviceOf is the MAC of the device holding addr (nil when none), for
// violation records of routed packets to a device. It asks the manager's
// loop, waiting at most a second.
func (m *Manager) DeviceOf(addr netip.Addr) net.HardwareAddr {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out net.HardwareAddr
	_ = m.query(ctx, func() {
		addr = addr.Unmap()
		mac := m.lessee(addr)
		if mac == "" {
			// Static addresses: a binding is an admin's, so they are few.
			for bmac, b := range m.st.bindings {
				if d := m.st.devices[bmac]; d != nil && d.State != store.StateRemoved && slices.Contains(b.IPs, addr) {
					mac = bmac
					break
				}
			}
		}
		if mac != "" {
			out, _ = net.ParseMAC(mac)
		}
	})
	return out
}

// PeerName is the DNS name of the device's policy that addr was an answer
// for, "" when none: the name a violation record shows beside the address.
func (m *Manager) PeerName(mac net.HardwareAddr, addr netip.Addr) string {
	if mac == nil {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	var out string
	_ = m.query(ctx, func() {
		d := m.st.devices[mac.String()]
		if d == nil {
			return
		}
		md := m.st.models[d.MUDURL]
		if md == nil || md.pol == nil {
			return
		}
		for _, pr := range md.pol.Peers() {
			if pr.Kind != policy.DNSName {
				continue
			}
			if _, ok := m.st.dns[pr.Value][addr.Unmap()]; ok {
				out = pr.Value
				return
			}
		}
	})
	return out
}

// query runs fn in the manager's loop, for a read of its state.
func (m *Manager) query(ctx context.Context, fn func()) error {
	return m.do(ctx, func() error { fn(); return nil })
}

// onViolation records a new violation as an event and counts it towards
// the automatic quarantine. Updates of a known record (its count) are not
// events: mudctl violations shows them.
func (m *Manager) onViolation(v violations.Violation) {
	if !v.New || v.MAC == nil {
		return
	}
	mac := v.MAC.String()
	m.event(mac, "violation", "", "", violationText(v))
	q := m.cfg.AutoQuarantine
	d := m.st.devices[mac]
	if q.After <= 0 || d == nil || d.State == store.StateRemoved || d.Quarantine != nil {
		return
	}
	now := m.now()
	seen := slices.DeleteFunc(m.st.violated[mac], func(t time.Time) bool { return now.Sub(t) > q.Window })
	seen = append(seen, now)
	m.st.violated[mac] = seen
	if len(seen) < q.After {
		return
	}
	delete(m.st.violated, mac)
	reason := "automatic: " + strconv.Itoa(len(seen)) + " distinct violations within " + q.Window.String() + ", the last: " + violationText(v)
	nd := *d
	nd.Quarantine = &store.Hold{By: "mudd", At: now, Reason: reason}
	if err := m.settle(nd, "quarantined", reason); err != nil {
		m.log.Error("quarantining a device after its violations", "mac", mac, "err", err)
	}
}

// violationText says what a violation was, in words: "out TCP to
// 203.0.113.7 (cloud.example.com) port 8080, dropped by the default deny".
func violationText(v violations.Violation) string {
	s := v.Direction.String() + " " + protoName(v.Protocol)
	if v.Direction == violations.In {
		s += " from "
	} else {
		s += " to "
	}
	s += v.Peer.String()
	if v.PeerName != "" {
		s += " (" + v.PeerName + ")"
	}
	switch v.Protocol {
	case 6, 17, 132:
		s += " port " + strconv.Itoa(int(v.Port))
	case 1, 58:
		s += " type " + strconv.Itoa(int(v.Port))
	}
	if v.Kind == violations.SourceGuard {
		return s + ", sent from " + v.DeviceAddr.String() + ", an address not bound to the device (source guard)"
	}
	return s + ", dropped by the default deny"
}

func protoName(p uint8) string {
	switch p {
	case 1:
		return "ICMP"
	case 6:
		return "TCP"
	case 17:
		return "UDP"
	case 58:
		return "ICMPv6"
	case 132:
		return "SCTP"
	}
	return "protocol " + strconv.Itoa(int(p))
}
