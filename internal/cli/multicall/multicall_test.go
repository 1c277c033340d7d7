package multicall

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// The built binary is mudd, and mudctl through the link beside it.
func TestBuild(t *testing.T) {
	dir := t.TempDir()
	mudd, mudctl, err := Build(dir, Options{Version: "v1.2.3", Strip: true})
	if err != nil {
		t.Fatal(err)
	}
	if target, err := os.Readlink(mudctl); err != nil || target != "mudd" {
		t.Errorf("%s links to %q (%v), want mudd beside it", mudctl, target, err)
	}
	for bin, want := range map[string]string{mudd: "mudd v1.2.3\n", mudctl: "mudctl v1.2.3\n"} {
		out, err := exec.Command(bin, "--version").Output()
		if err != nil || string(out) != want {
			t.Errorf("%s --version: %q (%v), want %q", filepath.Base(bin), out, err, want)
		}
	}
}

func TestModuleDir(t *testing.T) {
	dir, err := ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	mod, err := os.ReadFile(filepath.Join(dir, "go.mod"))
	if err != nil || !strings.HasPrefix(string(mod), "module "+module+"\n") {
		t.Errorf("ModuleDir %s holds no go.mod of %s (%v)", dir, module, err)
	}
}
