package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

var t0 = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func fixedClock() time.Time { return t0 }

// openTemp opens a store in a fresh directory with a fixed clock, closed
// when the test ends.
func openTemp(t testing.TB, opts Options) (*Store, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mud.db")
	if opts.Now == nil {
		opts.Now = fixedClock
	}
	s, err := Open(path, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s, path
}

func mustUpdate(t testing.TB, s *Store, fn func(*Tx) error) {
	t.Helper()
	if err := s.Update(fn); err != nil {
		t.Fatal(err)
	}
}

type roundTrip struct {
	name string
	run  func(t *testing.T, s *Store)
}

// rt builds a round-trip case for one table: Put in, Get by key (which
// may be spelled differently from the stored key) gives want, List has it,
// Delete removes it, and a second Delete or Get reports ErrNotFound.
func rt[T any](name string, tbl func(*Tx) Table[T], in T, key string, want T) roundTrip {
	return roundTrip{name, func(t *testing.T, s *Store) {
		mustUpdate(t, s, func(tx *Tx) error { return tbl(tx).Put(in) })
		var got T
		var list []T
		err := s.View(func(tx *Tx) (err error) {
			if got, err = tbl(tx).Get(key); err != nil {
				return err
			}
			list, err = tbl(tx).List()
			return err
		})
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(got, want) {
			t.Fatalf("Get(%q):\n got %+v\nwant %+v", key, got, want)
		}
		if len(list) != 1 || !reflect.DeepEqual(list[0], want) {
			t.Fatalf("List = %+v", list)
		}
		mustUpdate(t, s, func(tx *Tx) error { return tbl(tx).Delete(key) })
		err = s.Update(func(tx *Tx) error { return tbl(tx).Delete(key) })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("second Delete: %v, want ErrNotFound", err)
		}
		err = s.View(func(tx *Tx) error { _, err := tbl(tx).Get(key); return err })
		if !errors.Is(err, ErrNotFound) {
			t.Fatalf("Get after Delete: %v, want ErrNotFound", err)
		}
	}}
}

func sampleDevice() Device {
	return Device{
		MAC:         "02:00:00:00:00:01",
		IPs:         []netip.Addr{netip.MustParseAddr("192.0.2.10"), netip.MustParseAddr("2001:db8::10")},
		Hostname:    "lamp",
		Interface:   "br-lan",
		Port:        "lan1",
		MUDURL:      "https://mud.example.com/lamp.json",
		URLSource:   SourceDHCPv6,
		State:       StateEnforced,
		Reason:      "verified",
		PolicyID:    "p1a2b3",
		Enforcement: EnforcementQuarantined,
		Quarantine:  &Hold{By: "admin", At: t0, Reason: "scan"},
		LeaseExpiry: t0.Add(time.Hour),
		FirstSeen:   t0.Add(-time.Hour),
		LastSeen:    t0,
	}
}

func sampleOverrides() Overrides {
	return Overrides{MAC: "02:00:00:00:00:01", Rules: []OverrideRule{
		{Direction: OverrideFromDevice, Verdict: OverrideAllow, Prefix: netip.MustParsePrefix("192.168.1.0/24"),
			Protocol: ProtoTCP, DstPort: &PortRange{First: 445, Last: 445}, Comment: "NAS", By: "admin", CreatedAt: t0},
		{Direction: OverrideToDevice, Verdict: OverrideDeny, DNSName: "scanner.example.com", Protocol: 1},
	}}
}

