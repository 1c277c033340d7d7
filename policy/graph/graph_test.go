package graph

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
)

var update = flag.Bool("update", false, "rewrite the golden graphs in testdata")

// compiled compiles a MUD file of the repository's test data.
func compiled(t *testing.T, path string) *policy.Policy {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	res := mudfile.Parse(data)
	if res.File == nil {
		t.Fatalf("%s: %v", path, res.Findings)
	}
	p, err := policy.Compile(res.File, policy.Context{})
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func port(n uint16) *policy.PortRange { return &policy.PortRange{First: n, Last: n} }

// everyKind is a policy naming every kind of peer, drops among accepts,
// with overrides of the admin's.
func everyKind() (*policy.Policy, Options) {
	code := uint8(0)
	p := &policy.Policy{ID: "k", MUDURL: "https://maker.example.com/thing",
		FromDevice: []policy.Rule{
			{Name: "a/drop-dns", Family: policy.IPv4, Peer: policy.Peer{Kind: policy.DNSName, Value: "resolver.example.com"}, Protocol: policy.ProtoUDP, DstPort: port(53), Verdict: policy.Drop},
			{Name: "a/cloud", Peer: policy.Peer{Kind: policy.DNSName, Value: "cloud.example.com"}, Protocol: policy.ProtoTCP, DstPort: port(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "a/same", Peer: policy.Peer{Kind: policy.Manufacturer, Value: "maker.example.com"}, Protocol: policy.ProtoUDP, DstPort: &policy.PortRange{First: 5000, Last: 5010}, Verdict: policy.Accept},
			{Name: "a/other", Peer: policy.Peer{Kind: policy.Manufacturer, Value: "other.example.net"}, Protocol: policy.ProtoTCP, DstPort: &policy.PortRange{First: 23, Last: 23, Negate: true}, Verdict: policy.Accept},
			{Name: "a/model", Peer: policy.Peer{Kind: policy.Model, Value: "https://maker.example.com/thing"}, Protocol: policy.ProtoICMP, ICMP: &policy.ICMPMatch{Type: 8, Code: &code}, Verdict: policy.Accept},
			{Name: "a/ctl", Peer: policy.Peer{Kind: policy.Controller, Value: "http://ctl.example.com/hub"}, Protocol: policy.ProtoTCP, DstPort: port(8883), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "a/myctl", Peer: policy.Peer{Kind: policy.MyController, Value: "https://maker.example.com/thing"}, Protocol: policy.ProtoTCP, DstPort: port(8002), Verdict: policy.Accept},
			{Name: "a/lan", Peer: policy.Peer{Kind: policy.LocalNetworks}, Protocol: policy.ProtoUDP, SrcPort: port(5353), DstPort: port(5353), Verdict: policy.Accept},
			{Name: "a/lit", Family: policy.IPv6, Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("2001:db8::/64")}, Protocol: 47, Verdict: policy.Accept},
			{Name: "a/one", Family: policy.IPv4, Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("198.51.100.7/32")}, Protocol: policy.ProtoTCP, Initiated: policy.InitiatedToDevice, Verdict: policy.Accept,
				Fields: []policy.FieldMatch{{Field: policy.FieldDSCP, Value: 46}}},
			{Name: "default/dns", Peer: policy.Peer{Kind: policy.Controller, Value: policy.ControllerDNS}, Protocol: policy.ProtoUDP, DstPort: port(53), Verdict: policy.Accept, Default: true},
			{Name: "default/ntp", Peer: policy.Peer{Kind: policy.Controller, Value: policy.ControllerNTP}, Protocol: policy.ProtoUDP, DstPort: port(123), Verdict: policy.Accept, Default: true},
		},
		ToDevice: []policy.Rule{
			{Name: "b/cloud", Peer: policy.Peer{Kind: policy.DNSName, Value: "cloud.example.com"}, Protocol: policy.ProtoTCP, SrcPort: port(443), Initiated: policy.InitiatedFromDevice, Verdict: policy.Accept},
			{Name: "b/any", Peer: policy.Peer{Kind: policy.AnyPeer}, Protocol: policy.ProtoICMPv6, Verdict: policy.Drop},
			{Name: "default/dns", Peer: policy.Peer{Kind: policy.Controller, Value: policy.ControllerDNS}, Protocol: policy.ProtoUDP, SrcPort: port(53), Verdict: policy.Accept, Default: true},
		},
		NeedsApproval: []string{"the file contains IP address literals (2001:db8::/64, 198.51.100.7/32)"},
	}
	o := Options{Device: "02:00:00:00:00:01 (thermostat)", Overrides: Overrides{
		FromDevice: []policy.Rule{{Name: "override/1", Peer: policy.Peer{Kind: policy.Prefix, Prefix: netip.MustParsePrefix("203.0.113.5/32")}, Protocol: policy.ProtoTCP, DstPort: port(22), Verdict: policy.Accept}},
		ToDevice:   []policy.Rule{{Name: "override/1", Peer: policy.Peer{Kind: policy.AnyPeer}, Verdict: policy.Drop}},
	}}
	return p, o
}

