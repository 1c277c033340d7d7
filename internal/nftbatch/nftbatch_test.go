package nftbatch

import (
	"errors"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	vnetns "github.com/vishvananda/netns"
	"golang.org/x/sys/unix"
)

// A batch is applied as a whole or not at all, and a refused one names the
// failing message and its errno.
func TestSendAppliesOrNames(t *testing.T) {
	if os.Geteuid() != 0 {
		if os.Getenv("CI") != "" {
			t.Fatal("CI runs as root; this test needs root for a network namespace and nftables")
		}
		t.Skip("needs root for a network namespace and nftables (runs in CI)")
	}
	const ns = "mud-nftbatch-test"
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add: %v: %s", err, out)
	}
	t.Cleanup(func() { _ = exec.Command("ip", "netns", "delete", ns).Run() })
	h, err := vnetns.GetFromName(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	conn, err := Open(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()

	send := func(build func(c *nftables.Conn)) error {
		cp, err := NewCapture()
		if err != nil {
			t.Fatal(err)
		}
		build(cp.Conn)
		msgs, err := cp.Take()
		if err != nil {
			t.Fatal(err)
		}
		return conn.Send(msgs)
	}
	tb := &nftables.Table{Name: "t", Family: nftables.TableFamilyINet}
	if err := send(func(c *nftables.Conn) { c.AddTable(tb) }); err != nil {
		t.Fatalf("creating a table: %v", err)
	}
	// A second table, then a rule in a chain that does not exist: nothing
	// of the batch may remain.
	err = send(func(c *nftables.Conn) {
		c.AddTable(&nftables.Table{Name: "u", Family: nftables.TableFamilyINet})
		c.AddRule(&nftables.Rule{Table: tb, Chain: &nftables.Chain{Name: "missing", Table: tb},
			Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictAccept}}})
	})
	var be *BatchError
	if !errors.As(err, &be) || !be.Has(unix.ENOENT) || !strings.Contains(be.Error(), "NEWRULE missing") {
		t.Fatalf("error %v, want a *BatchError naming NEWRULE missing with ENOENT", err)
	}
	out, err := exec.Command("ip", "netns", "exec", ns, "nft", "list", "tables").CombinedOutput()
	if err != nil {
		t.Fatalf("nft list tables: %v: %s", err, out)
	}
	if got := strings.TrimSpace(string(out)); got != "table inet t" {
		t.Fatalf("tables after the refused batch: %q, want only table inet t", got)
	}
}

// A refusal repeated for many messages of a batch is named once, with its
// count.
func TestBatchErrorNamesEachRefusalOnce(t *testing.T) {
	e := &BatchError{Errors: []string{
		"NEWSETELEM addr4: too many open files in system",
		"NEWSETELEM addr6: too many open files in system",
		"NEWSETELEM addr4: too many open files in system",
		"NEWSETELEM addr4: too many open files in system",
	}}
	want := "kernel rejected nftables batch: NEWSETELEM addr4: too many open files in system (3 times); " +
		"NEWSETELEM addr6: too many open files in system"
	if got := e.Error(); got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}
