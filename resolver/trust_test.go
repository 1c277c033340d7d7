package resolver

// Only answers from trusted sources grant: the gateway's own addresses on
// the captured interfaces, loopback, the resolver's address and
// Config.TrustedSources. An answer the gateway routes to a device from any
// other DNS server adds nothing, is counted and logged.

import (
	"bytes"
	"io"
	"log/slog"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/miekg/dns"
)

func TestSourceDecision(t *testing.T) {
	p := netip.MustParsePrefix
	a := netip.MustParseAddr
	gwLL := a("fe80::1")
	for _, tc := range []struct {
		name    string
		sources []netip.Prefix // Config.TrustedSources
		src     netip.Addr
		want    bool
	}{
		{"gateway's LAN address", nil, gw4, true},
		{"gateway's LAN IPv6 address", nil, gw6, true},
		{"gateway's link-local address", nil, gwLL, true},
		{"loopback", nil, a("127.0.0.53"), true},
		{"IPv6 loopback", nil, a("::1"), true},
		{"the configured resolver (dns.resolver)", nil, a("198.51.100.53"), true},
		{"an internet server the device may reach", nil, a("203.0.113.13"), false},
		{"another LAN host", nil, a("192.0.2.50"), false},
		{"another host of the gateway's LAN prefix, IPv6", nil, a("2001:db8:1::50"), false},
		{"the gateway's address written as IPv4-mapped IPv6", nil, a("::ffff:192.0.2.1"), false},
		{"a neighbour of the resolver", nil, a("198.51.100.54"), false},
		{"unspecified", nil, a("0.0.0.0"), false},
		{"no address", nil, netip.Addr{}, false},
		{"inside a trusted prefix", []netip.Prefix{p("203.0.113.0/28")}, a("203.0.113.13"), true},
		{"outside a trusted prefix", []netip.Prefix{p("203.0.113.0/28")}, a("203.0.113.16"), false},
		{"a trusted IPv6 prefix", []netip.Prefix{p("2001:db8:53::/48")}, a("2001:db8:53::1"), true},
		{"an IPv4 prefix does not cover IPv6", []netip.Prefix{p("0.0.0.0/0")}, a("2001:db8:2::13"), false},
		{"everything trusted", []netip.Prefix{p("0.0.0.0/0"), p("::/0")}, a("2001:db8:2::13"), true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			r, err := New(Config{Server: "198.51.100.53:53", TrustedSources: tc.sources})
			if err != nil {
				t.Fatal(err)
			}
			local := map[netip.Addr]struct{}{gw4: {}, gw6: {}, gwLL: {}}
			r.trust.local.Store(&local)
			if got := r.trust.trusted(tc.src); got != tc.want {
				t.Errorf("trusted(%v) = %v, want %v (trusted: %v)", tc.src, got, tc.want, r.TrustedSources())
			}
		})
	}
}

// An internet server's answer that claims a device's name adds nothing,
// over UDP and TCP, IPv4 and IPv6; it is counted and logged with its
// source, the device and the names, and the log is rate-limited.
func TestHandleFrameRefusesUntrustedSource(t *testing.T) {
	var log bytes.Buffer
	r := snooper(t, Config{})
	r.log = slogText(&log)
	evil4, evil6 := netip.MustParseAddr("203.0.113.13"), netip.MustParseAddr("2001:db8:2::13")
	claim := response("api.vendor.test", dns.TypeA, rrA("api.vendor.test", 60, "203.0.113.66"))
	claim6 := response("api.vendor.test", dns.TypeAAAA, rrAAAA("api.vendor.test", 60, "2001:db8:2::66"))
	now := time.Unix(1_700_000_000, 0)
	specs := []frameSpec{
		{dst: devMAC, src: evil4, dstIP: dev4, sport: 53, dport: 40000},
		{dst: devMAC, src: evil4, dstIP: dev4, sport: 53, dport: 40000, tcp: true},
		{dst: devMAC, src: evil6, dstIP: dev6, sport: 53, dport: 40000},
		{dst: devMAC, src: evil6, dstIP: dev6, sport: 53, dport: 40000, tcp: true},
	}
	frames := make([][]byte, len(specs))
	for i, f := range specs {
		msg := claim
		if f.src.Is6() {
			msg = claim6
		}
		frames[i] = buildFrame(f, msg)
		if ups := r.HandleFrame(frames[i], now); len(ups) != 0 {
			t.Errorf("answer from %v (tcp %v) granted %+v", f.src, f.tcp, ups)
		}
	}
	// The same answer from the gateway grants.
	if ups := r.HandleFrame(udp4(claim), now); len(ups) != 1 {
		t.Errorf("the gateway's answer: %+v, want one update", ups)
	}
	// From an untrusted source, an answer that grants nothing anyway (a
	// name outside the device's list) is not a refusal.
	other := response("ads.tracker.test", dns.TypeA, rrA("ads.tracker.test", 60, "203.0.113.66"))
	r.HandleFrame(buildFrame(frameSpec{dst: devMAC, src: evil4, dstIP: dev4, sport: 53, dport: 40000}, other), now)
	if st := r.Stats(); st.RefusedAnswers != 4 || st.SnoopedAnswer != 1 {
		t.Errorf("stats %+v; want 4 refused answers and 1 snooped", st)
	}
	lines := strings.Split(strings.TrimSpace(log.String()), "\n")
	if len(lines) != 4 {
		t.Fatalf("%d log lines, want one per refused answer:\n%s", len(lines), log.String())
	}
	for _, want := range []string{"level=WARN", "source=203.0.113.13", "device=" + devMAC.String(), "names=[api.vendor.test]", "addrs=[203.0.113.66]", "refused_total=1"} {
		if !strings.Contains(lines[0], want) {
			t.Errorf("log line %q does not say %q", lines[0], want)
		}
	}
	if !strings.Contains(lines[2], "source=2001:db8:2::13") {
		t.Errorf("log line %q does not name the IPv6 source", lines[2])
	}

	// Rate limit: refusedLogBurst lines per window; the first line of the
	// next window says how many were not logged.
	log.Reset()
	for range 10 {
		r.HandleFrame(frames[0], now)
	}
	if n := strings.Count(log.String(), "\n"); n != 1 {
		t.Errorf("%d lines logged for 10 more refusals in the same window (1 left of %d); log:\n%s", n, refusedLogBurst, log.String())
	}
	log.Reset()
	r.HandleFrame(frames[0], now.Add(refusedLogWindow))
	if !strings.Contains(log.String(), "not_logged=9") || !strings.Contains(log.String(), "refused_total=15") {
		t.Errorf("first line of the next window: %q; want not_logged=9 refused_total=15", log.String())
	}
}

func TestLogLimit(t *testing.T) {
	l := logLimit{burst: 2, window: time.Minute}
	t0 := time.Unix(1_700_000_000, 0)
	for i, tc := range []struct {
		at      time.Duration
		ok      bool
		skipped int
	}{
		{0, true, 0}, {time.Second, true, 0}, {2 * time.Second, false, 0}, {59 * time.Second, false, 0},
		{time.Minute, true, 2}, {61 * time.Second, true, 0}, {62 * time.Second, false, 0},
		{-time.Hour, true, 1}, // the clock went back: a new window
	} {
		ok, skipped := l.allow(t0.Add(tc.at))
		if ok != tc.ok || skipped != tc.skipped {
			t.Errorf("event %d at %v: allow = %v, %d; want %v, %d", i, tc.at, ok, skipped, tc.ok, tc.skipped)
		}
	}
}

func slogText(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }
