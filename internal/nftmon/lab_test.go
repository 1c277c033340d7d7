package nftmon

import (
	"context"
	"errors"
	"flag"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/internal/lab/netlab"
)

// -capture writes the datagrams of each lab step to testdata/ (the seeds of
// the decoder's tests and fuzz target).
var capture = flag.Bool("capture", false, "write the notifications of each lab step to testdata/")

var (
	inetMud   = Table{Family: nftables.TableFamilyINet, Name: "mud"}
	bridgeMud = Table{Family: nftables.TableFamilyBridge, Name: "mud"}
	inetOther = Table{Family: nftables.TableFamilyINet, Name: "other"}
)

// nsLab is a fresh network namespace with a monitor on the mud tables and
// two google/nftables connections whose port ids are known.
type nsLab struct {
	t            *testing.T
	lab          *netlab.Lab
	ns           string
	nsFd         int
	own, other   *nftables.Conn
	ownPort      uint32
	otherPort    uint32
	mon          *Monitor
	cancel       context.CancelFunc
	runErr       chan error
	tapMu        sync.Mutex
	tapped       []byte
	guard4, dev  *nftables.Set
	bridgeGuard4 *nftables.Set
}

func newNSLab(t *testing.T, cfg Config) *nsLab {
	t.Helper()
	l := &nsLab{t: t, lab: netlab.New(t, netlab.Config{})}
	l.ns = l.lab.GW.NS
	h, err := netlab.NSHandle(l.ns)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	l.nsFd = int(h)
	l.own, l.ownPort = l.conn()
	l.other, l.otherPort = l.conn()
	cfg.NetNSFd = l.nsFd
	if cfg.Tables == nil {
		cfg.Tables = []Table{inetMud, bridgeMud}
	}
	if l.mon, err = Open(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.mon.Close() })
	l.mon.tap = func(b []byte) {
		l.tapMu.Lock()
		l.tapped = append(l.tapped, b...)
		l.tapMu.Unlock()
	}
	return l
}

// conn opens a lasting google/nftables connection in the namespace and
// returns its port id.
func (l *nsLab) conn() (*nftables.Conn, uint32) {
	l.t.Helper()
	var port uint32
	c, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(l.nsFd),
		nftables.WithSockOptions(func(nc *netlink.Conn) error {
			var err error
			port, err = PortID(nc)
			return err
		}))
	if err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { _ = c.CloseLasting() })
	return c, port
}

func (l *nsLab) run() {
	ctx, cancel := context.WithCancel(context.Background())
	l.cancel = cancel
	l.runErr = make(chan error, 1)
	go func() { l.runErr <- l.mon.Run(ctx) }()
	l.t.Cleanup(func() {
		cancel()
		<-l.runErr
	})
}

// next waits for the monitor's next event.
func (l *nsLab) next() Event {
	l.t.Helper()
	select {
	case e, ok := <-l.mon.Events():
		if !ok {
			l.t.Fatal("events closed")
		}
		return e
	case <-time.After(10 * time.Second):
		l.t.Fatal("no event within 10 s")
	}
	return Event{}
}

// nextChange waits for the next event, which must not be a resync, and
// saves its datagrams as testdata/name.bin under -capture.
func (l *nsLab) nextChange(name string) Event {
	l.t.Helper()
	e := l.next()
	if e.Resync {
		l.t.Fatalf("%s: got resync: %s", name, e)
	}
	l.t.Logf("%s: %s", name, e)
	l.tapMu.Lock()
	b := l.tapped
	l.tapped = nil
	l.tapMu.Unlock()
	if *capture {
		if err := os.WriteFile(filepath.Join("testdata", name+".bin"), b, 0o644); err != nil {
			l.t.Fatal(err)
		}
	}
	return e
}

func (l *nsLab) nft(args ...string) {
	l.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if out, err := l.lab.Run(ctx, l.ns, "nft", args...); err != nil {
		l.t.Fatalf("nft %s: %v: %s", strings.Join(args, " "), err, out)
	}
}

