package manager

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/store"
)

// manualClock is a clock only the test moves.
type manualClock struct {
	mu sync.Mutex
	t  time.Time
}

func newManualClock() *manualClock { return &manualClock{t: time.Now()} }

func (c *manualClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *manualClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// scriptedFetcher fails or hangs the fetches of the URLs a test names and
// hands the others to a real fetcher; it counts the fetches by URL.
type scriptedFetcher struct {
	real Fetcher
	fail func(u string) error // non-nil: the fetch fails with it
	hang func(u string) bool  // true: the fetch waits for release (or the end)
	mu   sync.Mutex
	hits map[string]int
	// release ends the hanging fetches (they then fail).
	release chan struct{}
}

func newScriptedFetcher(real Fetcher) *scriptedFetcher {
	return &scriptedFetcher{real: real, hits: map[string]int{}, release: make(chan struct{}),
		fail: func(string) error { return nil }, hang: func(string) bool { return false }}
}

func (f *scriptedFetcher) Fetch(ctx context.Context, req mudfetch.Request) (*mudfetch.Result, error) {
	f.mu.Lock()
	f.hits[req.URL]++
	f.mu.Unlock()
	if f.hang(req.URL) {
		select {
		case <-f.release:
		case <-ctx.Done():
		}
		return nil, fmt.Errorf("GET %q: %w: the server never answered", req.URL, mudfetch.ErrTimeout)
	}
	if err := f.fail(req.URL); err != nil {
		return nil, err
	}
	return f.real.Fetch(ctx, req)
}

func (f *scriptedFetcher) count(u string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.hits[u]
}

func (f *scriptedFetcher) total(prefix string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	n := 0
	for u, c := range f.hits {
		if strings.Contains(u, prefix) {
			n += c
		}
	}
	return n
}

// tick runs the manager's timers now, on its clock, and waits for them.
func (h *harness) tick() {
	h.t.Helper()
	if err := h.m.do(bg, func() error { h.m.onTick(); return nil }); err != nil {
		h.t.Fatal(err)
	}
}

// device is the device's view, as the manager answers it.
func (h *harness) device(mac net.HardwareAddr) DeviceView {
	h.t.Helper()
	d, err := h.m.Device(bg, mac.String())
	if err != nil {
		h.t.Fatal(err)
	}
	return d
}

// leaseOn feeds a lease event for a device on a bridge port; a zero ip
// makes it an announcement (a DHCP request, no lease yet).
func (h *harness) leaseOn(mac net.HardwareAddr, ip netip.Addr, mudURL, port string) {
	h.t.Helper()
	ev := dhcpsnoop.Event{Kind: dhcpsnoop.KindAnnounced, Time: time.Now(), Family: 4, MAC: mac, MUDURL: mudURL, Port: port, Interface: "br-lan"}
	if ip.IsValid() {
		ev.Kind, ev.IPv4, ev.LeaseTime, ev.Expires = dhcpsnoop.KindBound, ip, time.Hour, time.Now().Add(time.Hour)
	}
	if err := h.m.HandleLease(bg, ev); err != nil {
		h.t.Fatal(err)
	}
}

// eventsOf lists the events of a kind (all devices when mac is nil).
func (h *harness) eventsOf(kind string, mac net.HardwareAddr) []store.Event {
	h.t.Helper()
	evs, err := h.m.Events(bg, 0, 0)
	if err != nil {
		h.t.Fatal(err)
	}
	var out []store.Event
	for _, e := range evs {
		if e.Kind == kind && (mac == nil || e.MAC == mac.String()) {
			out = append(out, e)
		}
	}
	return out
}

func (h *harness) metrics() string {
	rec := httptest.NewRecorder()
	h.m.MetricsHandler().ServeHTTP(rec, httptest.NewRequest("GET", "/metrics", nil))
	return rec.Body.String()
}

// waitFor polls cond (real time) until it holds.
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("still not: %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// junkFetcher fetches from srv, but URLs with /junk/ in them are not
// served (404), at once.
func junkFetcher(t *testing.T, srv *mudServer) *scriptedFetcher {
	sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
	sf.fail = func(u string) error {
		if strings.Contains(u, "/junk/") {
			return &mudfetch.HTTPStatusError{URL: u, Code: 404}
		}
		return nil
	}
	return sf
}

func serverDown(u string) error {
	return fmt.Errorf("GET %q: %w: dial tcp 203.0.113.11:443: connect: connection refused", u, mudfetch.ErrFetch)
}

// A device whose file cannot be used is unrestricted under the default
// on_failure (baseline) — and that is impossible to miss: the API says
// "unenforced" with the reason, an event says when it became so and when
// it stopped, the gauge counts it. Reloaded to "block", the same device is
// blocked (and no longer counted); its file arriving ends it.
func TestUnenforcedIsVisible(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
	var down sync.Mutex
	isDown := true
	sf.fail = func(u string) error {
		down.Lock()
		defer down.Unlock()
		if isDown {
			return serverDown(u)
		}
		return nil
	}
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: sf, anchors: srv.ca.Pool()})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	h.waitState(mac(1), store.StateFailed)

	d := h.device(mac(1))
	if d.Enforcement != store.EnforcementUnenforced || !strings.Contains(d.UnenforcedReason, "MUD server unreachable") ||
		!strings.Contains(d.UnenforcedReason, "connection refused") {
		t.Errorf("failed device: enforcement %q, reason %q", d.Enforcement, d.UnenforcedReason)
	}
	if _, ok := fe.device(mac(1)); ok {
		t.Error("baseline: the unenforced device is in the enforcer")
	}
	if evs := h.eventsOf("unenforced", mac(1)); len(evs) != 1 || !strings.Contains(evs[0].Message, "MUD server unreachable") ||
		!strings.Contains(evs[0].Message, "unrestricted") {
		t.Errorf("unenforced events: %+v", evs)
	}
	if m := h.metrics(); !strings.Contains(m, "\nmud_devices_unenforced 1\n") {
		t.Errorf("metrics lack mud_devices_unenforced 1:\n%s", m)
	}
	if st, err := h.m.Status(bg); err != nil || st.DevicesUnenforced != 1 {
		t.Errorf("status: %+v %v", st, err)
	}

	if err := h.m.Reload(bg, Settings{OnFailure: config.Block}); err != nil {
		t.Fatal(err)
	}
	d = h.device(mac(1))
	if d.Enforcement != store.EnforcementBlocked || d.UnenforcedReason == "" {
		t.Errorf("after reload to block: enforcement %q, reason %q", d.Enforcement, d.UnenforcedReason)
	}
	if ed, ok := fe.device(mac(1)); !ok || ed.Mode != enforcer.Block {
		t.Errorf("after reload to block: enforcer device %+v (present %v)", ed, ok)
	}
	if evs := h.eventsOf("unenforced-ended", mac(1)); len(evs) != 1 || !strings.Contains(evs[0].Message, "blocked") {
		t.Errorf("unenforced-ended events: %+v", evs)
	}
	if m := h.metrics(); !strings.Contains(m, "\nmud_devices_unenforced 0\n") {
		t.Errorf("blocked device still counted as unenforced:\n%s", m)
	}

	down.Lock()
	isDown = false
	down.Unlock()
	if _, err := h.m.Refresh(bg, adm, mac(1).String()); err != nil {
		t.Fatal(err)
	}
	h.waitState(mac(1), store.StateEnforced)
	if d := h.device(mac(1)); d.Enforcement != store.EnforcementEnforced || d.UnenforcedReason != "" {
		t.Errorf("enforced device: enforcement %q, reason %q", d.Enforcement, d.UnenforcedReason)
	}
}

