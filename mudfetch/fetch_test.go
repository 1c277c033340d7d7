package mudfetch

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"
)

func mudBody(mudURL, sigRef string) []byte {
	sig := ""
	if sigRef != "" {
		sig = fmt.Sprintf(",\n    \"mud-signature\": %q", sigRef)
	}
	return fmt.Appendf(nil, `{
  "ietf-mud:mud": {
    "mud-version": 1,
    "mud-url": %q,
    "last-update": "2019-01-28T11:20:51+01:00",
    "cache-validity": 24,
    "is-supported": true%s
  },
  "ietf-access-control-list:acls": {"acl": []}
}
`, mudURL, sig)
}

// testSite is a MUD server on 127.0.0.1 reached as mud.example.com.
type testSite struct {
	t    *testing.T
	pki  *pki
	srv  *httptest.Server
	base string // https://mud.example.com:PORT
	port string

	mu       sync.Mutex
	requests []*http.Request
	arrived  chan string // paths, as requests arrive
	stop     chan struct{}
	refresh  int // status for the next /file while >0
}

func (s *testSite) seen() []*http.Request {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]*http.Request(nil), s.requests...)
}

// newTestSite starts an HTTPS server whose certificate names hosts (issued
// by p) and serves a signed MUD file at /file.
func newTestSite(t *testing.T, p *pki, hosts ...string) *testSite {
	if len(hosts) == 0 {
		hosts = []string{"mud.example.com", "other.example.com"}
	}
	s := &testSite{t: t, pki: p, arrived: make(chan string, 100), stop: make(chan struct{})}
	mux := http.NewServeMux()
	s.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		s.mu.Lock()
		s.requests = append(s.requests, r)
		s.mu.Unlock()
		select {
		case s.arrived <- r.URL.Path:
		default:
		}
		mux.ServeHTTP(w, r)
	}))
	chain, key := p.server(t, hosts...)
	s.srv.TLS = &tls.Config{Certificates: []tls.Certificate{{Certificate: [][]byte{chain[0].Raw, chain[1].Raw}, PrivateKey: key, Leaf: chain[0]}}}
	s.srv.StartTLS()
	_, s.port, _ = net.SplitHostPort(s.srv.Listener.Addr().String())
	s.base = "https://mud.example.com:" + s.port
	t.Cleanup(func() { close(s.stop); s.srv.Close() })

	signer, skey := p.signer(t, "Example MUD signer", signerKU, nil)
	body := mudBody(s.base+"/file", "file.p7s")
	sig := signDetached(t, body, signer, skey, p.inter)
	serve := func(path string, data []byte, etag, lastMod string) {
		mux.HandleFunc(path, func(w http.ResponseWriter, r *http.Request) {
			s.mu.Lock()
			code := 0
			if path == "/file" && s.refresh > 0 {
				code = 500
				s.refresh--
			}
			s.mu.Unlock()
			if code != 0 {
				http.Error(w, "broken", code)
				return
			}
			w.Header().Set("ETag", etag)
			w.Header().Set("Last-Modified", lastMod)
			if r.Header.Get("If-None-Match") == etag || (r.Header.Get("If-None-Match") == "" && r.Header.Get("If-Modified-Since") == lastMod) {
				w.WriteHeader(http.StatusNotModified)
				return
			}
			w.Write(data)
		})
	}
	lm := "Mon, 28 Jan 2019 10:20:51 GMT"
	serve("/file", body, `"f1"`, lm)
	serve("/file.p7s", sig, `"s1"`, lm)

	textBody := mudBody(s.base+"/text", "text.p7s")
	mux.HandleFunc("/text", func(w http.ResponseWriter, r *http.Request) { w.Write(textBody) })
	textSig := signDetached(t, toCRLF(textBody), signer, skey, p.inter)
	mux.HandleFunc("/text.p7s", func(w http.ResponseWriter, r *http.Request) { w.Write(textSig) })

	unsigned := mudBody(s.base+"/unsigned", "")
	mux.HandleFunc("/unsigned", func(w http.ResponseWriter, r *http.Request) { w.Write(unsigned) })
	sig404 := mudBody(s.base+"/sig404", "missing.p7s")
	mux.HandleFunc("/sig404", func(w http.ResponseWriter, r *http.Request) { w.Write(sig404) })
	modified := bytes.Replace(body, []byte(`"cache-validity": 24`), []byte(`"cache-validity": 25`), 1)
	mux.HandleFunc("/modified", func(w http.ResponseWriter, r *http.Request) { w.Write(modified) })
	mux.HandleFunc("/notjson", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("<html>")) })

	mux.HandleFunc("/redir-same", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/file", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/redir-http", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "http://mud.example.com:"+s.port+"/file", http.StatusFound)
	})
	mux.HandleFunc("/redir-host", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "https://other.example.com:"+s.port+"/file", http.StatusMovedPermanently)
	})
	mux.HandleFunc("/loop", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/loop", http.StatusFound)
	})
	mux.HandleFunc("/hop/", func(w http.ResponseWriter, r *http.Request) { // /hop/N → /hop/N+1
		var n int
		fmt.Sscanf(strings.TrimPrefix(r.URL.Path, "/hop/"), "%d", &n)
		http.Redirect(w, r, fmt.Sprintf("/hop/%d", n+1), http.StatusFound)
	})
	mux.HandleFunc("/big", func(w http.ResponseWriter, r *http.Request) {
		w.Write(bytes.Repeat([]byte(" "), 200<<10))
	})
	mux.HandleFunc("/big-chunked", func(w http.ResponseWriter, r *http.Request) {
		for range 50 {
			w.Write(bytes.Repeat([]byte(" "), 8<<10))
			w.(http.Flusher).Flush()
		}
	})
	mux.HandleFunc("/hang", func(w http.ResponseWriter, r *http.Request) {
		<-s.stop // never answers; released when the test ends
	})
	return s
}

