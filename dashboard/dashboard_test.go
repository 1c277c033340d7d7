package dashboard

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"
	"golang.org/x/net/html"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
	"github.com/openmud/mud/policy"
)

const testPassword = "correct horse battery"

var (
	hashOnce sync.Once
	testHash string
)

// passwordHash is testPassword's hash at bcrypt's lowest cost, so the
// tests do not spend their time hashing.
func passwordHash(t testing.TB) string {
	hashOnce.Do(func() {
		h, err := hashPassword([]byte(testPassword), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		testHash = h
	})
	return testHash
}

// The hostile device: every string it has came from the network, and
// each tries to become markup.
const (
	macHostile = "02:00:00:00:00:66"
	xssHost    = `<script>alert("host")</script>`
	xssURL     = `https://evil.example/"><script>alert('url')</script>`
	xssMfg     = `<img src=x onerror=alert("mfg")>`
	xssPeer    = `"><svg onload=alert(1)>.example.com`
	xssEvent   = `</td><script>alert("event")</script>`
)

// hostileFake is the api's fake backend with one more device whose every
// string is hostile, and a policy for it naming a hostile peer.
type hostileFake struct{ *apitest.Fake }

func hostileDevice() api.Device {
	return api.Device{MAC: macHostile, Hostname: xssHost, MUDURL: xssURL, State: api.StatePendingApproval,
		Reason: xssEvent, PendingReasons: []string{xssMfg}, Enforcement: api.EnforcementUnenforced,
		UnenforcedReason: xssHost, PolicyID: "evil",
		MUD: &api.MUDInfo{URL: xssURL, MfgName: xssMfg, ModelName: xssHost, SystemInfo: xssEvent,
			Documentation: "javascript:alert(1)", Signature: api.SignatureInvalid, SignatureReason: xssMfg, Signer: xssHost,
			Transparency: &api.Transparency{SBOMs: []api.SBOM{{VersionInfo: xssMfg, URL: xssURL}},
				SBOMContactURI: "javascript:alert(1)", VulnURLs: []string{xssPeer}, VulnContactURI: xssHost}}}
}

func (h hostileFake) Devices(ctx context.Context) ([]api.Device, error) {
	ds, err := h.Fake.Devices(ctx)
	return append(ds, hostileDevice()), err
}

func (h hostileFake) Device(ctx context.Context, mac string) (api.Device, error) {
	if mac == macHostile {
		return hostileDevice(), nil
	}
	return h.Fake.Device(ctx, mac)
}

// Violations: the hostile device's one record names its peer with a
// hostile string, as a DNS answer could.
func (h hostileFake) Violations(ctx context.Context, mac string) ([]api.Violation, error) {
	if mac != macHostile {
		return h.Fake.Violations(ctx, mac)
	}
	return []api.Violation{{MAC: macHostile, Direction: api.FromDevice, Kind: api.ViolationDefaultDeny,
		Peer: netip.MustParseAddr("203.0.113.66"), PeerName: xssPeer, Protocol: "tcp", Port: 4444, Count: 1}}, nil
}

func (h hostileFake) Policy(ctx context.Context, mac string, withNFT bool) (api.PolicyView, error) {
	if mac != macHostile {
		return h.Fake.Policy(ctx, mac, withNFT)
	}
	p := api.NewCompiledPolicy(&policy.Policy{ID: "evil", MUDURL: xssURL, Notes: []string{xssEvent},
		FromDevice: []policy.Rule{{Name: xssHost, Peer: policy.Peer{Kind: policy.DNSName, Value: xssPeer}, Protocol: policy.ProtoTCP, Verdict: policy.Accept}},
		ToDevice:   []policy.Rule{{Name: xssHost, Peer: policy.Peer{Kind: policy.Manufacturer, Value: xssMfg}, Verdict: policy.Accept}}})
	return api.PolicyView{MAC: mac, PolicyID: p.ID, MUDURL: p.MUDURL, Notes: p.Notes,
		FromDevice: api.DirectionView{Rules: []api.CountedRule{{RuleView: p.FromDevice[0]}}},
		ToDevice:   api.DirectionView{Rules: []api.CountedRule{{RuleView: p.ToDevice[0]}}}}, nil
}

// env is a dashboard over the fake backend, served by httptest.
type env struct {
	t    *testing.T
	fake *apitest.Fake
	srv  *server
	ts   *httptest.Server
	// clock is the dashboard's time, moved by the tests.
	mu    sync.Mutex
	clock time.Time
}

func newEnv(t *testing.T, tls bool) *env {
	t.Helper()
	return newEnvOn(t, tls, "")
}

// newEnvOn is newEnv with mudd naming its fleet gateway (api.WithGatewayID;
// "" for a mudd in no fleet).
func newEnvOn(t *testing.T, tls bool, gateway string) *env {
	t.Helper()
	fake := apitest.NewFake()
	sock := apitest.Serve(t, api.WithGatewayID(hostileFake{fake}, gateway), api.ServerOptions{})
	client := api.NewClient(sock)
	t.Cleanup(client.Close)
	s, err := newServer(Config{PasswordHash: passwordHash(t)}, client)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, fake: fake, srv: s, clock: time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)}
	s.now = func() time.Time {
		e.mu.Lock()
		defer e.mu.Unlock()
		return e.clock
	}
	if tls {
		e.ts = httptest.NewTLSServer(s)
	} else {
		e.ts = httptest.NewServer(s)
	}
	t.Cleanup(e.ts.Close)
	return e
}

