// Package fleet shares a gateway's decisions with the other gateways of a
// site through etcd, and keeps this gateway's own keys there.
//
// It owns the etcd key layout under one prefix:
//
//	<prefix>/shared/<kind>/<record key>   decisions every gateway applies: trust
//	                                       pins, approvals and rejections,
//	                                       overrides, controller and
//	                                       my-controller maps, admin bindings
//	<prefix>/gateways/<id>/devices/<mac>  this gateway's device summaries
//	<prefix>/gateways/<id>/alive          this gateway's liveness, on a lease
//
// and the client's own bbolt file (Config.QueuePath), which holds the writes
// etcd has not acknowledged yet, the revision the watch has reached and the
// revision of every shared decision this gateway knows.
//
// Writes of shared decisions are compare-and-swap transactions on the
// decision's modification revision: a write names the revision it replaces
// (0 for a new decision) and etcd refuses it if another gateway wrote first.
// Nothing is last-writer-wins; a refused write comes back as ErrConflict (or,
// for a queued write, an EventConflict) carrying the decision that won, and
// the caller decides again. Values are opaque to the package: the caller
// encodes its records (the store's JSON) and decides what they mean.
//
// The watch resumes from the revision after the last one delivered, also
// across restarts; when etcd has compacted that revision away, the client
// reads every shared decision again and reports the difference (changes and
// deletions) as events, followed by EventResync.
//
// etcd being unreachable does not stop a gateway: the caller keeps enforcing
// from its local store, Submit and PutDevice append to the persistent queue,
// and the client reports EventPartition, then EventHeal when etcd answers
// again, after which the queue is written in order.
//
// The package holds no business rules: which approval applies to which file,
// or what a changed pin means, is the manager's decision.
package fleet

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// Defaults for the zero values of Config.
const (
	DefaultRequestTimeout = 3 * time.Second
	DefaultLeaseTTL       = 10 * time.Second
	DefaultProbeInterval  = time.Second
)

// ErrConflict: another gateway changed the decision since the revision a
// write was based on. Match it with errors.As on *ConflictError.
var ErrConflict = errors.New("decision changed by another writer")

// ConflictError carries the decision that won.
type ConflictError struct {
	Current Decision
}

func (e *ConflictError) Error() string {
	if e.Current.Deleted {
		return fmt.Sprintf("%s %q: %v (it was deleted)", e.Current.Kind, e.Current.Key, ErrConflict)
	}
	return fmt.Sprintf("%s %q: %v (now at revision %d)", e.Current.Kind, e.Current.Key, ErrConflict, e.Current.ModRev)
}

// Unwrap makes errors.Is(err, ErrConflict) hold.
func (e *ConflictError) Unwrap() error { return ErrConflict }

// Config says where etcd is and who this gateway is.
type Config struct {
	// Endpoints are etcd client URLs, e.g. https://192.0.2.10:2379.
	Endpoints []string
	// TLS is the client configuration: the CA that signs the members'
	// certificates and this gateway's client certificate.
	TLS *tls.Config
	// Prefix is the root of every key, e.g. "/mud".
	Prefix string
	// GatewayID names this gateway's own keys.
	GatewayID string
	// QueuePath is the client's bbolt file.
	QueuePath string
	// RequestTimeout bounds one etcd request; zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// LeaseTTL is the liveness key's lease; zero means DefaultLeaseTTL.
	LeaseTTL time.Duration
	// ProbeInterval is how often reachability is checked; zero means
	// DefaultProbeInterval.
	ProbeInterval time.Duration
	// Dial, when set, opens connections to members (a lab dials from a
	// network namespace).
	Dial func(ctx context.Context, addr string) (net.Conn, error)
	// Logger receives the client's log; nil discards it.
	Logger *slog.Logger
}

// Decision is one shared decision as etcd holds it.
type Decision struct {
	Kind  Kind
	Key   string
	Value []byte
	// ModRev is the revision of the decision's last write: the BaseRev of
	// a write that replaces it.
	ModRev  int64
	Deleted bool
}

// EventType says what an Event reports.
type EventType string

// Event types.
const (
	// EventChanged: a shared decision was written or deleted (by any
	// gateway, this one included).
	EventChanged EventType = "changed"
	// EventResync: the watch's revision had been compacted; every decision
	// was read again and the differences were reported before this event.
	EventResync EventType = "resync"
	// EventPartition: etcd stopped answering; writes are queued.
	EventPartition EventType = "partition"
	// EventHeal: etcd answers again; the queue is being written.
	EventHeal EventType = "heal"
	// EventConflict: a queued write was refused because another gateway
	// changed the decision first; Decision is the one that won.
	EventConflict EventType = "conflict"
	// EventFlushed: every write queued so far has been written, or
	// refused as a conflict (reported before this event).
	EventFlushed EventType = "flushed"
)

