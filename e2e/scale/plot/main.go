// Command plot draws BenchmarkScale's results (the output of `go test
// -bench Scale ./e2e/scale/`, read from standard input or the files named)
// as an SVG: DHCP answer → binding active, p50 and p99, and mudd's
// resident set, against the devices installed, one line per count of
// distinct MUD URLs. `make bench-scale` writes e2e/scale/scale.svg with it.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"math"
	"os"
	"slices"
	"strconv"
	"strings"
)

// point is one sub-benchmark's result.
type point struct {
	urls    string
	metrics map[string]float64
}

// parse reads `go test -bench` lines of BenchmarkScale/urls=U/devices=N.
func parse(r io.Reader) ([]point, error) {
	var out []point
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 4 || !strings.HasPrefix(f[0], "BenchmarkScale/urls=") {
			continue
		}
		name := strings.Split(f[0], "/")
		p := point{urls: strings.TrimPrefix(name[1], "urls="), metrics: map[string]float64{}}
		// Name, iterations, then value–unit pairs.
		for i := 2; i+1 < len(f); i += 2 {
			v, err := strconv.ParseFloat(f[i], 64)
			if err != nil {
				return nil, fmt.Errorf("%s: value %q of %s: %w", f[0], f[i], f[i+1], err)
			}
			p.metrics[f[i+1]] = v
		}
		if _, ok := p.metrics["installed"]; !ok {
			return nil, fmt.Errorf("%s: no installed metric", f[0])
		}
		out = append(out, p)
	}
	return out, sc.Err()
}

// series are the points of one count of URLs, by installed devices.
func series(ps []point) (keys []string, by map[string][]point) {
	by = map[string][]point{}
	for _, p := range ps {
		if _, ok := by[p.urls]; !ok {
			keys = append(keys, p.urls)
		}
		by[p.urls] = append(by[p.urls], p)
	}
	for _, k := range keys {
		slices.SortFunc(by[k], func(a, b point) int {
			return int(a.metrics["installed"] - b.metrics["installed"])
		})
	}
	return keys, by
}

// panel is one chart: metrics against installed devices.
type panel struct {
	title, unit string
	metrics     []string // one line style each
	target      float64  // a dashed target line; 0: none
}

const (
	width, height = 900, 430
	pw, ph        = 330, 260 // plot area of a panel
	top, left     = 50, 70
	gap           = 120
)

var colours = []string{"#1f77b4", "#d62728", "#2ca02c", "#9467bd"}

