package fleet

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// Run watches the shared decisions, keeps the liveness lease, probes
// reachability and writes the queue, until ctx ends. Every goroutine it
// starts has returned when it returns.
func (c *Client) Run(ctx context.Context) error {
	var wg sync.WaitGroup
	for _, loop := range []func(context.Context){c.probeLoop, c.watchLoop, c.flushLoop, c.leaseLoop} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			loop(ctx)
		}()
	}
	wg.Wait()
	return ctx.Err()
}

// sleep waits d or until ctx ends; false means ctx ended.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// probeLoop decides partitioned or not with a linearizable read, which
// needs a member that is part of a quorum.
func (c *Client) probeLoop(ctx context.Context) {
	for {
		pctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
		_, err := c.cli.Get(pctx, c.lay.alive(c.cfg.GatewayID), clientv3.WithKeysOnly())
		cancel()
		if ctx.Err() != nil {
			return
		}
		c.mu.Lock()
		was := c.partitioned
		c.partitioned = err != nil
		c.mu.Unlock()
		switch {
		case err != nil && !was:
			c.log.Warn("etcd unreachable; enforcing from the local store and queueing writes", "err", err)
			c.emit(ctx, Event{Type: EventPartition, Err: err})
		case err == nil && was:
			c.log.Info("etcd reachable again; writing the queue", "queued", c.Queued())
			c.emit(ctx, Event{Type: EventHeal})
			select {
			case c.kick <- struct{}{}:
			default:
			}
		}
		if !sleep(ctx, c.cfg.ProbeInterval) {
			return
		}
	}
}

// watchLoop follows the shared decisions from the revision after the last
// one delivered, and reads them all again when that revision is gone.
func (c *Client) watchLoop(ctx context.Context) {
	for ctx.Err() == nil {
		rev := c.loc.watchRev()
		if rev == 0 {
			if err := c.resync(ctx); err != nil {
				c.log.Debug("full read of the shared decisions failed", "err", err)
				sleep(ctx, c.cfg.ProbeInterval)
			}
			continue
		}
		needResync := c.watchFrom(ctx, rev+1)
		if needResync {
			c.log.Info("watch revision compacted; reading every shared decision again", "rev", rev)
			if err := c.resync(ctx); err != nil {
				c.log.Debug("full read of the shared decisions failed", "err", err)
				sleep(ctx, c.cfg.ProbeInterval)
			}
			continue
		}
		sleep(ctx, c.cfg.ProbeInterval/4)
	}
}

// watchFrom watches until the stream ends; true means the revision was
// compacted.
func (c *Client) watchFrom(ctx context.Context, from int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := c.cli.Watch(wctx, c.lay.shared(), clientv3.WithPrefix(), clientv3.WithRev(from))
	for wr := range wch {
		if wr.CompactRevision != 0 {
			return true
		}
		if err := wr.Err(); err != nil {
			if errors.Is(err, rpctypes.ErrCompacted) {
				return true
			}
			c.log.Debug("watch ended", "err", err)
			return false
		}
		if len(wr.Events) == 0 {
			continue
		}
		var ups []mirrorUpdate
		var ds []Decision
		var last int64
		for _, ev := range wr.Events {
			k := string(ev.Kv.Key)
			last = ev.Kv.ModRevision
			kind, key, err := c.lay.parseDecision(k)
			if err != nil {
				c.log.Warn("ignoring a key under the shared prefix", "err", err)
				continue
			}
			d := Decision{Kind: kind, Key: key}
			if ev.Type == mvccpb.DELETE {
				d.Deleted = true
				ups = append(ups, mirrorUpdate{key: k, deleted: true})
			} else {
				d.Value, d.ModRev = ev.Kv.Value, ev.Kv.ModRevision
				ups = append(ups, mirrorUpdate{key: k, modRev: d.ModRev})
			}
			ds = append(ds, d)
		}
		if err := c.loc.record(ups, last); err != nil {
			c.log.Error("recording watched decisions", "err", err)
		}
		for _, d := range ds {
			c.emit(ctx, Event{Type: EventChanged, Decision: d, Rev: d.ModRev})
		}
	}
	return false
}