func TestRoundTrip(t *testing.T) {
	dev := sampleDevice()
	devIn := dev
	devIn.MAC = "02-00-00-00-00-01" // any spelling in, normalised out
	devWant := dev
	devWant.UpdatedAt = t0 // stamped by the store
	devUpper, devUpperWant := devIn, devWant
	devUpper.MAC, devUpperWant.MAC = "02:AB:CD:00:00:01", "02:ab:cd:00:00:01"
	mf := MUDFile{
		URL: "https://mud.example.com/lamp.json", Body: []byte(`{"ietf-mud:mud":{}}`), Signature: []byte{0x30, 0x82, 0},
		SignatureURL: "https://mud.example.com/lamp.p7s", ETag: `"abc"`, LastModified: "Sun, 01 Mar 2026 12:00:00 GMT",
		FetchedAt: t0, VerifiedAt: t0, Verdict: VerdictValid, Signer: "CN=Example Lamp Co",
		CacheValidity: 48 * time.Hour, RefreshDue: t0.Add(48 * time.Hour),
	}
	pin := Pin{MAC: "02:00:00:00:00:01", MUDURL: mf.URL, Signer: "CN=Example Lamp Co", Authority: "mud.example.com", FirstSeen: t0}
	appr := Approval{MAC: "02:00:00:00:00:01", MUDURL: mf.URL, Digest: mf.Digest(), By: "admin", At: t0, Reason: "IP literals reviewed"}
	ctl := ControllerMapping{Name: "urn:ietf:params:mud:ntp", Prefixes: []netip.Prefix{netip.MustParsePrefix("192.0.2.123/32"), netip.MustParsePrefix("2001:db8::123/128")}, Source: "config", UpdatedAt: t0}
	myctl := ctl
	myctl.Name = mf.URL
	bind := Binding{MAC: "02:00:00:00:00:02", MUDURL: mf.URL, By: "admin", CreatedAt: t0}
	bindIn := bind
	bindIn.MAC = "02:00:00:00:00:02"

	cases := []roundTrip{
		rt("device", (*Tx).Devices, devIn, "02:00:00:00:00:01", devWant),
		rt("device key in upper case", (*Tx).Devices, devUpper, "02-ab-cd-00-00-01", devUpperWant),
		rt("binding", (*Tx).Bindings, bindIn, "02-00-00-00-00-02", bind),
		rt("mud file", (*Tx).MUDFiles, mf, mf.URL, mf),
		rt("pin by url", (*Tx).PinsByURL, pin, mf.URL, pin),
		rt("pin by mac", (*Tx).PinsByMAC, pin, "02:00:00:00:00:01", pin),
		rt("approval by mac", (*Tx).ApprovalsByMAC, appr, "02:00:00:00:00:01", appr),
		rt("approval by url", (*Tx).ApprovalsByURL, appr, mf.URL, appr),
		rt("overrides", (*Tx).Overrides, sampleOverrides(), "02:00:00:00:00:01", sampleOverrides()),
		rt("controller", (*Tx).Controllers, ctl, ctl.Name, ctl),
		rt("my-controller", (*Tx).MyControllers, myctl, myctl.Name, myctl),
	}
	s, _ := openTemp(t, Options{})
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) { c.run(t, s) })
	}
}

