package lanwatch

import (
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// The decisions, from port facts given by the test: Wi-Fi and hardware
// switches cannot be made in this machine's kernel (no cfg80211, no DSA or
// switchdev driver), so what nl80211, IFLA_PHYS_SWITCH_ID and the
// isolation sources would say is injected here; the lab tests cover the
// facts the kernel here can produce (veth ports, their flags, learnt
// addresses, tc filters).

// veth is a bridge port as the kernel reports a fresh veth port: learning
// and flooding on, nothing else.
func veth(name string) PortFacts {
	return PortFacts{Name: name, LinkKind: "veth", Ether: true, Learning: true, UnicastFlood: true, MACs: 1}
}

func ap(name string, isolate Tristate, hairpin bool) PortFacts {
	p := PortFacts{Name: name, Ether: true, Learning: true, UnicastFlood: true, Hairpin: hairpin, MACs: 5,
		WiFi: WiFiFacts{IfType: unix.NL80211_IFTYPE_AP, Isolate: isolate}}
	if isolate != Unknown {
		p.WiFi.IsolateSource = "/var/run/hostapd-phy0.conf"
	}
	return p
}

func dsa(name, switchID string, isolated bool) PortFacts {
	return PortFacts{Name: name, LinkKind: "dsa", Ether: true, SwitchID: switchID, Learning: true, UnicastFlood: true, Isolated: isolated, MACs: 1}
}

func bridge(ports ...PortFacts) LANFacts {
	return LANFacts{Name: "br-lan", Exists: true, Bridge: true, Ports: ports}
}

// port returns the decided port by name.
func port(t *testing.T, l LAN, name string) Port {
	t.Helper()
	for _, p := range l.Ports {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("no port %s in %+v", name, l)
	return Port{}
}

func severities(fs []Finding) []Severity {
	var out []Severity
	for _, f := range fs {
		out = append(out, f.Severity)
	}
	return out
}

func TestAccessPointWithoutClientIsolationIsNotEnforced(t *testing.T) {
	l := Decide(bridge(veth("lan1"), ap("wlan0", Off, false)))
	p := port(t, l, "wlan0")
	if p.Kind != KindWiFiAP {
		t.Errorf("kind = %s, want %s", p.Kind, KindWiFiAP)
	}
	if len(p.Findings) != 1 || p.Findings[0].Severity != Error {
		t.Fatalf("findings = %+v, want one error", p.Findings)
	}
	want := "lateral traffic between clients of wlan0 is not enforced: the access point forwards it itself " +
		"(enable client isolation: hostapd ap_isolate=1, OpenWrt option isolate '1' in the wifi-iface; " +
		"and hairpin on the bridge port: bridge link set dev wlan0 hairpin on)"
	if got := (Report{LANs: []LAN{l}}).Summary(); !slices.Equal(got, []string{want}) {
		t.Errorf("summary:\n got %q\nwant %q", got, want)
	}
	// Several stations behind an access point are its nature, not a
	// second finding.
	if n := len(port(t, l, "lan1").Findings); n != 0 {
		t.Errorf("lan1 has %d findings, want none", n)
	}
}

func TestAccessPointIsolationUnknownIsAWarning(t *testing.T) {
	p := port(t, Decide(bridge(ap("wlan0", Unknown, true))), "wlan0")
	if !slices.Equal(severities(p.Findings), []Severity{Warning}) {
		t.Fatalf("findings = %+v, want one warning", p.Findings)
	}
	f := p.Findings[0]
	if !strings.Contains(f.Text, "could not be read") {
		t.Errorf("text %q does not say isolation could not be read", f.Text)
	}
	// Hairpin is already on: only isolation is left to fix.
	if strings.Contains(f.Fix, "hairpin") || !strings.Contains(f.Fix, "ap_isolate=1") {
		t.Errorf("fix = %q, want client isolation only", f.Fix)
	}
}

func TestIsolatedAccessPointWithHairpinIsEnforced(t *testing.T) {
	p := port(t, Decide(bridge(ap("wlan0", On, true))), "wlan0")
	if !slices.Equal(severities(p.Findings), []Severity{Info}) {
		t.Fatalf("findings = %+v, want one info", p.Findings)
	}
	if !strings.Contains(p.Findings[0].Text, "goes through the bridge") || !strings.Contains(p.Findings[0].Text, "hostapd-phy0.conf") {
		t.Errorf("text = %q", p.Findings[0].Text)
	}
	if !slices.Equal(p.Flags, []string{"hairpin"}) {
		t.Errorf("flags = %v, want [hairpin]", p.Flags)
	}
}

func TestIsolatedAccessPointWithoutHairpinDropsLateralTraffic(t *testing.T) {
	p := port(t, Decide(bridge(ap("wlan0", On, false))), "wlan0")
	if !slices.Equal(severities(p.Findings), []Severity{Info}) {
		t.Fatalf("findings = %+v, want one info", p.Findings)
	}
	f := p.Findings[0]
	if !strings.Contains(f.Text, "is dropped") || !strings.Contains(f.Fix, "bridge link set dev wlan0 hairpin on") {
		t.Errorf("finding = %+v", f)
	}
}

func TestOtherWiFiModes(t *testing.T) {
	for _, tc := range []struct {
		iftype uint32
		kind   Kind
		sev    []Severity
	}{
		{unix.NL80211_IFTYPE_STATION, KindWiFiSTA, []Severity{Warning}},
		{unix.NL80211_IFTYPE_MESH_POINT, KindWiFiMesh, []Severity{Warning}},
		{unix.NL80211_IFTYPE_ADHOC, KindWiFiAdhoc, []Severity{Warning}},
		{unix.NL80211_IFTYPE_WDS, KindWiFiWDS, []Severity{Warning}},
		{unix.NL80211_IFTYPE_AP_VLAN, KindWiFiAPVLN, []Severity{Info}},
		{unix.NL80211_IFTYPE_P2P_GO, KindWiFiAP, []Severity{Warning}}, // a group owner is an access point; isolation unknown
		{unix.NL80211_IFTYPE_MONITOR, KindWiFi, nil},
	} {
		pf := veth("wlan1")
		pf.LinkKind, pf.WiFi.IfType = "", tc.iftype
		p := port(t, Decide(bridge(pf)), "wlan1")
		if p.Kind != tc.kind || !slices.Equal(severities(p.Findings), tc.sev) {
			t.Errorf("iftype %d: kind %s findings %v, want %s %v", tc.iftype, p.Kind, severities(p.Findings), tc.kind, tc.sev)
		}
	}
}

func TestPortsOfOneSwitchForwardInHardware(t *testing.T) {
	l := Decide(bridge(dsa("lan1", "00000000", false), dsa("lan2", "00000000", false), dsa("lan3", "00000000", true), veth("veth0")))
	if !slices.Equal(severities(l.Findings), []Severity{Error}) {
		t.Fatalf("LAN findings = %+v, want one error", l.Findings)
	}
	f := l.Findings[0]
	if !strings.Contains(f.Text, "between lan1, lan2 and lan3 is not enforced") || !strings.Contains(f.Text, "switch id 00000000") {
		t.Errorf("text = %q", f.Text)
	}
	// lan3 is isolated already; lan1 and lan2 are what is left to isolate.
	if !strings.HasPrefix(f.Fix, "isolate lan1 and lan2 ") {
		t.Errorf("fix = %q", f.Fix)
	}
	if k := port(t, l, "lan1").Kind; k != KindDSA {
		t.Errorf("lan1 kind = %s", k)
	}
}

func TestIsolatedSwitchPortsDropLateralTraffic(t *testing.T) {
	l := Decide(bridge(dsa("lan1", "00000000", true), dsa("lan2", "00000000", true)))
	if !slices.Equal(severities(l.Findings), []Severity{Info}) || !strings.Contains(l.Findings[0].Text, "is dropped by their switch") {
		t.Fatalf("LAN findings = %+v, want one info saying the switch drops it", l.Findings)
	}
}

func TestPortsOfDifferentSwitchesMeetInTheBridge(t *testing.T) {
	a := dsa("lan1", "00000000", false)
	b := PortFacts{Name: "sw1p1", Ether: true, SwitchID: "0cc47a000001", Learning: true, UnicastFlood: true, MACs: 1}
	l := Decide(bridge(a, b))
	if len(l.Findings) != 0 {
		t.Errorf("LAN findings = %+v, want none: one port per switch forwards nothing in hardware", l.Findings)
	}
	if k := port(t, l, "sw1p1").Kind; k != KindSwitchdev {
		t.Errorf("sw1p1 kind = %s, want %s", k, KindSwitchdev)
	}
}

func TestDSAPortsWithoutSwitchIDAreAssumedOneSwitch(t *testing.T) {
	l := Decide(bridge(dsa("lan1", "", false), dsa("lan2", "", false)))
	if !slices.Equal(severities(l.Findings), []Severity{Error}) || !strings.Contains(l.Findings[0].Text, "one switch is assumed") {
		t.Fatalf("LAN findings = %+v", l.Findings)
	}
}

func TestBypassesAndSegments(t *testing.T) {
	x := veth("lan1")
	x.XDP = true
	tc := veth("lan2")
	tc.TCIngress = 2
	seg := veth("lan3")
	seg.MACs = 3
	quiet := veth("lan4")
	quiet.Learning, quiet.MACs = false, 0
	l := Decide(bridge(x, tc, seg, quiet))
	for name, want := range map[string]string{
		"lan1": "an XDP program is attached to lan1",
		"lan2": "lan2 has tc ingress filters",
		"lan3": "more than one device was seen behind it",
		"lan4": "lan4 does not learn addresses",
	} {
		p := port(t, l, name)
		if len(p.Findings) != 1 || !strings.Contains(p.Findings[0].Text, want) {
			t.Errorf("%s: findings %+v, want one containing %q", name, p.Findings, want)
		}
	}
	if got := port(t, l, "lan4").Flags; !slices.Equal(got, []string{"learning off"}) {
		t.Errorf("lan4 flags = %v", got)
	}
}

func TestIsolatedPorts(t *testing.T) {
	a, b, c := veth("lan1"), veth("lan2"), veth("lan3")
	a.Isolated, b.Isolated, b.Hairpin = true, true, true
	l := Decide(bridge(c, b, a))
	if got := []string{l.Ports[0].Name, l.Ports[1].Name, l.Ports[2].Name}; !slices.Equal(got, []string{"lan1", "lan2", "lan3"}) {
		t.Errorf("ports in order %v, want sorted by name", got)
	}
	p := port(t, l, "lan1")
	if len(p.Findings) != 1 || !strings.Contains(p.Findings[0].Text, "drops traffic between it and lan2") {
		t.Errorf("lan1 findings = %+v", p.Findings)
	}
	if got := port(t, l, "lan2").Flags; !slices.Equal(got, []string{"isolated", "hairpin"}) {
		t.Errorf("lan2 flags = %v", got)
	}
	alone := Decide(bridge(a, c))
	if p := port(t, alone, "lan1"); len(p.Findings) != 1 || !strings.Contains(p.Findings[0].Text, "no other port is") {
		t.Errorf("a lone isolated port: %+v", p.Findings)
	}
}

func TestLANInterfaceThatIsNoBridgeOrMissing(t *testing.T) {
	plain := Decide(LANFacts{Name: "eth1", Exists: true})
	if !slices.Equal(severities(plain.Findings), []Severity{Warning}) || !strings.Contains(plain.Findings[0].Text, "eth1 is not a bridge") {
		t.Errorf("plain interface: %+v", plain.Findings)
	}
	missing := Decide(LANFacts{Name: "br-iot"})
	if !slices.Equal(severities(missing.Findings), []Severity{Warning}) || !strings.Contains(missing.Findings[0].Text, "does not exist") {
		t.Errorf("missing interface: %+v", missing.Findings)
	}
	r := Report{LANs: []LAN{Decide(bridge(ap("wlan0", Off, false))), plain, missing}}
	if r.Worst() != Error {
		t.Errorf("worst = %s", r.Worst())
	}
	if s := r.Summary(); len(s) != 3 || !strings.Contains(s[0], "wlan0") {
		t.Errorf("summary = %q, want the error first, then the two warnings", s)
	}
	text := r.String()
	for _, want := range []string{"br-lan: bridge, 1 port\n", "  wlan0 (wifi-ap)\n    error: lateral traffic", "eth1: not a bridge", "br-iot: missing"} {
		if !strings.Contains(text, want) {
			t.Errorf("report text lacks %q:\n%s", want, text)
		}
	}
}

func TestReportEqual(t *testing.T) {
	a := Report{LANs: []LAN{Decide(bridge(veth("lan1"), ap("wlan0", Off, false)))}}
	b := Report{LANs: []LAN{Decide(bridge(veth("lan1"), ap("wlan0", Off, false)))}}
	if !a.Equal(b) {
		t.Error("identical reports differ")
	}
	c := Report{LANs: []LAN{Decide(bridge(veth("lan1"), ap("wlan0", On, true)))}}
	if a.Equal(c) {
		t.Error("reports with different findings are equal")
	}
}
