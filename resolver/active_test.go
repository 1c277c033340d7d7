package resolver

// Active resolution against an in-process DNS server (RFC 9726 §3, BCP 241):
// names are resolved through the configured resolver, all A and AAAA records
// are kept, CNAMEs are followed, refresh is TTL-driven and rate-limited, and
// nothing is ever reverse-resolved.

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// fastConfig makes TTLs of seconds behave like tens of milliseconds:
// MaxTTL clamps every answer down, so refreshes come quickly.
func fastConfig(server string) Config {
	return Config{
		Server:           server,
		Timeout:          150 * time.Millisecond,
		MinTTL:           50 * time.Millisecond,
		MaxTTL:           200 * time.Millisecond,
		NegativeTTL:      200 * time.Millisecond,
		Grace:            400 * time.Millisecond,
		RetryMin:         20 * time.Millisecond,
		RetryMax:         80 * time.Millisecond,
		QueriesPerSecond: 1000,
		Burst:            100,
	}
}

// start runs r until the test ends.
func start(t *testing.T, r *Resolver) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- r.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

func newStarted(t *testing.T, cfg Config) *Resolver {
	t.Helper()
	r, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	start(t, r)
	return r
}

// next returns the next update, failing the test after timeout.
func next(t *testing.T, r *Resolver, timeout time.Duration) Update {
	t.Helper()
	select {
	case u := <-r.Updates():
		return u
	case <-time.After(timeout):
		t.Fatalf("no update within %v", timeout)
	}
	return Update{}
}

// nextFor skips updates for other names.
func nextFor(t *testing.T, r *Resolver, name string, timeout time.Duration) Update {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for {
		u := next(t, r, time.Until(deadline))
		if u.Name == name {
			return u
		}
	}
}

func TestRotationFollowed(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, n int) *dns.Msg {
		return answer(q,
			rrA(q.Name, 1, fmt.Sprintf("198.51.100.%d", 10+n%50)),
			rrA(q.Name, 1, fmt.Sprintf("198.51.100.%d", 100+n%50)),
			rrAAAA(q.Name, 1, fmt.Sprintf("2001:db8:100::%x", 10+n%50)))
	})
	r := newStarted(t, fastConfig(srv.addr))
	name, err := r.Watch("Rotate.Example.COM.", "dev1")
	if err != nil || name != "rotate.example.com" {
		t.Fatalf("Watch = %q, %v", name, err)
	}
	for i := range 3 {
		u := next(t, r, 2*time.Second)
		got := time.Now()
		want := addrs(
			fmt.Sprintf("198.51.100.%d", 10+i), fmt.Sprintf("198.51.100.%d", 100+i),
			fmt.Sprintf("2001:db8:100::%x", 10+i))
		if u.Err != nil || u.Source != Active || u.Key() != "dns:rotate.example.com" {
			t.Fatalf("update %d = %+v", i, u)
		}
		if !slices.Equal(u.Addrs, want) {
			t.Fatalf("rotation %d: addrs %v, want %v (every A and AAAA kept)", i, u.Addrs, want)
		}
		if u.TTL != time.Second {
			t.Errorf("TTL %v, want the answer's 1s", u.TTL)
		}
		if life := u.Expires.Sub(got); life < 50*time.Millisecond || life > 200*time.Millisecond {
			t.Errorf("element lifetime left %v on receipt, want at most MaxTTL (200ms)", life)
		}
	}
}

func TestTTLClamps(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch q.Name {
		case "long.example.com.":
			return answer(q, rrA(q.Name, 86400, "198.51.100.1"))
		default:
			return answer(q, rrA(q.Name, 1, "198.51.100.2"))
		}
	})
	cfg := fastConfig(srv.addr)
	cfg.MinTTL, cfg.MaxTTL = 3*time.Second, 5*time.Second
	r := newStarted(t, cfg)
	for _, tc := range []struct {
		name string
		ttl  time.Duration
		life time.Duration
	}{
		{"long.example.com", 86400 * time.Second, 5 * time.Second},
		{"short.example.com", time.Second, 3 * time.Second},
	} {
		before := time.Now()
		if _, err := r.Watch(tc.name, "dev"); err != nil {
			t.Fatal(err)
		}
		u := nextFor(t, r, tc.name, 2*time.Second)
		if u.TTL != tc.ttl {
			t.Errorf("%s: TTL %v, want %v", tc.name, u.TTL, tc.ttl)
		}
		if life := u.Expires.Sub(before); life < tc.life || life > tc.life+500*time.Millisecond {
			t.Errorf("%s: lifetime %v, want clamped to %v", tc.name, life, tc.life)
		}
	}
}

