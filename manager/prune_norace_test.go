//go:build !race

package manager

// The race detector makes this test's 200,000 lease events take minutes
// instead of about 30 s: it is built without it, and `make unit` runs it
// in a run of its own without -race.

import (
	"context"
	"math/rand/v2"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/store"
)

// Devices that randomise their MAC address (phones, laptops) leave a new
// record at every visit. With 100,000 of them passing through — a lease,
// then its release — the store holds them until they have not been seen
// for Settings.ForgetAfter (they never announced a MUD URL), and then
// none: its device count stays bounded by what was seen within that time.
func TestRandomisedMACsForgotten(t *testing.T) {
	const visitors = 100000
	clock := newManualClock()
	dir := t.TempDir()
	srv, _ := camServer(t, "", false) // no visitor announces a MUD URL: never fetched
	h := startManager(t, harnessOpts{enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(), dir: dir, now: clock.Now, noSync: true,
		tweak:    func(c *Config) { c.Tick = time.Hour }, // timers run when the test says
		settings: Settings{ForgetAfter: time.Hour, PruneAfter: 24 * time.Hour}})
	ctx := context.Background()
	// Visitors arrive from several senders at once, as frames do: the
	// manager takes what is waiting in one store transaction.
	const senders = 32
	var wg sync.WaitGroup
	errs := make(chan error, senders)
	for w := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(1, uint64(w)))
			for i := w; i < visitors; i += senders {
				mac := make(net.HardwareAddr, 6)
				r := rng.Uint64()
				for j := range mac {
					mac[j] = byte(r >> (8 * j))
				}
				mac[0] = mac[0]&^1 | 2 // locally administered unicast, as randomised MACs are
				ip := netip.AddrFrom4([4]byte{192, 0, 2, byte(100 + i%100)})
				for _, kind := range []dhcpsnoop.Kind{dhcpsnoop.KindBound, dhcpsnoop.KindReleased} {
					ev := dhcpsnoop.Event{Kind: kind, Time: clock.Now(), Family: 4, MAC: mac, Interface: "br-lan", Port: "lan1",
						IPv4: ip, LeaseTime: time.Hour, Expires: clock.Now().Add(time.Hour)}
					if kind == dhcpsnoop.KindReleased {
						ev.IPv4, ev.Gone = netip.Addr{}, true
					}
					if err := h.m.HandleLease(ctx, ev); err != nil {
						errs <- err
						return
					}
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	count := func() int {
		n := 0
		if err := h.st.View(func(tx *store.Tx) error {
			return tx.Devices().ForEach(func(store.Device) error { n++; return nil })
		}); err != nil {
			t.Fatal(err)
		}
		return n
	}
	if n := count(); n != visitors {
		t.Fatalf("%d device records after the visits, want %d", n, visitors)
	}
	clock.Advance(25 * time.Hour)
	h.tick()
	if n := count(); n != 0 {
		t.Errorf("%d device records left a day after the visits, want none", n)
	}
	if evs := h.eventsOf("forgotten", nil); len(evs) != 1 || !strings.Contains(evs[0].Message, "forgot 100000 devices") {
		t.Errorf("forgotten events: %+v", evs)
	}
	fi, err := os.Stat(filepath.Join(dir, "mud.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("store file %d bytes after %d visitors", fi.Size(), visitors)
}
