package api_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// syncBuffer is a bytes.Buffer safe for the server's concurrent logging.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// testServer is a Server on a real unix socket in a temporary directory,
// backed by a fakeBackend.
type testServer struct {
	fake   *apitest.Fake
	sock   string
	logs   *syncBuffer
	client *api.Client
	raw    *http.Client // plain HTTP over the socket, for status checks
}

func currentGroup(t *testing.T) string {
	t.Helper()
	g, err := user.LookupGroupId(strconv.Itoa(os.Getgid()))
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("current gid %d has no group name in CI: %v", os.Getgid(), err)
		}
		t.Skipf("current gid %d has no group name: %v", os.Getgid(), err)
	}
	return g.Name
}

func startServer(t *testing.T, opts api.ServerOptions) *testServer {
	t.Helper()
	ts := &testServer{fake: apitest.NewFake(), logs: &syncBuffer{}}
	ts.sock = filepath.Join(t.TempDir(), "run", "mudd.sock")
	ln, err := api.Listen(ts.sock, currentGroup(t))
	if err != nil {
		t.Fatal(err)
	}
	opts.Logger = slog.New(slog.NewJSONHandler(ts.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- api.NewServer(ts.fake, opts).Serve(ctx, ln) }()
	ts.client = api.NewClient(ts.sock)
	ts.raw = &http.Client{Transport: &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", ts.sock)
		},
	}}
	t.Cleanup(func() {
		ts.client.Close()
		ts.raw.CloseIdleConnections()
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return ts
}

// call sends a raw request and returns the status and body.
func (ts *testServer) call(t *testing.T, method, path, body string) (int, []byte, http.Header) {
	t.Helper()
	var r io.Reader
	if body != "" {
		r = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://mudd"+path, r)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := ts.raw.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, b, resp.Header
}

// TestRoutes checks every route's happy path and its errors, and that
// every error answer is a JSON {"error": ...} body.
func TestRoutes(t *testing.T) {
	ts := startServer(t, api.ServerOptions{MaxImport: 64 << 10})
	dev := "/v1/devices/" + apitest.MACEnforced
	pend := "/v1/devices/" + apitest.MACPending
	unk := "/v1/devices/" + apitest.MACUnknown
	big := `{"reason":"` + strings.Repeat("x", api.DefaultMaxBody) + `"}`
	mudFile := `{"ietf-mud:mud":{"mud-url":"https://lighting.example.com/lightbulb2000"}}`
	importBody := func(file string) string {
		b, _ := json.Marshal(api.ImportRequest{File: []byte(file), Signature: []byte{0x30, 0x82}})
		return string(b)
	}
	cases := []struct {
		name, method, path, body string
		code                     int
		want                     string // substring of the body
	}{
		{"status", "GET", "/v1/status", "", 200, `"policies_installed":1`},
		{"status HEAD", "HEAD", "/v1/status", "", 200, ""},
		{"devices", "GET", "/v1/devices", "", 200, `"mac":"02:00:00:00:00:01"`},
		{"device", "GET", dev, "", 200, `"mfg_name":"Example Lighting"`},
		{"device upper-case MAC", "GET", "/v1/devices/02-00-00-00-00-01", "", 200, `"hostname":"bulb"`},
		{"device unknown", "GET", unk, "", 404, "not found"},
		{"device bad MAC", "GET", "/v1/devices/zz:00", "", 400, "not a MAC"},
		{"device EUI-64 MAC", "GET", "/v1/devices/02:00:00:00:00:00:00:01", "", 400, "not a MAC"},
		{"device wrong method", "PUT", dev, "", 405, "method not allowed"},
		{"policy", "GET", dev + "/policy", "", 200, `"packets":7`},
		{"policy nft", "GET", dev + "/policy?nft=true", "", 200, `"nft":"chain pol_p1_out`},
		{"policy without nft", "GET", dev + "/policy", "", 200, `"from_device"`},
		{"policy bad nft", "GET", dev + "/policy?nft=maybe", "", 400, "nft"},
		{"policy none", "GET", pend + "/policy", "", 404, "no policy"},
		{"approve", "POST", pend + "/approve", `{"reason":"checked the file"}`, 200, `"state":"enforced"`},
		{"approve again", "POST", pend + "/approve", "", 409, "not pending"},
		{"approve unknown", "POST", unk + "/approve", "", 404, "not found"},
		{"approve GET", "GET", pend + "/approve", "", 405, "method not allowed"},
		{"approve bad body", "POST", dev + "/approve", `{"reason":`, 400, "request body"},
		{"approve unknown field", "POST", dev + "/approve", `{"reasn":"x"}`, 400, "unknown field"},
		{"approve trailing", "POST", dev + "/approve", `{} {}`, 400, "trailing"},
		{"approve oversize", "POST", dev + "/approve", big, 413, "too large"},
		{"reject conflict", "POST", dev + "/reject", "", 409, "not pending"},
		{"quarantine", "POST", dev + "/quarantine", `{"reason":"scanning"}`, 200, `"state":"quarantined"`},
		{"quarantine again", "POST", dev + "/quarantine", "", 409, "already"},
		{"release", "POST", dev + "/release", "", 200, `"state":"enforced"`},
		{"release again", "POST", dev + "/release", "", 409, "not quarantined"},
		{"bind", "POST", pend + "/bind", `{"mud_url":"https://cam.example.net/v2.json"}`, 200, `"mud_url_source":"admin-bind"`},
		{"bind http", "POST", pend + "/bind", `{"mud_url":"http://cam.example.net/v2.json"}`, 400, "https"},
		{"bind empty body", "POST", pend + "/bind", "", 400, "empty body"},
		{"bind unknown", "POST", unk + "/bind", `{"mud_url":"https://x.example/m"}`, 404, "not found"},
		{"bind static address", "POST", pend + "/bind", `{"mud_url":"https://cam.example.net/v2.json","ips":["192.0.2.60"]}`, 200, `"mud_url_source":"admin-bind"`},
		{"bind static address not an address", "POST", pend + "/bind", `{"mud_url":"https://cam.example.net/v2.json","ips":["192.0.2.300"]}`, 400, "192.0.2.300"},
		{"unbind with static address", "POST", pend + "/bind", `{"mud_url":"","ips":["192.0.2.60"]}`, 400, "static addresses need a MUD URL"},
		{"bind too many static addresses", "POST", pend + "/bind", `{"mud_url":"https://x.example/m","ips":["192.0.2.1","192.0.2.2","192.0.2.3","192.0.2.4","192.0.2.5","192.0.2.6","192.0.2.7","192.0.2.8","192.0.2.9","192.0.2.10","192.0.2.11","192.0.2.12","192.0.2.13","192.0.2.14","192.0.2.15","192.0.2.16","192.0.2.17"]}`, 400, "17 static addresses, at most 16"},
		{"override allow", "POST", dev + "/overrides", `{"verdict":"allow","peer":"198.51.100.7","protocol":"tcp","port":"443"}`, 200, `"peer":"198.51.100.7/32","protocol":"tcp","port":"443"`},
		{"override deny dns", "POST", dev + "/overrides", `{"verdict":"deny","dns_name":"Ads.Example.com.","direction":"to-device"}`, 200, `"dns_name":"ads.example.com"`},
		{"override bad verdict", "POST", dev + "/overrides", `{"verdict":"maybe"}`, 400, "verdict"},
		{"override port without proto", "POST", dev + "/overrides", `{"verdict":"allow","port":"443"}`, 400, "needs protocol"},
		{"override bad peer", "POST", dev + "/overrides", `{"verdict":"allow","peer":"nope"}`, 400, "not an address"},
		{"override unknown", "POST", unk + "/overrides", `{"verdict":"allow"}`, 404, "not found"},
		{"overrides clear", "DELETE", dev + "/overrides", "", 200, "{}"},
		{"overrides GET", "GET", dev + "/overrides", "", 405, "method not allowed"},
		{"refresh one", "POST", dev + "/refresh", "", 200, `"devices":1`},
		{"refresh unknown", "POST", unk + "/refresh", "", 404, "not found"},
		{"refresh all", "POST", "/v1/refresh", "", 200, `"devices":2`},
		{"controllers set", "POST", "/v1/controllers", `{"uri":"urn:ietf:params:mud:ntp","addrs":["192.0.2.123","2001:db8::/64"]}`, 200, `"prefixes":["192.0.2.123/32","2001:db8::/64"]`},
		{"controllers set my", "POST", "/v1/controllers", `{"uri":"https://lighting.example.com/lightbulb2000","my_controller":true,"addrs":["192.0.2.5"]}`, 200, `"kind":"my-controller"`},
		{"controllers set my not https", "POST", "/v1/controllers", `{"uri":"urn:x:y","my_controller":true,"addrs":["192.0.2.5"]}`, 400, "https"},
		{"controllers list", "GET", "/v1/controllers", "", 200, `"uri":"urn:ietf:params:mud:ntp"`},
		{"controllers bad addr", "POST", "/v1/controllers", `{"uri":"urn:x:y","addrs":["300.1.1.1"]}`, 400, "not an address"},
		{"controllers no uri", "POST", "/v1/controllers", `{"addrs":["192.0.2.1"]}`, 400, "URI"},
		{"controllers remove unknown", "POST", "/v1/controllers", `{"uri":"urn:x:y","addrs":[]}`, 404, "not found"},
		{"controllers DELETE", "DELETE", "/v1/controllers", "", 405, "method not allowed"},
		{"import", "POST", "/v1/import", importBody(mudFile), 200, `"signature":"valid"`},
		{"import not MUD", "POST", "/v1/import", importBody(`[1,2]`), 400, "not a MUD file"},
		{"import no file", "POST", "/v1/import", `{}`, 400, "no MUD file"},
		{"import bad base64", "POST", "/v1/import", `{"file":"!!!"}`, 400, "request body"},
		{"import oversize", "POST", "/v1/import", importBody(strings.Repeat(" ", 64<<10)), 413, "too large"},
		{"events", "GET", "/v1/events?limit=1", "", 200, `"seq":1`},
		{"events tail", "GET", "/v1/events?tail=1", "", 200, `"kind":"state"`},
		{"events bad since", "GET", "/v1/events?since=-1", "", 400, "since"},
		{"events bad follow", "GET", "/v1/events?follow=sure", "", 400, "follow"},
		{"unknown path", "GET", "/v2/status", "", 404, "no such API endpoint"},
		{"unknown subpath", "GET", dev + "/frobnicate", "", 404, "no such API endpoint"},
	}
	for _, tc := range cases {
		code, body, hdr := ts.call(t, tc.method, tc.path, tc.body)
		if code != tc.code || !strings.Contains(string(body), tc.want) {
			t.Errorf("%s: %s %s: %d %s, want %d and %q", tc.name, tc.method, tc.path, code, body, tc.code, tc.want)
			continue
		}
		if tc.method == "HEAD" {
			continue
		}
		if ct := hdr.Get("Content-Type"); ct != "application/json" {
			t.Errorf("%s: Content-Type %q", tc.name, ct)
		}
		if code >= 400 {
			var eb map[string]string
			if err := json.Unmarshal(body, &eb); err != nil || eb["error"] == "" || len(eb) != 1 {
				t.Errorf("%s: error body %s is not {\"error\": ...}", tc.name, body)
			}
		}
		if code == 405 && hdr.Get("Allow") == "" {
			t.Errorf("%s: 405 without Allow", tc.name)
		}
	}
}

func TestInternalErrorIs500(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	ts.fake.SetStatusError(errors.New("enforcer exploded"))
	code, body, _ := ts.call(t, "GET", "/v1/status", "")
	if code != 500 || !strings.Contains(string(body), "enforcer exploded") {
		t.Fatalf("%d %s", code, body)
	}
	if !strings.Contains(ts.logs.String(), "enforcer exploded") {
		t.Errorf("500 not logged: %s", ts.logs)
	}
}

// TestAuditLogsPeer checks that a change is logged with the caller's
// credentials (SO_PEERCRED) and that the MUD URL stays out of info logs.
func TestAuditLogsPeer(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	code, body, _ := ts.call(t, "POST", "/v1/devices/"+apitest.MACPending+"/bind", `{"mud_url":"https://secret.example/m.json","reason":"label on the box"}`)
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	c := ts.fake.LastCaller()
	if !c.Known || c.UID != uint32(os.Getuid()) || c.PID != int32(os.Getpid()) {
		t.Errorf("backend got caller %+v, want uid %d pid %d", c, os.Getuid(), os.Getpid())
	}
	logs := ts.logs.String()
	var rec map[string]any
	if err := json.Unmarshal([]byte(strings.SplitN(logs, "\n", 2)[0]), &rec); err != nil {
		t.Fatalf("log %q: %v", logs, err)
	}
	if rec["action"] != "bind" || rec["mac"] != apitest.MACPending || rec["uid"] != float64(os.Getuid()) || rec["by"] != c.String() || rec["reason"] != "label on the box" {
		t.Errorf("audit record %v", rec)
	}
	if strings.Contains(logs, "secret.example") {
		t.Errorf("MUD URL logged at info: %s", logs)
	}
}

func TestSocketModeAndGroup(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	fi, err := os.Stat(ts.sock)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode()&os.ModeSocket == 0 || fi.Mode().Perm() != api.SocketMode {
		t.Errorf("socket mode %v, want socket 0660", fi.Mode())
	}
	if gid := fi.Sys().(*syscall.Stat_t).Gid; gid != uint32(os.Getgid()) {
		t.Errorf("socket gid %d, want %d", gid, os.Getgid())
	}
	di, err := os.Stat(filepath.Dir(ts.sock))
	if err != nil || di.Mode().Perm() != 0o755 {
		t.Errorf("parent dir: %v %v", di.Mode(), err)
	}
	// No temporary socket left behind.
	ents, _ := os.ReadDir(filepath.Dir(ts.sock))
	if len(ents) != 1 {
		t.Errorf("socket dir holds %v", ents)
	}
}

func TestListenUnknownGroup(t *testing.T) {
	_, err := api.Listen(filepath.Join(t.TempDir(), "s.sock"), "no-such-group-mud-test")
	if err == nil || !strings.Contains(err.Error(), `"no-such-group-mud-test"`) {
		t.Fatalf("err = %v, want one naming the group", err)
	}
}

func TestListenRefusesLiveSocket(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	if _, err := api.Listen(ts.sock, ""); err == nil || !strings.Contains(err.Error(), "listening") {
		t.Fatalf("second Listen: %v, want refusal", err)
	}
	// The first server is unharmed.
	if _, err := ts.client.Status(context.Background()); err != nil {
		t.Fatal(err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	sock := filepath.Join(t.TempDir(), "mudd.sock")
	// A socket file nobody listens on, as a killed mudd leaves behind.
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: sock, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	ln.SetUnlinkOnClose(false)
	ln.Close()
	if _, err := os.Stat(sock); err != nil {
		t.Fatal(err)
	}
	l2, err := api.Listen(sock, "")
	if err != nil {
		t.Fatalf("api.Listen over a stale socket: %v", err)
	}
	l2.Close()
	if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Close left the socket: %v", err)
	}
}

func TestListenRefusesNonSocket(t *testing.T) {
	p := filepath.Join(t.TempDir(), "mudd.sock")
	if err := os.WriteFile(p, []byte("precious"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := api.Listen(p, ""); err == nil || !strings.Contains(err.Error(), "not a socket") {
		t.Fatalf("api.Listen over a regular file: %v", err)
	}
	if b, _ := os.ReadFile(p); string(b) != "precious" {
		t.Error("file replaced")
	}
}

// TestEventsFollow: a follower gets the backlog, then events published
// after its request, and the stream ends (and the subscription goes) when
// the client cancels.
func TestEventsFollow(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	ts.fake.Publish(apitest.MACEnforced, "old", "before")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	got := make(chan api.Event, 8)
	errc := make(chan error, 1)
	go func() {
		errc <- ts.client.FollowEvents(ctx, api.EventsQuery{}, func(e api.Event) error {
			got <- e
			return nil
		})
	}()
	next := func() api.Event {
		t.Helper()
		select {
		case e := <-got:
			return e
		case <-time.After(5 * time.Second):
			t.Fatal("no event")
		}
		return api.Event{}
	}
	if e := next(); e.Kind != "old" {
		t.Fatalf("backlog event %+v", e)
	}
	waitFor(t, func() bool { return ts.fake.Subscribers() == 1 })
	ts.fake.Publish(apitest.MACEnforced, "new", "after")
	ts.fake.Publish("", "gateway", "after too")
	if e := next(); e.Kind != "new" || e.Seq != 2 {
		t.Fatalf("live event %+v", e)
	}
	if e := next(); e.Kind != "gateway" || e.Seq != 3 {
		t.Fatalf("live event %+v", e)
	}
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("FollowEvents after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("FollowEvents did not return after cancel")
	}
	waitFor(t, func() bool { return ts.fake.Subscribers() == 0 })
}

// TestEventsFollowSince resumes after a given Seq, without duplicates.
func TestEventsFollowSince(t *testing.T) {
	ts := startServer(t, api.ServerOptions{})
	for range 3 {
		ts.fake.Publish(apitest.MACEnforced, "k", "")
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var seqs []uint64
	err := ts.client.FollowEvents(ctx, api.EventsQuery{Since: 1}, func(e api.Event) error {
		seqs = append(seqs, e.Seq)
		if len(seqs) == 2 {
			return io.ErrShortWrite // stop here
		}
		return nil
	})
	if !errors.Is(err, io.ErrShortWrite) || len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Fatalf("err %v seqs %v", err, seqs)
	}
}

func waitFor(t *testing.T, cond func() bool) {
	t.Helper()
	for range 500 {
		if cond() {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatal("condition not met in 5s")
}

// TestServeStopsCleanly: cancelling Serve's context ends an open event
// stream, removes the socket, and leaves no goroutine behind.
func TestServeStopsCleanly(t *testing.T) {
	before := runtime.NumGoroutine()
	func() {
		fake := apitest.NewFake()
		sock := filepath.Join(t.TempDir(), "mudd.sock")
		ln, err := api.Listen(sock, "")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- api.NewServer(fake, api.ServerOptions{}).Serve(ctx, ln) }()
		c := api.NewClient(sock)
		defer c.Close()
		if _, err := c.Devices(context.Background()); err != nil {
			t.Fatal(err)
		}
		streamErr := make(chan error, 1)
		go func() {
			streamErr <- c.FollowEvents(context.Background(), api.EventsQuery{}, func(api.Event) error { return nil })
		}()
		waitFor(t, func() bool { return fake.Subscribers() == 1 })
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Serve did not stop")
		}
		if err := <-streamErr; !errors.Is(err, io.EOF) {
			t.Errorf("stream after stop: %v, want io.EOF", err)
		}
		if _, err := os.Stat(sock); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("socket left after stop: %v", err)
		}
		if _, err := c.Status(context.Background()); !errors.Is(err, api.ErrUnavailable) {
			t.Errorf("request after stop: %v, want api.ErrUnavailable", err)
		}
		if n := fake.Subscribers(); n != 0 {
			t.Errorf("%d subscriptions left", n)
		}
	}()
	var after int
	for range 200 {
		if after = runtime.NumGoroutine(); after <= before {
			return
		}
		time.Sleep(10 * time.Millisecond)
	}
	buf := make([]byte, 1<<16)
	t.Fatalf("goroutines: %d before, %d after\n%s", before, after, buf[:runtime.Stack(buf, true)])
}
