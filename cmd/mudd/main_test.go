package main

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/cli/multicall"
)

const (
	mudFile   = "../../mudfile/testdata/base.json"
	luminaire = "../../mudfetch/testdata/corpus/cisco-mud-manager/luminaire/"
	// commandWait bounds one command. Only a command that opens mudd's
	// configuration (a FIFO without a writer here) takes that long.
	commandWait = 30 * time.Second
)

// run is one invocation of the built binary and what it must do.
type run struct {
	name string   // argv[0]'s basename: mudd or mudctl
	args []string // arguments
	env  []string // extra environment
	code int      // exit code
	want string   // in stdout or stderr
}

// TestOfflineCommandsReadNoConfiguration runs the built binary, as mudd and
// as mudctl, with every command that needs no daemon, in a private mount
// namespace where /etc/mud/mudd.yaml is a FIFO nobody writes to: a command
// that opened it would hang there. Daemon commands given --socket or
// $MUDCTL_SOCKET do not read it either; without them they do, and use the
// socket it names. The real /etc is never changed.
func TestOfflineCommandsReadNoConfiguration(t *testing.T) {
	requireRoot(t)
	mudd, mudctl := buildExecutable(t)
	dir := t.TempDir()
	bogusConfig := filepath.Join(dir, "other.yaml")
	if err := os.WriteFile(bogusConfig, []byte("interfaces: [br-lan]\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	abs := func(p string) string {
		a, err := filepath.Abs(p)
		if err != nil {
			t.Fatal(err)
		}
		return a
	}
	file, sig, ca := abs(mudFile), abs(luminaire+"fs/Luminaire_150.p7s"), abs(luminaire+"luminaire-cacert.pem")
	lum := abs(luminaire + "fs/Luminaire_150.json")
	noSocket := filepath.Join(dir, "no-mudd.sock")
	runs := []run{
		{"mudctl", []string{"--version"}, nil, 0, "mudctl v0.0.0-offline"},
		{"mudctl", []string{"--help"}, nil, 0, "Exit status"},
		{"mudctl", []string{"help", "verify"}, nil, 0, "--trust"},
		{"mudctl", []string{"lint", file}, nil, 0, "valid"},
		{"mudctl", []string{"explain", file}, nil, 0, "test.example.com"},
		{"mudctl", []string{"compile", file}, nil, 0, "dport=443"},
		{"mudctl", []string{"compile", "--nft", file}, nil, 0, "table inet mud"},
		{"mudctl", []string{"verify", lum, "--signature", sig, "--trust", ca, "--at", "2018-10-01T00:00:00Z"}, nil, 0, "verified"},
		{"mudctl", []string{"verify", lum, "--signature", sig, "--ca", ca, "--at", "2018-10-01T00:00:00Z"}, nil, 0, "use --trust"},
		{"mudctl", []string{"fetch", "https://127.0.0.1:9/m.json", "--allow-prefix", "127.0.0.1/32", "--timeout", "5s"}, nil, 2, "127.0.0.1:9"},
		{"mudctl", []string{"snoop", "nosuchif0"}, nil, 1, "capture failed"},
		{"mudctl", []string{"completion", "bash"}, nil, 0, "__start_mudctl"},
		{"mudctl", []string{"completion", "zsh"}, nil, 0, "#compdef mudctl"},
		{"mudctl", []string{"completion", "fish"}, nil, 0, "complete -c mudctl"},
		{"mudctl", []string{"__complete", "verify", "--t"}, nil, 0, "--trust"},
		{"mudctl", []string{"frobnicate"}, nil, 2, "unknown command"},
		{"mudctl", []string{"--socket", noSocket, "status"}, nil, 2, noSocket},
		{"mudctl", []string{"status"}, []string{"MUDCTL_SOCKET=" + noSocket}, 2, noSocket},
		{"mudd", []string{"--version"}, nil, 0, "mudd v0.0.0-offline"},
		{"mudd", []string{"--help"}, nil, 0, "check-config"},
		{"mudd", []string{"check-config", "--help"}, nil, 0, "--config"},
		{"mudd", []string{"check-config", "--config", bogusConfig}, nil, 0, "ok"},
		{"mudd", []string{"frobnicate"}, nil, 2, "unknown command"},
	}
	inPrivateEtc(t, func(fifo string) {
		for _, r := range runs {
			bin := map[string]string{"mudd": mudd, "mudctl": mudctl}[r.name]
			cmd := exec.Command(bin, r.args...)
			cmd.Env = append(os.Environ(), "MUDCTL_SOCKET=")
			cmd.Env = append(cmd.Env, r.env...)
			r.check(t, cmd)
		}
		// Without --socket or $MUDCTL_SOCKET a daemon command reads the
		// configuration: it opens the FIFO, and goes on once the test
		// writes a configuration naming a socket into it.
		cmd := exec.Command(mudctl, "status")
		cmd.Env = append(os.Environ(), "MUDCTL_SOCKET=")
		var out strings.Builder
		cmd.Stdout, cmd.Stderr = &out, &out
		if err := cmd.Start(); err != nil {
			t.Error(err)
			return
		}
		if err := feedFIFO(fifo, "socket: "+noSocket+"\n"); err != nil {
			t.Errorf("mudctl status did not open mudd.yaml: %v", err)
		}
		code, err := wait(cmd)
		if err != nil || code != 2 || !strings.Contains(out.String(), noSocket) {
			t.Errorf("mudctl status with the socket from mudd.yaml: exit %d (%v), want 2 naming %s:\n%s", code, err, noSocket, out.String())
		}
	})
}

// TestSnoopWithoutPrivilege: snoop run by an unprivileged user cannot open
// its capture; that is exit 1, saying what it needs.
func TestSnoopWithoutPrivilege(t *testing.T) {
	requireRoot(t)
	if _, err := exec.LookPath("setpriv"); err != nil {
		t.Fatalf("setpriv (util-linux) is needed: %v", err)
	}
	_, mudctl := buildExecutable(t)
	run{"mudctl", []string{"snoop", "lo"}, nil, 1, "needs CAP_NET_RAW"}.check(t,
		exec.Command("setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", "--inh-caps=-all", mudctl, "snoop", "lo"))
}

// check runs cmd and compares its exit code and output with r's.
func (r run) check(t *testing.T, cmd *exec.Cmd) {
	t.Helper()
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Start(); err != nil {
		t.Errorf("%s %v: %v", r.name, r.args, err)
		return
	}
	code, err := wait(cmd)
	if err != nil {
		t.Errorf("%s %v: %v\n%s", r.name, r.args, err, out.String())
		return
	}
	if code != r.code || !strings.Contains(out.String(), r.want) {
		t.Errorf("%s %v: exit %d, want %d and %q in the output:\n%s", r.name, r.args, code, r.code, r.want, out.String())
	}
}

// wait waits for a started command at most commandWait and returns its
// exit code; one still running then is killed and an error.
func wait(cmd *exec.Cmd) (int, error) {
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var err error
	select {
	case err = <-done:
	case <-time.After(commandWait):
		_ = cmd.Process.Kill()
		<-done
		return -1, fmt.Errorf("still running after %v (blocked opening /etc/mud/mudd.yaml?)", commandWait)
	}
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return ee.ExitCode(), nil
	}
	return 0, err
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() == 0 {
		return
	}
	if os.Getenv("CI") != "" {
		t.Fatal("this test needs root (a private mount namespace, another user); CI runs as root, so this is a CI setup error")
	}
	t.Skip("needs root to make a private mount namespace and to run a command as another user; run it as root (CI does)")
}