// staticResolver is the name-resolution seam used by the tests.
func staticResolver(m map[string][]netip.Addr) func(context.Context, string) ([]netip.Addr, error) {
	return func(_ context.Context, host string) ([]netip.Addr, error) {
		if a, ok := m[strings.ToLower(host)]; ok {
			return a, nil
		}
		return nil, &net.DNSError{Err: "no such host", Name: host, IsNotFound: true}
	}
}

var loopback = netip.MustParseAddr("127.0.0.1")

func (s *testSite) config() Config {
	return Config{
		ServerCAs:     []*x509.Certificate{s.pki.root},
		NoSystemRoots: true,
		Anchors:       s.pki.pool(),
		AllowPrefixes: []netip.Prefix{netip.PrefixFrom(loopback, 32)},
		Resolve: staticResolver(map[string][]netip.Addr{
			"mud.example.com":   {loopback},
			"other.example.com": {loopback},
		}),
		ConnectTimeout:   2 * time.Second,
		Timeout:          5 * time.Second,
		MaxBytes:         64 << 10,
		UserAgent:        "mudfetch-test/1",
		AcceptLanguage:   "de, en;q=0.5",
		MaxFetchesPerKey: -1,
		MaxFetches:       -1,
	}
}

func newFetcher(t *testing.T, cfg Config) *Fetcher {
	t.Helper()
	f, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	return f
}

