package fleet

import (
	"fmt"
	"maps"
	"slices"
	"time"

	bolt "go.etcd.io/bbolt"
)

// PutDevices queues this gateway's summaries of several devices, by MAC
// (a nil summary removes the device's), in one write of the queue file:
// the cost of a burst of device changes is one fsync, not one per device.
func (c *Client) PutDevices(summaries map[string][]byte) error {
	now := time.Now()
	ws := make([]Write, 0, len(summaries))
	for _, mac := range slices.Sorted(maps.Keys(summaries)) {
		s := summaries[mac]
		if err := checkRecordKey(mac); err != nil {
			return fmt.Errorf("fleet: device: %w", err)
		}
		if len(s) > MaxValueSize {
			return fmt.Errorf("fleet: device %s: summary of %d bytes exceeds %d", mac, len(s), MaxValueSize)
		}
		w := Write{Op: opDevice, Key: mac, Value: s, Queued: now}
		if s == nil {
			w.Op = opDeviceDel
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		return nil
	}
	if err := c.loc.enqueueAll(ws); err != nil {
		return fmt.Errorf("fleet: queueing %d device summaries: %w", len(ws), err)
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// SubmitAll queues several decisions as Submit does, in order, in one
// write of the queue file (a Decision's Kind, Key and Value; a nil Value
// withdraws it; ModRev and Deleted are not read). Nothing is queued when
// one of them is not a valid decision.
func (c *Client) SubmitAll(ds []Decision) error {
	now := time.Now()
	ws := make([]Write, 0, len(ds))
	for _, d := range ds {
		if err := checkDecision(d.Kind, d.Key, d.Value); err != nil {
			return err
		}
		w := Write{Op: opPut, Kind: d.Kind, Key: d.Key, Value: d.Value, BaseRev: c.Known(d.Kind, d.Key), Queued: now}
		if d.Value == nil {
			w.Op = opDelete
		}
		ws = append(ws, w)
	}
	if len(ws) == 0 {
		return nil
	}
	if err := c.loc.enqueueAll(ws); err != nil {
		return fmt.Errorf("fleet: queueing %d decisions: %w", len(ws), err)
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

// GatewayID is the id this client writes its own keys under.
func (c *Client) GatewayID() string { return c.cfg.GatewayID }

// enqueueAll appends ws in order in one transaction.
func (l *local) enqueueAll(ws []Write) error {
	return l.db.Update(func(tx *bolt.Tx) error {
		for _, w := range ws {
			if err := putQueued(tx, w); err != nil {
				return err
			}
		}
		return nil
	})
}