// install creates the tables on the "own" connection: inet mud with a set,
// a map, a policy chain of 4 rules and a base chain; bridge mud with a set
// and a base chain; and inet other, which is not watched.
func (l *nsLab) install() {
	l.t.Helper()
	c := l.own
	im := c.AddTable(&nftables.Table{Family: inetMud.Family, Name: inetMud.Name})
	l.guard4 = &nftables.Set{Table: im, Name: "guard4", KeyType: nftables.TypeIPAddr}
	l.dev = &nftables.Set{Table: im, Name: "dev", KeyType: nftables.TypeEtherAddr, DataType: nftables.TypeVerdict,
		IsMap: true}
	must(l.t, c.AddSet(l.guard4, []nftables.SetElement{{Key: ip4(1)}, {Key: ip4(2)}, {Key: ip4(3)}}))
	must(l.t, c.AddSet(l.dev, []nftables.SetElement{
		{Key: mac(1), VerdictData: &expr.Verdict{Kind: expr.VerdictAccept}},
		{Key: mac(2), VerdictData: &expr.Verdict{Kind: expr.VerdictDrop}},
	}))
	pol := c.AddChain(&nftables.Chain{Table: im, Name: "pol_3_out"})
	for range 4 {
		c.AddRule(&nftables.Rule{Table: im, Chain: pol, Exprs: []expr.Any{&expr.Counter{}}})
	}
	accept := nftables.ChainPolicyAccept
	fwd := c.AddChain(&nftables.Chain{Table: im, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-5), Policy: &accept})
	c.AddRule(&nftables.Rule{Table: im, Chain: fwd, Exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictJump, Chain: "pol_3_out"}}})
	c.AddRule(&nftables.Rule{Table: im, Chain: fwd, Exprs: []expr.Any{&expr.Counter{}}})

	bm := c.AddTable(&nftables.Table{Family: bridgeMud.Family, Name: bridgeMud.Name})
	l.bridgeGuard4 = &nftables.Set{Table: bm, Name: "guard4", KeyType: nftables.TypeIPAddr}
	must(l.t, c.AddSet(l.bridgeGuard4, []nftables.SetElement{{Key: ip4(1)}, {Key: ip4(2)}}))
	bf := c.AddChain(&nftables.Chain{Table: bm, Name: "forward", Type: nftables.ChainTypeFilter,
		Hooknum: nftables.ChainHookForward, Priority: nftables.ChainPriorityRef(-205), Policy: &accept})
	c.AddRule(&nftables.Rule{Table: bm, Chain: bf, Exprs: []expr.Any{&expr.Counter{}}})

	c.AddTable(&nftables.Table{Family: inetOther.Family, Name: inetOther.Name})
	must(l.t, c.Flush())
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

func ip4(last byte) []byte { return []byte{192, 0, 2, last} }
func mac(last byte) []byte { return net.HardwareAddr{2, 0, 0, 0, 0, last} }

// find returns the change of the given kind, op, table and name, failing
// the test when there is none.
func find(t *testing.T, e Event, k Kind, op Op, tb Table, name string) Change {
	t.Helper()
	for _, c := range e.Changes {
		if c.Kind == k && c.Op == op && c.Table == tb && c.Name == name {
			return c
		}
	}
	t.Fatalf("no %s %s of %q in table %s in %s", op, k, name, tb, e)
	return Change{}
}

