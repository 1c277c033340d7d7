package store

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

var writeV2Fixture = flag.Bool("write-v2-fixture", false, "write testdata/schema-v2.db with this build's schema-2 encoding")

// TestWriteSchemaV2Fixture writes testdata/schema-v2.db: a database as a
// schema-2 mudd leaves it, with overrides in the encoding of that version
// (policy.Rule with numeric enums), as mudctl override would have added
// them. It runs only with -write-v2-fixture.
func TestWriteSchemaV2Fixture(t *testing.T) {
	if !*writeV2Fixture {
		t.Skip("writes the schema-2 fixture only with -write-v2-fixture")
	}
	at := time.Date(2026, 2, 1, 9, 30, 0, 0, time.UTC)
	path := filepath.Join(t.TempDir(), "schema-v2.db")
	s, err := Open(path, Options{Now: func() time.Time { return at }})
	if err != nil {
		t.Fatal(err)
	}
	prefix := func(s string) policy.Peer {
		return policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix(s)}
	}
	port := func(first, last uint16) *policy.PortRange { return &policy.PortRange{First: first, Last: last} }
	mac1, mac2 := "02:00:5e:00:53:01", "02:00:5e:00:53:02"
	o1 := Overrides{MAC: mac1, Rules: []OverrideRule{
		{Direction: policy.FromDevice, Comment: "NAS backup", By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Family: policy.IPv4, Peer: prefix("198.51.100.7/32"), Protocol: policy.ProtoTCP, DstPort: port(443, 443), Verdict: policy.Accept}},
		{Direction: policy.FromDevice, By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Peer: policy.Peer{Kind: policy.DNSName, Value: "ads.example.com"}, Verdict: policy.Drop}},
		{Direction: policy.ToDevice, Comment: "ssh from the admin LAN", By: "uid 1000", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Family: policy.IPv4, Peer: prefix("192.0.2.0/24"), Protocol: policy.ProtoTCP, DstPort: port(22, 22), Verdict: policy.Accept}},
		{Direction: policy.ToDevice, By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override", Verdict: policy.Drop}},
	}}
	o2 := Overrides{MAC: mac2, Rules: []OverrideRule{
		{Direction: policy.FromDevice, By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Family: policy.IPv6, Peer: prefix("2001:db8::/32"), Protocol: policy.ProtoUDP, DstPort: port(1000, 2000), Verdict: policy.Accept}},
		{Direction: policy.FromDevice, By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Protocol: policy.ProtoICMP, Verdict: policy.Drop}},
		{Direction: policy.ToDevice, By: "root", CreatedAt: at, Rule: policy.Rule{Name: "override",
			Family: policy.IPv6, Peer: prefix("2001:db8:1::5/128"), Protocol: 47, Verdict: policy.Accept}},
	}}
	err = s.Update(func(tx *Tx) error {
		for _, d := range []Device{
			{MAC: mac1, IPs: []netip.Addr{netip.MustParseAddr("192.0.2.10")}, Hostname: "nas-client",
				MUDURL: "https://mud.example.com/cam.json", URLSource: SourceDHCPv4, State: StateEnforced,
				PolicyID: "p0123", Enforcement: EnforcementEnforced, FirstSeen: at, LastSeen: at},
			{MAC: mac2, IPs: []netip.Addr{netip.MustParseAddr("2001:db8::20")}, State: StateDiscovered,
				Enforcement: EnforcementNone, FirstSeen: at, LastSeen: at},
		} {
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
		}
		for _, o := range []Overrides{o1, o2} {
			if err := tx.Overrides().Put(o); err != nil {
				return err
			}
			if _, err := tx.AppendEvent(Event{MAC: o.MAC, Kind: "override-added", Message: "by root"}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join("testdata", "schema-v2.db"), b, 0o644); err != nil {
		t.Fatal(err)
	}
}
