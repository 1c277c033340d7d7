// Command gendocs writes mud's man pages and mudctl's shell completions,
// generated from the command trees, for packages and `make`:
//
//	go run ./internal/gendocs -out DIR [-version VERSION]
//
// writes
//
//	DIR/man/man1/mudctl.1, DIR/man/man1/mudctl-SUBCOMMAND.1 ...
//	DIR/man/man8/mudd.8, DIR/man/man8/mudd-check-config.8
//	DIR/completions/bash/mudctl        (bash-completion v2)
//	DIR/completions/zsh/_mudctl
//	DIR/completions/fish/mudctl.fish
//
// The output is reproducible: the pages carry the date of
// $SOURCE_DATE_EPOCH (UTC), or 1 January 1970 without it, and no
// generation stamp. It is a separate program so that the documentation
// generator is not linked into mudd.
package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"time"

	"github.com/openmud/mud/internal/cli/mudctl"
	"github.com/openmud/mud/internal/cli/mudd"
	"github.com/spf13/cobra"
	"github.com/spf13/cobra/doc"
)

func main() {
	out := flag.String("out", "", "output `directory` (required)")
	version := flag.String("version", "dev", "version named in the pages' footer")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: gendocs -out DIR [-version VERSION]")
		os.Exit(2)
	}
	date, err := sourceDate(os.Getenv("SOURCE_DATE_EPOCH"))
	if err == nil {
		err = generate(*out, *version, date)
	}
	if err != nil {
		fmt.Fprintf(os.Stderr, "gendocs: %v\n", err)
		os.Exit(1)
	}
}

// sourceDate is the pages' date: $SOURCE_DATE_EPOCH (seconds since 1970,
// the reproducible-builds convention) in UTC, or the epoch itself.
func sourceDate(epoch string) (time.Time, error) {
	if epoch == "" {
		return time.Unix(0, 0).UTC(), nil
	}
	s, err := strconv.ParseInt(epoch, 10, 64)
	if err != nil {
		return time.Time{}, fmt.Errorf("SOURCE_DATE_EPOCH %q: %w", epoch, err)
	}
	return time.Unix(s, 0).UTC(), nil
}

// generate writes every page and completion script below dir.
func generate(dir, version string, date time.Time) error {
	ctl, daemon := mudctl.NewRoot(version), mudd.NewRoot(version)
	for _, root := range []*cobra.Command{ctl, daemon} {
		root.DisableAutoGenTag = true // no generation stamp
		root.InitDefaultHelpCmd()
	}
	for _, p := range []struct {
		root    *cobra.Command
		section string
	}{{ctl, "1"}, {daemon, "8"}} {
		mandir := filepath.Join(dir, "man", "man"+p.section)
		if err := os.MkdirAll(mandir, 0o755); err != nil {
			return err
		}
		header := &doc.GenManHeader{Section: p.section, Date: &date, Source: "mud " + version, Manual: "mud manual"}
		if err := doc.GenManTree(p.root, header, mandir); err != nil {
			return fmt.Errorf("man pages of %s: %w", p.root.Name(), err)
		}
	}
	for _, c := range []struct {
		path string
		gen  func(io.Writer) error
	}{
		{"bash/mudctl", func(w io.Writer) error { return ctl.GenBashCompletionV2(w, true) }},
		{"zsh/_mudctl", ctl.GenZshCompletion},
		{"fish/mudctl.fish", func(w io.Writer) error { return ctl.GenFishCompletion(w, true) }},
	} {
		if err := writeFile(filepath.Join(dir, "completions", c.path), c.gen); err != nil {
			return fmt.Errorf("completion %s: %w", c.path, err)
		}
	}
	return nil
}

func writeFile(path string, gen func(io.Writer) error) (err error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	f, err := os.Create(path)
	if err != nil {
		return err
	}
	defer func() { err = errors.Join(err, f.Close()) }()
	return gen(f)
}
