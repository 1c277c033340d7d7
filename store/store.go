// Package store is mudd's persistence: the desired state the manager
// reconciles the kernel towards, kept in one bbolt file under state_dir.
//
// It owns the records — devices, admin bindings, the MUD file cache with
// signatures and verdicts, signer pins, approvals, overrides, controller
// mappings — and a bounded, append-only event log, together with the file's
// schema version and the migrations between versions. It guarantees that
// every Update is atomic and fsync'd before it returns (a Group's changes
// when its Commit returns), and that a crash at any point leaves the file
// at the last committed Update.
//
// It holds no business rules: which state follows which, when a pin counts
// as changed, or whether an approval still applies is the manager's
// decision. Records are validated only as far as keeping the file readable
// requires (a key is present, a MAC is a MAC, a state is one we know).
//
// bbolt is single-process: a second Open of the same file waits
// Options.LockTimeout for the file lock and then fails with ErrLocked. A
// Store is safe for concurrent use; a Tx is not, and must not outlive the
// function it was passed to.
package store

import (
	"errors"
	"fmt"
	"io"
	"sync/atomic"
	"time"

	bolt "go.etcd.io/bbolt"
	bolterrors "go.etcd.io/bbolt/errors"
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: the record asked for does not exist.
	ErrNotFound = errors.New("not found")
	// ErrLocked: another process (usually another mudd) holds the database.
	ErrLocked = errors.New("database is locked by another process")
	// ErrSchemaTooNew: the file was written by a newer mudd.
	ErrSchemaTooNew = errors.New("database schema is newer than this program understands")
	// ErrInvalid: a record or key was rejected before it was written.
	ErrInvalid = errors.New("invalid record")
	// ErrReadOnly: a write was attempted in a View.
	ErrReadOnly = errors.New("write in a read-only transaction")
)

// Defaults for the zero Options.
const (
	DefaultLockTimeout = 2 * time.Second
	DefaultMaxEvents   = 10000
)

// Options tune a Store. The zero value is usable.
type Options struct {
	// LockTimeout is how long Open waits for another process to release
	// the file before failing with ErrLocked. Zero means
	// DefaultLockTimeout; bbolt itself would wait forever, which turns a
	// second mudd into a silent hang.
	LockTimeout time.Duration
	// MaxEvents bounds the event log; appending beyond it drops the oldest
	// events in the same transaction. Zero means DefaultMaxEvents.
	MaxEvents int
	// Now is the clock used for timestamps the store fills in (event times,
	// Device.UpdatedAt). Nil means time.Now.
	Now func() time.Time
	// NoSync skips the fsync of each commit: a crash may lose the latest
	// commits (never corrupt the file). Only for tests that write at a
	// rate no disk syncs at.
	NoSync bool
}

func (o Options) withDefaults() Options {
	if o.LockTimeout <= 0 {
		o.LockTimeout = DefaultLockTimeout
	}
	if o.MaxEvents <= 0 {
		o.MaxEvents = DefaultMaxEvents
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	return o
}

// Store is an open database.
type Store struct {
	db      *bolt.DB
	opts    Options
	commits atomic.Uint64
}

// Open opens (creating if needed) the database at path, migrates it to the
// current schema and returns it. The directory must exist. Before a
// migration the file is copied to path + ".schema-vN.bak", so an admin can
// go back to the previous mudd.
func Open(path string, opts Options) (*Store, error) {
	opts = opts.withDefaults()
	// NoSync stays false (unless a test asks) and NoFreelistSync is left
	// at bbolt's default: an Update returning nil means the data is on
	// disk.
	db, err := bolt.Open(path, 0o600, &bolt.Options{Timeout: opts.LockTimeout, NoSync: opts.NoSync})
	if errors.Is(err, bolterrors.ErrTimeout) {
		return nil, fmt.Errorf("store: open %s: %w (waited %s for the lock; is another mudd running?)", path, ErrLocked, opts.LockTimeout)
	}
	if err != nil {
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	s := &Store{db: db, opts: opts}
	if err := s.prepare(path); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("store: open %s: %w", path, err)
	}
	return s, nil
}

// Close releases the file and its lock.
func (s *Store) Close() error {
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("store: close: %w", err)
	}
	return nil
}

// Path is the database file's path.
func (s *Store) Path() string { return s.db.Path() }

// Tx is a transaction handed to View or Update callbacks. Its typed tables
// (Devices, Bindings, ...) and event methods all act within it, so several
// changes commit together or not at all.
type Tx struct {
	btx  *bolt.Tx
	opts *Options
}

// Writable reports whether the transaction is an Update.
func (tx *Tx) Writable() bool { return tx.btx.Writable() }

// View runs fn in a read-only transaction that sees one consistent state.
// Views run concurrently with each other and with one Update.
func (s *Store) View(fn func(*Tx) error) error {
	return s.db.View(func(btx *bolt.Tx) error { return fn(&Tx{btx: btx, opts: &s.opts}) })
}

// Update runs fn in a read-write transaction. If fn returns an error, or
// panics, nothing it wrote is kept; if Update returns nil, everything is
// committed and fsync'd. Updates are serialised.
func (s *Store) Update(fn func(*Tx) error) error {
	err := s.db.Update(func(btx *bolt.Tx) error { return fn(&Tx{btx: btx, opts: &s.opts}) })
	if err == nil {
		s.commits.Add(1)
	}
	return err
}

// Commits is the number of write transactions committed (Updates and
// Groups), each one fsync.
func (s *Store) Commits() uint64 { return s.commits.Load() }

