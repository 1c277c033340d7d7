package packaging

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/ipk"
	"github.com/goreleaser/nfpm/v2/rpm"
)

// Formats are the package formats Build can write.
var Formats = []string{"deb", "rpm", "ipk"}

// Options say what Build packs.
type Options struct {
	// Config is the nfpm configuration file (packaging/nfpm.yaml or
	// packaging/openwrt/nfpm.yaml).
	Config string
	// Root is the directory the configuration's relative source paths
	// are relative to: the repository root.
	Root string
	// BinDir holds the mudd binary built for Arch; it is the
	// configuration's ${BINDIR}.
	BinDir string
	// DocDir holds the man pages and completions internal/gendocs wrote
	// (man/manN/*.N, completions/); Build packs a copy with the man pages
	// compressed (*.N.gz), which is the configuration's ${DOCDIR}. Needed
	// by the configurations that name ${DOCDIR}.
	DocDir string
	// Version is the version as `git describe` prints it; it becomes
	// ${VERSION} through PackageVersion.
	Version string
	// Arch is the Go architecture of the binaries (amd64, arm64, arm,
	// mipsle); nfpm translates it per format.
	Arch string
	// IPKArch overrides the .ipk's architecture: OpenWrt names its
	// targets' package architectures (mipsel_24kc, aarch64_cortex-a53),
	// and opkg installs only those it lists.
	IPKArch string
	// Formats to build, of Formats.
	Formats []string
	// OutDir receives the packages, named as each format's convention.
	OutDir string
}

// Build writes one package per format into OutDir and returns their paths.
func Build(o Options) ([]string, error) {
	if len(o.Formats) == 0 {
		return nil, errors.New("packaging: no package format given")
	}
	for _, f := range o.Formats {
		if !slices.Contains(Formats, f) {
			return nil, fmt.Errorf("packaging: unknown package format %q (known: %s)", f, strings.Join(Formats, ", "))
		}
	}
	root, err := filepath.Abs(o.Root)
	if err != nil {
		return nil, fmt.Errorf("packaging: resolving the root directory: %w", err)
	}
	bin, err := filepath.Abs(o.BinDir)
	if err != nil {
		return nil, fmt.Errorf("packaging: resolving the binary directory: %w", err)
	}
	vars := Project.vars()
	vars["VERSION"], vars["ARCH"], vars["BINDIR"] = PackageVersion(o.Version), o.Arch, bin
	// Files made for the package: the Debian changelog, and the
	// documentation with its man pages compressed.
	gen, err := os.MkdirTemp("", "mkpkg-")
	if err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	defer os.RemoveAll(gen)
	vars["CHANGELOG"] = filepath.Join(gen, "changelog.gz")
	if err := os.WriteFile(vars["CHANGELOG"], debianChangelog(vars["VERSION"], sourceDate()), 0o644); err != nil {
		return nil, fmt.Errorf("packaging: %w", err)
	}
	if o.DocDir != "" {
		vars["DOCDIR"] = filepath.Join(gen, "doc")
		if err := stageDocs(o.DocDir, vars["DOCDIR"]); err != nil {
			return nil, fmt.Errorf("packaging: the documentation in %s: %w", o.DocDir, err)
		}
	}
	var unknown []string
	mapping := func(name string) string {
		v, ok := vars[name]
		if !ok && !strings.HasPrefix(name, "NFPM_") && !slices.Contains(unknown, name) { // nfpm itself asks for signing passphrases
			unknown = append(unknown, name)
		}
		return v
	}
	cfg, err := nfpm.ParseFileWithEnvMapping(o.Config, mapping)
	if err != nil {
		return nil, fmt.Errorf("packaging: reading %s: %w", o.Config, err)
	}
	// nfpm expands variables in the name, homepage, maintainer and vendor
	// but not in the license.
	cfg.License = os.Expand(cfg.License, mapping)
	if slices.Contains(unknown, "DOCDIR") && o.DocDir == "" {
		return nil, fmt.Errorf("packaging: %s packs the generated man pages and completions (${DOCDIR}): give their directory", o.Config)
	}
	if len(unknown) > 0 {
		known := slices.Sorted(maps.Keys(vars))
		return nil, fmt.Errorf("packaging: %s uses unknown variables %v (known: %s)", o.Config, unknown, strings.Join(known, ", "))
	}
	if err := os.MkdirAll(o.OutDir, 0o755); err != nil {
		return nil, fmt.Errorf("packaging: creating the output directory: %w", err)
	}
	var out []string
	for _, format := range o.Formats {
		p, err := buildOne(&cfg, format, root, o)
		if err != nil {
			return out, fmt.Errorf("packaging: building the %s package from %s: %w", format, o.Config, err)
		}
		out = append(out, p)
	}
	return out, nil
}

func buildOne(cfg *nfpm.Config, format, root string, o Options) (string, error) {
	packagers := map[string]nfpm.Packager{"deb": deb.Default, "rpm": rpm.DefaultRPM, "ipk": ipk.Default}
	info, err := cfg.Get(format)
	if err != nil {
		return "", err
	}
	resolvePaths(info, root)
	if format == "ipk" && o.IPKArch != "" {
		info.IPK.Arch = o.IPKArch
	}
	if err := nfpm.PrepareForPackager(info, format); err != nil {
		return "", err
	}
	pkgr := packagers[format]
	path := filepath.Join(o.OutDir, pkgr.ConventionalFileName(info))
	f, err := os.Create(path)
	if err != nil {
		return "", err
	}
	if err := pkgr.Package(info, f); err != nil {
		f.Close()
		os.Remove(path)
		return "", err
	}
	if err := f.Close(); err != nil {
		os.Remove(path)
		return "", err
	}
	return path, nil
}

