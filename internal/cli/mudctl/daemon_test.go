package mudctl

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/policy/graph"
)

// daemonCtl runs mudctl in-process against the socket, as Main does, and
// returns exit code, stdout and stderr.
func daemonCtl(t *testing.T, sock string, args ...string) (int, string, string) {
	t.Helper()
	return mudctl(t, append([]string{"--socket", sock}, args...)...)
}

func TestDaemonDevicesJSONContract(t *testing.T) {
	sock := apitest.Serve(t, apitest.NewFake(), api.ServerOptions{})
	code, out, errOut := daemonCtl(t, sock, "devices", "-o", "json")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	var ds []map[string]any
	if err := json.Unmarshal([]byte(out), &ds); err != nil || len(ds) != 2 {
		t.Fatalf("%v: %s", err, out)
	}
	for _, k := range []string{"mac", "ips", "hostname", "mud_url", "state"} {
		if _, ok := ds[0][k]; !ok {
			t.Errorf("devices -o json: no %q in %v", k, ds[0])
		}
	}
	if ds[0]["mac"] != apitest.MACEnforced || ds[0]["state"] != "enforced" || ds[1]["state"] != "pending-approval" {
		t.Errorf("devices: %v", ds)
	}
}

func TestDaemonTables(t *testing.T) {
	fake := apitest.NewFake()
	fake.Publish(apitest.MACEnforced, "state", "seen")
	sock := apitest.Serve(t, fake, api.ServerOptions{})
	cases := []struct {
		args   []string
		header string // the first line's fields
		want   string
	}{
		{[]string{"devices"}, "MAC IPS HOSTNAME STATE ENFORCEMENT MUD URL SENT/DROPPED RECEIVED/DROPPED REASON", "UNENFORCED   https://cam.example.net/cam.json            -             -                 its MUD file awaits an administrator's approval"},
		{[]string{"devices"}, "MAC IPS HOSTNAME STATE ENFORCEMENT MUD URL SENT/DROPPED RECEIVED/DROPPED REASON", "https://lighting.example.com/lightbulb2000  1200/3        1100/1"},
		{[]string{"device", "show", apitest.MACEnforced}, "mac 02:00:00:00:00:01", "sent             1200 packets, 180000 bytes; dropped 3 packets, 180 bytes"},
		{[]string{"status"}, "version test", "inet mud, bridge mud"},
		{[]string{"device", "show", "02-00-00-00-00-01"}, "mac 02:00:00:00:00:01", "Bulb 2000"},
		{[]string{"device", "show", apitest.MACPending}, "mac 02:00:00:00:00:02", "pending because"},
		{[]string{"device", "show", apitest.MACEnforced}, "mac 02:00:00:00:00:01", "sbom             version 1.2: https://lighting.example.com/sbom/bulb2000-1.2.cdx.json"},
		{[]string{"device", "show", apitest.MACEnforced}, "mac 02:00:00:00:00:01", "vulnerabilities  https://lighting.example.com/csaf/bulb2000.json"},
		{[]string{"device", "show", apitest.MACEnforced}, "mac 02:00:00:00:00:01", "(d)tls profile   supported by the device (RFC 9761; mudd does not enforce it)"},
		{[]string{"device", "show", apitest.MACEnforced}, "mac 02:00:00:00:00:01", "198.51.100.23 (telemetry.example.net)  tcp       8443  3"},
		{[]string{"violations"}, "MAC DEVICE DIRECTION KIND PEER PROTOCOL PORT COUNT FIRST LAST", "02:00:00:00:00:01  192.0.2.10  from-device  default-deny  198.51.100.23 (telemetry.example.net)  tcp       8443  3"},
		{[]string{"violations", apitest.MACEnforced}, "MAC DEVICE DIRECTION KIND PEER PROTOCOL PORT COUNT FIRST LAST", "default-deny"},
		{[]string{"device", "show", apitest.MACPending}, "mac 02:00:00:00:00:02", "unenforced because  its MUD file awaits"},
		{[]string{"device", "show", apitest.MACPending}, "mac 02:00:00:00:00:02", "lan2  failed: GET"},
		{[]string{"policy", "show", apitest.MACEnforced, "--nft"}, "device 02:00:00:00:00:01 policy p1 https://lighting.example.com/lightbulb2000", "chain pol_p1_out"},
		{[]string{"graph", apitest.MACEnforced}, "digraph policy {", `device -> peer1 [color=black, fontcolor=black, label="from-device #1 TCP port 443 IPv4"]`},
		{[]string{"events"}, "SEQ TIME MAC KIND CHANGE MESSAGE", "seen"},
		{[]string{"controllers", "list"}, "URI KIND PREFIXES SOURCE", ""},
	}
	for _, tc := range cases {
		code, out, errOut := daemonCtl(t, sock, tc.args...)
		if code != 0 {
			t.Errorf("%v: exit %d: %s", tc.args, code, errOut)
			continue
		}
		first := strings.Join(strings.Fields(strings.SplitN(out, "\n", 2)[0]), " ")
		if first != tc.header || !strings.Contains(out, tc.want) {
			t.Errorf("%v: first line %q, want %q; output:\n%s", tc.args, first, tc.header, out)
		}
	}
	// Policy rows are aligned, with counters.
	_, out, _ := daemonCtl(t, sock, "policy", "show", apitest.MACEnforced)
	if !strings.Contains(out, "#  VERDICT  PACKETS  BYTES  RULE") || !strings.Contains(out, "1  accept   7        700") {
		t.Errorf("policy table:\n%s", out)
	}
}

