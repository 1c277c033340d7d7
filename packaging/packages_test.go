package packaging

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/netlab"
)

// testVersion is what `git describe` would print two commits after v1.2.3.
const testVersion = "v1.2.3-2-gabc1234"

// TestPackages builds mudd (mudctl is a link to it), packs them as make package does, and
// checks the packages the way a user meets them: dpkg-deb's view of the
// .deb, the files it installs, the installed mudd running under the
// systemd unit's privileges, and the OpenWrt .ipk and init script.
func TestPackages(t *testing.T) {
	netlab.RequireCommand(t, "go", "dpkg-deb")
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin")
	if err := os.Mkdir(bin, 0o755); err != nil {
		t.Fatal(err)
	}
	// One binary, mudd, that is mudctl when invoked under that name. The
	// package configuration packs BINDIR/mudctl as a file, and nfpm would
	// pack a symbolic link as a link, so here it is a hard link to mudd.
	mudd, mudctl, err := multicall.Build(bin, multicall.Options{Version: testVersion, Strip: true})
	if err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(mudctl); err != nil {
		t.Fatal(err)
	}
	if err := os.Link(mudd, mudctl); err != nil {
		t.Fatal(err)
	}
	// Packed by mkpkg, as `make package` does (and outside the race
	// detector, which would make compressing 20 MB of binaries take minutes).
	mkpkg := filepath.Join(dir, "mkpkg")
	if out, err := exec.Command("go", "build", "-o", mkpkg, "./mkpkg").CombinedOutput(); err != nil {
		t.Fatalf("go build mkpkg: %v\n%s", err, out)
	}
	dist := filepath.Join(dir, "dist")
	pack := func(args ...string) []string {
		args = append([]string{"-root", "..", "-bindir", bin, "-version", testVersion, "-arch", runtime.GOARCH, "-out", dist}, args...)
		var stderr bytes.Buffer
		cmd := exec.Command(mkpkg, args...)
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			t.Fatalf("mkpkg %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
		}
		return strings.Fields(string(out))
	}
	pkgs := pack("-config", "nfpm.yaml", "-formats", "deb,rpm")
	ipks := pack("-config", "openwrt/nfpm.yaml", "-ipk-arch", "mipsel_24kc", "-formats", "ipk")
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
	t.Run("deb files", func(t *testing.T) { checkDebFiles(t, debPath, root) })
	t.Run("installed mudd", func(t *testing.T) { checkInstalled(t, root) })
	t.Run("sysusers", func(t *testing.T) { checkSysusers(t, root) })
	t.Run("systemd-analyze verify", func(t *testing.T) { checkUnitVerifies(t, root) })
	t.Run("rpm", func(t *testing.T) {
		b, err := os.ReadFile(rpmPath)
		if err != nil {
			t.Fatal(err)
		}
		if !bytes.HasPrefix(b, []byte{0xed, 0xab, 0xee, 0xdb}) {
			t.Errorf("%s is not an rpm (lead %x)", rpmPath, b[:min(4, len(b))])
		}
		if want := "mudd-1.2.3+2.gabc1234-1."; !strings.HasPrefix(filepath.Base(rpmPath), want) {
			t.Errorf("rpm file %s, want %s*", filepath.Base(rpmPath), want)
		}
	})
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
	fields := run(t, "dpkg-deb", "--field", deb, "Package", "Version", "Architecture", "Depends")
	for _, want := range []string{"Package: mudd\n", "Version: 1.2.3+2.gabc1234\n"} {
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

func checkDebFiles(t *testing.T, deb, root string) {
	// dpkg-deb -c prints: mode owner/group size date time path
	entries := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(run(t, "dpkg-deb", "--contents", deb)), "\n") {
		f := strings.Fields(line)
		if len(f) < 6 {
			t.Fatalf("cannot parse dpkg-deb --contents line %q", line)
		}
		if f[1] != "root/root" {
			t.Errorf("%s is owned by %s, want root/root", f[5], f[1])
		}
		entries[f[5]] = f[0]
	}
	for path, mode := range map[string]string{
		"./usr/sbin/mudd":                       "-rwxr-xr-x",
		"./usr/bin/mudctl":                      "-rwxr-xr-x",
		"./usr/lib/systemd/system/mudd.service": "-rw-r--r--",
		"./usr/lib/sysusers.d/mudd.conf":        "-rw-r--r--",
		"./etc/mud/mudd.yaml":                   "-rw-r--r--",
		"./etc/mud/trust/":                      "drwxr-xr-x",
	} {
		if got, ok := entries[path]; !ok {
			t.Errorf("the package lacks %s", path)
		} else if got != mode {
			t.Errorf("%s has mode %s, want %s", path, got, mode)
		}
	}
	for installed, src := range map[string]string{
		"usr/lib/systemd/system/mudd.service": "systemd/mudd.service",
		"usr/lib/sysusers.d/mudd.conf":        "systemd/mudd.sysusers",
		"etc/mud/mudd.yaml":                   "mudd.yaml",
	} {
		got, err := os.ReadFile(filepath.Join(root, installed))
		if err != nil {
			t.Error(err)
			continue
		}
		if want, _ := os.ReadFile(src); !bytes.Equal(got, want) {
			t.Errorf("installed %s differs from %s", installed, src)
		}
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
	for _, want := range []string{"Package: mudd\n", "Architecture: mipsel_24kc\n", "kmod-nft-core", "kmod-nft-bridge", "ca-bundle"} {
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
	for path, mode := range map[string]int64{
		"./usr/sbin/mudd":           0o755,
		"./usr/bin/mudctl":          0o755,
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
		b, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		out[h.Name] = tarMember{mode: h.Mode & 0o7777, data: b}
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
