package api

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/openmud/mud/store"
)

// Request body limits, unless ServerOptions say otherwise.
const (
	DefaultMaxBody   = 64 << 10
	DefaultMaxImport = 4 << 20 // a 1 MiB MUD file and its signature, base64
)

// Maximum field lengths the server accepts.
const (
	maxURLLen    = 2048
	maxTextLen   = 1024 // reasons, comments
	maxAddrs     = 256
	maxImportLen = 1 << 20
)

// errTooLarge marks a body over the limit (413).
var errTooLarge = errors.New("request body too large")

// ServerOptions tune a Server; the zero value is usable.
type ServerOptions struct {
	// Logger receives one info record per mutating request (who did
	// what, RFC 8520 §16) and debug records with MUD URLs. Default: discard.
	Logger *slog.Logger
	// MaxBody limits request bodies (default DefaultMaxBody); MaxImport
	// limits /v1/import (default DefaultMaxImport).
	MaxBody, MaxImport int64
	// ShutdownTimeout bounds the graceful part of a stop (default 5 s).
	ShutdownTimeout time.Duration
}

// Server serves the control API for a Backend. It is an http.Handler; Serve
// runs it on a listener (usually from Listen).
type Server struct {
	b    Backend
	log  *slog.Logger
	opts ServerOptions
	mux  *http.ServeMux
}

// NewServer returns a Server for b.
func NewServer(b Backend, opts ServerOptions) *Server {
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.MaxBody <= 0 {
		opts.MaxBody = DefaultMaxBody
	}
	if opts.MaxImport <= 0 {
		opts.MaxImport = DefaultMaxImport
	}
	if opts.ShutdownTimeout <= 0 {
		opts.ShutdownTimeout = 5 * time.Second
	}
	s := &Server{b: b, log: opts.Logger, opts: opts, mux: http.NewServeMux()}
	s.routes()
	return s
}

// ServeHTTP serves one request.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) { s.mux.ServeHTTP(w, r) }

type ctxKey int

const (
	callerKey   ctxKey = iota // Caller of the connection
	stoppingKey               // context.Context done when Serve stops
)

func callerFrom(ctx context.Context) Caller {
	c, _ := ctx.Value(callerKey).(Caller)
	return c
}

// Serve answers requests on ln until ctx is done, then stops: it closes the
// listener, ends event streams, lets requests in flight finish (for up to
// ShutdownTimeout, then cuts them) and returns once every handler has
// returned. It returns nil after a stop by ctx.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	stopping, stop := context.WithCancel(context.WithoutCancel(ctx))
	defer stop()
	var inflight tracker
	hs := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if !inflight.add() {
				writeError(w, http.StatusServiceUnavailable, errors.New("mudd is stopping"))
				return
			}
			defer inflight.done()
			s.ServeHTTP(w, r)
		}),
		BaseContext: func(net.Listener) context.Context {
			return context.WithValue(context.WithoutCancel(ctx), stoppingKey, stopping)
		},
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, callerKey, peerCaller(c))
		},
		ReadHeaderTimeout: 10 * time.Second,
		IdleTimeout:       time.Minute,
		MaxHeaderBytes:    16 << 10,
		ErrorLog:          slog.NewLogLogger(s.log.Handler(), slog.LevelDebug),
	}
	errc := make(chan error, 1)
	go func() { errc <- hs.Serve(ln) }()

	var serveErr error
	select {
	case err := <-errc:
		serveErr = fmt.Errorf("api: serve %s: %w", ln.Addr(), err)
		stop()
		_ = hs.Close()
	case <-ctx.Done():
		stop() // event streams end now; other requests may finish
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.opts.ShutdownTimeout)
		if err := hs.Shutdown(sctx); err != nil {
			s.log.Warn("control API: requests cut at shutdown", "err", err)
			_ = hs.Close()
		}
		cancel()
		<-errc
	}
	inflight.closeAndWait()
	return serveErr
}

// tracker counts handlers in flight so Serve returns only after the last
// one (http.Server.Close does not wait for them).
type tracker struct {
	mu     sync.Mutex
	n      int
	closed bool
	zero   chan struct{}
}

func (t *tracker) add() bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.closed {
		return false
	}
	t.n++
	return true
}

func (t *tracker) done() {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.n--
	if t.n == 0 && t.zero != nil {
		close(t.zero)
		t.zero = nil
	}
}

