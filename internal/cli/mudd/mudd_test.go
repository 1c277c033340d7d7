package mudd

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"golang.org/x/crypto/bcrypt"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// mudd runs the command line in-process as Main does and returns exit
// code, stdout and stderr.
func mudd(t *testing.T, args ...string) (int, string, string) {
	t.Helper()
	var out, errb bytes.Buffer
	code := Main(testVersion, args, strings.NewReader(""), &out, &errb)
	return code, out.String(), errb.String()
}

const testVersion = "v0.0.0-test"

func writeFile(t *testing.T, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "mudd.yaml")
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

func TestCheckConfig(t *testing.T) {
	good := writeFile(t, "interfaces: [br-lan]\npolicy:\n  on_failure: block\n")
	typo := writeFile(t, "interfaces: [br-lan]\npolicy:\n  on_failur: block\n")
	badValue := writeFile(t, "interfaces: [br-lan]\npolicy:\n  on_failure: maybe\n")
	for _, tc := range []struct {
		name    string
		args    []string
		code    int
		wantErr string
	}{
		{"valid", []string{"check-config", "--config", good}, 0, ""},
		{"unknown key", []string{"check-config", "--config", typo}, 1, "on_failur"},
		{"bad value", []string{"check-config", "--config", badValue}, 1, "on_failure"},
		{"missing file", []string{"check-config", "--config", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "nope.yaml"},
		{"usage", []string{"check-config", "--bogus"}, 2, ""},
		{"single-dash flag", []string{"check-config", "-config", good}, 0, ""},
		{"single-dash flag with value", []string{"check-config", "-config=" + typo}, 1, "on_failur"},
		{"extra argument", []string{"check-config", "--config", good, "x"}, 2, `"x"`},
		// The daemon loads its configuration before it touches anything.
		{"daemon, missing file", []string{"--config", filepath.Join(t.TempDir(), "nope.yaml")}, 1, "nope.yaml"},
		{"daemon, invalid file", []string{"--config", typo}, 1, "on_failur"},
		{"daemon, extra argument", []string{"--config", good, "x"}, 2, `"x"`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			code, out, errOut := mudd(t, tc.args...)
			if code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errOut)
			}
			if tc.wantErr != "" && !strings.Contains(errOut, tc.wantErr) {
				t.Errorf("stderr %q does not name %q", errOut, tc.wantErr)
			}
			if code == 0 && out != good+": ok\n" {
				t.Errorf("stdout %q", out)
			}
		})
	}
}

func TestVersionAndHelp(t *testing.T) {
	if code, out, errOut := mudd(t, "--version"); code != 0 || out != "mudd "+testVersion+"\n" {
		t.Fatalf("--version: exit %d, %q %q", code, out, errOut)
	}
	if code, _, _ := mudd(t, "frobnicate"); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
	code, out, _ := mudd(t, "--help")
	if code != 0 {
		t.Fatalf("--help: exit %d", code)
	}
	for _, want := range []string{"check-config", "--config", "SIGHUP", "Exit status:", "  1  the configuration is invalid", "  2  a usage error"} {
		if !strings.Contains(out, want) {
			t.Errorf("mudd --help lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(out, "completion") {
		t.Errorf("mudd offers shell completion:\n%s", out)
	}
}

// mudd built with the tag nodashboard (the OpenWrt package's build) has no
// dashboard: a configured dashboard.listen is refused, naming why, by
// check-config and the daemon before it touches anything, and
// hash-password says the build has no use for it.
func TestNoDashboardBuild(t *testing.T) {
	netlab.RequireCommand(t, "go")
	bin, _, err := multicall.Build(t.TempDir(), multicall.Options{Tags: []string{"nodashboard"}})
	if err != nil {
		t.Fatal(err)
	}
	hash, err := bcrypt.GenerateFromPassword([]byte("correct horse battery"), bcrypt.MinCost)
	if err != nil {
		t.Fatal(err)
	}
	on := writeFile(t, fmt.Sprintf("interfaces: [br-lan]\ndashboard:\n  listen: 127.0.0.1:8413\n  password_hash: %q\n", hash))
	off := writeFile(t, "interfaces: [br-lan]\n")
	run := func(stdin string, args ...string) (int, string) {
		cmd := exec.Command(bin, args...)
		cmd.Stdin = strings.NewReader(stdin)
		out, err := cmd.CombinedOutput()
		var ee *exec.ExitError
		if err != nil && !errors.As(err, &ee) {
			t.Fatal(err)
		}
		return cmd.ProcessState.ExitCode(), string(out)
	}
	const why = "built without the web dashboard"
	for _, args := range [][]string{{"check-config", "--config", on}, {"--config", on}} {
		if code, out := run("", args...); code != 1 || !strings.Contains(out, why) || !strings.Contains(out, "dashboard.listen") {
			t.Errorf("%v: exit %d: %s", args, code, out)
		}
	}
	if code, out := run("", "check-config", "--config", off); code != 0 {
		t.Errorf("check-config without a dashboard: exit %d: %s", code, out)
	}
	if code, out := run("correct horse battery\n", "hash-password"); code != 1 || !strings.Contains(out, why) {
		t.Errorf("hash-password: exit %d: %s", code, out)
	}
}

// With store.backend etcd, credentials that cannot be read stop mudd at
// start with a message naming the key, rather than run as a lone gateway.
func TestBuildEtcdBackendNeedsCredentials(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Store.Backend = config.BackendEtcd
	cfg.Store.Etcd = config.StoreEtcd{Endpoints: []string{"https://192.0.2.21:2379"}, Prefix: "/mud", GatewayID: "gw1",
		CACert: filepath.Join(cfg.StateDir, "missing-ca.pem"), Cert: "/nonexistent/gw1.pem", Key: "/nonexistent/gw1.key"}
	_, err := build(cfg, "test", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "store.etcd.ca_cert") {
		t.Fatalf("build with an unreadable store.etcd.ca_cert: %v, want an error naming it", err)
	}
}
