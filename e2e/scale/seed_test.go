package scale

import (
	"fmt"
	"net/netip"
	"time"

	"github.com/openmud/mud/store"
)

// seed brings the enforced devices to n without DHCP exchanges: while mudd
// is stopped, it writes copies of the installed devices' store records,
// each with a MAC and an IPv6 address of its own (outside dnsmasq's range)
// and a lease running for another hour, then starts mudd, which enforces
// them as it would after a restart. The lab cannot give 10,000 simulated
// clients a DHCPv6 exchange: each needs an entry in the kernel's neighbour
// table, which holds 1,024 across all namespaces (gc_thresh3, a sysctl of
// the root namespace only). The seeded devices are real to mudd (records,
// policies, kernel bindings) but send nothing; the measured arrivals still
// come over DHCP.
func (s *scaleLab) seed(n int) error {
	if n <= len(s.all) {
		return nil
	}
	if err := s.gw.StopMudd(); err != nil {
		return err
	}
	st, err := store.Open(s.gw.StorePath(), store.Options{})
	if err != nil {
		return fmt.Errorf("opening mudd's store: %w", err)
	}
	// A template is an enforced device with its pin: mudd pins the signer
	// and authority of every accepted file per MAC (RFC 8520 §16), and a
	// device without its pin would cost a write at start.
	type template struct {
		dev store.Device
		pin store.Pin
	}
	var templates []template
	err = st.View(func(tx *store.Tx) error {
		for _, a := range s.all {
			d, err := tx.Devices().Get(a.MAC.String())
			if err != nil {
				return fmt.Errorf("device %s: %w", a.MAC, err)
			}
			if d.State != store.StateEnforced {
				continue
			}
			p, err := tx.PinsByMAC().Get(d.MAC)
			if err != nil {
				return fmt.Errorf("the pin of device %s: %w", a.MAC, err)
			}
			templates = append(templates, template{d, p})
		}
		return nil
	})
	if err == nil && len(templates) == 0 {
		err = fmt.Errorf("none of the %d installed devices is enforced", len(s.all))
	}
	if err != nil {
		st.Close()
		return err
	}
	now := time.Now()
	var added []arrival
	err = st.Update(func(tx *store.Tx) error {
		for i := 0; len(s.all)+len(added) < n; i++ {
			s.seq++
			t := templates[i%len(templates)]
			d, p := t.dev, t.pin
			mac := macFor(s.seq)
			addr := seededAddr(s.seq)
			d.MAC, d.IPs, d.Hostname = mac.String(), []netip.Addr{addr}, fmt.Sprintf("seed%d", s.seq)
			d.FirstSeen, d.LastSeen, d.LeaseExpiry = now, now, now.Add(time.Hour)
			p.MAC = d.MAC
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
			if err := tx.PinsByMAC().Put(p); err != nil {
				return err
			}
			var a arrival
			a.MAC, a.Addr = mac, addr
			added = append(added, a)
		}
		return nil
	})
	if cerr := st.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("seeding %d devices: %w", n-len(s.all), err)
	}
	s.all = append(s.all, added...)
	return s.gw.StartMudd(s.ctx)
}

// seededAddr is the i-th seeded device's address: 2001:db8:1::1:0:0/96,
// outside dnsmasq's range (2001:db8:1::1000–ffff).
func seededAddr(i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 11: 1, 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}
