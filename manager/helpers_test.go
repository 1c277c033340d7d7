package manager

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// mudServer is an HTTPS MUD server on 127.0.0.1 with a lab CA's
// certificate, reached as mud.example and other.example.
type mudServer struct {
	t      testing.TB
	ca     *labpki.CA
	signer *labpki.Leaf
	srv    *httptest.Server
	port   string

	mu    sync.Mutex
	files map[string][]byte
	down  bool
	hits  map[string]int
}

func newMUDServer(t testing.TB) *mudServer {
	t.Helper()
	ca, err := labpki.NewCA("Lab MUD CA")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ca.Signer(pkix.Name{CommonName: "Example MUD signer", Organization: []string{"Example"}})
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server([]string{"mud.example", "other.example"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	s := &mudServer{t: t, ca: ca, signer: signer, files: map[string][]byte{}, hits: map[string]int{}}
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		down := s.down
		body, ok := s.files[r.URL.Path]
		s.hits[r.URL.Path]++
		s.mu.Unlock()
		switch {
		case down:
			http.Error(w, "down", http.StatusServiceUnavailable)
		case !ok:
			http.NotFound(w, r)
		default:
			w.Write(body)
		}
	}))
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	s.srv.StartTLS()
	t.Cleanup(s.srv.Close)
	_, s.port, _ = net.SplitHostPort(s.srv.Listener.Addr().String())
	return s
}

func (s *mudServer) url(host, path string) string {
	return "https://" + host + ":" + s.port + path
}

func (s *mudServer) setDown(down bool) {
	s.mu.Lock()
	s.down = down
	s.mu.Unlock()
}

func (s *mudServer) hitCount(path string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.hits[path]
}

// publish serves body at path, signed (path+".p7s") by the lab signer, or
// with a signature over other bytes when badSig.
func (s *mudServer) publish(path string, body []byte, badSig bool) {
	s.t.Helper()
	signed := body
	if badSig {
		signed = append([]byte("tampered "), body...)
	}
	s.publishSigned(path, body, signed, s.signer)
}

// publishSigned serves body with signer's signature over signed.
func (s *mudServer) publishSigned(path string, body, signed []byte, signer *labpki.Leaf) {
	s.t.Helper()
	sig, err := signer.SignDetached(signed)
	if err != nil {
		s.t.Fatal(err)
	}
	s.mu.Lock()
	s.files[path] = body
	s.files[path+".p7s"] = sig
	s.mu.Unlock()
}

