package manager

import (
	"net/netip"
	"slices"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// A restarted mudd installs the addresses it had learned for its policies'
// names, snooped answers included, until they expire: a device that holds
// such an answer keeps reaching the address without asking again. An
// address whose answer expired while mudd was down is not installed.
func TestDNSAddressesSurviveRestart(t *testing.T) {
	srv, u := camServer(t, "", false)
	dir := t.TempDir()
	clock := newManualClock()
	h := startManager(t, harnessOpts{dir: dir, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()),
		anchors: srv.ca.Pool(), now: clock.Now})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateEnforced)
	for _, up := range []resolver.Update{
		{Name: "cloud.example", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.11")}, Expires: clock.Now().Add(time.Hour), Source: resolver.Snooped},
		{Name: "cloud.example", Addrs: []netip.Addr{netip.MustParseAddr("203.0.113.12")}, Expires: clock.Now().Add(time.Minute), Source: resolver.Active},
	} {
		if err := h.m.HandleDNS(bg, up); err != nil {
			t.Fatal(err)
		}
	}
	h.tick() // the addresses are saved on the tick
	h.stop()

	clock.Advance(10 * time.Minute) // the second answer expires meanwhile
	fe := newFakeEnforcer()
	startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, srv.ca.Pool()), anchors: srv.ca.Pool(), now: clock.Now})
	if got := fe.peer("dns:cloud.example"); !slices.Equal(got, []string{"203.0.113.11/32"}) {
		t.Errorf("after the restart the name's addresses are %v, want the unexpired snooped one", got)
	}
}
