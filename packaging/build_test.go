package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestPackageVersion(t *testing.T) {
	for in, want := range map[string]string{
		"v1.2.3":                  "1.2.3",
		"1.2.3":                   "1.2.3",
		"v1.2.3-dirty":            "1.2.3+dirty",
		"v1.2.3-2-gabc1234":       "1.2.3+2.gabc1234",
		"v1.2.3-2-gabc1234-dirty": "1.2.3+2.gabc1234.dirty",
		"v1.2.3-rc1":              "1.2.3-rc1",
		"v1.2.3-rc1-5-g0123abc":   "1.2.3-rc1+5.g0123abc",
		"68c4801":                 "0.0.0+68c4801",
		"68c4801-dirty":           "0.0.0+68c4801.dirty",
		"abc1234":                 "0.0.0+abc1234",
		"dev":                     "0.0.0+dev",
		"":                        "0.0.0+unknown",
	} {
		if got := PackageVersion(in); got != want {
			t.Errorf("PackageVersion(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestBuildRefuses(t *testing.T) {
	dir := t.TempDir()
	cfg := filepath.Join(dir, "nfpm.yaml")
	if err := os.WriteFile(cfg, []byte("name: x\nversion: ${VERSION}\narch: ${ARCH}\ndescription: ${DESCRIPTION}\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	// Documentation as gendocs lays it out.
	doc := filepath.Join(dir, "doc")
	for _, f := range []string{"man/man1/mudctl.1", "man/man8/mudd.8", "completions/bash/mudctl", "completions/zsh/_mudctl", "completions/fish/mudctl.fish"} {
		if err := os.MkdirAll(filepath.Dir(filepath.Join(doc, f)), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(doc, f), []byte("x\n"), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for name, tc := range map[string]struct {
		o    Options
		want string
	}{
		"unknown format":        {Options{Config: "nfpm.yaml", Formats: []string{"msi"}}, `unknown package format "msi"`},
		"no format":             {Options{Config: "nfpm.yaml"}, "no package format"},
		"unknown variable":      {Options{Config: cfg, Formats: []string{"deb"}, OutDir: dir}, "DESCRIPTION"},
		"missing documentation": {Options{Config: "nfpm.yaml", Root: "..", BinDir: dir, Formats: []string{"deb"}, OutDir: dir}, "man pages"},
		"documentation without man pages": {Options{Config: "nfpm.yaml", Root: "..", BinDir: dir, DocDir: filepath.Join(doc, "completions"),
			Formats: []string{"deb"}, OutDir: dir}, "no man pages"},
		"missing binaries": {Options{Config: "nfpm.yaml", Root: "..", BinDir: dir, DocDir: doc, Formats: []string{"deb"}, OutDir: dir}, "mudd"},
	} {
		t.Run(name, func(t *testing.T) {
			_, err := Build(tc.o)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("Build: %v, want an error naming %q", err, tc.want)
			}
		})
	}
	if left, _ := filepath.Glob(filepath.Join(dir, "*.deb")); len(left) > 0 {
		t.Errorf("a failed build left %v behind", left)
	}
}