func (e *env) advance(d time.Duration) {
	e.mu.Lock()
	defer e.mu.Unlock()
	e.clock = e.clock.Add(d)
}

// browser is a client with its own cookies that does not follow
// redirects.
func (e *env) browser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	c := e.ts.Client()
	c.Jar = jar
	c.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	return c
}

type answer struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(c *http.Client, method, path string, form url.Values) answer {
	e.t.Helper()
	var body io.Reader
	if form != nil {
		body = strings.NewReader(form.Encode())
	}
	req, err := http.NewRequest(method, e.ts.URL+path, body)
	if err != nil {
		e.t.Fatal(err)
	}
	if form != nil {
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Header, string(b)}
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

func csrfOf(t *testing.T, body string) string {
	t.Helper()
	m := csrfInput.FindStringSubmatch(body)
	if m == nil {
		t.Fatalf("no CSRF token in the page:\n%s", body)
	}
	return m[1]
}

// tryLogin submits the login form with password and returns the answer.
func (e *env) tryLogin(c *http.Client, password string) answer {
	e.t.Helper()
	page := e.do(c, "GET", "/login", nil)
	if page.status != http.StatusOK {
		e.t.Fatalf("GET /login: %d", page.status)
	}
	return e.do(c, "POST", "/login", url.Values{"password": {password}, "csrf": {csrfOf(e.t, page.body)}})
}

// login logs a new browser in and returns it with the session's CSRF
// token.
func (e *env) login() (*http.Client, string) {
	e.t.Helper()
	c := e.browser()
	a := e.tryLogin(c, testPassword)
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/" {
		e.t.Fatalf("login: %d %s\n%s", a.status, a.header.Get("Location"), a.body)
	}
	page := e.do(c, "GET", "/", nil)
	if page.status != http.StatusOK {
		e.t.Fatalf("GET / after login: %d", page.status)
	}
	return c, csrfOf(e.t, page.body)
}

func (e *env) state(mac string) api.DeviceState {
	e.t.Helper()
	d, err := e.fake.Device(context.Background(), mac)
	if err != nil {
		e.t.Fatal(err)
	}
	return d.State
}

