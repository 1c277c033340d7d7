package mudfetch

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"
)

// Defaults for the zero values of Config.
const (
	DefaultConnectTimeout   = 5 * time.Second
	DefaultTimeout          = 30 * time.Second
	DefaultMaxBytes         = 1 << 20
	DefaultMaxRedirects     = 3
	DefaultMaxConcurrent    = 8
	DefaultMaxFetchesPerKey = 10 // room for the manager's retries of a URL: at most 8 in a window
	DefaultMaxFetches       = 600
	DefaultRateWindow       = 10 * time.Minute
	DefaultMaxTrackedKeys   = 10000
	DefaultUserAgent        = "mudd (openmud; RFC 8520 MUD manager)"
	DefaultAcceptLanguage   = "en"

	mediaTypeMUD       = "application/mud+json"
	mediaTypeSignature = "application/pkcs7-signature"
)

// Config configures a Fetcher. Zero values take the defaults above.
type Config struct {
	// ServerCAs are CA certificates trusted for MUD servers' TLS
	// certificates, in addition to the system roots unless NoSystemRoots.
	ServerCAs     []*x509.Certificate
	NoSystemRoots bool

	// Anchors are the trust anchors for MUD file signers. Nil means none:
	// every file is then pending approval (ErrNoTrustAnchors).
	Anchors *x509.CertPool

	UserAgent      string
	AcceptLanguage string

	ConnectTimeout time.Duration // TCP connect and TLS handshake
	Timeout        time.Duration // a whole Fetch: file and signature, redirects included
	MaxBytes       int64         // largest MUD file accepted
	MaxRedirects   int           // redirects followed per GET; -1 for none

	// AllowPrivate permits private IPv4 (RFC 1918), shared (RFC 6598)
	// and ULA destinations. Loopback, link-local, unspecified, multicast
	// and reserved ranges stay forbidden.
	AllowPrivate bool
	// AllowPrefixes is the administrator's explicit allow-list: addresses
	// inside these prefixes are dialled whatever their class (labs,
	// tests on 127.0.0.1). Empty by default.
	AllowPrefixes []netip.Prefix
	// Resolve replaces name resolution (default: the system resolver).
	// Whatever it returns still goes through the address guard.
	Resolve func(ctx context.Context, host string) ([]netip.Addr, error)

	MaxConcurrent       int           // fetches in flight overall; callers wait for a slot
	MaxConcurrentPerKey int           // fetches in flight per key (default 1); more are refused with ErrBusy
	MaxFetchesPerKey    int           // fetches started per key per RateWindow; -1 for no limit
	MaxFetches          int           // fetches started overall per RateWindow; -1 for no limit
	RateWindow          time.Duration // the sliding window of the two limits above
	MaxTrackedKeys      int           // keys remembered by the limiter

	// Now is the clock (default time.Now): signatures are judged at Now().
	Now func() time.Time
}

func (c *Config) setDefaults() {
	def := func(p *time.Duration, d time.Duration) {
		if *p <= 0 {
			*p = d
		}
	}
	defInt := func(p *int, d int) {
		if *p == 0 {
			*p = d
		}
	}
	def(&c.ConnectTimeout, DefaultConnectTimeout)
	def(&c.Timeout, DefaultTimeout)
	def(&c.RateWindow, DefaultRateWindow)
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultMaxBytes
	}
	defInt(&c.MaxRedirects, DefaultMaxRedirects)
	if c.MaxRedirects < 0 {
		c.MaxRedirects = 0
	}
	if c.MaxConcurrent <= 0 {
		c.MaxConcurrent = DefaultMaxConcurrent
	}
	if c.MaxConcurrentPerKey <= 0 {
		c.MaxConcurrentPerKey = 1
	}
	defInt(&c.MaxFetchesPerKey, DefaultMaxFetchesPerKey)
	defInt(&c.MaxFetches, DefaultMaxFetches)
	if c.MaxTrackedKeys <= 0 {
		c.MaxTrackedKeys = DefaultMaxTrackedKeys
	}
	if c.UserAgent == "" {
		c.UserAgent = DefaultUserAgent
	}
	if c.AcceptLanguage == "" {
		c.AcceptLanguage = DefaultAcceptLanguage
	}
	if c.Now == nil {
		c.Now = time.Now
	}
}

