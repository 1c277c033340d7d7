package e2e

import (
	"encoding/json"
	"net/netip"
	"testing"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Lateral traffic between devices of one manufacturer (RFC 8520 §4.1,
// §8: the manufacturer is the MUD URL's authority) across the LAN bridge
// behaves as routed traffic does: a flow the policies permit gets its
// replies, whatever the file says about the other direction, and
// everything else stays refused. Each shape runs with br_netfilter passing
// bridged IP to the inet hooks (the kernel's default) and with it off.

const lateralPort = 8080

func sameMfg() map[string]any { return map[string]any{"same-manufacturer": []any{nil}} }

// lateralFile: TCP to and from devices of the same manufacturer, to port
// (the device's own port in to-device rules: the port others connect to),
// any port when 0.
func lateralFile(u, model string, port int) gwlab.File {
	return gwlab.File{URL: u, Mfg: "Example Things", Model: model,
		From: []gwlab.Rule{{MUD: sameMfg(), RemotePort: port}},
		To:   []gwlab.Rule{{MUD: sameMfg(), LocalPort: port}},
	}
}

// Only the initiator's file lets it open connections to port 8080 of the
// responder, whose file accepts connections opened towards it.
func initiatorFile(u string) gwlab.File {
	return gwlab.File{URL: u, Mfg: "Example Things", Model: "initiator",
		From: []gwlab.Rule{{MUD: sameMfg(), RemotePort: lateralPort, Initiated: "from-device"}},
		To:   []gwlab.Rule{{MUD: sameMfg(), RemotePort: lateralPort, Initiated: "from-device"}},
	}
}

func responderFile(u string) gwlab.File {
	return gwlab.File{URL: u, Mfg: "Example Things", Model: "responder",
		From: []gwlab.Rule{{MUD: sameMfg(), LocalPort: lateralPort, Initiated: "to-device"}},
		To:   []gwlab.Rule{{MUD: sameMfg(), LocalPort: lateralPort, Initiated: "to-device"}},
	}
}

func TestAdversaryLateralInetConntrack(t *testing.T) {
	t.Parallel()
	lateralShapes(t, []string{"net.bridge.bridge-nf-call-iptables=1", "net.bridge.bridge-nf-call-ip6tables=1"}, "ipv4 inet-conntrack, ipv6 inet-conntrack")
}

func TestAdversaryLateralReflexive(t *testing.T) {
	t.Parallel()
	lateralShapes(t, []string{"net.bridge.bridge-nf-call-iptables=0", "net.bridge.bridge-nf-call-ip6tables=0"}, "ipv4 reflexive, ipv6 reflexive")
}

func lateralShapes(t *testing.T, sysctls []string, modes string) {
	e := newEnv(t, envConfig{devices: 9, sysctls: sysctls, gw: gwlab.Config{MUDHosts: []string{mudHost, mudHost2}}})
	var (
		samePort  = "https://" + mudHost + "/things-8080.json"
		otherPath = "https://" + mudHost + "/things-8080-b.json" // another URL, the same authority
		anyPort   = "https://" + mudHost + "/things-any.json"
		initiator = "https://" + mudHost + "/initiator.json"
		responder = "https://" + mudHost + "/responder.json"
		otherMfg  = "https://" + mudHost2 + "/things-8080.json"
	)
	e.publish(lateralFile(samePort, "things-8080", lateralPort))
	e.publish(lateralFile(otherPath, "things-8080-b", lateralPort))
	e.publish(lateralFile(anyPort, "things-any", 0))
	e.publish(initiatorFile(initiator))
	e.publish(responderFile(responder))
	e.publish(lateralFile(otherMfg, "things-8080", lateralPort))
	devs := []struct{ name, url string }{
		{"same-1", samePort}, {"same-2", samePort}, {"other-path", otherPath}, {"laptop", ""},
		{"other-mfg", otherMfg}, {"any-1", anyPort}, {"any-2", anyPort}, {"initiator", initiator}, {"responder", responder},
	}
	ip := map[string]netip.Addr{}
	ns := map[string]string{}
	for i, d := range devs {
		h := e.lab.Devices[i]
		e.echo(h, lateralPort, 9090)
		_, ip[d.name] = e.join(i, gwlab.Udhcpc, d.name, d.url)
		ns[d.name] = h.NS
	}
	for i, d := range devs {
		if d.url != "" {
			e.waitState(e.lab.Devices[i], api.StateEnforced)
		}
	}
	var st api.Status
	if err := json.Unmarshal([]byte(e.mudctl("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.Enforcer.BridgeReplies != modes {
		t.Errorf("mudctl status: bridge replies %q, want %q", st.Enforcer.BridgeReplies, modes)
	}
	type probe struct {
		ok       bool
		from, to string
		port     int
	}
	probes := []probe{
		// The same URL, a port: both may connect to each other's 8080.
		{true, "same-1", "same-2", lateralPort},
		{true, "same-2", "same-1", lateralPort},
		{false, "same-1", "same-2", 9090},
		// Another URL of the same authority is the same manufacturer.
		{true, "same-1", "other-path", lateralPort},
		{true, "other-path", "same-2", lateralPort},
		{false, "other-path", "same-1", 9090},
		// No port: any TCP port, both ways; towards a device whose file
		// names a port, only that port.
		{true, "any-1", "any-2", 9090},
		{true, "any-2", "any-1", lateralPort},
		{true, "any-1", "same-1", lateralPort},
		{false, "any-1", "same-1", 9090},
		// direction-initiated: only the initiator opens connections.
		{true, "initiator", "responder", lateralPort},
		{false, "responder", "initiator", lateralPort},
		{false, "initiator", "responder", 9090},
		// Mirrors: towards a device without MUD or of another manufacturer.
		{false, "same-1", "laptop", lateralPort},
		{false, "same-1", "other-mfg", lateralPort},
		{false, "any-1", "laptop", 9090},
	}
	for _, d := range []string{"same-2", "any-2", "responder"} {
		probes = append(probes, probe{false, "laptop", d, lateralPort}, probe{false, "other-mfg", d, lateralPort})
	}
	for _, p := range probes {
		what := p.from + " → " + p.to + ":" + itoa(p.port)
		if p.ok {
			e.pass(what, ns[p.from], ip[p.to], p.port)
		} else {
			e.refuse(what, ns[p.from], ip[p.to], p.port)
		}
	}
}

func itoa(n int) string { return netlab.PortString(n)[1:] }
