package manager

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/neighbor"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// The reconcile recomputes only what was marked dirty. These tests drive
// a manager through random sequences of events and hold it, after every
// step, to computeDesired's derivation from scratch: the devices, policies
// and peers (with their elements) the enforcer holds, and the names the
// resolver watches and snoops.

// propURLs are the MUD URLs of the random sequences: two share an
// authority; the last one's server is down until a step brings it up.
var propURLs = []string{"https://a.example/x.json", "https://a.example/y.json", "https://b.example/z.json", "https://c.example/w.json"}

var (
	propNames     = []string{"cloud.example", "api.example", "ntp.example", "extra.example"}
	propCtl       = "https://ctl.example/hub"
	propLocalNets = [][]netip.Prefix{{netip.MustParsePrefix("192.0.2.0/24")}, {netip.MustParsePrefix("192.0.2.0/25"), netip.MustParsePrefix("2001:db8::/48")}}
)

const propMACs = 6

// propACE is one ACE of a generated MUD file, by kind (i numbers it).
func propACE(rng *rand.Rand, i int) string {
	var m string
	switch rng.IntN(9) {
	case 0, 1:
		m = fmt.Sprintf(`"ipv4": {"ietf-acldns:dst-dnsname": %q, "protocol": 6}`, propNames[rng.IntN(3)])
	case 2:
		m = `"ietf-mud:mud": {"same-manufacturer": [null]}, "ipv4": {"protocol": 6}`
	case 3:
		m = `"ietf-mud:mud": {"manufacturer": "b.example"}, "ipv4": {"protocol": 6}`
	case 4:
		m = fmt.Sprintf(`"ietf-mud:mud": {"model": %q}, "ipv4": {"protocol": 6}`, propURLs[rng.IntN(3)])
	case 5:
		m = `"ietf-mud:mud": {"local-networks": [null]}, "ipv4": {"protocol": 17}`
	case 6:
		m = fmt.Sprintf(`"ietf-mud:mud": {"controller": %q}, "ipv4": {"protocol": 6}`, propCtl)
	case 7:
		m = `"ietf-mud:mud": {"my-controller": [null]}, "ipv4": {"protocol": 6}`
	default:
		// An IP literal: the file needs an administrator's approval.
		m = `"ipv4": {"destination-ipv4-network": "198.51.100.0/24", "protocol": 17}`
	}
	return fmt.Sprintf(`{"name": "a%d", "matches": {%s}, "actions": {"forwarding": "accept"}}`, i, m)
}

// propFile is a MUD file for u whose from-device ACL has aces.
func propFile(u string, aces []string) []byte {
	return fmt.Appendf(nil, `{
  "ietf-mud:mud": {"mud-version": 1, "mud-url": %q, "last-update": "2026-01-28T11:20:51+01:00", "cache-validity": 48,
    "is-supported": true, "systeminfo": "Lab device",
    "from-device-policy": {"access-lists": {"access-list": [{"name": "fr"}]}}},
  "ietf-access-control-list:acls": {"acl": [{"name": "fr", "type": "ipv4-acl-type", "aces": {"ace": [%s]}}]}
}
`, u, strings.Join(aces, ", "))
}

// propFetcher serves generated files from memory, verified or not as the
// sequence says; URLs it has no file for, or marked down, fail.
type propFetcher struct {
	mu    sync.Mutex
	now   func() time.Time
	files map[string]propServed
	down  map[string]bool
}

type propServed struct {
	body     []byte
	verified bool
}

func (f *propFetcher) Fetch(_ context.Context, req mudfetch.Request) (*mudfetch.Result, error) {
	f.mu.Lock()
	v, ok := f.files[req.URL]
	down := f.down[req.URL]
	f.mu.Unlock()
	if !ok || down {
		return nil, fmt.Errorf("GET %q: %w: 503", req.URL, mudfetch.ErrHTTPStatus)
	}
	now := f.now()
	r := &mudfetch.Result{URL: req.URL, FinalURL: req.URL, Body: v.body, FetchedAt: now,
		Verdict: mudfetch.Verdict{Status: mudfetch.StatusPendingApproval, At: now, Reason: "no signature"}}
	if v.verified {
		r.Verdict = mudfetch.Verdict{Status: mudfetch.StatusVerified, At: now, SignerSubject: "CN=Example MUD signer"}
	}
	return r, nil
}