func (t *tracker) closeAndWait() {
	t.mu.Lock()
	t.closed = true
	if t.n == 0 {
		t.mu.Unlock()
		return
	}
	zero := make(chan struct{})
	t.zero = zero
	t.mu.Unlock()
	<-zero
}

// route is one endpoint: a method, a path pattern and its handler.
type route struct {
	method, path string
	h            http.HandlerFunc
}

// routeTable lists every endpoint the server answers.
func (s *Server) routeTable() []route {
	return []route{
		{"GET", "/v1/status", s.status},
		{"GET", "/v1/devices", s.devices},
		{"GET", "/v1/devices/{mac}", s.device},
		{"GET", "/v1/devices/{mac}/policy", s.policy},
		{"POST", "/v1/devices/{mac}/approve", s.action("approve", s.b.Approve)},
		{"POST", "/v1/devices/{mac}/reject", s.action("reject", s.b.Reject)},
		{"POST", "/v1/devices/{mac}/quarantine", s.action("quarantine", s.b.Quarantine)},
		{"POST", "/v1/devices/{mac}/release", s.action("release", s.b.Release)},
		{"POST", "/v1/devices/{mac}/bind", s.bind},
		{"POST", "/v1/devices/{mac}/overrides", s.addOverride},
		{"DELETE", "/v1/devices/{mac}/overrides", s.clearOverrides},
		{"POST", "/v1/devices/{mac}/refresh", s.refresh},
		{"POST", "/v1/refresh", s.refresh},
		{"GET", "/v1/events", s.events},
		{"GET", "/v1/violations", s.violations},
		{"GET", "/v1/devices/{mac}/violations", s.violations},
		{"GET", "/v1/controllers", s.controllers},
		{"POST", "/v1/controllers", s.setController},
		{"POST", "/v1/import", s.importFile},
	}
}

// routes registers every route, and for each path a method-less fallback
// that answers 405 in JSON (a pattern with a method is more specific, so
// it wins when the method matches).
func (s *Server) routes() {
	rs := s.routeTable()
	allow := map[string][]string{}
	for _, r := range rs {
		s.mux.HandleFunc(r.method+" "+r.path, r.h)
		if allow[r.path] == nil {
			path := r.path
			s.mux.HandleFunc(path, func(w http.ResponseWriter, _ *http.Request) {
				w.Header().Set("Allow", strings.Join(allow[path], ", "))
				writeError(w, http.StatusMethodNotAllowed, errors.New("method not allowed"))
			})
		}
		allow[r.path] = append(allow[r.path], r.method)
		if r.method == "GET" {
			allow[r.path] = append(allow[r.path], "HEAD")
		}
	}
	s.mux.HandleFunc("/", func(w http.ResponseWriter, _ *http.Request) {
		writeError(w, http.StatusNotFound, errors.New("no such API endpoint"))
	})
}

// --- reading requests

// pathMAC returns the normalised {mac}, or answers 400.
func pathMAC(w http.ResponseWriter, r *http.Request) (string, bool) {
	mac, err := store.NormalizeMAC(r.PathValue("mac"))
	if err != nil {
		writeError(w, http.StatusBadRequest, fmt.Errorf("%w: %q is not a MAC address", ErrInvalid, r.PathValue("mac")))
		return "", false
	}
	return mac, true
}

// decodeBody decodes a JSON body of at most limit bytes into v, strictly
// (unknown fields and trailing data are errors). An empty body leaves v
// as is when emptyOK.
func decodeBody(w http.ResponseWriter, r *http.Request, limit int64, emptyOK bool, v any) error {
	body := http.MaxBytesReader(w, r.Body, limit)
	dec := json.NewDecoder(body)
	dec.DisallowUnknownFields()
	err := dec.Decode(v)
	if err == nil {
		if _, terr := dec.Token(); terr != io.EOF {
			err = errors.New("trailing data after the JSON object")
			if terr != nil && !isSyntax(terr) {
				err = terr
			}
		}
	}
	var tooBig *http.MaxBytesError
	switch {
	case err == nil:
		return nil
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: limit %d bytes", errTooLarge, tooBig.Limit)
	case errors.Is(err, io.EOF) && emptyOK:
		return nil
	case errors.Is(err, io.EOF):
		return fmt.Errorf("%w: empty body", ErrInvalid)
	}
	return fmt.Errorf("%w: request body: %v", ErrInvalid, err)
}

func isSyntax(err error) bool {
	var se *json.SyntaxError
	return errors.As(err, &se)
}

