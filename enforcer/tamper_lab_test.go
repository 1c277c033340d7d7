package enforcer

import (
	"context"
	"fmt"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
)

// tamperEnv runs the enforcer's watch (Run) in a lab and collects its
// tamper reports.
type tamperEnv struct {
	*labEnv
	reports chan Tamper
}

func newTamperEnv(t *testing.T, opts ...func(*Config)) *tamperEnv {
	t.Helper()
	reports := make(chan Tamper, 64)
	env := newLabEnv(t, append([]func(*Config){func(c *Config) {
		c.OnTamper = func(x Tamper) { reports <- x }
	}}, opts...)...)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- env.e.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	te := &tamperEnv{labEnv: env, reports: reports}
	te.waitWatching(t)
	return te
}

// waitWatching waits until Run subscribed to the notifications.
func (te *tamperEnv) waitWatching(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		te.e.mu.Lock()
		on := te.e.mon != nil
		te.e.mu.Unlock()
		if on {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("Run did not subscribe to nftables notifications")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// intact asserts that the kernel's tables equal the plan.
func (te *tamperEnv) intact(t *testing.T, when string) {
	t.Helper()
	te.e.mu.Lock()
	diff, err := te.e.compare(time.Now())
	te.e.mu.Unlock()
	if err != nil {
		t.Fatalf("%s: comparing: %v", when, err)
	}
	if diff != "" {
		t.Fatalf("%s: the kernel differs from the plan: %s", when, diff)
	}
}

// expectReport waits for a tamper report matching want. Repair follows
// the change notification within milliseconds; the 5 s bound only tells
// the notification path (which must have acted) from the periodic compare
// (60 s), with room for a loaded CI machine.
func (te *tamperEnv) expectReport(t *testing.T, want *regexp.Regexp) Tamper {
	t.Helper()
	timeout := time.After(5 * time.Second)
	for {
		select {
		case r := <-te.reports:
			if want.MatchString(r.What) {
				return r
			}
			t.Logf("other report: %s", r.What)
		case <-timeout:
			t.Fatalf("no tamper report matching %q within 5 s", want)
		}
	}
}

// mapValue reads the value an address maps to in a map of ours.
func mapValue(t *testing.T, ns, fam, set, key string) string {
	t.Helper()
	out := nftList(t, ns, "list", "map", fam, "mud", set)
	m := regexp.MustCompile(regexp.QuoteMeta(key) + `[^,}]* : (0x[0-9a-f]+)`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("%s not in map %s %s:\n%s", key, fam, set, out)
	}
	return m[1]
}

// ruleHandle finds the handle of a rule of a chain whose text contains s.
func ruleHandle(t *testing.T, ns, fam, chain, s string) string {
	t.Helper()
	out := nftList(t, ns, "-a", "list", "chain", fam, "mud", chain)
	for _, line := range strings.Split(out, "\n") {
		if strings.Contains(line, s) {
			if m := regexp.MustCompile(`# handle (\d+)`).FindStringSubmatch(line); m != nil {
				return m[1]
			}
		}
	}
	t.Fatalf("no rule with %q in chain %s %s:\n%s", s, fam, chain, out)
	return ""
}

// Every kind of change someone else makes to either of our tables is
// undone within a second and reported, naming what was changed: the table
// deleted, a chain flushed, one rule deleted, a map or a set flushed, one
// element deleted, and one element added that grants access.
func TestTamperRepairedFromNotifications(t *testing.T) {
	te := newTamperEnv(t)
	ns := te.lab.GW.NS
	d1, s1, s2 := te.dev1, te.srv1, te.srv2
	te.intact(t, "after Apply")
	netlab.MustDrop(t, "a host the policy does not name", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), shut))

	for _, fam := range []string{"inet", "bridge"} {
		guard := fmt.Sprintf("%s . %s", d1.MAC, d1.IPv4)
		cases := []struct {
			name string
			args []string
			want string
		}{
			{"table deleted", []string{"delete", "table", fam, "mud"}, `table ` + fam + ` mud deleted`},
			{"chain flushed", []string{"flush", "chain", fam, "mud", "src_guard"}, `rules? deleted from chain src_guard in table ` + fam + ` mud`},
			{"rule deleted", nil, `rule \d+ deleted from chain forward in table ` + fam + ` mud`},
			{"map flushed", []string{"flush", "map", fam, "mud", "from_dev"}, `from set from_dev in table ` + fam + ` mud`},
			{"set flushed", []string{"flush", "set", fam, "mud", "guard4"}, `from set guard4 in table ` + fam + ` mud`},
			{"element deleted", []string{"delete", "element", fam, "mud", "guard4", "{ " + guard + " }"}, `element deleted from set guard4 in table ` + fam + ` mud`},
			{"element added", nil, `element added to set addr4 in table ` + fam + ` mud`},
		}
		for _, c := range cases {
			t.Run(fam+"/"+c.name, func(t *testing.T) {
				args := c.args
				switch c.name {
				case "rule deleted":
					// A device's DHCP request: deleted, it would meet the policy.
					args = []string{"delete", "rule", fam, "mud", "forward", "handle", ruleHandle(t, ns, fam, "forward", "udp sport 68 udp dport 67")}
				case "element added":
					// The cloud's group for the forbidden host: dev1 may
					// reach it on 8080 while this stands.
					v := mapValue(t, ns, fam, "addr4", s1.IPv4.String())
					args = []string{"add", "element", fam, "mud", "addr4", "{ " + s2.IPv4.String() + " : " + v + " }"}
				}
				start := time.Now()
				nftList(t, ns, args...)
				r := te.expectReport(t, regexp.MustCompile(c.want))
				t.Logf("reported after %v: %s", time.Since(start).Round(time.Millisecond), r.What)
				te.intact(t, "after the repair")
			})
		}
	}
	netlab.MustDrop(t, "the host the added element granted, after the repair", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), shut))
	netlab.MustPass(t, "the policy's host", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), pass))
}

