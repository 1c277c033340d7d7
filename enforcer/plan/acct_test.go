package plan

import (
	"net/netip"
	"strings"
	"testing"

	"github.com/openmud/mud/policy"
)

// With device counters the base chains count first, the default deny
// (also without logging) and the source guard count their drops, and a
// transaction holds no element of the counting sets.
func TestDeviceCountersLayout(t *testing.T) {
	pol := policy.Policy{ID: "p", FromDevice: []policy.Rule{{Name: "fr/any", Protocol: policy.ProtoTCP, DstPort: u16(443), Verdict: policy.Accept}}}
	for _, noLog := range []bool{false, true} {
		cfg := goldenConfig()
		cfg.DeviceCounters, cfg.NoLog = 4096, noLog
		pl, k := installed(t, cfg, Desired{Policies: []policy.Policy{pol}, Devices: []Device{testDevice(1, "p")}})
		ts := pl.Tables()
		for _, f := range Families {
			fwd := ts.Table(f).Chains[chainForward]
			var texts []string
			for _, r := range fwd.Rules {
				texts = append(texts, r.Text())
			}
			all := strings.Join(texts, "\n")
			if f == Inet && !strings.HasPrefix(texts[0], "meta iiftype ether ether saddr @from_dev update @acct_out { ether saddr }") {
				t.Errorf("inet forward does not count first:\n%s", all)
			}
			for _, want := range []string{"update @acct_out", map[Family]string{Inet: "update @acct_in6 { ip6 daddr }", Bridge: "update @acct_in { ether daddr }"}[f]} {
				if !strings.Contains(all, want) {
					t.Errorf("%s forward lacks %q:\n%s", f, want, all)
				}
			}
			for _, c := range []string{chainDenyOut, chainDenyIn, chainGuard} {
				ch := ts.Table(f).Chains[c]
				if ch == nil {
					t.Fatalf("no chain %s in %s (no log: %v)", c, f, noLog)
				}
				counted := false
				for _, r := range ch.Rules {
					counted = counted || strings.Contains(r.Text(), "update @dropc_")
				}
				if !counted {
					t.Errorf("%s %s does not count its drops", f, c)
				}
			}
			for _, s := range acctSetDefs(f, cfg.DeviceCounters) {
				st := k.Table(f).Sets[s.Name]
				if st == nil || !st.Set.Dynamic || !st.Set.Counter || len(st.Elems) != 0 {
					t.Errorf("%s set %s: %+v", f, s.Name, st)
				}
			}
		}
	}
}

// DeviceCounters sums a device's MAC elements and those of the addresses
// bound to it; what belongs to no installed device is left out.
func TestDeviceCountersSum(t *testing.T) {
	cfg := goldenConfig()
	cfg.DeviceCounters = 4096
	pol := policy.Policy{ID: "p"}
	pl, _ := installed(t, cfg, Desired{Policies: []policy.Policy{pol}, Devices: []Device{testDevice(1, "p"), testDevice(2, "p")}})
	d1, d2 := testDevice(1, "p"), testDevice(2, "p")
	got := pl.DeviceCounters(map[SetRef][]ElemCount{
		{Inet, setAcctOut}:   {{Key: MACOf(d1.MAC), Packets: 10, Bytes: 1000}, {Key: MACKey{2, 9, 9, 9, 9, 9}, Packets: 99, Bytes: 99}},
		{Bridge, setAcctOut}: {{Key: MACOf(d1.MAC), Packets: 1, Bytes: 100}},
		{Inet, setDropOut}:   {{Key: MACOf(d1.MAC), Packets: 2, Bytes: 120}},
		{Inet, setAcctIn4}:   {{Key: AddrKey(d1.IPv4s[0]), Packets: 7, Bytes: 700}, {Key: AddrKey(netip.MustParseAddr("192.0.2.200")), Packets: 5, Bytes: 5}},
		{Inet, setDropIn4}:   {{Key: AddrKey(d2.IPv4s[0]), Packets: 3, Bytes: 180}},
		{Bridge, setAcctIn}:  {{Key: MACOf(d2.MAC), Packets: 4, Bytes: 240}},
	})
	want := map[string]DeviceCount{
		d1.MAC.String(): {Sent: 11, SentBytes: 1100, SentDropped: 2, SentDroppedBytes: 120, Received: 7, ReceivedBytes: 700},
		d2.MAC.String(): {Received: 4, ReceivedBytes: 240, ReceivedDropped: 3, ReceivedDroppedBytes: 180},
	}
	if len(got) != len(want) || got[d1.MAC.String()] != want[d1.MAC.String()] || got[d2.MAC.String()] != want[d2.MAC.String()] {
		t.Errorf("got %+v\nwant %+v", got, want)
	}
	cfg.DeviceCounters = 0
	if off, _ := installed(t, cfg, Desired{}); off.DeviceCounted() != nil {
		t.Error("sets to read without device counters")
	}
}