// The JSON of an override is the file format: names, not numbers, so a
// change elsewhere cannot silently change what a stored entry means.
func TestOverrideEncodingStable(t *testing.T) {
	raw, err := json.Marshal(sampleOverrides().Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	want := `{"direction":"from-device","verdict":"allow","prefix":"192.168.1.0/24","protocol":6,"dst_port":{"first":445,"last":445},"comment":"NAS","by":"admin","created_at":"2026-03-01T12:00:00Z"}`
	if string(raw) != want {
		t.Fatalf("override encoding changed:\n got %s\nwant %s", raw, want)
	}
}

func TestPutRejects(t *testing.T) {
	s, _ := openTemp(t, Options{})
	cases := []struct {
		name string
		put  func(*Tx) error
	}{
		{"bad MAC", func(tx *Tx) error { return tx.Devices().Put(Device{MAC: "lamp", State: StateDiscovered}) }},
		{"EUI-64 MAC", func(tx *Tx) error {
			return tx.Devices().Put(Device{MAC: "02:00:00:ff:fe:00:00:01", State: StateDiscovered})
		}},
		{"unknown state", func(tx *Tx) error { return tx.Devices().Put(Device{MAC: "02:00:00:00:00:01", State: "happy"}) }},
		{"unknown URL source", func(tx *Tx) error {
			return tx.Devices().Put(Device{MAC: "02:00:00:00:00:01", State: StateDiscovered, URLSource: "lldp"})
		}},
		{"unknown enforcement", func(tx *Tx) error {
			return tx.Devices().Put(Device{MAC: "02:00:00:00:00:01", State: StateFailed, Enforcement: "lenient"})
		}},
		{"binding without URL", func(tx *Tx) error { return tx.Bindings().Put(Binding{MAC: "02:00:00:00:00:01"}) }},
		{"MUD file without URL", func(tx *Tx) error { return tx.MUDFiles().Put(MUDFile{Body: []byte("{}")}) }},
		{"override without verdict", func(tx *Tx) error {
			return tx.Overrides().Put(Overrides{MAC: "02:00:00:00:00:01", Rules: []OverrideRule{{Direction: OverrideFromDevice}}})
		}},
		{"override with a port but no tcp or udp", func(tx *Tx) error {
			return tx.Overrides().Put(Overrides{MAC: "02:00:00:00:00:01", Rules: []OverrideRule{
				{Direction: OverrideToDevice, Verdict: OverrideAllow, DstPort: &PortRange{First: 22, Last: 22}}}})
		}},
		{"override with a prefix and a DNS name", func(tx *Tx) error {
			return tx.Overrides().Put(Overrides{MAC: "02:00:00:00:00:01", Rules: []OverrideRule{
				{Direction: OverrideToDevice, Verdict: OverrideAllow, DNSName: "a.example", Prefix: netip.MustParsePrefix("192.0.2.0/24")}}})
		}},
		{"event without kind", func(tx *Tx) error { _, err := tx.AppendEvent(Event{}); return err }},
		{"event with bad MAC", func(tx *Tx) error { _, err := tx.AppendEvent(Event{Kind: "x", MAC: "nope"}); return err }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if err := s.Update(c.put); !errors.Is(err, ErrInvalid) {
				t.Fatalf("got %v, want ErrInvalid", err)
			}
		})
	}
	assertEmpty(t, s)
}

func TestWriteInViewFails(t *testing.T) {
	s, _ := openTemp(t, Options{})
	writes := map[string]func(*Tx) error{
		"Put":         func(tx *Tx) error { return tx.Devices().Put(Device{MAC: "02:00:00:00:00:01", State: StateDiscovered}) },
		"Delete":      func(tx *Tx) error { return tx.Devices().Delete("02:00:00:00:00:01") },
		"AppendEvent": func(tx *Tx) error { _, err := tx.AppendEvent(Event{Kind: "k"}); return err },
	}
	for name, w := range writes {
		if err := s.View(w); !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s in View: %v, want ErrReadOnly", name, err)
		}
	}
}

// assertEmpty fails unless the store holds no records and no events.
func assertEmpty(t *testing.T, s *Store) {
	t.Helper()
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	v := reflect.ValueOf(*snap)
	for i := range v.NumField() {
		if f := v.Field(i); f.Kind() == reflect.Map && f.Len() != 0 {
			t.Errorf("%s not empty: %v", v.Type().Field(i).Name, f.Interface())
		}
	}
	if snap.LastEventSeq != 0 {
		t.Errorf("LastEventSeq = %d, want 0", snap.LastEventSeq)
	}
}

