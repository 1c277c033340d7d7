//go:build !nofleet

package mudctl

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
)

// TestMain lets a test run this test binary as mudctl
// (MUDCTL_TEST_MAIN=1): the --fleet tests run it inside the etcd lab's
// network namespace, where the members are.
func TestMain(m *testing.M) {
	if os.Getenv("MUDCTL_TEST_MAIN") == "1" {
		os.Exit(Main(testVersion, os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// fleetCtl runs mudctl as a process of its own in the lab's namespace and
// returns exit code, stdout and stderr.
func fleetCtl(t *testing.T, cl *etcdlab.Cluster, args ...string) (int, string, string) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, "ip", append([]string{"netns", "exec", cl.NS, self}, args...)...)
	cmd.Env = append(os.Environ(), "MUDCTL_TEST_MAIN=1")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err = cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errb.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), out.String(), errb.String()
	}
	t.Fatalf("running mudctl %v: %v", args, err)
	return 0, "", ""
}

// fleetConfig writes a mudd.yaml with store.backend etcd for gateway id,
// its credentials as files, and returns its path.
func fleetConfig(t *testing.T, cl *etcdlab.Cluster, id string, endpoints []string) string {
	t.Helper()
	cert, key, ca, err := cl.ClientFiles(id)
	if err != nil {
		t.Fatal(err)
	}
	eps, _ := json.Marshal(endpoints)
	return writeTemp(t, "mudd.yaml", fmt.Sprintf(`store:
  backend: etcd
  etcd:
    endpoints: %s
    ca_cert: %s
    cert: %s
    key: %s
    prefix: /mud
    gateway_id: %s
`, eps, ca, cert, key, id))
}

// runFleetGateway runs gateway id's fleet client (liveness lease, queued
// device summaries) until the test ends.
func runFleetGateway(t *testing.T, cl *etcdlab.Cluster, i int, id string) *fleet.Client {
	t.Helper()
	tc, err := cl.ClientTLS(id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := fleet.Open(fleet.Config{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: id,
		QueuePath: filepath.Join(t.TempDir(), "fleet.db"), RequestTimeout: 2 * time.Second,
		ProbeInterval: 250 * time.Millisecond, LeaseTTL: 3 * time.Second, Dial: cl.Dialer(etcdlab.Source(i))})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = c.Run(ctx); close(done) }()
	go func() {
		for {
			select {
			case <-c.Events():
			case <-done:
				return
			}
		}
	}()
	t.Cleanup(func() { cancel(); <-done; _ = c.Close() })
	return c
}

func putSummary(t *testing.T, put func(mac string, v []byte) error, s fleet.DeviceSummary) {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	if err := put(s.MAC, b); err != nil {
		t.Fatal(err)
	}
}

