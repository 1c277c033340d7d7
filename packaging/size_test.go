package packaging

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// The budgets of the OpenWrt package on a router with 16 MB of flash, of
// which the firmware leaves a few MB for packages (README.md, Size).
const (
	// ipkBudget bounds the mipsel_24kc .ipk: what opkg downloads, and
	// about what the flash holds, as the overlay file system (JFFS2,
	// UBIFS) stores files compressed.
	ipkBudget = 5_000_000
	// binaryBudget bounds the installed, stripped mudd for mipsel_24kc:
	// what it takes unpacked (in RAM, when installed to /tmp).
	binaryBudget = 14_000_000
)

// The .ipk for the most common small router target, mipsel_24kc (MT7621
// and its kind), built as make package builds it, fits the budgets.
func TestRouterPackageSize(t *testing.T) {
	netlab.RequireCommand(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	mudd, _, err := multicall.Build(bin, multicall.Options{Version: testVersion, Strip: true,
		Env: []string{"GOOS=linux", "GOARCH=mipsle", "GOMIPS=softfloat"}})
	if err != nil {
		t.Fatal(err)
	}
	ipks := pack(t, "-config", "openwrt/nfpm.yaml", "-bindir", bin, "-arch", "mipsle", "-ipk-arch", "mipsel_24kc",
		"-formats", "ipk", "-out", filepath.Join(dir, "dist"))
	if len(ipks) != 1 {
		t.Fatalf("mkpkg wrote %v", ipks)
	}
	for _, c := range []struct {
		what, path string
		budget     int64
	}{
		{"the mipsel_24kc .ipk", ipks[0], ipkBudget},
		{"mudd for mipsel_24kc", mudd, binaryBudget},
	} {
		fi, err := os.Stat(c.path)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("%s: %d bytes (budget %d)", c.what, fi.Size(), c.budget)
		if fi.Size() > c.budget {
			t.Errorf("%s has %d bytes, over its budget of %d: see packaging/README.md (Size) for what grew and how to find it",
				c.what, fi.Size(), c.budget)
		}
	}
}
