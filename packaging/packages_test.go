package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/netlab"
)

// testVersion is what `git describe` would print two commits after v1.2.3.
const testVersion = "v1.2.3-2-gabc1234"

// TestMain removes what the tests share.
func TestMain(m *testing.M) {
	code := m.Run()
	if shared.dir != "" {
		os.RemoveAll(shared.dir)
	}
	os.Exit(code)
}

// shared holds mkpkg, built once for the tests that pack.
var shared struct {
	once  sync.Once
	dir   string
	mkpkg string
	err   error
}

// mkpkg builds packaging/mkpkg once and returns its path. The tests run it
// as `make package` does, outside the race detector, which would make
// compressing the binaries take minutes.
func mkpkg(t *testing.T) string {
	t.Helper()
	shared.once.Do(func() {
		if shared.dir, shared.err = os.MkdirTemp("", "mkpkg-test-"); shared.err != nil {
			return
		}
		shared.mkpkg = filepath.Join(shared.dir, "mkpkg")
		if out, err := exec.Command("go", "build", "-o", shared.mkpkg, "./mkpkg").CombinedOutput(); err != nil {
			shared.err = fmt.Errorf("go build mkpkg: %v\n%s", err, out)
		}
	})
	if shared.err != nil {
		t.Fatal(shared.err)
	}
	return shared.mkpkg
}

// pack runs mkpkg with the repository as its root and returns the paths
// of the packages it wrote.
func pack(t *testing.T, args ...string) []string {
	t.Helper()
	args = append([]string{"-root", "..", "-version", testVersion}, args...)
	var stderr bytes.Buffer
	cmd := exec.Command(mkpkg(t), args...)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("mkpkg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	return strings.Fields(string(out))
}

// genDocs writes the man pages and completions into dir as `make docs`
// does: internal/gendocs, run in mud's own module.
func genDocs(t *testing.T, dir string) {
	t.Helper()
	mod, err := multicall.ModuleDir()
	if err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("go", "run", "./internal/gendocs", "-version", testVersion, "-out", dir)
	cmd.Dir = mod
	cmd.Env = append(os.Environ(), "SOURCE_DATE_EPOCH=1700000000")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("gendocs: %v\n%s", err, out)
	}
}

