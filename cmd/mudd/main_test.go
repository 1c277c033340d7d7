package main

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

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
		{"extra argument", []string{"check-config", "--config", good, "x"}, 2, "unexpected"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var out, errb bytes.Buffer
			if code := run(tc.args, &out, &errb); code != tc.code {
				t.Fatalf("exit %d, want %d; stderr: %s", code, tc.code, errb.String())
			}
			if tc.wantErr != "" && !strings.Contains(errb.String(), tc.wantErr) {
				t.Errorf("stderr %q does not name %q", errb.String(), tc.wantErr)
			}
		})
	}
}

func TestVersion(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"--version"}, &out, &errb); code != 0 || !strings.HasPrefix(out.String(), "mudd ") {
		t.Fatalf("--version: exit %d, %q %q", code, out.String(), errb.String())
	}
	if code := run([]string{"frobnicate"}, &out, &errb); code != 2 {
		t.Errorf("unknown command: exit %d, want 2", code)
	}
}