func TestFetchVerified(t *testing.T) {
	for _, alg := range []keyAlg{algRSA, algECDSA} {
		t.Run(string(alg), func(t *testing.T) {
			s := newTestSite(t, newPKI(t, alg, "Example "+string(alg)))
			f := newFetcher(t, s.config())
			res, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "00:11:22:33:44:55"})
			if err != nil {
				t.Fatalf("Fetch: %v", err)
			}
			if !res.Verdict.Verified() || res.SignatureURL != s.base+"/file.p7s" || res.ETag != `"f1"` {
				t.Fatalf("result: verdict %v sig %q etag %q", res.Verdict.Status, res.SignatureURL, res.ETag)
			}
			if got := res.NextRefresh().Sub(res.FetchedAt); got != 24*time.Hour {
				t.Errorf("next refresh after %v, want the file's cache-validity 24h", got)
			}
			// RFC 8520 §1.6: Accept, Accept-Language, User-Agent.
			reqs := s.seen()
			if len(reqs) != 2 {
				t.Fatalf("%d requests, want file + signature", len(reqs))
			}
			for i, wantAccept := range []string{"application/mud+json", "application/pkcs7-signature"} {
				h := reqs[i].Header
				if h.Get("Accept") != wantAccept || h.Get("Accept-Language") != "de, en;q=0.5" || h.Get("User-Agent") != "mudfetch-test/1" {
					t.Errorf("request %d headers: %v", i, h)
				}
				if reqs[i].Host != "mud.example.com:"+s.port {
					t.Errorf("request %d Host %q", i, reqs[i].Host)
				}
			}
		})
	}
}

// RFC 8520 §1.5 (https only), §1.6 (server certificate, redirects),
// §13.2 (signature before use), §16 (size limits).
func TestFetchRefusals(t *testing.T) {
	p := newPKI(t, algECDSA, "Example")
	s := newTestSite(t, p)
	f := newFetcher(t, s.config())
	hopCfg := s.config()
	hopCfg.MaxRedirects = 2
	fHop := newFetcher(t, hopCfg)
	for _, tc := range []struct {
		name    string
		f       *Fetcher
		url     string
		want    []error
		result  bool // a Result comes back (file read, not verified)
		message string
	}{
		{name: "http URL", url: "http://mud.example.com:" + s.port + "/file", want: []error{ErrNotHTTPS}},
		{name: "no host", url: "https:///file", want: []error{ErrBadURL}},
		{name: "user info", url: "https://admin:pw@mud.example.com:" + s.port + "/file", want: []error{ErrBadURL}},
		{name: "redirect to http", url: s.base + "/redir-http", want: []error{ErrRedirectRefused}, message: "non-https"},
		{name: "redirect to another host", url: s.base + "/redir-host", want: []error{ErrRedirectRefused}, message: "another host"},
		{name: "redirect loop", url: s.base + "/loop", want: []error{ErrTooManyRedirects}, message: "loop"},
		{name: "too many redirects", f: fHop, url: s.base + "/hop/0", want: []error{ErrTooManyRedirects}},
		{name: "body over the limit", url: s.base + "/big", want: []error{ErrBodyTooLarge}},
		{name: "chunked body over the limit", url: s.base + "/big-chunked", want: []error{ErrBodyTooLarge}},
		{name: "404", url: s.base + "/nothing-here", want: []error{ErrHTTPStatus}, message: "404"},
		{name: "unknown host", url: "https://nowhere.example.com/file", want: []error{ErrFetch}},
		{name: "not a MUD file", url: s.base + "/notjson", want: []error{ErrPendingApproval, ErrMalformedFile}, result: true},
		{name: "one byte changed", url: s.base + "/modified", want: []error{ErrPendingApproval, ErrSignatureInvalid}, result: true},
		{name: "missing signature", url: s.base + "/unsigned", want: []error{ErrPendingApproval, ErrNoSignature}, result: true},
		{name: "signature 404", url: s.base + "/sig404", want: []error{ErrPendingApproval, ErrSignatureFetch, ErrHTTPStatus}, result: true},
		{name: "text-mode signature", url: s.base + "/text", want: []error{ErrPendingApproval, ErrSignatureInvalid}, result: true, message: "text mode"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ff := f
			if tc.f != nil {
				ff = tc.f
			}
			res, err := ff.Fetch(context.Background(), Request{URL: tc.url})
			if err == nil {
				t.Fatal("fetch succeeded")
			}
			t.Log(err)
			for _, w := range tc.want {
				if !errors.Is(err, w) {
					t.Errorf("error %q does not wrap %q", err, w)
				}
			}
			if !strings.Contains(err.Error(), tc.message) {
				t.Errorf("error %q does not say %q", err, tc.message)
			}
			if (res != nil) != tc.result {
				t.Errorf("result %v, want one: %v", res != nil, tc.result)
			}
			if res != nil && (res.Verdict.Verified() || res.Verdict.Status != StatusPendingApproval) {
				t.Errorf("verdict %q for a refused file", res.Verdict.Status)
			}
		})
	}
	t.Run("same-host redirect is followed", func(t *testing.T) {
		res, err := f.Fetch(context.Background(), Request{URL: s.base + "/redir-same"})
		if err != nil {
			t.Fatal(err)
		}
		if res.FinalURL != s.base+"/file" {
			t.Errorf("final URL %q", res.FinalURL)
		}
	})
	t.Run("http URL causes no request", func(t *testing.T) { // RFC 8520 §1.5
		n := len(s.seen())
		if _, err := f.Fetch(context.Background(), Request{URL: "http://mud.example.com:" + s.port + "/file"}); !errors.Is(err, ErrNotHTTPS) {
			t.Fatal(err)
		}
		if len(s.seen()) != n {
			t.Error("a request reached the server")
		}
	})
}