func (f *propFetcher) serve(rng *rand.Rand, u string) {
	n := 1 + rng.IntN(3)
	aces := make([]string, n)
	for i := range aces {
		aces[i] = propACE(rng, i)
	}
	f.mu.Lock()
	f.files[u] = propServed{body: propFile(u, aces), verified: rng.IntN(10) > 0}
	f.mu.Unlock()
}

// propRun is one random sequence.
type propRun struct {
	t      testing.TB
	rng    *rand.Rand
	clock  *manualClock
	fe     *fakeEnforcer
	ff     *propFetcher
	h      *harness
	leases chan dhcpsnoop.Event
	dns    chan resolver.Update
	steps  []string
	// nbOwner is who holds each learned address, as package neighbor
	// keeps it: one MAC at a time.
	nbOwner map[netip.Addr]net.HardwareAddr
}

// runProperty runs one random sequence of steps (seeded) and returns the
// first difference between what the enforcer and the resolver hold and
// computeDesired's result, with the steps that led to it. skip switches
// marking of some kinds of change off.
func runProperty(t testing.TB, seed uint64, steps int, skip markKind) error {
	rng := rand.New(rand.NewPCG(seed, 0x6d7564))
	clock := newManualClock()
	fe := newFakeEnforcer()
	fe.now = clock.Now
	ff := &propFetcher{now: clock.Now, files: map[string]propServed{}, down: map[string]bool{}}
	for _, u := range propURLs[:3] {
		ff.serve(rng, u)
	}
	p := &propRun{t: t, rng: rng, clock: clock, fe: fe, ff: ff, leases: make(chan dhcpsnoop.Event, 8), dns: make(chan resolver.Update, 8),
		nbOwner: map[netip.Addr]net.HardwareAddr{}}
	p.h = startManager(t, harnessOpts{dir: tmpfsDir(t), enf: fe, fetcher: ff, now: clock.Now,
		settings: Settings{LocalNetworks: propLocalNets[0], ForgetAfter: 30 * time.Minute,
			Controllers: map[string][]netip.Prefix{propCtl: {netip.MustParsePrefix("198.51.100.16/28")}}},
		tweak: func(c *Config) {
			c.Tick = time.Hour // time moves only when a step says so
			c.FetchBudget, c.FetchBudgetPerPort, c.FetchBudgetPerDevice = 1<<20, 1<<20, 1<<20
			c.Leases, c.DNS = p.leases, p.dns
		},
		setup: func(m *Manager) { m.skipMarks = skip }})
	defer p.h.stop()
	if err := p.check(); err != nil {
		return fmt.Errorf("seed %d, after start-up: %w", seed, err)
	}
	for range steps {
		p.step()
		if err := p.check(); err != nil {
			return fmt.Errorf("seed %d, after the steps\n  %s\n%w", seed, strings.Join(p.steps, "\n  "), err)
		}
	}
	return nil
}

func (p *propRun) logf(format string, args ...any) {
	p.steps = append(p.steps, fmt.Sprintf(format, args...))
}

func (p *propRun) mac() net.HardwareAddr { return mac(1 + p.rng.IntN(propMACs)) }

// addrs is a random address set of device i: IPv4, IPv6 (sometimes a
// link-local one), or both.
func (p *propRun) addrs(hw net.HardwareAddr) (netip.Addr, []netip.Addr) {
	i := hw[5]
	k := byte(1 + p.rng.IntN(3))
	v4 := netip.AddrFrom4([4]byte{192, 0, 2, 16*i + k})
	v6 := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: i, 15: k})
	switch p.rng.IntN(5) {
	case 0:
		return netip.Addr{}, []netip.Addr{v6}
	case 1:
		return v4, []netip.Addr{v6, netip.AddrFrom16([16]byte{0xfe, 0x80, 15: i})}
	case 2:
		return v4, []netip.Addr{v6}
	}
	return v4, nil
}