// Fetcher fetches and verifies MUD files. It is safe for concurrent use.
// Close releases its idle connections.
type Fetcher struct {
	cfg       Config
	transport *http.Transport
	client    *http.Client
	limits    *limiter
}

// New returns a Fetcher for cfg.
func New(cfg Config) (*Fetcher, error) {
	cfg.setDefaults()
	for _, p := range cfg.AllowPrefixes {
		if !p.IsValid() {
			return nil, fmt.Errorf("mudfetch config: invalid allow-list prefix %v", p)
		}
	}
	roots := x509.NewCertPool()
	if !cfg.NoSystemRoots {
		if sp, err := x509.SystemCertPool(); err == nil {
			roots = sp
		}
	}
	for _, c := range cfg.ServerCAs {
		roots.AddCert(c)
	}
	guard := &addrGuard{allowPrivate: cfg.AllowPrivate, allow: append([]netip.Prefix(nil), cfg.AllowPrefixes...)}
	d := newDialer(guard, cfg.Resolve, cfg.ConnectTimeout)
	tr := &http.Transport{
		Proxy:                  nil, // a proxy would bypass the address guard
		DialContext:            d.DialContext,
		TLSClientConfig:        &tls.Config{RootCAs: roots, MinVersion: tls.VersionTLS12},
		TLSHandshakeTimeout:    cfg.ConnectTimeout,
		ResponseHeaderTimeout:  cfg.Timeout,
		MaxResponseHeaderBytes: 64 << 10,
		MaxIdleConns:           16,
		IdleConnTimeout:        30 * time.Second,
	}
	f := &Fetcher{cfg: cfg, transport: tr, limits: newLimiter(&cfg)}
	f.client = &http.Client{Transport: tr, CheckRedirect: f.checkRedirect}
	return f, nil
}

// Close releases idle connections.
func (f *Fetcher) Close() { f.transport.CloseIdleConnections() }

// Request is one fetch.
type Request struct {
	URL string // the MUD URL (https)
	// Key names the device for the per-device limits (its MAC, or any
	// caller-chosen key); empty means the URL.
	Key string
	// Cached is the last result kept for this URL, if any: its ETag and
	// Last-Modified make the request conditional, and a 304 reuses its bytes.
	Cached *Result
	// ExpectedSigner is the device certificate's id-pe-mudsigner Name (DER),
	// if known; see MUDSignerName.
	ExpectedSigner []byte
	// Anchors, when set, replaces Config.Anchors for this fetch (e.g. after
	// the administrator changed the trust anchors).
	Anchors *x509.CertPool
}

// Result is what a fetch produced; the manager stores it and hands it back
// as Request.Cached on the next refresh. All fields are plain data.
type Result struct {
	URL          string    `json:"url"`       // the URL requested
	FinalURL     string    `json:"final_url"` // after redirects
	Body         []byte    `json:"body"`      // the exact bytes, verified or not
	ETag         string    `json:"etag,omitempty"`
	LastModified string    `json:"last_modified,omitempty"`
	FetchedAt    time.Time `json:"fetched_at"`
	NotModified  bool      `json:"not_modified,omitempty"` // the server answered 304: Body is the cached one

	SignatureURL          string `json:"signature_url,omitempty"`
	Signature             []byte `json:"signature,omitempty"`
	SignatureETag         string `json:"signature_etag,omitempty"`
	SignatureLastModified string `json:"signature_last_modified,omitempty"`

	Header   Header   `json:"header"`
	Verdict  Verdict  `json:"verdict"`
	Warnings []string `json:"warnings,omitempty"`
}

// NextRefresh is when the file should next be checked for an update:
// FetchedAt plus its cache-validity (RFC 8520 §3.5; 48 h by default, at most
// 168 h). Passing it never ends enforcement of the cached file.
func (r *Result) NextRefresh() time.Time {
	cv := r.Header.CacheValidity
	if cv <= 0 {
		cv = DefaultCacheValidity
	}
	return r.FetchedAt.Add(cv)
}