// RFC 8520 §1.6: the MUD server's certificate is validated (RFC 2818).
func TestFetchServerCertificate(t *testing.T) {
	p := newPKI(t, algRSA, "Example")
	t.Run("self-signed", func(t *testing.T) {
		srv := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(mudBody("", "")) }))
		defer srv.Close()
		_, port, _ := net.SplitHostPort(srv.Listener.Addr().String())
		cfg := (&testSite{pki: p}).config()
		_, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: "https://mud.example.com:" + port + "/file"})
		if !errors.Is(err, ErrServerCertificate) {
			t.Fatalf("error %v, want ErrServerCertificate", err)
		}
	})
	t.Run("wrong host", func(t *testing.T) {
		s := newTestSite(t, p, "www.example.org")
		_, err := newFetcher(t, s.config()).Fetch(context.Background(), Request{URL: s.base + "/file"})
		if !errors.Is(err, ErrServerCertificate) || !strings.Contains(err.Error(), "mud.example.com") {
			t.Fatalf("error %v, want ErrServerCertificate naming the host", err)
		}
		if len(s.seen()) != 0 {
			t.Error("a request was sent over an unverified connection")
		}
	})
	t.Run("other CA", func(t *testing.T) {
		s := newTestSite(t, p)
		cfg := s.config()
		cfg.ServerCAs = []*x509.Certificate{newPKI(t, algECDSA, "Other").root}
		_, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: s.base + "/file"})
		if !errors.Is(err, ErrServerCertificate) {
			t.Fatalf("error %v, want ErrServerCertificate", err)
		}
	})
}

