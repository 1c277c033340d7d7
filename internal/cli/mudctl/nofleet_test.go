//go:build nofleet

package mudctl

import (
	"strings"
	"testing"
)

// A mudctl built without the etcd client says so for --fleet, exit 2.
func TestFleetWithoutFleetSupport(t *testing.T) {
	for _, cmd := range []string{"status", "devices"} {
		code, _, errOut := mudctl(t, "--fleet", cmd)
		if code != 2 || !strings.Contains(errOut, "built without fleet support (build tag nofleet") {
			t.Errorf("--fleet %s: exit %d: %s", cmd, code, errOut)
		}
	}
}
