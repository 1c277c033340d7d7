package enforcer

import (
	"context"
	"testing"

	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/policy"
)

// deviceCounts reads the device counters and fails the test on an error.
func deviceCounts(t *testing.T, e *Enforcer) map[string]DeviceCount {
	t.Helper()
	m, err := e.DeviceCounters(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// TestDeviceCounters: with Config.DeviceCounters, what a device sends and
// is sent, routed and bridged, is counted on the device, and what the
// default deny drops is counted as dropped, on the sender for its
// from-device policy and on the receiver for its to-device policy. A
// device without MUD is not counted; an apply that changes nothing keeps
// the counts.
func TestDeviceCounters(t *testing.T) {
	netlab.RequireRoot(t)
	env := newLabEnv(t, func(c *Config) { c.DeviceCounters = 1024 })
	d1, d2, s1, s2 := env.dev1, env.dev2, env.srv1, env.srv2
	cam, hub := d1.MAC.String(), d2.MAC.String()
	before := deviceCounts(t, env.e)

	netlab.MustPass(t, "dev1 → cloud tcp 8080", netlab.TCPEcho(d1.NS, ap(s1.IPv4, 8080), pass))
	netlab.MustPass(t, "dev1 ping cloud over IPv6", netlab.Ping(d1.NS, s1.IPv6, pass))
	after := deviceCounts(t, env.e)
	c, b := after[cam], before[cam]
	// A TCP connection and an echo: at least three packets each way
	// (handshake, data, FIN) and the echo and its reply.
	if c.Sent-b.Sent < 4 || c.Received-b.Received < 4 || c.SentBytes-b.SentBytes < 4*40 {
		t.Errorf("permitted traffic: counted %+v, was %+v", c, b)
	}
	if c.SentDropped != b.SentDropped || c.ReceivedDropped != b.ReceivedDropped {
		t.Errorf("permitted traffic counted as dropped: %+v, was %+v", c, b)
	}

	netlab.MustDrop(t, "dev1 → other server tcp 8080", netlab.TCPEcho(d1.NS, ap(s2.IPv4, 8080), shut))
	netlab.MustDrop(t, "cloud → dev1 tcp 9999 over IPv6", netlab.TCPEcho(s1.NS, ap(d1.IPv6, 9999), shut))
	netlab.MustDrop(t, "cam → hub 9092 (the hub's to-device policy refuses it)", netlab.TCPEcho(d1.NS, ap(d2.IPv4, 9092), shut))
	netlab.MustPass(t, "dev3 (no MUD) → other server", netlab.TCPEcho(env.dev3.NS, ap(s2.IPv4, 8082), pass))
	dropped := deviceCounts(t, env.e)
	t.Logf("counted: camera %+v, hub %+v", dropped[cam], dropped[hub])
	c, b = dropped[cam], after[cam]
	if c.SentDropped-b.SentDropped < 1 || c.ReceivedDropped-b.ReceivedDropped < 1 || c.SentDroppedBytes-b.SentDroppedBytes < 40 {
		t.Errorf("the camera's refused traffic: counted %+v, was %+v", c, b)
	}
	if c.Sent-b.Sent < c.SentDropped-b.SentDropped || c.Received-b.Received < c.ReceivedDropped-b.ReceivedDropped {
		t.Errorf("more dropped than judged: %+v, was %+v", c, b)
	}
	// (The hub's own neighbour and router solicitations to the gateway,
	// which its policy does not allow, may count as it sent and dropped.)
	if h, hb := dropped[hub], after[hub]; h.ReceivedDropped-hb.ReceivedDropped < 1 {
		t.Errorf("the hub: counted %+v, was %+v; want its to-device drop of the camera's 9092", h, hb)
	}
	if _, ok := dropped[env.dev3.MAC.String()]; ok {
		t.Errorf("the device without MUD is counted: %+v", dropped[env.dev3.MAC.String()])
	}

	// A change (a device leaves) leaves the sets alone: the others keep
	// their counts, and the device that left is no longer reported.
	err := env.e.Sync(context.Background(), Desired{
		Policies: []policy.Policy{policyA(), policyB()},
		Devices:  []Device{hostDevice(d1, "cam1")},
		Peers: map[string][]Element{
			"dns:cloud.example": hostElems(s1),
			"model:" + urlA:     hostElems(d1),
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	again := deviceCounts(t, env.e)
	if again[cam].Sent < dropped[cam].Sent {
		t.Errorf("a change reset the counts: %+v, was %+v", again[cam], dropped[cam])
	}
	if _, ok := again[hub]; ok {
		t.Errorf("the device that left is still reported: %+v", again[hub])
	}
}
