package graph

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os/exec"
	"strings"
)

// ErrNoGraphviz is returned by SVG when Graphviz's dot is not installed.
var ErrNoGraphviz = errors.New("graphviz's dot is not on PATH (install graphviz)")

// maxSVG bounds what SVG reads from dot.
const maxSVG = 16 << 20

// DotPath is where Graphviz's dot is: "" and ErrNoGraphviz when it is not
// on PATH.
func DotPath() (string, error) {
	p, err := exec.LookPath("dot")
	if err != nil {
		return "", ErrNoGraphviz
	}
	return p, nil
}

// SVG has Graphviz draw a DOT graph (as DOT returns it) as SVG. It runs
// dot itself, with the graph on its standard input, no shell and no file;
// ctx bounds how long it may take. Graphviz escapes the text of labels as
// XML; the result is still best shown as an image (<img>), where no script
// in it runs.
func SVG(ctx context.Context, dot []byte) ([]byte, error) {
	path, err := DotPath()
	if err != nil {
		return nil, err
	}
	cmd := exec.CommandContext(ctx, path, "-Tsvg")
	cmd.Stdin = bytes.NewReader(dot)
	var out limitedBuffer
	var stderr bytes.Buffer
	out.max = maxSVG
	cmd.Stdout, cmd.Stderr = &out, &stderr
	if err := cmd.Run(); err != nil {
		if ctx.Err() != nil {
			return nil, fmt.Errorf("graphviz dot: %w", ctx.Err())
		}
		return nil, fmt.Errorf("graphviz dot: %w: %s", err, strings.TrimSpace(stderr.String()))
	}
	if out.over {
		return nil, fmt.Errorf("graphviz dot: the picture is larger than %d bytes", maxSVG)
	}
	return out.Bytes(), nil
}

// limitedBuffer keeps at most max bytes and notes that more came.
type limitedBuffer struct {
	bytes.Buffer
	max  int
	over bool
}

func (l *limitedBuffer) Write(p []byte) (int, error) {
	if room := l.max - l.Len(); len(p) > room {
		l.over = true
		if room > 0 {
			l.Buffer.Write(p[:room])
		}
		return len(p), nil
	}
	return l.Buffer.Write(p)
}