func TestCNAMEChains(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch q.Name {
		case "www.vendor.test.": // full chain in one answer
			return answer(q,
				rrCNAME("www.vendor.test", 300, "a.cdn.test"),
				rrCNAME("a.cdn.test", 20, "b.cdn.test"),
				rrA("b.cdn.test", 60, "198.51.100.7"),
				rrA("b.cdn.test", 60, "198.51.100.8"),
				rrAAAA("b.cdn.test", 60, "2001:db8:100::7"))
		case "partial.vendor.test.": // resolver stops at the CNAME
			return answer(q, rrCNAME("partial.vendor.test", 40, "edge.cdn.test"))
		case "edge.cdn.test.":
			return answer(q, rrA("edge.cdn.test", 50, "198.51.100.9"))
		case "loop1.vendor.test.":
			return answer(q, rrCNAME("loop1.vendor.test", 60, "loop2.vendor.test"), rrCNAME("loop2.vendor.test", 60, "loop1.vendor.test"))
		case "hop1.vendor.test.": // loop across queries
			return answer(q, rrCNAME("hop1.vendor.test", 60, "hop2.vendor.test"))
		case "hop2.vendor.test.":
			return answer(q, rrCNAME("hop2.vendor.test", 60, "hop1.vendor.test"))
		case "deep0.vendor.test.":
			var rrs []dns.RR
			for i := range 12 {
				rrs = append(rrs, rrCNAME(fmt.Sprintf("deep%d.vendor.test", i), 60, fmt.Sprintf("deep%d.vendor.test", i+1)))
			}
			return answer(q, append(rrs, rrA("deep12.vendor.test", 60, "198.51.100.12"))...)
		}
		return rcode(dns.RcodeNameError)
	})
	r := newStarted(t, fastConfig(srv.addr))
	for _, n := range []string{"www.vendor.test", "partial.vendor.test", "loop1.vendor.test", "hop1.vendor.test", "deep0.vendor.test"} {
		if _, err := r.Watch(n, "dev"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]Update{}
	for len(got) < 5 {
		u := next(t, r, 2*time.Second)
		if _, ok := got[u.Name]; !ok {
			got[u.Name] = u
		}
	}
	if u := got["www.vendor.test"]; u.Err != nil || !slices.Equal(u.Addrs, addrs("198.51.100.7", "198.51.100.8", "2001:db8:100::7")) || u.TTL != 20*time.Second {
		t.Errorf("www: %+v; want addrs at the chain's end with its minimum TTL 20s", u)
	}
	if u := got["partial.vendor.test"]; u.Err != nil || !slices.Equal(u.Addrs, addrs("198.51.100.9")) || u.TTL != 40*time.Second {
		t.Errorf("partial: %+v; want the target re-queried, TTL 40s", u)
	}
	for _, n := range []string{"loop1.vendor.test", "hop1.vendor.test"} {
		if u := got[n]; !errors.Is(u.Err, ErrCNAMELoop) || len(u.Addrs) != 0 {
			t.Errorf("%s: %+v; want ErrCNAMELoop", n, u)
		}
	}
	if u := got["deep0.vendor.test"]; !errors.Is(u.Err, ErrCNAMEDepth) {
		t.Errorf("deep: %+v; want ErrCNAMEDepth", u)
	}
}

