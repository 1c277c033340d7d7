package fleet

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"os"
	"slices"
	"strings"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
)

// The read-only view of a fleet: every gateway that has keys under
// <prefix>/gateways/ (alive or not), its device summaries, and how many
// shared decisions there are of each kind, read at one etcd revision. It is
// what an administrator looks at (mudctl --fleet); it writes nothing and
// needs no queue file, so it can run beside a gateway's mudd with the same
// credentials (a gateway's role may read <prefix>/gateways/ and
// <prefix>/shared/: scripts/fleet-roles.sh).
//
// Every value under <prefix>/gateways/ was written by some gateway and is
// read as hostile: a key or value that cannot be understood becomes a
// KeyError naming the gateway and the key, and the rest of the view is
// still returned.

// Defaults of ViewConfig.
const (
	// DefaultViewPage is how many keys one range read returns.
	DefaultViewPage = 500
	// DefaultViewMaxKeys bounds the keys a view reads under
	// <prefix>/gateways/.
	DefaultViewMaxKeys = 200_000
)

// ViewConfig says how to reach etcd for a view. Credentials come either
// as PEM files (the store.etcd keys of mudd.yaml) or as TLS.
type ViewConfig struct {
	// Endpoints are etcd client URLs, https://host:port.
	Endpoints []string
	// CACert verifies the members; Cert and Key are the client
	// certificate and key. Ignored when TLS is set.
	CACert, Cert, Key string
	// TLS, when set, is the client configuration.
	TLS *tls.Config
	// Prefix is the root of every key, e.g. "/mud".
	Prefix string
	// RequestTimeout bounds each etcd request; zero means
	// DefaultRequestTimeout.
	RequestTimeout time.Duration
	// PageSize is how many keys one read returns (DefaultViewPage);
	// MaxKeys bounds the gateways' keys read in all
	// (DefaultViewMaxKeys): past it the view is Truncated.
	PageSize, MaxKeys int
	// Dial, when set, opens connections to members.
	Dial func(ctx context.Context, addr string) (net.Conn, error)
}

// View reads the fleet's keys. It holds an etcd client: Close it.
type View struct {
	cfg ViewConfig
	lay layout
	cli *clientv3.Client
}

// OpenView checks cfg, loads the credentials and prepares the etcd client.
// Like Open it does not wait for etcd: an unreachable cluster shows as the
// first read's error, after RequestTimeout.
func OpenView(cfg ViewConfig) (*View, error) {
	if len(cfg.Endpoints) == 0 {
		return nil, errors.New("fleet: no etcd endpoints")
	}
	if err := validPrefix(cfg.Prefix); err != nil {
		return nil, fmt.Errorf("fleet: %w", err)
	}
	if cfg.RequestTimeout <= 0 {
		cfg.RequestTimeout = DefaultRequestTimeout
	}
	if cfg.PageSize <= 0 {
		cfg.PageSize = DefaultViewPage
	}
	if cfg.MaxKeys <= 0 {
		cfg.MaxKeys = DefaultViewMaxKeys
	}
	tc := cfg.TLS
	if tc == nil {
		var err error
		if tc, err = loadClientTLS(cfg.CACert, cfg.Cert, cfg.Key); err != nil {
			return nil, fmt.Errorf("fleet: %w", err)
		}
	}
	var dopts []grpc.DialOption
	if cfg.Dial != nil {
		dopts = append(dopts, grpc.WithContextDialer(cfg.Dial))
	}
	cli, err := clientv3.New(clientv3.Config{
		Endpoints:   cfg.Endpoints,
		TLS:         tc,
		DialOptions: dopts,
		Logger:      zap.NewNop(),
	})
	if err != nil {
		return nil, fmt.Errorf("fleet: etcd client: %w", err)
	}
	return &View{cfg: cfg, lay: layout{cfg.Prefix}, cli: cli}, nil
}

// Close releases the etcd connection.
func (v *View) Close() error { return v.cli.Close() }

