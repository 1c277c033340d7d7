package main

import (
	"strings"
	"testing"
)

const sample = `goos: linux
BenchmarkScale/urls=100/devices=0-2         	       1	40000000000 ns/op	         1.1 ack-p50-ms	         3.0 ack-p99-ms	         0 installed	        40.5 rss-MB
BenchmarkScale/urls=100/devices=10000-2     	       1	40000000000 ns/op	         1.9 ack-p50-ms	         9.0 ack-p99-ms	     10000 installed	       120.0 rss-MB
PASS
`

// The benchmark's lines become points with their metrics; other lines are
// skipped; the SVG holds a line per metric and URL count.
func TestParseAndRender(t *testing.T) {
	ps, err := parse(strings.NewReader(sample))
	if err != nil {
		t.Fatal(err)
	}
	if len(ps) != 2 || ps[1].urls != "100" || ps[1].metrics["installed"] != 10000 || ps[1].metrics["ack-p99-ms"] != 9 {
		t.Fatalf("parsed %+v", ps)
	}
	var b strings.Builder
	render(&b, ps, "t")
	svg := b.String()
	if n := strings.Count(svg, "<polyline"); n != 3 {
		t.Errorf("%d lines, want 3 (p50, p99, rss)", n)
	}
	if !strings.HasPrefix(svg, "<svg") || !strings.HasSuffix(svg, "</svg>\n") {
		t.Errorf("not an SVG document: %.80s", svg)
	}
}

// A value that is not a number is an error naming it.
func TestParseBadValue(t *testing.T) {
	_, err := parse(strings.NewReader("BenchmarkScale/urls=1/devices=0-2 1 x ns/op\n"))
	if err == nil || !strings.Contains(err.Error(), `"x"`) {
		t.Fatalf("err = %v", err)
	}
}
