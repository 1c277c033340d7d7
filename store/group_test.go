package store

import (
	"errors"
	"testing"
)

// TestGroup: a Group's changes are one transaction — seen inside it, not
// outside until Commit, durable after it; a change that fails leaves
// nothing of its own and keeps the changes before it.
func TestGroup(t *testing.T) {
	s, path := openTemp(t, Options{})
	g, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	d1, d2 := sampleDevice(), sampleDevice()
	d2.MAC = "02:00:00:00:00:02"
	if err := g.Update(func(tx *Tx) error { return tx.Devices().Put(d1) }); err != nil {
		t.Fatal(err)
	}
	boom := errors.New("boom")
	err = g.Update(func(tx *Tx) error {
		if err := tx.Devices().Put(d2); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("failing change: %v, want boom", err)
	}
	if err := g.Update(func(tx *Tx) error { _, err := tx.AppendEvent(Event{MAC: d1.MAC, Kind: "state"}); return err }); err != nil {
		t.Fatal(err)
	}
	if g.Len() != 2 {
		t.Errorf("Len %d, want 2", g.Len())
	}
	has := func(view func(func(*Tx) error) error, mac string) bool {
		var ok bool
		if err := view(func(tx *Tx) error { _, err := tx.Devices().Get(mac); ok = err == nil; return nil }); err != nil {
			t.Fatal(err)
		}
		return ok
	}
	if !has(g.View, d1.MAC) || has(g.View, d2.MAC) {
		t.Errorf("inside the group: device 1 %v (want true), device 2 %v (want false)", has(g.View, d1.MAC), has(g.View, d2.MAC))
	}
	if has(s.View, d1.MAC) {
		t.Error("a change is visible outside the group before Commit")
	}
	before := s.Commits()
	if err := g.Commit(); err != nil {
		t.Fatal(err)
	}
	if n := s.Commits() - before; n != 1 {
		t.Errorf("a group's Commit counted %d commits, want 1", n)
	}
	// The store takes Updates again once the group is committed.
	d3 := sampleDevice()
	d3.MAC = "02:00:00:00:00:03"
	mustUpdate(t, s, func(tx *Tx) error { return tx.Devices().Put(d3) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	if !has(s2.View, d1.MAC) || has(s2.View, d2.MAC) {
		t.Errorf("after Commit and reopen: device 1 %v (want true), device 2 %v (want false)", has(s2.View, d1.MAC), has(s2.View, d2.MAC))
	}
	if evs, err := s2.Events(0, 10); err != nil || len(evs) != 1 || evs[0].Seq != 1 {
		t.Errorf("events after Commit: %v, %v; want one, seq 1", evs, err)
	}
}

// TestGroupStart commits a group in the background: the caller reads the
// store meanwhile, a later Update waits for the commit, and what wait
// returned nil for is on disk.
func TestGroupStart(t *testing.T) {
	s, path := openTemp(t, Options{})
	g, err := s.Begin()
	if err != nil {
		t.Fatal(err)
	}
	d1 := sampleDevice()
	if err := g.Update(func(tx *Tx) error { return tx.Devices().Put(d1) }); err != nil {
		t.Fatal(err)
	}
	before := s.Commits()
	wait := g.Start()
	if err := s.View(func(tx *Tx) error { _, err := tx.Devices().List(); return err }); err != nil {
		t.Errorf("reading while the group commits: %v", err)
	}
	d2 := sampleDevice()
	d2.MAC = "02:00:00:00:00:02"
	mustUpdate(t, s, func(tx *Tx) error { return tx.Devices().Put(d2) })
	if err := wait(); err != nil {
		t.Fatal(err)
	}
	if n := s.Commits() - before; n != 2 {
		t.Errorf("the group and an Update counted %d commits, want 2", n)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s2, err := Open(path, Options{Now: fixedClock})
	if err != nil {
		t.Fatal(err)
	}
	defer s2.Close()
	for _, mac := range []string{d1.MAC, d2.MAC} {
		if err := s2.View(func(tx *Tx) error { _, err := tx.Devices().Get(mac); return err }); err != nil {
			t.Errorf("device %s after the group's background commit and reopen: %v", mac, err)
		}
	}
}