// loadClientTLS reads a CA and a client certificate and key, PEM files.
func loadClientTLS(caFile, certFile, keyFile string) (*tls.Config, error) {
	if caFile == "" || certFile == "" || keyFile == "" {
		return nil, errors.New("etcd needs a CA, a client certificate and its key (store.etcd ca_cert, cert, key)")
	}
	ca, err := os.ReadFile(caFile)
	if err != nil {
		return nil, fmt.Errorf("etcd CA: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, fmt.Errorf("etcd CA %s: no PEM certificate in it", caFile)
	}
	leaf, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		return nil, fmt.Errorf("etcd client certificate %s, key %s: %w", certFile, keyFile, err)
	}
	return &tls.Config{Certificates: []tls.Certificate{leaf}, RootCAs: pool, MinVersion: tls.VersionTLS12}, nil
}

// Snapshot is the fleet as one etcd revision holds it.
type Snapshot struct {
	// Revision is the etcd revision every read was made at.
	Revision int64
	// Gateways are every gateway with a key, by id.
	Gateways []GatewayView
	// Shared counts the shared decisions of each kind (every kind is
	// present, with 0 when there are none).
	Shared map[Kind]int
	// Errors are the keys under <prefix>/gateways/ that could not be
	// understood, in key order.
	Errors []KeyError
	// Truncated: there were more than MaxKeys keys; the rest were not
	// read.
	Truncated bool
}

// GatewayView is one gateway's keys.
type GatewayView struct {
	ID string
	// Alive: its liveness key exists (it is on a lease that the gateway
	// keeps alive while it runs and etcd deletes when it stops). A
	// gateway with device summaries and no liveness key is down: the
	// summaries are what it last published.
	Alive bool
	// AliveSince is when the gateway took its current lease (the liveness
	// key's value), zero when unknown.
	AliveSince time.Time
	// Devices are its device summaries, by MAC.
	Devices []DeviceSummary
	// Errors counts its keys that are in Snapshot.Errors.
	Errors int
}

// KeyError is a key under <prefix>/gateways/ that could not be understood:
// a gateway id that is not one, a key of no known shape, a value that is
// not a device summary.
type KeyError struct {
	// Gateway is the id the key is under, as etcd has it (it may be
	// invalid; escaped when printed).
	Gateway string
	// Key is the etcd key.
	Key string
	Err error
}

func (e KeyError) Error() string {
	return fmt.Sprintf("gateway %q key %q: %v", e.Gateway, e.Key, e.Err)
}

func (e KeyError) Unwrap() error { return e.Err }

// Read reads the fleet: the gateways' keys page by page and the count of
// each kind of shared decision, all at the revision of the first read.
func (v *View) Read(ctx context.Context) (Snapshot, error) {
	snap := Snapshot{Shared: map[Kind]int{}}
	gws := map[string]*GatewayView{}
	gateway := func(id string) *GatewayView {
		g := gws[id]
		if g == nil {
			g = &GatewayView{ID: id}
			gws[id] = g
		}
		return g
	}
	root := v.cfg.Prefix + "/gateways/"
	end := clientv3.GetPrefixRangeEnd(root)
	from, read := root, 0
	for {
		opts := []clientv3.OpOption{clientv3.WithRange(end), clientv3.WithLimit(int64(v.cfg.PageSize))}
		if snap.Revision != 0 {
			opts = append(opts, clientv3.WithRev(snap.Revision))
		}
		resp, err := v.get(ctx, from, opts...)
		if err != nil {
			return Snapshot{}, fmt.Errorf("fleet: reading %s: %w", root, err)
		}
		if snap.Revision == 0 {
			snap.Revision = resp.Header.Revision
		}
		for _, kv := range resp.Kvs {
			if read == v.cfg.MaxKeys {
				snap.Truncated = true
				break
			}
			read++
			v.classify(string(kv.Key)[len(root):], kv.Key, kv.Value, gateway, &snap)
		}
		if snap.Truncated || !resp.More || len(resp.Kvs) == 0 {
			break
		}
		from = string(resp.Kvs[len(resp.Kvs)-1].Key) + "\x00"
	}
	for _, k := range Kinds() {
		resp, err := v.get(ctx, v.lay.shared()+string(k)+"/", clientv3.WithPrefix(), clientv3.WithCountOnly(), clientv3.WithRev(snap.Revision))
		if err != nil {
			return Snapshot{}, fmt.Errorf("fleet: counting the shared %s: %w", k, err)
		}
		snap.Shared[k] = int(resp.Count)
	}
	for _, g := range gws {
		slices.SortFunc(g.Devices, func(a, b DeviceSummary) int { return strings.Compare(a.MAC, b.MAC) })
		snap.Gateways = append(snap.Gateways, *g)
	}
	slices.SortFunc(snap.Gateways, func(a, b GatewayView) int { return strings.Compare(a.ID, b.ID) })
	return snap, nil
}

