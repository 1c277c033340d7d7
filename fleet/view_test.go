package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/etcdlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

var viewAt = time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)

func summaryJSON(t testing.TB, s DeviceSummary) []byte {
	t.Helper()
	b, err := json.Marshal(s)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// runGateway is a fleet client of gateway id that runs (liveness lease,
// queue) until the test ends.
func runGateway(t *testing.T, cl *etcdlab.Cluster, i int, id string) *Client {
	t.Helper()
	tc, err := cl.ClientTLS(id)
	if err != nil {
		t.Fatal(err)
	}
	c, err := Open(Config{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: id,
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

// openLabView opens a view with gateway id's credentials as PEM files,
// as mudctl --fleet does from mudd.yaml.
func openLabView(t *testing.T, cl *etcdlab.Cluster, id string) *View {
	t.Helper()
	cert, key, ca, err := cl.ClientFiles(id)
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenView(ViewConfig{Endpoints: cl.Endpoints(), CACert: ca, Cert: cert, Key: key, Prefix: "/mud",
		RequestTimeout: 2 * time.Second, PageSize: 2, Dial: cl.Dialer(etcdlab.Source(7))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = v.Close() })
	return v
}

// TestViewListsGatewaysAliveAndDown: a running gateway (liveness lease,
// summaries written through PutDevice) is alive; a gateway with summaries
// and no liveness key is down; the shared decisions are counted by kind;
// garbled keys and values are error rows naming gateway and key, and the
// rest of the view is read (in pages of 2 keys, at one revision).
func TestViewListsGatewaysAliveAndDown(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	ctx := context.Background()
	gw1 := runGateway(t, cl, 0, "gw1")
	enforced := DeviceSummary{MAC: "02:00:00:00:01:01", IPs: []string{"192.0.2.11", "2001:db8::11"},
		MUDURL: "https://lighting.example.com/lightbulb2000", State: "enforced", Enforcement: "enforced", PolicyID: "mud-76100", UpdatedAt: viewAt}
	pending := DeviceSummary{MAC: "02:00:00:00:01:02", IPs: []string{"192.0.2.12"},
		MUDURL: "https://cam.example.net/cam.json", State: "pending-approval", Enforcement: "unenforced", UpdatedAt: viewAt}
	for _, s := range []DeviceSummary{pending, enforced} {
		if err := gw1.PutDevice(s.MAC, summaryJSON(t, s)); err != nil {
			t.Fatal(err)
		}
	}
	for i, k := range []struct {
		kind Kind
		key  string
	}{{KindVerdictURL, enforced.MUDURL}, {KindVerdictURL, pending.MUDURL}, {KindPinMAC, enforced.MAC}} {
		if _, err := gw1.Propose(ctx, k.kind, k.key, []byte(`{"n":`+string(rune('0'+i))+`}`), 0); err != nil {
			t.Fatal(err)
		}
	}

	// gw2 stopped: its summaries stay, its liveness key has gone. Written
	// with gw2's own credentials, as a gateway writes them, and with a
	// few values no gateway should write.
	admin, err := cl.AdminClient("gw2")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	down := DeviceSummary{MAC: "02:00:00:00:02:01", IPs: []string{"198.51.100.21"}, State: "quarantined", Enforcement: "quarantined", UpdatedAt: viewAt}
	for k, v := range map[string]string{
		"/mud/gateways/gw2/devices/02:00:00:00:02:01":            string(summaryJSON(t, down)),
		"/mud/gateways/gw2/devices/02:00:00:00:02:02":            `{"mac":"02:00:00:00:02:02","state":`,
		"/mud/gateways/gw2/devices/02:00:00:00:02:03":            `{"mac":"02:00:00:00:09:99","state":"enforced"}`,
		"/mud/gateways/gw2/devices/02:00:00:00:02:04":            "\x1b[2J\x00null",
		"/mud/gateways/gw2/notes":                                "hello",
		"/mud/gateways/bad id\x1b[31m/devices/02:00:00:00:03:01": `{"mac":"02:00:00:00:03:01","state":"enforced"}`,
	} {
		if _, err := admin.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}

	v := openLabView(t, cl, "gw3")
	var snap Snapshot
	deadline := time.Now().Add(20 * time.Second)
	for {
		snap, err = v.Read(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if len(snap.Gateways) > 0 && snap.Gateways[0].ID == "gw1" && snap.Gateways[0].Alive && len(snap.Gateways[0].Devices) == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("gw1 is not alive with 2 devices within 20s: %+v", snap)
		}
		time.Sleep(200 * time.Millisecond)
	}
	if len(snap.Gateways) != 2 {
		t.Fatalf("gateways %+v, want gw1 and gw2", snap.Gateways)
	}
	g1, g2 := snap.Gateways[0], snap.Gateways[1]
	if !g1.Alive || g1.AliveSince.IsZero() || g1.Errors != 0 {
		t.Errorf("gw1: %+v, want alive since its lease, no errors", g1)
	}
	if len(g1.Devices) != 2 || g1.Devices[0].MAC != enforced.MAC || g1.Devices[1].MAC != pending.MAC ||
		g1.Devices[0].MUDURL != enforced.MUDURL || g1.Devices[0].PolicyID != "mud-76100" || !g1.Devices[0].UpdatedAt.Equal(viewAt) ||
		strings.Join(g1.Devices[0].IPs, ",") != "192.0.2.11,2001:db8::11" || g1.Devices[1].State != "pending-approval" {
		t.Errorf("gw1's devices: %+v", g1.Devices)
	}
	if g2.ID != "gw2" || g2.Alive || len(g2.Devices) != 1 || g2.Devices[0].State != "quarantined" || g2.Errors != 4 {
		t.Errorf("gw2: %+v, want down with 1 device and 4 errors", g2)
	}
	wantErrs := map[string]string{
		"/mud/gateways/gw2/devices/02:00:00:00:02:02":            "not a device summary",
		"/mud/gateways/gw2/devices/02:00:00:00:02:03":            `device summary of "02:00:00:00:09:99" under the key of "02:00:00:00:02:03"`,
		"/mud/gateways/gw2/devices/02:00:00:00:02:04":            "not a device summary",
		"/mud/gateways/gw2/notes":                                "not a key a gateway writes",
		"/mud/gateways/bad id\x1b[31m/devices/02:00:00:00:03:01": "gateway id must be",
	}
	if len(snap.Errors) != len(wantErrs) {
		t.Errorf("errors %v, want %d", snap.Errors, len(wantErrs))
	}
	for _, e := range snap.Errors {
		if want, ok := wantErrs[e.Key]; !ok || !strings.Contains(e.Err.Error(), want) {
			t.Errorf("error %v: want %q", e, want)
		}
		if !strings.HasPrefix(e.Key, "/mud/gateways/"+e.Gateway+"/") {
			t.Errorf("error %v names gateway %q", e, e.Gateway)
		}
	}
	want := map[Kind]int{KindVerdictURL: 2, KindPinMAC: 1}
	for _, k := range Kinds() {
		if snap.Shared[k] != want[k] {
			t.Errorf("shared %s: %d, want %d", k, snap.Shared[k], want[k])
		}
	}
	if snap.Truncated || snap.Revision == 0 {
		t.Errorf("truncated %v at revision %d", snap.Truncated, snap.Revision)
	}
}

// TestViewUnderFleetRoles: with etcd's authentication enabled by
// scripts/fleet-roles.sh, a gateway's credentials read every gateway's keys
// and count the shared decisions: the view's paged range reads and counts
// stay inside what the gateway roles may read.
func TestViewUnderFleetRoles(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	netlab.RequireCommand(t, "bash")
	cert, key, ca, err := cl.ClientFiles("root")
	if err != nil {
		t.Fatal(err)
	}
	script, err := filepath.Abs("../scripts/fleet-roles.sh")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "ip", "netns", "exec", cl.NS, "bash", script, "--endpoints", strings.Join(cl.Endpoints(), ","),
		"--cacert", ca, "--cert", cert, "--key", key, "--prefix", "/mud", "gw1", "gw2").CombinedOutput()
	if err != nil {
		t.Fatalf("fleet-roles.sh: %v\n%s", err, out)
	}
	gw1, err := cl.AdminClient("gw1")
	if err != nil {
		t.Fatal(err)
	}
	defer gw1.Close()
	for i := range 3 {
		mac := fmt.Sprintf("02:00:00:00:01:%02x", i+1)
		if _, err := gw1.Put(ctx, "/mud/gateways/gw1/devices/"+mac, string(summaryJSON(t, DeviceSummary{MAC: mac, State: "enforced"}))); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := gw1.Put(ctx, "/mud/shared/overrides/02:00:00:00:01:01", `{}`); err != nil {
		t.Fatal(err)
	}
	snap, err := openLabView(t, cl, "gw2").Read(ctx)
	if err != nil {
		t.Fatalf("gw2 reading the fleet under its role: %v", err)
	}
	if len(snap.Gateways) != 1 || snap.Gateways[0].ID != "gw1" || len(snap.Gateways[0].Devices) != 3 || snap.Shared[KindOverrides] != 1 || len(snap.Errors) != 0 {
		t.Errorf("gw2's view: %+v", snap)
	}
}

// TestViewBounded: past MaxKeys the view stops reading and says so.
func TestViewBounded(t *testing.T) {
	cl := etcdlab.Start(t, 1)
	admin, err := cl.AdminClient("root")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	ctx := context.Background()
	for i := range 5 {
		mac := "02:00:00:00:04:0" + string(rune('1'+i))
		if _, err := admin.Put(ctx, "/mud/gateways/gw4/devices/"+mac, string(summaryJSON(t, DeviceSummary{MAC: mac, State: "enforced"}))); err != nil {
			t.Fatal(err)
		}
	}
	tc, err := cl.ClientTLS("gw4")
	if err != nil {
		t.Fatal(err)
	}
	v, err := OpenView(ViewConfig{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", PageSize: 2, MaxKeys: 3, Dial: cl.Dialer(etcdlab.Source(1))})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	snap, err := v.Read(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if !snap.Truncated || len(snap.Gateways) != 1 || len(snap.Gateways[0].Devices) != 3 {
		t.Errorf("snapshot %+v, want 3 devices and truncated", snap)
	}
}

// TestViewUnreachable: when no member answers, Read fails after the
// request timeout with an error naming the endpoints.
func TestViewUnreachable(t *testing.T) {
	cl := etcdlab.Start(t, 1)
	tc, err := cl.ClientTLS("gw1")
	if err != nil {
		t.Fatal(err)
	}
	// Nothing listens on this port in the lab's namespace.
	dead := "https://127.0.0.1:2999"
	v, err := OpenView(ViewConfig{Endpoints: []string{dead}, TLS: tc, Prefix: "/mud", RequestTimeout: time.Second, Dial: cl.Dialer(etcdlab.Source(1))})
	if err != nil {
		t.Fatal(err)
	}
	defer v.Close()
	start := time.Now()
	_, err = v.Read(context.Background())
	took := time.Since(start)
	if err == nil || !strings.Contains(err.Error(), "no answer from etcd ("+dead+") within 1s") {
		t.Errorf("Read: %v", err)
	}
	if took > 5*time.Second {
		t.Errorf("Read took %v with a 1s request timeout", took)
	}
}

// TestOpenViewChecksCredentials: missing or unreadable credentials and a
// bad prefix are refused before anything is dialled, naming the problem.
func TestOpenViewChecksCredentials(t *testing.T) {
	dir := t.TempDir()
	notPEM := filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(notPEM, []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	ep := []string{"https://192.0.2.21:2379"}
	for _, tc := range []struct {
		cfg  ViewConfig
		want string
	}{
		{ViewConfig{Prefix: "/mud"}, "no etcd endpoints"},
		{ViewConfig{Endpoints: ep, Prefix: "mud/"}, "key prefix must start with /"},
		{ViewConfig{Endpoints: ep, Prefix: "/mud"}, "etcd needs a CA, a client certificate and its key"},
		{ViewConfig{Endpoints: ep, Prefix: "/mud", CACert: filepath.Join(dir, "missing.pem"), Cert: "c", Key: "k"}, "missing.pem: no such file"},
		{ViewConfig{Endpoints: ep, Prefix: "/mud", CACert: notPEM, Cert: "c", Key: "k"}, "no PEM certificate in it"},
	} {
		_, err := OpenView(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%+v: %v, want %q", tc.cfg, err, tc.want)
		}
	}
}

// classifyOne files one key of a gateway as Read does.
func classifyOne(rest string, value []byte) Snapshot {
	v := &View{cfg: ViewConfig{Prefix: "/mud"}, lay: layout{"/mud"}}
	snap := Snapshot{}
	gws := map[string]*GatewayView{}
	v.classify(rest, []byte("/mud/gateways/"+rest), value, func(id string) *GatewayView {
		if gws[id] == nil {
			gws[id] = &GatewayView{ID: id}
		}
		return gws[id]
	}, &snap)
	for _, g := range gws {
		snap.Gateways = append(snap.Gateways, *g)
	}
	return snap
}

// FuzzViewClassify: whatever a gateway's key and value hold, the view
// files it as exactly one of a liveness key, a device summary whose MAC is
// the key's, or an error naming the key.
func FuzzViewClassify(f *testing.F) {
	f.Add("gw1/alive", []byte("2026-03-01T12:00:00Z"))
	f.Add("gw1/devices/02:00:00:00:01:01", summaryJSON(f, DeviceSummary{MAC: "02:00:00:00:01:01", IPs: []string{"192.0.2.11", "2001:db8::11"},
		MUDURL: "https://lighting.example.com/lightbulb2000", State: "enforced", Enforcement: "enforced", PolicyID: "mud-76100", UpdatedAt: viewAt}))
	f.Add("gw1/devices/02%3A00%3A00%3A00%3A01%3A01", []byte(`{"mac":"02:00:00:00:01:01","state":"seen"}`))
	f.Add("gw1/devices/%zz", []byte(`{}`))
	f.Add("../devices/x", []byte(`null`))
	f.Fuzz(func(t *testing.T, rest string, value []byte) {
		snap := classifyOne(rest, value)
		devices, alive := 0, 0
		for _, g := range snap.Gateways {
			devices += len(g.Devices)
			if g.Alive {
				alive++
			}
			for _, d := range g.Devices {
				if d.State == "" || !strings.HasSuffix(strings.ToLower(rest), "/devices/"+strings.ToLower(d.MAC)) && !strings.Contains(rest, "%") {
					t.Errorf("%q: device %+v", rest, d)
				}
			}
		}
		if devices+alive+len(snap.Errors) != 1 {
			t.Errorf("%q %q: %d devices, %d alive, errors %v", rest, value, devices, alive, snap.Errors)
		}
		for _, e := range snap.Errors {
			if e.Key != "/mud/gateways/"+rest {
				t.Errorf("error %v does not name the key", e)
			}
		}
	})
}
