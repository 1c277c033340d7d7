//go:build !nodashboard

package mudd

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/netip"
	"net/url"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// muddWithInput runs mudd's command line in-process with stdin.
func muddWithInput(t *testing.T, stdin string, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(testVersion, args, strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

// dashboardAddr is where the lab's mudd serves its dashboard: loopback in
// the gateway's namespace, which only a client in that namespace reaches.
const dashboardAddr = "127.0.0.1:8413"

// TestDaemonServesDashboard runs the mudd binary with dashboard.listen set,
// a password hash from `mudd hash-password` and nft.device_counters: a
// device joins with a real DHCP client and a signed MUD file carrying RFC
// 9472 transparency and RFC 9761's flag, makes a connection its policy
// permits and one it refuses, and both are counted on it (mudctl devices).
// An HTTP client in the gateway's namespace is refused the devices page
// before logging in, is refused a wrong password, logs in with the right
// one and finds the device, its MUD URL, manufacturer and counters on the
// devices page, and its SBOM, vulnerability and (D)TLS profile data on its
// own page, as mudctl device show does; mudd stops the dashboard with
// itself on SIGTERM.
func TestDaemonServesDashboard(t *testing.T) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "dnsmasq", "udhcpc", "go")
	const password = "correct horse battery"
	code, hash, errOut := muddWithInput(t, password+"\n", "hash-password")
	if code != 0 || !strings.HasPrefix(hash, "$2a$") {
		t.Fatalf("hash-password: exit %d, %q, %s", code, hash, errOut)
	}
	dir := t.TempDir()
	bin, _, err := multicall.Build(filepath.Join(dir, "bin"), multicall.Options{Version: "v0.0.0-lab"})
	if err != nil {
		t.Fatal(err)
	}
	lab := netlab.New(t, netlab.Config{Devices: 1, Servers: 2})
	const cloud = "cloud.example.com"
	gw, err := gwlab.Start(t.Context(), lab, gwlab.Config{Mudd: bin, Dir: t.TempDir(),
		Names: map[string]netip.Addr{cloud: lab.Servers[1].IPv4},
		Extra: fmt.Sprintf("dashboard:\n  listen: %s\n  password_hash: %q\nnft:\n  device_counters: true\n", dashboardAddr, strings.TrimSpace(hash))})
	if gw != nil {
		t.Cleanup(func() {
			gw.Close()
			if t.Failed() {
				t.Logf("--- mudd log ---\n%s", gw.MuddLog)
			}
		})
	}
	if err != nil {
		t.Fatal(err)
	}
	u := "https://" + gwlab.DefaultMUDHost + "/bulb.json"
	r := []gwlab.Rule{{Remote: cloud, RemotePort: 443, Initiated: "from-device"}}
	f := gwlab.File{URL: u, Mfg: "Example Lighting", Model: "bulb", From: r, To: r}
	body := withExtensions(t, f.JSON())
	sig, err := gw.PKI.Signer.SignDetached(body)
	if err != nil {
		t.Fatal(err)
	}
	if err := gw.PublishRaw(u, body, f.SignatureURL(), sig); err != nil {
		t.Fatal(err)
	}
	dev := lab.Devices[0]
	joined, err := gw.Join(dev, gwlab.Udhcpc, "bulb", u)
	if err != nil {
		t.Fatal(err)
	}
	// The client configures its address and route after the ACK mudd acts on.
	if _, err := joined.WaitAddr(t.Context(), 20*time.Second, netip.Addr{}); err != nil {
		t.Fatal(err)
	}
	mac := dev.MAC.String()
	if _, err := gw.WaitState(t.Context(), mac, api.StateEnforced, 20*time.Second); err != nil {
		t.Fatal(err)
	}

	// Traffic the policy permits and traffic it refuses, counted on the
	// device (nft.device_counters).
	srv := lab.Servers[1]
	for _, port := range []string{"0.0.0.0:443", "0.0.0.0:8080"} {
		echo, err := netlab.ServeEcho(srv.NS, port)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(echo.Close)
	}
	netlab.MustPass(t, "bulb → cloud 443", netlab.TCPEcho(dev.NS, netlab.HostPort(srv.IPv4, 443), 5*time.Second))
	netlab.MustDrop(t, "bulb → cloud 8080", netlab.TCPEcho(dev.NS, netlab.HostPort(srv.IPv4, 8080), 700*time.Millisecond))
	devs, err := gw.Mudctl(t.Context(), "devices")
	if err != nil {
		t.Fatal(err)
	}
	var counted api.Device
	if err := gwlab.Poll(t.Context(), 5*time.Second, func() error {
		d, _, err := gw.Device(t.Context(), mac)
		counted = d
		if err == nil && (d.Counters == nil || d.Counters.SentPackets < 3 || d.Counters.SentDroppedPackets < 1 || d.Counters.ReceivedPackets < 2) {
			err = fmt.Errorf("counters %+v", d.Counters)
		}
		return err
	}); err != nil {
		t.Errorf("the device's counters: %v", err)
	}
	if !strings.Contains(devs, "SENT/DROPPED") {
		t.Errorf("mudctl devices has no counters:\n%s", devs)
	}

	c := nsClient(t, lab.GW.NS)
	base := "http://" + dashboardAddr
	// Not logged in: the devices page sends the browser to the login page.
	resp := c.get(t, base+"/")
	if resp.status != http.StatusOK || resp.url != base+"/login" || !strings.Contains(resp.body, `name="password"`) {
		t.Fatalf("devices page before login: %d at %s:\n%s", resp.status, resp.url, resp.body)
	}
	if resp := c.login(t, base, "not the password"); resp.status != http.StatusUnauthorized || !strings.Contains(resp.body, "wrong password") {
		t.Errorf("wrong password: %d\n%s", resp.status, resp.body)
	}
	resp = c.login(t, base, password)
	if resp.status != http.StatusOK || resp.url != base+"/" {
		t.Fatalf("login: %d at %s:\n%s", resp.status, resp.url, resp.body)
	}
	for _, want := range []string{`href="/devices/` + mac + `"`, u, "Example Lighting", "enforced", "v0.0.0-lab", "<th>Sent / dropped</th>"} {
		if !strings.Contains(resp.body, want) {
			t.Errorf("devices page lacks %q:\n%s", want, resp.body)
		}
	}
	resp = c.get(t, base+"/devices/"+mac)
	if resp.status != http.StatusOK || !strings.Contains(resp.body, u) || !strings.Contains(resp.body, cloud) {
		t.Errorf("device page: %d, lacks the MUD URL or the peer %s:\n%s", resp.status, cloud, resp.body)
	}
	if cs := counted.Counters; cs != nil && !strings.Contains(resp.body, "<dt>Sent</dt><dd>") {
		t.Errorf("device page lacks the counters:\n%s", resp.body)
	}
	// The file's RFC 9472 transparency and RFC 9761 flag, on the device's
	// page and in mudctl device show.
	for _, want := range []string{"version " + sbomVersion + ": " + sbomURL, vulnURL, "earlier SBOMs: " + sbomArchive,
		"<dt>(D)TLS profile</dt><dd>supported by the device"} {
		if !strings.Contains(resp.body, want) {
			t.Errorf("device page lacks %q:\n%s", want, resp.body)
		}
	}
	show, err := gw.Mudctl(t.Context(), "device", "show", mac)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"version " + sbomVersion + ": " + sbomURL, vulnURL, "sbom archive " + sbomArchive,
		"supported by the device (RFC 9761"} {
		if !strings.Contains(strings.Join(strings.Fields(show), " "), want) {
			t.Errorf("mudctl device show lacks %q:\n%s", want, show)
		}
	}

	if err := gw.StopMudd(); err != nil {
		t.Fatal(err)
	}
	if _, err := netlab.Dial(lab.GW.NS, "tcp", dashboardAddr, time.Second); err == nil {
		t.Error("the dashboard still accepts connections after mudd stopped")
	}
}