func (v *View) get(ctx context.Context, key string, opts ...clientv3.OpOption) (*clientv3.GetResponse, error) {
	ctx, cancel := context.WithTimeout(ctx, v.cfg.RequestTimeout)
	defer cancel()
	resp, err := v.cli.Get(ctx, key, opts...)
	if err != nil {
		if errors.Is(err, context.DeadlineExceeded) {
			return nil, fmt.Errorf("no answer from etcd (%s) within %s: %w", strings.Join(v.cfg.Endpoints, ", "), v.cfg.RequestTimeout, err)
		}
		return nil, fmt.Errorf("etcd (%s): %w", strings.Join(v.cfg.Endpoints, ", "), err)
	}
	return resp, nil
}

// classify files one key under <prefix>/gateways/ (rest is the part after
// it) as a liveness key, a device summary or an error.
func (v *View) classify(rest string, key, value []byte, gateway func(string) *GatewayView, snap *Snapshot) {
	id, sub, _ := strings.Cut(rest, "/")
	bad := func(format string, a ...any) {
		snap.Errors = append(snap.Errors, KeyError{Gateway: id, Key: string(key), Err: fmt.Errorf(format, a...)})
		if ValidGatewayID(id) == nil {
			gateway(id).Errors++
		}
	}
	if err := ValidGatewayID(id); err != nil {
		bad("%v", err)
		return
	}
	switch {
	case sub == "alive":
		g := gateway(id)
		g.Alive = true
		if t, err := time.Parse(time.RFC3339, string(value)); err == nil && len(value) <= 64 {
			g.AliveSince = t
		}
	case strings.HasPrefix(sub, "devices/"):
		esc := sub[len("devices/"):]
		mac, err := url.PathUnescape(esc)
		if err != nil || mac == "" || strings.Contains(esc, "/") {
			bad("not a device key (devices/<path-escaped MAC>)")
			return
		}
		s, err := decodeSummary(mac, value)
		if err != nil {
			bad("%v", err)
			return
		}
		g := gateway(id)
		g.Devices = append(g.Devices, s)
	default:
		bad("not a key a gateway writes (alive, devices/<MAC>)")
	}
}

// decodeSummary reads a device summary published under the key of mac.
func decodeSummary(mac string, value []byte) (DeviceSummary, error) {
	if len(value) > MaxValueSize {
		return DeviceSummary{}, fmt.Errorf("device summary of %d bytes exceeds %d", len(value), MaxValueSize)
	}
	var s DeviceSummary
	if err := json.Unmarshal(value, &s); err != nil {
		return DeviceSummary{}, fmt.Errorf("not a device summary: %w", err)
	}
	switch {
	case s.MAC == "":
		return DeviceSummary{}, errors.New("device summary without a MAC")
	case !strings.EqualFold(s.MAC, mac):
		return DeviceSummary{}, fmt.Errorf("device summary of %q under the key of %q", s.MAC, mac)
	case s.State == "":
		return DeviceSummary{}, errors.New("device summary without a state")
	}
	return s, nil
}
