package enforcer

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/mudfile"
	"github.com/openmud/mud/policy"
)

// synOnly adds ACEs admitting TCP segments to port 9091 whose flags are
// exactly SYN (RFC 8519 tcp flags "syn"), towards the cloud and between
// devices of the manufacturer.
func synOnly(p policy.Policy) policy.Policy {
	syn := []policy.FieldMatch{{Field: policy.FieldTCPFlags, Value: uint32(mudfile.TCPSyn)}}
	cloud := policy.Peer{Kind: policy.DNSName, Value: "cloud.example"}
	mfg := policy.Peer{Kind: policy.Manufacturer, Value: mfgA}
	p.FromDevice = append(p.FromDevice,
		policy.Rule{Name: "fr/syn-cloud", Peer: cloud, Protocol: policy.ProtoTCP, DstPort: u16(9091), Fields: syn, Verdict: policy.Accept},
		policy.Rule{Name: "fr/syn-lateral", Peer: mfg, Protocol: policy.ProtoTCP, DstPort: u16(9091), Fields: syn, Verdict: policy.Accept})
	p.ToDevice = append(p.ToDevice,
		policy.Rule{Name: "to/syn-lateral", Peer: mfg, Protocol: policy.ProtoTCP, DstPort: u16(9091), Fields: syn, Verdict: policy.Accept})
	return p
}

// A SYN-only ACE admits a SYN and nothing else: not a bare ACK, not a SYN
// with ECN flags, not a SYN-ACK; routed and bridged, in both bridged reply
// modes. Segments are made by hand and counted where they arrive.
func TestTCPFlagsSYNOnly(t *testing.T) {
	for _, nfCall := range []bool{false, true} {
		env := newLateralEnv(t, nfCall)
		t.Run(string(env.e.BridgeReplies().IPv4), func(t *testing.T) {
			ctx := context.Background()
			d1, d2, srv := env.dev1, env.dev2, env.srv1
			if err := env.e.Update(ctx, Update{SetPolicies: []policy.Policy{synOnly(lateralPolicy("thing", mfgA))},
				SetPeers: map[string][]Element{"dns:cloud.example": hostElems(srv)}}); err != nil {
				t.Fatal(err)
			}
			netlab.MustPass(t, "dev1 → dev2 (the bridge learns the MACs)", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 8080), pass))
			netlab.MustPass(t, "dev2 → dev1 (the bridge learns the MACs)", netlab.TCPEcho(d2.NS, ap(d1.IPv6, 8080), pass))
			lateral, routed := countTCP(t, d2, 9091), countTCP(t, srv, 9091)
			gwMAC := bridgeMAC(t, env.lab)
			flags := []byte{tcpSYN, tcpACK, tcpSYN | 0x40 | 0x80, tcpSYN | tcpACK}
			sport := uint16(41000)
			for _, v6 := range []bool{false, true} {
				src, dst, cloud := d1.IPv4, d2.IPv4, srv.IPv4
				if v6 {
					src, dst, cloud = d1.IPv6, d2.IPv6, srv.IPv6
				}
				for _, f := range flags {
					sport++
					sendFrames(t, d1,
						tcpProbe{srcMAC: d1.MAC, dstMAC: d2.MAC, src: src, dst: dst, sport: sport, dport: 9091, flags: f}.frame(),
						tcpProbe{srcMAC: d1.MAC, dstMAC: gwMAC, src: src, dst: cloud, sport: sport, dport: 9091, flags: f}.frame())
				}
			}
			settle()
			for _, c := range []struct {
				what string
				n    *tcpCounter
			}{{"bridged", lateral}, {"routed", routed}} {
				for _, f := range flags {
					want := 0
					if f == tcpSYN {
						want = 2 // IPv4 and IPv6
					}
					if got := c.n.count(f); got != want {
						t.Errorf("%s: %d segments with flags 0x%02x arrived, want %d", c.what, got, f, want)
					}
				}
			}
		})
	}
}

func TestRenderHeaderFields(t *testing.T) {
	p := synOnly(lateralPolicy("thing", mfgA))
	p.FromDevice = append(p.FromDevice,
		policy.Rule{Name: "fr/fields4", Family: policy.IPv4, Protocol: policy.ProtoTCP, Verdict: policy.Accept, Fields: []policy.FieldMatch{
			{Field: policy.FieldDSCP, Value: 46}, {Field: policy.FieldECN, Value: 1}, {Field: policy.FieldIHL, Value: 5},
			{Field: policy.FieldIPv4Flags, Value: uint32(mudfile.IPv4DontFragment)}, {Field: policy.FieldIdentification, Value: 4660},
			{Field: policy.FieldTCPSeq, Value: 1}, {Field: policy.FieldTCPAck, Value: 2}, {Field: policy.FieldTCPDataOffset, Value: 6},
			{Field: policy.FieldTCPReserved, Value: 0}, {Field: policy.FieldTCPWindow, Value: 1024}, {Field: policy.FieldTCPUrgent, Value: 0},
			{Field: policy.FieldTCPOptions, Bytes: []byte{2, 4, 5, 0xb4}}}},
		policy.Rule{Name: "fr/fields6", Family: policy.IPv6, Protocol: policy.ProtoTCP, Verdict: policy.Accept, Fields: []policy.FieldMatch{
			{Field: policy.FieldDSCP, Value: 46}, {Field: policy.FieldECN, Value: 3}, {Field: policy.FieldFlowLabel, Value: 12345},
			{Field: policy.FieldTCPFlags, Value: 0}}})
	out, err := Render(p, Device{}, RenderOptions{})
	if err != nil {
		t.Fatal(err)
	}
	for _, tbl := range []string{"table inet mud", "table bridge mud"} {
		body := out[strings.Index(out, tbl):]
		for _, want := range []string{
			"meta l4proto tcp tcp dport 9091 tcp flags == syn ip daddr map @addr4",
			"ip dscp 46 ip ecn 1 ip hdrlength 5 ip frag-off & 0xe000 == 0x4000 ip id 4660 tcp sequence 1 tcp ackseq 2 tcp doff 6 tcp reserved 0 tcp window 1024 tcp urgptr 0 tcp doff 6 @th,160,32 0x020405b4 counter return comment \"fr/fields4\"",
			"ip6 dscp 46 ip6 ecn 3 ip6 flowlabel 12345 tcp flags == 0x0 counter return comment \"fr/fields6\"",
		} {
			if !strings.Contains(body, want) {
				t.Errorf("%s lacks %q", tbl, want)
			}
		}
	}
	// The ACE with a field is a rule, not an element.
	if strings.Contains(out, "fr/syn-lateral */") {
		t.Errorf("the SYN-only ACE became an element:\n%s", out)
	}
	for _, bad := range []policy.FieldMatch{{Field: policy.FieldDSCP, Value: 64}, {Field: policy.FieldTCPOptions, Bytes: []byte{1, 2, 3}}, {Field: "ttl"}} {
		q := lateralPolicy("bad", mfgA)
		q.FromDevice = []policy.Rule{{Name: "fr/bad", Family: policy.IPv4, Protocol: policy.ProtoTCP, Verdict: policy.Accept, Fields: []policy.FieldMatch{bad}}}
		if _, err := Render(q, Device{}, RenderOptions{}); err == nil {
			t.Errorf("rendered %+v", bad)
		} else {
			t.Log(fmt.Sprint(err))
		}
	}
}