// A gateway of a fleet names itself in the devices' first column; the
// devices of a mudd in no fleet have no such column (TestDaemonTables).
func TestDaemonDevicesGatewayColumn(t *testing.T) {
	sock := apitest.Serve(t, api.WithGatewayID(apitest.NewFake(), "gw1"), api.ServerOptions{})
	code, out, errOut := daemonCtl(t, sock, "devices")
	if code != 0 {
		t.Fatalf("exit %d: %s", code, errOut)
	}
	rs := rows(out)
	if len(rs) != 3 || !strings.HasPrefix(rs[0], "GATEWAY MAC IPS") || !strings.HasPrefix(rs[1], "gw1 "+apitest.MACEnforced) ||
		!strings.HasPrefix(rs[2], "gw1 "+apitest.MACPending) {
		t.Errorf("devices of gateway gw1:\n%s", out)
	}
	code, out, _ = daemonCtl(t, sock, "devices", "-o", "json")
	var ds []api.Device
	if code != 0 || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 2 || ds[0].Gateway != "gw1" {
		t.Errorf("devices -o json of gateway gw1: %s", out)
	}
}

func TestDaemonExitCodes(t *testing.T) {
	sock := apitest.Serve(t, apitest.NewFake(), api.ServerOptions{})
	dir := t.TempDir()
	mud := writeTemp(t, "m.json", `{"ietf-mud:mud":{"mud-url":"https://x.example/m.json"}}`)
	sig := writeTemp(t, "m.p7s", "\x30\x82")
	mac, pend, unk := apitest.MACEnforced, apitest.MACPending, apitest.MACUnknown
	cases := []struct {
		args []string
		code int
		want string // in stdout (0) or stderr
	}{
		{[]string{"approve", pend, "--reason", "read it"}, 0, "02:00:00:00:00:02: enforced"},
		{[]string{"approve", pend}, 1, "not pending-approval"},
		{[]string{"approve", unk}, 1, "not found"},
		{[]string{"approve", "zz"}, 2, "not a MAC"},
		{[]string{"approve"}, 2, "accepts 1 arg"},
		{[]string{"reject", mac}, 1, "not pending"},
		{[]string{"quarantine", mac, "--reason", "scan"}, 0, "quarantined"},
		{[]string{"quarantine", mac}, 1, "already"},
		{[]string{"release", mac}, 0, "enforced"},
		{[]string{"release", mac}, 1, "not quarantined"},
		{[]string{"bind", pend, "https://cam.example.net/v2.json"}, 0, "02:00:00:00:00:02"},
		{[]string{"bind", pend, "--clear"}, 0, "02:00:00:00:00:02"},
		{[]string{"bind", pend}, 2, "--clear"},
		{[]string{"bind", pend, "http://cam.example.net/v2.json"}, 1, "https"},
		{[]string{"override", mac, "allow", "--to", "198.51.100.7", "--proto", "tcp", "--port", "443"}, 0, "from-device"},
		{[]string{"override", mac, "deny", "--to", "ads.example.com"}, 0, "ads.example.com"},
		{[]string{"override", mac, "allow", "--from", "192.0.2.0/24", "--proto", "tcp", "--port", "22"}, 0, "to-device"},
		{[]string{"override", mac, "list"}, 0, "BY"},
		{[]string{"override", mac, "clear"}, 0, "no overrides"},
		{[]string{"override", mac, "allow", "--port", "443"}, 2, "needs protocol"},
		{[]string{"override", mac, "allow", "--to", "a.example", "--from", "b.example"}, 2, "--to is for"},
		{[]string{"override", mac, "clear", "--proto", "tcp"}, 2, "no rule flags"},
		{[]string{"override", mac, "permit"}, 2, "want allow, deny"},
		{[]string{"override", unk, "allow"}, 1, "not found"},
		{[]string{"controllers", "set", "urn:ietf:params:mud:ntp", "192.0.2.123", "2001:db8::123"}, 0, "192.0.2.123/32,2001:db8::123/128"},
		{[]string{"controllers", "set", "--my", "https://x.example/m.json", "192.0.2.9"}, 0, "my-controller"},
		{[]string{"controllers", "set", "urn:x:y"}, 2, "requires at least 2"},
		{[]string{"controllers", "set", "urn:x:y", "not-an-addr"}, 1, "not an address"},
		{[]string{"controllers", "remove", "urn:ietf:params:mud:ntp"}, 0, "urn:ietf:params:mud:ntp"},
		{[]string{"controllers", "remove", "urn:ietf:params:mud:ntp"}, 1, "not found"},
		{[]string{"refresh"}, 0, "2 device(s)"},
		{[]string{"refresh", mac}, 0, "1 device(s)"},
		{[]string{"refresh", unk}, 1, "not found"},
		{[]string{"import", mud, "--signature", sig}, 0, "https://x.example/m.json"},
		{[]string{"import", mud}, 2, "signature"},
		{[]string{"import", filepath.Join(dir, "nope.json"), "--signature", sig}, 2, "no such file"},
		{[]string{"import", sig, "--signature", sig}, 1, "not a MUD file"},
		{[]string{"device", "show", unk}, 1, "not found"},
		{[]string{"policy", "show", unk}, 1, "not found"},
		{[]string{"events", "--tail", "-1"}, 2, "negative"},
		{[]string{"-o", "yaml", "devices"}, 2, "invalid output format"},
	}
	for _, tc := range cases {
		code, out, errOut := daemonCtl(t, sock, tc.args...)
		where := out
		if tc.code != 0 {
			where = errOut
		}
		if code != tc.code || !strings.Contains(where, tc.want) {
			t.Errorf("%v: exit %d, want %d and %q\nstdout: %s\nstderr: %s", tc.args, code, tc.code, tc.want, out, errOut)
		}
	}
}