func TestFetchAddressGuard(t *testing.T) { // RFC 8520 §16: the device must not steer the gateway inward
	s := newTestSite(t, newPKI(t, algECDSA, "Example"))
	for _, tc := range []struct {
		name  string
		addrs []string
		class string
	}{
		{"127.0.0.1", []string{"127.0.0.1"}, "loopback"},
		{"::1", []string{"::1"}, "loopback"},
		{"169.254.169.254", []string{"169.254.169.254"}, "link-local"},
		{"fe80::1", []string{"fe80::1"}, "link-local"},
		{"10.1.2.3", []string{"10.1.2.3"}, "private"},
		{"fd00::1", []string{"fd00::1"}, "unique-local"},
		{"0.0.0.0", []string{"0.0.0.0"}, "unspecified"},
		{"224.0.0.1", []string{"224.0.0.1"}, "multicast"},
		{"v4-mapped loopback", []string{"::ffff:127.0.0.1"}, "loopback"},
		{"NAT64 of private", []string{"64:ff9b::a01:203"}, "private"},
		{"all forbidden", []string{"127.0.0.1", "192.168.1.1"}, "private"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := s.config()
			cfg.AllowPrefixes = nil // the default: loopback refused
			var addrs []netip.Addr
			for _, a := range tc.addrs {
				addrs = append(addrs, netip.MustParseAddr(a))
			}
			cfg.Resolve = staticResolver(map[string][]netip.Addr{"mud.example.com": addrs})
			n := len(s.seen())
			_, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: s.base + "/file"})
			t.Log(err)
			if !errors.Is(err, ErrForbiddenAddress) || !strings.Contains(err.Error(), tc.class) {
				t.Fatalf("error %v, want ErrForbiddenAddress (%s)", err, tc.class)
			}
			var fe *ForbiddenAddressError
			if !errors.As(err, &fe) {
				t.Errorf("no *ForbiddenAddressError in %v", err)
			}
			if len(s.seen()) != n {
				t.Error("the server was reached")
			}
		})
	}
	t.Run("IP literal URL", func(t *testing.T) {
		cfg := s.config()
		cfg.AllowPrefixes = nil
		_, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: "https://127.0.0.1:" + s.port + "/file"})
		if !errors.Is(err, ErrForbiddenAddress) {
			t.Fatalf("error %v, want ErrForbiddenAddress", err)
		}
	})
	t.Run("forbidden answer skipped, allowed one used", func(t *testing.T) {
		cfg := s.config()
		cfg.Resolve = staticResolver(map[string][]netip.Addr{"mud.example.com": {netip.MustParseAddr("169.254.1.1"), loopback}})
		if _, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: s.base + "/file"}); err != nil {
			t.Fatal(err)
		}
	})
}

func TestDialControlGuard(t *testing.T) {
	// The Control hook sees the address actually dialled, whatever resolved it.
	g := &addrGuard{}
	if err := g.control("tcp4", "127.0.0.1:443", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(127.0.0.1) = %v", err)
	}
	if err := g.control("tcp6", "[::1]:443", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(::1) = %v", err)
	}
	if err := g.control("tcp4", "93.184.215.14:443", nil); err != nil {
		t.Errorf("control(public) = %v", err)
	}
	if err := g.control("tcp", "garbage", nil); !errors.Is(err, ErrForbiddenAddress) {
		t.Errorf("control(garbage) = %v", err)
	}
}

func TestAddrGuard(t *testing.T) {
	strict := &addrGuard{}
	lab := &addrGuard{allowPrivate: true}
	allow := &addrGuard{allow: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("10.9.0.0/16")}}
	for _, tc := range []struct {
		addr                  string
		strict, lab, allowLst bool // allowed?
	}{
		{"93.184.215.14", true, true, true},
		{"2606:2800:21f:cb07:6820:80da:af6b:8b2c", true, true, true},
		{"127.0.0.1", false, false, true},
		{"127.8.8.8", false, false, true},
		{"::1", false, false, false},
		{"10.9.1.1", false, true, true},
		{"10.8.1.1", false, true, false},
		{"172.16.0.1", false, true, false},
		{"192.168.0.1", false, true, false},
		{"100.64.0.1", false, true, false},
		{"fd12::1", false, true, false},
		{"169.254.0.1", false, false, false},
		{"fe80::1", false, false, false},
		{"0.0.0.0", false, false, false},
		{"::", false, false, false},
		{"255.255.255.255", false, false, false},
		{"239.1.1.1", false, false, false},
		{"ff02::1", false, false, false},
		{"2002:c0a8:0101::1", false, true, false}, // 6to4 of 192.168.1.1
		{"2002:5db8:d70e::1", true, true, true},   // 6to4 of a public address
	} {
		a := netip.MustParseAddr(tc.addr)
		for _, g := range []struct {
			name string
			g    *addrGuard
			want bool
		}{{"strict", strict, tc.strict}, {"allow-private", lab, tc.lab}, {"allow-list", allow, tc.allowLst}} {
			if got := g.g.check(a) == nil; got != g.want {
				t.Errorf("%s: %s allowed=%v, want %v (%v)", g.name, tc.addr, got, g.want, g.g.check(a))
			}
		}
	}
}

