package enforcer

import (
	"context"
	"encoding/binary"
	"net"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/nftbatch"
	"github.com/openmud/mud/policy"
	"golang.org/x/sys/unix"
)

// nftCounter reads the packets of the rule with the given comment from
// `nft list chain`.
func nftCounter(t *testing.T, ns, family, table, chain, comment string) uint64 {
	t.Helper()
	out := nftList(t, ns, "list", "chain", family, table, chain)
	m := regexp.MustCompile(`counter packets (\d+) bytes \d+[^\n]* comment "` + regexp.QuoteMeta(comment) + `"`).FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("no counter %q in chain %s:\n%s", comment, chain, out)
	}
	n, _ := strconv.ParseUint(m[1], 10, 64)
	return n
}

// The two-stage dispatch carries a dispatch id in meta secmark: the
// administrator's meta mark (policy routing, QoS) must reach their own
// chains unchanged, and the secmark must be 0 again after ours.
func TestDispatchKeepsAdminMarks(t *testing.T) {
	env := newLabEnv(t)
	if !env.e.SecmarkDispatch() {
		t.Fatal("this kernel supports secmark, but the enforcer chose direct dispatch")
	}
	ns, d1 := env.lab.GW.NS, env.dev1
	mac := d1.MAC.String()
	nftList(t, ns, "add", "table", "inet", "admin")
	nftList(t, ns, "add", "chain", "inet", "admin", "pre", "{ type filter hook prerouting priority -150; }")
	nftList(t, ns, "add", "rule", "inet", "admin", "pre", "ether", "saddr", mac, "meta", "mark", "set", "0x12345678")
	nftList(t, ns, "add", "chain", "inet", "admin", "later", "{ type filter hook forward priority 10; }")
	for _, port := range []string{"8080", "8081"} {
		nftList(t, ns, "add", "rule", "inet", "admin", "later", "ether", "saddr", mac, "meta", "l4proto", "{ tcp, udp }", "th", "dport", port,
			"meta", "mark", "0x12345678", "counter", "comment", `"kept `+port+`"`)
		nftList(t, ns, "add", "rule", "inet", "admin", "later", "ether", "saddr", mac, "meta", "l4proto", "{ tcp, udp }", "th", "dport", port,
			"counter", "comment", `"all `+port+`"`)
	}
	// nft cannot parse a secmark constant: count secmarked packets with a
	// rule built here.
	nftList(t, ns, "add", "chain", "inet", "admin", "later2", "{ type filter hook forward priority 10; }")
	withRaw(t, ns, func(cp *nftbatch.Capture) {
		tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: "admin"}
		ch := &nftables.Chain{Table: tb, Name: "later2"}
		exprs := append(fromMAC(d1.MAC),
			&expr.Meta{Key: expr.MetaKeySECMARK, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
			&expr.Counter{})
		cp.Conn.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, "secmark left")})
	})
	for _, a := range []netip.Addr{env.srv1.IPv4, env.srv1.IPv6} {
		netlab.MustPass(t, "marked dev1 → cloud tcp 8080 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
		netlab.MustPass(t, "marked dev1 → cloud udp 8081 "+a.String(), netlab.UDPEcho(d1.NS, ap(a, 8081), pass))
		netlab.MustDrop(t, "marked dev1 → cloud tcp 8082 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8082), shut))
	}
	for _, port := range []string{"8080", "8081"} {
		all := nftCounter(t, ns, "inet", "admin", "later", "all "+port)
		kept := nftCounter(t, ns, "inet", "admin", "later", "kept "+port)
		if all == 0 || kept != all {
			t.Errorf("port %s: %d of %d packets reached the admin's chain with their mark intact", port, kept, all)
		}
	}
	if n := nftCounter(t, ns, "inet", "admin", "later2", "secmark left"); n != 0 {
		t.Errorf("%d packets left our chains with a secmark", n)
	}
	// The ruleset lists, readably, with the nft of the distribution.
	out := nftList(t, ns, "list", "ruleset")
	for _, want := range []string{"meta secmark set ether saddr map @from_dev jump src_guard", "meta secmark != 0 jump policy_out", "meta secmark vmap @out_chain", "meta secmark set 0"} {
		if !strings.Contains(out, want) {
			t.Errorf("nft list ruleset lacks %q", want)
		}
	}
}

// addSecmarkRule makes the gateway label the packets of a MAC with a
// secmark, as an LSM's packet labelling would (nft itself can only set
// secmark objects, which need an LSM).
func addSecmarkRule(t *testing.T, ns string, macs ...net.HardwareAddr) {
	t.Helper()
	withRaw(t, ns, func(cp *nftbatch.Capture) {
		tb := &nftables.Table{Family: nftables.TableFamilyINet, Name: "lsm"}
		cp.Conn.AddTable(tb)
		ch := cp.Conn.AddChain(&nftables.Chain{Table: tb, Name: "pre", Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookPrerouting, Priority: nftables.ChainPriorityRef(-300)})
		for _, mac := range macs {
			exprs := append(fromMAC(mac), &expr.Immediate{Register: 1, Data: binary.NativeEndian.AppendUint32(nil, 7)},
				&expr.Meta{Key: expr.MetaKeySECMARK, SourceRegister: true, Register: 1})
			cp.Conn.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: exprs})
		}
	})
}

