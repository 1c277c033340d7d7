package store

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// copyFixture copies testdata/name into a fresh directory (Open migrates
// in place) and returns the copy's path.
func copyFixture(t *testing.T, name string) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(t.TempDir(), "mud.db")
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// testdata/schema-v2.db was written by a schema-2 mudd: its overrides are
// policy rules with numeric enums, as mudctl override added them. Opened
// now, every entry is the same rule in the store's own record, in the same
// order, and nothing else changed.
func TestMigrateV2Overrides(t *testing.T) {
	path := copyFixture(t, "schema-v2.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() }) // on a failure before the Close below
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 2, 1, 9, 30, 0, 0, time.UTC)
	pfx := netip.MustParsePrefix
	port := func(first, last uint16) *PortRange { return &PortRange{First: first, Last: last} }
	mac1, mac2 := "02:00:5e:00:53:01", "02:00:5e:00:53:02"
	want := map[string]Overrides{
		mac1: {MAC: mac1, Rules: []OverrideRule{
			{Direction: OverrideFromDevice, Verdict: OverrideAllow, Prefix: pfx("198.51.100.7/32"), Protocol: ProtoTCP,
				DstPort: port(443, 443), Comment: "NAS backup", By: "root", CreatedAt: at},
			{Direction: OverrideFromDevice, Verdict: OverrideDeny, DNSName: "ads.example.com", By: "root", CreatedAt: at},
			{Direction: OverrideToDevice, Verdict: OverrideAllow, Prefix: pfx("192.0.2.0/24"), Protocol: ProtoTCP,
				DstPort: port(22, 22), Comment: "ssh from the admin LAN", By: "uid 1000", CreatedAt: at},
			{Direction: OverrideToDevice, Verdict: OverrideDeny, By: "root", CreatedAt: at},
		}},
		mac2: {MAC: mac2, Rules: []OverrideRule{
			{Direction: OverrideFromDevice, Verdict: OverrideAllow, Prefix: pfx("2001:db8::/32"), Protocol: ProtoUDP,
				DstPort: port(1000, 2000), By: "root", CreatedAt: at},
			{Direction: OverrideFromDevice, Verdict: OverrideDeny, Protocol: 1, By: "root", CreatedAt: at},
			{Direction: OverrideToDevice, Verdict: OverrideAllow, Prefix: pfx("2001:db8:1::5/128"), Protocol: 47, By: "root", CreatedAt: at},
		}},
	}
	if !reflect.DeepEqual(snap.Overrides, want) {
		t.Fatalf("migrated overrides:\n got %+v\nwant %+v", snap.Overrides, want)
	}
	if len(snap.Devices) != 2 || snap.Devices[mac1].Hostname != "nas-client" || snap.Devices[mac1].State != StateEnforced ||
		snap.LastEventSeq != 2 {
		t.Errorf("devices or events changed by the migration: %+v, last event %d", snap.Devices, snap.LastEventSeq)
	}
	// What is stored now has names where there were numbers.
	err = s.View(func(tx *Tx) error {
		raw := string(tx.btx.Bucket([]byte(bucketOverrides)).Get([]byte(mac1)))
		if !strings.Contains(raw, `"direction":"from-device","verdict":"allow","prefix":"198.51.100.7/32","protocol":6,"dst_port":{"first":443,"last":443}`) {
			return errors.New("stored override: " + raw)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertSchema(t, path, "4")
	assertSchema(t, path+".schema-v2.bak", "2")
}

// An override the store's record cannot express fails the migration, and
// the file stays at schema 2.
func TestMigrateV2OverrideRefused(t *testing.T) {
	for name, rule := range map[string]string{
		"ICMP type":        `{"direction":1,"rule":{"name":"x","family":0,"peer":{"kind":0},"protocol":1,"icmp":{"type":8},"verdict":2}}`,
		"controller peer":  `{"direction":1,"rule":{"name":"x","family":0,"peer":{"kind":4,"value":"urn:x"},"verdict":1}}`,
		"unknown verdict":  `{"direction":1,"rule":{"name":"x","family":0,"peer":{"kind":0},"verdict":3}}`,
		"family of prefix": `{"direction":2,"rule":{"name":"x","family":1,"peer":{"kind":7,"prefix":"2001:db8::/32"},"verdict":1}}`,
	} {
		t.Run(name, func(t *testing.T) {
			path := copyFixture(t, "schema-v2.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(btx *bolt.Tx) error {
				return btx.Bucket([]byte(bucketOverrides)).Put([]byte("02:00:5e:00:53:03"), []byte(`{"mac":"02:00:5e:00:53:03","rules":[`+rule+`]}`))
			})
			if err := errors.Join(err, db.Close()); err != nil {
				t.Fatal(err)
			}
			_, err = Open(path, Options{})
			if err == nil || !strings.Contains(err.Error(), "migrate schema 2 to 3") || !strings.Contains(err.Error(), "02:00:5e:00:53:03") {
				t.Fatalf("Open: %v, want a migration error naming the device", err)
			}
			assertSchema(t, path, "2")
		})
	}
}

// testdata/schema-v3.db was written by a schema-3 mudd: a device with a
// DHCP lease and overrides, a device bound by mudctl bind (without
// addresses, as that version could only bind a URL), and an event. Opened
// now, the binding binds its device's addresses on first use, and nothing
// else changed.
func TestMigrateV3BindingsBindOnFirstUse(t *testing.T) {
	path := copyFixture(t, "schema-v3.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	camera, sensor := "02:00:5e:00:53:11", "02:00:5e:00:53:12"
	want := map[string]Binding{sensor: {MAC: sensor, MUDURL: "https://mud.example.com/sensor.json", FirstUse: true, By: "root", CreatedAt: at}}
	if !reflect.DeepEqual(snap.Bindings, want) {
		t.Fatalf("migrated bindings:\n got %+v\nwant %+v", snap.Bindings, want)
	}
	if d := snap.Devices[camera]; len(snap.Devices) != 2 || len(d.IPs) != 1 || d.IPs[0] != netip.MustParseAddr("192.0.2.11") ||
		snap.Devices[sensor].URLSource != SourceAdminBind || len(snap.Overrides[camera].Rules) != 1 || snap.LastEventSeq != 1 {
		t.Errorf("devices, overrides or events changed by the migration: %+v, %+v, last event %d", snap.Devices, snap.Overrides, snap.LastEventSeq)
	}
	// A binding with addresses is kept as it is written now.
	err = s.Update(func(tx *Tx) error {
		return tx.Bindings().Put(Binding{MAC: camera, MUDURL: "https://mud.example.com/camera.json",
			IPs: []netip.Addr{netip.MustParseAddr("192.0.2.50"), netip.MustParseAddr("2001:db8::50")}})
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertSchema(t, path, "4")
	assertSchema(t, path+".schema-v3.bak", "3")
}

// A binding's addresses are checked: one address twice is refused.
func TestBindingAddressesValidated(t *testing.T) {
	s, err := Open(filepath.Join(t.TempDir(), "mud.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	a := netip.MustParseAddr("192.0.2.50")
	err = s.Update(func(tx *Tx) error {
		return tx.Bindings().Put(Binding{MAC: "02:00:5e:00:53:11", MUDURL: "https://mud.example.com/x.json", IPs: []netip.Addr{a, a}})
	})
	if err == nil || !strings.Contains(err.Error(), "192.0.2.50 twice") {
		t.Fatalf("Put: %v, want an error naming the repeated address", err)
	}
}