// resync reads every shared decision, reports those that differ from what
// this gateway knew (deletions included), and records the read's revision
// as the watch's.
func (c *Client) resync(ctx context.Context) error {
	rctx, cancel := context.WithTimeout(ctx, 10*c.cfg.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Get(rctx, c.lay.shared(), clientv3.WithPrefix())
	if err != nil {
		return err
	}
	known, err := c.loc.knownKeys()
	if err != nil {
		return err
	}
	var ups []mirrorUpdate
	var ds []Decision
	for _, kv := range resp.Kvs {
		k := string(kv.Key)
		kind, key, err := c.lay.parseDecision(k)
		if err != nil {
			c.log.Warn("ignoring a key under the shared prefix", "err", err)
			continue
		}
		rev, ok := known[k]
		delete(known, k)
		if ok && rev == kv.ModRevision {
			continue
		}
		ups = append(ups, mirrorUpdate{key: k, modRev: kv.ModRevision})
		ds = append(ds, Decision{Kind: kind, Key: key, Value: kv.Value, ModRev: kv.ModRevision})
	}
	for k := range known {
		ups = append(ups, mirrorUpdate{key: k, deleted: true})
		if kind, key, err := c.lay.parseDecision(k); err == nil {
			ds = append(ds, Decision{Kind: kind, Key: key, Deleted: true})
		}
	}
	if err := c.loc.record(ups, resp.Header.Revision); err != nil {
		return err
	}
	for _, d := range ds {
		c.emit(ctx, Event{Type: EventChanged, Decision: d, Rev: resp.Header.Revision})
	}
	c.emit(ctx, Event{Type: EventResync, Rev: resp.Header.Revision})
	return nil
}

// flushLoop writes the queue in order whenever etcd is reachable.
func (c *Client) flushLoop(ctx context.Context) {
	t := time.NewTicker(c.cfg.ProbeInterval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-c.kick:
		case <-t.C:
		}
		if c.Partitioned() {
			continue
		}
		c.flush(ctx)
	}
}

// flush writes queued writes until one fails for a reason other than a
// conflict (etcd unreachable: the rest waits for the next pass).
func (c *Client) flush(ctx context.Context) {
	ws, err := c.loc.pending()
	if err != nil {
		c.log.Error("reading the fleet queue", "err", err)
		return
	}
	if len(ws) == 0 {
		return
	}
	for i := range ws {
		w := ws[i]
		var err error
		switch w.Op {
		case opPut, opDelete:
			_, err = c.cas(ctx, w)
			var ce *ConflictError
			if errors.As(err, &ce) {
				c.log.Warn("a queued decision was refused: another gateway changed it first",
					"kind", w.Kind, "key", w.Key, "base_rev", w.BaseRev, "current_rev", ce.Current.ModRev)
				c.emit(ctx, Event{Type: EventConflict, Decision: ce.Current, Write: &w, Rev: ce.Current.ModRev})
				err = nil
			}
		case opDevice, opDeviceDel:
			err = c.writeDevice(ctx, w)
		default:
			c.log.Error("dropping a queued write of unknown kind", "op", w.Op)
		}
		if err != nil {
			c.log.Debug("queue write failed; keeping the rest queued", "err", err)
			return
		}
		if err := c.loc.done(w.Sequence); err != nil {
			c.log.Error("removing a written entry from the fleet queue", "err", err)
			return
		}
	}
	c.emit(ctx, Event{Type: EventFlushed})
}

func (c *Client) writeDevice(ctx context.Context, w Write) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	k := c.lay.device(c.cfg.GatewayID, w.Key)
	var err error
	if w.Op == opDeviceDel {
		_, err = c.cli.Delete(ctx, k)
	} else {
		_, err = c.cli.Put(ctx, k, string(w.Value))
	}
	return err
}

// leaseLoop keeps <prefix>/gateways/<id>/alive on a lease, granting a new
// one whenever the old one is lost (after a partition longer than its TTL).
func (c *Client) leaseLoop(ctx context.Context) {
	ttl := int64(c.cfg.LeaseTTL / time.Second)
	if ttl < 2 {
		ttl = 2
	}
	for ctx.Err() == nil {
		if err := c.keepAlive(ctx, ttl); ctx.Err() == nil {
			c.log.Debug("liveness lease lost", "err", err)
		}
		sleep(ctx, c.cfg.ProbeInterval)
	}
}

// keepAlive grants a lease, puts the liveness key on it and keeps it alive;
// it returns why it stopped (it never returns nil).
func (c *Client) keepAlive(ctx context.Context, ttl int64) error {
	gctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	g, err := c.cli.Grant(gctx, ttl)
	if err == nil {
		_, err = c.cli.Put(gctx, c.lay.alive(c.cfg.GatewayID), time.Now().UTC().Format(time.RFC3339), clientv3.WithLease(g.ID))
	}
	cancel()
	if err != nil {
		return err
	}
	ch, err := c.cli.KeepAlive(ctx, g.ID)
	if err != nil {
		return err
	}
	for range ch {
	}
	return errors.New("keep-alive stream ended")
}

// Alive lists the gateways whose liveness lease is current.
func (c *Client) Alive(ctx context.Context) ([]string, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	p := c.cfg.Prefix + "/gateways/"
	resp, err := c.cli.Get(ctx, p, clientv3.WithPrefix(), clientv3.WithKeysOnly())
	if err != nil {
		return nil, err
	}
	var ids []string
	for _, kv := range resp.Kvs {
		rest := string(kv.Key[len(p):])
		for i := 0; i < len(rest); i++ {
			if rest[i] == '/' {
				if rest[i+1:] == "alive" {
					ids = append(ids, rest[:i])
				}
				break
			}
		}
	}
	return ids, nil
}