// fromMAC matches Ethernet frames from mac.
func fromMAC(mac net.HardwareAddr) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyIIFTYPE, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint16(nil, unix.ARPHRD_ETHER)},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 6, Len: 6},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: mac},
	}
}

// withRaw sends, in namespace ns, the batch fn queues.
func withRaw(t *testing.T, ns string, fn func(*nftbatch.Capture)) {
	t.Helper()
	h, err := netlab.NSHandle(ns)
	if err != nil {
		t.Fatal(err)
	}
	defer h.Close()
	raw, err := nftbatch.Open(int(h))
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	cp, err := nftbatch.NewCapture()
	if err != nil {
		t.Fatal(err)
	}
	fn(cp)
	msgs, err := cp.Take()
	if err != nil {
		t.Fatal(err)
	}
	if err := raw.Send(msgs); err != nil {
		t.Fatal(err)
	}
}

// A packet that already carries a secmark cannot be dispatched without
// losing it: a MUD device's is dropped and counted (fail closed), anyone
// else's passes untouched.
func TestDispatchSecmarkBusyFailsClosed(t *testing.T) {
	env := newLabEnv(t)
	ns := env.lab.GW.NS
	addSecmarkRule(t, ns, env.dev1.MAC, env.dev3.MAC)
	netlab.MustDrop(t, "labelled dev1 → cloud (allowed by its policy)", netlab.TCPEcho(env.dev1.NS, ap(env.srv1.IPv4, 8080), shut))
	if n := nftCounter(t, ns, "inet", "mud", "secmark_fwd", "carrier-busy"); n == 0 {
		t.Error("carrier-busy counter did not count the labelled packet")
	}
	netlab.MustPass(t, "labelled non-MUD dev3 → anywhere", netlab.TCPEcho(env.dev3.NS, ap(env.srv2.IPv4, 8082), pass))
	netlab.MustPass(t, "labelled non-MUD dev3 → anywhere (v6)", netlab.TCPEcho(env.dev3.NS, ap(env.srv2.IPv6, 8082), pass))
	// dev2 is not labelled: unaffected.
	netlab.MustPass(t, "unlabelled cam → hub", netlab.TCPEcho(env.dev1.NS, ap(env.dev2.IPv4, 9090), pass))
}

// Direct dispatch (Config.DirectDispatch, and kernels without secmark):
// the same policies, with the device maps jumping to the policy chains.
func TestDirectDispatch(t *testing.T) {
	env := newLabEnv(t, func(c *Config) { c.DirectDispatch = true })
	if env.e.SecmarkDispatch() {
		t.Fatal("DirectDispatch ignored")
	}
	ctx := context.Background()
	d1, d2, s1 := env.dev1, env.dev2, env.srv1
	for _, a := range []netip.Addr{s1.IPv4, s1.IPv6} {
		netlab.MustPass(t, "dev1 → cloud tcp 8080 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8080), pass))
		netlab.MustDrop(t, "dev1 → cloud tcp 8082 "+a.String(), netlab.TCPEcho(d1.NS, ap(a, 8082), shut))
	}
	netlab.MustDrop(t, "cloud → dev1 tcp 8080", netlab.TCPEcho(s1.NS, ap(d1.IPv4, 8080), shut))
	netlab.MustPass(t, "cam → hub 9090", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 9090), pass))
	netlab.MustDrop(t, "cam → hub 9092", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 9092), shut))
	if n := counter(t, env.e, "cam1", policy.FromDevice, "default-deny"); n == 0 {
		t.Error("default-deny not counted")
	}
	d := hostDevice(d1, "cam1")
	d.Mode = Quarantine
	if err := env.e.UpsertDevice(ctx, d); err != nil {
		t.Fatal(err)
	}
	netlab.MustDrop(t, "quarantined", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), shut))
	out := nftList(t, env.lab.GW.NS, "list", "ruleset")
	if !strings.Contains(out, "ether saddr vmap @from_dev") || strings.Contains(out, "secmark") {
		t.Errorf("not the direct layout:\n%s", out)
	}
}