// stageDocs copies the documentation gendocs wrote in src to dst, with
// each man page (man/manN/NAME.N) compressed as Debian and Fedora install
// them, NAME.N.gz.
func stageDocs(src, dst string) error {
	found := false
	err := copyTree(src, dst, func(rel string, data []byte) (string, []byte) {
		if !manPage.MatchString(filepath.ToSlash(rel)) {
			return rel, data
		}
		found = true
		return rel + ".gz", gzipped(data)
	})
	if err == nil && !found {
		err = errors.New("no man pages (man/manN/NAME.N)")
	}
	return err
}

// gzipped compresses data as gzip -9n does: the best compression, and no
// file name or time stamp in the header, so the same data gives the same
// bytes.
func gzipped(data []byte) []byte {
	var buf bytes.Buffer
	zw, _ := gzip.NewWriterLevel(&buf, gzip.BestCompression) // a valid level
	// Writing to a bytes.Buffer does not fail.
	_, _ = zw.Write(data)
	_ = zw.Close()
	return buf.Bytes()
}

// debianChangelog is the changelog a Debian package must carry
// (/usr/share/doc/PACKAGE/changelog.gz for a package of upstream's own, a
// "native" one), gzipped: one entry, for version, pointing to the
// project's history.
func debianChangelog(version string, date time.Time) []byte {
	entry := fmt.Sprintf(`%s (%s) unstable; urgency=medium

  * Release %s of %s. Its changes are in the project's
    history and release notes:
    %s

 -- %s  %s
`, Project.Package, version, version, Project.Name, Project.Homepage, Project.Maintainer, date.Format(time.RFC1123Z))
	return gzipped([]byte(entry))
}

// sourceDate is the date of the changelog entry: $SOURCE_DATE_EPOCH
// (the reproducible-builds convention, which nfpm follows for the files'
// times too) when set, else now.
func sourceDate() time.Time {
	if s, err := strconv.ParseInt(os.Getenv("SOURCE_DATE_EPOCH"), 10, 64); err == nil {
		return time.Unix(s, 0).UTC()
	}
	return time.Now().UTC()
}

// manPage is the path of a man page below the documentation directory.
var manPage = regexp.MustCompile(`^man/man([1-9])/[^/]+\.[1-9]$`)

// resolvePaths makes the configuration's relative source and script paths
// relative to root rather than to the working directory, as nfpm reads
// them.
func resolvePaths(info *nfpm.Info, root string) {
	abs := func(p *string) {
		if *p != "" && !filepath.IsAbs(*p) {
			*p = filepath.Join(root, *p)
		}
	}
	for _, c := range info.Contents {
		switch c.Type {
		case files.TypeSymlink, files.TypeDir, files.TypeImplicitDir, files.TypeRPMGhost:
			// Source is a link target or unused.
		default:
			abs(&c.Source)
		}
	}
	for _, p := range []*string{
		&info.Scripts.PreInstall, &info.Scripts.PostInstall, &info.Scripts.PreRemove, &info.Scripts.PostRemove,
		&info.RPM.Scripts.PreTrans, &info.RPM.Scripts.PostTrans, &info.RPM.Scripts.Verify,
		&info.Deb.Scripts.Rules, &info.Deb.Scripts.Templates, &info.Deb.Scripts.Config,
		&info.APK.Scripts.PreUpgrade, &info.APK.Scripts.PostUpgrade,
	} {
		abs(p)
	}
}

var (
	semverCore = regexp.MustCompile(`^v?(\d+\.\d+\.\d+)(.*)$`)
	// describeTail is what `git describe --tags --dirty` appends to a tag:
	// the commits since it and the abbreviated hash.
	describeTail = regexp.MustCompile(`-(\d+)-g([0-9a-f]+)(-dirty)?$`)
	notMetadata  = regexp.MustCompile(`[^0-9A-Za-z.]+`)
)

// PackageVersion turns what `git describe --tags --always --dirty` prints
// into a version every package manager orders correctly: "v1.2.3" becomes
// "1.2.3"; "v1.2.3-rc1" stays a pre-release ("1.2.3-rc1", which nfpm writes
// as 1.2.3~rc1 and sorts before 1.2.3); commits after a tag,
// "v1.2.3-4-gabc1234-dirty", become build metadata, "1.2.3+4.gabc1234.dirty",
// which sorts after 1.2.3; anything else (an untagged hash, "dev") becomes
// "0.0.0+<it>", since deb and rpm versions must start with a digit.
func PackageVersion(describe string) string {
	describe = strings.TrimSpace(describe)
	m := semverCore.FindStringSubmatch(describe)
	if m == nil {
		meta := strings.Trim(notMetadata.ReplaceAllString(describe, "."), ".")
		if meta == "" {
			meta = "unknown"
		}
		return "0.0.0+" + meta
	}
	core, rest := m[1], m[2]
	var meta []string
	if t := describeTail.FindStringSubmatch(rest); t != nil {
		rest = strings.TrimSuffix(rest, t[0])
		meta = append(meta, t[1], "g"+t[2])
		if t[3] != "" {
			meta = append(meta, "dirty")
		}
	} else if r, ok := strings.CutSuffix(rest, "-dirty"); ok {
		rest = r
		meta = append(meta, "dirty")
	}
	v := core
	if pre := strings.Trim(notMetadata.ReplaceAllString(strings.TrimPrefix(rest, "-"), "."), "."); pre != "" {
		v += "-" + pre
	}
	if len(meta) > 0 {
		v += "+" + strings.Join(meta, ".")
	}
	return v
}