// on_failure "block" holds every device whose file cannot be used: while
// it is fetched, when the fetch failed, pending approval, with an invalid
// URL, and after a restart that finds the cached file's signer expired or
// no trust anchor left.
func TestBlockCoversEveryUnusableState(t *testing.T) {
	block := Settings{OnFailure: config.Block}
	blocked := func(t *testing.T, h *harness, fe *fakeEnforcer, m net.HardwareAddr, state store.State) {
		t.Helper()
		h.waitState(m, state)
		if err := h.m.Sync(bg); err != nil {
			t.Fatal(err)
		}
		d := h.device(m)
		if ed, ok := fe.device(m); !ok || ed.Mode != enforcer.Block || d.Enforcement != store.EnforcementBlocked || d.UnenforcedReason == "" {
			t.Errorf("%s: enforcer device %+v (present %v), enforcement %q (%s)", state, ed, ok, d.Enforcement, d.UnenforcedReason)
		}
	}
	t.Run("fetching, failed, pending, invalid URL", func(t *testing.T) {
		srv := newMUDServer(t)
		good, bad := srv.url("mud.example", "/cam.json"), srv.url("mud.example", "/bad.json")
		srv.publish("/cam.json", mudFile(good, ""), false)
		srv.publish("/bad.json", mudFile(bad, ""), true)
		slow, gone := srv.url("mud.example", "/slow.json"), srv.url("mud.example", "/gone.json")
		sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
		sf.hang = func(u string) bool { return u == slow }
		sf.fail = func(u string) error {
			if u == gone {
				return serverDown(u)
			}
			return nil
		}
		t.Cleanup(func() { close(sf.release) })
		fe := newFakeEnforcer()
		h := startManager(t, harnessOpts{enf: fe, fetcher: sf, anchors: srv.ca.Pool(), settings: block})
		h.lease(dhcpsnoop.KindBound, mac(1), ip1, slow)
		blocked(t, h, fe, mac(1), store.StateFetching)
		h.lease(dhcpsnoop.KindBound, mac(2), ip2, gone)
		blocked(t, h, fe, mac(2), store.StateFailed)
		h.lease(dhcpsnoop.KindBound, mac(3), ip3, bad)
		blocked(t, h, fe, mac(3), store.StatePendingApproval)
		inv := dhcpsnoop.Event{Kind: dhcpsnoop.KindInvalidURL, Time: time.Now(), Family: 4, MAC: mac(4),
			Reason: "malformed MUD URL: a fragment is not allowed", Raw: "https://mud.example/cam.json#1"}
		if err := h.m.HandleLease(bg, inv); err != nil {
			t.Fatal(err)
		}
		h.lease(dhcpsnoop.KindBound, mac(4), netip.MustParseAddr("192.0.2.14"), "")
		blocked(t, h, fe, mac(4), store.StateFailed)
		if d := h.device(mac(4)); !strings.Contains(d.UnenforcedReason, "invalid") || !strings.Contains(d.InvalidMUDURL, "#1") {
			t.Errorf("invalid URL device: %+v", d.Device)
		}
	})
	for _, tc := range []struct {
		name    string
		anchors func(srv *mudServer) *x509.CertPool
		later   time.Duration
		reason  string
	}{
		{"restart with the signer expired", func(srv *mudServer) *x509.CertPool { return srv.ca.Pool() }, 2 * 365 * 24 * time.Hour, "expired"},
		{"restart with no trust anchor", func(*mudServer) *x509.CertPool { return nil }, 0, "trust anchor"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, u := camServer(t, "", false)
			dir := t.TempDir()
			clock := newManualClock()
			h := startManager(t, harnessOpts{dir: dir, enf: newFakeEnforcer(), fetcher: srv.fetcher(t, srv.ca.Pool()),
				anchors: srv.ca.Pool(), settings: block, now: clock.Now})
			h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
			h.waitState(mac(1), store.StateEnforced)
			h.stop()
			srv.setDown(true)
			clock.Advance(tc.later)
			fe := newFakeEnforcer()
			h2 := startManager(t, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(t, tc.anchors(srv)),
				anchors: tc.anchors(srv), settings: block, now: clock.Now})
			blocked(t, h2, fe, mac(1), store.StatePendingApproval)
			if d := h2.device(mac(1)); !strings.Contains(d.UnenforcedReason, tc.reason) {
				t.Errorf("reason %q lacks %q", d.UnenforcedReason, tc.reason)
			}
			if fe.applies != 1 {
				t.Errorf("%d full applies at start, want 1 (the device never leaves the kernel)", fe.applies)
			}
		})
	}
}