func checkText(what, s string) error {
	if len(s) > maxTextLen {
		return fmt.Errorf("%w: %s longer than %d bytes", ErrInvalid, what, maxTextLen)
	}
	return nil
}

// maxStaticIPs bounds the static addresses of one binding.
const maxStaticIPs = 16

// checkStaticIPs accepts at most maxStaticIPs addresses, and only with a
// MUD URL; the manager checks each address against the LAN.
func checkStaticIPs(req BindRequest) error {
	switch {
	case len(req.IPs) > maxStaticIPs:
		return fmt.Errorf("%w: %d static addresses, at most %d", ErrInvalid, len(req.IPs), maxStaticIPs)
	case len(req.IPs) > 0 && req.MUDURL == "":
		return fmt.Errorf("%w: static addresses need a MUD URL to bind", ErrInvalid)
	}
	for _, a := range req.IPs {
		if !a.IsValid() {
			return fmt.Errorf("%w: a static address is empty", ErrInvalid)
		}
	}
	return nil
}

// checkMUDURL accepts an absolute https URL (RFC 8520 §3.1).
func checkMUDURL(s string) error {
	if len(s) > maxURLLen {
		return fmt.Errorf("%w: MUD URL longer than %d bytes", ErrInvalid, maxURLLen)
	}
	u, err := url.Parse(s)
	if err != nil || u.Scheme != "https" || u.Host == "" || u.User != nil {
		return fmt.Errorf("%w: MUD URL must be an absolute https URL", ErrInvalid)
	}
	return nil
}

// --- writing responses

type errorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		writeError(w, http.StatusInternalServerError, fmt.Errorf("encode response: %w", err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Content-Length", strconv.Itoa(len(b)+1))
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, code int, err error) {
	b, _ := json.Marshal(errorBody{Error: err.Error()})
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(code)
	_, _ = w.Write(append(b, '\n'))
}

// reply writes v, or err with its status.
func (s *Server) reply(w http.ResponseWriter, r *http.Request, v any, err error) {
	if err != nil {
		code := statusOf(err)
		if errors.Is(err, errTooLarge) {
			code = http.StatusRequestEntityTooLarge
		}
		if code == http.StatusInternalServerError {
			s.log.Error("control API: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
		}
		writeError(w, code, err)
		return
	}
	writeJSON(w, http.StatusOK, v)
}

// audit records a change and who made it (RFC 8520 §16). MUD URLs are
// not included: they go to debug records only.
func (s *Server) audit(r *http.Request, action, mac string, err error, attrs ...any) {
	c := callerFrom(r.Context())
	level := slog.LevelInfo
	result := "ok"
	if err != nil {
		level, result = slog.LevelWarn, err.Error()
	}
	args := []any{"action", action, "by", c.String(), "uid", c.UID, "pid", c.PID, "result", result}
	if mac != "" {
		args = append(args, "mac", mac)
	}
	s.log.Log(r.Context(), level, "control API: admin request", append(args, attrs...)...)
}

// --- handlers

// orEmpty makes a nil list encode as [] rather than null.
func orEmpty[T any](s []T) []T {
	if s == nil {
		return []T{}
	}
	return s
}

func (s *Server) status(w http.ResponseWriter, r *http.Request) {
	st, err := s.b.Status(r.Context())
	s.reply(w, r, st, err)
}

func (s *Server) devices(w http.ResponseWriter, r *http.Request) {
	ds, err := s.b.Devices(r.Context())
	s.reply(w, r, orEmpty(ds), err)
}

func (s *Server) device(w http.ResponseWriter, r *http.Request) {
	mac, ok := pathMAC(w, r)
	if !ok {
		return
	}
	d, err := s.b.Device(r.Context(), mac)
	s.reply(w, r, d, err)
}

func (s *Server) policy(w http.ResponseWriter, r *http.Request) {
	mac, ok := pathMAC(w, r)
	if !ok {
		return
	}
	withNFT, err := boolParam(r, "nft")
	if err != nil {
		s.reply(w, r, nil, err)
		return
	}
	p, err := s.b.Policy(r.Context(), mac, withNFT)
	s.reply(w, r, p, err)
}

type actionFunc func(context.Context, Caller, string, ActionRequest) (Device, error)

func (s *Server) action(name string, fn actionFunc) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		mac, ok := pathMAC(w, r)
		if !ok {
			return
		}
		var req ActionRequest
		err := decodeBody(w, r, s.opts.MaxBody, true, &req)
		if err == nil {
			err = checkText("reason", req.Reason)
		}
		var d Device
		if err == nil {
			d, err = fn(r.Context(), callerFrom(r.Context()), mac, req)
		}
		s.audit(r, name, mac, err, "reason", req.Reason, "all_with_url", req.AllWithURL)
		s.reply(w, r, d, err)
	}
}

