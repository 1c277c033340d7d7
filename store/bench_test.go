package store

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// BenchmarkDeviceEventUpdate is the manager's common write: a device's new
// state and its event, one fsync'd transaction. MUD_STORE_BENCH_DIR picks
// the filesystem (the default temp dir may be tmpfs, where fsync is free).
func BenchmarkDeviceEventUpdate(b *testing.B) {
	dir := os.Getenv("MUD_STORE_BENCH_DIR")
	if dir == "" {
		dir = b.TempDir()
	}
	path := filepath.Join(dir, fmt.Sprintf("bench-%d.db", time.Now().UnixNano()))
	b.Cleanup(func() { _ = os.Remove(path) })
	s, err := Open(path, Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	d := sampleDevice()
	for i := 0; b.Loop(); i++ {
		err := s.Update(func(tx *Tx) error {
			d.MAC = fmt.Sprintf("02:00:00:00:%02x:%02x", (i>>8)&0xff, i&0xff)
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
			_, err := tx.AppendEvent(Event{MAC: d.MAC, Kind: "state", From: StateFetching, To: StateEnforced})
			return err
		})
		if err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSnapshot1000 is the start-up read with 1,000 devices.
func BenchmarkSnapshot1000(b *testing.B) {
	s, _ := openTemp(b, Options{})
	mustUpdate(b, s, func(tx *Tx) error {
		d := sampleDevice()
		for i := range 1000 {
			d.MAC = fmt.Sprintf("02:00:00:00:%02x:%02x", i>>8, i&0xff)
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
		}
		return nil
	})
	for b.Loop() {
		if _, err := s.Snapshot(); err != nil {
			b.Fatal(err)
		}
	}
}
