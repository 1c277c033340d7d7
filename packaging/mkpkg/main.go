// Command mkpkg packs a built mudd binary (mudctl is a link to it), and the
// generated man pages and completions, into .deb, .rpm or .ipk packages
// with packaging.Build (the nfpm library), for `make package`, which runs
// it in the packaging module (packaging/go.mod) with the repository root as
// -root:
//
//	cd packaging
//	go run ./mkpkg -config nfpm.yaml -root .. -bindir ../bin/linux_amd64 -docdir ../build/doc \
//	      -arch amd64 -version "$(git describe --tags --always --dirty)" -formats deb,rpm -out ../dist
//	go run ./mkpkg -config openwrt/nfpm.yaml -root .. -bindir ../bin/openwrt_mipsle -arch mipsle \
//	      -ipk-arch mipsel_24kc -version ... -formats ipk -out ../dist
//
// It prints the path of each package it wrote.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"runtime"
	"strings"

	"github.com/openmud/mud/packaging"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkpkg", flag.ContinueOnError)
	fs.SetOutput(stderr)
	var o packaging.Options
	fs.StringVar(&o.Config, "config", "nfpm.yaml", "nfpm configuration `file`")
	fs.StringVar(&o.Root, "root", "..", "`directory` the configuration's source paths are relative to (the repository root)")
	fs.StringVar(&o.BinDir, "bindir", "../bin", "`directory` holding mudd")
	fs.StringVar(&o.DocDir, "docdir", "", "`directory` of the generated man pages and completions (make docs), for configurations that pack them")
	fs.StringVar(&o.Version, "version", "dev", "version, as git describe prints it")
	fs.StringVar(&o.Arch, "arch", runtime.GOARCH, "Go architecture of the binaries")
	fs.StringVar(&o.IPKArch, "ipk-arch", "", "OpenWrt package architecture of the .ipk (e.g. mipsel_24kc)")
	formats := fs.String("formats", "deb,rpm", "comma-separated package `formats`: "+strings.Join(packaging.Formats, ", "))
	fs.StringVar(&o.OutDir, "out", "../dist", "output `directory`")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "mkpkg: unexpected argument %q\n", fs.Arg(0))
		return 2
	}
	o.Formats = strings.Split(*formats, ",")
	paths, err := packaging.Build(o)
	for _, p := range paths {
		fmt.Fprintln(stdout, p)
	}
	if err != nil {
		fmt.Fprintf(stderr, "mkpkg: %v\n", err)
		return 1
	}
	return 0
}