func (s *Server) bind(w http.ResponseWriter, r *http.Request) {
	mac, ok := pathMAC(w, r)
	if !ok {
		return
	}
	var req BindRequest
	err := decodeBody(w, r, s.opts.MaxBody, false, &req)
	if err == nil && req.MUDURL != "" {
		err = checkMUDURL(req.MUDURL)
	}
	if err == nil {
		err = checkText("reason", req.Reason)
	}
	if err == nil {
		err = checkStaticIPs(req)
	}
	var d Device
	if err == nil {
		d, err = s.b.Bind(r.Context(), callerFrom(r.Context()), mac, req)
	}
	s.audit(r, "bind", mac, err, "reason", req.Reason, "unbind", req.MUDURL == "", "ips", req.IPs)
	s.log.Debug("control API: bind", "mac", mac, "mud_url", req.MUDURL)
	s.reply(w, r, d, err)
}

func (s *Server) addOverride(w http.ResponseWriter, r *http.Request) {
	mac, ok := pathMAC(w, r)
	if !ok {
		return
	}
	var req OverrideRequest
	err := decodeBody(w, r, s.opts.MaxBody, false, &req)
	if err == nil {
		err = req.Validate()
	}
	var o Overrides
	if err == nil {
		o, err = s.b.AddOverride(r.Context(), callerFrom(r.Context()), mac, req)
	}
	s.audit(r, "override", mac, err, "verdict", req.Verdict, "direction", req.Direction,
		"peer", req.Peer, "dns_name", req.DNSName, "protocol", req.Protocol, "port", req.Port)
	s.reply(w, r, o, err)
}

func (s *Server) clearOverrides(w http.ResponseWriter, r *http.Request) {
	mac, ok := pathMAC(w, r)
	if !ok {
		return
	}
	err := s.b.ClearOverrides(r.Context(), callerFrom(r.Context()), mac)
	s.audit(r, "override-clear", mac, err)
	s.reply(w, r, struct{}{}, err)
}

func (s *Server) refresh(w http.ResponseWriter, r *http.Request) {
	mac := ""
	if r.PathValue("mac") != "" {
		var ok bool
		if mac, ok = pathMAC(w, r); !ok {
			return
		}
	}
	res, err := s.b.Refresh(r.Context(), callerFrom(r.Context()), mac)
	s.audit(r, "refresh", mac, err)
	s.reply(w, r, res, err)
}

// violations answers for one device (/v1/devices/{mac}/violations) or
// all (/v1/violations).
func (s *Server) violations(w http.ResponseWriter, r *http.Request) {
	mac := ""
	if r.PathValue("mac") != "" {
		var ok bool
		if mac, ok = pathMAC(w, r); !ok {
			return
		}
	}
	vs, err := s.b.Violations(r.Context(), mac)
	s.reply(w, r, orEmpty(vs), err)
}

func (s *Server) controllers(w http.ResponseWriter, r *http.Request) {
	cs, err := s.b.Controllers(r.Context())
	s.reply(w, r, orEmpty(cs), err)
}

func (s *Server) setController(w http.ResponseWriter, r *http.Request) {
	var req ControllerRequest
	err := decodeBody(w, r, s.opts.MaxBody, false, &req)
	var c Controller
	if err == nil {
		c, err = req.controller()
	}
	if err == nil {
		c, err = s.b.SetController(r.Context(), callerFrom(r.Context()), c)
	}
	s.audit(r, "controllers-set", "", err, "kind", c.Kind, "prefixes", len(req.Addrs))
	s.log.Debug("control API: controllers set", "uri", req.URI, "addrs", req.Addrs)
	s.reply(w, r, c, err)
}