// The transparency data (RFC 9472 §5) the lab's MUD file carries.
const (
	sbomVersion = "1.0.3"
	sbomURL     = "https://" + gwlab.DefaultMUDHost + "/sbom/bulb-1.0.3.cdx.json"
	vulnURL     = "https://" + gwlab.DefaultMUDHost + "/csaf/bulb.json"
	sbomArchive = "https://" + gwlab.DefaultMUDHost + "/sbom/bulb-archive.json"
)

// withExtensions adds to a MUD file the RFC 9472 transparency container
// (an SBOM in the cloud, the list of earlier ones, vulnerability
// information), and RFC 9761's
// is-tls-dtls-profile-supported, with both extensions declared.
func withExtensions(t *testing.T, body []byte) []byte {
	t.Helper()
	var doc map[string]map[string]any
	if err := json.Unmarshal(body, &doc); err != nil {
		t.Fatal(err)
	}
	m := doc["ietf-mud:mud"]
	if m == nil {
		t.Fatalf("no ietf-mud:mud in %s", body)
	}
	m["extensions"] = []string{"transparency", "ietf-mud-tls"}
	m["ietf-mud-transparency:transparency"] = map[string]any{
		"sboms":             []any{map[string]any{"version-info": sbomVersion, "sbom-url": sbomURL}},
		"sbom-archive-list": sbomArchive,
		"vuln-url":          []string{vulnURL},
	}
	m["ietf-mud-tls:is-tls-dtls-profile-supported"] = true
	out, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	return out
}

