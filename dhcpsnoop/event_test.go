package dhcpsnoop

import (
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"
)

// The JSON shape `mudctl snoop -o json` prints, and the human line.
func TestEventOutput(t *testing.T) {
	ev := Event{
		Kind: KindBound, Time: t0, Interface: "br-lan", Family: 4, MAC: macDev1,
		IPv4: netip.MustParseAddr("192.0.2.50"), IPv6: []netip.Addr{netip.MustParseAddr("2001:db8:1::5")},
		LeaseTime: 2 * time.Minute, Expires: t0.Add(2 * time.Minute), MUDURL: urlA, Hostname: "bulb-1",
		ClientID: []byte{1, 2},
	}
	b, err := json.Marshal(ev)
	if err != nil {
		t.Fatal(err)
	}
	var got map[string]any
	if err := json.Unmarshal(b, &got); err != nil {
		t.Fatal(err)
	}
	for k, want := range map[string]any{
		"kind": "bound", "mac": "02:00:00:00:01:01", "ipv4": "192.0.2.50", "lease_seconds": 120.0,
		"mud_url": urlA, "hostname": "bulb-1", "client_id": "0102", "family": 4.0, "interface": "br-lan",
	} {
		if got[k] != want {
			t.Errorf("%s = %v, want %v (%s)", k, got[k], want, b)
		}
	}
	ev.LeaseTime = Infinite
	if b, _ := json.Marshal(ev); !strings.Contains(string(b), `"lease_seconds":-1`) {
		t.Errorf("infinite lease: %s", b)
	}
	line := ev.String()
	for _, want := range []string{"bound v4 02:00:00:00:01:01 on br-lan", "addrs=192.0.2.50,2001:db8:1::5", "lease=infinite", "mud-url=" + urlA} {
		if !strings.Contains(line, want) {
			t.Errorf("line %q lacks %q", line, want)
		}
	}
}
