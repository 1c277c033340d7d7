// Package docs holds the project's documents; its test keeps the
// conformance table honest: every test it cites must exist.
package docs

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

// citation matches `dir/of/package.TestName` (also Fuzz and Benchmark).
var citation = regexp.MustCompile("`([a-z0-9_/]+)\\.((?:Test|Fuzz|Benchmark)[A-Za-z0-9_]+)`")

func TestConformanceCitesExistingTests(t *testing.T) {
	doc, err := os.ReadFile("conformance.md")
	if err != nil {
		t.Fatal(err)
	}
	funcs := map[string]map[string]bool{} // package dir → test functions
	testsIn := func(dir string) map[string]bool {
		if m, ok := funcs[dir]; ok {
			return m
		}
		m := map[string]bool{}
		files, _ := filepath.Glob(filepath.Join("..", dir, "*_test.go"))
		for _, f := range files {
			file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
			if err != nil {
				t.Fatalf("parsing %s: %v", f, err)
			}
			for _, d := range file.Decls {
				if fn, ok := d.(*ast.FuncDecl); ok && fn.Recv == nil {
					m[fn.Name.Name] = true
				}
			}
		}
		funcs[dir] = m
		return m
	}
	matches := citation.FindAllStringSubmatch(string(doc), -1)
	if len(matches) < 50 {
		t.Fatalf("conformance.md cites %d tests; the table seems to have lost its test column", len(matches))
	}
	for _, m := range matches {
		dir, name := m[1], m[2]
		if dir == "path" && name == "TestName" {
			continue // the legend
		}
		if !testsIn(dir)[name] {
			t.Errorf("conformance.md cites %s.%s, which does not exist", dir, name)
		}
	}
	if strings.Contains(string(doc), "spec §") {
		t.Error("conformance.md refers to an outside checklist (spec §)")
	}
}

// The README's threat model cites end-to-end tests by bare name (package
// e2e) and others as package.Test.
func TestThreatModelCitesExistingTests(t *testing.T) {
	readme, err := os.ReadFile("../README.md")
	if err != nil {
		t.Fatal(err)
	}
	s := string(readme)
	start, end := strings.Index(s, "## Threat model"), strings.Index(s, "## Configuration")
	if start < 0 || end < start {
		t.Fatal("README.md has no threat model section before Configuration")
	}
	e2e := map[string]bool{}
	files, _ := filepath.Glob("../e2e/*_test.go")
	for _, f := range files {
		file, err := parser.ParseFile(token.NewFileSet(), f, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatal(err)
		}
		for _, d := range file.Decls {
			if fn, ok := d.(*ast.FuncDecl); ok {
				e2e[fn.Name.Name] = true
			}
		}
	}
	n := 0
	for _, m := range regexp.MustCompile("`(Test[A-Za-z0-9_]+)`").FindAllStringSubmatch(s[start:end], -1) {
		n++
		if !e2e[m[1]] {
			t.Errorf("the threat model cites e2e.%s, which does not exist", m[1])
		}
	}
	if n < 10 {
		t.Errorf("the threat model cites %d end-to-end tests; its table seems to have lost its test column", n)
	}
}