// TestFleetDevicesAndStatus: mudctl --fleet, run on gateway gw1 with its
// mudd.yaml, lists the devices of gw1 (running: its liveness lease is
// current) and of gw2 (stopped: summaries, no lease) with their gateway,
// and their status with the shared decisions; a garbled summary of gw2 is
// an ERROR row naming gateway and key, with exit status 1.
func TestFleetDevicesAndStatus(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	ctx := context.Background()
	gw1 := runFleetGateway(t, cl, 0, "gw1")
	bulb := fleet.DeviceSummary{MAC: "02:00:00:00:01:01", IPs: []string{"192.0.2.11", "2001:db8::11"},
		MUDURL: "https://lighting.example.com/lightbulb2000", State: "enforced", Enforcement: "enforced", PolicyID: "mud-76100", UpdatedAt: time.Now()}
	cam := fleet.DeviceSummary{MAC: "02:00:00:00:01:02", IPs: []string{"192.0.2.12"},
		MUDURL: "https://cam.example.net/cam.json", State: "pending-approval", Enforcement: "unenforced", UpdatedAt: time.Now()}
	putSummary(t, gw1.PutDevice, bulb)
	putSummary(t, gw1.PutDevice, cam)
	for _, u := range []string{bulb.MUDURL, cam.MUDURL} {
		if _, err := gw1.Propose(ctx, fleet.KindVerdictURL, u, []byte(`{"verdict":"approve"}`), 0); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gw1.Propose(ctx, fleet.KindPinMAC, bulb.MAC, []byte(`{"signer":"CN=Example Lighting"}`), 0); err != nil {
		t.Fatal(err)
	}
	gw2, err := cl.AdminClient("gw2")
	if err != nil {
		t.Fatal(err)
	}
	defer gw2.Close()
	sensor := fleet.DeviceSummary{MAC: "02:00:00:00:02:01", IPs: []string{"198.51.100.21"}, State: "quarantined", Enforcement: "quarantined"}
	putSummary(t, func(mac string, v []byte) error {
		_, err := gw2.Put(ctx, "/mud/gateways/gw2/devices/"+mac, string(v))
		return err
	}, sensor)

	// Wait until gw1's queue is written and its lease taken.
	tc, err := cl.ClientTLS("gw1")
	if err != nil {
		t.Fatal(err)
	}
	v, err := fleet.OpenView(fleet.ViewConfig{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", Dial: cl.Dialer(etcdlab.Source(5))})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	for deadline := time.Now().Add(20 * time.Second); ; time.Sleep(200 * time.Millisecond) {
		snap, err := v.Read(ctx)
		if err == nil && len(snap.Gateways) == 2 && snap.Gateways[0].Alive && len(snap.Gateways[0].Devices) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw1 not alive with 2 devices within 20s: %+v %v", snap, err)
		}
	}

	cfg := fleetConfig(t, cl, "gw1", cl.Endpoints())
	code, out, errOut := fleetCtl(t, cl, "--fleet", "devices", "--config", cfg)
	if code != 0 {
		t.Fatalf("--fleet devices: exit %d: %s", code, errOut)
	}
	t.Logf("mudctl --fleet devices:\n%s", out)
	rs := rows(out)
	if len(rs) != 4 || rs[0] != "GATEWAY MAC IPS STATE ENFORCEMENT MUD URL UPDATED" {
		t.Errorf("--fleet devices:\n%s", out)
	}
	for _, want := range []string{
		"gw1 02:00:00:00:01:01 192.0.2.11,2001:db8::11 enforced enforced https://lighting.example.com/lightbulb2000 2",
		"gw1 02:00:00:00:01:02 192.0.2.12 pending-approval unenforced https://cam.example.net/cam.json 2",
		"gw2 (down) 02:00:00:00:02:01 198.51.100.21 quarantined quarantined - -",
	} {
		if !hasRow(rs, want) {
			t.Errorf("--fleet devices has no row %q:\n%s", want, out)
		}
	}

	code, out, errOut = fleetCtl(t, cl, "devices", "--fleet", "-o", "json", "--config", cfg)
	var ds []map[string]any
	if code != 0 || json.Unmarshal([]byte(out), &ds) != nil || len(ds) != 3 {
		t.Fatalf("--fleet devices -o json: exit %d %s\n%s", code, errOut, out)
	}
	if ds[0]["gateway"] != "gw1" || ds[0]["gateway_alive"] != true || ds[0]["mac"] != bulb.MAC || ds[0]["policy_id"] != "mud-76100" ||
		ds[2]["gateway"] != "gw2" || ds[2]["gateway_alive"] != false || ds[2]["state"] != "quarantined" {
		t.Errorf("--fleet devices -o json: %v", ds)
	}

	code, out, errOut = fleetCtl(t, cl, "--fleet", "status", "--config", cfg)
	if code != 0 {
		t.Fatalf("--fleet status: exit %d: %s", code, errOut)
	}
	t.Logf("mudctl --fleet status:\n%s", out)
	rs = rows(out)
	if rs[0] != "GATEWAY STATUS SINCE DEVICES BY STATE BY ENFORCEMENT ERRORS" {
		t.Errorf("--fleet status:\n%s", out)
	}
	for _, want := range []string{
		"gw2 down - 1 quarantined 1 quarantined 1 0",
		"SHARED DECISIONS COUNT", "verdicts-url 2", "pins-mac 1", "pins-url 0", "bindings 0",
	} {
		if !hasRow(rs, want) {
			t.Errorf("--fleet status has no row %q:\n%s", want, out)
		}
	}
	if len(rs) < 2 || !strings.HasPrefix(rs[1], "gw1 alive ") || !strings.HasSuffix(rs[1], " 2 enforced 1, pending-approval 1 enforced 1, unenforced 1 0") {
		t.Errorf("--fleet status: gw1's row:\n%s", out)
	}

	code, out, errOut = fleetCtl(t, cl, "--fleet", "status", "-o", "json", "--config", cfg)
	var st fleetStatus
	if code != 0 || json.Unmarshal([]byte(out), &st) != nil {
		t.Fatalf("--fleet status -o json: exit %d %s\n%s", code, errOut, out)
	}
	if len(st.Gateways) != 2 || !st.Gateways[0].Alive || st.Gateways[0].ByState["pending-approval"] != 1 || st.Gateways[1].Alive ||
		st.Shared["verdicts-url"] != 2 || st.Shared["pins-mac"] != 1 || st.Revision == 0 {
		t.Errorf("--fleet status -o json: %+v", st)
	}

	// A value no gateway should write: an ERROR row, exit 1.
	garbled := "/mud/gateways/gw2/devices/02:00:00:00:02:02"
	if _, err := gw2.Put(ctx, garbled, "\x1b[2J{\"mac\":"); err != nil {
		t.Fatal(err)
	}
	code, out, errOut = fleetCtl(t, cl, "--fleet", "devices", "--config", cfg)
	t.Logf("mudctl --fleet devices with a garbled summary:\n%s%s", out, errOut)
	rs = rows(out)
	if code != 1 || rs[0] != "GATEWAY MAC IPS STATE ENFORCEMENT MUD URL UPDATED ERROR" ||
		!hasRow(rs, "gw2 (down) - - ERROR - - - key "+garbled+`: not a device summary`) ||
		!hasRow(rs, "gw1 02:00:00:00:01:01") || !strings.Contains(errOut, "keys under /mud/gateways/ that could not be understood: 1") ||
		strings.Contains(out, "\x1b") {
		t.Errorf("--fleet devices with a garbled summary: exit %d, stderr %s\n%s", code, errOut, out)
	}
	code, out, _ = fleetCtl(t, cl, "--fleet", "status", "--config", cfg)
	if code != 1 || !hasRow(rows(out), "gw2 down - 1 quarantined 1 quarantined 1 1") {
		t.Errorf("--fleet status with a garbled summary: exit %d\n%s", code, out)
	}

	// Nothing listens on this port of the lab's namespace: exit 2 after
	// the request timeout, naming the endpoint.
	dead := fleetConfig(t, cl, "gw1", []string{"https://127.0.0.1:2999"})
	start := time.Now()
	code, _, errOut = fleetCtl(t, cl, "--fleet", "status", "--config", dead)
	if code != 2 || !strings.Contains(errOut, "no answer from etcd (https://127.0.0.1:2999) within 5s") {
		t.Errorf("--fleet status, etcd unreachable: exit %d: %s", code, errOut)
	}
	if took := time.Since(start); took > 20*time.Second {
		t.Errorf("--fleet status, etcd unreachable: took %v", took)
	}
}

// TestFleetRefusals: --fleet reads nothing from etcd and exits 2 when it
// cannot: store.backend is not etcd, the configuration or a credential
// cannot be read, or the command is not status or devices.
func TestFleetRefusals(t *testing.T) {
	bbolt := writeTemp(t, "bbolt.yaml", "store:\n  backend: bbolt\n")
	noKey := writeTemp(t, "nokey.yaml", `store:
  backend: etcd
  etcd:
    endpoints: [https://192.0.2.21:2379]
    ca_cert: /nonexistent/ca.pem
    cert: /nonexistent/gw1.pem
    key: /nonexistent/gw1.key
    gateway_id: gw1
`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--fleet", "devices", "--config", bbolt}, `has store.backend "bbolt": this gateway is in no fleet`},
		{[]string{"--fleet", "status", "--config", filepath.Join(t.TempDir(), "missing.yaml")}, "--fleet reads store.etcd from mudd's configuration: reading config"},
		{[]string{"--fleet", "status", "--config", noKey}, "etcd CA: open /nonexistent/ca.pem: no such file or directory"},
		{[]string{"--fleet", "lint", "x.json"}, `--fleet applies to status and devices only, not to "mudctl lint"`},
		{[]string{"--fleet", "device", "show", "02:00:00:00:00:01"}, "--fleet applies to status and devices only"},
	} {
		code, out, errOut := mudctl(t, tc.args...)
		if code != 2 || !strings.Contains(errOut, tc.want) || out != "" {
			t.Errorf("%v: exit %d, stderr %q, stdout %q; want 2 and %q", tc.args, code, errOut, out, tc.want)
		}
	}
}
