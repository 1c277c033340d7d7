package mudd

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// TestDaemonLifecycle runs the mudd binary in a lab's gateway namespace:
// it comes up with its control socket, answers the same binary invoked as
// mudctl, reloads on SIGHUP, and stops on SIGTERM leaving its nftables
// tables in the kernel.
func TestDaemonLifecycle(t *testing.T) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "go")
	lab := netlab.New(t, netlab.Config{Devices: 1, Servers: 1, StaticDevices: true})
	dir := t.TempDir()
	const version = "v0.0.0-lab"
	bin, mudctl, err := multicall.Build(dir, multicall.Options{Version: version})
	if err != nil {
		t.Fatal(err)
	}
	sock := filepath.Join(dir, "mudd.sock")
	cfgPath := filepath.Join(dir, "mudd.yaml")
	writeCfg := func(level string) {
		cfg := fmt.Sprintf("interfaces: [br-lan]\nstate_dir: %s\nsocket: %s\nsocket_group: \"\"\nlog:\n  level: %s\nmetrics:\n  listen: \"\"\n"+
			"policy:\n  controllers:\n    urn:ietf:params:mud:dns: [192.0.2.1/32]\n", filepath.Join(dir, "state"), sock, level)
		if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeCfg("info")
	if code, _, errOut := mudd(t, "check-config", "--config", cfgPath); code != 0 {
		t.Fatalf("check-config: exit %d: %s", code, errOut)
	}
	cmd, out, err := lab.Start(lab.GW.NS, bin, "--config", cfgPath)
	if err != nil {
		t.Fatal(err)
	}
	c := api.NewClient(sock)
	defer c.Close()
	deadline := time.Now().Add(15 * time.Second)
	var st api.Status
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		st, err = c.Status(ctx)
		cancel()
		if err == nil || time.Now().After(deadline) {
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	if err != nil {
		t.Fatalf("status: %v\n%s", err, out.String())
	}
	if st.Version != version || !st.Enforcer.Healthy {
		t.Errorf("status %+v", st)
	}
	cs, err := c.Controllers(context.Background())
	if err != nil || len(cs) != 1 || cs[0].Source != "config" {
		t.Errorf("controllers %+v %v", cs, err)
	}
	// The binary invoked as mudctl talks to it.
	if out, err := exec.Command(mudctl, "--socket", sock, "status", "-o", "json").Output(); err != nil || !strings.Contains(string(out), `"version": "`+version+`"`) {
		t.Errorf("mudctl status: %v\n%s", err, out)
	}

	writeCfg("debug")
	if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	for !strings.Contains(out.String(), "configuration reloaded") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !strings.Contains(out.String(), "configuration reloaded") {
		t.Errorf("no reload logged:\n%s", out.String())
	}

	if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
		t.Fatal(err)
	}
	waited := make(chan error, 1)
	go func() { waited <- cmd.Wait() }()
	select {
	case err := <-waited:
		if err != nil {
			t.Errorf("mudd exit: %v\n%s", err, out.String())
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("mudd did not stop on SIGTERM\n%s", out.String())
	}
	t.Log(out.String())
	// The tables stay in the kernel (a MUD device is never left open).
	if o, err := exec.Command("ip", "netns", "exec", lab.GW.NS, "nft", "list", "table", "inet", "mud").CombinedOutput(); err != nil {
		t.Errorf("table inet mud gone after SIGTERM: %v %s", err, o)
	}
}
