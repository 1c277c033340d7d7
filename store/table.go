package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"
)

// Table is one record kind within a transaction: JSON values under string
// keys in one bucket. Get it from a Tx (tx.Devices(), tx.Bindings(), ...);
// it is only valid while that Tx is.
type Table[T any] struct {
	tx     *Tx
	bucket string
	what   string // for error messages: "device", "binding", ...
	// key points at the record's key field, so Put can read and
	// normalise it.
	key func(*T) *string
	// norm normalises and checks a key (MACs to one spelling).
	norm func(string) (string, error)
}

// The tables. Each names its bucket, its key field and how keys are
// normalised; everything else is shared.

// Devices are keyed by MAC.
func (tx *Tx) Devices() Table[Device] {
	return Table[Device]{tx, bucketDevices, "device", func(d *Device) *string { return &d.MAC }, NormalizeMAC}
}

// Bindings (mudctl bind) are keyed by MAC.
func (tx *Tx) Bindings() Table[Binding] {
	return Table[Binding]{tx, bucketBindings, "binding", func(b *Binding) *string { return &b.MAC }, NormalizeMAC}
}

// MUDFiles is the MUD file cache, keyed by URL.
func (tx *Tx) MUDFiles() Table[MUDFile] {
	return Table[MUDFile]{tx, bucketMUDFiles, "MUD file", func(f *MUDFile) *string { return &f.URL }, nonEmpty}
}

// PinsByURL are keyed by MUD URL.
func (tx *Tx) PinsByURL() Table[Pin] {
	return Table[Pin]{tx, bucketPinsURL, "URL pin", func(p *Pin) *string { return &p.MUDURL }, nonEmpty}
}

// DNSNames are the addresses learned for DNS names, keyed by name.
func (tx *Tx) DNSNames() Table[DNSName] {
	return Table[DNSName]{tx, bucketDNS, "DNS name", func(d *DNSName) *string { return &d.Name }, nonEmpty}
}

// Learned are the addresses devices were seen using, keyed by MAC.
func (tx *Tx) Learned() Table[LearnedAddrs] {
	return Table[LearnedAddrs]{tx, bucketLearned, "learned addresses", func(l *LearnedAddrs) *string { return &l.MAC }, NormalizeMAC}
}

// PinsByMAC are keyed by MAC.
func (tx *Tx) PinsByMAC() Table[Pin] {
	return Table[Pin]{tx, bucketPinsMAC, "MAC pin", func(p *Pin) *string { return &p.MAC }, NormalizeMAC}
}

// ApprovalsByMAC are per-device approvals, keyed by MAC.
func (tx *Tx) ApprovalsByMAC() Table[Approval] {
	return Table[Approval]{tx, bucketApprovalsMAC, "MAC approval", func(a *Approval) *string { return &a.MAC }, NormalizeMAC}
}

// ApprovalsByURL are per-model approvals, keyed by MUD URL.
func (tx *Tx) ApprovalsByURL() Table[Approval] {
	return Table[Approval]{tx, bucketApprovalsURL, "URL approval", func(a *Approval) *string { return &a.MUDURL }, nonEmpty}
}

// Rejections are per-device rejections, keyed by MAC.
func (tx *Tx) Rejections() Table[Rejection] {
	return Table[Rejection]{tx, bucketRejections, "rejection", func(r *Rejection) *string { return &r.MAC }, NormalizeMAC}
}

// Overrides are keyed by MAC.
func (tx *Tx) Overrides() Table[Overrides] {
	return Table[Overrides]{tx, bucketOverrides, "overrides", func(o *Overrides) *string { return &o.MAC }, NormalizeMAC}
}

// Controllers map controller URIs to addresses.
func (tx *Tx) Controllers() Table[ControllerMapping] {
	return Table[ControllerMapping]{tx, bucketControllers, "controller", func(c *ControllerMapping) *string { return &c.Name }, nonEmpty}
}

// MyControllers map MUD URLs to their my-controller addresses.
func (tx *Tx) MyControllers() Table[ControllerMapping] {
	return Table[ControllerMapping]{tx, bucketMyControllers, "my-controller", func(c *ControllerMapping) *string { return &c.Name }, nonEmpty}
}

func nonEmpty(s string) (string, error) {
	if s == "" {
		return "", fmt.Errorf("%w: empty key", ErrInvalid)
	}
	return s, nil
}

// validator is implemented by records with field constraints beyond the
// key.
type validator interface{ validate() error }

// stamper is implemented by records whose write time the store keeps.
type stamper interface{ stamp(time.Time) }

func (d *Device) stamp(t time.Time) { d.UpdatedAt = t }