func TestPagesNeedLogin(t *testing.T) {
	e := newEnv(t, false)
	c := e.browser()
	for _, path := range []string{"/", "/devices/" + apitest.MACEnforced, "/devices/" + apitest.MACEnforced + "/policy.svg", "/pending", "/events"} {
		a := e.do(c, "GET", path, nil)
		if a.status != http.StatusSeeOther || a.header.Get("Location") != "/login" {
			t.Errorf("GET %s without login: %d to %q, want 303 to /login", path, a.status, a.header.Get("Location"))
		}
		if strings.Contains(a.body, apitest.MACEnforced) || strings.Contains(a.body, "lighting.example.com") {
			t.Errorf("GET %s without login shows the device", path)
		}
	}
	for _, path := range []string{"/devices/" + apitest.MACPending + "/approve", "/devices/" + apitest.MACPending + "/reject", "/logout"} {
		if a := e.do(c, "POST", path, url.Values{"csrf": {"x"}}); a.status != http.StatusForbidden {
			t.Errorf("POST %s without login: %d, want 403", path, a.status)
		}
	}
	if st := e.state(apitest.MACPending); st != api.StatePendingApproval {
		t.Errorf("a POST without login changed the device to %s", st)
	}
	// Assets are public: the login page needs them.
	for path, ctype := range map[string]string{"/static/style.css": "text/css", "/static/favicon.svg": "image/svg+xml"} {
		if a := e.do(c, "GET", path, nil); a.status != http.StatusOK || !strings.HasPrefix(a.header.Get("Content-Type"), ctype) {
			t.Errorf("GET %s: %d %s", path, a.status, a.header.Get("Content-Type"))
		}
	}
}

func TestWrongPasswordRefused(t *testing.T) {
	e := newEnv(t, false)
	c := e.browser()
	for _, pw := range []string{"", "wrong password", testPassword + " ", strings.Repeat("x", 200)} {
		a := e.tryLogin(c, pw)
		if a.status != http.StatusUnauthorized || !strings.Contains(a.body, "wrong password") {
			t.Errorf("login with %q: %d, want 401 and a message", pw, a.status)
		}
		if strings.Contains(a.header.Get("Set-Cookie"), sessionCookie) {
			t.Errorf("login with %q set a session cookie", pw)
		}
	}
	if a := e.do(c, "GET", "/", nil); a.status != http.StatusSeeOther {
		t.Errorf("GET / after failed logins: %d, want 303 to /login", a.status)
	}
	// The login form's own token is checked as well.
	if a := e.do(c, "POST", "/login", url.Values{"password": {testPassword}}); a.status != http.StatusForbidden {
		t.Errorf("login without the form's token: %d, want 403", a.status)
	}
}

func TestLoginRateLimit(t *testing.T) {
	e := newEnv(t, false)
	c := e.browser()
	for i := range loginFailures {
		if a := e.tryLogin(c, "guess"); a.status != http.StatusUnauthorized {
			t.Fatalf("failure %d: %d, want 401", i+1, a.status)
		}
	}
	a := e.tryLogin(c, testPassword)
	if a.status != http.StatusTooManyRequests || a.header.Get("Retry-After") == "" {
		t.Fatalf("the right password after %d failures: %d (Retry-After %q), want 429", loginFailures, a.status, a.header.Get("Retry-After"))
	}
	e.advance(loginWindow)
	if a := e.tryLogin(c, testPassword); a.status != http.StatusSeeOther {
		t.Errorf("the right password once the window passed: %d, want 303", a.status)
	}
}

func TestLoginLimiterByClient(t *testing.T) {
	l := limiter{byAddr: map[string]*window{}}
	now := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	for range loginFailures {
		l.failed("192.0.2.1", now)
	}
	if ok, _ := l.allow("192.0.2.1", now); ok {
		t.Error("a client past its failures may still try")
	}
	if ok, _ := l.allow("192.0.2.2", now); !ok {
		t.Error("another client is refused for the first one's failures")
	}
	for i := range globalFailures {
		l.failed(fmt.Sprintf("198.51.100.%d", i), now)
	}
	if ok, _ := l.allow("203.0.113.1", now); ok {
		t.Error("a new client may try past the global limit")
	}
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "[2001:db8:1:2:3:4:5:6]:4000"
	if k := clientKey(r); k != "2001:db8:1:2::/64" {
		t.Errorf("IPv6 client key %q, want its /64", k)
	}
}

