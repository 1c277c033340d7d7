package manager

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// A snooped DNS answer does not wait for the reconcile of the batch it
// arrives in: its addresses reach the enforcer at once, in a transaction
// of their own, and the batch's changes follow with its reconcile.
func TestSnoopedDNSGoesFirst(t *testing.T) {
	_, u, h, fe, _ := enforcedCam(t, Settings{})
	m := h.m
	srvAddr := netip.MustParseAddr("203.0.113.11")
	var peerBefore []string
	var devBefore bool
	var updates int
	err := m.do(bg, func() error {
		m.onLease(dhcpsnoop.Event{Kind: dhcpsnoop.KindBound, Time: time.Now(), Family: 4, MAC: mac(2), IPv4: ip2, MUDURL: u,
			LeaseTime: time.Hour, Expires: time.Now().Add(time.Hour)})
		fe.mu.Lock()
		updates = fe.updates
		fe.mu.Unlock()
		m.onSnooped(bg, snoopedRequest(m, resolver.Update{Name: "cloud.example", Addrs: []netip.Addr{srvAddr},
			Expires: time.Now().Add(time.Minute), Source: resolver.Snooped}))
		peerBefore = fe.peer("dns:cloud.example")
		_, devBefore = fe.device(mac(2))
		fe.mu.Lock()
		updates = fe.updates - updates
		fe.mu.Unlock()
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(peerBefore, []string{"203.0.113.11/32"}) || updates != 1 {
		t.Errorf("snooped answer handled in a batch: dns peer %v after %d transactions, want 203.0.113.11/32 after 1", peerBefore, updates)
	}
	if devBefore {
		t.Error("the batch's new device reached the enforcer with the DNS answer, before its reconcile")
	}
	if ed, ok := fe.device(mac(2)); !ok || ed.Mode != enforcer.Enforce {
		t.Errorf("after the batch's reconcile: device %+v (present %v), want enforced", ed, ok)
	}
}

// Arrivals that wait while the manager is busy are handled together and
// reconciled once: 1,000 of them are a few enforcer transactions (256
// inputs each at most), not 1,000, and as few store commits (one fsync a
// batch, or one for a few). No arrival waits for the disk, nothing of a
// batch is told before its commit (every event published is in the store
// with its device's record), and once the arrivals stop, everything is
// committed. An administrator's command taken in such a batch is answered
// once the reconcile that applied it is done.
func TestBurstCoalesced(t *testing.T) {
	srv, u := camServer(t, "", false)
	dir := tmpfsDir(t)
	// A first run caches and verifies the file.
	first := startManager(t, harnessOpts{dir: dir, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool()})
	first.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	first.waitState(mac(1), store.StateEnforced)
	first.stop()

	const n = 1000
	leases := make(chan dhcpsnoop.Event, n)
	for i := range n {
		hw := net.HardwareAddr{2, 0, 0, 1, byte(i >> 8), byte(i)}
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, 1, 14: byte(i >> 8), 15: byte(i)})
		leases <- dhcpsnoop.Event{Kind: dhcpsnoop.KindBound, Time: time.Now(), Family: 6, MAC: hw, IPv6: []netip.Addr{a}, MUDURL: u,
			LeaseTime: time.Hour, Expires: time.Now().Add(time.Hour)}
	}
	fe := newFakeEnforcer()
	var st *store.Store
	var published, unsaved []string // events: all, and those the store did not have
	onPublish := func(e store.Event) {
		// On the manager's goroutine, as the event leaves.
		err := st.View(func(tx *store.Tx) error {
			evs, err := tx.Events(e.Seq-1, 1)
			if err == nil && (len(evs) != 1 || evs[0].Seq != e.Seq) {
				err = fmt.Errorf("event %d not in the store", e.Seq)
			}
			if err == nil && e.MAC != "" {
				_, err = tx.Devices().Get(e.MAC)
			}
			return err
		})
		published = append(published, e.MAC)
		if err != nil {
			unsaved = append(unsaved, e.MAC+": "+err.Error())
		}
	}
	h := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.Leases, c.Tick = leases, time.Hour },
		// Batches bounded by count alone, whatever the machine's speed.
		setup: func(m *Manager) { m.batchTime = time.Hour; st = m.cfg.Store; m.onPublish = onPublish }})
	commits0 := st.Commits()
	if _, err := h.m.Quarantine(context.Background(), adm, mac(1).String(), Action{Reason: "burst"}); err != nil {
		t.Fatal(err)
	}
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Quarantine {
		t.Errorf("quarantine answered before the enforcer had it: %+v (present %v)", ed, ok)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		fe.mu.Lock()
		held, updates := len(fe.devices), fe.updates
		fe.mu.Unlock()
		if held == n+1 {
			// n arrivals and one command in at most ceil((n+1)/256)
			// batches.
			max := (n + 1 + DefaultBatchMax - 1) / DefaultBatchMax
			if updates > max {
				t.Errorf("%d arrivals and a command took %d enforcer transactions, want at most %d", n, updates, max)
			}
			if c := st.Commits() - commits0; c > uint64(2*max) {
				t.Errorf("%d arrivals and a command took %d store commits, want at most %d", n, c, 2*max)
			}
			// Nothing waits for the arrivals' changes: they are
			// committed once the loop is idle.
			for saved := 0; saved < n; {
				saved = 0
				err := st.View(func(tx *store.Tx) error {
					return tx.Devices().ForEach(func(store.Device) error { saved++; return nil })
				})
				if err != nil {
					t.Fatal(err)
				}
				if time.Now().After(deadline) {
					t.Fatalf("%d of %d arrivals in the store after 30s", saved, n)
				}
				time.Sleep(10 * time.Millisecond)
			}
			h.stop() // published and unsaved are the manager goroutine's until then
			if len(published) < n {
				t.Errorf("%d events published for %d arrivals, want one at least for each", len(published), n)
			}
			if len(unsaved) > 0 {
				t.Errorf("%d events were published before the store had them (or their device), first %s", len(unsaved), unsaved[0])
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d devices in the enforcer after 30s, want %d", held, n+1)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