func (s *mudServer) fetcher(t testing.TB, anchors *x509.CertPool) *mudfetch.Fetcher {
	t.Helper()
	f, err := mudfetch.New(mudfetch.Config{
		ServerCAs: []*x509.Certificate{s.ca.Root}, NoSystemRoots: true, Anchors: anchors,
		// The lab's MUD server is on loopback: the admin allow-list.
		AllowPrefixes: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Resolve: func(context.Context, string) ([]netip.Addr, error) {
			return []netip.Addr{netip.MustParseAddr("127.0.0.1")}, nil
		},
		ConnectTimeout: 2 * time.Second, Timeout: 5 * time.Second,
		MaxFetchesPerKey: -1, MaxFetches: -1,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

// mudFile is a MUD file whose device may open TCP 8080 to cloud.example
// (direction-initiated from-device) and TCP to and from devices of its
// manufacturer (both directions: bridged traffic may be tracked statelessly); extra adds ACEs to the from-device ACL.
func mudFile(mudURL, extra string) []byte {
	return fmt.Appendf(nil, `{
  "ietf-mud:mud": {
    "mud-version": 1,
    "mud-url": %q,
    "mud-signature": %q,
    "last-update": "2026-01-28T11:20:51+01:00",
    "cache-validity": 48,
    "is-supported": true,
    "systeminfo": "Lab camera",
    "mfg-name": "Example",
    "from-device-policy": {"access-lists": {"access-list": [{"name": "fr4"}]}},
    "to-device-policy": {"access-lists": {"access-list": [{"name": "to4"}]}}
  },
  "ietf-access-control-list:acls": {"acl": [
    {"name": "fr4", "type": "ipv4-acl-type", "aces": {"ace": [
      {"name": "cloud", "matches": {"ipv4": {"ietf-acldns:dst-dnsname": "cloud.example", "protocol": 6},
        "tcp": {"ietf-mud:direction-initiated": "from-device", "destination-port": {"operator": "eq", "port": 8080}}},
       "actions": {"forwarding": "accept"}},
      {"name": "mfr", "matches": {"ietf-mud:mud": {"same-manufacturer": [null]}, "ipv4": {"protocol": 6}},
       "actions": {"forwarding": "accept"}}%s
    ]}},
    {"name": "to4", "type": "ipv4-acl-type", "aces": {"ace": [
      {"name": "cloud", "matches": {"ipv4": {"ietf-acldns:src-dnsname": "cloud.example", "protocol": 6},
        "tcp": {"ietf-mud:direction-initiated": "from-device", "source-port": {"operator": "eq", "port": 8080}}},
       "actions": {"forwarding": "accept"}},
      {"name": "mfr", "matches": {"ietf-mud:mud": {"same-manufacturer": [null]}, "ipv4": {"protocol": 6}},
       "actions": {"forwarding": "accept"}}
    ]}}
  ]}
}
`, mudURL, filepath.Base(mustPath(mudURL))+".p7s", extra)
}

func mustPath(u string) string {
	i := strings.Index(u[len("https://"):], "/")
	return u[len("https://")+i:]
}

// literalACE is an ACE with an IP literal (RFC 8520 §2: needs approval).
const literalACE = `,
      {"name": "lit", "matches": {"ipv4": {"destination-ipv4-network": "198.51.100.0/24", "protocol": 17}},
       "actions": {"forwarding": "accept"}}`

// fakeEnforcer records what the manager asks, like the real one would hold:
// an Update is one transaction, refused whole when an enforced device would
// be left without its policy.
type fakeEnforcer struct {
	mu       sync.Mutex
	policies map[string]policy.Policy
	devices  map[string]enforcer.Device
	peers    map[string][]enforcer.Element
	peerAt   map[string]time.Time // key → when its elements were set (their timeouts run from then)
	applies  int
	updates  int
	// failUpdates makes the next Update calls fail.
	failUpdates int
	// now is the clock of peerAt (default time.Now).
	now func() time.Time
	// onUpdate, when set, sees each Update before it is taken.
	onUpdate func(enforcer.Update)
}

func newFakeEnforcer() *fakeEnforcer {
	return &fakeEnforcer{policies: map[string]policy.Policy{}, devices: map[string]enforcer.Device{},
		peers: map[string][]enforcer.Element{}, peerAt: map[string]time.Time{}, now: time.Now}
}

func (f *fakeEnforcer) Apply(_ context.Context, d enforcer.Desired) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.applies++
	f.policies, f.devices, f.peers, f.peerAt = map[string]policy.Policy{}, map[string]enforcer.Device{}, map[string][]enforcer.Element{}, map[string]time.Time{}
	for _, p := range d.Policies {
		f.policies[p.ID] = p
	}
	for _, dv := range d.Devices {
		f.devices[dv.MAC.String()] = dv
	}
	for k, v := range d.Peers {
		f.setPeer(k, v)
	}
	return nil
}

func (f *fakeEnforcer) Update(_ context.Context, u enforcer.Update) error {
	if f.onUpdate != nil {
		f.onUpdate(u)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	f.updates++
	if f.failUpdates > 0 {
		f.failUpdates--
		return errors.New("netlink: injected failure")
	}
	// Check the state after the transaction before changing anything.
	setPol, gonePol, setDev, goneDev := map[string]bool{}, map[string]bool{}, map[string]enforcer.Device{}, map[string]bool{}
	for _, p := range u.SetPolicies {
		setPol[p.ID] = true
	}
	for _, id := range u.RemovePolicies {
		gonePol[id], setPol[id] = true, false
	}
	for _, d := range u.UpsertDevices {
		setDev[d.MAC.String()] = d
	}
	for _, mac := range u.RemoveDevices {
		goneDev[mac.String()] = true
		delete(setDev, mac.String())
	}
	installed := func(id string) bool {
		if in, ok := setPol[id]; ok {
			return in
		}
		_, ok := f.policies[id]
		return ok
	}
	for mac, d := range setDev {
		if d.Mode == enforcer.Enforce && !installed(d.PolicyID) {
			return fmt.Errorf("device %s: policy %s is not installed", mac, d.PolicyID)
		}
	}
	if len(gonePol) > 0 {
		for mac, d := range f.devices {
			if _, ok := setDev[mac]; !ok && !goneDev[mac] && d.Mode == enforcer.Enforce && gonePol[d.PolicyID] {
				return fmt.Errorf("removing policy %s: device %s still uses it", d.PolicyID, mac)
			}
		}
	}
	changed := map[string][]enforcer.Element{}
	for k, pc := range u.ChangePeers {
		if _, both := u.SetPeers[k]; both {
			return fmt.Errorf("peer %s both set and changed", k)
		}
		if !strings.HasPrefix(k, "dns:") && !strings.HasPrefix(k, "model:") && !strings.HasPrefix(k, "manufacturer:") {
			return fmt.Errorf("peer %s: only DNS, manufacturer and model peers change by address", k)
		}
		// The fake keeps one start time per peer: it changes permanent
		// elements only (the manager changes class peers, whose members
		// are permanent).
		els := slices.DeleteFunc(slices.Clone(f.peers[k]), func(e enforcer.Element) bool { return slices.Contains(pc.Remove, e.Prefix) })
		for _, a := range pc.Add {
			if a.Timeout != 0 || slices.ContainsFunc(els, func(e enforcer.Element) bool { return e.Timeout != 0 }) {
				return fmt.Errorf("peer %s: the fake changes permanent elements only", k)
			}
			if !slices.ContainsFunc(els, func(e enforcer.Element) bool { return e.Prefix == a.Prefix }) {
				els = append(els, a)
			}
		}
		changed[k] = els
	}
	for _, p := range u.SetPolicies {
		f.policies[p.ID] = p
	}
	for id := range gonePol {
		delete(f.policies, id)
	}
	for mac, d := range setDev {
		f.devices[mac] = d
	}
	for mac := range goneDev {
		delete(f.devices, mac)
	}
	for k, els := range changed {
		f.setPeer(k, els)
	}
	for k, v := range u.SetPeers {
		f.setPeer(k, v)
	}
	return nil
}

func (f *fakeEnforcer) setPeer(key string, elems []enforcer.Element) {
	if len(elems) == 0 {
		delete(f.peers, key)
		delete(f.peerAt, key)
		return
	}
	f.peers[key], f.peerAt[key] = elems, f.now()
}

func (f *fakeEnforcer) Counters(context.Context) ([]enforcer.RuleCounter, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []enforcer.RuleCounter
	for id := range f.policies {
		out = append(out, enforcer.RuleCounter{PolicyID: id, Direction: policy.FromDevice, Rule: "default-deny", Packets: 3, Bytes: 180})
	}
	return out, nil
}

func (f *fakeEnforcer) device(mac net.HardwareAddr) (enforcer.Device, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	d, ok := f.devices[mac.String()]
	return d, ok
}

func (f *fakeEnforcer) peer(key string) []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, e := range f.peers[key] {
		out = append(out, e.Prefix.String())
	}
	return out
}

// fakeResolver records watches and device names.
type fakeResolver struct {
	mu      sync.Mutex
	watched map[string]map[string]bool
	devs    map[string][]string
}

func newFakeResolver() *fakeResolver {
	return &fakeResolver{watched: map[string]map[string]bool{}, devs: map[string][]string{}}
}

func (r *fakeResolver) Watch(name, owner string) (string, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.watched[name] == nil {
		r.watched[name] = map[string]bool{}
	}
	r.watched[name][owner] = true
	return name, nil
}

func (r *fakeResolver) Unwatch(name, owner string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	delete(r.watched[name], owner)
	if len(r.watched[name]) == 0 {
		delete(r.watched, name)
	}
}

func (r *fakeResolver) SetDeviceNames(mac net.HardwareAddr, names []string) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(names) == 0 {
		delete(r.devs, mac.String())
	} else {
		r.devs[mac.String()] = names
	}
	return nil
}

func (r *fakeResolver) isWatched(name string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.watched[name]) > 0
}