// Fetch retrieves req.URL and its signature and verifies them at Now().
//
// The error is nil only when the file is verified. When the file was read
// but is not verified (no mud-signature, signature unreachable or invalid,
// untrusted or mismatched signer, unreadable header), Fetch returns the Result
// (for the administrator's approval) and an error wrapping ErrPendingApproval
// and the cause. When the file itself could not be fetched, the Result is nil:
// a refresh that fails this way changes nothing, and the caller keeps using
// its cached, previously verified Result (RFC 8520 §1.6, §3.5).
func (f *Fetcher) Fetch(ctx context.Context, req Request) (*Result, error) {
	u, err := checkURL(req.URL)
	if err != nil {
		return nil, err
	}
	key := req.Key
	if key == "" {
		key = "url:" + u.String()
	}
	release, err := f.limits.acquire(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("fetching %q: %w", u.String(), err)
	}
	defer release()
	ctx, cancel := context.WithTimeout(ctx, f.cfg.Timeout)
	defer cancel()

	cached := req.Cached
	if cached != nil && (cached.URL != u.String() || len(cached.Body) == 0) {
		cached = nil
	}
	var cond *validators
	if cached != nil {
		cond = &validators{etag: cached.ETag, lastModified: cached.LastModified}
	}
	resp, err := f.get(ctx, u.String(), mediaTypeMUD, f.cfg.MaxBytes, cond)
	if err != nil {
		return nil, err
	}
	now := f.cfg.Now()
	res := &Result{URL: u.String(), FinalURL: resp.finalURL, Body: resp.body, ETag: resp.etag, LastModified: resp.lastModified, FetchedAt: now}
	if resp.notModified {
		res.NotModified = true
		res.Body = cached.Body
		if res.ETag == "" {
			res.ETag = cached.ETag
		}
		if res.LastModified == "" {
			res.LastModified = cached.LastModified
		}
	}

	h, err := DecodeHeader(res.Body)
	if err != nil {
		res.Header.CacheValidity = DefaultCacheValidity
		res.Verdict = pending(now, fmt.Errorf("reading %q: %w", res.URL, err))
		return res, res.Verdict.Err()
	}
	res.Header = h
	res.Warnings = append(res.Warnings, h.Warnings...)
	if h.MUDURL != "" && h.MUDURL != res.URL {
		res.Warnings = append(res.Warnings, fmt.Sprintf("the file's mud-url %q differs from the URL it was fetched from", h.MUDURL))
	}

	sigURL, err := h.SignatureURL(res.FinalURL)
	if err != nil {
		res.Verdict = pending(now, fmt.Errorf("file %q: %w", res.URL, err))
		return res, res.Verdict.Err()
	}
	res.SignatureURL = sigURL
	sigU, err := checkURL(sigURL)
	if err != nil {
		res.Verdict = pending(now, fmt.Errorf("%w: %w", ErrSignatureFetch, err))
		return res, res.Verdict.Err()
	}
	var sigCond *validators
	if cached != nil && cached.SignatureURL == sigU.String() && len(cached.Signature) > 0 {
		sigCond = &validators{etag: cached.SignatureETag, lastModified: cached.SignatureLastModified}
	}
	sresp, err := f.get(ctx, sigU.String(), mediaTypeSignature, MaxSignatureBytes, sigCond)
	if err != nil {
		res.Verdict = pending(now, fmt.Errorf("%w: %w", ErrSignatureFetch, err))
		return res, res.Verdict.Err()
	}
	res.Signature, res.SignatureETag, res.SignatureLastModified = sresp.body, sresp.etag, sresp.lastModified
	if sresp.notModified {
		res.Signature = cached.Signature
		if res.SignatureETag == "" {
			res.SignatureETag = cached.SignatureETag
		}
		if res.SignatureLastModified == "" {
			res.SignatureLastModified = cached.SignatureLastModified
		}
	}

	anchors := f.cfg.Anchors
	if req.Anchors != nil {
		anchors = req.Anchors
	}
	res.Verdict = Verify(res.Body, res.Signature, anchors, now, VerifyOptions{ExpectedSigner: req.ExpectedSigner})
	return res, res.Verdict.Err()
}

// checkURL accepts only absolute https URLs with a host and no user info.
func checkURL(raw string) (*url.URL, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	if !strings.EqualFold(u.Scheme, "https") {
		return nil, fmt.Errorf("%w: %q (RFC 8520 §1.5: MUD URLs MUST use https)", ErrNotHTTPS, raw)
	}
	u.Scheme = "https"
	if u.Host == "" || u.Hostname() == "" {
		return nil, fmt.Errorf("%w: %q has no host", ErrBadURL, raw)
	}
	if u.User != nil {
		return nil, fmt.Errorf("%w: %q carries user information", ErrBadURL, raw)
	}
	if u.Opaque != "" {
		return nil, fmt.Errorf("%w: %q is not hierarchical", ErrBadURL, raw)
	}
	u.Fragment, u.RawFragment = "", ""
	return u, nil
}

