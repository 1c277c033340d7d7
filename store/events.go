package store

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"
)

// Event is one entry of the event log (mudctl events): usually a device's
// state transition, appended in the same Update as the device change.
type Event struct {
	// Seq is assigned by AppendEvent: 1, 2, 3, ... for the life of the
	// file, never reused, also across restarts and after old events were
	// dropped.
	Seq  uint64    `json:"seq"`
	Time time.Time `json:"time"`
	// MAC is the device concerned, empty for gateway-wide events.
	MAC     string `json:"mac,omitempty"`
	Kind    string `json:"kind"`
	From    State  `json:"from,omitempty"`
	To      State  `json:"to,omitempty"`
	Message string `json:"message,omitempty"`
}

// Events are keyed by Seq as 8 big-endian bytes, so bbolt's key order is
// sequence order and the oldest event is the bucket's first key. The
// sequence itself is the events bucket's own bbolt sequence, which commits
// and rolls back with the transaction.
func seqKey(seq uint64) []byte { return binary.BigEndian.AppendUint64(nil, seq) }

// AppendEvent assigns e its Seq (and its Time, if zero), appends it and
// drops the oldest events beyond Options.MaxEvents, all within tx. It
// returns the event as stored.
func (tx *Tx) AppendEvent(e Event) (Event, error) {
	if e.MAC != "" {
		mac, err := NormalizeMAC(e.MAC)
		if err != nil {
			return e, fmt.Errorf("store: append event: %w", err)
		}
		e.MAC = mac
	}
	if e.Kind == "" {
		return e, fmt.Errorf("store: append event: %w: no kind", ErrInvalid)
	}
	b, err := tx.writeBucket(bucketEvents)
	if err != nil {
		return e, fmt.Errorf("store: append event: %w", err)
	}
	if e.Seq, err = b.NextSequence(); err != nil {
		return e, fmt.Errorf("store: append event: %w", err)
	}
	if e.Time.IsZero() {
		e.Time = tx.opts.Now().UTC()
	}
	raw, err := json.Marshal(&e)
	if err == nil {
		err = b.Put(seqKey(e.Seq), raw)
	}
	if err != nil {
		return e, fmt.Errorf("store: append event %d: %w", e.Seq, err)
	}
	if err := tx.trimEvents(e.Seq); err != nil {
		return e, fmt.Errorf("store: append event %d: %w", e.Seq, err)
	}
	return e, nil
}

// trimEvents drops the oldest events so at most MaxEvents remain. Events
// are only ever appended at the end and dropped from the front, so the
// keys are contiguous and the count is last-first+1 without a scan.
func (tx *Tx) trimEvents(last uint64) error {
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return err
	}
	c := b.Cursor()
	for k, _ := c.First(); k != nil; k, _ = c.First() {
		first := binary.BigEndian.Uint64(k)
		if last-first+1 <= uint64(tx.opts.MaxEvents) {
			return nil
		}
		if err := c.Delete(); err != nil {
			return err
		}
	}
	return nil
}

// Events returns up to limit events with Seq > since, oldest first;
// limit <= 0 means all. A follower passes the last Seq it has seen.
func (tx *Tx) Events(since uint64, limit int) ([]Event, error) {
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return nil, fmt.Errorf("store: list events: %w", err)
	}
	var out []Event
	c := b.Cursor()
	for k, raw := c.Seek(seqKey(since + 1)); k != nil && (limit <= 0 || len(out) < limit); k, raw = c.Next() {
		var e Event
		if err := json.Unmarshal(raw, &e); err != nil {
			return out, fmt.Errorf("store: decode event %d: %w", binary.BigEndian.Uint64(k), err)
		}
		out = append(out, e)
	}
	return out, nil
}

// LastEventSeq is the Seq of the newest event ever appended (0 if none),
// whether or not it has since been dropped.
func (tx *Tx) LastEventSeq() (uint64, error) {
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return 0, fmt.Errorf("store: last event: %w", err)
	}
	return b.Sequence(), nil
}

// Events is Tx.Events in its own read transaction.
func (s *Store) Events(since uint64, limit int) ([]Event, error) {
	var out []Event
	err := s.View(func(tx *Tx) (err error) {
		out, err = tx.Events(since, limit)
		return err
	})
	return out, err
}

// checkEvents reports a log that is not a contiguous run of decodable
// events ending at or before the bucket sequence.
func (tx *Tx) checkEvents() []error {
	b, err := tx.bucket(bucketEvents)
	if err != nil {
		return []error{err}
	}
	var errs []error
	var prev uint64
	_ = b.ForEach(func(k, raw []byte) error {
		if len(k) != 8 {
			errs = append(errs, fmt.Errorf("event key %x is not a sequence number", k))
			return nil
		}
		seq := binary.BigEndian.Uint64(k)
		var e Event
		switch {
		case json.Unmarshal(raw, &e) != nil || e.Seq != seq:
			errs = append(errs, fmt.Errorf("event %d does not decode to itself", seq))
		case prev != 0 && seq != prev+1:
			errs = append(errs, fmt.Errorf("event log has a gap between %d and %d", prev, seq))
		}
		prev = seq
		return nil
	})
	if prev > b.Sequence() {
		errs = append(errs, fmt.Errorf("event %d is beyond the issued sequence %d", prev, b.Sequence()))
	}
	return errs
}
