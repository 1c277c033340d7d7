package netns

import (
	"errors"
	"os"
	"os/exec"
	"testing"

	vnetns "github.com/vishvananda/netns"
)

func TestDoEmptyRunsInPlace(t *testing.T) {
	called := false
	if err := Do("", func() error { called = true; return nil }); err != nil || !called {
		t.Fatalf("Do(\"\") = %v, called %v", err, called)
	}
}

func TestDoMissingNamespace(t *testing.T) {
	err := Do("mud-netns-test-does-not-exist", func() error {
		t.Fatal("fn ran although the namespace does not exist")
		return nil
	})
	if err == nil {
		t.Fatal("no error for a missing namespace")
	}
}

// TestDoEntersAndReturns checks that fn runs in the namespace, that its
// error comes back, and that the caller's namespace is unchanged after.
func TestDoEntersAndReturns(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root; this test needs root to create a network namespace")
		}
		t.Skip("needs root to create a network namespace (runs in CI)")
	}
	const name = "mud-netns-test"
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", name).Run() })

	want, err := vnetns.GetFromName(name)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	before, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer before.Close()

	sentinel := errors.New("from fn")
	err = Do(name, func() error {
		cur, err := vnetns.Get()
		if err != nil {
			return err
		}
		defer cur.Close()
		if !cur.Equal(want) {
			t.Error("fn did not run in the namespace")
		}
		return sentinel
	})
	if !errors.Is(err, sentinel) {
		t.Fatalf("Do returned %v, want fn's error", err)
	}
	after, err := vnetns.Get()
	if err != nil {
		t.Fatal(err)
	}
	defer after.Close()
	if !after.Equal(before) {
		t.Fatal("caller's thread left in another namespace")
	}
}