func TestNegativeAnswers(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		switch q.Name {
		case "nodata.vendor.test.":
			m := new(dns.Msg)
			m.Ns = []dns.RR{rrSOA("vendor.test", 60, 30)}
			return m
		case "v6only.vendor.test.":
			return answer(q, rrAAAA(q.Name, 60, "2001:db8:100::6"))
		}
		m := rcode(dns.RcodeNameError)
		m.Ns = []dns.RR{rrSOA("vendor.test", 60, 30)}
		return m
	})
	r := newStarted(t, fastConfig(srv.addr))
	for _, n := range []string{"gone.vendor.test", "nodata.vendor.test", "v6only.vendor.test"} {
		if _, err := r.Watch(n, "dev"); err != nil {
			t.Fatal(err)
		}
	}
	got := map[string]Update{}
	for len(got) < 3 {
		u := next(t, r, 2*time.Second)
		got[u.Name] = u
	}
	if u := got["gone.vendor.test"]; !errors.Is(u.Err, ErrNXDomain) || len(u.Addrs) != 0 || u.Stale {
		t.Errorf("NXDOMAIN: %+v", u)
	}
	if u := got["nodata.vendor.test"]; !errors.Is(u.Err, ErrNoAddresses) || len(u.Addrs) != 0 {
		t.Errorf("NODATA: %+v", u)
	}
	if u := got["v6only.vendor.test"]; u.Err != nil || !slices.Equal(u.Addrs, addrs("2001:db8:100::6")) {
		t.Errorf("AAAA only: %+v", u)
	}
	// Negative answers are reported once, not at every refresh.
	deadline := time.After(500 * time.Millisecond)
	for {
		select {
		case u := <-r.Updates():
			if u.Err != nil {
				t.Fatalf("negative answer reported again: %+v", u)
			}
		case <-deadline:
			return
		}
	}
}

// TestFailureGraceExpiry: SERVFAIL, then silence; the last answers stay for
// the grace period (a stale update says so), then are withdrawn, and come
// back when the server does.
func TestFailureGraceExpiry(t *testing.T) {
	for _, mode := range []string{"servfail", "silent"} {
		t.Run(mode, func(t *testing.T) {
			srv := newTestServer(t)
			ok := func(q dns.Question, _ bool, _ int) *dns.Msg {
				return answer(q, rrA(q.Name, 1, "198.51.100.20"), rrAAAA(q.Name, 1, "2001:db8:100::20"))
			}
			srv.setHandler(ok)
			r := newStarted(t, fastConfig(srv.addr))
			if _, err := r.Watch("flaky.vendor.test", "dev"); err != nil {
				t.Fatal(err)
			}
			if u := next(t, r, 2*time.Second); u.Err != nil || len(u.Addrs) != 2 {
				t.Fatalf("first answer: %+v", u)
			}
			failAt := time.Now()
			srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
				if mode == "silent" {
					return nil
				}
				return rcode(dns.RcodeServerFailure)
			})
			u := next(t, r, 2*time.Second)
			for u.Err == nil { // refreshes that raced the switch
				u = next(t, r, 2*time.Second)
			}
			if !u.Stale || !errors.Is(u.Err, ErrServer) || !slices.Equal(u.Addrs, addrs("198.51.100.20", "2001:db8:100::20")) {
				t.Fatalf("failure update: %+v; want the last answers, stale, ErrServer", u)
			}
			staleAt := time.Now()
			if until := u.Expires.Sub(staleAt); until < 250*time.Millisecond || until > 400*time.Millisecond {
				t.Errorf("stale answers kept for %v, want the 400ms grace", until)
			}
			u = next(t, r, 2*time.Second)
			if !errors.Is(u.Err, ErrExpired) || len(u.Addrs) != 0 {
				t.Fatalf("after grace: %+v; want ErrExpired without addresses", u)
			}
			if since := time.Since(staleAt); since < 300*time.Millisecond {
				t.Errorf("expired %v after the stale update, before the grace period ended", since)
			}
			t.Logf("failure noticed %v after the switch", staleAt.Sub(failAt))
			srv.setHandler(ok)
			if u := next(t, r, 2*time.Second); u.Err != nil || u.Stale || len(u.Addrs) != 2 {
				t.Fatalf("after recovery: %+v", u)
			}
		})
	}
}

func TestTruncationRetriedOverTCP(t *testing.T) {
	srv := newTestServer(t)
	var big []dns.RR
	for i := range 60 {
		big = append(big, rrAAAA("big.vendor.test", 300, fmt.Sprintf("2001:db8:100::%x", 0x100+i)))
	}
	srv.setHandler(func(q dns.Question, tcp bool, _ int) *dns.Msg {
		if q.Qtype != dns.TypeAAAA {
			return answer(q, rrA(q.Name, 300, "198.51.100.30"))
		}
		if !tcp {
			m := answer(q, big[:2]...)
			m.Truncated = true
			return m
		}
		return answer(q, big...)
	})
	r := newStarted(t, fastConfig(srv.addr))
	if _, err := r.Watch("big.vendor.test", "dev"); err != nil {
		t.Fatal(err)
	}
	u := next(t, r, 2*time.Second)
	if u.Err != nil || len(u.Addrs) != 61 {
		t.Fatalf("got %d addresses (%v), want 61 after the TCP retry", len(u.Addrs), u.Err)
	}
	var tcp bool
	for _, q := range srv.seen() {
		tcp = tcp || (q.tcp && q.qtype == dns.TypeAAAA)
	}
	if !tcp {
		t.Error("no TCP query after the truncated UDP answer")
	}
}

