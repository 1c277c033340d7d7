package dashboard

import (
	"context"
	"embed"
	"errors"
	"fmt"
	"html/template"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"strings"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/policy/graph"
	"github.com/openmud/mud/policy/graph/apigraph"
)

// Client is what the dashboard asks mudd, through the control API: the
// methods of *api.Client it uses.
type Client interface {
	Status(ctx context.Context) (api.Status, error)
	Devices(ctx context.Context) ([]api.Device, error)
	Device(ctx context.Context, mac string) (api.Device, error)
	Policy(ctx context.Context, mac string, withNFT bool) (api.PolicyView, error)
	Events(ctx context.Context, q api.EventsQuery) ([]api.Event, error)
	Violations(ctx context.Context, mac string) ([]api.Violation, error)
	Approve(ctx context.Context, mac string, req api.ActionRequest) (api.Device, error)
	Reject(ctx context.Context, mac string, req api.ActionRequest) (api.Device, error)
}

var _ Client = (*api.Client)(nil)

//go:embed templates/*.html
var templateFS embed.FS

//go:embed static
var staticFS embed.FS

// Cookie and form field names.
const (
	sessionCookie = "mud_session"
	loginCookie   = "mud_login" // the login form's CSRF token (double submit)
	csrfField     = "csrf"
	// maxForm bounds a form's body.
	maxForm = 16 << 10
	// apiTimeout bounds each page's requests to mudd; svgTimeout the
	// drawing of a policy.
	apiTimeout = 10 * time.Second
	svgTimeout = 15 * time.Second
	// recentEvents is how many events the events page shows; deviceEvents
	// how many of a device's its page shows, out of the last scanEvents.
	recentEvents = 200
	deviceEvents = 20
	// deviceViolations is how many violation records a device page shows.
	deviceViolations = 20
	scanEvents       = 1000
)

// server is the dashboard's http.Handler.
type server struct {
	cfg      Config
	client   Client
	mux      *http.ServeMux
	pages    map[string]*template.Template
	sessions sessions
	limiter  limiter
	now      func() time.Time
	// hasDot says whether Graphviz's dot is installed (checked per page:
	// it may be installed while mudd runs).
	hasDot func() bool
	log    *slog.Logger
}

// New returns the dashboard over a control API client (an *api.Client on
// mudd's socket). It is off unless the daemon serves it; cfg must hold a
// password hash.
func New(cfg Config, client Client) (http.Handler, error) {
	s, err := newServer(cfg, client)
	if err != nil {
		return nil, err
	}
	return s, nil
}

func newServer(cfg Config, client Client) (*server, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	if client == nil {
		return nil, errors.New("dashboard: no control API client")
	}
	s := &server{cfg: cfg, client: client, mux: http.NewServeMux(), pages: map[string]*template.Template{},
		sessions: sessions{byID: map[[32]byte]*session{}}, limiter: limiter{byAddr: map[string]*window{}},
		now:    time.Now,
		hasDot: func() bool { _, err := graph.DotPath(); return err == nil },
		log:    slog.Default().With("component", "dashboard")}
	layout, err := template.New("layout.html").Funcs(funcs).ParseFS(templateFS, "templates/layout.html", "templates/partials.html")
	if err != nil {
		return nil, err
	}
	for _, page := range []string{"login", "devices", "device", "pending", "events", "error"} {
		t, err := template.Must(layout.Clone()).ParseFS(templateFS, "templates/"+page+".html")
		if err != nil {
			return nil, err
		}
		s.pages[page] = t
	}
	static, _ := fs.Sub(staticFS, "static")
	s.mux.Handle("GET /static/", http.StripPrefix("/static/", http.FileServerFS(static)))
	s.mux.HandleFunc("GET /favicon.ico", func(w http.ResponseWriter, r *http.Request) {
		http.Redirect(w, r, "/static/favicon.svg", http.StatusMovedPermanently)
	})
	s.mux.HandleFunc("GET /login", s.loginPage)
	s.mux.HandleFunc("POST /login", s.login)
	s.mux.HandleFunc("POST /logout", s.authed(s.logout))
	s.mux.HandleFunc("GET /{$}", s.authed(s.devicesPage))
	s.mux.HandleFunc("GET /devices/{mac}", s.authed(s.devicePage))
	s.mux.HandleFunc("GET /devices/{mac}/policy.svg", s.authed(s.policySVG))
	s.mux.HandleFunc("POST /devices/{mac}/approve", s.authed(s.decide(true)))
	s.mux.HandleFunc("POST /devices/{mac}/reject", s.authed(s.decide(false)))
	s.mux.HandleFunc("GET /pending", s.authed(s.pendingPage))
	s.mux.HandleFunc("GET /events", s.authed(s.eventsPage))
	return s, nil
}