// hostileStrings are what a hostile MUD file or DHCP client may put into
// names: quotes, backslashes and Graphviz escapes, newlines and other
// control characters, HTML-like labels, entities, bidirectional
// overrides, bytes that are not UTF-8.
var hostileStrings = []string{
	`evil"];  x -> y [label="pwned`,
	`back\slash\N\G\l\`,
	"new\nline\r\x00nul\tTab",
	`<<b>html</b>> <script>alert(1)</script>`,
	`&amp; &#60; &lt;`,
	"rtl \u202eexe.txt \u2028sep",
	"bad \xff\xfe utf8",
	strings.Repeat("long.", 200) + "example.com",
}

func hostile() (*policy.Policy, Options) {
	p := &policy.Policy{ID: "h", MUDURL: `https://evil.example/"mud"` + "\n<x>",
		Notes: []string{"note with \"quote\" and \\ and\nnewline"}}
	for i, s := range hostileStrings {
		p.FromDevice = append(p.FromDevice, policy.Rule{Name: "acl/" + s, Peer: policy.Peer{Kind: policy.DNSName, Value: s}, Protocol: policy.ProtoTCP, DstPort: port(uint16(443 + i)), Verdict: policy.Accept})
		p.ToDevice = append(p.ToDevice, policy.Rule{Name: "acl/" + s, Peer: policy.Peer{Kind: policy.Controller, Value: s}, Verdict: policy.Accept})
	}
	return p, Options{Device: `host"name\` + "\n<b>"}
}

func goldenCases(t *testing.T) []struct {
	name string
	p    *policy.Policy
	o    Options
} {
	kp, ko := everyKind()
	hp, ho := hostile()
	return []struct {
		name string
		p    *policy.Policy
		o    Options
	}{
		// RFC 8520 §9: the light bulb that talks to test.example.com.
		{"rfc8520-example", compiled(t, "../../mudfile/testdata/base.json"), Options{Device: "02:00:00:00:00:01"}},
		// A file from mudmaker naming DNS names, controllers,
		// my-controller, local-networks, manufacturers and
		// same-manufacturer.
		{"mudmaker", compiled(t, "../../mudfile/testdata/corpus/elmiomar-mudparser/tests/fixtures/mudmaker_generated.json"), Options{}},
		{"every-kind", kp, ko},
		{"overrides-only", nil, Options{Device: "02:00:00:00:00:02", Overrides: ko.Overrides}},
		{"hostile", hp, ho},
	}
}

// TestGoldenDOT pins the DOT of each case in testdata/NAME.dot; run with
// -update to rewrite them after a deliberate change.
func TestGoldenDOT(t *testing.T) {
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			got := DOT(c.p, c.o)
			path := filepath.Join("testdata", c.name+".dot")
			if *update {
				if err := os.WriteFile(path, got, 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(path)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if !bytes.Equal(got, want) {
				t.Errorf("DOT differs from %s (run with -update after a deliberate change):\n%s", path, got)
			}
			checkStructure(t, got)
		})
	}
}

// statement is what a line of the DOT holds once its quoted strings are
// replaced by Q: a node or an edge with attributes of known names and
// plain values.
var statement = regexp.MustCompile(`^\t(graph|node|edge|[a-z0-9]+|[a-z0-9]+ -> [a-z0-9]+) \[([a-z]+=([a-z0-9.,#]+|Q)(, )?)*\];$`)

// checkStructure reads the DOT line by line as Graphviz's lexer would read
// its quoted strings, and fails if any string is unterminated or
// anything outside the strings is not one of the statements DOT writes:
// nothing from a label can escape it.
func checkStructure(t *testing.T, dot []byte) {
	t.Helper()
	lines := strings.Split(strings.TrimSuffix(string(dot), "\n"), "\n")
	if lines[0] != "digraph policy {" || lines[len(lines)-1] != "}" {
		t.Fatalf("not one digraph: first %q, last %q", lines[0], lines[len(lines)-1])
	}
	for _, l := range lines[1 : len(lines)-1] {
		var out strings.Builder
		for i := 0; i < len(l); i++ {
			if l[i] != '"' {
				out.WriteByte(l[i])
				continue
			}
			closed := false
			for i++; i < len(l); i++ {
				if l[i] == '\\' {
					i++
					continue
				}
				if l[i] == '"' {
					closed = true
					break
				}
			}
			if !closed {
				t.Fatalf("unterminated string in %q", l)
			}
			out.WriteByte('Q')
		}
		if !statement.MatchString(out.String()) {
			t.Errorf("unexpected statement %q (from %q)", out.String(), l)
		}
	}
}

func TestEscape(t *testing.T) {
	for in, want := range map[string]string{
		`plain.example.com`: `plain.example.com`,
		`a"b`:               `a\"b`,
		`a\nb`:              `a\\nb`,
		"a\nb":              `a\\x0ab`,
		"a\x00b\x7f":        `a\\x00b\\x7f`,
		`<b>x</b>`:          `<b>x</b>`,
		`&lt;`:              `&amp;lt;`,
		"\u202e":            `\\u202e`,
		"\u2028":            `\\u2028`,
		"\xff":              `\\xff`,
		"caf\u00e9 \u4e2d文": "caf\u00e9 \u4e2d文",
	} {
		if got := escape(in); got != want {
			t.Errorf("escape(%q) = %q, want %q", in, got, want)
		}
	}
}

// needDot returns dot's path, or skips the test where Graphviz is missing
// and CI is unset.
func needDot(t *testing.T) string {
	t.Helper()
	path, err := DotPath()
	if err != nil {
		if os.Getenv("CI") == "" {
			t.Skipf("%v; scripts/install-deps.sh installs it (CI fails instead of skipping)", err)
		}
		t.Fatal(err)
	}
	return path
}

// TestGraphvizReadsLabelsAsWritten has Graphviz itself parse each golden
// graph: it must see exactly the nodes and edges DOT wrote, and read every
// hostile name back as its escaped, visible form.
func TestGraphvizReadsLabelsAsWritten(t *testing.T) {
	dotPath := needDot(t)
	for _, c := range goldenCases(t) {
		t.Run(c.name, func(t *testing.T) {
			g := Build(c.p, c.o)
			cmd := exec.Command(dotPath, "-Tjson0")
			cmd.Stdin = bytes.NewReader(g.DOT())
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("dot: %v", err)
			}
			var parsed struct {
				Objects []struct {
					Name  string `json:"name"`
					Label string `json:"label"`
				} `json:"objects"`
				Edges []struct {
					Label string `json:"label"`
				} `json:"edges"`
			}
			if err := json.Unmarshal(out, &parsed); err != nil {
				t.Fatal(err)
			}
			labels := map[string]string{}
			for _, o := range parsed.Objects {
				labels[o.Name] = o.Label
			}
			if len(parsed.Objects) != len(g.Peers)+2 {
				t.Errorf("graphviz sees %d nodes, want %d peers, the device and the deny", len(parsed.Objects), len(g.Peers))
			}
			edges := 2 // the default deny, both ways
			for _, p := range g.Peers {
				// Graphviz's lexer unescapes only \" in a quoted string;
				// the rest (\n, \\, &amp;) is left to the renderer.
				q := label(append([]string{p.Title}, wrap(p.Value)...)...)
				if p.Value == "" {
					q = label(p.Title)
				}
				want := strings.ReplaceAll(q[1:len(q)-1], `\"`, `"`)
				if got := labels[p.ID]; got != want {
					t.Errorf("peer %s: graphviz reads label %q, want %q", p.ID, got, want)
				}
				dirs := map[string]bool{}
				for _, e := range p.Edges {
					dirs[e.Direction.String()+edgeStyle{e.Override, e.Verdict, e.Default}.attrs()] = true
				}
				edges += len(dirs)
			}
			if len(parsed.Edges) != edges {
				t.Errorf("graphviz sees %d edges, want %d", len(parsed.Edges), edges)
			}
		})
	}
}

// TestSVG draws the RFC 8520 example and the hostile graph with Graphviz:
// the picture names the peers, and markup from a MUD file stays text.
func TestSVG(t *testing.T) {
	needDot(t)
	ctx := context.Background()
	svg, err := SVG(ctx, DOT(compiled(t, "../../mudfile/testdata/base.json"), Options{Device: "bulb"}))
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"<svg", "test.example.com", "local DNS servers", "anything else"} {
		if !bytes.Contains(svg, []byte(want)) {
			t.Errorf("SVG lacks %q", want)
		}
	}
	hp, ho := hostile()
	svg, err = SVG(ctx, DOT(hp, ho))
	if err != nil {
		t.Fatal(err)
	}
	for _, bad := range []string{"<script", "<b>", "<x>", "pwned\"]"} {
		if bytes.Contains(svg, []byte(bad)) {
			t.Errorf("SVG holds %q from a MUD file as markup", bad)
		}
	}
	if !bytes.Contains(svg, []byte("&lt;script&gt;alert(1)&lt;/script&gt;")) {
		t.Error("SVG does not show the hostile <script> name as text")
	}
}

func TestSVGWithoutGraphviz(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := SVG(context.Background(), []byte("digraph{}")); err != ErrNoGraphviz {
		t.Errorf("SVG without dot on PATH: %v, want ErrNoGraphviz", err)
	}
}

func TestSVGRefusesBrokenDOT(t *testing.T) {
	needDot(t)
	if _, err := SVG(context.Background(), []byte("digraph { a -> ")); err == nil {
		t.Error("SVG of a broken graph succeeded")
	}
}
