// Package fleetlink connects mudd's manager to the other gateways of a
// site: it opens the fleet client (package fleet) from the store.etcd
// configuration and adapts it to manager.Fleet, turning the client's
// events into the manager's.
//
// It is its own package so that neither the manager nor a mudd built
// without fleet support (build tag nofleet) links the etcd client.
package fleetlink

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/manager"
)

// QueueFile is the fleet client's own file under state_dir.
const QueueFile = "fleet.db"

// Config makes the fleet client's configuration from store.etcd: the
// members, this gateway's client certificate and the CA that signs the
// members' certificates, and the queue file under stateDir.
func Config(e config.StoreEtcd, stateDir string, log *slog.Logger) (fleet.Config, error) {
	ca, err := os.ReadFile(e.CACert)
	if err != nil {
		return fleet.Config{}, fmt.Errorf("store.etcd.ca_cert: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return fleet.Config{}, fmt.Errorf("store.etcd.ca_cert: %s holds no PEM certificate", e.CACert)
	}
	cert, err := tls.LoadX509KeyPair(e.Cert, e.Key)
	if err != nil {
		return fleet.Config{}, fmt.Errorf("store.etcd.cert, store.etcd.key: %w", err)
	}
	return fleet.Config{
		Endpoints: e.Endpoints,
		TLS:       &tls.Config{Certificates: []tls.Certificate{cert}, RootCAs: pool, MinVersion: tls.VersionTLS12},
		Prefix:    e.Prefix, GatewayID: e.GatewayID,
		QueuePath: filepath.Join(stateDir, QueueFile),
		Logger:    log,
	}, nil
}

// Link is a fleet client as the manager's Fleet. Run drives it.
type Link struct {
	c      *fleet.Client
	events chan manager.FleetEvent
	once   sync.Once
}

// Open opens the fleet client (it does not wait for etcd).
func Open(cfg fleet.Config) (*Link, error) {
	c, err := fleet.Open(cfg)
	if err != nil {
		return nil, err
	}
	return &Link{c: c, events: make(chan manager.FleetEvent, 256)}, nil
}

// Client is the fleet client.
func (l *Link) Client() *fleet.Client { return l.c }

// Close releases the client; call it after Run returned.
func (l *Link) Close() error {
	var err error
	l.once.Do(func() { err = l.c.Close() })
	return err
}

// Run runs the client and hands its events to the manager until ctx ends;
// both goroutines have returned when it returns.
func (l *Link) Run(ctx context.Context) error {
	done := make(chan error, 1)
	go func() { done <- l.c.Run(ctx) }()
	for {
		select {
		case <-ctx.Done():
			<-done
			return nil
		case err := <-done:
			if ctx.Err() != nil {
				return nil
			}
			return errors.Join(errors.New("fleet client stopped"), err)
		case ev := <-l.c.Events():
			me, ok := convert(ev)
			if !ok {
				continue
			}
			select {
			case l.events <- me:
			case <-ctx.Done():
			}
		}
	}
}

func convert(ev fleet.Event) (manager.FleetEvent, bool) {
	me := manager.FleetEvent{Kind: manager.FleetKind(ev.Decision.Kind), Key: ev.Decision.Key,
		Value: ev.Decision.Value, Deleted: ev.Decision.Deleted, Err: ev.Err}
	switch ev.Type {
	case fleet.EventChanged:
		me.Type = manager.FleetChanged
	case fleet.EventResync:
		me.Type = manager.FleetResync
	case fleet.EventPartition:
		me.Type = manager.FleetPartition
	case fleet.EventHeal:
		me.Type = manager.FleetHeal
	case fleet.EventConflict:
		me.Type = manager.FleetConflict
	case fleet.EventFlushed:
		me.Type = manager.FleetFlushed
	default:
		return me, false
	}
	return me, true
}

// Submit queues shared decisions in one write.
func (l *Link) Submit(ds ...manager.FleetDecision) error {
	fds := make([]fleet.Decision, len(ds))
	for i, d := range ds {
		fds[i] = fleet.Decision{Kind: fleet.Kind(d.Kind), Key: d.Key, Value: d.Value}
	}
	return l.c.SubmitAll(fds)
}

// Known is the revision of a decision this gateway has seen.
func (l *Link) Known(kind manager.FleetKind, key string) int64 {
	return l.c.Known(fleet.Kind(kind), key)
}

// PutDevices queues device summaries.
func (l *Link) PutDevices(s map[string][]byte) error { return l.c.PutDevices(s) }

// Events are the client's events in the manager's terms.
func (l *Link) Events() <-chan manager.FleetEvent { return l.events }

// Status reports the connection.
func (l *Link) Status() manager.FleetStatus {
	return manager.FleetStatus{GatewayID: l.c.GatewayID(), Partitioned: l.c.Partitioned(), Queued: l.c.Queued()}
}

var _ manager.Fleet = (*Link)(nil)
