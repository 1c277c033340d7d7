package packaging

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"io/fs"
	"maps"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/lab/netlab"
)

// requireCheckout skips (or, in CI, fails) when the repository is not a git
// checkout: the source tarball is made of its commit HEAD.
func requireCheckout(t *testing.T) {
	t.Helper()
	netlab.RequireCommand(t, "git")
	if out, err := exec.Command("git", "-C", "..", "rev-parse", "--verify", "HEAD").CombinedOutput(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("the repository is not a git checkout: %v\n%s", err, out)
		}
		t.Skipf("the source tarball is made of a git commit, and this is not a checkout: %s", out)
	}
}

// release makes the source tarball of HEAD and the feed package for
// version in a new directory, as `make openwrt-feed` does.
func release(t *testing.T, version string) (tarball, feed string) {
	t.Helper()
	out := t.TempDir()
	tarball, err := SourceTarball("..", "HEAD", version, out)
	if err != nil {
		t.Fatalf("SourceTarball: %v", err)
	}
	feed, err = OpenWrtFeed(".", tarball, version, filepath.Join(out, "openwrt-feed"))
	if err != nil {
		t.Fatalf("OpenWrtFeed: %v", err)
	}
	return tarball, feed
}

// A release's OpenWrt feed package builds from its source tarball, and
// states the tarball's SHA-256, which stays true because the same commit
// always yields the same tarball.
func TestReleaseTarballAndFeed(t *testing.T) {
	requireCheckout(t)
	const version = "1.2.3"
	tarball, feed := release(t, version)
	if got, want := filepath.Base(tarball), "mud-1.2.3.tar.gz"; got != want {
		t.Errorf("tarball %s, want %s", got, want)
	}

	tb, err := os.ReadFile(tarball)
	if err != nil {
		t.Fatal(err)
	}
	mk, err := os.ReadFile(filepath.Join(feed, "Makefile"))
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(tb)
	fields := makeVars(string(mk))
	for k, want := range map[string]string{
		"PKG_NAME":          Project.Package,
		"PKG_VERSION":       version,
		"PKG_HASH":          hex.EncodeToString(sum[:]),
		"PKG_SOURCE":        "mud-$(PKG_VERSION).tar.gz",
		"PKG_SOURCE_URL":    Project.Homepage + "/releases/download/v$(PKG_VERSION)/",
		"PKG_BUILD_DIR":     "$(BUILD_DIR)/mud-$(PKG_VERSION)",
		"PKG_LICENSE":       Project.License,
		"PKG_LICENSE_FILES": "LICENSE",
		"PKG_MAINTAINER":    Project.Maintainer,
	} {
		if got := fields[k]; got != want {
			t.Errorf("feed Makefile: %s:=%s, want %s", k, got, want)
		}
	}
	for _, gone := range []string{"PKG_SOURCE_PROTO", "PKG_MIRROR_HASH", "PKG_SOURCE_VERSION"} {
		if _, ok := fields[gone]; ok {
			t.Errorf("feed Makefile sets %s: it builds from the tarball", gone)
		}
	}
	if !strings.Contains(string(mk), "URL:="+Project.Homepage+"\n") {
		t.Errorf("feed Makefile: the package's URL is not %s", Project.Homepage)
	}
	if strings.Contains(string(mk), "{{") {
		t.Errorf("feed Makefile has template syntax left:\n%s", mk)
	}

	// The tarball: everything under mud-VERSION/, with the module, the
	// license and the commands.
	names := readTarGz(t, bytes.NewReader(tb))
	for _, want := range []string{"mud-1.2.3/go.mod", "mud-1.2.3/LICENSE", "mud-1.2.3/cmd/mudd/"} {
		if _, ok := names[want]; !ok {
			t.Errorf("the tarball lacks %s", want)
		}
	}
	for name := range names {
		if !strings.HasPrefix(name, "mud-1.2.3/") {
			t.Errorf("tarball member %s is outside mud-1.2.3/", name)
		}
	}

	// The feed's files are the template's.
	err = filepath.WalkDir("openwrt/mudd/files", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		want, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		got, err := os.ReadFile(filepath.Join(feed, "files", strings.TrimPrefix(path, "openwrt/mudd/files/")))
		if err != nil {
			return err
		}
		if !bytes.Equal(got, want) {
			t.Errorf("the feed's copy of %s differs", path)
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}

	// Made again: the same bytes.
	tarball2, feed2 := release(t, version)
	if tb2, err := os.ReadFile(tarball2); err != nil || !bytes.Equal(tb, tb2) {
		t.Errorf("the tarball made twice differs (%v)", err)
	}
	if a, b := dirBytes(t, feed), dirBytes(t, feed2); !maps.Equal(a, b) {
		t.Errorf("the feed made twice differs:\n%v\n%v", slices.Sorted(maps.Keys(a)), slices.Sorted(maps.Keys(b)))
	}
}

func TestReleaseRefuses(t *testing.T) {
	dir := t.TempDir()
	for name, err := range map[string]error{
		"version with a space": func() error { _, err := SourceTarball("..", "HEAD", "1.2.3 x", dir); return err }(),
		"version in make":      func() error { _, err := SourceTarball("..", "HEAD", "$(shell id)", dir); return err }(),
		"revision as option":   func() error { _, err := SourceTarball("..", "--output=/tmp/x", "1.2.3", dir); return err }(),
		"tarball of another version": func() error {
			p := filepath.Join(dir, "mud-1.0.0.tar.gz")
			if err := os.WriteFile(p, []byte("x"), 0o644); err != nil {
				t.Fatal(err)
			}
			_, err := OpenWrtFeed(".", p, "1.2.3", dir)
			return err
		}(),
	} {
		if err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*")); len(left) != 1 {
		t.Errorf("refused calls left %v behind", left)
	}
}

// makeVars returns the VAR:=value assignments of a Makefile.
func makeVars(mk string) map[string]string {
	vars := map[string]string{}
	for _, m := range regexp.MustCompile(`(?m)^\s*([A-Z_]+):=(.*)$`).FindAllStringSubmatch(mk, -1) {
		vars[m[1]] = m[2]
	}
	return vars
}

// dirBytes maps each file under dir to its mode and contents.
func dirBytes(t *testing.T, dir string) map[string]string {
	t.Helper()
	files := map[string]string{}
	err := filepath.WalkDir(dir, func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		b, err := os.ReadFile(path)
		files[strings.TrimPrefix(path, dir)] = info.Mode().String() + "\n" + string(b)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	return files
}
