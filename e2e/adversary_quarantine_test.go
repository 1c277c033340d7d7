package e2e

import (
	"fmt"
	"github.com/openmud/mud/api"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// A quarantined device is caged: it renews its lease and asks the
// gateway's DNS, and nothing else — no DNS to an internet host (a tunnel),
// no NTP or other service of the gateway, nothing lateral.
func TestAdversaryQuarantineCage(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 2, gwlab.Config{})
	const gwService = 8022
	gw := e.lab.GW
	for _, port := range []int{123, gwService} {
		s, err := netlab.ServeEcho(gw.NS, fmt.Sprintf("0.0.0.0:%d", port))
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(s.Close)
	}
	e.echo(e.other, 53)
	b, peer := e.lab.Devices[0], e.lab.Devices[1]
	e.echo(peer, otherPort)
	e.echo(b, otherPort)
	dev, bIP := e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	_, peerIP := e.join(1, gwlab.Udhcpc, "bulb-2", bulbURL)
	e.waitState(b, api.StateEnforced)
	e.waitState(peer, api.StateEnforced)
	other := e.resolve(b, otherHost)
	gw4 := netlab.GatewayLAN4

	// Enforced, the App. A services of the gateway and its manufacturer's
	// devices are there.
	netlab.MustPass(t, "enforced: NTP to the gateway", netlab.UDPEcho(b.NS, netlab.HostPort(gw4, 123), passWait))
	e.pass("enforced: lateral to its manufacturer's device", b.NS, peerIP, otherPort)

	e.mudctl("quarantine", b.MAC.String())
	e.waitState(b, api.StateQuarantined)

	obtained := strings.Count(dev.Log.String(), "obtained")
	if err := dev.Renew(); err != nil {
		t.Fatal(err)
	}
	if err := gwlab.Poll(e.ctx, passWait, func() error {
		if strings.Count(dev.Log.String(), "obtained") == obtained {
			return fmt.Errorf("no new lease in the client's log:\n%s", dev.Log)
		}
		return nil
	}); err != nil {
		t.Errorf("quarantined: DHCP renewal: %v", err)
	}
	if _, err := gwlab.Resolve(e.ctx, b.NS, cloudHost); err != nil {
		t.Errorf("quarantined: DNS via the gateway: %v", err)
	}
	e.refuse("quarantined: TCP 53 to an internet host", b.NS, other, 53)
	netlab.MustDrop(t, "quarantined: UDP 53 to an internet host", netlab.UDPEcho(b.NS, netlab.HostPort(other, 53), refuseWait))
	netlab.MustDrop(t, "quarantined: NTP to the gateway", netlab.UDPEcho(b.NS, netlab.HostPort(gw4, 123), refuseWait))
	e.refuse("quarantined: a TCP service of the gateway", b.NS, gw4, gwService)
	e.refuse("quarantined: lateral to its manufacturer's device", b.NS, peerIP, otherPort)
	e.refuse("quarantined: reached laterally by its manufacturer's device", peer.NS, bIP, otherPort)
}