// A failed fetch is retried by itself: after 5 s, then 10, 20, ... up to
// 5 min (less up to a quarter at random), each attempt recorded — in the
// device's fetch status and as an event. The first success enforces.
func TestRetryBackoff(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
	failures := 9
	var mu sync.Mutex
	sf.fail = func(u string) error {
		mu.Lock()
		defer mu.Unlock()
		if failures > 0 {
			failures--
			return serverDown(u)
		}
		return nil
	}
	clock := newManualClock()
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: sf, anchors: srv.ca.Pool(), now: clock.Now,
		settings: Settings{RetryInitial: 5 * time.Second, RetryMax: 5 * time.Minute}, rand: func() float64 { return 0 }})
	h.lease(dhcpsnoop.KindBound, mac(1), ip1, u)
	want := []time.Duration{5 * time.Second, 10 * time.Second, 20 * time.Second, 40 * time.Second, 80 * time.Second,
		160 * time.Second, 300 * time.Second, 300 * time.Second, 300 * time.Second}
	for i, delay := range want {
		attempt := i + 1
		waitFor(t, fmt.Sprintf("attempt %d", attempt), func() bool { return sf.count(u) == attempt })
		waitFor(t, fmt.Sprintf("attempt %d recorded", attempt), func() bool {
			f := h.device(mac(1)).Fetch
			return f != nil && f.Failures == attempt && !f.InFlight
		})
		d := h.device(mac(1))
		if d.State != store.StateFailed || d.Enforcement != store.EnforcementUnenforced || len(d.Fetch.Attempts) != min(attempt, maxAttempts) {
			t.Fatalf("after attempt %d: %s/%s, fetch %+v", attempt, d.State, d.Enforcement, d.Fetch)
		}
		if got := d.Fetch.NextAttempt.Sub(clock.Now()); got != delay {
			t.Errorf("after attempt %d: next in %s, want %s", attempt, got, delay)
		}
		clock.Advance(delay - time.Millisecond)
		h.tick()
		if f := h.device(mac(1)).Fetch; f.InFlight || f.Queued {
			t.Fatalf("attempt %d started a millisecond early", attempt+1)
		}
		clock.Advance(time.Millisecond)
		h.tick()
	}
	h.waitState(mac(1), store.StateEnforced)
	if n := len(h.eventsOf("fetch-failed", mac(1))); n != len(want) {
		t.Errorf("%d fetch-failed events, want one per failed attempt (%d)", n, len(want))
	}
	d := h.device(mac(1))
	if d.Fetch == nil || d.Fetch.Failures != 0 || !d.Fetch.Attempts[len(d.Fetch.Attempts)-1].OK {
		t.Errorf("after success: fetch %+v", d.Fetch)
	}
}