func TestUpdateIsAtomic(t *testing.T) {
	boom := errors.New("boom")
	cases := []struct {
		name string
		end  func() error // called after the writes
	}{
		{"error", func() error { return boom }},
		{"panic", func() error { panic(boom) }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			s, _ := openTemp(t, Options{})
			func() {
				defer func() { _ = recover() }()
				err := s.Update(func(tx *Tx) error {
					if err := tx.Devices().Put(sampleDevice()); err != nil {
						return err
					}
					if _, err := tx.AppendEvent(Event{MAC: "02:00:00:00:00:01", Kind: "state", To: StateEnforced}); err != nil {
						return err
					}
					if err := tx.MUDFiles().Put(MUDFile{URL: "https://x/y.json"}); err != nil {
						return err
					}
					return c.end()
				})
				if !errors.Is(err, boom) {
					t.Errorf("Update: %v, want boom", err)
				}
			}()
			assertEmpty(t, s)
			// The rolled-back event's sequence number is not burnt either.
			var e Event
			mustUpdate(t, s, func(tx *Tx) (err error) { e, err = tx.AppendEvent(Event{Kind: "k"}); return })
			if e.Seq != 1 {
				t.Fatalf("first committed event has seq %d, want 1", e.Seq)
			}
		})
	}
}

func TestEventLog(t *testing.T) {
	const maxEv = 5
	s, path := openTemp(t, Options{MaxEvents: maxEv})
	appendN := func(s *Store, n int) {
		for range n {
			mustUpdate(t, s, func(tx *Tx) error {
				_, err := tx.AppendEvent(Event{MAC: "02:00:00:00:00:01", Kind: "state", From: StateFetching, To: StateEnforced, Message: "m"})
				return err
			})
		}
	}
	appendN(s, 3)
	// Close and reopen with the bound in force: numbering continues.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err := Open(path, Options{MaxEvents: maxEv, Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	appendN(s, 9)

	all, seqs := eventSeqs(t, s, 0, 0)
	if want := []uint64{8, 9, 10, 11, 12}; !reflect.DeepEqual(seqs, want) {
		t.Fatalf("seqs after 12 appends with max %d = %v, want %v", maxEv, seqs, want)
	}
	if e := all[0]; e.Time != t0 || e.MAC != "02:00:00:00:00:01" || e.Kind != "state" || e.To != StateEnforced {
		t.Fatalf("event not as appended: %+v", e)
	}
	pages := []struct {
		since uint64
		limit int
		want  []uint64
	}{
		{0, 2, []uint64{8, 9}},
		{9, 2, []uint64{10, 11}},
		{11, 0, []uint64{12}},
		{12, 10, nil},
		{100, 10, nil},
	}
	for _, p := range pages {
		if _, gs := eventSeqs(t, s, p.since, p.limit); !reflect.DeepEqual(gs, p.want) {
			t.Errorf("Events(%d, %d) = %v, want %v", p.since, p.limit, gs, p.want)
		}
	}
	// A smaller bound on a later open trims on the next append.
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(path, Options{MaxEvents: 2})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	appendN(s, 1)
	if got, _ := s.Events(0, 0); len(got) != 2 || got[0].Seq != 12 || got[1].Seq != 13 {
		t.Fatalf("after shrinking bound: %+v", got)
	}
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
}

// eventSeqs returns Events(since, limit) and their sequence numbers.
func eventSeqs(t *testing.T, s *Store, since uint64, limit int) ([]Event, []uint64) {
	t.Helper()
	evs, err := s.Events(since, limit)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, e := range evs {
		seqs = append(seqs, e.Seq)
	}
	return evs, seqs
}

func TestSnapshot(t *testing.T) {
	s, _ := openTemp(t, Options{})
	mustUpdate(t, s, func(tx *Tx) error {
		for i := range 3 {
			d := sampleDevice()
			d.MAC = fmt.Sprintf("02:00:00:00:00:%02x", i)
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
		}
		if err := tx.Bindings().Put(Binding{MAC: "02:00:00:00:00:02", MUDURL: "https://a/b.json"}); err != nil {
			return err
		}
		if err := tx.Controllers().Put(ControllerMapping{Name: "urn:ietf:params:mud:dns"}); err != nil {
			return err
		}
		_, err := tx.AppendEvent(Event{Kind: "start"})
		return err
	})
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	if len(snap.Devices) != 3 || snap.Devices["02:00:00:00:00:02"].Hostname != "lamp" ||
		snap.Bindings["02:00:00:00:00:02"].MUDURL != "https://a/b.json" ||
		len(snap.Controllers) != 1 || snap.LastEventSeq != 1 || snap.SchemaVersion != SchemaVersion {
		t.Fatalf("snapshot: %+v", snap)
	}
}