// Our own changes are not tampering: Apply, updates and the flows the
// packet path remembers raise no report.
func TestOwnChangesAreNotTamper(t *testing.T) {
	te := newTamperEnv(t)
	ctx := context.Background()
	d := hostDevice(te.dev3, "hub1")
	if err := te.e.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	if err := te.e.SetPeer(ctx, "dns:cloud.example", append(hostElems(te.srv1), hostElems(te.srv2)...)); err != nil {
		t.Fatal(err)
	}
	netlab.MustPass(t, "lateral, remembered by the bridge table", netlab.TCPEcho(te.dev1.NS, ap(te.dev2.IPv4, 9090), pass))
	select {
	case r := <-te.reports:
		t.Fatalf("our own change reported as tamper: %s", r.What)
	case <-time.After(500 * time.Millisecond):
	}
	if n := te.e.Repairs(); n != 0 {
		t.Fatalf("%d repairs after our own changes", n)
	}
}

// The periodic comparison finds what no notification announced (here:
// changes made while nobody watched) and repairs it.
func TestPeriodicComparisonRepairs(t *testing.T) {
	env := newLabEnv(t)
	ns := env.lab.GW.NS
	var reports []Tamper
	env.e.cfg.OnTamper = func(x Tamper) { reports = append(reports, x) }
	nftList(t, ns, "delete", "element", "bridge", "mud", "guard4", fmt.Sprintf("{ %s . %s }", env.dev1.MAC, env.dev1.IPv4))
	nftList(t, ns, "add", "element", "inet", "mud", "addr4", "{ "+env.srv2.IPv4.String()+" : "+mapValue(t, ns, "inet", "addr4", env.srv1.IPv4.String())+" }")
	nftList(t, ns, "flush", "chain", "inet", "mud", "src_guard")
	if err := env.e.verify(context.Background()); err != nil {
		t.Fatal(err)
	}
	if len(reports) != 1 {
		t.Fatalf("reports = %v, want one", reports)
	}
	for _, want := range []string{
		fmt.Sprintf("element %s . %s missing from set guard4 of table bridge mud", env.dev1.MAC, env.dev1.IPv4),
		fmt.Sprintf("unexpected element %s in set addr4 of table inet mud", env.srv2.IPv4),
		"chain src_guard of table inet mud has 0 rules"} {
		if !strings.Contains(reports[0].What, want) {
			t.Errorf("report %q does not say %q", reports[0].What, want)
		}
	}
	te := &tamperEnv{labEnv: env}
	te.intact(t, "after the repair")
	netlab.MustDrop(t, "the host the added element granted, after the repair", netlab.TCPEcho(env.dev1.NS, ap(env.srv2.IPv4, 8080), shut))
}