// The retry delay: doubled per failure from the initial one up to the
// maximum, and never shorter than three quarters of that nor longer.
func TestBackoffBounds(t *testing.T) {
	for n, want := range map[int]time.Duration{1: 5 * time.Second, 2: 10 * time.Second, 3: 20 * time.Second,
		7: 5 * time.Minute, 60: 5 * time.Minute, 1000: 5 * time.Minute} {
		if got := backoff(n, 5*time.Second, 5*time.Minute, 0); got != want {
			t.Errorf("backoff(%d, no jitter) = %s, want %s", n, got, want)
		}
		if got := backoff(n, 5*time.Second, 5*time.Minute, 0.999999); got <= want*3/4 || got > want {
			t.Errorf("backoff(%d, most jitter) = %s, outside (%s, %s]", n, got, want*3/4, want)
		}
	}
}

// A port flooding the manager with devices whose MUD servers hang holds
// at most half the fetch slots: a device on another port is fetched and
// enforced while all of the flood's fetches still hang.
func TestFloodedPortLeavesSlots(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
	sf.hang = func(u string) bool { return strings.Contains(u, "/slow/") }
	t.Cleanup(func() { close(sf.release) })
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: sf, anchors: srv.ca.Pool()})
	for i := range 160 {
		h.leaseOn(floodMAC(i), netip.Addr{}, srv.url("mud.example", fmt.Sprintf("/slow/s%d.json", i)), "lan1")
	}
	waitFor(t, "the flood's fetches to hang", func() bool { return sf.total("/slow/") == DefaultMaxFetches/2 })
	h.leaseOn(mac(1), ip1, u, "lan2")
	h.waitState(mac(1), store.StateEnforced)
	if n := sf.total("/slow/"); n != DefaultMaxFetches/2 {
		t.Errorf("%d of the flood's fetches started, want %d (its port's share of the slots)", n, DefaultMaxFetches/2)
	}
	if d := h.device(floodMAC(159)); d.Fetch == nil || !d.Fetch.Queued || !strings.Contains(d.Fetch.Waiting, "port lan1") {
		t.Errorf("a waiting flood device: %+v", d.Fetch)
	}
	if evs := h.eventsOf("fetch-flood", nil); len(evs) != 1 || !strings.Contains(evs[0].Message, "port lan1") {
		t.Errorf("fetch-flood events (one, naming the port, rate-limited): %+v", evs)
	}
}