// Event is something the caller should know.
type Event struct {
	Type     EventType
	Decision Decision
	// Write is the refused write of an EventConflict.
	Write *Write
	// Err says why etcd is unreachable (EventPartition).
	Err error
	// Rev is the etcd revision the event was seen at, when known.
	Rev int64
}

// Client is one gateway's connection to the fleet. Run drives it.
type Client struct {
	cfg    Config
	lay    layout
	cli    *clientv3.Client
	loc    *local
	log    *slog.Logger
	events chan Event
	kick   chan struct{}

	mu          sync.Mutex
	partitioned bool
}

// Open validates cfg, opens the queue file and prepares the etcd client. It
// does not wait for etcd: a gateway starts while etcd is unreachable.
func Open(cfg Config) (*Client, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("fleet: no etcd endpoints")
	}
	if err := validPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if err := ValidGatewayID(cfg.GatewayID); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if cfg.QueuePath == "" {
		return nil, errors.New("fleet: no queue path")
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = DefaultLeaseTTL
	}
	if cfg.ProbeInterval <= 0 {
		cfg.ProbeInterval = DefaultProbeInterval
	}
	log := cfg.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	loc, err := openLocal(cfg.QueuePath)
	if err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	var dopts []grpc.DialOption
	if cfg.Dial != nil {
		dopts = append(dopts, grpc.WithContextDialer(cfg.Dial))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:            cfg.Endpoints,
		TLS:                  cfg.TLS,
		DialOptions:          dopts,
		DialKeepAliveTime:    2 * time.Second,
		DialKeepAliveTimeout: 2 * time.Second,
		PermitWithoutStream:  true,
		Logger:               zap.NewNop(),
	})
	if err != nil {
		_ = loc.close()
		return nil, fmt.Errorf("fleet: etcd client: %w", err)
	}
	return &Client{
		cfg: cfg, lay: layout{cfg.Prefix}, cli: cli, loc: loc, log: log,
		events: make(chan Event, 1024),
		kick:   make(chan struct{}, 1),
	}, nil
}

// Close releases the etcd connection and the queue file. Call it after Run
// has returned.
func (c *Client) Close() error {
	return errors.Join(c.cli.Close(), c.loc.close())
}

// Events delivers what Run observes. The caller must keep reading it while
// Run runs; Run waits for room.
func (c *Client) Events() <-chan Event { return c.events }

// Partitioned reports whether etcd is currently unreachable.
func (c *Client) Partitioned() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.partitioned
}

// Queued is the number of writes not yet in etcd.
func (c *Client) Queued() int { return c.loc.queueLen() }

// Known returns the modification revision this gateway last saw for a
// decision (0: none): the BaseRev of a write that replaces it.
func (c *Client) Known(kind Kind, key string) int64 {
	return c.loc.known(c.lay.decision(kind, key))
}

// Get reads a decision from etcd (a linearizable read).
func (c *Client) Get(ctx context.Context, kind Kind, key string) (Decision, error) {
	if err := checkDecision(kind, key, nil); err != nil {
		return Decision{}, err
	}
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	resp, err := c.cli.Get(ctx, c.lay.decision(kind, key))
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: reading %s %q: %w", kind, key, err)
	}
	d := Decision{Kind: kind, Key: key, Deleted: true}
	if len(resp.Kvs) == 1 {
		d.Value, d.ModRev, d.Deleted = resp.Kvs[0].Value, resp.Kvs[0].ModRevision, false
	}
	return d, nil
}

// Propose writes a decision now, if it is still at baseRev (0: absent). It
// fails with a *ConflictError when another writer got there first, and with
// another error when etcd cannot be reached (nothing is queued: Submit
// queues).
func (c *Client) Propose(ctx context.Context, kind Kind, key string, value []byte, baseRev int64) (Decision, error) {
	if err := checkDecision(kind, key, value); err != nil {
		return Decision{}, err
	}
	return c.cas(ctx, Write{Op: opPut, Kind: kind, Key: key, Value: value, BaseRev: baseRev})
}

// Withdraw deletes a decision now, if it is still at baseRev.
func (c *Client) Withdraw(ctx context.Context, kind Kind, key string, baseRev int64) (Decision, error) {
	if err := checkDecision(kind, key, nil); err != nil {
		return Decision{}, err
	}
	return c.cas(ctx, Write{Op: opDelete, Kind: kind, Key: key, BaseRev: baseRev})
}