// controller validates r and returns the mapping it asks for.
func (r ControllerRequest) controller() (Controller, error) {
	c := Controller{URI: r.URI, Kind: KindController, Prefixes: []netip.Prefix{}}
	if r.MyController {
		c.Kind = KindMyController
		if err := checkMUDURL(r.URI); err != nil {
			return c, fmt.Errorf("my-controller: %w", err)
		}
	}
	if r.URI == "" || len(r.URI) > maxURLLen {
		return c, fmt.Errorf("%w: controller URI must be 1 to %d bytes", ErrInvalid, maxURLLen)
	}
	if u, err := url.Parse(r.URI); err != nil || u.Scheme == "" {
		return c, fmt.Errorf("%w: controller %q is not an absolute URI", ErrInvalid, r.URI)
	}
	if len(r.Addrs) > maxAddrs {
		return c, fmt.Errorf("%w: more than %d addresses", ErrInvalid, maxAddrs)
	}
	for _, a := range r.Addrs {
		p, err := parsePrefix(a)
		if err != nil {
			return c, fmt.Errorf("%w: controller %s: %v", ErrInvalid, r.URI, err)
		}
		c.Prefixes = append(c.Prefixes, p)
	}
	return c, nil
}

func (s *Server) importFile(w http.ResponseWriter, r *http.Request) {
	var req ImportRequest
	err := decodeBody(w, r, s.opts.MaxImport, false, &req)
	switch {
	case err != nil:
	case len(req.File) == 0:
		err = fmt.Errorf("%w: no MUD file", ErrInvalid)
	case len(req.File) > maxImportLen || len(req.Signature) > maxImportLen:
		err = fmt.Errorf("%w: MUD file or signature larger than %d bytes", errTooLarge, maxImportLen)
	default:
		err = checkText("reason", req.Reason)
	}
	var res ImportResult
	if err == nil {
		res, err = s.b.Import(r.Context(), callerFrom(r.Context()), req)
	}
	s.audit(r, "import", "", err, "digest", store.Digest(req.File), "signed", len(req.Signature) > 0,
		"verdict", res.Signature)
	s.log.Debug("control API: import", "mud_url", res.MUDURL)
	s.reply(w, r, res, err)
}

func boolParam(r *http.Request, name string) (bool, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return false, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("%w: %s=%q: want true or false", ErrInvalid, name, v)
	}
	return b, nil
}

func uintParam(r *http.Request, name string, bits int) (uint64, error) {
	v := r.URL.Query().Get(name)
	if v == "" {
		return 0, nil
	}
	n, err := strconv.ParseUint(v, 10, bits)
	if err != nil {
		return 0, fmt.Errorf("%w: %s=%q: want a non-negative number", ErrInvalid, name, v)
	}
	return n, nil
}

// events lists events (?since=SEQ&limit=N&tail=N) or, with follow=1,
// streams them as JSON lines: the backlog, then each new event as it is
// appended, until the client goes away or the server stops.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	since, err1 := uintParam(r, "since", 64)
	limit, err2 := uintParam(r, "limit", 31)
	tail, err3 := uintParam(r, "tail", 31)
	follow, err4 := boolParam(r, "follow")
	if err := errors.Join(err1, err2, err3, err4); err != nil {
		s.reply(w, r, nil, err)
		return
	}
	ctx, cancel := context.WithCancel(r.Context())
	defer cancel()
	if stopping, ok := ctx.Value(stoppingKey).(context.Context); ok {
		defer context.AfterFunc(stopping, cancel)()
	}
	var sub <-chan Event
	if follow {
		// Subscribe before reading the backlog, so nothing falls between
		// the two; duplicates are skipped by Seq below.
		var err error
		if sub, err = s.b.SubscribeEvents(ctx); err != nil {
			s.reply(w, r, nil, fmt.Errorf("subscribe to events: %w", err))
			return
		}
	}
	if tail > 0 {
		limit = 0 // read all, keep the last tail
	}
	backlog, err := s.b.Events(ctx, since, int(limit))
	if err != nil {
		s.reply(w, r, nil, fmt.Errorf("list events: %w", err))
		return
	}
	if tail > 0 && uint64(len(backlog)) > tail {
		backlog = backlog[uint64(len(backlog))-tail:]
	}
	if !follow {
		s.reply(w, r, orEmpty(backlog), nil)
		return
	}

	w.Header().Set("Content-Type", "application/x-ndjson")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
	rc := http.NewResponseController(w)
	enc := json.NewEncoder(w)
	last := since
	for _, e := range backlog {
		if enc.Encode(e) != nil {
			return
		}
		last = e.Seq
	}
	if rc.Flush() != nil {
		return
	}
	for {
		select {
		case <-ctx.Done():
			return
		case e, ok := <-sub:
			if !ok {
				return
			}
			if e.Seq <= last {
				continue
			}
			if enc.Encode(e) != nil || rc.Flush() != nil {
				return
			}
			last = e.Seq
		}
	}
}
