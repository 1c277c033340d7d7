package api

import (
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
)

// docs/api.md documents the protocol; it cannot silently fall behind the
// code: every endpoint the server registers, every JSON field name and
// every enum value of the wire types (types.go) must appear in it, in
// backquotes.
func TestDocsCoverTheProtocol(t *testing.T) {
	raw, err := os.ReadFile("../docs/api.md")
	if err != nil {
		t.Fatal(err)
	}
	doc := string(raw)
	mentioned := func(what, s string) {
		t.Helper()
		if !strings.Contains(doc, "`"+s+"`") {
			t.Errorf("docs/api.md does not mention the %s `%s`", what, s)
		}
	}
	srv := NewServer(&fixedBackend{}, ServerOptions{})
	for _, r := range srv.routeTable() {
		mentioned("endpoint", r.method+" "+r.path)
	}

	file, err := parser.ParseFile(token.NewFileSet(), "types.go", nil, parser.SkipObjectResolution)
	if err != nil {
		t.Fatal(err)
	}
	fields, values := 0, 0
	ast.Inspect(file, func(n ast.Node) bool {
		switch n := n.(type) {
		case *ast.StructType:
			for _, f := range n.Fields.List {
				if f.Tag == nil {
					continue
				}
				tag, _ := strconv.Unquote(f.Tag.Value)
				name, _, _ := strings.Cut(reflect.StructTag(tag).Get("json"), ",")
				if name != "" && name != "-" {
					mentioned("field", name)
					fields++
				}
			}
		case *ast.ValueSpec: // an enum value: a typed constant of a string
			lit, ok := n.Values[0].(*ast.BasicLit)
			if n.Type != nil && ok && lit.Kind == token.STRING {
				v, _ := strconv.Unquote(lit.Value)
				mentioned("enum value", v)
				values++
			}
		}
		return true
	})
	if fields < 100 || values < 40 {
		t.Errorf("found %d fields and %d enum values in types.go: the scan misses them", fields, values)
	}
}