// A port that spends its fetch budget (distinct URLs that fail at once)
// waits for its window, and the flood event names it; the budget of the
// others — and of the gateway — is left for them. Within a port, one
// device announcing URL after URL spends only its own budget.
func TestFloodedPortBudget(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := junkFetcher(t, srv)
	fe := newFakeEnforcer()
	h := startManager(t, harnessOpts{enf: fe, fetcher: sf, anchors: srv.ca.Pool(), tweak: func(c *Config) {
		c.FetchBudget, c.FetchBudgetPerPort, c.FetchBudgetPerDevice = 40, 20, 3
	}})
	for i := range 100 {
		h.leaseOn(floodMAC(i), netip.Addr{}, srv.url("mud.example", fmt.Sprintf("/junk/c%d.json", i)), "lan1")
	}
	waitFor(t, "lan1's budget spent", func() bool { return sf.total("/junk/") == 20 })
	if err := h.m.Sync(bg); err != nil {
		t.Fatal(err)
	}
	h.leaseOn(mac(1), ip1, u, "lan2")
	h.waitState(mac(1), store.StateEnforced)
	if n := sf.total("/junk/"); n != 20 {
		t.Errorf("lan1 started %d fetches, its budget is 20", n)
	}
	if evs := h.eventsOf("fetch-flood", nil); len(evs) != 1 || !strings.Contains(evs[0].Message, "port lan1") {
		t.Errorf("fetch-flood events: %+v", evs)
	}
	if d := h.device(floodMAC(99)); d.State != store.StateFetching || d.Fetch == nil || !strings.Contains(d.Fetch.Waiting, "port lan1 started its whole budget") {
		t.Errorf("a flood device beyond the budget: %s, %+v", d.State, d.Fetch)
	}
	// An administrator's refresh is not held to the port's budget.
	if _, err := h.m.Refresh(bg, adm, floodMAC(98).String()); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the refreshed device's fetch", func() bool { return sf.total("/junk/") == 21 })

	// One device on lan3 changing its URL again and again: its fourth
	// URL waits, another device on lan3, arriving after it, is fetched.
	u2 := srv.url("mud.example", "/cam2.json")
	srv.publish("/cam2.json", mudFile(u2, ""), false)
	for i := range 4 {
		h.leaseOn(mac(9), netip.Addr{}, srv.url("mud.example", fmt.Sprintf("/junk/hop%d.json", i)), "lan3")
		if i < 3 {
			waitFor(t, "the hop's fetch", func() bool { return sf.total("/junk/hop") == i+1 })
		}
	}
	h.leaseOn(mac(2), netip.Addr{}, u2, "lan3")
	h.waitState(mac(2), store.StateEnforced)
	if n := sf.total("/junk/hop"); n != 3 {
		t.Errorf("the hopping device started %d fetches, its budget is 3", n)
	}
	if d := h.device(mac(9)); d.Fetch == nil || !strings.Contains(d.Fetch.Waiting, "device "+mac(9).String()) {
		t.Errorf("the hopping device: %+v", d.Fetch)
	}
}

