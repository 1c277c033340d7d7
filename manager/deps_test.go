package manager_test

import (
	"os/exec"
	"slices"
	"strings"
	"testing"
)

// The manager does not know the control API: package api adapts the
// manager, not the other way round, so the wire protocol can change
// without touching the manager and the manager's types without changing
// the protocol.
func TestManagerDoesNotImportAPI(t *testing.T) {
	gobin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("no go command to list the manager's dependencies: %v", err)
	}
	out, err := exec.Command(gobin, "list", "-deps", "-f", "{{.ImportPath}}", "github.com/openmud/mud/manager").Output()
	if err != nil {
		t.Fatalf("go list -deps: %v", err)
	}
	deps := strings.Fields(string(out))
	if len(deps) < 10 || !slices.Contains(deps, "github.com/openmud/mud/store") {
		t.Fatalf("go list -deps printed no plausible dependency list: %q", out)
	}
	for _, d := range deps {
		if d == "github.com/openmud/mud/api" || strings.HasPrefix(d, "github.com/openmud/mud/api/") {
			t.Errorf("the manager depends on %s", d)
		}
		// The etcd client stays out of a mudd built without it (nofleet):
		// the manager takes the fleet through its Fleet interface.
		if d == "github.com/openmud/mud/fleet" || strings.HasPrefix(d, "go.etcd.io/etcd/") || d == "google.golang.org/grpc" {
			t.Errorf("the manager depends on %s", d)
		}
	}
}