func TestSessionCookie(t *testing.T) {
	for _, tls := range []bool{false, true} {
		e := newEnv(t, tls)
		c := e.browser()
		a := e.tryLogin(c, testPassword)
		var ck *http.Cookie
		for _, x := range (&http.Response{Header: a.header}).Cookies() {
			if x.Name == sessionCookie {
				ck = x
			}
		}
		if ck == nil {
			t.Fatalf("tls %v: no session cookie", tls)
		}
		if !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Secure != tls || ck.Path != "/" {
			t.Errorf("tls %v: cookie HttpOnly %v SameSite %v Secure %v Path %q", tls, ck.HttpOnly, ck.SameSite, ck.Secure, ck.Path)
		}
		if tls && a.header.Get("Strict-Transport-Security") == "" {
			t.Error("no HSTS over TLS")
		}
	}
}

func TestSessionExpiresAndLogout(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	e.advance(DefaultSessionLifetime)
	if a := e.do(c, "GET", "/", nil); a.status != http.StatusSeeOther {
		t.Errorf("GET / after the session's lifetime: %d, want 303 to /login", a.status)
	}
	c, csrf := e.login()
	if a := e.do(c, "POST", "/logout", url.Values{csrfField: {csrf}}); a.status != http.StatusSeeOther {
		t.Fatalf("logout: %d", a.status)
	}
	if a := e.do(c, "GET", "/", nil); a.status != http.StatusSeeOther {
		t.Errorf("GET / after logout: %d, want 303 to /login", a.status)
	}
}

