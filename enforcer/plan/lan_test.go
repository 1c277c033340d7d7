package plan

import (
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// When the LAN's prefixes move, the bridge table holds the addresses of DNS
// names inside the new prefixes and none of the old, in the transaction
// that carries the change with it: what a planner configured with the new
// prefixes from the start installs.
func TestSetBridgeLANMovesDNSAddressesInOneTransaction(t *testing.T) {
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	oldLAN := []netip.Prefix{mustPrefix("198.51.100.0/24")}
	newLAN := []netip.Prefix{mustPrefix("203.0.113.0/24")}
	cfg := Config{Priority: -5, BridgePriority: -205, BridgeConntrack: true, BridgeLAN: oldLAN}
	dns := policy.Peer{Kind: policy.DNSName, Value: "hub.example"}
	lan := policy.Peer{Kind: policy.LocalNetworks}
	pol := policy.Policy{ID: "p1", MUDURL: "https://vendor.example/p1", FromDevice: []policy.Rule{
		{Name: "acl/f0", Peer: dns, Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept},
		{Name: "acl/f1", Peer: lan, Verdict: policy.Accept},
	}}
	dev := Device{MAC: net.HardwareAddr{2, 0, 0, 0, 0, 1}, Mode: Enforce, PolicyID: "p1",
		IPv4s: []netip.Addr{netip.MustParseAddr("198.51.100.10")}}
	peers := map[string][]Element{dns.Key(): {{Prefix: mustPrefix("198.51.100.5/32")}, {Prefix: mustPrefix("203.0.113.5/32")}},
		lan.Key(): {{Prefix: oldLAN[0]}}}
	pl := New(cfg)
	kernel := NewTables()
	p, err := pl.Replace(Desired{Policies: []policy.Policy{pol}, Devices: []Device{dev}, Peers: peers}, now)
	if err != nil {
		t.Fatal(err)
	}
	if err := kernel.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := pl.Commit(p); err != nil {
		t.Fatal(err)
	}
	before := kernel.String()

	pl.SetBridgeLAN(newLAN)
	p, err = pl.Update(Update{SetPeers: map[string][]Element{lan.Key(): {{Prefix: newLAN[0]}}}}, now)
	if err != nil {
		t.Fatal(err)
	}
	if !p.Rebuild() {
		t.Error("a change of the LAN's prefixes did not rebuild the tables")
	}
	if err := kernel.Apply(p); err != nil {
		t.Fatal(err)
	}
	if err := pl.Commit(p); err != nil {
		t.Fatal(err)
	}

	ref := New(Config{Priority: -5, BridgePriority: -205, BridgeConntrack: true, BridgeLAN: newLAN})
	peers[lan.Key()] = []Element{{Prefix: newLAN[0]}}
	rp, err := ref.Replace(Desired{Policies: []policy.Policy{pol}, Devices: []Device{dev}, Peers: peers}, now)
	if err != nil {
		t.Fatal(err)
	}
	want := NewTables()
	if err := want.Apply(rp); err != nil {
		t.Fatal(err)
	}
	if d := want.Diff(kernel, now); len(d) > 0 {
		t.Errorf("after the move the tables differ from a planner configured with the new prefixes:\n%s", strings.Join(d, "\n"))
	}
	if kernel.String() == before {
		t.Error("the bridge table did not change with the LAN's prefixes")
	}
	// The same prefixes again change nothing.
	pl.SetBridgeLAN(newLAN)
	if p, err = pl.Update(Update{}, now); err != nil || p.Rebuild() {
		t.Errorf("unchanged prefixes: rebuild %v, err %v", p != nil && p.Rebuild(), err)
	}
}