// Group is one write transaction kept open across several changes and
// committed once: a burst of changes costs one fsync instead of one each.
// Each change goes through Group.Update and keeps Update's meaning for
// that change: if it fails, nothing it wrote is kept (the transaction is
// rolled back and the changes before it are run again in a new one, so a
// change must give the same writes when run twice). Nothing is durable
// until Commit returns nil. A Group belongs to one goroutine; while it is
// open, Updates from others wait, and Views see the store without it.
type Group struct {
	s       *Store
	btx     *bolt.Tx
	changes []func(*Tx) error
	err     error // the group is unusable: a replay failed
}

// Begin opens a Group.
func (s *Store) Begin() (*Group, error) {
	btx, err := s.db.Begin(true)
	if err != nil {
		return nil, fmt.Errorf("store: begin: %w", err)
	}
	return &Group{s: s, btx: btx}, nil
}

// Update runs fn within the group.
func (g *Group) Update(fn func(*Tx) error) error {
	if g.err != nil {
		return g.err
	}
	defer func() {
		if r := recover(); r != nil {
			_ = g.replay() // fn's writes go, as Update's would
			panic(r)
		}
	}()
	err := fn(&Tx{btx: g.btx, opts: &g.s.opts})
	if err == nil {
		g.changes = append(g.changes, fn)
		return nil
	}
	if rerr := g.replay(); rerr != nil {
		return errors.Join(err, rerr)
	}
	return err
}

// View runs fn on the group's transaction: it sees the group's changes.
func (g *Group) View(fn func(*Tx) error) error {
	if g.err != nil {
		return g.err
	}
	return fn(&Tx{btx: g.btx, opts: &g.s.opts})
}

// Len is the number of changes in the group.
func (g *Group) Len() int { return len(g.changes) }

// replay rolls the transaction back and runs the group's changes again in
// a new one.
func (g *Group) replay() error {
	_ = g.btx.Rollback()
	btx, err := g.s.db.Begin(true)
	if err != nil {
		g.err = fmt.Errorf("store: group of %d changes lost: begin: %w", len(g.changes), err)
		return g.err
	}
	g.btx = btx
	for _, fn := range g.changes {
		if err := fn(&Tx{btx: btx, opts: &g.s.opts}); err != nil {
			_ = btx.Rollback()
			g.err = fmt.Errorf("store: group of %d changes lost: a change failed when run again: %w", len(g.changes), err)
			return g.err
		}
	}
	return nil
}

// Commit writes the group's changes and fsyncs them; it tries once more
// in a new transaction if the first commit fails. The group is closed
// afterwards, whatever the result.
func (g *Group) Commit() error {
	if g.err != nil {
		return g.err
	}
	return g.finish(g.btx.Commit())
}

// Start is Commit in two halves: the write and fsync begin at once in a
// goroutine of their own, so that the caller can go on meanwhile, and wait
// returns Commit's result. wait must be called, from the group's
// goroutine: the retry of a failed commit runs the changes again there,
// as they may read that goroutine's state.
func (g *Group) Start() (wait func() error) {
	if g.err != nil {
		err := g.err
		return func() error { return err }
	}
	done := make(chan error, 1)
	go func() { done <- g.btx.Commit() }()
	return func() error { return g.finish(<-done) }
}

// finish counts a commit that succeeded or tries a failed one once more.
func (g *Group) finish(err error) error {
	if err == nil {
		g.s.commits.Add(1)
		return nil
	}
	if rerr := g.replay(); rerr != nil {
		return fmt.Errorf("store: commit of %d changes: %w", len(g.changes), errors.Join(err, rerr))
	}
	if err2 := g.btx.Commit(); err2 != nil {
		return fmt.Errorf("store: commit of %d changes: %w", len(g.changes), errors.Join(err, err2))
	}
	g.s.commits.Add(1)
	return nil
}

// Backup writes a consistent copy of the whole database to w (a valid
// bbolt file), without blocking Updates.
func (s *Store) Backup(w io.Writer) (int64, error) {
	var n int64
	err := s.db.View(func(btx *bolt.Tx) error {
		var err error
		n, err = btx.WriteTo(w)
		return err
	})
	if err != nil {
		return n, fmt.Errorf("store: backup: %w", err)
	}
	return n, nil
}

// Check verifies the file: bbolt's own page-level check, then that every
// record decodes and sits under its own key, and that the event log is a
// contiguous run of sequence numbers no greater than the last one issued.
// It reports every problem found, joined.
func (s *Store) Check() error {
	var errs []error
	err := s.View(func(tx *Tx) error {
		for err := range tx.btx.Check() {
			errs = append(errs, err)
		}
		errs = append(errs, tx.checkRecords()...)
		errs = append(errs, tx.checkEvents()...)
		return nil
	})
	if err != nil {
		errs = append(errs, err)
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("store: check %s: %w", s.Path(), err)
	}
	return nil
}

// bucket returns the named top-level bucket, which prepare guarantees
// exists at the current schema.
func (tx *Tx) bucket(name string) (*bolt.Bucket, error) {
	b := tx.btx.Bucket([]byte(name))
	if b == nil {
		return nil, fmt.Errorf("bucket %q missing (database damaged?)", name)
	}
	return b, nil
}

// writeBucket is bucket for writers: it fails with ErrReadOnly in a View,
// so callers need not know bbolt's error.
func (tx *Tx) writeBucket(name string) (*bolt.Bucket, error) {
	if !tx.Writable() {
		return nil, ErrReadOnly
	}
	return tx.bucket(name)
}
