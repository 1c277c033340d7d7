package demo

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// TestDemo runs the whole `make demo` demonstration with freshly built
// binaries, and checks that it leaves no namespace or /etc/netns entry
// behind.
func TestDemo(t *testing.T) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "dnsmasq", "udhcpc", "go")
	// Only mudd is built: the demonstration runs it as mudctl too, as
	// `make demo` does.
	mudd := filepath.Join(t.TempDir(), "mudd")
	build := exec.Command("go", "build", "-o", mudd, multicall.Package)
	build.Env = append(os.Environ(), "CGO_ENABLED=0")
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("building mudd: %v\n%s", err, out)
	}
	var out bytes.Buffer
	err := Run(t.Context(), Options{Mudd: mudd, Out: &out})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatalf("demo: %v", err)
	}
	for _, want := range []string{"enforced", "[ok] bulb-1 → cloud.example.com:443", "refused", "All expectations held", "Cleaned up"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	prefix := fmt.Sprintf("mudlab-%d-", os.Getpid())
	for _, d := range []string{"/var/run/netns", "/etc/netns"} {
		entries, _ := os.ReadDir(d)
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), prefix) {
				t.Errorf("left behind: %s/%s", d, e.Name())
			}
		}
	}
}
