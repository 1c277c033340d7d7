package packaging

// Metadata is what a package says about the software it holds and where it
// comes from.
type Metadata struct {
	// Name is the project's, and so the source tarball's (NAME-VERSION.tar.gz).
	Name string
	// Package is the name of the binary package holding mudd and mudctl.
	Package string
	// Homepage is where the source and the releases are.
	Homepage string
	// License is the SPDX identifier of the license of the source.
	License string
	// Maintainer is who answers for the packages, "name <address>".
	Maintainer string
	// Vendor is who publishes them (rpm's and ipk's Vendor).
	Vendor string
}

// Project is the one place the packages' metadata comes from. The nfpm
// configurations name it as ${HOMEPAGE}, ${LICENSE}, ${MAINTAINER} and
// ${VENDOR}, which [Build] fills in; the OpenWrt feed package
// ([OpenWrtFeed]) and the Debian copyright file (debian/copyright, checked
// by a test) state the same.
var Project = Metadata{
	Name:       "mud",
	Package:    "mudd",
	Homepage:   "https://github.com/openmud/mud",
	License:    "Apache-2.0",
	Maintainer: "openmud maintainers <maintainers@openmud.org>",
	Vendor:     "openmud",
}

// vars are the configuration variables Project provides.
func (m Metadata) vars() map[string]string {
	return map[string]string{
		"PACKAGE":    m.Package,
		"HOMEPAGE":   m.Homepage,
		"LICENSE":    m.License,
		"MAINTAINER": m.Maintainer,
		"VENDOR":     m.Vendor,
	}
}