func (p *propRun) lease(kind dhcpsnoop.Kind, hw net.HardwareAddr, u string) dhcpsnoop.Event {
	now := p.clock.Now()
	ev := dhcpsnoop.Event{Kind: kind, Time: now, Family: 4, MAC: hw, MUDURL: u, LeaseTime: time.Hour, Expires: now.Add(time.Hour)}
	switch kind {
	case dhcpsnoop.KindReleased, dhcpsnoop.KindExpired:
		ev.Gone = true
	default:
		ev.IPv4, ev.IPv6 = p.addrs(hw)
	}
	return ev
}

func (p *propRun) url() string {
	if p.rng.IntN(8) == 0 {
		return "" // renewals often carry no URL
	}
	return propURLs[p.rng.IntN(len(propURLs))]
}

// neighborStep feeds what package neighbor reports: an address a device
// was seen using (maybe one leased to another device, maybe one another
// MAC held, which neighbor expires first), an address no longer held, or
// the LAN's prefixes moving.
func (p *propRun) neighborStep() {
	m, ctx := p.h.m, context.Background()
	hw := p.mac()
	switch r := p.rng.IntN(10); {
	case r < 6:
		v4, v6 := p.addrs(p.mac())
		a := v4
		if len(v6) > 0 && (!a.IsValid() || p.rng.IntN(2) == 0) {
			a = v6[0]
		}
		if !a.IsValid() {
			return
		}
		if old, ok := p.nbOwner[a]; ok && old.String() != hw.String() {
			p.logf("neighbour expired %s %s", old, a)
			_ = m.HandleNeighbor(ctx, neighbor.Event{Kind: neighbor.KindExpired, MAC: old, Addr: a})
		}
		p.nbOwner[a] = hw
		p.logf("neighbour learned %s %s", hw, a)
		_ = m.HandleNeighbor(ctx, neighbor.Event{Kind: neighbor.KindLearned, MAC: hw, Addr: a, Tentative: p.rng.IntN(3) == 0,
			Pinned: p.rng.IntN(4) == 0}) // bound on first use when hw waits for it
	case r < 8:
		for a, owner := range p.nbOwner {
			delete(p.nbOwner, a)
			p.logf("neighbour expired %s %s", owner, a)
			_ = m.HandleNeighbor(ctx, neighbor.Event{Kind: neighbor.KindExpired, MAC: owner, Addr: a})
			break
		}
	default:
		lan := propLocalNets[p.rng.IntN(2)]
		p.logf("LAN prefixes %v", lan)
		_ = m.SetLAN(ctx, lan)
	}
}