// buildExecutable builds the binary, with mudctl a link to it, in a
// directory every user may read, and returns both paths.
func buildExecutable(t *testing.T) (mudd, mudctl string) {
	t.Helper()
	dir, err := os.MkdirTemp("", "mudd-bin-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	mudd, mudctl, err = multicall.Build(dir, multicall.Options{Version: "v0.0.0-offline"})
	if err != nil {
		t.Fatal(err)
	}
	return mudd, mudctl
}

// inPrivateEtc runs fn on an OS thread with a mount namespace of its own,
// where /etc is an overlay (its changes kept in a tmpfs) holding
// /etc/mud/mudd.yaml as a FIFO whose path fn gets. Programs fn starts
// inherit the namespace. The thread is never given back to the runtime,
// so the namespace ends with it; the real /etc is not changed.
func inPrivateEtc(t *testing.T, fn func(fifo string)) {
	t.Helper()
	scratch := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread exits with this goroutine
		errc <- func() error {
			if err := unix.Unshare(unix.CLONE_NEWNS); err != nil {
				return &os.SyscallError{Syscall: "unshare(CLONE_NEWNS)", Err: err}
			}
			if err := unix.Mount("", "/", "", unix.MS_REC|unix.MS_PRIVATE, ""); err != nil {
				return &os.SyscallError{Syscall: "mount --make-rprivate /", Err: err}
			}
			if err := unix.Mount("tmpfs", scratch, "tmpfs", 0, "mode=0700"); err != nil {
				return &os.SyscallError{Syscall: "mount tmpfs", Err: err}
			}
			upper, work := filepath.Join(scratch, "upper"), filepath.Join(scratch, "work")
			for _, d := range []string{upper, work} {
				if err := os.Mkdir(d, 0o755); err != nil {
					return err
				}
			}
			if err := unix.Mount("overlay", "/etc", "overlay", 0, "lowerdir=/etc,upperdir="+upper+",workdir="+work); err != nil {
				return &os.SyscallError{Syscall: "mount overlay on /etc", Err: err}
			}
			if err := os.MkdirAll("/etc/mud", 0o755); err != nil {
				return err
			}
			fifo := "/etc/mud/mudd.yaml"
			_ = os.Remove(fifo) // a packaged one, in the overlay only
			if err := unix.Mkfifo(fifo, 0o644); err != nil {
				return &os.SyscallError{Syscall: "mkfifo", Err: err}
			}
			// The namespace reaches the programs the test starts.
			if out, err := exec.Command("stat", "-c", "%F", fifo).Output(); err != nil || strings.TrimSpace(string(out)) != "fifo" {
				return errors.New("a child process does not see the private /etc/mud/mudd.yaml: " + string(out))
			}
			fn(fifo)
			return nil
		}()
	}()
	if err := <-errc; err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat("/etc/mud/mudd.yaml"); err == nil && fi.Mode()&os.ModeNamedPipe != 0 {
		t.Fatal("the FIFO is visible outside the private mount namespace")
	}
}

// feedFIFO waits until a reader has fifo open, then writes body to it.
func feedFIFO(fifo, body string) error {
	deadline := time.Now().Add(commandWait)
	for {
		fd, err := unix.Open(fifo, unix.O_WRONLY|unix.O_NONBLOCK|unix.O_CLOEXEC, 0)
		if err == nil {
			f := os.NewFile(uintptr(fd), fifo)
			_, err = f.WriteString(body)
			return errors.Join(err, f.Close())
		}
		if !errors.Is(err, unix.ENXIO) || time.Now().After(deadline) {
			return err
		}
		time.Sleep(20 * time.Millisecond)
	}
}