func TestFetchTimeout(t *testing.T) {
	s := newTestSite(t, newPKI(t, algECDSA, "Example"))
	cfg := s.config()
	cfg.Timeout = 300 * time.Millisecond
	start := time.Now()
	_, err := newFetcher(t, cfg).Fetch(context.Background(), Request{URL: s.base + "/hang"})
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("took %v", d)
	}
	// The caller's own context bounds it too.
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if _, err := newFetcher(t, s.config()).Fetch(ctx, Request{URL: s.base + "/hang"}); !errors.Is(err, ErrTimeout) {
		t.Fatalf("error %v, want ErrTimeout", err)
	}
}

// RFC 8520 §1.6 (failed fetch keeps the file), §3.5 (cache-validity).
func TestFetchRefresh(t *testing.T) {
	s := newTestSite(t, newPKI(t, algRSA, "Example"))
	now := time.Date(2030, 1, 1, 0, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
	cfg := s.config()
	cfg.Now = clock
	// The PKI is valid around the real time; judge there.
	now = time.Now()
	f := newFetcher(t, cfg)
	first, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1"})
	if err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	now = now.Add(25 * time.Hour)
	mu.Unlock()
	if !first.NextRefresh().Before(clock()) {
		t.Fatal("refresh not yet due after cache-validity")
	}
	second, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1", Cached: first})
	if err != nil {
		t.Fatal(err)
	}
	if !second.NotModified || !bytes.Equal(second.Body, first.Body) || !bytes.Equal(second.Signature, first.Signature) || !second.Verdict.Verified() {
		t.Fatalf("304 refresh: not-modified %v verified %v", second.NotModified, second.Verdict.Verified())
	}
	if !second.FetchedAt.Equal(clock()) || !second.NextRefresh().Equal(clock().Add(24*time.Hour)) {
		t.Errorf("fetched at %v next %v", second.FetchedAt, second.NextRefresh())
	}
	reqs := s.seen()
	last := reqs[len(reqs)-2:]
	if last[0].Header.Get("If-None-Match") != `"f1"` || last[1].Header.Get("If-None-Match") != `"s1"` {
		t.Errorf("conditional headers: %q %q", last[0].Header.Get("If-None-Match"), last[1].Header.Get("If-None-Match"))
	}
	if last[0].Header.Get("If-Modified-Since") == "" {
		t.Error("no If-Modified-Since")
	}

	// Last-Modified alone.
	lmOnly := *first
	lmOnly.ETag, lmOnly.SignatureETag = "", ""
	third, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1", Cached: &lmOnly})
	if err != nil || !third.NotModified {
		t.Fatalf("Last-Modified refresh: %v, not-modified %v", err, third != nil && third.NotModified)
	}

	// A failing refresh returns the error and no result; the caller's
	// cached Result is untouched and stays usable.
	s.mu.Lock()
	s.refresh = 1
	s.mu.Unlock()
	keep := append([]byte(nil), first.Body...)
	res, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1", Cached: first})
	if !errors.Is(err, ErrHTTPStatus) || res != nil {
		t.Fatalf("failing refresh: %v %v", res, err)
	}
	if !bytes.Equal(first.Body, keep) || !first.Verdict.Verified() {
		t.Error("cached result changed by a failed refresh")
	}

	// On refresh the cached file is judged again at the current time and
	// with the current anchors: removing the CA makes it pending (RFC 8520
	// §16).
	res, err = f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1", Cached: first, Anchors: x509.NewCertPool()})
	if !errors.Is(err, ErrUntrustedSigner) || res == nil || !res.NotModified {
		t.Fatalf("refresh after CA removal: %v", err)
	}
	mu.Lock()
	now = now.Add(30 * 24 * time.Hour)
	mu.Unlock()
	if _, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "dev1", Cached: first}); !errors.Is(err, ErrSignerExpired) {
		t.Fatalf("refresh after expiry: %v", err)
	}
}