// The monitor reports each kind of change to the watched tables with the
// table, the object and the port of the socket that made it: the owner's
// own transactions, another program's google/nftables socket, and an admin
// running nft. Changes to other tables are not reported.
func TestMonitorReportsChanges(t *testing.T) {
	netlab.RequireCommand(t, "nft")
	l := newNSLab(t, Config{})
	l.run()

	l.install()
	e := l.nextChange("own_install")
	if e.PortID != l.ownPort || e.PortID == l.otherPort || e.PortID == l.mon.PortID() {
		t.Fatalf("install attributed to port %d; own socket %d, other %d, monitor %d",
			e.PortID, l.ownPort, l.otherPort, l.mon.PortID())
	}
	find(t, e, KindTable, OpNew, inetMud, "")
	find(t, e, KindTable, OpNew, bridgeMud, "")
	if c := find(t, e, KindRule, OpNew, inetMud, "pol_3_out"); c.Count != 4 {
		t.Errorf("pol_3_out: %d rules added, want 4", c.Count)
	}
	if c := find(t, e, KindElement, OpNew, inetMud, "guard4"); c.Elements != 3 {
		t.Errorf("guard4: %d elements added, want 3", c.Elements)
	}
	for _, c := range e.Changes {
		if c.Table == inetOther {
			t.Errorf("change of the unwatched table reported: %s", c)
		}
	}
	if e.Process == "" || e.TaskID == 0 {
		t.Errorf("install: no committing task in %+v", e)
	}

	// Another program's socket deletes one element.
	must(t, l.other.SetDeleteElements(l.guard4, []nftables.SetElement{{Key: ip4(1)}}))
	must(t, l.other.Flush())
	e = l.nextChange("other_delete_element")
	if e.PortID != l.otherPort {
		t.Errorf("element delete attributed to port %d, want the other socket's %d", e.PortID, l.otherPort)
	}
	if c := find(t, e, KindElement, OpDelete, inetMud, "guard4"); c.Elements != 1 || len(e.Changes) != 1 {
		t.Errorf("got %s, want one element deleted from guard4", e)
	}
	if want := "element deleted from set guard4 in table inet mud by port " + strconv.FormatUint(uint64(l.otherPort), 10); !strings.HasPrefix(e.String(), want) {
		t.Errorf("description %q, want it to start with %q", e, want)
	}

	rules, err := l.own.GetRules(&nftables.Table{Family: inetMud.Family, Name: inetMud.Name},
		&nftables.Chain{Name: "forward"})
	if err != nil || len(rules) != 2 {
		t.Fatalf("rules of forward: %v, %v", rules, err)
	}
	counterRule := rules[1].Handle

	// An admin with nft. Each step is one transaction of the nft process.
	for _, step := range []struct {
		name  string
		args  []string
		check func(Event)
	}{
		{"nft_flush_chain", []string{"flush", "chain", "inet", "mud", "pol_3_out"}, func(e Event) {
			if c := find(t, e, KindRule, OpDelete, inetMud, "pol_3_out"); c.Count != 4 {
				t.Errorf("flushed chain: %d rules deleted, want 4", c.Count)
			}
		}},
		{"nft_delete_rule", []string{"delete", "rule", "inet", "mud", "forward", "handle", strconv.FormatUint(counterRule, 10)}, func(e Event) {
			if c := find(t, e, KindRule, OpDelete, inetMud, "forward"); c.Count != 1 || c.Handle != counterRule {
				t.Errorf("deleted rule: %+v, want handle %d", c, counterRule)
			}
		}},
		{"nft_chain_policy", []string{"chain", "inet", "mud", "forward", "{", "policy", "drop", ";", "}"}, func(e Event) {
			find(t, e, KindChain, OpNew, inetMud, "forward")
		}},
		{"nft_flush_set", []string{"flush", "set", "inet", "mud", "guard4"}, func(e Event) {
			if c := find(t, e, KindElement, OpDelete, inetMud, "guard4"); c.Elements != 2 {
				t.Errorf("flushed set: %d elements deleted, want 2", c.Elements)
			}
		}},
		{"nft_flush_map", []string{"flush", "map", "inet", "mud", "dev"}, func(e Event) {
			if c := find(t, e, KindElement, OpDelete, inetMud, "dev"); c.Elements != 2 {
				t.Errorf("flushed map: %d elements deleted, want 2", c.Elements)
			}
		}},
		{"nft_add_element", []string{"add", "element", "inet", "mud", "guard4", "{", "198.51.100.7", "}"}, func(e Event) {
			if c := find(t, e, KindElement, OpNew, inetMud, "guard4"); c.Elements != 1 {
				t.Errorf("added element: %d elements, want 1", c.Elements)
			}
		}},
		{"nft_delete_element", []string{"delete", "element", "bridge", "mud", "guard4", "{", "192.0.2.2", "}"}, func(e Event) {
			if c := find(t, e, KindElement, OpDelete, bridgeMud, "guard4"); c.Elements != 1 {
				t.Errorf("deleted element: %d elements, want 1", c.Elements)
			}
			if !strings.HasPrefix(e.String(), "element deleted from set guard4 in table bridge mud by port ") {
				t.Errorf("description %q", e)
			}
		}},
		{"nft_delete_table", []string{"delete", "table", "bridge", "mud"}, func(e Event) {
			find(t, e, KindTable, OpDelete, bridgeMud, "")
			find(t, e, KindChain, OpDelete, bridgeMud, "forward")
			find(t, e, KindSet, OpDelete, bridgeMud, "guard4")
			if !strings.HasPrefix(e.String(), "table bridge mud deleted (1 chain, 1 set, 1 rule) by port ") {
				t.Errorf("description %q", e)
			}
		}},
	} {
		// A change to an unwatched table first: it must not be reported,
		// so the next event is the step's.
		l.nft("add", "chain", "inet", "other", "c_"+step.name)
		l.nft(step.args...)
		e := l.nextChange(step.name)
		if e.PortID == l.ownPort || e.PortID == l.otherPort || e.PortID == l.mon.PortID() || e.PortID == 0 {
			t.Errorf("%s: attributed to port %d, not a port of nft (own %d, other %d)", step.name, e.PortID, l.ownPort, l.otherPort)
		}
		if e.Process != "nft" {
			t.Errorf("%s: process %q, want nft", step.name, e.Process)
		}
		step.check(e)
	}
}

// With its own port ignored, the owner hears only about others' changes,
// and its own transactions still count as generations (no resync).
func TestMonitorIgnoresOwnPorts(t *testing.T) {
	l := newNSLab(t, Config{})
	l.run()
	l.install()
	if e := l.next(); e.PortID != l.ownPort {
		t.Fatalf("install: %s", e)
	}
	must(t, l.mon.IgnorePorts(l.ownPort))
	must(t, l.own.SetAddElements(l.guard4, []nftables.SetElement{{Key: ip4(7)}}))
	must(t, l.own.Flush())
	must(t, l.other.SetDeleteElements(l.guard4, []nftables.SetElement{{Key: ip4(2)}}))
	must(t, l.other.Flush())
	e := l.next()
	if e.Resync || e.PortID != l.otherPort {
		t.Fatalf("after the owner's ignored change, got %s; want the other socket's change", e)
	}
	find(t, e, KindElement, OpDelete, inetMud, "guard4")

	// The list can be emptied again.
	must(t, l.mon.IgnorePorts())
	must(t, l.own.SetAddElements(l.guard4, []nftables.SetElement{{Key: ip4(8)}}))
	must(t, l.own.Flush())
	if e := l.next(); e.Resync || e.PortID != l.ownPort {
		t.Fatalf("with no ports ignored, got %s; want the owner's change", e)
	}
}

