package e2e

import (
	"github.com/openmud/mud/api"
	"testing"

	"github.com/openmud/mud/internal/lab/gwlab"
)

// RFC 8519 §4.1 tcp flags are enforced, exactly: an ACE for a bare SYN
// admits the connection it opens (conntrack carries the rest), an ACE for
// a bare ACK cannot open one, and a port no ACE names stays refused.
func TestAdversaryTCPFlags(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1})
	e.echo(e.other, 8081)
	u := e.publish(gwlab.File{URL: "https://" + mudHost + "/flags.json", Mfg: "Example Things", Model: "flags",
		From: []gwlab.Rule{
			{Remote: otherHost, RemotePort: otherPort, TCPFlags: "syn"},
			{Remote: otherHost, RemotePort: 8081, TCPFlags: "ack"},
		},
		To: []gwlab.Rule{
			{Remote: otherHost, RemotePort: otherPort},
			{Remote: otherHost, RemotePort: 8081},
		},
	})
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "flags", u)
	d := e.waitState(h, api.StateEnforced)
	if d.Enforcement != api.EnforcementEnforced {
		t.Fatalf("enforcement = %q (%s), want enforced", d.Enforcement, d.UnenforcedReason)
	}
	other := e.resolve(h, otherHost)
	e.pass("a connection whose SYN the flags ACE admits", h.NS, other, otherPort)
	e.refuse("a connection whose SYN an ACK-only ACE does not admit", h.NS, other, 8081)
	e.refuse("a port no ACE names", h.NS, other, permitted)
}
