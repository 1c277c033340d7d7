package mudd

import (
	"bytes"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/config"
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

// A configuration asking for the etcd backend is refused at start with a
// message naming the key, rather than run as a lone gateway.
func TestBuildRefusesEtcdBackend(t *testing.T) {
	cfg := config.Default()
	cfg.StateDir = t.TempDir()
	cfg.Store.Backend = config.BackendEtcd
	_, err := build(cfg, "test", slog.New(slog.DiscardHandler))
	if err == nil || !strings.Contains(err.Error(), "store.backend") {
		t.Fatalf("build with store.backend etcd: %v, want an error naming store.backend", err)
	}
}