func TestWritesNeedCSRFToken(t *testing.T) {
	e := newEnv(t, false)
	c, csrf := e.login()
	approve := "/devices/" + apitest.MACPending + "/approve"
	for name, form := range map[string]url.Values{
		"missing": {},
		"empty":   {csrfField: {""}},
		"wrong":   {csrfField: {flipFirst(csrf)}},
		"other":   {csrfField: {newToken()}},
	} {
		for _, path := range []string{approve, "/devices/" + apitest.MACPending + "/reject", "/logout"} {
			if a := e.do(c, "POST", path, form); a.status != http.StatusForbidden || !strings.Contains(a.body, "CSRF") {
				t.Errorf("POST %s with the token %s: %d, want 403", path, name, a.status)
			}
		}
	}
	if st := e.state(apitest.MACPending); st != api.StatePendingApproval {
		t.Errorf("a write without the token changed the device to %s", st)
	}
	if a := e.do(c, "GET", "/", nil); a.status != http.StatusOK {
		t.Errorf("the session ended on a logout without the token: %d", a.status)
	}
	// A cross-site form carries the browser's cookies but not the
	// token; even with it, the browser's Sec-Fetch-Site gives it away.
	req, _ := http.NewRequest("POST", e.ts.URL+approve, strings.NewReader(url.Values{csrfField: {csrf}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || e.state(apitest.MACPending) != api.StatePendingApproval {
		t.Errorf("cross-site POST: %d, state %s", resp.StatusCode, e.state(apitest.MACPending))
	}
}

// flipFirst changes a token's first character. (Not the last: of 32
// bytes in unpadded base64 the last character carries two bits, so it
// is one of only four letters.)
func flipFirst(tok string) string {
	c := byte('A')
	if tok[0] == c {
		c = 'B'
	}
	return string(c) + tok[1:]
}

func TestApproveThroughAPI(t *testing.T) {
	e := newEnv(t, false)
	c, csrf := e.login()
	pending := e.do(c, "GET", "/pending", nil)
	if !strings.Contains(pending.body, apitest.MACPending) || strings.Contains(pending.body, apitest.MACEnforced) {
		t.Fatalf("the pending page does not list exactly the pending devices:\n%s", pending.body)
	}
	a := e.do(c, "POST", "/devices/"+apitest.MACPending+"/approve", url.Values{csrfField: {csrf}, "reason": {"checked the vendor"}})
	if a.status != http.StatusSeeOther || a.header.Get("Location") != "/pending" {
		t.Fatalf("approve: %d to %q\n%s", a.status, a.header.Get("Location"), a.body)
	}
	if st := e.state(apitest.MACPending); st != api.StateEnforced {
		t.Fatalf("after approve the device is %s, want enforced", st)
	}
	after := e.do(c, "GET", "/pending", nil)
	if !strings.Contains(after.body, apitest.MACPending+": MUD file approved") {
		t.Errorf("no confirmation after approving:\n%s", after.body)
	}
	if strings.Contains(after.body, `action="/devices/`+apitest.MACPending+`/approve"`) {
		t.Error("the approved device is still offered for approval")
	}
	// The daemon's refusal is shown, with its status.
	a = e.do(c, "POST", "/devices/"+apitest.MACPending+"/reject", url.Values{csrfField: {csrf}, "from": {"device"}})
	if a.status != http.StatusConflict || !strings.Contains(a.body, "not pending approval") {
		t.Errorf("rejecting an enforced device: %d\n%s", a.status, a.body)
	}
	// A device page's form comes back to the device.
	a = e.do(c, "POST", "/devices/"+macHostile+"/reject", url.Values{csrfField: {csrf}, "from": {"device"}})
	if a.status == http.StatusSeeOther && a.header.Get("Location") != "/devices/"+macHostile {
		t.Errorf("reject from the device page goes to %q", a.header.Get("Location"))
	}
	if a := e.do(c, "POST", "/devices/not-a-mac/approve", url.Values{csrfField: {csrf}}); a.status != http.StatusBadRequest {
		t.Errorf("approve of a bad MAC: %d, want 400", a.status)
	}
	if a := e.do(c, "GET", "/devices/"+apitest.MACUnknown, nil); a.status != http.StatusNotFound {
		t.Errorf("an unknown device: %d, want 404", a.status)
	}
}

// TestHostileStringsEscaped: what devices and MUD files say is shown as
// text on every page: no element, attribute or URL of it gets into the
// document.
func TestHostileStringsEscaped(t *testing.T) {
	e := newEnv(t, false)
	e.fake.Publish(macHostile, "state", xssEvent)
	e.srv.hasDot = func() bool { return false }
	c, _ := e.login()
	for _, path := range []string{"/", "/devices/" + macHostile, "/pending", "/events"} {
		a := e.do(c, "GET", path, nil)
		if a.status != http.StatusOK {
			t.Fatalf("GET %s: %d", path, a.status)
		}
		checkInert(t, path, a.body)
		for _, s := range []string{xssHost, xssMfg} {
			if !strings.Contains(a.body, html.EscapeString(s)) && path != "/events" {
				t.Errorf("GET %s does not show %q as text", path, s)
			}
		}
	}
	dev := e.do(c, "GET", "/devices/"+macHostile, nil)
	for _, s := range []string{xssURL, xssPeer, xssEvent, "version " + xssMfg + ": " + xssURL} {
		if !strings.Contains(dev.body, html.EscapeString(s)) {
			t.Errorf("the device page does not show %q as text", s)
		}
	}
}

// checkInert parses a page as a browser would and fails on any script
// element, event-handler attribute, javascript: URL, or element that the
// dashboard's templates do not write.
func checkInert(t *testing.T, path, body string) {
	t.Helper()
	allowed := map[string]bool{}
	for _, tag := range strings.Fields("html head meta title link body header span nav a form input button main p h1 h2 table thead tbody tr th td small br section dl dt dd ul li div label strong figure img") {
		allowed[tag] = true
	}
	z := html.NewTokenizer(strings.NewReader(body))
	for {
		tt := z.Next()
		if tt == html.ErrorToken {
			return
		}
		if tt != html.StartTagToken && tt != html.SelfClosingTagToken {
			continue
		}
		tok := z.Token()
		if !allowed[tok.Data] {
			t.Errorf("GET %s: element <%s> in the page", path, tok.Data)
		}
		for _, a := range tok.Attr {
			if strings.HasPrefix(a.Key, "on") || strings.Contains(strings.ToLower(a.Val), "javascript:") {
				t.Errorf("GET %s: attribute %s=%q on <%s>", path, a.Key, a.Val, tok.Data)
			}
		}
	}
}

// The devices page shows the enforcer's counters (nft.device_counters)
// of the devices that have them.
func TestDevicesPageCounters(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	page := e.do(c, "GET", "/", nil)
	for _, want := range []string{"<th>Sent / dropped</th>", `<td class="num">1200 / 3</td><td class="num">1100 / 1</td>`, "<td>—</td><td>—</td>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("devices page lacks %q:\n%s", want, page.body)
		}
	}
}

// The devices page has a Gateway column, and a device's page its
// gateway, when mudd is a gateway of a fleet; a mudd in no fleet shows
// neither.
func TestDevicesPageGatewayColumn(t *testing.T) {
	fleet := newEnvOn(t, false, "gw1")
	c, _ := fleet.login()
	page := fleet.do(c, "GET", "/", nil)
	if !strings.Contains(page.body, "<thead><tr><th>Gateway</th><th>MAC</th>") ||
		strings.Count(page.body, `<td class="gateway">gw1</td>`) != 3 {
		t.Errorf("devices page of gateway gw1:\n%s", page.body)
	}
	dev := fleet.do(c, "GET", "/devices/"+apitest.MACEnforced, nil)
	if !strings.Contains(dev.body, "<dt>Gateway</dt><dd>gw1</dd>") {
		t.Errorf("device page of gateway gw1:\n%s", dev.body)
	}

	alone := newEnv(t, false)
	c, _ = alone.login()
	page = alone.do(c, "GET", "/", nil)
	dev = alone.do(c, "GET", "/devices/"+apitest.MACEnforced, nil)
	for _, body := range []string{page.body, dev.body} {
		if strings.Contains(body, "Gateway") || strings.Contains(body, "gateway") {
			t.Errorf("a mudd in no fleet shows a gateway:\n%s", body)
		}
	}
}

func TestDevicePagePolicy(t *testing.T) {
	e := newEnv(t, false)
	c, _ := e.login()
	e.srv.hasDot = func() bool { return false }
	page := e.do(c, "GET", "/devices/"+apitest.MACEnforced, nil)
	for _, want := range []string{"service.example.com", "from-device #1 TCP port 443 IPv4", "Example Lighting", "anything else",
		// RFC 9472 transparency and RFC 9761's (D)TLS profile flag.
		"version 1.2: https://lighting.example.com/sbom/bulb2000-1.2.cdx.json", "https://lighting.example.com/csaf/bulb2000.json",
		"<dt>(D)TLS profile</dt><dd>supported by the device",
		// The enforcer's counters (nft.device_counters).
		"<dt>Sent</dt><dd>1200 packets, 180000 bytes · dropped 3 packets, 180 bytes</dd>"} {
		if !strings.Contains(page.body, want) {
			t.Errorf("device page lacks %q", want)
		}
	}
	if other := e.do(c, "GET", "/devices/"+apitest.MACPending, nil); strings.Contains(other.body, "SBOM") || strings.Contains(other.body, "TLS profile") {
		t.Error("the page of a device whose file says nothing of SBOMs or (D)TLS profiles shows them")
	}
	if strings.Contains(page.body, "policy.svg") {
		t.Error("the page shows a picture without Graphviz")
	}
	pending := e.do(c, "GET", "/devices/"+apitest.MACPending, nil)
	if !strings.Contains(pending.body, "no policy is installed") || !strings.Contains(pending.body, `/devices/`+apitest.MACPending+`/approve`) {
		t.Errorf("the pending device's page lacks its state or the approve form:\n%s", pending.body)
	}
	if _, err := exec.LookPath("dot"); err != nil {
		if os.Getenv("CI") == "" {
			t.Skip("graphviz is not installed: the picture is not checked (scripts/install-deps.sh installs it; CI fails instead)")
		}
		t.Fatal("graphviz's dot is not on PATH")
	}
	e.srv.hasDot = func() bool { return true }
	page = e.do(c, "GET", "/devices/"+apitest.MACEnforced, nil)
	if !strings.Contains(page.body, `<img src="/devices/`+apitest.MACEnforced+`/policy.svg"`) {
		t.Error("the page does not show the picture with Graphviz")
	}
	svg := e.do(c, "GET", "/devices/"+apitest.MACEnforced+"/policy.svg", nil)
	if svg.status != http.StatusOK || svg.header.Get("Content-Type") != "image/svg+xml" || !strings.Contains(svg.body, "service.example.com") {
		t.Errorf("policy.svg: %d %s", svg.status, svg.header.Get("Content-Type"))
	}
	if !strings.Contains(svg.header.Get("Content-Security-Policy"), "default-src 'none'") {
		t.Error("policy.svg is served without a CSP that forbids scripts")
	}
	hostile := e.do(c, "GET", "/devices/"+macHostile+"/policy.svg", nil)
	if hostile.status != http.StatusOK || strings.Contains(hostile.body, "<script") || strings.Contains(hostile.body, "<svg onload") {
		t.Errorf("the hostile device's picture: %d, holds markup from the network", hostile.status)
	}
}

func TestConfig(t *testing.T) {
	h := passwordHash(t)
	for _, c := range []Config{
		{},
		{PasswordHash: "plaintext"},
		{PasswordHash: h, Listen: "0.0.0.0:8413"},
		{PasswordHash: h, Listen: "[::]:8413"},
		{PasswordHash: h, Listen: "192.0.2.1:8413", TLSCert: "cert.pem"},
		{PasswordHash: h, SessionLifetime: time.Second},
		{PasswordHash: h, Listen: "no-port"},
	} {
		if _, err := New(c, api.NewClient("/nonexistent")); err == nil {
			t.Errorf("New accepted %+v", c)
		}
	}
	for _, c := range []Config{
		{PasswordHash: h},
		{PasswordHash: h, Listen: "[::1]:9000"},
		{PasswordHash: h, Listen: "localhost:9000"},
		{PasswordHash: h, Listen: "192.0.2.1:8413", TLSCert: "cert.pem", TLSKey: "key.pem"},
	} {
		if err := c.Validate(); err != nil {
			t.Errorf("Validate(%+v): %v", c, err)
		}
	}
	if _, err := New(Config{PasswordHash: h}, nil); err == nil {
		t.Error("New accepted no client")
	}
	if got, _ := (Config{PasswordHash: h}).withDefaults(); got.Listen != DefaultListen || !isLoopback("127.0.0.1") {
		t.Errorf("default listen %q", got.Listen)
	}
}

func TestHashPassword(t *testing.T) {
	h, err := HashPassword([]byte("a long passphrase"))
	if err != nil {
		t.Fatal(err)
	}
	if cost, err := bcrypt.Cost([]byte(h)); err != nil || cost != PasswordCost {
		t.Errorf("cost %d, %v", cost, err)
	}
	if bcrypt.CompareHashAndPassword([]byte(h), []byte("a long passphrase")) != nil {
		t.Error("the hash does not match its password")
	}
	for _, pw := range []string{"short", strings.Repeat("x", MaxPasswordLen+1)} {
		if _, err := HashPassword([]byte(pw)); err == nil {
			t.Errorf("HashPassword accepted a password of %d bytes", len(pw))
		}
	}
}

func TestSecurityHeaders(t *testing.T) {
	e := newEnv(t, false)
	a := e.do(e.browser(), "GET", "/login", nil)
	for k, want := range map[string]string{
		"Content-Security-Policy": "default-src 'none'",
		"X-Content-Type-Options":  "nosniff",
		"X-Frame-Options":         "DENY",
		"Cache-Control":           "no-store",
	} {
		if !strings.Contains(a.header.Get(k), want) {
			t.Errorf("%s: %q, want %q", k, a.header.Get(k), want)
		}
	}
	if strings.Contains(a.body, "http://") || strings.Contains(a.body, "https://") {
		t.Error("the login page refers to another site")
	}
}
