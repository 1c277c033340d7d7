package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// read returns the files below dir by their slash-separated relative path.
func read(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		rel, _ := filepath.Rel(dir, p)
		files[filepath.ToSlash(rel)] = string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}

func TestGenerate(t *testing.T) {
	date := time.Date(2026, time.March, 14, 0, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	if err := generate(dir, "v1.2.3", date); err != nil {
		t.Fatal(err)
	}
	files := read(t, dir)
	for _, name := range []string{
		"man/man1/mudctl.1", "man/man1/mudctl-verify.1", "man/man1/mudctl-fetch.1", "man/man1/mudctl-lint.1",
		"man/man1/mudctl-device-show.1", "man/man1/mudctl-controllers-set.1", "man/man1/mudctl-completion-bash.1",
		"man/man8/mudd.8", "man/man8/mudd-check-config.8",
		"completions/bash/mudctl", "completions/zsh/_mudctl", "completions/fish/mudctl.fish",
	} {
		if files[name] == "" {
			t.Errorf("%s missing or empty", name)
		}
	}
	for name := range files {
		if strings.Contains(name, "help") || strings.Contains(name, "__complete") {
			t.Errorf("page for an internal command: %s", name)
		}
	}
	for _, c := range []struct{ file, want string }{
		{"man/man1/mudctl.1", `.TH "MUDCTL" "1" "Mar 2026" "mud v1.2.3" "mud manual"`},
		{"man/man1/mudctl.1", "Exit status:"},
		{"man/man1/mudctl.1", "$MUDCTL_SOCKET"},
		{"man/man1/mudctl-verify.1", `\fB--trust\fP`},
		{"man/man1/mudctl-verify.1", `\fB--system-roots\fP`},
		{"man/man1/mudctl-verify.1", `\fB--at\fP`},
		{"man/man1/mudctl-fetch.1", `\fB--trust\fP`},
		{"man/man1/mudctl-fetch.1", `\fB--server-ca\fP`},
		{"man/man8/mudd.8", `.TH "MUDD" "8" "Mar 2026" "mud v1.2.3" "mud manual"`},
		{"man/man8/mudd.8", "SIGHUP"},
		{"man/man8/mudd.8", "Exit status:"},
		{"man/man8/mudd-check-config.8", `\fB--config\fP`},
		{"completions/bash/mudctl", "__start_mudctl"},
		{"completions/zsh/_mudctl", "#compdef mudctl"},
		{"completions/fish/mudctl.fish", "complete -c mudctl"},
	} {
		if !strings.Contains(files[c.file], c.want) {
			t.Errorf("%s lacks %q", c.file, c.want)
		}
	}
	// The deprecated spellings are accepted but not documented.
	for _, f := range []string{"man/man1/mudctl-verify.1", "man/man1/mudctl-fetch.1"} {
		if strings.Contains(files[f], `\fB--ca\fP`) {
			t.Errorf("%s documents the deprecated --ca", f)
		}
	}
	for name, body := range files {
		if strings.Contains(body, "Auto generated") {
			t.Errorf("%s carries a generation stamp", name)
		}
	}
}

// The same sources give the same bytes, whatever the environment says
// about mudctl's socket.
func TestReproducible(t *testing.T) {
	date, err := sourceDate("1767225600")
	if err != nil || !date.Equal(time.Date(2026, time.January, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("sourceDate: %v %v", date, err)
	}
	if _, err := sourceDate("yesterday"); err == nil {
		t.Error("a SOURCE_DATE_EPOCH that is not a number is accepted")
	}
	if d, _ := sourceDate(""); !d.Equal(time.Unix(0, 0)) {
		t.Errorf("no SOURCE_DATE_EPOCH: %v", d)
	}
	a, b := t.TempDir(), t.TempDir()
	if err := generate(a, "dev", date); err != nil {
		t.Fatal(err)
	}
	t.Setenv("MUDCTL_SOCKET", "/tmp/elsewhere.sock")
	if err := generate(b, "dev", date); err != nil {
		t.Fatal(err)
	}
	fa, fb := read(t, a), read(t, b)
	if len(fa) != len(fb) {
		t.Fatalf("%d files, then %d", len(fa), len(fb))
	}
	for name, body := range fa {
		if !bytes.Equal([]byte(body), []byte(fb[name])) {
			t.Errorf("%s differs between two runs", name)
		}
	}
}

// The documentation generator is not linked into the mudd binary.
func TestNotLinkedIntoMudd(t *testing.T) {
	out, err := exec.Command("go", "list", "-deps", "github.com/openmud/mud/cmd/mudd").Output()
	if err != nil {
		t.Fatalf("go list: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 {
		t.Fatalf("go list -deps: %q", out)
	}
	for _, dep := range deps {
		if strings.HasPrefix(dep, "github.com/spf13/cobra/doc") || strings.Contains(dep, "go-md2man") || strings.Contains(dep, "blackfriday") {
			t.Errorf("mudd links %s", dep)
		}
	}
}
