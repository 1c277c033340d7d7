package mudfile

import (
	"flag"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

var update = flag.Bool("update", false, "rewrite testdata/golden from the current results")

// corpusFiles lists the MUD files copied from the shared corpus (see
// testdata/corpus/PROVENANCE.md), relative to testdata/corpus.
func corpusFiles(t testing.TB) []string {
	t.Helper()
	var out []string
	err := filepath.WalkDir("testdata/corpus", func(path string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || strings.HasSuffix(path, ".md") {
			return err
		}
		rel, err := filepath.Rel("testdata/corpus", path)
		out = append(out, rel)
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(out) < 100 {
		t.Fatalf("only %d corpus files found", len(out))
	}
	return out
}

// verdict renders a Result for the golden files.
func verdict(res *Result) string {
	var b strings.Builder
	fmt.Fprintf(&b, "valid: %v\nerrors: %d\nwarnings: %d\n", res.Valid(), len(res.Errors()), len(res.Warnings()))
	for _, f := range res.Findings {
		fmt.Fprintf(&b, "%s [%s] %s\n", f.Severity, f.Code, f.Path)
	}
	return b.String()
}

// TestCorpusGolden records the verdict on every real-world file; a change
// of verdict shows up as a diff (regenerate with go test ./mudfile -update).
func TestCorpusGolden(t *testing.T) {
	for _, rel := range corpusFiles(t) {
		t.Run(rel, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata/corpus", rel))
			if err != nil {
				t.Fatal(err)
			}
			got := verdict(Parse(data))
			golden := filepath.Join("testdata/golden", rel+".golden")
			if *update {
				if err := os.MkdirAll(filepath.Dir(golden), 0o755); err != nil {
					t.Fatal(err)
				}
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
				return
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run go test ./mudfile -update)", err)
			}
			if got != string(want) {
				t.Errorf("verdict changed for %s:\n--- got\n%s--- want\n%s", rel, got, want)
			}
		})
	}
}

// TestCorpusQuirks pins the README's quirk list to the files that show it:
// each quirk must be met with the documented reaction.
func TestCorpusQuirks(t *testing.T) {
	cases := []struct {
		file  string
		code  string
		valid bool
	}{
		{"mud-visualizer/mudgee_mudfiles/HueBulbMud.json", "pre-rfc-root", true},         // quirk 1
		{"mud-visualizer/mudgee_mudfiles/amazonEchoMud.json", "acl-type-spelling", true}, // quirk 2
		{"mud-visualizer/mudgee_mudfiles/amazonEchoMud.json", "ethertype-hex", true},     // quirk 3
		{"mud-visualizer/mudgee_mudfiles/HueBulbMud.json", "controller-unregistered", true},
		{"faucetsdn-daq/mud_files/bacnet.json", "controller-not-uri", true}, // quirk 4
		{"ciralabs-highway/spec/files/mud/toaster_mud.json", "actions-in-matches", false},
		{"ciralabs-highway/spec/files/mud/toaster_mud.json", "unknown-match", false}, // quirk 10, s:qrc-dnsname
		{"osmud/test/lightbulb2000.json", "pre-rfc-syntax", false},                   // quirk 9
	}
	for _, tc := range cases {
		data, err := os.ReadFile(filepath.Join("testdata/corpus", tc.file))
		if err != nil {
			t.Fatal(err)
		}
		res := Parse(data)
		if !res.HasCode(tc.code) || res.Valid() != tc.valid {
			t.Errorf("%s: want %s and valid=%v, got valid=%v %v", tc.file, tc.code, tc.valid, res.Valid(), res.Findings)
		}
	}
}

// FuzzParse: no input may panic, and a valid result always has a file.
func FuzzParse(f *testing.F) {
	for _, rel := range corpusFiles(f) {
		data, err := os.ReadFile(filepath.Join("testdata/corpus", rel))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res := Parse(data)
		if res.Valid() && res.File == nil {
			t.Fatal("valid without a file")
		}
		for _, fd := range res.Findings {
			if fd.Path == "" || fd.Message == "" || (fd.Severity != Error && fd.Severity != Warning) {
				t.Fatalf("malformed finding %+v", fd)
			}
		}
	})
}