// step makes one random change.
func (p *propRun) step() {
	m, ctx := p.h.m, context.Background()
	if p.rng.IntN(8) == 0 {
		p.neighborStep()
		return
	}
	hw := p.mac()
	kinds := []dhcpsnoop.Kind{dhcpsnoop.KindBound, dhcpsnoop.KindRenewed, dhcpsnoop.KindAddressChanged}
	switch r := p.rng.IntN(100); {
	case r < 22: // a device arrives, renews (new addresses) or changes its URL
		ev := p.lease(kinds[p.rng.IntN(len(kinds))], hw, p.url())
		p.logf("lease %s %s %s %v %v", ev.Kind, hw, ev.MUDURL, ev.IPv4, ev.IPv6)
		_ = m.HandleLease(ctx, ev)
	case r < 28: // a burst of DHCP through the snooper's channel
		n := 2 + p.rng.IntN(5)
		for range n {
			hw := p.mac()
			ev := p.lease(kinds[p.rng.IntN(len(kinds))], hw, p.url())
			p.logf("lease (burst) %s %s %s %v %v", ev.Kind, hw, ev.MUDURL, ev.IPv4, ev.IPv6)
			p.leases <- ev
		}
	case r < 34: // the lease ends
		kind := dhcpsnoop.KindReleased
		if p.rng.IntN(2) == 0 {
			kind = dhcpsnoop.KindExpired
		}
		p.logf("lease %s %s", kind, hw)
		_ = m.HandleLease(ctx, p.lease(kind, hw, ""))
	case r < 44: // time passes: removals, forgetting, retries, DNS expiry
		d := []time.Duration{200 * time.Millisecond, 900 * time.Millisecond, 2 * time.Second, 40 * time.Second, 5 * time.Minute, 40 * time.Minute}[p.rng.IntN(6)]
		p.clock.Advance(d)
		p.logf("%s pass", d)
		_ = m.do(ctx, func() error { m.onTick(); return nil })
	case r < 60: // DNS answers: snooped (held), or from active resolution
		u := resolver.Update{Name: propNames[p.rng.IntN(len(propNames))], Source: resolver.Snooped,
			Expires: p.clock.Now().Add([]time.Duration{time.Second, 1500 * time.Millisecond, 30 * time.Second, 10 * time.Minute}[p.rng.IntN(4)])}
		for range 1 + p.rng.IntN(2) {
			u.Addrs = append(u.Addrs, netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + p.rng.IntN(12))}))
		}
		switch p.rng.IntN(3) {
		case 0:
			u.Source = resolver.Active
			p.logf("dns (channel) %s %v until +%s", u.Name, u.Addrs, u.Expires.Sub(p.clock.Now()))
			p.dns <- u
		case 1:
			p.logf("dns (snooped) %s %v until +%s", u.Name, u.Addrs, u.Expires.Sub(p.clock.Now()))
			_ = m.HandleDNS(ctx, u)
		default:
			// Snooped while a lease waits for its reconcile in the
			// same batch, as Run handles it.
			ev := p.lease(kinds[p.rng.IntN(len(kinds))], hw, p.url())
			p.logf("lease %s %s %s %v %v, then in the same batch dns (snooped) %s %v until +%s", ev.Kind, hw, ev.MUDURL, ev.IPv4, ev.IPv6,
				u.Name, u.Addrs, u.Expires.Sub(p.clock.Now()))
			_ = m.do(ctx, func() error {
				m.onLease(ev)
				m.onSnooped(ctx, snoopedRequest(m, u))
				return nil
			})
		}
	case r < 65:
		p.logf("quarantine %s", hw)
		_, _ = m.Quarantine(ctx, adm, hw.String(), Action{Reason: "test"})
	case r < 69:
		p.logf("release %s", hw)
		_, _ = m.Release(ctx, adm, hw.String(), Action{})
	case r < 75:
		all := p.rng.IntN(2) == 0
		p.logf("approve %s (all with its URL: %v)", hw, all)
		_, _ = m.Approve(ctx, adm, hw.String(), Action{AllWithURL: all})
	case r < 77:
		p.logf("reject %s", hw)
		_, _ = m.Reject(ctx, adm, hw.String(), Action{})
	case r < 80:
		u := ""
		if p.rng.IntN(3) > 0 {
			u = propURLs[p.rng.IntN(len(propURLs))]
		}
		var ips []netip.Addr
		if v4, _ := p.addrs(p.mac()); u != "" && v4.IsValid() && p.rng.IntN(2) == 0 {
			ips = []netip.Addr{v4} // another device's, at times: refused
		}
		p.logf("bind %s %q %v", hw, u, ips)
		_, _ = m.Bind(ctx, adm, hw.String(), u, "", ips)
	case r < 85:
		o := store.OverrideRule{Direction: store.OverrideFromDevice, Verdict: store.OverrideAllow}
		if p.rng.IntN(2) == 0 {
			o.DNSName = propNames[1+p.rng.IntN(3)]
		} else {
			o.Direction, o.Verdict, o.Prefix = store.OverrideToDevice, store.OverrideDeny, netip.MustParsePrefix("198.51.100.64/26")
		}
		p.logf("override %s %+v", hw, o)
		_, _ = m.AddOverride(ctx, adm, hw.String(), o)
	case r < 87:
		p.logf("clear overrides %s", hw)
		_ = m.ClearOverrides(ctx, adm, hw.String())
	case r < 92: // a file changes on its server and is fetched again
		u := propURLs[p.rng.IntN(3)]
		p.ff.serve(p.rng, u)
		if p.rng.IntN(4) == 0 {
			p.ff.mu.Lock()
			p.ff.down[propURLs[3]] = !p.ff.down[propURLs[3]]
			if _, ok := p.ff.files[propURLs[3]]; !ok {
				p.ff.files[propURLs[3]] = p.ff.files[u]
			}
			p.ff.mu.Unlock()
		}
		p.logf("refresh all after a new %s", u)
		_, _ = m.Refresh(ctx, adm, "")
	case r < 95:
		c := Controller{URI: propCtl}
		if p.rng.IntN(2) == 0 {
			c = Controller{URI: propURLs[p.rng.IntN(3)], My: true}
		}
		if p.rng.IntN(3) > 0 {
			c.Prefixes = []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(p.rng.IntN(4) * 8)}), 29)}
		}
		p.logf("controller %+v", c)
		_, _ = m.SetController(ctx, adm, c)
	case r < 98:
		s := Settings{OnFailure: config.Baseline, LocalNetworks: propLocalNets[p.rng.IntN(2)], ForgetAfter: 30 * time.Minute}
		if p.rng.IntN(3) == 0 {
			s.LocalNetworks = nil // the LAN's prefixes (SetLAN)
		}
		if p.rng.IntN(2) == 0 {
			s.OnFailure = config.Block
		}
		if p.rng.IntN(2) == 0 {
			s.Controllers = map[string][]netip.Prefix{propCtl: {netip.MustParsePrefix("198.51.100.32/28")}}
		}
		p.logf("reload %s %v controllers %v", s.OnFailure, s.LocalNetworks, s.Controllers)
		_ = m.Reload(ctx, s)
	default: // the kernel refuses the next transaction
		p.logf("enforcer fails once")
		p.fe.mu.Lock()
		p.fe.failUpdates = 1
		p.fe.mu.Unlock()
	}
}