func TestSharedNameResolvedOnce(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		return answer(q, rrA(q.Name, 1, "198.51.100.40"))
	})
	cfg := fastConfig(srv.addr)
	cfg.MinTTL, cfg.MaxTTL = 100*time.Millisecond, 100*time.Millisecond
	r := newStarted(t, cfg)
	for _, dev := range []string{"dev1", "dev2", "dev3"} {
		if _, err := r.Watch("shared.vendor.test", dev); err != nil {
			t.Fatal(err)
		}
	}
	time.Sleep(450 * time.Millisecond)
	var a int
	for _, q := range srv.seen() {
		if q.qtype == dns.TypeA {
			a++
		}
	}
	// 450ms / (70..80ms refresh) ≈ 6-7 resolutions; three independent
	// watchers would triple that.
	if a < 2 || a > 9 {
		t.Errorf("%d A queries in 450ms, want one resolution per refresh for all owners", a)
	}
	r.Unwatch("shared.vendor.test", "dev1")
	r.Unwatch("shared.vendor.test", "dev2")
	if w := r.Watched(); !slices.Equal(w, []string{"shared.vendor.test"}) {
		t.Fatalf("Watched = %v with one owner left", w)
	}
	r.Unwatch("shared.vendor.test", "dev3")
	if w := r.Watched(); len(w) != 0 {
		t.Fatalf("Watched = %v after the last Unwatch", w)
	}
	time.Sleep(50 * time.Millisecond) // an in-flight refresh may finish
	n := len(srv.seen())
	time.Sleep(250 * time.Millisecond)
	if m := len(srv.seen()); m != n {
		t.Errorf("%d queries after the last owner left", m-n)
	}
}

func TestRateLimit(t *testing.T) {
	srv := newTestServer(t)
	srv.setHandler(func(q dns.Question, _ bool, _ int) *dns.Msg {
		return answer(q, rrA(q.Name, 3600, "198.51.100.50"))
	})
	cfg := fastConfig(srv.addr)
	cfg.QueriesPerSecond, cfg.Burst = 40, 2
	cfg.MinTTL, cfg.MaxTTL = time.Hour, time.Hour
	r := newStarted(t, cfg)
	for i := range 6 {
		if _, err := r.Watch(fmt.Sprintf("n%d.vendor.test", i), "dev"); err != nil {
			t.Fatal(err)
		}
	}
	for range 6 {
		next(t, r, 2*time.Second)
	}
	q := srv.seen()
	if len(q) != 12 {
		t.Fatalf("%d queries, want 12 (A and AAAA for 6 names)", len(q))
	}
	// 12 queries at 40/s with a burst of 2 take at least 10/40 s.
	if span := q[len(q)-1].at.Sub(q[0].at); span < 230*time.Millisecond {
		t.Errorf("12 queries in %v: the 40 qps limit was not honoured", span)
	}
	// Query i (after the burst of 2) comes no earlier than (i-2)/40 s after
	// the first; late timers may bunch queries, never advance them.
	for i := 2; i < len(q); i++ {
		if d, want := q[i].at.Sub(q[0].at), time.Duration(i-2)*25*time.Millisecond-10*time.Millisecond; d < want {
			t.Errorf("query %d %v after the first, want at least %v at 40/s", i, d, want)
		}
	}
}

func TestWatchRejectsHostileNames(t *testing.T) {
	r, err := New(Config{Server: "127.0.0.1:53"})
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range []string{"", "1.2.3.4", "4.3.2.1.in-addr.arpa", "*.example.com", "bad name.com", "exa\x00mple.com", "a..b"} {
		if _, err := r.Watch(n, "dev"); !errors.Is(err, ErrInvalidName) {
			t.Errorf("Watch(%q) error %v, want ErrInvalidName", n, err)
		}
	}
	if len(r.Watched()) != 0 {
		t.Error("a rejected name is watched")
	}
}
