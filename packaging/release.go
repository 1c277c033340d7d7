package packaging

import (
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"
)

// releaseVersion is what PackageVersion makes of a `git describe`: it goes
// into file names, URLs and the feed Makefile, so nothing else is allowed.
var releaseVersion = regexp.MustCompile(`^[0-9][0-9A-Za-z.+~-]*$`)

// SourceTarball writes the source tarball of a release, NAME-VERSION.tar.gz
// (Project.Name), into outDir and returns its path: the files of commit rev
// of the git repository repo, under the directory NAME-VERSION/, as `git
// archive` lays them out (every time stamp the commit's), compressed
// without a file name or time stamp (as gzip -n). So the same commit always
// yields the same bytes, and a hash of the tarball taken at release stays
// true. version is a release version as PackageVersion returns it.
func SourceTarball(repo, rev, version, outDir string) (string, error) {
	if !releaseVersion.MatchString(version) {
		return "", fmt.Errorf("packaging: %q is not a release version", version)
	}
	if rev == "" || strings.HasPrefix(rev, "-") {
		return "", fmt.Errorf("packaging: %q is not a git revision", rev)
	}
	base := Project.Name + "-" + version
	if err := os.MkdirAll(outDir, 0o755); err != nil {
		return "", fmt.Errorf("packaging: creating the output directory: %w", err)
	}
	tmp, err := os.CreateTemp(outDir, "."+base+"-*.tar.gz")
	if err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	defer os.Remove(tmp.Name()) // after the rename, a no-op
	zw, err := gzip.NewWriterLevel(tmp, gzip.BestCompression)
	if err != nil {
		tmp.Close()
		return "", err
	}
	var stderr bytes.Buffer
	cmd := exec.Command("git", "-C", repo, "archive", "--format=tar", "--prefix="+base+"/", rev)
	cmd.Stdout, cmd.Stderr = zw, &stderr
	if err := cmd.Run(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("packaging: git archive %s of %s: %v: %s", rev, repo, err, strings.TrimSpace(stderr.String()))
	}
	if err := zw.Close(); err != nil {
		tmp.Close()
		return "", fmt.Errorf("packaging: writing %s: %w", tmp.Name(), err)
	}
	if err := tmp.Close(); err != nil {
		return "", fmt.Errorf("packaging: writing %s: %w", tmp.Name(), err)
	}
	if err := os.Chmod(tmp.Name(), 0o644); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	path := filepath.Join(outDir, base+".tar.gz")
	if err := os.Rename(tmp.Name(), path); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	return path, nil
}

// feedTemplate is the OpenWrt feed package's directory, relative to the
// packaging directory: Makefile.tmpl and the files it installs (files/).
const feedTemplate = "openwrt/mudd"

// feedValues are what Makefile.tmpl is filled in with.
type feedValues struct {
	Metadata
	Version string // PKG_VERSION
	Hash    string // PKG_HASH, the tarball's SHA-256
}

// OpenWrtFeed writes the OpenWrt feed package that builds mudd from the
// source tarball (as SourceTarball wrote it, for version) into
// outDir/PACKAGE (Project.Package), replacing what was there: the Makefile
// from the template openwrt/mudd/Makefile.tmpl under the packaging
// directory pkgDir, with the version, the tarball's SHA-256 and
// Project's metadata, and a copy of the files it installs. It returns the
// package's directory. outDir is then a feed (`src-link NAME outDir` in
// feeds.conf).
func OpenWrtFeed(pkgDir, tarball, version, outDir string) (string, error) {
	if !releaseVersion.MatchString(version) {
		return "", fmt.Errorf("packaging: %q is not a release version", version)
	}
	if want := Project.Name + "-" + version + ".tar.gz"; filepath.Base(tarball) != want {
		return "", fmt.Errorf("packaging: the feed of version %s builds from %s, not %s", version, want, filepath.Base(tarball))
	}
	hash, err := sha256File(tarball)
	if err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	src := filepath.Join(pkgDir, feedTemplate)
	tmpl, err := template.New("Makefile.tmpl").Option("missingkey=error").ParseFiles(filepath.Join(src, "Makefile.tmpl"))
	if err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	var mk bytes.Buffer
	if err := tmpl.Execute(&mk, feedValues{Metadata: Project, Version: version, Hash: hash}); err != nil {
		return "", fmt.Errorf("packaging: filling in %s: %w", filepath.Join(src, "Makefile.tmpl"), err)
	}
	dst := filepath.Join(outDir, Project.Package)
	if err := os.RemoveAll(dst); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	if err := os.MkdirAll(dst, 0o755); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	if err := os.WriteFile(filepath.Join(dst, "Makefile"), mk.Bytes(), 0o644); err != nil {
		return "", fmt.Errorf("packaging: %w", err)
	}
	if err := copyFiles(filepath.Join(src, "files"), filepath.Join(dst, "files")); err != nil {
		return "", fmt.Errorf("packaging: copying the feed's files: %w", err)
	}
	return dst, nil
}

func sha256File(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil {
		return "", err
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// copyFiles copies the regular files under src to dst, with mode 0644
// whatever their mode in the checkout (the feed Makefile installs each with
// the mode it needs).
func copyFiles(src, dst string) error {
	return copyTree(src, dst, nil)
}

// copyTree copies the regular files under src to dst, each with mode 0644,
// as convert (if not nil) turns the file at rel (its path below src) into
// the file at the name it returns (a path below dst) and the data.
func copyTree(src, dst string, convert func(rel string, data []byte) (string, []byte)) error {
	return filepath.WalkDir(src, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(src, path)
		if err != nil {
			return err
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(filepath.Join(dst, rel), 0o755)
		case !d.Type().IsRegular():
			return fmt.Errorf("%s is not a regular file", path)
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if convert != nil {
			rel, data = convert(rel, data)
		}
		target := filepath.Join(dst, rel)
		if err := os.WriteFile(target, data, 0o644); err != nil {
			return err
		}
		return os.Chmod(target, 0o644) // whatever the umask
	})
}