// TestPackages builds mudd (mudctl is a link to it) and its documentation,
// packs them as make package does, and checks the packages the way a user
// meets them: dpkg-deb's and rpm's view of the .deb and the .rpm, the files
// the .deb installs, the installed mudd running under the systemd unit's
// privileges, and the OpenWrt .ipk and init script.
func TestPackages(t *testing.T) {
	netlab.RequireCommand(t, "go", "dpkg-deb")
	dir := t.TempDir()
	bin, doc := filepath.Join(dir, "bin"), filepath.Join(dir, "doc")
	if _, _, err := multicall.Build(bin, multicall.Options{Version: testVersion, Strip: true}); err != nil {
		t.Fatal(err)
	}
	genDocs(t, doc)
	dist := filepath.Join(dir, "dist")
	common := []string{"-bindir", bin, "-arch", runtime.GOARCH, "-out", dist}
	pkgs := pack(t, append(common, "-config", "nfpm.yaml", "-docdir", doc, "-formats", "deb,rpm")...)
	ipks := pack(t, append(common, "-config", "openwrt/nfpm.yaml", "-ipk-arch", "mipsel_24kc", "-formats", "ipk")...)
	if len(pkgs) != 2 || len(ipks) != 1 {
		t.Fatalf("mkpkg wrote %v and %v", pkgs, ipks)
	}
	debPath, rpmPath, ipkPath := pkgs[0], pkgs[1], ipks[0]

	// Installed the way dpkg would unpack it, without running maintainer
	// scripts (they would change this machine's users).
	root := filepath.Join(dir, "root")
	if out, err := exec.Command("dpkg-deb", "-x", debPath, root).CombinedOutput(); err != nil {
		t.Fatalf("dpkg-deb -x: %v\n%s", err, out)
	}

	t.Run("deb metadata", func(t *testing.T) { checkDebControl(t, debPath, dir) })
	t.Run("deb files", func(t *testing.T) { checkDebFiles(t, debPath, root, bin, doc) })
	t.Run("installed mudd", func(t *testing.T) { checkInstalled(t, root) })
	t.Run("sysusers", func(t *testing.T) { checkSysusers(t, root) })
	t.Run("systemd-analyze verify", func(t *testing.T) { checkUnitVerifies(t, root) })
	t.Run("rpm", func(t *testing.T) { checkRPM(t, rpmPath, root, bin, doc) })
	t.Run("ipk", func(t *testing.T) { checkIPK(t, ipkPath) })
	t.Run("openwrt init script", func(t *testing.T) { checkInitScript(t, filepath.Join(root, "usr/sbin/mudd")) })
	t.Run("runs as the unit says", func(t *testing.T) { checkRunsUnprivileged(t, root) })
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

func checkDebControl(t *testing.T, deb, dir string) {
	fields := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends", "Maintainer", "Homepage")
	for _, want := range []string{
		"Package: " + Project.Package + "\n",
		"Version: 1.2.3+2.gabc1234\n",
		"Maintainer: " + Project.Maintainer + "\n",
		"Homepage: " + Project.Homepage + "\n",
	} {
		if !strings.Contains(fields, want) {
			t.Errorf("control fields lack %q:\n%s", want, fields)
		}
	}
	if arch := map[string]string{"amd64": "amd64", "arm64": "arm64", "386": "i386"}[runtime.GOARCH]; arch != "" &&
		!strings.Contains(fields, "Architecture: "+arch+"\n") {
		t.Errorf("control fields lack Architecture: %s:\n%s", arch, fields)
	}
	if strings.Contains(fields, "Depends:") {
		t.Errorf("the binaries are static; the package should depend on nothing:\n%s", fields)
	}
	ctl := filepath.Join(dir, "control")
	run(t, "dpkg-deb", "--control", deb, ctl)
	conffiles, err := os.ReadFile(filepath.Join(ctl, "conffiles"))
	if err != nil {
		t.Fatal(err)
	}
	// dpkg keeps an edited conffile on upgrade (and asks): noreplace.
	if string(conffiles) != "/etc/mud/mudd.yaml\n" {
		t.Errorf("conffiles = %q, want the configuration only", conffiles)
	}
	for script, src := range map[string]string{"postinst": "postinstall.sh", "prerm": "preremove.sh", "postrm": "postremove.sh"} {
		path := filepath.Join(ctl, script)
		fi, err := os.Stat(path)
		if err != nil {
			t.Errorf("maintainer script %s: %v", script, err)
			continue
		}
		if fi.Mode().Perm() != 0o755 {
			t.Errorf("%s has mode %v, want 0755", script, fi.Mode().Perm())
		}
		got, _ := os.ReadFile(path)
		want, _ := os.ReadFile(filepath.Join("scripts", src))
		if !bytes.Equal(got, want) {
			t.Errorf("%s differs from scripts/%s", script, src)
		}
		if out, err := exec.Command("sh", "-n", path).CombinedOutput(); err != nil {
			t.Errorf("sh -n %s: %v\n%s", script, err, out)
		}
	}
}

// pkgFile is what a package installs at a path.
type pkgFile struct {
	mode string // as ls prints it: -rw-r--r--, drwxr-xr-x; l for a symbolic link
	link string // a link's target, resolved against the link's directory
	src  string // the file whose bytes it holds (relative to packaging/)
	gzip bool   // compressed as gzip -n does
	// config is a configuration file the package manager keeps edits of.
	config bool
}

// wantFiles is what the package of format (deb or rpm) installs: the
// binary and the link to it, the unit and the configuration, the man pages
// and completions generated into doc, and the license where the
// distribution looks for it.
func wantFiles(t *testing.T, format, bin, doc string) map[string]pkgFile {
	t.Helper()
	want := map[string]pkgFile{
		"/usr/sbin/mudd":                       {mode: "-rwxr-xr-x", src: filepath.Join(bin, "mudd")},
		"/usr/bin/mudctl":                      {mode: "l", link: "/usr/sbin/mudd"},
		"/usr/lib/systemd/system/mudd.service": {mode: "-rw-r--r--", src: "systemd/mudd.service"},
		"/usr/lib/sysusers.d/mudd.conf":        {mode: "-rw-r--r--", src: "systemd/mudd.sysusers"},
		"/etc/mud/mudd.yaml":                   {mode: "-rw-r--r--", src: "mudd.yaml", config: true},
		"/etc/mud/trust":                       {mode: "drwxr-xr-x"},
		// mudctl's completions, where bash-completion and fish look.
		"/usr/share/bash-completion/completions/mudctl":    {mode: "-rw-r--r--", src: filepath.Join(doc, "completions/bash/mudctl")},
		"/usr/share/fish/vendor_completions.d/mudctl.fish": {mode: "-rw-r--r--", src: filepath.Join(doc, "completions/fish/mudctl.fish")},
	}
	zsh := filepath.Join(doc, "completions/zsh/_mudctl")
	switch format {
	case "deb":
		want["/usr/share/zsh/vendor-completions/_mudctl"] = pkgFile{mode: "-rw-r--r--", src: zsh}
		want["/usr/share/doc/mudd/copyright"] = pkgFile{mode: "-rw-r--r--", src: "debian/copyright"}
		want["/usr/share/doc/mudd/changelog.gz"] = pkgFile{mode: "-rw-r--r--", gzip: true}
		want["/usr/share/lintian/overrides/mudd"] = pkgFile{mode: "-rw-r--r--", src: "debian/lintian-overrides"}
	case "rpm":
		want["/usr/share/zsh/site-functions/_mudctl"] = pkgFile{mode: "-rw-r--r--", src: zsh}
		want["/usr/share/licenses/mudd/LICENSE"] = pkgFile{mode: "-rw-r--r--", src: "../LICENSE"}
	}
	pages, err := filepath.Glob(filepath.Join(doc, "man", "man*", "*"))
	if err != nil || len(pages) == 0 {
		t.Fatalf("no man pages in %s (%v)", doc, err)
	}
	for _, p := range pages {
		rel, _ := filepath.Rel(doc, p)
		want["/usr/share/"+filepath.ToSlash(rel)+".gz"] = pkgFile{mode: "-rw-r--r--", src: p, gzip: true}
	}
	for _, page := range []string{"man1/mudctl.1", "man1/mudctl-lint.1", "man8/mudd.8", "man8/mudd-check-config.8"} {
		if _, ok := want["/usr/share/man/"+page+".gz"]; !ok {
			t.Errorf("gendocs wrote no %s", page)
		}
	}
	return want
}

// checkFileList compares the files (not the directories the package only
// creates on the way) a package lists with want: every one is wanted, with
// its mode and link target. list maps a path to its mode and link target.
func checkFileList(t *testing.T, list map[string][2]string, want map[string]pkgFile) {
	t.Helper()
	for path, w := range want {
		got, ok := list[path]
		switch {
		case !ok:
			t.Errorf("the package lacks %s", path)
		case w.mode == "l":
			if target := resolveLink(path, got[1]); got[0][0] != 'l' || target != w.link {
				t.Errorf("%s has mode %s and links to %q, want a symbolic link to %s", path, got[0], got[1], w.link)
			}
		case got[0] != w.mode:
			t.Errorf("%s has mode %s, want %s", path, got[0], w.mode)
		}
	}
	for path, got := range list {
		if _, ok := want[path]; !ok && got[0][0] != 'd' {
			t.Errorf("the package installs %s (%s), which it should not", path, got[0])
		}
	}
}

// resolveLink is the path a symbolic link at path with target points to.
func resolveLink(path, target string) string {
	if target == "" || filepath.IsAbs(target) {
		return target
	}
	return filepath.Join(filepath.Dir(path), target)
}

func checkDebFiles(t *testing.T, deb, root, bin, doc string) {
	// dpkg-deb -c prints: mode owner/group size date time path [-> target]
	list := map[string][2]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("cannot parse dpkg-deb --contents line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		path, target := strings.TrimSuffix(strings.TrimPrefix(f[5], "."), "/"), ""
		if len(f) == 8 && f[6] == "->" {
			target = f[7]
		}
		if path != "" {
			list[path] = [2]string{f[0], target}
		}
	}
	want := wantFiles(t, "deb", bin, doc)
	checkFileList(t, list, want)
	for path, w := range want {
		if w.mode[0] != '-' {
			continue
		}
		got, err := os.ReadFile(filepath.Join(root, path))
		if err != nil {
			t.Error(err)
			continue
		}
		if w.gzip {
			if got = gunzip(t, path, got); got == nil {
				continue
			}
		}
		if w.src == "" {
			continue
		}
		if want, err := os.ReadFile(w.src); err != nil || !bytes.Equal(got, want) {
			t.Errorf("installed %s differs from %s (%v)", path, w.src, err)
		}
	}
	// The changelog's one entry is of this version.
	if b, err := os.ReadFile(filepath.Join(root, "usr/share/doc/mudd/changelog.gz")); err == nil {
		if first, _, _ := strings.Cut(string(gunzip(t, "changelog.gz", b)), "\n"); first != "mudd (1.2.3+2.gabc1234) unstable; urgency=medium" {
			t.Errorf("changelog entry %q, want one for mudd 1.2.3+2.gabc1234", first)
		}
	}
	// The unit's Documentation= man pages are in the package.
	for _, ref := range regexp.MustCompile(`man:([\w.-]+)\(([1-9])\)`).FindAllStringSubmatch(strings.Join(readUnit(t, "systemd/mudd.service")["Unit"]["Documentation"], " "), -1) {
		if page := fmt.Sprintf("/usr/share/man/man%s/%s.%s.gz", ref[2], ref[1], ref[2]); list[page][0] == "" {
			t.Errorf("the unit names %s, which the package lacks (%s)", ref[0], page)
		}
	}
}

// gunzip decompresses a file the package holds compressed, as gzip -n
// compresses: no file name or time stamp, so that it is reproducible.
func gunzip(t *testing.T, path string, b []byte) []byte {
	t.Helper()
	zr, err := gzip.NewReader(bytes.NewReader(b))
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	if zr.Name != "" || !zr.ModTime.IsZero() {
		t.Errorf("%s: gzip header has name %q and time %v, want neither (gzip -n)", path, zr.Name, zr.ModTime)
	}
	out, err := io.ReadAll(zr)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return nil
	}
	return out
}