// buildV1 writes a schema-v1 database (see schema.go) with bbolt alone,
// as the first mudd release would have left it.
func buildV1(t *testing.T, devices map[string]string, quarantine map[string]string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "mud.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(btx *bolt.Tx) error {
		put := func(bucket string, kv map[string]string) error {
			b, err := btx.CreateBucketIfNotExists([]byte(bucket))
			for k, v := range kv {
				if err == nil {
					err = b.Put([]byte(k), []byte(v))
				}
			}
			return err
		}
		return errors.Join(
			put("meta", map[string]string{"schema": "1"}),
			put("devices", devices),
			put("quarantine", quarantine),
			put("bindings", map[string]string{"02:00:00:00:00:03": `{"mac":"02:00:00:00:00:03","mud_url":"https://mud.example.com/bound.json"}`}),
			put("mudfiles", nil),
			put("events", map[string]string{"\x00\x00\x00\x00\x00\x00\x00\x01": `{"seq":1,"time":"2026-01-01T00:00:00Z","mac":"02:00:00:00:00:01","kind":"state","to":"enforced"}`}),
		)
	})
	if err == nil {
		err = db.Update(func(btx *bolt.Tx) error { return btx.Bucket([]byte("events")).SetSequence(1) })
	}
	if err := errors.Join(err, db.Close()); err != nil {
		t.Fatal(err)
	}
	return path
}