func TestDaemonUnreachable(t *testing.T) {
	missing := filepath.Join(t.TempDir(), "mudd.sock")
	code, _, errOut := daemonCtl(t, missing, "status")
	if code != 2 || !strings.Contains(errOut, "is mudd running?") || !strings.Contains(errOut, missing) {
		t.Errorf("exit %d: %s", code, errOut)
	}
}

// TestDaemonSocketFromEnv: without --socket, $MUDCTL_SOCKET is used.
func TestDaemonSocketFromEnv(t *testing.T) {
	sock := apitest.Serve(t, apitest.NewFake(), api.ServerOptions{})
	t.Setenv("MUDCTL_SOCKET", sock)
	if code, out, errOut := mudctl(t, "devices", "-o", "json"); code != 0 || !strings.Contains(out, apitest.MACEnforced) {
		t.Fatalf("exit %d: %s %s", code, out, errOut)
	}
}

// lineWriter collects output and signals each write.
type lineWriter struct {
	mu    sync.Mutex
	b     bytes.Buffer
	wrote chan struct{}
}

func (w *lineWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	select {
	case w.wrote <- struct{}{}:
	default:
	}
	return w.b.Write(p)
}

func (w *lineWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// TestDaemonEventsFollow: events -f -o json prints the backlog and new
// events as JSON lines and ends with exit 0 when interrupted.
func TestDaemonEventsFollow(t *testing.T) {
	fake := apitest.NewFake()
	fake.Publish(apitest.MACEnforced, "old", "")
	sock := apitest.Serve(t, fake, api.ServerOptions{})
	out := &lineWriter{wrote: make(chan struct{}, 1)}
	var errb bytes.Buffer
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan int, 1)
	go func() {
		done <- cli.Run(ctx, NewRoot(testVersion), []string{"--socket", sock, "events", "-f", "-o", "json"}, strings.NewReader(""), out, &errb)
	}()
	deadline := time.After(5 * time.Second)
	for fake.Subscribers() == 0 || !strings.Contains(out.String(), `"kind":"old"`) {
		select {
		case <-out.wrote:
		case <-time.After(10 * time.Millisecond):
		case <-deadline:
			t.Fatalf("no backlog: %q", out.String())
		}
	}
	fake.Publish(apitest.MACEnforced, "new", "")
	for !strings.Contains(out.String(), `"kind":"new"`) {
		select {
		case <-out.wrote:
		case <-deadline:
			t.Fatalf("no live event: %q", out.String())
		}
	}
	cancel()
	if code := <-done; code != 0 {
		t.Fatalf("exit %d: %s", code, errb.String())
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	for _, l := range lines {
		var e api.Event
		if err := json.Unmarshal([]byte(l), &e); err != nil {
			t.Errorf("line %q: %v", l, err)
		}
	}
	if len(lines) != 2 {
		t.Errorf("lines: %q", lines)
	}
}

// Every -o json output names its enums: a state, verdict, direction,
// family, kind, enforcement or signature is a string such as "enforced",
// "accept", "from-device", "ipv4" or "dns-name", never a number.
func TestJSONEnumsAreNames(t *testing.T) {
	fake := apitest.NewFake()
	fake.Publish(apitest.MACEnforced, "state", "seen")
	sock := apitest.Serve(t, fake, api.ServerOptions{})
	file := writeTemp(t, "bulb.json", rfcExample(t))
	sig := writeTemp(t, "bulb.p7s", "\x30\x82")
	mac := apitest.MACEnforced
	daemon := [][]string{
		{"override", mac, "deny", "--to", "198.51.100.7", "--proto", "tcp", "--port", "443"},
		{"devices"}, {"device", "show", mac}, {"status"}, {"policy", "show", mac}, {"events"},
		{"controllers", "set", "urn:ietf:params:mud:ntp", "192.0.2.123"}, {"controllers", "list"},
		{"override", mac, "list"}, {"refresh"}, {"import", file, "--signature", sig},
		{"approve", apitest.MACPending},
	}
	offline := [][]string{{"compile", file}, {"explain", file}, {"lint", file}}
	enumKeys := map[string]bool{"state": true, "from": true, "to": true, "verdict": true, "direction": true, "family": true,
		"kind": true, "enforcement": true, "signature": true, "initiated": true, "protocol": true, "mud_url_source": true}
	found := 0 // enum fields seen, all commands together
	check := func(args []string, out string) {
		var walk func(key string, v any)
		walk = func(key string, v any) {
			switch v := v.(type) {
			case map[string]any:
				for k, x := range v {
					walk(k, x)
				}
			case []any:
				for _, x := range v {
					walk(key, x)
				}
			case string:
				if enumKeys[key] {
					found++
				}
			default:
				if enumKeys[key] {
					t.Errorf("%v -o json: %q is %v, not a name:\n%s", args, key, v, out)
				}
			}
		}
		dec := json.NewDecoder(strings.NewReader(out))
		for dec.More() {
			var v any
			if err := dec.Decode(&v); err != nil {
				t.Fatalf("%v -o json: %v\n%s", args, err, out)
			}
			walk("", v)
		}
	}
	for _, args := range daemon {
		code, out, errOut := daemonCtl(t, sock, append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		check(args, out)
	}
	for _, args := range offline {
		code, out, errOut := mudctl(t, append(args, "-o", "json")...)
		if code != 0 {
			t.Fatalf("%v: exit %d: %s", args, code, errOut)
		}
		check(args, out)
	}
	if found < 50 {
		t.Errorf("only %d enum fields in all the outputs: the walk misses them", found)
	}
}

// graph --svg has Graphviz draw the policy; without Graphviz it says what
// to install and fails with 1.
func TestGraphSVG(t *testing.T) {
	sock := apitest.Serve(t, apitest.NewFake(), api.ServerOptions{})
	code, out, errOut := daemonCtl(t, sock, "graph", apitest.MACEnforced, "--svg")
	if _, err := graph.DotPath(); err != nil {
		if code != 1 || !strings.Contains(errOut, "install graphviz") {
			t.Errorf("without Graphviz: exit %d, stderr %q; want 1 naming graphviz", code, errOut)
		}
		return
	}
	if code != 0 || !strings.Contains(out, "<svg") || !strings.Contains(out, "service.example.com") {
		t.Errorf("exit %d, stderr %q; output is no SVG of the policy:\n%.300s", code, errOut, out)
	}
}

// Without mudd's device counters, the devices table has no counter
// columns.
func TestDevicesWithoutCounters(t *testing.T) {
	var b strings.Builder
	if err := printDevices(&b, []api.Device{{MAC: "02:00:00:00:00:01", State: api.StateEnforced}}); err != nil {
		t.Fatal(err)
	}
	if first := strings.Join(strings.Fields(strings.SplitN(b.String(), "\n", 2)[0]), " "); first != "MAC IPS HOSTNAME STATE ENFORCEMENT MUD URL REASON" {
		t.Errorf("header %q", first)
	}
}

// A gateway of a fleet says in its status whether etcd answers and how many
// of its writes wait; a partitioned one says it enforces from its store.
func TestStatusNamesTheFleet(t *testing.T) {
	for _, c := range []struct {
		fleet *api.FleetStatus
		want  string
	}{
		{&api.FleetStatus{GatewayID: "gw1", Connected: true}, "fleet  gw1  connected, 0 writes queued"},
		{&api.FleetStatus{GatewayID: "gw2", QueuedWrites: 3}, "fleet  gw2  PARTITIONED (enforcing from the local store), 3 writes queued"},
		{nil, ""},
	} {
		var b strings.Builder
		if err := printStatus(&b, api.Status{Version: "test", Fleet: c.fleet}); err != nil {
			t.Fatal(err)
		}
		got := ""
		for _, l := range strings.Split(b.String(), "\n") {
			if strings.HasPrefix(l, "fleet") {
				got = strings.Join(strings.Fields(l), "  ")
			}
		}
		if want := strings.Join(strings.Fields(c.want), "  "); got != want {
			t.Errorf("fleet line %q, want %q:\n%s", got, want, b.String())
		}
	}
}
