package plan

import (
	"net"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/policy"
)

// A rebuild of a large state takes other paths than a small one: its peers
// are normalized and its devices rendered on another core, its addresses
// and binds are listed, and indexed (with the derived state) while the
// kernel loads the batch. What it installs is what the model renders, and
// the state it leaves plans incremental changes that still are; so does a
// second rebuild, from that state.
func TestLargeRebuildAsRendered(t *testing.T) {
	for name, lan := range map[string][]netip.Prefix{"all": nil, "bridge_lan": {mustPrefix("198.51.100.0/24")}} {
		t.Run(name, func(t *testing.T) {
			cfg := goldenConfig()
			cfg.BridgeLAN = lan
			d := largeState()
			pl, k := New(cfg), NewTables()
			noDuplicates(t, commit(t, pl, k, func() (*Plan, error) { return pl.Replace(d, t0) }))
			checkAsRendered(t, pl, k)

			// Incremental: peers change (two more share an address, one
			// goes), devices go, one arrives with overrides.
			u := Update{SetPeers: map[string][]Element{
				peerKey(2): {addr("198.51.100.4", time.Hour)}, // cloud3's
				peerKey(5): nil,
				peerKey(6): {addr("198.51.100.200", time.Hour), addr("2001:db8:ff::6", 0)},
			}, RemoveDevices: []net.HardwareAddr{d.Devices[1].MAC, d.Devices[2].MAC}}
			dev := largeDevice(5000, "model7")
			dev.Overrides.FromDevice = []policy.Rule{{Name: "ov/cloud8", Peer: cloudPeer(8), Protocol: policy.ProtoUDP,
				DstPort: u16(123), Verdict: policy.Accept}}
			u.UpsertDevices = []Device{dev}
			p := commit(t, pl, k, func() (*Plan, error) { return pl.Update(u, t0) })
			if p.Rebuild() {
				t.Fatal("the update rebuilds")
			}
			checkAsRendered(t, pl, k)

			p = commit(t, pl, k, func() (*Plan, error) { return pl.Rebuild(t0) })
			if !p.Rebuild() {
				t.Fatal("Rebuild does not rebuild")
			}
			noDuplicates(t, p)
			checkAsRendered(t, pl, k)
		})
	}
}

func cloudPeer(i int) policy.Peer {
	return policy.Peer{Kind: policy.DNSName, Value: "cloud" + itoa(i) + ".example"}
}

func peerKey(i int) string { return cloudPeer(i).Key() }

func itoa(i int) string { return strconv.Itoa(i) }

func largeDevice(i int, pol string) Device {
	return Device{MAC: net.HardwareAddr{2, 0x20, 0, byte(i >> 8), byte(i), 1}, PolicyID: pol,
		IPv4s: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})},
		IPv6s: []netip.Addr{netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 1, 14: byte(i >> 8), 15: byte(i)})}}
}

// largeState is 1,500 policies, peers and devices: each policy names its
// own DNS name and the next one's, which two of them share an address
// with (a group of several peers a policy names twice); a manufacturer
// class; one device with overrides.
func largeState() Desired {
	const n = 1500
	d := Desired{Peers: map[string][]Element{}}
	mfg := policy.Peer{Kind: policy.Manufacturer, Value: "vendor.example"}
	for i := range n {
		p := testPolicy("model" + itoa(i))
		p.FromDevice[0].Peer, p.ToDevice[0].Peer = cloudPeer(i), cloudPeer(i)
		p.FromDevice = append(p.FromDevice,
			policy.Rule{Name: "fr/next", Peer: cloudPeer((i + 1) % n), Protocol: policy.ProtoTCP, DstPort: u16(8443), Verdict: policy.Accept},
			policy.Rule{Name: "fr/mfg", Peer: mfg, Protocol: policy.ProtoTCP, DstPort: u16(8883), Verdict: policy.Accept})
		d.Policies = append(d.Policies, p)
		a := netip.AddrFrom4([4]byte{198, 51, 100 + byte(i/250), byte(i%250 + 1)})
		if i == 1 {
			a = netip.MustParseAddr("198.51.100.1") // cloud0's
		}
		d.Peers[peerKey(i)] = []Element{{Prefix: netip.PrefixFrom(a, 32), Timeout: time.Hour},
			{Prefix: netip.PrefixFrom(netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0xff, 14: byte(i >> 8), 15: byte(i)}), 128)}}
	}
	d.Peers[mfg.Key()] = []Element{addr("10.1.0.1", 0)}
	for i := range n {
		dev := largeDevice(i, "model"+itoa(i))
		if i == 3 {
			dev.Overrides.ToDevice = []policy.Rule{{Name: "ov/in", Peer: cloudPeer(4), Protocol: policy.ProtoTCP,
				SrcPort: u16(22), Verdict: policy.Accept}}
		}
		d.Devices = append(d.Devices, dev)
	}
	return d
}

// noDuplicates fails if a plan adds an element twice (a bind listed from
// each peer of its group).
func noDuplicates(t *testing.T, p *Plan) {
	t.Helper()
	for _, se := range p.AddElems {
		seen := map[Key]bool{}
		for _, e := range se.Elems {
			if seen[e.Key] {
				t.Fatalf("element %s added twice to %v", e.Key, se.Set)
			}
			seen[e.Key] = true
		}
	}
}

// checkAsRendered compares the kernel model with what the planner thinks
// it holds and with the model rendered from scratch under the planner's
// ids.
func checkAsRendered(t *testing.T, pl *Planner, k *Tables) {
	t.Helper()
	o := pl.opts(t0)
	all, err := buildOwners(pl.m, o)
	if err != nil {
		t.Fatal(err)
	}
	if d := tablesOf(all, o).Diff(k, t0); len(d) > 0 {
		t.Fatalf("the kernel differs from the rendered model:\n  %s", strings.Join(d[:min(len(d), 20)], "\n  "))
	}
	if d := pl.Tables().Diff(k, t0); len(d) > 0 {
		t.Fatalf("the kernel differs from what the planner thinks it holds:\n  %s", strings.Join(d[:min(len(d), 20)], "\n  "))
	}
}