// ServeHTTP sets the security headers of every answer and refuses
// cross-origin writes (Sec-Fetch-Site, Origin) before any handler runs.
func (s *server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("X-Frame-Options", "DENY")
	h.Set("Referrer-Policy", "no-referrer")
	h.Set("Cross-Origin-Opener-Policy", "same-origin")
	h.Set("Cache-Control", "no-store")
	if s.secure(r) {
		h.Set("Strict-Transport-Security", "max-age=31536000")
	}
	if err := crossOrigin.Check(r); err != nil {
		http.Error(w, "cross-origin request refused", http.StatusForbidden)
		return
	}
	s.mux.ServeHTTP(w, r)
}

var crossOrigin = http.NewCrossOriginProtection()

// secure says whether cookies must be Secure: the dashboard is served over
// TLS.
func (s *server) secure(r *http.Request) bool {
	return r.TLS != nil || s.cfg.TLSCert != ""
}

// handler is a page or an action of a logged-in administrator.
type handler func(w http.ResponseWriter, r *http.Request, sess *session)

// authed runs h for a logged-in administrator; a page without a session
// goes to the login page, a write is refused. Every POST needs the
// session's CSRF token.
func (s *server) authed(h handler) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var sess *session
		if c, err := r.Cookie(sessionCookie); err == nil {
			sess = s.sessions.get(c.Value, s.now())
		}
		if sess == nil {
			if r.Method == http.MethodGet || r.Method == http.MethodHead {
				http.Redirect(w, r, "/login", http.StatusSeeOther)
				return
			}
			s.errorPage(w, r, nil, http.StatusForbidden, "not logged in (or the session has expired)")
			return
		}
		if r.Method == http.MethodPost {
			r.Body = http.MaxBytesReader(w, r.Body, maxForm)
			if err := r.ParseForm(); err != nil || !sameToken(r.PostForm.Get(csrfField), sess.csrf) {
				s.errorPage(w, r, sess, http.StatusForbidden, "the form's CSRF token is missing or wrong: reload the page and try again")
				return
			}
		}
		h(w, r, sess)
	}
}

// clientKey is what login attempts are counted by: the client's address,
// or its /64 for IPv6 (one host usually holds a whole /64).
func clientKey(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		host = r.RemoteAddr
	}
	a, err := netip.ParseAddr(host)
	if err != nil {
		return host
	}
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}

