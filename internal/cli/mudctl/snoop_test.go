package mudctl

import (
	"strings"
	"testing"
)

// A capture that cannot start is a failure (exit 1) that names the
// interface; an interface name that cannot exist, or one given twice, is
// a usage error (exit 2).
func TestSnoopCaptureFailure(t *testing.T) {
	code, out, errOut := mudctl(t, "snoop", "nosuchif0")
	if code != 1 || !strings.Contains(errOut, "mudctl: capture failed") || !strings.Contains(errOut, "nosuchif0") {
		t.Errorf("snoop nosuchif0: exit %d, want 1 naming the interface\nstdout: %s\nstderr: %s", code, out, errOut)
	}
	for _, args := range [][]string{
		{"snoop", "lo", "lo"},
		{"snoop", strings.Repeat("x", 16)},
		{"snoop"},
	} {
		if code, _, errOut := mudctl(t, args...); code != 2 {
			t.Errorf("%v: exit %d, want 2\nstderr: %s", args, code, errOut)
		}
	}
}
