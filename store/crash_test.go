//go:build linux

package store

import (
	"bufio"
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"
	"time"
)

// crashEnv, when set to a database path, turns TestCrashSafety into the
// child that writes until it is killed.
const crashEnv = "MUD_STORE_CRASH_CHILD"

const (
	crashDevices   = 16
	crashMaxEvents = 100
)

func crashMAC(i uint64) string { return fmt.Sprintf("02:00:00:00:00:%02x", i%crashDevices) }

// crashWrite is write number i (0-based): device i%16 gets Reason i, and
// event i+1 says so. The same Update does both.
func crashWrite(tx *Tx, i uint64) error {
	st := StateEnforced
	if i%2 == 1 {
		st = StateFetching
	}
	d := Device{MAC: crashMAC(i), State: st, Reason: strconv.FormatUint(i, 10)}
	if err := tx.Devices().Put(d); err != nil {
		return err
	}
	_, err := tx.AppendEvent(Event{MAC: d.MAC, Kind: "state", To: st, Message: d.Reason})
	return err
}

// crashChild resumes numbering from the log and writes forever, printing
// each i after its Update has returned (is durable).
func crashChild(path string) {
	s, err := Open(path, Options{MaxEvents: crashMaxEvents})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	var next uint64
	if err := s.View(func(tx *Tx) (err error) { next, err = tx.LastEventSeq(); return }); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(2)
	}
	for i := next; ; i++ {
		if err := s.Update(func(tx *Tx) error { return crashWrite(tx, i) }); err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(2)
		}
		fmt.Println(i)
	}
}

func TestCrashSafety(t *testing.T) {
	if path := os.Getenv(crashEnv); path != "" {
		crashChild(path)
		return
	}
	if testing.Short() {
		t.Skip("re-execs the test binary")
	}
	path := filepath.Join(t.TempDir(), "mud.db")
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 7))
	const rounds = 4
	for round := range rounds {
		// Kill after a random number of acknowledged writes, so the kill
		// lands at a random point of a later write.
		killAfter := 20 + rng.IntN(150)
		acked := runAndKill(t, path, killAfter)
		t.Logf("round %d: killed after write %d was acknowledged", round, acked)
		if err := checkCrashDB(path, acked); err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
	}
}

// The checker must not be vacuous: each kind of damage a crash could do
// is reported.
func TestCrashCheckerCatches(t *testing.T) {
	cases := []struct {
		name   string
		damage func(*Tx) error
	}{
		{"nothing", nil},
		{"device lost", func(tx *Tx) error { return tx.Devices().Delete(crashMAC(20)) }},
		{"event without device write", func(tx *Tx) error {
			_, err := tx.AppendEvent(Event{MAC: crashMAC(30), Kind: "state", Message: "30"})
			return err
		}},
		{"device write without event", func(tx *Tx) error {
			return tx.Devices().Put(Device{MAC: crashMAC(30), State: StateEnforced, Reason: "30"})
		}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "mud.db")
			s, err := Open(path, Options{MaxEvents: crashMaxEvents})
			if err != nil {
				t.Fatal(err)
			}
			for i := range uint64(30) {
				mustUpdate(t, s, func(tx *Tx) error { return crashWrite(tx, i) })
			}
			if c.damage != nil {
				mustUpdate(t, s, c.damage)
			}
			if err := s.Close(); err != nil {
				t.Fatal(err)
			}
			err = checkCrashDB(path, 29)
			if (err == nil) != (c.damage == nil) {
				t.Fatalf("checkCrashDB = %v", err)
			}
		})
	}
}

// runAndKill starts the child on path, SIGKILLs it once it has
// acknowledged killAfter writes, and returns the last acknowledged i.
func runAndKill(t *testing.T, path string, killAfter int) uint64 {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashSafety$")
	cmd.Env = append(os.Environ(), crashEnv+"="+path)
	cmd.Stderr = os.Stderr
	// Should this test die first, the child must not write on forever.
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	sc := bufio.NewScanner(out)
	var acked uint64
	n := 0
	for n < killAfter && sc.Scan() {
		i, err := strconv.ParseUint(sc.Text(), 10, 64)
		if err != nil {
			continue // stray output from the test framework
		}
		acked = i
		n++
	}
	if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	_ = cmd.Wait()
	if n < killAfter {
		t.Fatalf("child stopped after %d writes (scan error %v)", n, sc.Err())
	}
	return acked
}

// checkCrashDB opens the database left by a killed child and checks it
// holds a prefix of the writes that includes every acknowledged one: the
// log is the contiguous tail of writes 0..last, every event's device exists
// and was last written by the newest write for its MAC, and the device
// count matches.
func checkCrashDB(path string, acked uint64) error {
	s, err := Open(path, Options{MaxEvents: crashMaxEvents, LockTimeout: 5 * time.Second})
	if err != nil {
		return err
	}
	defer s.Close()
	if err := s.Check(); err != nil {
		return err
	}
	return s.View(func(tx *Tx) error {
		last, err := tx.LastEventSeq()
		if err != nil {
			return err
		}
		if last < acked+1 {
			return fmt.Errorf("lost acknowledged writes: last event %d, write %d was acknowledged", last, acked)
		}
		evs, err := tx.Events(0, 0)
		if err != nil {
			return err
		}
		if want := min(last, crashMaxEvents); uint64(len(evs)) != want {
			return fmt.Errorf("%d events, want %d", len(evs), want)
		}
		for k, e := range evs {
			if want := last - uint64(len(evs)) + 1 + uint64(k); e.Seq != want || e.Message != strconv.FormatUint(want-1, 10) {
				return fmt.Errorf("event %d is %+v, want seq %d for write %d", k, e, want, want-1)
			}
			if ok, err := tx.Devices().Has(e.MAC); err != nil || !ok {
				return fmt.Errorf("event %d names device %s, which does not exist (%v)", e.Seq, e.MAC, err)
			}
		}
		devs, err := tx.Devices().List()
		if err != nil {
			return err
		}
		if want := min(last, crashDevices); uint64(len(devs)) != want {
			return fmt.Errorf("%d devices, want %d", len(devs), want)
		}
		for _, d := range devs {
			i, _ := strconv.ParseUint(d.Reason, 10, 64)
			if crashMAC(i) != d.MAC || i >= last || last-1-i >= crashDevices {
				return fmt.Errorf("device %s holds write %s, not the newest of writes 0..%d", d.MAC, d.Reason, last-1)
			}
		}
		return nil
	})
}