// Submit queues a decision based on the revision this gateway knows for it
// (Known) and returns once the write is on disk; Run writes it to etcd when
// etcd is reachable. A write refused because another gateway changed the
// decision meanwhile is reported as an EventConflict, never forced. A nil
// value withdraws the decision.
func (c *Client) Submit(kind Kind, key string, value []byte) error {
	if err := checkDecision(kind, key, value); err != nil {
		return err
	}
	w := Write{Op: opPut, Kind: kind, Key: key, Value: value, BaseRev: c.Known(kind, key), Queued: time.Now()}
	if value == nil {
		w.Op = opDelete
	}
	return c.enqueue(w)
}

// PutDevice queues this gateway's summary of a device (nil removes it).
// These keys belong to this gateway alone, so the last write wins.
func (c *Client) PutDevice(mac string, summary []byte) error {
	if err := checkRecordKey(mac); err != nil {
		return fmt.Errorf("fleet: device: %w", err)
	}
	if len(summary) > MaxValueSize {
		return fmt.Errorf("fleet: device %s: summary of %d bytes exceeds %d", mac, len(summary), MaxValueSize)
	}
	w := Write{Op: opDevice, Key: mac, Value: summary, Queued: time.Now()}
	if summary == nil {
		w.Op = opDeviceDel
	}
	return c.enqueue(w)
}

func (c *Client) enqueue(w Write) error {
	if err := c.loc.enqueue(w); err != nil {
		return fmt.Errorf("fleet: queueing %s %q: %w", w.Op, w.Key, err)
	}
	select {
	case c.kick <- struct{}{}:
	default:
	}
	return nil
}

func checkDecision(kind Kind, key string, value []byte) error {
	if !kind.Valid() {
		return fmt.Errorf("fleet: unknown decision kind %q", kind)
	}
	if err := checkRecordKey(key); err != nil {
		return fmt.Errorf("fleet: %s: %w", kind, err)
	}
	if len(value) > MaxValueSize {
		return fmt.Errorf("fleet: %s %q: value of %d bytes exceeds %d", kind, key, len(value), MaxValueSize)
	}
	return nil
}

// cas applies one shared-decision write as a transaction: if the key's
// modification revision is still w.BaseRev, write; otherwise read what is
// there and report the conflict.
func (c *Client) cas(ctx context.Context, w Write) (Decision, error) {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.RequestTimeout)
	defer cancel()
	k := c.lay.decision(w.Kind, w.Key)
	var then clientv3.Op
	if w.Op == opDelete {
		then = clientv3.OpDelete(k)
	} else {
		then = clientv3.OpPut(k, string(w.Value))
	}
	resp, err := c.cli.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(k), "=", w.BaseRev)).
		Then(then).
		Else(clientv3.OpGet(k)).
		Commit()
	if err != nil {
		return Decision{}, fmt.Errorf("fleet: writing %s %q: %w", w.Kind, w.Key, err)
	}
	d := Decision{Kind: w.Kind, Key: w.Key}
	if resp.Succeeded {
		if w.Op == opDelete {
			d.Deleted = true
		} else {
			d.Value, d.ModRev = w.Value, resp.Header.Revision
		}
		c.remember(k, d)
		return d, nil
	}
	d.Deleted = true
	if rr := resp.Responses[0].GetResponseRange(); rr != nil && len(rr.Kvs) == 1 {
		d.Value, d.ModRev, d.Deleted = rr.Kvs[0].Value, rr.Kvs[0].ModRevision, false
	}
	c.remember(k, d)
	return d, &ConflictError{Current: d}
}

// remember records the revision of a decision this gateway just wrote or
// was refused on, so that its next write is based on it.
func (c *Client) remember(k string, d Decision) {
	if err := c.loc.record([]mirrorUpdate{{key: k, modRev: d.ModRev, deleted: d.Deleted}}, 0); err != nil {
		c.log.Error("recording a decision's revision", "key", k, "err", err)
	}
}

// emit hands an event to the caller, waiting for room.
func (c *Client) emit(ctx context.Context, e Event) {
	select {
	case c.events <- e:
	case <-ctx.Done():
	}
}

// DeviceSummary is what a gateway publishes about one device under its own
// keys: enough for another gateway (or an operator) to see where a device
// is and what it is held to, not the device's full record.
type DeviceSummary struct {
	MAC         string    `json:"mac"`
	IPs         []string  `json:"ips,omitempty"`
	MUDURL      string    `json:"mud_url,omitempty"`
	State       string    `json:"state"`
	Enforcement string    `json:"enforcement,omitempty"`
	PolicyID    string    `json:"policy_id,omitempty"`
	UpdatedAt   time.Time `json:"updated_at,omitzero"`
}