// Get returns the record under key, or an error matching ErrNotFound.
func (t Table[T]) Get(key string) (T, error) {
	var v T
	k, err := t.norm(key)
	if err != nil {
		return v, fmt.Errorf("store: get %s: %w", t.what, err)
	}
	b, err := t.tx.bucket(t.bucket)
	if err != nil {
		return v, fmt.Errorf("store: get %s %s: %w", t.what, k, err)
	}
	raw := b.Get([]byte(k))
	if raw == nil {
		return v, fmt.Errorf("store: get %s %s: %w", t.what, k, ErrNotFound)
	}
	if err := json.Unmarshal(raw, &v); err != nil {
		return v, fmt.Errorf("store: decode %s %s: %w", t.what, k, err)
	}
	return v, nil
}

// Has reports whether a record exists under key.
func (t Table[T]) Has(key string) (bool, error) {
	_, err := t.Get(key)
	if errors.Is(err, ErrNotFound) {
		return false, nil
	}
	return err == nil, err
}

// Put writes v under its own key, replacing any record there. The key
// field is normalised in the stored copy (a MAC in any spelling is stored
// lower-case with colons).
func (t Table[T]) Put(v T) error {
	kp := t.key(&v)
	k, err := t.norm(*kp)
	if err != nil {
		return fmt.Errorf("store: put %s: %w", t.what, err)
	}
	*kp = k
	if vv, ok := any(&v).(validator); ok {
		if err := vv.validate(); err != nil {
			return fmt.Errorf("store: put %s %s: %w: %w", t.what, k, ErrInvalid, err)
		}
	}
	if s, ok := any(&v).(stamper); ok {
		s.stamp(t.tx.opts.Now().UTC())
	}
	raw, err := json.Marshal(&v)
	if err != nil {
		return fmt.Errorf("store: encode %s %s: %w", t.what, k, err)
	}
	b, err := t.tx.writeBucket(t.bucket)
	if err == nil {
		err = b.Put([]byte(k), raw)
	}
	if err != nil {
		return fmt.Errorf("store: put %s %s: %w", t.what, k, err)
	}
	return nil
}

// Delete removes the record under key; it is an error matching
// ErrNotFound if there is none.
func (t Table[T]) Delete(key string) error {
	k, err := t.norm(key)
	if err != nil {
		return fmt.Errorf("store: delete %s: %w", t.what, err)
	}
	b, err := t.tx.writeBucket(t.bucket)
	if err == nil && b.Get([]byte(k)) == nil {
		err = ErrNotFound
	}
	if err == nil {
		err = b.Delete([]byte(k))
	}
	if err != nil {
		return fmt.Errorf("store: delete %s %s: %w", t.what, k, err)
	}
	return nil
}

// List returns every record in key order.
func (t Table[T]) List() ([]T, error) {
	var out []T
	err := t.ForEach(func(v T) error {
		out = append(out, v)
		return nil
	})
	return out, err
}

// Map returns every record by key.
func (t Table[T]) Map() (map[string]T, error) {
	out := map[string]T{}
	err := t.each(func(k string, v T) error {
		out[k] = v
		return nil
	})
	return out, err
}

// ForEach calls fn for every record in key order, stopping at the first
// error, which it returns. fn must not write to the same table.
func (t Table[T]) ForEach(fn func(T) error) error {
	return t.each(func(_ string, v T) error { return fn(v) })
}

func (t Table[T]) each(fn func(string, T) error) error {
	b, err := t.tx.bucket(t.bucket)
	if err != nil {
		return fmt.Errorf("store: list %ss: %w", t.what, err)
	}
	return b.ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			return fmt.Errorf("store: decode %s %s: %w", t.what, k, err)
		}
		return fn(string(k), v)
	})
}

// check reports records that do not decode or are stored under a key
// other than their own.
func (t Table[T]) check() []error {
	var errs []error
	b, err := t.tx.bucket(t.bucket)
	if err != nil {
		return []error{err}
	}
	_ = b.ForEach(func(k, raw []byte) error {
		var v T
		if err := json.Unmarshal(raw, &v); err != nil {
			errs = append(errs, fmt.Errorf("%s %s: %w", t.what, k, err))
		} else if own := *t.key(&v); own != string(k) {
			errs = append(errs, fmt.Errorf("%s under key %q names itself %q", t.what, k, own))
		}
		return nil
	})
	return errs
}

// checkRecords runs check on every table.
func (tx *Tx) checkRecords() []error {
	return slices.Concat(
		tx.Devices().check(), tx.Bindings().check(), tx.MUDFiles().check(),
		tx.PinsByURL().check(), tx.PinsByMAC().check(),
		tx.ApprovalsByMAC().check(), tx.ApprovalsByURL().check(),
		tx.Overrides().check(), tx.Controllers().check(), tx.MyControllers().check(),
	)
}
