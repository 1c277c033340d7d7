package store

import "fmt"

// Snapshot is everything the manager needs to rebuild its desired state at
// start-up, read in one transaction so the parts agree with each other.
// Maps are keyed as the tables are (normalised MAC, URL or URI).
type Snapshot struct {
	SchemaVersion  int
	Devices        map[string]Device
	Bindings       map[string]Binding
	MUDFiles       map[string]MUDFile
	PinsByURL      map[string]Pin
	PinsByMAC      map[string]Pin
	ApprovalsByMAC map[string]Approval
	ApprovalsByURL map[string]Approval
	Rejections     map[string]Rejection
	Overrides      map[string]Overrides
	Controllers    map[string]ControllerMapping
	MyControllers  map[string]ControllerMapping
	DNSNames       map[string]DNSName
	Learned        map[string]LearnedAddrs
	// LastEventSeq lets an event follower start after what already
	// happened.
	LastEventSeq uint64
}

// Snapshot reads the whole desired state within tx.
func (tx *Tx) Snapshot() (*Snapshot, error) {
	s := &Snapshot{SchemaVersion: SchemaVersion}
	var err error
	// Each step runs only while err is nil; the first failure is reported.
	step := func(f func() error) {
		if err == nil {
			err = f()
		}
	}
	step(func() (e error) { s.Devices, e = tx.Devices().Map(); return })
	step(func() (e error) { s.Bindings, e = tx.Bindings().Map(); return })
	step(func() (e error) { s.MUDFiles, e = tx.MUDFiles().Map(); return })
	step(func() (e error) { s.PinsByURL, e = tx.PinsByURL().Map(); return })
	step(func() (e error) { s.PinsByMAC, e = tx.PinsByMAC().Map(); return })
	step(func() (e error) { s.ApprovalsByMAC, e = tx.ApprovalsByMAC().Map(); return })
	step(func() (e error) { s.ApprovalsByURL, e = tx.ApprovalsByURL().Map(); return })
	step(func() (e error) { s.Rejections, e = tx.Rejections().Map(); return })
	step(func() (e error) { s.Overrides, e = tx.Overrides().Map(); return })
	step(func() (e error) { s.Controllers, e = tx.Controllers().Map(); return })
	step(func() (e error) { s.MyControllers, e = tx.MyControllers().Map(); return })
	step(func() (e error) { s.DNSNames, e = tx.DNSNames().Map(); return })
	step(func() (e error) { s.Learned, e = tx.Learned().Map(); return })
	step(func() (e error) { s.LastEventSeq, e = tx.LastEventSeq(); return })
	if err != nil {
		return nil, fmt.Errorf("store: snapshot: %w", err)
	}
	return s, nil
}

// Snapshot is Tx.Snapshot in its own read transaction.
func (s *Store) Snapshot() (*Snapshot, error) {
	var snap *Snapshot
	err := s.View(func(tx *Tx) (err error) {
		snap, err = tx.Snapshot()
		return err
	})
	return snap, err
}
