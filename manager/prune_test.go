package manager

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/store"
)

// A device that was enforced and left (its lease ended) keeps its record
// and its MAC's signer pin (RFC 8520 §16) for Settings.PruneAfter; then
// both go, with a "pruned" event. A device an administrator quarantined
// stays, however long it is gone.
func TestPruneDevicesGoneLong(t *testing.T) {
	srv, u := camServer(t, "", false)
	clock := newManualClock()
	h := startManager(t, harnessOpts{enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(), now: clock.Now,
		settings: Settings{ForgetAfter: time.Hour, PruneAfter: 30 * 24 * time.Hour}})
	h.leaseOn(mac(1), ip1, u, "lan1")
	h.leaseOn(mac(2), ip2, u, "lan1")
	h.waitState(mac(1), store.StateEnforced)
	h.waitState(mac(2), store.StateEnforced)
	if _, err := h.m.Quarantine(bg, adm, mac(2).String(), Action{Reason: "kept"}); err != nil {
		t.Fatal(err)
	}
	for _, m := range []net.HardwareAddr{mac(1), mac(2)} {
		h.lease(dhcpsnoop.KindReleased, m, netip.Addr{}, "")
	}
	clock.Advance(time.Second) // the removal grace
	h.tick()
	h.waitState(mac(1), store.StateRemoved)
	pinned := func(m net.HardwareAddr) bool {
		var ok bool
		if err := h.st.View(func(tx *store.Tx) error {
			var err error
			ok, err = tx.PinsByMAC().Has(m.String())
			return err
		}); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !pinned(mac(1)) {
		t.Fatal("no signer pin for the enforced device")
	}

	clock.Advance(29 * 24 * time.Hour)
	h.tick()
	if _, err := h.m.Device(bg, mac(1).String()); err != nil {
		t.Errorf("pruned before its time: %v", err)
	}
	clock.Advance(2 * 24 * time.Hour)
	h.tick()
	if _, err := h.m.Device(bg, mac(1).String()); err == nil {
		t.Error("the device gone for 31 days is still listed")
	}
	if pinned(mac(1)) {
		t.Error("its signer pin is still in the store")
	}
	if _, err := h.m.Device(bg, mac(2).String()); err != nil {
		t.Errorf("the quarantined device was pruned: %v", err)
	}
	if evs := h.eventsOf("pruned", nil); len(evs) != 1 || !strings.Contains(evs[0].Message, "pruned 1 device records") || !strings.Contains(evs[0].Message, mac(1).String()) {
		t.Errorf("pruned events: %+v", evs)
	}
}