// Within a port, a device that holds a lease is fetched before those that
// only asked for one: a made-up MAC rarely gets a lease.
func TestLeasedDevicesFirst(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := newScriptedFetcher(srv.fetcher(t, srv.ca.Pool()))
	sf.hang = func(u string) bool { return strings.Contains(u, "/slow/") }
	t.Cleanup(func() { close(sf.release) })
	h := startManager(t, harnessOpts{enf: newFakeEnforcer(), fetcher: sf, anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.MaxFetches, c.MaxFetchesPerPort = 2, 1 }})
	h.leaseOn(floodMAC(0), netip.Addr{}, srv.url("mud.example", "/slow/first.json"), "lan1")
	waitFor(t, "the slot busy", func() bool { return sf.total("/slow/") == 1 })
	for i := 1; i < 50; i++ {
		h.leaseOn(floodMAC(i), netip.Addr{}, srv.url("mud.example", fmt.Sprintf("/junk/c%d.json", i)), "lan1")
	}
	h.leaseOn(mac(1), ip1, u, "lan1")
	d := h.device(mac(1))
	if d.Fetch == nil || !strings.HasPrefix(d.Fetch.Waiting, "port lan1 has all its 1 fetch slots busy") {
		t.Errorf("the leased device waits: %+v", d.Fetch)
	}
	// Its turn is next: before the 49 that only asked.
	var leased []string
	if err := h.m.do(bg, func() error { leased = slices.Clone(h.m.sched.queues["lan1"].leased); return nil }); err != nil {
		t.Fatal(err)
	}
	if len(leased) != 1 || leased[0] != u {
		t.Errorf("lan1's leased line: %v", leased)
	}
}

// Devices that never got past DHCP — never enforced, no address — are
// forgotten once not seen for forget_after; one event says how many, by
// port. Enforced devices, and devices with a lease, stay.
func TestForgetNeverEnforced(t *testing.T) {
	srv, u := camServer(t, "", false)
	sf := junkFetcher(t, srv)
	clock := newManualClock()
	h := startManager(t, harnessOpts{enf: newFakeEnforcer(), fetcher: sf, anchors: srv.ca.Pool(), now: clock.Now,
		settings: Settings{ForgetAfter: 10 * time.Minute}})
	for i := range 30 {
		h.leaseOn(floodMAC(i), netip.Addr{}, srv.url("mud.example", fmt.Sprintf("/junk/c%d.json", i)), "lan1")
	}
	h.leaseOn(mac(1), ip1, u, "lan2")
	h.waitState(mac(1), store.StateEnforced)
	h.leaseOn(mac(2), ip2, srv.url("mud.example", "/junk/leased.json"), "lan2") // never enforced, but leased
	h.lease(dhcpsnoop.KindReleased, mac(1), netip.Addr{}, "")                   // enforced once: stays
	clock.Advance(time.Second)                                                  // the removal grace
	h.tick()
	h.waitState(mac(1), store.StateRemoved)
	clock.Advance(9 * time.Minute)
	h.leaseOn(floodMAC(0), netip.Addr{}, srv.url("mud.example", "/junk/c0.json"), "lan1") // seen again
	clock.Advance(2 * time.Minute)
	h.tick()
	ds, err := h.m.Devices(bg)
	if err != nil {
		t.Fatal(err)
	}
	left := map[string]bool{}
	for _, d := range ds {
		left[d.MAC] = true
	}
	for _, keep := range []net.HardwareAddr{mac(1), mac(2), floodMAC(0)} {
		if !left[keep.String()] {
			t.Errorf("%s was forgotten", keep)
		}
	}
	if len(ds) != 3 {
		t.Errorf("%d devices left, want 3", len(ds))
	}
	evs := h.eventsOf("forgotten", nil)
	if len(evs) != 1 || !strings.Contains(evs[0].Message, "forgot 29 devices") || !strings.Contains(evs[0].Message, "port lan1: 29") {
		t.Errorf("forgotten events: %+v", evs)
	}
	if err := h.st.View(func(tx *store.Tx) error {
		_, err := tx.Devices().Get(floodMAC(5).String())
		return err
	}); !errors.Is(err, store.ErrNotFound) {
		t.Errorf("forgotten device still in the store: %v", err)
	}
}

// floodMAC is the i-th made-up MAC of a flood.
func floodMAC(i int) net.HardwareAddr { return net.HardwareAddr{2, 0xf1, 0, 0, byte(i >> 8), byte(i)} }
