package store

import (
	"path/filepath"
	"testing"
	"time"

	bolt "go.etcd.io/bbolt"
)

// A rejection is kept across a restart, in the snapshot, keyed by the
// normalised MAC; a file of a mudd that had no rejections bucket opens
// with an empty one, at the same schema version.
func TestRejectionsPersist(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mud.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Update(func(btx *bolt.Tx) error { return btx.DeleteBucket([]byte(bucketRejections)) }); err != nil {
		t.Fatal(err)
	}
	if err := db.Close(); err != nil {
		t.Fatal(err)
	}

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	snap, err := s.Snapshot()
	if err != nil || len(snap.Rejections) != 0 {
		t.Fatalf("snapshot of a file without rejections: %v, %v", snap, err)
	}
	at := time.Date(2026, 3, 1, 10, 0, 0, 0, time.UTC)
	r := Rejection{MAC: "02-00-5E-00-53-11", MUDURL: "https://mud.example.com/x.json", Digest: "sha256:ab", By: "root", At: at, Reason: "unknown vendor"}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Rejections().Put(r) })
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	assertSchema(t, path, "4")

	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	snap, err = s.Snapshot()
	if err != nil {
		t.Fatal(err)
	}
	got, ok := snap.Rejections["02:00:5e:00:53:11"]
	r.MAC = "02:00:5e:00:53:11"
	if !ok || got != r {
		t.Fatalf("rejections after a restart: %+v", snap.Rejections)
	}
	mustUpdate(t, s, func(tx *Tx) error { return tx.Rejections().Delete(r.MAC) })
	if snap, _ := s.Snapshot(); len(snap.Rejections) != 0 {
		t.Errorf("rejection still there after Delete: %+v", snap.Rejections)
	}
}