func (s *server) setCookie(w http.ResponseWriter, r *http.Request, name, value string, maxAge int) {
	http.SetCookie(w, &http.Cookie{Name: name, Value: value, Path: "/", MaxAge: maxAge,
		HttpOnly: true, SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
}

type loginData struct {
	CSRF    string
	Message string
}

func (s *server) loginPage(w http.ResponseWriter, r *http.Request) {
	s.showLogin(w, r, http.StatusOK, "")
}

// showLogin renders the login form with a new CSRF token, set as a cookie
// too (double submit: a page of another site can neither read nor set it).
func (s *server) showLogin(w http.ResponseWriter, r *http.Request, status int, msg string) {
	tok := newToken()
	s.setCookie(w, r, loginCookie, tok, 3600)
	s.render(w, r, status, "login", nil, "Log in", loginData{CSRF: tok, Message: msg})
}

func (s *server) login(w http.ResponseWriter, r *http.Request) {
	r.Body = http.MaxBytesReader(w, r.Body, maxForm)
	if err := r.ParseForm(); err != nil {
		s.showLogin(w, r, http.StatusBadRequest, "the form could not be read")
		return
	}
	c, err := r.Cookie(loginCookie)
	if err != nil || !sameToken(r.PostForm.Get(csrfField), c.Value) {
		s.showLogin(w, r, http.StatusForbidden, "the login form expired: try again")
		return
	}
	key, now := clientKey(r), s.now()
	if ok, until := s.limiter.allow(key, now); !ok {
		wait := max(until.Sub(now).Round(time.Second), time.Second)
		w.Header().Set("Retry-After", fmt.Sprint(int(wait.Seconds())))
		s.showLogin(w, r, http.StatusTooManyRequests, fmt.Sprintf("too many failed logins: try again in %s", wait))
		return
	}
	pw := r.PostForm.Get("password")
	if len(pw) > MaxPasswordLen || bcrypt.CompareHashAndPassword([]byte(s.cfg.PasswordHash), []byte(pw)) != nil {
		s.limiter.failed(key, now)
		s.log.Warn("dashboard login failed", "client", key)
		s.showLogin(w, r, http.StatusUnauthorized, "wrong password")
		return
	}
	s.limiter.succeeded(key)
	tok, _ := s.sessions.create(now, s.cfg.SessionLifetime)
	s.setCookie(w, r, sessionCookie, tok, int(s.cfg.SessionLifetime.Seconds()))
	s.setCookie(w, r, loginCookie, "", -1)
	s.log.Info("dashboard login", "client", key)
	http.Redirect(w, r, "/", http.StatusSeeOther)
}

func (s *server) logout(w http.ResponseWriter, r *http.Request, _ *session) {
	if c, err := r.Cookie(sessionCookie); err == nil {
		s.sessions.remove(c.Value)
	}
	s.setCookie(w, r, sessionCookie, "", -1)
	http.Redirect(w, r, "/login", http.StatusSeeOther)
}

// page is what every page's template gets.
type page struct {
	Title string
	CSRF  string // empty on the login page
	Flash string
	Nav   string
	Data  any
}

func (s *server) render(w http.ResponseWriter, r *http.Request, status int, name string, sess *session, title string, data any) {
	p := page{Title: title, Nav: name, Data: data}
	if sess != nil {
		p.CSRF, p.Flash = sess.csrf, s.sessions.takeFlash(sess)
	}
	var b strings.Builder
	if err := s.pages[name].ExecuteTemplate(&b, "layout.html", p); err != nil {
		s.log.Error("dashboard template", "page", name, "err", err)
		http.Error(w, "internal error", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(status)
	if r.Method != http.MethodHead {
		_, _ = w.Write([]byte(b.String()))
	}
}

// errorPage shows what went wrong, with the status that fits.
func (s *server) errorPage(w http.ResponseWriter, r *http.Request, sess *session, status int, msg string) {
	s.render(w, r, status, "error", sess, http.StatusText(status), msg)
}

// apiError shows a failed request to mudd.
func (s *server) apiError(w http.ResponseWriter, r *http.Request, sess *session, err error) {
	status := http.StatusBadGateway
	switch {
	case errors.Is(err, api.ErrNotFound):
		status = http.StatusNotFound
	case errors.Is(err, api.ErrConflict):
		status = http.StatusConflict
	case errors.Is(err, api.ErrInvalid):
		status = http.StatusBadRequest
	case errors.Is(err, api.ErrUnavailable):
		status = http.StatusServiceUnavailable
		err = errors.New("mudd does not answer on its control socket")
	}
	s.errorPage(w, r, sess, status, err.Error())
}

func (s *server) ctx(r *http.Request) (context.Context, context.CancelFunc) {
	return context.WithTimeout(r.Context(), apiTimeout)
}

type devicesData struct {
	Status  api.Status
	Devices []api.Device
	Pending int
	// Counted: mudd counts devices' packets (nft.device_counters).
	Counted bool
	// Gateways: mudd is a gateway of a fleet and names it with its
	// devices (store.backend etcd); the Gateway column is shown.
	Gateways bool
}

func (s *server) devicesPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	st, err := s.client.Status(ctx)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	ds, err := s.client.Devices(ctx)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	s.render(w, r, http.StatusOK, "devices", sess, "Devices", devicesData{Status: st, Devices: ds, Pending: pendingCount(ds),
		Counted:  slices.ContainsFunc(ds, func(d api.Device) bool { return d.Counters != nil }),
		Gateways: slices.ContainsFunc(ds, func(d api.Device) bool { return d.Gateway != "" })})
}

func pendingCount(ds []api.Device) int {
	n := 0
	for _, d := range ds {
		if d.State == api.StatePendingApproval {
			n++
		}
	}
	return n
}

// mac is the {mac} of the path, checked and spelt as the API answers.
func (s *server) mac(w http.ResponseWriter, r *http.Request, sess *session) (string, bool) {
	hw, err := net.ParseMAC(r.PathValue("mac"))
	if err != nil || len(hw) != 6 {
		s.errorPage(w, r, sess, http.StatusBadRequest, "not a MAC address")
		return "", false
	}
	return hw.String(), true
}

type deviceData struct {
	Device api.Device
	// Graph is the policy for the list of peers, PolicyError why there
	// is none; Picture says the SVG can be drawn.
	Graph       *graph.Graph
	PolicyError string
	Picture     bool
	Events      []api.Event
	// Violations are its most recently seen violation records.
	Violations []api.Violation
}

func (s *server) devicePage(w http.ResponseWriter, r *http.Request, sess *session) {
	mac, ok := s.mac(w, r, sess)
	if !ok {
		return
	}
	ctx, cancel := s.ctx(r)
	defer cancel()
	d, err := s.client.Device(ctx, mac)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	data := deviceData{Device: d}
	v, err := s.client.Policy(ctx, mac, false)
	switch {
	case errors.Is(err, api.ErrNotFound):
		data.PolicyError = "no policy is installed for this device"
	case err != nil:
		s.apiError(w, r, sess, err)
		return
	default:
		if g, err := apigraph.Build(v, deviceLabel(d)); err != nil {
			data.PolicyError = "the policy cannot be drawn: " + err.Error()
		} else {
			data.Graph, data.Picture = g, s.hasDot()
		}
	}
	vs, err := s.client.Violations(ctx, mac)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	data.Violations = vs[:min(len(vs), deviceViolations)]
	evs, err := s.client.Events(ctx, api.EventsQuery{Tail: scanEvents})
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	for i := len(evs) - 1; i >= 0 && len(data.Events) < deviceEvents; i-- {
		if evs[i].MAC == mac {
			data.Events = append(data.Events, evs[i])
		}
	}
	s.render(w, r, http.StatusOK, "device", sess, "Device "+mac, data)
}

// deviceLabel names a device in its picture: its MAC and host name.
func deviceLabel(d api.Device) string {
	if d.Hostname != "" {
		return d.MAC + " (" + d.Hostname + ")"
	}
	return d.MAC
}

// policySVG draws the device's policy with Graphviz. It is shown with
// <img>, where no script of it could run; its own CSP forbids scripts too.
func (s *server) policySVG(w http.ResponseWriter, r *http.Request, sess *session) {
	mac, ok := s.mac(w, r, sess)
	if !ok {
		return
	}
	ctx, cancel := context.WithTimeout(r.Context(), svgTimeout)
	defer cancel()
	d, err := s.client.Device(ctx, mac)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	v, err := s.client.Policy(ctx, mac, false)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	dot, err := apigraph.DOT(v, deviceLabel(d))
	if err != nil {
		s.errorPage(w, r, sess, http.StatusBadGateway, err.Error())
		return
	}
	svg, err := graph.SVG(ctx, dot)
	if err != nil {
		status := http.StatusInternalServerError
		if errors.Is(err, graph.ErrNoGraphviz) {
			status = http.StatusNotFound
		}
		s.errorPage(w, r, sess, status, err.Error())
		return
	}
	w.Header().Set("Content-Type", "image/svg+xml")
	w.Header().Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	_, _ = w.Write(svg)
}

// decide approves or rejects a pending device's MUD file.
func (s *server) decide(approve bool) handler {
	return func(w http.ResponseWriter, r *http.Request, sess *session) {
		mac, ok := s.mac(w, r, sess)
		if !ok {
			return
		}
		req := api.ActionRequest{Reason: strings.TrimSpace(r.PostForm.Get("reason"))}
		if len(req.Reason) > 1024 {
			s.errorPage(w, r, sess, http.StatusBadRequest, "the reason is longer than 1024 bytes")
			return
		}
		ctx, cancel := s.ctx(r)
		defer cancel()
		var err error
		verb := "approved"
		if approve {
			req.AllWithURL = r.PostForm.Get("all_with_url") == "on"
			_, err = s.client.Approve(ctx, mac, req)
		} else {
			verb = "rejected"
			_, err = s.client.Reject(ctx, mac, req)
		}
		if err != nil {
			s.apiError(w, r, sess, err)
			return
		}
		s.sessions.setFlash(sess, fmt.Sprintf("%s: MUD file %s", mac, verb))
		s.log.Info("dashboard "+verb, "mac", mac)
		next := "/pending"
		if r.PostForm.Get("from") == "device" {
			next = "/devices/" + mac
		}
		http.Redirect(w, r, next, http.StatusSeeOther)
	}
}

func (s *server) pendingPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	ds, err := s.client.Devices(ctx)
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	ds = slices.DeleteFunc(ds, func(d api.Device) bool { return d.State != api.StatePendingApproval })
	s.render(w, r, http.StatusOK, "pending", sess, "Pending approvals", ds)
}

func (s *server) eventsPage(w http.ResponseWriter, r *http.Request, sess *session) {
	ctx, cancel := s.ctx(r)
	defer cancel()
	evs, err := s.client.Events(ctx, api.EventsQuery{Tail: recentEvents})
	if err != nil {
		s.apiError(w, r, sess, err)
		return
	}
	slices.Reverse(evs)
	s.render(w, r, http.StatusOK, "events", sess, "Events", evs)
}

// funcs are the templates' helpers.
var funcs = template.FuncMap{
	"when": func(t time.Time) string {
		if t.IsZero() {
			return "—"
		}
		return t.UTC().Format("2006-01-02 15:04:05Z")
	},
	"deviceURL": func(mac string) string { return "/devices/" + mac },
	// isTrue is the value of an optional boolean (a nil one is false).
	"isTrue": func(b *bool) bool { return b != nil && *b },
	// dict passes several values to a template: dict "K1" v1 "K2" v2.
	"dict": func(kv ...any) (map[string]any, error) {
		if len(kv)%2 != 0 {
			return nil, errors.New("dict: odd number of arguments")
		}
		m := map[string]any{}
		for i := 0; i < len(kv); i += 2 {
			k, ok := kv[i].(string)
			if !ok {
				return nil, errors.New("dict: a key is not a string")
			}
			m[k] = kv[i+1]
		}
		return m, nil
	},
}

// ListenAndServe serves h (from New) on cfg.Listen until ctx is done,
// over TLS when cfg has a certificate.
func ListenAndServe(ctx context.Context, cfg Config, h http.Handler) error {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return err
	}
	srv := &http.Server{Addr: cfg.Listen, Handler: h, ReadHeaderTimeout: 10 * time.Second,
		ReadTimeout: 30 * time.Second, WriteTimeout: time.Minute, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10}
	ln, err := net.Listen("tcp", cfg.Listen)
	if err != nil {
		return fmt.Errorf("dashboard: %w", err)
	}
	done := make(chan error, 1)
	go func() {
		if cfg.TLSCert != "" {
			done <- srv.ServeTLS(ln, cfg.TLSCert, cfg.TLSKey)
		} else {
			done <- srv.Serve(ln)
		}
	}()
	select {
	case err := <-done:
		return fmt.Errorf("dashboard: %w", err)
	case <-ctx.Done():
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = srv.Shutdown(sctx)
		<-done
		return nil
	}
}