type validators struct{ etag, lastModified string }

type response struct {
	finalURL     string
	body         []byte
	etag         string
	lastModified string
	notModified  bool
}

// get performs one GET with the headers, limits and validators.
func (f *Fetcher) get(ctx context.Context, rawURL, accept string, limit int64, cond *validators) (*response, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, rawURL, nil)
	if err != nil {
		return nil, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	req.Header.Set("Accept", accept)
	req.Header.Set("Accept-Language", f.cfg.AcceptLanguage)
	req.Header.Set("User-Agent", f.cfg.UserAgent)
	if cond != nil {
		if cond.etag != "" {
			req.Header.Set("If-None-Match", cond.etag)
		}
		if cond.lastModified != "" {
			req.Header.Set("If-Modified-Since", cond.lastModified)
		}
	}
	resp, err := f.client.Do(req)
	if err != nil {
		return nil, classify(rawURL, err)
	}
	defer resp.Body.Close()
	out := &response{finalURL: resp.Request.URL.String(), etag: resp.Header.Get("ETag"), lastModified: resp.Header.Get("Last-Modified")}
	switch {
	case resp.StatusCode == http.StatusOK:
	case resp.StatusCode == http.StatusNotModified && cond != nil:
		out.notModified = true
		return out, nil
	default:
		return nil, &HTTPStatusError{URL: out.finalURL, Code: resp.StatusCode}
	}
	if resp.ContentLength > limit {
		return nil, fmt.Errorf("GET %q: %w: Content-Length %d, limit %d", rawURL, ErrBodyTooLarge, resp.ContentLength, limit)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, limit+1))
	if err != nil {
		return nil, classify(rawURL, fmt.Errorf("reading body: %w", err))
	}
	if int64(len(body)) > limit {
		return nil, fmt.Errorf("GET %q: %w: more than %d bytes", rawURL, ErrBodyTooLarge, limit)
	}
	out.body = body
	return out, nil
}

func (f *Fetcher) checkRedirect(req *http.Request, via []*http.Request) error {
	orig := via[0].URL
	for _, v := range via {
		if v.URL.String() == req.URL.String() {
			return fmt.Errorf("%w: redirect loop back to %q", ErrTooManyRedirects, req.URL.String())
		}
	}
	if len(via) > f.cfg.MaxRedirects {
		return fmt.Errorf("%w: more than %d redirects from %q", ErrTooManyRedirects, f.cfg.MaxRedirects, orig.String())
	}
	if req.URL.Scheme != "https" {
		return fmt.Errorf("%w: %q redirects to non-https %q", ErrRedirectRefused, via[len(via)-1].URL.String(), req.URL.String())
	}
	if !strings.EqualFold(req.URL.Hostname(), orig.Hostname()) || portOf(req.URL) != portOf(orig) || req.URL.User != nil {
		return fmt.Errorf("%w: %q redirects to another host, %q", ErrRedirectRefused, via[len(via)-1].URL.String(), req.URL.String())
	}
	return nil
}

func portOf(u *url.URL) string {
	if p := u.Port(); p != "" {
		return p
	}
	return "443"
}

// classify wraps a transport error with the sentinel that says what went wrong.
func classify(rawURL string, err error) error {
	var ue *url.Error
	if errors.As(err, &ue) {
		err = ue.Err
	}
	for _, s := range []error{ErrForbiddenAddress, ErrRedirectRefused, ErrTooManyRedirects, ErrBadURL, ErrFetch} {
		if errors.Is(err, s) {
			return fmt.Errorf("GET %q: %w", rawURL, err)
		}
	}
	var cve *tls.CertificateVerificationError
	var uae x509.UnknownAuthorityError
	var hne x509.HostnameError
	var cie x509.CertificateInvalidError
	if errors.As(err, &cve) || errors.As(err, &uae) || errors.As(err, &hne) || errors.As(err, &cie) {
		return fmt.Errorf("GET %q: %w: %w", rawURL, ErrServerCertificate, err)
	}
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		return fmt.Errorf("GET %q: %w: %w", rawURL, ErrTimeout, err)
	}
	return fmt.Errorf("GET %q: %w: %w", rawURL, ErrFetch, err)
}