// errSettling: the manager is still at work (fetches, inputs not yet
// reconciled).
var errSettling = errors.New("settling")

// check waits until the manager has reconciled everything it was given,
// and then compares what the enforcer and the resolver hold with
// computeDesired's result.
func (p *propRun) check() error {
	m := p.h.m
	for tries := 0; ; tries++ {
		var diff error
		err := m.do(context.Background(), func() error {
			if len(m.st.fetching) > 0 || len(m.st.jobs) > 0 || !m.dirty.empty() || m.needFull || len(p.leases) > 0 || len(p.dns) > 0 {
				return errSettling
			}
			diff = p.compare(m.computeDesired())
			return nil
		})
		switch {
		case err == nil:
			return diff
		case !errors.Is(err, errSettling):
			return err
		case tries > 5000:
			return errors.New("the manager did not settle")
		}
		time.Sleep(200 * time.Microsecond)
	}
}

// compare lists what differs between ds and what the fake enforcer and
// resolver hold. Peer elements are compared by their absolute expiry, as
// the kernel expires them, and only while they have a second or more to
// live (the manager does not hand the kernel less).
func (p *propRun) compare(ds *desired) error {
	var diffs []string
	fe, now := p.fe, p.clock.Now()
	fe.mu.Lock()
	for _, mac := range union(sortedKeys(fe.devices), sortedKeys(ds.devices)) {
		got, ok := fe.devices[mac]
		want := ds.devices[mac]
		switch {
		case want == nil:
			diffs = append(diffs, fmt.Sprintf("device %s: enforcer holds %+v, want none", mac, got))
		case !ok:
			diffs = append(diffs, fmt.Sprintf("device %s: enforcer holds none, want %+v", mac, want.dev))
		case !reflect.DeepEqual(got, want.dev):
			diffs = append(diffs, fmt.Sprintf("device %s: enforcer holds %+v, want %+v", mac, got, want.dev))
		}
	}
	if g, w := sortedKeys(fe.policies), sortedKeys(ds.policies); !slices.Equal(g, w) {
		diffs = append(diffs, fmt.Sprintf("policies: enforcer holds %v, want %v", g, w))
	}
	live := func(els []enforcer.Element, at time.Time) []string {
		var out []string
		for _, e := range els {
			switch {
			case e.Timeout == 0:
				out = append(out, e.Prefix.String())
			case at.Add(e.Timeout).Sub(now) >= time.Second:
				out = append(out, fmt.Sprintf("%s@%d", e.Prefix, at.Add(e.Timeout).UnixNano()))
			}
		}
		slices.Sort(out)
		return out
	}
	for _, k := range union(sortedKeys(fe.peers), sortedKeys(ds.peers)) {
		got, want := live(fe.peers[k], fe.peerAt[k]), live(p.h.m.toElements(ds.peers[k]), now)
		if !slices.Equal(got, want) {
			diffs = append(diffs, fmt.Sprintf("peer %s: enforcer holds %v, want %v", k, got, want))
		}
	}
	fe.mu.Unlock()
	res := p.h.res
	res.mu.Lock()
	wantW := map[string]map[string]bool{}
	for id, names := range ds.names {
		for _, n := range names {
			if wantW[n] == nil {
				wantW[n] = map[string]bool{}
			}
			wantW[n][id] = true
		}
	}
	if !reflect.DeepEqual(res.watched, wantW) {
		diffs = append(diffs, fmt.Sprintf("watched names: resolver has %v, want %v", res.watched, wantW))
	}
	wantD := map[string][]string{}
	for mac, e := range ds.devices {
		if len(e.names) > 0 {
			wantD[mac] = e.names
		}
	}
	if !reflect.DeepEqual(res.devs, wantD) {
		diffs = append(diffs, fmt.Sprintf("snooped names: resolver has %v, want %v", res.devs, wantD))
	}
	res.mu.Unlock()
	if len(diffs) > 0 {
		return errors.New(strings.Join(diffs, "\n"))
	}
	return nil
}

