// Package packaging owns how mudd is installed where it runs: the systemd
// unit and sysusers file (systemd/), the default configuration
// (mudd.yaml), the maintainer scripts (scripts/), the nfpm configurations
// of the .deb and .rpm (nfpm.yaml) and of the OpenWrt .ipk
// (openwrt/nfpm.yaml), and the template of the OpenWrt feed package with
// its procd init script (openwrt/mudd/). [Project] is the packages'
// metadata. README.md says how to install.
//
// [Build] packs the built mudd (mudctl is a link to it), the generated man
// pages and completions, and a Debian changelog into packages with the nfpm
// library, so `make package` needs nothing but Go (packaging/mkpkg is its
// command). It builds nothing: the binary is built in mud's own module, so
// that this module's dependency versions cannot change it.
// [SourceTarball] writes a release's reproducible source tarball and
// [OpenWrtFeed] the feed package that builds from it, stating its hash
// (`make dist`, `make openwrt-feed`; packaging/mkdist).
//
// This directory is a Go module of its own (go.mod, which replaces
// github.com/openmud/mud with the checkout it sits in), so nfpm and its
// dependencies never enter mudd's go.mod.
//
// The tests build the packages, inspect them with dpkg-deb and rpm, install the
// .deb into a scratch root, and run the installed mudd the way the systemd
// unit does: as an unprivileged user holding only the unit's capabilities.
package packaging