// checkRPM reads the .rpm with rpm itself: its name and header metadata,
// and the files it installs with their modes, link targets, flags
// (configuration, license) and SHA-256 digests, which must be those of the
// same files in the .deb (unpacked in debRoot) or of their sources.
func checkRPM(t *testing.T, rpmPath, debRoot, bin, doc string) {
	netlab.RequireCommand(t, "rpm")
	if want := "mudd-1.2.3+2.gabc1234-1."; !strings.HasPrefix(filepath.Base(rpmPath), want) {
		t.Errorf("rpm file %s, want %s*", filepath.Base(rpmPath), want)
	}
	// A scratch database: querying a package file needs none, but rpm
	// would otherwise create one under /var/lib/rpm.
	db := "--dbpath=" + t.TempDir()
	got := run(t, "rpm", db, "-qp", "--qf", "%{NAME}|%{LICENSE}|%{VENDOR}|%{URL}|%{PACKAGER}", rpmPath)
	if want := strings.Join([]string{Project.Package, Project.License, Project.Vendor, Project.Homepage, Project.Maintainer}, "|"); got != want {
		t.Errorf("rpm header: name|license|vendor|url|packager = %q, want %q", got, want)
	}
	const license = "/usr/share/licenses/mudd/LICENSE"
	if got := strings.TrimSpace(run(t, "rpm", db, "-qp", "--licensefiles", rpmPath)); got != license {
		t.Errorf("rpm %%license files: %q, want %s", got, license)
	}
	if algo := strings.TrimSpace(run(t, "rpm", db, "-qp", "--qf", "%{FILEDIGESTALGO}", rpmPath)); algo != "8" {
		t.Fatalf("rpm file digest algorithm %s, want 8 (SHA-256)", algo)
	}
	out := run(t, "rpm", db, "-qp", "--qf", `[%{FILENAMES}\t%{FILEMODES:perms}\t%{FILEUSERNAME}:%{FILEGROUPNAME}\t%{FILELINKTOS}\t%{FILEFLAGS:fflags}\t%{FILEDIGESTS}\n]`, rpmPath)
	list := map[string][2]string{}
	flags, digests := map[string]string{}, map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		f := strings.Split(line, "\t")
		if len(f) != 6 {
			t.Fatalf("cannot parse rpm's line %q", line)
		}
		if f[2] != "root:root" {
			t.Errorf("%s is owned by %s, want root:root", f[0], f[2])
		}
		list[f[0]], flags[f[0]], digests[f[0]] = [2]string{f[1], f[3]}, f[4], f[5]
	}
	want := wantFiles(t, "rpm", bin, doc)
	checkFileList(t, list, want)
	for path, w := range want {
		if _, ok := list[path]; !ok || w.mode[0] != '-' {
			continue
		}
		src := w.src
		if w.gzip {
			src = filepath.Join(debRoot, path)
		}
		b, err := os.ReadFile(src)
		if err != nil {
			t.Error(err)
			continue
		}
		if sum := sha256.Sum256(b); digests[path] != hex.EncodeToString(sum[:]) {
			t.Errorf("%s in the .rpm differs from %s", path, src)
		}
		if strings.Contains(flags[path], "c") != w.config {
			t.Errorf("%s has flags %q: configuration file %v, want %v", path, flags[path], !w.config, w.config)
		}
	}
	if f := flags["/etc/mud/mudd.yaml"]; !strings.Contains(f, "n") {
		t.Errorf("/etc/mud/mudd.yaml has flags %q: rpm would replace an edited configuration (want noreplace)", f)
	}
}