// httpNS is an HTTP client whose connections are made in a network
// namespace, with a cookie jar.
type httpNS struct{ *http.Client }

func nsClient(t *testing.T, ns string) httpNS {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	tr := &http.Transport{DialContext: func(_ context.Context, network, addr string) (net.Conn, error) {
		return netlab.Dial(ns, network, addr, 5*time.Second)
	}}
	t.Cleanup(tr.CloseIdleConnections)
	return httpNS{&http.Client{Jar: jar, Transport: tr, Timeout: 20 * time.Second}}
}

type answer struct {
	status    int
	url, body string
}

func (c httpNS) do(t *testing.T, req *http.Request) answer {
	t.Helper()
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return answer{resp.StatusCode, resp.Request.URL.String(), string(b)}
}

func (c httpNS) get(t *testing.T, u string) answer {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	return c.do(t, req)
}

var csrfInput = regexp.MustCompile(`name="csrf" value="([^"]+)"`)

// login fetches the login form and posts password with its CSRF token.
func (c httpNS) login(t *testing.T, base, password string) answer {
	t.Helper()
	m := csrfInput.FindStringSubmatch(c.get(t, base+"/login").body)
	if m == nil {
		t.Fatal("the login page has no CSRF token")
	}
	form := url.Values{"csrf": {m[1]}, "password": {password}}
	req, err := http.NewRequest(http.MethodPost, base+"/login", strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Origin", base)
	return c.do(t, req)
}

func TestHashPassword(t *testing.T) {
	for _, tc := range []struct {
		name, stdin, wantErr string
		code                 int
	}{
		{"a line", "correct horse battery\n", "", 0},
		{"CRLF, no newline at the end", "correct horse battery\r\n", "", 0},
		{"no line ending", "correct horse battery", "", 0},
		{"too short", "short\n", "shorter than 8", 1},
		{"too long", strings.Repeat("x", 73) + "\n", "longer than 72", 1},
		{"empty", "", "empty", 1},
		{"two lines", "correct horse battery\nsecond\n", "more than one line", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := muddWithInput(t, tc.stdin, "hash-password")
			if code != tc.code || !strings.Contains(errOut, tc.wantErr) {
				t.Fatalf("exit %d (want %d), stderr %q (want %q)", code, tc.code, errOut, tc.wantErr)
			}
			if code != 0 {
				if out != "" {
					t.Errorf("stdout %q on failure", out)
				}
				return
			}
			h, ok := strings.CutSuffix(out, "\n")
			if !ok || bcrypt.CompareHashAndPassword([]byte(h), []byte("correct horse battery")) != nil {
				t.Errorf("%q is not the hash of the password", out)
			}
		})
	}
}

// A mudd with the dashboard checks dashboard.* as the dashboard will use
// it, before it starts anything.
func TestCheckConfigDashboard(t *testing.T) {
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	cfg := func(listen, h string) string {
		return writeFile(t, fmt.Sprintf("interfaces: [br-lan]\ndashboard:\n  listen: %q\n  password_hash: %q\n", listen, h))
	}
	for _, tc := range []struct {
		name, path, wantErr string
	}{
		{"loopback", cfg("127.0.0.1:8413", string(hash)), ""},
		{"off", cfg("", ""), ""},
		{"not a bcrypt hash", cfg("127.0.0.1:8413", "secret"), "not a bcrypt hash"},
		{"LAN address without TLS", cfg("192.0.2.1:8413", string(hash)), "needs TLS"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			for _, args := range [][]string{{"check-config", "--config", tc.path}, {"--config", tc.path}} {
				if tc.wantErr == "" && args[0] != "check-config" {
					continue // a valid configuration would start the daemon
				}
				code, _, errOut := mudd(t, args...)
				if tc.wantErr == "" && code != 0 {
					t.Errorf("%v: exit %d: %s", args, code, errOut)
				}
				if tc.wantErr != "" && (code != 1 || !strings.Contains(errOut, tc.wantErr)) {
					t.Errorf("%v: exit %d, stderr %q, want 1 and %q", args, code, errOut, tc.wantErr)
				}
			}
		})
	}
}