func render(w io.Writer, ps []point, title string) {
	keys, by := series(ps)
	panels := []panel{
		{title: "DHCP answer → binding active", unit: "ms", metrics: []string{"ack-p50-ms", "ack-p99-ms"}},
		{title: "mudd resident set", unit: "MB", metrics: []string{"rss-MB"}, target: 150},
	}
	fmt.Fprintf(w, `<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" font-family="sans-serif" font-size="12">`+"\n", width, height)
	fmt.Fprintf(w, `<rect width="100%%" height="100%%" fill="white"/>`+"\n")
	fmt.Fprintf(w, `<text x="%d" y="20" font-size="14">%s</text>`+"\n", left, esc(title))
	xmax := 0.0
	for _, p := range ps {
		xmax = math.Max(xmax, p.metrics["installed"])
	}
	xmax = nice(xmax)
	for i, pn := range panels {
		x0 := float64(left + i*(pw+gap))
		ymax := pn.target
		for _, p := range ps {
			for _, m := range pn.metrics {
				ymax = math.Max(ymax, p.metrics[m])
			}
		}
		ymax = nice(ymax * 1.1)
		X := func(v float64) float64 { return x0 + v/xmax*pw }
		Y := func(v float64) float64 { return float64(top+ph) - v/ymax*ph }
		fmt.Fprintf(w, `<text x="%.0f" y="%d">%s (%s)</text>`+"\n", x0, top-10, esc(pn.title), pn.unit)
		fmt.Fprintf(w, `<rect x="%.0f" y="%d" width="%d" height="%d" fill="none" stroke="#888"/>`+"\n", x0, top, pw, ph)
		for t := 0; t <= 4; t++ {
			yv, xv := ymax*float64(t)/4, xmax*float64(t)/4
			fmt.Fprintf(w, `<text x="%.0f" y="%.0f" text-anchor="end">%s</text>`+"\n", x0-5, Y(yv)+4, num(yv))
			fmt.Fprintf(w, `<text x="%.0f" y="%d" text-anchor="middle">%s</text>`+"\n", X(xv), top+ph+16, num(xv))
		}
		fmt.Fprintf(w, `<text x="%.0f" y="%d" text-anchor="middle">devices installed</text>`+"\n", x0+pw/2, top+ph+34)
		if pn.target > 0 {
			fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="%.1f" y2="%.1f" stroke="#999" stroke-dasharray="4 3"/><text x="%.0f" y="%.1f" fill="#666">target %s</text>`+"\n",
				X(0), X(xmax), Y(pn.target), Y(pn.target), X(0)+4, Y(pn.target)-4, num(pn.target))
		}
		legend := 0
		for si, k := range keys {
			for mi, m := range pn.metrics {
				var pts []string
				for _, p := range by[k] {
					pts = append(pts, fmt.Sprintf("%.1f,%.1f", X(p.metrics["installed"]), Y(p.metrics[m])))
				}
				dash := ""
				if mi > 0 {
					dash = ` stroke-dasharray="6 3"`
				}
				c := colours[si%len(colours)]
				fmt.Fprintf(w, `<polyline points="%s" fill="none" stroke="%s" stroke-width="2"%s/>`+"\n", strings.Join(pts, " "), c, dash)
				for _, pt := range pts {
					xy := strings.Split(pt, ",")
					fmt.Fprintf(w, `<circle cx="%s" cy="%s" r="3" fill="%s"/>`+"\n", xy[0], xy[1], c)
				}
				ly := top + ph + 52 + 14*legend
				fmt.Fprintf(w, `<line x1="%.0f" x2="%.0f" y1="%d" y2="%d" stroke="%s" stroke-width="2"%s/><text x="%.0f" y="%d">%s, %s URLs</text>`+"\n",
					x0, x0+24, ly-4, ly-4, c, dash, x0+30, ly, esc(strings.TrimSuffix(strings.TrimSuffix(m, "-ms"), "-MB")), esc(k))
				legend++
			}
		}
	}
	fmt.Fprintln(w, "</svg>")
}

// nice rounds v up to 1, 2 or 5 times a power of ten.
func nice(v float64) float64 {
	if v <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(v)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= v {
			return m * p
		}
	}
	return 10 * p
}

func num(v float64) string { return strconv.FormatFloat(v, 'g', 4, 64) }

func esc(s string) string {
	return strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;").Replace(s)
}

func main() {
	out := flag.String("o", "-", "the SVG file to write (- for standard output)")
	title := flag.String("title", "mudd at scale (BenchmarkScale)", "the chart's title")
	flag.Parse()
	var r io.Reader = os.Stdin
	if flag.NArg() > 0 {
		var rs []io.Reader
		for _, name := range flag.Args() {
			f, err := os.Open(name)
			if err != nil {
				fmt.Fprintln(os.Stderr, "plot:", err)
				os.Exit(1)
			}
			defer f.Close()
			rs = append(rs, f)
		}
		r = io.MultiReader(rs...)
	}
	ps, err := parse(r)
	if err == nil && len(ps) == 0 {
		err = fmt.Errorf("no BenchmarkScale results in the input")
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "plot:", err)
		os.Exit(1)
	}
	w := io.Writer(os.Stdout)
	if *out != "-" {
		f, err := os.Create(*out)
		if err != nil {
			fmt.Fprintln(os.Stderr, "plot:", err)
			os.Exit(1)
		}
		defer f.Close()
		w = f
	}
	render(w, ps, *title)
}
