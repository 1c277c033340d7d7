package manager

import (
	"strings"
	"testing"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/store"
)

// Devices that joined while mudd was down: found present at start, or
// with a lease read from the server's lease file, they are discovered with
// their MUD URL unknown until their next DHCP request says it; a device
// known with a URL is not made unknown again.
func TestJoinedWhileDownURLUnknown(t *testing.T) {
	srv := newMUDServer(t)
	u := srv.url("mud.example", "/cam.json")
	srv.publish("/cam.json", mudFile(u, ""), false)
	h, _ := unitHarness(t, srv, Settings{})
	const unknown = "MUD URL unknown until its next DHCP request"

	if err := h.m.HandleLease(bg, dhcpsnoop.Event{Kind: dhcpsnoop.KindPresent, MAC: mac(1), Interface: "br-lan", Reason: "found in the bridge's forwarding database"}); err != nil {
		t.Fatal(err)
	}
	d := h.waitState(mac(1), store.StateDiscovered)
	if !strings.Contains(d.Reason, unknown) || !strings.Contains(d.Reason, "forwarding database") || len(d.IPs) != 0 {
		t.Errorf("present: %q %v", d.Reason, d.IPs)
	}
	if !hasEventKind(t, h, mac(1), "present") {
		t.Error("no present event")
	}

	ev := dhcpsnoop.Event{Kind: dhcpsnoop.KindBound, MAC: mac(2), Family: 4, IPv4: ip1, Reason: dhcpsnoop.ReasonLeaseFile}
	if err := h.m.HandleLease(bg, ev); err != nil {
		t.Fatal(err)
	}
	d = h.waitState(mac(2), store.StateDiscovered)
	if !strings.Contains(d.Reason, unknown) || len(d.IPs) != 1 || d.IPs[0] != ip1 {
		t.Errorf("from the lease file: %q %v", d.Reason, d.IPs)
	}
	// Its renewal announces the URL.
	h.lease(dhcpsnoop.KindRenewed, mac(2), ip1, u)
	h.waitState(mac(2), store.StateEnforced)

	// Known with a URL: present at the next start changes nothing.
	if err := h.m.HandleLease(bg, dhcpsnoop.Event{Kind: dhcpsnoop.KindPresent, MAC: mac(2), Reason: "found in the neighbour table"}); err != nil {
		t.Fatal(err)
	}
	if d := h.waitState(mac(2), store.StateEnforced); d.MUDURL != u {
		t.Errorf("after present: URL %q", d.MUDURL)
	}
	// A renewal without a URL: the device has none, no longer unknown.
	h.lease(dhcpsnoop.KindRenewed, mac(1), ip2, "")
	if d := h.waitState(mac(1), store.StateDiscovered); d.Reason != "no MUD URL" {
		t.Errorf("after a request without a URL: %q", d.Reason)
	}
}

func hasEventKind(t *testing.T, h *harness, m interface{ String() string }, kind string) bool {
	t.Helper()
	evs, err := h.m.Events(bg, 0, 1000)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range evs {
		if e.MAC == m.String() && e.Kind == kind {
			return true
		}
	}
	return false
}