func union(a, b []string) []string {
	out := slices.Concat(a, b)
	slices.Sort(out)
	return slices.Compact(out)
}

// propSteps is the length of a random sequence.
const propSteps = 20

// propSequences is how many random sequences TestIncrementalReconcileMatchesFull
// runs (fewer with -short).
func propSequences() int {
	if testing.Short() {
		return 200
	}
	return 2000
}

// After every step of random sequences of events — devices arriving,
// addresses learned and expiring (package neighbor), the LAN's prefixes
// moving,
// renewing with new addresses, changing URL, leaving; quarantines and
// releases, approvals, rejections, bindings; overrides added and cleared;
// files refreshed to other policies, servers failing; DNS answers adding,
// rotating and expiring addresses; controller mappings and settings
// reloaded; the enforcer refusing a transaction — what the enforcer and
// the resolver hold is what computeDesired derives from scratch.
func TestIncrementalReconcileMatchesFull(t *testing.T) {
	for seed := range uint64(propSequences()) {
		if err := runProperty(t, seed, propSteps, 0); err != nil {
			t.Fatal(err)
		}
	}
}

// The property test notices a change the reconcile was not told about:
// with marking of one kind of change switched off, some sequence ends with
// the enforcer or the resolver holding something else than they should.
func TestPropertyCatchesMissedMarks(t *testing.T) {
	for _, tc := range []struct {
		name string
		kind markKind
	}{{"overrides", markOverrides}, {"dns", markDNS}, {"settings", markAll}, {"devices", markDevice}} {
		t.Run(tc.name, func(t *testing.T) {
			for seed := range uint64(200) {
				if err := runProperty(t, seed, propSteps, tc.kind); err != nil {
					t.Logf("caught: %v", lastLine(err))
					return
				}
			}
			t.Fatalf("200 sequences with %s changes unmarked ended as if nothing was missed", tc.name)
		})
	}
}

func lastLine(err error) string {
	s := err.Error()
	if i := strings.LastIndex(s, "\n"); i >= 0 {
		return s[i+1:]
	}
	return s
}