func TestFetchLimits(t *testing.T) {
	s := newTestSite(t, newPKI(t, algECDSA, "Example"))

	t.Run("concurrent per key and overall", func(t *testing.T) {
		cfg := s.config()
		cfg.MaxConcurrent = 1
		f := newFetcher(t, cfg)
		ctx, cancel := context.WithCancel(context.Background())
		var wg sync.WaitGroup
		wg.Add(1)
		go func() { // owned by this test: cancelled and waited for below
			defer wg.Done()
			f.Fetch(ctx, Request{URL: s.base + "/hang", Key: "aa:aa"})
		}()
		for p := range s.arrived {
			if p == "/hang" {
				break
			}
		}
		_, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "aa:aa"})
		if !errors.Is(err, ErrBusy) || !strings.Contains(err.Error(), "aa:aa") {
			t.Errorf("second fetch for the same device: %v, want ErrBusy", err)
		}
		short, cancelShort := context.WithTimeout(context.Background(), 100*time.Millisecond)
		_, err = f.Fetch(short, Request{URL: s.base + "/file", Key: "bb:bb"})
		cancelShort()
		if !errors.Is(err, ErrBusy) {
			t.Errorf("fetch beyond MaxConcurrent: %v, want ErrBusy", err)
		}
		cancel()
		wg.Wait()
		if _, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: "bb:bb"}); err != nil {
			t.Errorf("after the slot was freed: %v", err)
		}
	})

	t.Run("repeated per key and overall", func(t *testing.T) {
		now := time.Now()
		var mu sync.Mutex
		cfg := s.config()
		cfg.Now = func() time.Time { mu.Lock(); defer mu.Unlock(); return now }
		cfg.MaxFetchesPerKey = 2
		cfg.MaxFetches = 3
		cfg.RateWindow = time.Minute
		f := newFetcher(t, cfg)
		get := func(key string) error {
			_, err := f.Fetch(context.Background(), Request{URL: s.base + "/file", Key: key})
			return err
		}
		for i := range 2 {
			if err := get("dev-a"); err != nil {
				t.Fatalf("fetch %d: %v", i, err)
			}
		}
		if err := get("dev-a"); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("third fetch in the window: %v, want ErrRateLimited", err)
		}
		if err := get("dev-b"); err != nil {
			t.Fatalf("another device: %v", err)
		}
		if err := get("dev-c"); !errors.Is(err, ErrRateLimited) {
			t.Fatalf("fourth fetch overall: %v, want ErrRateLimited", err)
		}
		mu.Lock()
		now = now.Add(61 * time.Second)
		mu.Unlock()
		if err := get("dev-a"); err != nil {
			t.Fatalf("after the window: %v", err)
		}
	})

	// The manager retries a failed fetch of a URL after 5 s, doubling to
	// 5 min: at most 8 attempts in a default window, all admitted.
	t.Run("default per key fits the manager's retries", func(t *testing.T) {
		now := time.Now()
		cfg := s.config()
		cfg.MaxFetchesPerKey = 0
		cfg.Now = func() time.Time { return now }
		f := newFetcher(t, cfg)
		for i := range 8 {
			if _, err := f.Fetch(context.Background(), Request{URL: s.base + "/file"}); err != nil {
				t.Fatalf("attempt %d of one URL in the window: %v", i+1, err)
			}
		}
	})
}
