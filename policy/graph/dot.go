package graph

import (
	"bytes"
	"fmt"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/openmud/mud/policy"
)

// DOT writes the graph of a policy (nil: none, only the overrides) in
// Graphviz's DOT language. The layout is twopi, rooted at the device, so
// that the device is drawn in the middle and its peers around it. Edges
// point the way the packets go: device → peer for from-device rules,
// peer → device for to-device rules; each line of an edge's label is one
// rule, with its direction, its position in evaluation order and what it
// matches. File rules are black, the RFC 8520 App. A defaults grey, drops
// red, overrides blue; the "anything else" node is the default deny.
//
// This is what `mudctl graph MAC` prints, after converting the control
// API's policy view with FromView.
func DOT(p *policy.Policy, o Options) []byte {
	return Build(p, o).DOT()
}

// edgeStyle is what an edge looks like; rules of one peer and direction
// with the same style share an edge.
type edgeStyle struct {
	override bool
	verdict  policy.Verdict
	def      bool
}

func (s edgeStyle) attrs() string {
	color := "black"
	switch {
	case s.override:
		color = "blue"
	case s.verdict == policy.Drop:
		color = "red"
	case s.def:
		color = "gray45"
	}
	a := "color=" + color + ", fontcolor=" + color
	if s.verdict == policy.Drop {
		a += ", style=dashed, arrowhead=tee"
	}
	return a
}

// DOT writes the graph in Graphviz's DOT language (see the package
// function DOT).
func (g *Graph) DOT() []byte {
	var b bytes.Buffer
	b.WriteString("digraph policy {\n")
	title := []string{"MUD policy"}
	if g.MUDURL != "" {
		title = append(title, wrap(g.MUDURL)...)
	}
	for _, n := range g.Notes {
		title = append(title, wrap("note: "+n)...)
	}
	fmt.Fprintf(&b, "\tgraph [layout=twopi, root=device, overlap=false, splines=true, ranksep=2.5, fontname=\"sans-serif\", fontsize=12, labelloc=t, label=%s];\n", label(title...))
	b.WriteString("\tnode [fontname=\"sans-serif\", fontsize=11];\n")
	b.WriteString("\tedge [fontname=\"sans-serif\", fontsize=9];\n")
	fmt.Fprintf(&b, "\tdevice [shape=box, style=\"bold,filled\", fillcolor=\"#dbe9f6\", label=%s];\n", label(wrap(g.Device)...))
	for _, p := range g.Peers {
		lines := []string{p.Title}
		if p.Value != "" {
			lines = append(lines, wrap(p.Value)...)
		}
		fmt.Fprintf(&b, "\t%s [shape=%s, label=%s];\n", p.ID, peerShape(p.Kind), label(lines...))
		type group struct {
			dir   policy.Direction
			style edgeStyle
			lines []string
		}
		var groups []*group
		for _, e := range p.Edges {
			st := edgeStyle{override: e.Override, verdict: e.Verdict, def: e.Default}
			var gr *group
			for _, x := range groups {
				if x.dir == e.Direction && x.style == st {
					gr = x
				}
			}
			if gr == nil {
				gr = &group{dir: e.Direction, style: st}
				groups = append(groups, gr)
			}
			line := fmt.Sprintf("%s #%d %s", e.Direction, e.Index, e.Label)
			if e.Override {
				line = fmt.Sprintf("%s #%d override: %s", e.Direction, e.Index, e.Label)
			}
			gr.lines = append(gr.lines, line)
		}
		for _, gr := range groups {
			from, to := "device", p.ID
			if gr.dir == policy.ToDevice {
				from, to = p.ID, "device"
			}
			fmt.Fprintf(&b, "\t%s -> %s [%s, label=%s];\n", from, to, gr.style.attrs(), label(gr.lines...))
		}
	}
	b.WriteString("\tdeny [shape=octagon, color=red, fontcolor=red, label=\"anything else\\ndropped\"];\n")
	b.WriteString("\tdevice -> deny [color=red, fontcolor=red, style=dashed, arrowhead=tee, label=\"from-device: default deny\"];\n")
	b.WriteString("\tdeny -> device [color=red, fontcolor=red, style=dashed, arrowhead=tee, label=\"to-device: default deny\"];\n")
	b.WriteString("}\n")
	return b.Bytes()
}

func peerShape(k policy.PeerKind) string {
	switch k {
	case policy.DNSName:
		return "ellipse"
	case policy.Controller, policy.MyController:
		return "component"
	case policy.Manufacturer, policy.Model:
		return "box3d"
	case policy.LocalNetworks:
		return "house"
	case policy.Prefix:
		return "cds"
	}
	return "doublecircle"
}

// maxLabel bounds the runes one value may take in a label; wrapWidth is
// where a long value is broken into lines.
const (
	maxLabel  = 512
	wrapWidth = 48
)

// wrap breaks a long value into lines of wrapWidth runes, and cuts it
// (with "…") after maxLabel runes.
func wrap(s string) []string {
	var lines []string
	var cur []rune
	n := 0
	for _, r := range s {
		if n == maxLabel {
			cur = append(cur, '…')
			break
		}
		n++
		cur = append(cur, r)
		if len(cur) == wrapWidth {
			lines = append(lines, string(cur))
			cur = cur[:0]
		}
	}
	if len(cur) > 0 || len(lines) == 0 {
		lines = append(lines, string(cur))
	}
	return lines
}

// label is a DOT quoted string of lines, centred. Each line is escaped
// (see escape), so no value can end the string, start an HTML-like label
// or an escape sequence of Graphviz's.
func label(lines ...string) string {
	var b strings.Builder
	b.WriteByte('"')
	for i, l := range lines {
		if i > 0 {
			b.WriteString(`\n`)
		}
		b.WriteString(escape(l))
	}
	b.WriteByte('"')
	return b.String()
}

// escape makes s safe inside a DOT quoted string and shows it as written:
// a quote and a backslash are escaped (so neither ends the string nor
// starts one of Graphviz's escapes such as \N or \l), an ampersand is
// written as &amp; (Graphviz decodes character entities in labels), and a
// rune that is not graphic — a control character, a line or paragraph
// separator, a bidirectional override — or a byte that is not UTF-8 is
// shown as \xHH or \uHHHH. HTML-like labels are never used: a value
// starting with '<' stays text.
func escape(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		r, size := utf8.DecodeRuneInString(s[i:])
		switch {
		case r == utf8.RuneError && size == 1:
			fmt.Fprintf(&b, `\\x%02x`, s[i])
		case r == '"':
			b.WriteString(`\"`)
		case r == '\\':
			b.WriteString(`\\`)
		case r == '&':
			b.WriteString("&amp;")
		case r == ' ' || (unicode.IsGraphic(r) && !unicode.IsSpace(r)):
			b.WriteRune(r)
		case r < 0x100:
			fmt.Fprintf(&b, `\\x%02x`, r)
		default:
			fmt.Fprintf(&b, `\\u%04x`, r)
		}
		i += size
	}
	return b.String()
}