func TestMigrateV1(t *testing.T) {
	path := buildV1(t, map[string]string{
		"02-00-00-00-00-01": `{"mac":"02-00-00-00-00-01","ip":"192.0.2.1","hostname":"old","state":"fetching","updated":"2026-01-01T00:00:00Z"}`,
		"02:00:00:00:00:01": `{"mac":"02:00:00:00:00:01","ip":"192.0.2.2","hostname":"lamp","mud_url":"https://mud.example.com/lamp.json","state":"enforced","updated":"2026-02-01T00:00:00Z"}`,
		"02:00:00:00:00:03": `{"mac":"02:00:00:00:00:03","ip":"192.0.2.3","mud_url":"https://mud.example.com/bound.json","state":"pending-approval","reason":"unsigned","updated":"2026-02-01T00:00:00Z"}`,
	}, map[string]string{"02:00:00:00:00:03": "admin: suspicious", "02:00:00:00:00:09": "gone"})

	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	upd := time.Date(2026, 2, 1, 0, 0, 0, 0, time.UTC)
	want := map[string]Device{
		"02:00:00:00:00:01": {MAC: "02:00:00:00:00:01", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.2")}, Hostname: "lamp",
			MUDURL: "https://mud.example.com/lamp.json", URLSource: SourceDHCPv4, State: StateEnforced, UpdatedAt: upd},
		"02:00:00:00:00:03": {MAC: "02:00:00:00:00:03", IPs: []netip.Addr{netip.MustParseAddr("192.0.2.3")},
			MUDURL: "https://mud.example.com/bound.json", URLSource: SourceAdminBind, State: StatePendingApproval, Reason: "unsigned",
			Quarantine: &Hold{Reason: "admin: suspicious"}, UpdatedAt: upd},
		"02:00:00:00:00:09": {MAC: "02:00:00:00:00:09", State: StateRemoved, Quarantine: &Hold{Reason: "gone"}},
	}
	if !reflect.DeepEqual(snap.Devices, want) {
		t.Fatalf("migrated devices:\n got %+v\nwant %+v", snap.Devices, want)
	}
	if snap.LastEventSeq != 1 || len(snap.Bindings) != 1 {
		t.Fatalf("events or bindings not carried over: %+v", snap)
	}
	var e Event
	mustUpdate(t, s, func(tx *Tx) (err error) { e, err = tx.AppendEvent(Event{Kind: "k"}); return })
	if e.Seq != 2 {
		t.Fatalf("event seq after migration = %d, want 2", e.Seq)
	}
	err = s.View(func(tx *Tx) error {
		if tx.btx.Bucket([]byte(bucketV1Quarantine)) != nil {
			return errors.New("v1 quarantine bucket still there")
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	// The pre-migration backup is the untouched v1 file.
	assertSchema(t, path+".schema-v1.bak", "1")
}

// A migration that fails leaves the file as it was.
func TestMigrateV1Failure(t *testing.T) {
	path := buildV1(t, map[string]string{"not-a-mac": `{"state":"enforced"}`}, nil)
	_, err := Open(path, Options{})
	if err == nil || !strings.Contains(err.Error(), "migrate schema 1 to 2") || !strings.Contains(err.Error(), "not-a-mac") {
		t.Fatalf("Open: %v, want a migration error naming the key", err)
	}
	assertSchema(t, path, "1")
}

func assertSchema(t *testing.T, path, want string) {
	t.Helper()
	db, err := bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	err = db.View(func(btx *bolt.Tx) error {
		if got := string(btx.Bucket([]byte("meta")).Get([]byte("schema"))); got != want {
			return fmt.Errorf("%s: schema %q, want %q", path, got, want)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}

func TestOpenRefuses(t *testing.T) {
	cases := []struct {
		name   string
		meta   map[string]string // nil: no meta bucket, but another bucket
		is     error
		substr string
	}{
		{"newer schema", map[string]string{"schema": "5"}, ErrSchemaTooNew, "schema version 5, this build understands up to 4"},
		{"unreadable schema", map[string]string{"schema": "two"}, nil, `schema version "two"`},
		{"foreign bbolt file", nil, nil, "not a mud database"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mud.db")
			db, err := bolt.Open(path, 0o600, nil)
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(btx *bolt.Tx) error {
				name := "meta"
				if c.meta == nil {
					name = "other"
				}
				b, err := btx.CreateBucket([]byte(name))
				for k, v := range c.meta {
					if err == nil {
						err = b.Put([]byte(k), []byte(v))
					}
				}
				return err
			})
			if err := errors.Join(err, db.Close()); err != nil {
				t.Fatal(err)
			}
			s, err := Open(path, Options{})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if (c.is != nil && !errors.Is(err, c.is)) || !strings.Contains(err.Error(), c.substr) {
				t.Fatalf("Open: %v; want %v containing %q", err, c.is, c.substr)
			}
		})
	}
}

// bbolt's lock is flock(2), per open file description, so a second Open in
// the same process contends exactly as a second mudd would.
func TestSecondOpenTimesOut(t *testing.T) {
	_, path := openTemp(t, Options{})
	start := time.Now()
	s2, err := Open(path, Options{LockTimeout: 200 * time.Millisecond})
	if err == nil {
		s2.Close()
		t.Fatal("second Open succeeded while the first holds the lock")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "another mudd") || !strings.Contains(err.Error(), path) {
		t.Fatalf("second Open: %v", err)
	}
	// bbolt stops retrying one 50ms poll early.
	if d := time.Since(start); d < 100*time.Millisecond || d > 5*time.Second {
		t.Fatalf("second Open gave up after %s, want about the 200ms timeout", d)
	}
}

func TestBackup(t *testing.T) {
	s, _ := openTemp(t, Options{})
	mustUpdate(t, s, func(tx *Tx) error { return tx.Devices().Put(sampleDevice()) })
	copyPath := filepath.Join(t.TempDir(), "copy.db")
	f, err := os.Create(copyPath)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.Backup(f); err != nil {
		t.Fatal(err)
	}
	if err := f.Close(); err != nil {
		t.Fatal(err)
	}
	c, err := Open(copyPath, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.View(func(tx *Tx) error { _, err := tx.Devices().Get("02:00:00:00:00:01"); return err }); err != nil {
		t.Fatal(err)
	}
}
