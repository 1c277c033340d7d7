// Command mkdist writes the source tarball of a release and, with
// -openwrt-feed, the OpenWrt feed package that builds from it, for `make
// dist` and `make openwrt-feed`. Run in the packaging module:
//
//	cd packaging
//	go run ./mkdist -version "$(git describe --tags --always)" -out ../dist
//	go run ./mkdist -version v1.2.3 -rev v1.2.3 -out ../dist -openwrt-feed
//
// The tarball is OUT/mud-VERSION.tar.gz (packaging.SourceTarball) and the
// feed OUT/openwrt-feed/mudd/ (packaging.OpenWrtFeed), VERSION being the
// version as the packages state it ("v1.2.3" becomes 1.2.3). It prints the
// path of each.
package main

import (
	"flag"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"github.com/openmud/mud/packaging"
)

func main() {
	os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
}

func run(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("mkdist", flag.ContinueOnError)
	fs.SetOutput(stderr)
	version := fs.String("version", "", "release version, as git describe prints it (required)")
	rev := fs.String("rev", "HEAD", "git `revision` to archive")
	repo := fs.String("repo", "..", "the repository's `directory`")
	pkgDir := fs.String("packaging", ".", "the packaging `directory`, holding openwrt/mudd/")
	out := fs.String("out", "../dist", "output `directory`")
	feed := fs.Bool("openwrt-feed", false, "also write the OpenWrt feed package into OUT/openwrt-feed")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() > 0 || *version == "" {
		fmt.Fprintln(stderr, "usage: mkdist -version VERSION [-rev REV] [-repo DIR] [-out DIR] [-openwrt-feed]")
		return 2
	}
	v := packaging.PackageVersion(*version)
	tarball, err := packaging.SourceTarball(*repo, *rev, v, *out)
	if err != nil {
		fmt.Fprintf(stderr, "mkdist: %v\n", err)
		return 1
	}
	fmt.Fprintln(stdout, tarball)
	if *feed {
		dir, err := packaging.OpenWrtFeed(*pkgDir, tarball, v, filepath.Join(*out, "openwrt-feed"))
		if err != nil {
			fmt.Fprintf(stderr, "mkdist: %v\n", err)
			return 1
		}
		fmt.Fprintln(stdout, dir)
	}
	return 0
}