func checkInstalled(t *testing.T, root string) {
	mudd, mudctl := filepath.Join(root, "usr/sbin/mudd"), filepath.Join(root, "usr/bin/mudctl")
	if got := run(t, mudd, "--version"); got != "mudd "+testVersion+"\n" {
		t.Errorf("mudd --version = %q", got)
	}
	if got := run(t, mudctl, "--version"); !strings.Contains(got, testVersion) {
		t.Errorf("mudctl --version = %q", got)
	}
	// The default configuration is usable as shipped.
	conf := filepath.Join(root, "etc/mud/mudd.yaml")
	if got := run(t, mudd, "check-config", "--config", conf); got != conf+": ok\n" {
		t.Errorf("check-config = %q", got)
	}
	// mudctl's offline commands work from the package (no daemon needed).
	if got := run(t, mudctl, "lint", "--help"); !strings.Contains(got, "lint") {
		t.Errorf("mudctl lint --help = %q", got)
	}
}

func checkSysusers(t *testing.T, root string) {
	netlab.RequireCommand(t, "systemd-sysusers")
	// A scratch root: sysusers writes its passwd and group, not this machine's.
	sys := t.TempDir()
	if err := os.MkdirAll(filepath.Join(sys, "etc"), 0o755); err != nil {
		t.Fatal(err)
	}
	run(t, "systemd-sysusers", "--root="+sys, filepath.Join(root, "usr/lib/sysusers.d/mudd.conf"))
	passwd, _ := os.ReadFile(filepath.Join(sys, "etc/passwd"))
	group, _ := os.ReadFile(filepath.Join(sys, "etc/group"))
	if !strings.Contains(string(passwd), "mudd:x:") || !strings.Contains(string(passwd), ":/var/lib/mud:") {
		t.Errorf("no mudd user with home /var/lib/mud:\n%s", passwd)
	}
	var mudMembers string
	for _, line := range strings.Split(string(group), "\n") {
		if f := strings.Split(line, ":"); len(f) == 4 && f[0] == "mud" {
			mudMembers = f[3]
		}
	}
	if mudMembers != "mudd" {
		t.Errorf("group mud has members %q, want mudd (it gives the socket to mud):\n%s", mudMembers, group)
	}
}

