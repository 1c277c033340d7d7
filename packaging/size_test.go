package packaging

import (
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
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
	binaryBudget = 15_000_000
)

// ipkTags are the build tags of the OpenWrt binaries (make package, and
// the feed's GO_PKG_TAGS): no web dashboard, which would add 4.5 MiB, and
// no etcd client (store.backend etcd), which would add 10 MiB.
var ipkTags = []string{"nodashboard", "nofleet"}

// The .ipk for the most common small router target, mipsel_24kc (MT7621
// and its kind), built as make package builds it (without the dashboard),
// fits the budgets.
func TestRouterPackageSize(t *testing.T) {
	netlab.RequireCommand(t, "go")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	mudd, _, err := multicall.Build(bin, multicall.Options{Version: testVersion, Strip: true, Tags: ipkTags,
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

// The OpenWrt feed package and make package build the router's mudd with
// the same tags as TestRouterPackageSize measures.
func TestRouterBuildTags(t *testing.T) {
	tmpl, err := os.ReadFile("openwrt/mudd/Makefile.tmpl")
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile("../Makefile")
	if err != nil {
		t.Fatal(err)
	}
	feed := regexp.MustCompile(`(?m)^GO_PKG_TAGS:=(.*)$`).FindSubmatch(tmpl)
	make := regexp.MustCompile(`(?m)^IPK_TAGS\s*:=\s*(.*)$`).FindSubmatch(mk)
	if feed == nil || make == nil {
		t.Fatalf("no GO_PKG_TAGS in the feed Makefile (%q) or IPK_TAGS in the Makefile (%q)", feed, make)
	}
	for _, tag := range ipkTags {
		if !slices.Contains(strings.Split(string(feed[1]), ","), tag) {
			t.Errorf("the feed's GO_PKG_TAGS %q lacks %s", feed[1], tag)
		}
		if !slices.Contains(strings.Fields(string(make[1])), tag) {
			t.Errorf("the Makefile's IPK_TAGS %q lacks %s", make[1], tag)
		}
	}
}