// When the receive buffer overflows, the monitor says to compare everything,
// and it goes on reporting afterwards.
func TestMonitorOverrunResyncs(t *testing.T) {
	l := newNSLab(t, Config{ReadBuffer: 64 << 10})
	l.install()
	// A burst while nobody reads: 20,000 elements in 20 transactions
	// (megabytes of notifications).
	for i := range 20 {
		var els []nftables.SetElement
		for j := range 1000 {
			els = append(els, nftables.SetElement{Key: []byte{198, 51, byte(1 + i*4 + j/256), byte(j)}})
		}
		must(t, l.own.SetAddElements(l.guard4, els))
		must(t, l.own.Flush())
	}
	l.run()
	if e := l.next(); !e.Resync || !strings.Contains(e.String(), "receive buffer overflowed") {
		t.Fatalf("first event after the burst: %s, want a resync for the overflow", e)
	}
	// The backlog is gone with the resync (while it lasted, the kernel
	// dropped every notification without a word), so the next change
	// comes through whole, as the next event.
	must(t, l.other.SetDeleteElements(l.guard4, []nftables.SetElement{{Key: []byte{198, 51, 1, 1}}}))
	must(t, l.other.Flush())
	e := l.next()
	if e.Resync || e.PortID != l.otherPort {
		t.Fatalf("after the resync: %s, want the other socket's change", e)
	}
	if c := find(t, e, KindElement, OpDelete, inetMud, "guard4"); c.Elements != 1 {
		t.Errorf("after the overrun: %s", e)
	}
}

// Run ends with the context (returning its error) or with Close (nil), and
// closes Events either way.
func TestMonitorLifecycle(t *testing.T) {
	l := newNSLab(t, Config{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- l.mon.Run(ctx) }()
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("Run after cancel = %v", err)
	}
	if _, ok := <-l.mon.Events(); ok {
		t.Error("Events not closed after Run returned")
	}

	m, err := Open(Config{NetNSFd: l.nsFd})
	if err != nil {
		t.Fatal(err)
	}
	go func() { done <- m.Run(context.Background()) }()
	if err := m.Close(); err != nil {
		t.Fatal(err)
	}
	if err := <-done; err != nil {
		t.Errorf("Run after Close = %v", err)
	}
	if err := m.Run(context.Background()); err == nil {
		t.Error("second Run did not fail")
	}
}

// The kernel drops the notifications of ignored ports before they reach the
// receive buffer: a large transaction of the owner overflows a monitor that
// does not ignore it, but not one that does, which then reports the next
// foreign change without a resync.
func TestMonitorIgnoredPortsSpareTheBuffer(t *testing.T) {
	l := newNSLab(t, Config{ReadBuffer: 32 << 10})
	l.install()
	ignoring, err := Open(Config{NetNSFd: l.nsFd, Tables: []Table{inetMud}, ReadBuffer: 32 << 10})
	if err != nil {
		t.Fatal(err)
	}
	defer ignoring.Close()
	must(t, ignoring.IgnorePorts(l.otherPort, l.ownPort))
	// Two transactions of 5,000 elements (~300 KB of notifications each)
	// while nobody reads.
	for i := range 2 {
		var els []nftables.SetElement
		for j := range 5000 {
			els = append(els, nftables.SetElement{Key: []byte{198, 51, byte(i*20 + j/256), byte(j)}})
		}
		must(t, l.own.SetAddElements(l.guard4, els))
		must(t, l.own.Flush())
	}
	// A foreign change: a third socket, not ignored.
	third, thirdPort := l.conn()
	must(t, third.SetDeleteElements(l.guard4, []nftables.SetElement{{Key: ip4(2)}}))
	must(t, third.Flush())

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() { _ = ignoring.Run(ctx) }()
	select {
	case e := <-ignoring.Events():
		if e.Resync || e.PortID != thirdPort {
			t.Fatalf("monitor ignoring the owner: first event %s, want the third socket's change", e)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no event within 10 s")
	}

	l.run()
	if e := l.next(); !e.Resync {
		t.Fatalf("monitor not ignoring the owner: first event %s, want a resync (the burst should overflow its buffer)", e)
	}
}