// checkUnitVerifies runs systemd-analyze verify on the installed unit, in a
// scratch root holding the package, this machine's units (for the targets
// the unit is ordered against) and its kill (verify checks that every
// Exec*= program is executable).
func checkUnitVerifies(t *testing.T, root string) {
	netlab.RequireCommand(t, "systemd-analyze")
	vr := t.TempDir()
	if err := os.CopyFS(vr, os.DirFS(root)); err != nil {
		t.Fatal(err)
	}
	units := filepath.Join(vr, "usr/lib/systemd/system")
	err := filepath.WalkDir("/usr/lib/systemd/system", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		dst := filepath.Join(units, strings.TrimPrefix(path, "/usr/lib/systemd/system"))
		if _, err := os.Lstat(dst); err == nil {
			return nil // the package's own
		}
		switch {
		case d.IsDir():
			return os.MkdirAll(dst, 0o755)
		case d.Type()&fs.ModeSymlink != 0:
			target, err := os.Readlink(path)
			if err != nil {
				return err
			}
			return os.Symlink(target, dst)
		case d.Type().IsRegular():
			b, err := os.ReadFile(path)
			if err != nil {
				return err
			}
			return os.WriteFile(dst, b, 0o644)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("copying this machine's units: %v", err)
	}
	kill, err := os.ReadFile("/bin/kill")
	if err != nil {
		t.Fatalf("ExecReload runs /bin/kill, which this machine lacks: %v", err)
	}
	if err := os.MkdirAll(filepath.Join(vr, "bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(vr, "bin/kill"), kill, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command("systemd-analyze", "verify", "--man=no", "--root="+vr, "/usr/lib/systemd/system/mudd.service")
	cmd.Env = append(os.Environ(), "SYSTEMD_LOG_COLOR=0")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("systemd-analyze verify: %v\n%s", err, out)
	}
	// Unknown keys and unparsable values are warnings, not failures.
	for _, line := range strings.Split(string(out), "\n") {
		if strings.Contains(line, "mudd.service") {
			t.Errorf("systemd-analyze verify: %s", line)
		} else if line != "" {
			t.Log(line)
		}
	}
}

func checkIPK(t *testing.T, ipk string) {
	f, err := os.Open(ipk)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	members := readTarGz(t, f)
	if got := string(members["./debian-binary"].data); got != "2.0\n" {
		t.Errorf("debian-binary = %q", got)
	}
	control := readTarGz(t, bytes.NewReader(members["./control.tar.gz"].data))
	data := readTarGz(t, bytes.NewReader(members["./data.tar.gz"].data))
	fields := string(control["./control"].data)
	for _, want := range []string{
		"Package: " + Project.Package + "\n", "Architecture: mipsel_24kc\n", "kmod-nft-core", "kmod-nft-bridge", "ca-bundle",
		"Maintainer: " + Project.Maintainer + "\n", "License: " + Project.License + "\n",
		"Homepage: " + Project.Homepage + "\n", "Vendor: " + Project.Vendor + "\n",
	} {
		if !strings.Contains(fields, want) {
			t.Errorf("ipk control lacks %q:\n%s", want, fields)
		}
	}
	if got := string(control["./conffiles"].data); got != "/etc/mud/mudd.yaml\n" {
		t.Errorf("ipk conffiles = %q", got)
	}
	for _, s := range []string{"./postinst", "./prerm"} {
		if m, ok := control[s]; !ok || m.mode&0o111 == 0 {
			t.Errorf("ipk %s missing or not executable", s)
		}
	}
	if m := data["./usr/bin/mudctl"]; m.typ != tar.TypeSymlink || resolveLink("/usr/bin/mudctl", m.link) != "/usr/sbin/mudd" {
		t.Errorf("ipk /usr/bin/mudctl is of type %q linking to %q, want a symbolic link to /usr/sbin/mudd", m.typ, m.link)
	}
	for path, mode := range map[string]int64{
		"./usr/sbin/mudd":           0o755,
		"./etc/init.d/mudd":         0o755,
		"./etc/mud/mudd.yaml":       0o600,
		"./etc/profile.d/mudctl.sh": 0o644,
	} {
		if m, ok := data[path]; !ok {
			t.Errorf("ipk lacks %s", path)
		} else if m.mode != mode {
			t.Errorf("ipk %s has mode %o, want %o", path, m.mode, mode)
		}
	}
	if _, ok := data["./etc/mud/trust/"]; !ok {
		t.Error("ipk lacks /etc/mud/trust/")
	}
}

type tarMember struct {
	mode int64
	typ  byte   // tar.TypeReg, tar.TypeSymlink, ...
	link string // a link's target
	data []byte
}

func readTarGz(t *testing.T, r io.Reader) map[string]tarMember {
	t.Helper()
	zr, err := gzip.NewReader(r)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	out := map[string]tarMember{}
	for {
		h, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return out
		}
		if err != nil {
			t.Fatal(err)
		}
		if h.Typeflag == tar.TypeXGlobalHeader { // git archive's commit id
			continue
		}
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = tarMember{mode: h.Mode & 0o7777, typ: h.Typeflag, link: h.Linkname, data: b}
	}
}

// checkInitScript runs the OpenWrt init script's procd callbacks. procd and
// rc.common cannot run here, so this is the one mock in these tests: a
// stand-in for /lib/functions/procd.sh (which rc.common sources before the
// script's functions run) that records each procd call. The script runs
// under busybox sh, OpenWrt's shell.
func checkInitScript(t *testing.T, mudd string) {
	netlab.RequireCommand(t, "busybox")
	const init = "openwrt/mudd/files/mudd.init"
	for _, sh := range [][]string{{"sh", "-n"}, {"busybox", "sh", "-n"}} {
		if out, err := exec.Command(sh[0], append(sh[1:], init)...).CombinedOutput(); err != nil {
			t.Fatalf("%s %s: %v\n%s", strings.Join(sh, " "), init, err, out)
		}
	}
	dir := t.TempDir()
	stub := filepath.Join(dir, "procd.sh")
	if err := os.WriteFile(stub, []byte(`# Records procd calls, one per line, arguments separated by "|".
record() { (IFS='|'; echo "$*") >>"$PROCD_LOG"; }
procd_open_instance() { record procd_open_instance "$@"; }
procd_set_param() { record procd_set_param "$@"; }
procd_close_instance() { record procd_close_instance "$@"; }
procd_send_signal() { record procd_send_signal "$@"; }
procd_add_interface_trigger() { record procd_add_interface_trigger "$@"; }
`), 0o644); err != nil {
		t.Fatal(err)
	}
	// As rc.common does: source procd.sh and the script, then call a
	// callback. PROG and CONF are set after sourcing, to this package's.
	driver := filepath.Join(dir, "driver.sh")
	if err := os.WriteFile(driver, []byte(`. "$1"; . "$2"; PROG=$3; CONF=$4; shift 4
for fn in "$@"; do "$fn" || echo "$fn failed" >>"$PROCD_LOG"; done
`), 0o644); err != nil {
		t.Fatal(err)
	}
	calls := func(t *testing.T, conf string, fns ...string) []string {
		log := filepath.Join(t.TempDir(), "procd.log")
		cmd := exec.Command("busybox", append([]string{"sh", driver, stub, init, mudd, conf}, fns...)...)
		cmd.Env = append(os.Environ(), "PROCD_LOG="+log)
		if out, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("init script: %v\n%s", err, out)
		}
		b, _ := os.ReadFile(log)
		return strings.Split(strings.TrimSpace(string(b)), "\n")
	}
	conf := "openwrt/mudd/files/mudd.yaml"
	got := calls(t, conf, "start_service", "reload_service", "service_triggers")
	want := []string{
		"procd_open_instance",
		"procd_set_param|command|" + mudd + "|--config|" + conf,
		"procd_set_param|respawn",
		"procd_set_param|stdout|1",
		"procd_set_param|stderr|1",
		"procd_close_instance",
		"procd_send_signal|mudd|*|HUP",
		"procd_add_interface_trigger|interface.*.up|lan|/etc/init.d/mudd|restart",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("procd calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
	// A broken configuration is refused at start and at reload: no
	// instance that would only crash, no SIGHUP mudd would reject.
	bad := filepath.Join(dir, "bad.yaml")
	if err := os.WriteFile(bad, []byte("interfaces: [br-lan]\npolicy:\n  on_failur: block\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	got = calls(t, bad, "start_service", "reload_service")
	if want := []string{"start_service failed", "reload_service failed"}; strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("with a broken configuration, procd calls:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkRunsUnprivileged runs the installed mudd in a lab's gateway namespace
// the way mudd.service does: as an unprivileged user (nobody here, since
// the mudd user exists only where the package is installed) with exactly
// the unit's capabilities as ambient and bounding set and no new
// privileges, its socket in a runtime directory it owns, and systemd's
// notify socket and watchdog. The other sandbox settings were checked with
// strace (see README.md); they cannot be applied without systemd.
func checkRunsUnprivileged(t *testing.T, root string) {
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "setpriv", "nft", "ip")
	u := readUnit(t, "systemd/mudd.service")
	var caps []string
	for _, c := range strings.Fields(u.one(t, "Service", "AmbientCapabilities")) {
		caps = append(caps, strings.ToLower(strings.TrimPrefix(c, "CAP_")))
	}
	if u.one(t, "Service", "NoNewPrivileges") != "yes" {
		t.Fatal("the unit does not set NoNewPrivileges=yes")
	}
	lab := netlab.New(t, netlab.Config{Devices: 1})

	// A directory nobody can traverse, unlike t.TempDir's.
	dir, err := os.MkdirTemp("", "mudpkg-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	const nobody = 65534
	for _, d := range []string{dir, filepath.Join(dir, "state"), filepath.Join(dir, "run")} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if d != dir {
			if err := os.Chown(d, nobody, nobody); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.Chmod(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	sock := filepath.Join(dir, "run", "mudd.sock")
	conf := filepath.Join(dir, "mudd.yaml")
	writeConf := func(level string) {
		body := fmt.Sprintf("interfaces: [%s]\nstate_dir: %s\nsocket: %s\nsocket_group: nogroup\nmetrics:\n  listen: \"\"\nlog:\n  level: %s\n",
			netlab.LANBridge, filepath.Join(dir, "state"), sock, level)
		if err := os.WriteFile(conf, []byte(body), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	writeConf("info")

	start := func(t *testing.T, caps []string) (*exec.Cmd, *netlab.SyncBuffer, <-chan string, <-chan error) {
		notifyPath := filepath.Join(dir, fmt.Sprintf("notify-%d", time.Now().UnixNano()))
		notify, err := net.ListenUnixgram("unixgram", &net.UnixAddr{Name: notifyPath, Net: "unixgram"})
		if err != nil {
			t.Fatal(err)
		}
		if err := os.Chmod(notifyPath, 0o666); err != nil {
			t.Fatal(err)
		}
		msgs := make(chan string, 64)
		go func() { // ends when the test closes notify
			defer close(msgs)
			buf := make([]byte, 4096)
			for {
				n, _, err := notify.ReadFrom(buf)
				if err != nil {
					return
				}
				for _, m := range strings.Split(string(buf[:n]), "\n") {
					select {
					case msgs <- m:
					default:
					}
				}
			}
		}()
		set := "-all"
		for _, c := range caps {
			set += ",+" + c
		}
		cmd := lab.Command(context.Background(), lab.GW.NS, "setpriv",
			fmt.Sprintf("--reuid=%d", nobody), fmt.Sprintf("--regid=%d", nobody), fmt.Sprintf("--groups=%d", nobody),
			"--inh-caps="+set, "--ambient-caps="+set, "--bounding-set="+set, "--no-new-privs",
			filepath.Join(root, "usr/sbin/mudd"), "--config", conf)
		out := &netlab.SyncBuffer{}
		cmd.Stdout, cmd.Stderr = out, out
		cmd.Env = append(os.Environ(), "NOTIFY_SOCKET="+notifyPath, "WATCHDOG_USEC=1000000")
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		exited := make(chan error, 1)
		go func() { exited <- cmd.Wait() }()
		t.Cleanup(func() {
			if cmd.ProcessState == nil {
				_ = cmd.Process.Kill()
				<-exited
			}
			notify.Close()
		})
		return cmd, out, msgs, exited
	}
	await := func(t *testing.T, msgs <-chan string, exited <-chan error, want string, out *netlab.SyncBuffer) {
		t.Helper()
		deadline := time.After(60 * time.Second)
		for {
			select {
			case m := <-msgs:
				if m == want {
					return
				}
			case err := <-exited:
				t.Fatalf("mudd exited (%v) before %s:\n%s", err, want, out.String())
			case <-deadline:
				t.Fatalf("no %s from mudd:\n%s", want, out.String())
			}
		}
	}

	t.Run("with the unit's capabilities", func(t *testing.T) {
		cmd, out, msgs, exited := start(t, caps)
		await(t, msgs, exited, "READY=1", out)
		await(t, msgs, exited, "WATCHDOG=1", out)

		fi, err := os.Stat(sock)
		if err != nil {
			t.Fatal(err)
		}
		if st := fi.Sys().(*syscall.Stat_t); fi.Mode().Perm() != 0o660 || st.Gid != nobody {
			t.Errorf("socket mode %v gid %d, want 0660 and the socket group (%d)", fi.Mode().Perm(), st.Gid, nobody)
		}
		status := run(t, filepath.Join(root, "usr/bin/mudctl"), "--socket", sock, "status", "-o", "json")
		var st struct {
			Version  string `json:"version"`
			Enforcer struct {
				Healthy bool `json:"healthy"`
			} `json:"enforcer"`
		}
		if err := json.Unmarshal([]byte(status), &st); err != nil || st.Version != testVersion || !st.Enforcer.Healthy {
			t.Errorf("mudctl status: %v\n%s", err, status)
		}

		// ExecReload: SIGHUP re-reads the configuration.
		writeConf("debug")
		if err := cmd.Process.Signal(syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
		for deadline := time.Now().Add(30 * time.Second); !strings.Contains(out.String(), "configuration reloaded") && time.Now().Before(deadline); {
			time.Sleep(50 * time.Millisecond)
		}
		if !strings.Contains(out.String(), "configuration reloaded") {
			t.Errorf("no reload after SIGHUP:\n%s", out.String())
		}

		// systemd stops it with SIGTERM; the tables stay in the kernel.
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil {
			t.Fatal(err)
		}
		await(t, msgs, exited, "STOPPING=1", out)
		select {
		case err := <-exited:
			if err != nil {
				t.Errorf("mudd exit after SIGTERM: %v\n%s", err, out.String())
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("mudd did not exit after SIGTERM:\n%s", out.String())
		}
		if o, err := lab.Run(context.Background(), lab.GW.NS, "nft", "list", "table", "inet", "mud"); err != nil {
			t.Errorf("table inet mud gone after stop: %v\n%s", err, o)
		}
	})

	// Both capabilities are needed: without CAP_NET_RAW the DHCP capture
	// cannot open; without CAP_NET_ADMIN nftables refuses the first batch.
	// mudd says which and exits (Restart=on-failure then retries).
	for _, tc := range []struct{ drop, says string }{
		{"net_raw", "operation not permitted"},
		{"net_admin", "needs CAP_NET_ADMIN"},
	} {
		t.Run("without CAP_"+strings.ToUpper(tc.drop), func(t *testing.T) {
			var fewer []string
			for _, c := range caps {
				if c != tc.drop {
					fewer = append(fewer, c)
				}
			}
			_, out, _, exited := start(t, fewer)
			select {
			case err := <-exited:
				if err == nil || !strings.Contains(out.String(), tc.says) {
					t.Errorf("mudd without CAP_%s: exit %v, want an error saying %q\n%s", strings.ToUpper(tc.drop), err, tc.says, out.String())
				}
			case <-time.After(60 * time.Second):
				t.Fatalf("mudd without CAP_%s did not exit:\n%s", strings.ToUpper(tc.drop), out.String())
			}
		})
	}
}