// harness is a running manager over a real store and a real fetcher.
type harness struct {
	t      testing.TB
	m      *Manager
	st     *store.Store
	enf    Enforcer
	res    *fakeResolver
	cancel context.CancelFunc
	done   chan error
}

type harnessOpts struct {
	dir      string
	enf      Enforcer
	fetcher  Fetcher
	anchors  *x509.CertPool
	settings Settings
	now      func() time.Time
	// noSync opens the store without fsync, for tests of many writes.
	noSync bool
	// tweak, if set, changes the configuration before New.
	tweak func(*Config)
	// rand, if set, replaces the retry jitter.
	rand func() float64
	// setup, if set, changes the manager before Run.
	setup func(*Manager)
}

func startManager(t testing.TB, o harnessOpts) *harness {
	t.Helper()
	if o.dir == "" {
		o.dir = t.TempDir()
	}
	st, err := store.Open(filepath.Join(o.dir, "mud.db"), store.Options{NoSync: o.noSync})
	if err != nil {
		t.Fatal(err)
	}
	res := newFakeResolver()
	if o.settings.RetryInitial == 0 {
		// No retry within a test unless it asks for one.
		o.settings.RetryInitial, o.settings.RetryMax = time.Hour, time.Hour
	}
	cfg := Config{Store: st, Enforcer: o.enf, Fetcher: o.fetcher, Resolver: res, Anchors: o.anchors,
		Settings: o.settings, RemovalGrace: 300 * time.Millisecond, Tick: 50 * time.Millisecond,
		Now: o.now, Version: "test", Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if o.tweak != nil {
		o.tweak(&cfg)
	}
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	if o.rand != nil {
		m.rand = o.rand
	}
	if o.setup != nil {
		o.setup(m)
	}
	ctx, cancel := context.WithCancel(context.Background())
	h := &harness{t: t, m: m, st: st, enf: o.enf, res: res, cancel: cancel, done: make(chan error, 1)}
	go func() { h.done <- m.Run(ctx) }()
	select {
	case <-m.Ready():
	case err := <-h.done:
		t.Fatalf("manager did not start: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("manager not ready after 10s")
	}
	t.Cleanup(h.stop)
	return h
}

func (h *harness) stop() {
	if h.cancel == nil {
		return
	}
	h.cancel()
	if err := <-h.done; err != nil {
		h.t.Errorf("Run: %v", err)
	}
	h.cancel = nil
	h.st.Close()
}

func (h *harness) lease(kind dhcpsnoop.Kind, mac net.HardwareAddr, ip netip.Addr, mudURL string) {
	h.t.Helper()
	ev := dhcpsnoop.Event{Kind: kind, Time: time.Now(), Family: 4, MAC: mac, MUDURL: mudURL, LeaseTime: time.Hour, Expires: time.Now().Add(time.Hour)}
	switch kind {
	case dhcpsnoop.KindReleased, dhcpsnoop.KindExpired:
		ev.Gone = true
	default:
		ev.IPv4 = ip
	}
	if err := h.m.HandleLease(context.Background(), ev); err != nil {
		h.t.Fatal(err)
	}
}

// waitState waits until the device reaches want.
func (h *harness) waitState(mac net.HardwareAddr, want store.State) store.Device {
	h.t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	var last store.Device
	for time.Now().Before(deadline) {
		d, err := h.m.Device(context.Background(), mac.String())
		if err == nil {
			last = d.Device
			if d.State == want {
				return d.Device
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
	h.t.Fatalf("device %s: state %q (%s), want %q", mac, last.State, last.Reason, want)
	return last
}

func mac(i int) net.HardwareAddr { return net.HardwareAddr{2, 0, 0, 0, 1, byte(i)} }
