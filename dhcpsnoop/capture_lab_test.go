package dhcpsnoop

import (
	"bytes"
	"fmt"
	"net"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
)

// poll calls fn until it succeeds or timeout passes; fn's last error.
func poll(timeout time.Duration, fn func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := fn()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// leasedAddr is the IPv4 address on h's interface.
func leasedAddr(h *netlab.Host) (string, error) {
	var got string
	err := netlab.Do(h.NS, func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		addrs, err := ifi.Addrs()
		if err != nil {
			return err
		}
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				got = ipn.IP.String()
				return nil
			}
		}
		return fmt.Errorf("no IPv4 address on %s yet", h.NS)
	})
	return got, err
}

// count is the number of kind events for mac so far.
func (h *harness) count(mac net.HardwareAddr, kind Kind) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	n := 0
	for _, ev := range h.evs {
		if ev.Kind == kind && bytes.Equal(ev.MAC, mac) {
			n++
		}
	}
	return n
}

// With CapturePorts the snooper captures on every port of the bridge,
// following ports as they join and leave it, and reads each frame once:
// the gateway's own server's ACK (sent by the bridge, leaving by a port)
// makes one bound event and a renewal one renewed event, not two. Events
// still name the bridge as their interface and the device's port.
func TestLabCapturePorts(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 3})
	netlab.RequireCommand(t, "dnsmasq", "udhcpc")
	lab.StartDNSMasq(t, netlab.DNSMasqConfig{Range4: "192.0.2.100,192.0.2.199,255.255.255.0,2m"})
	dev, late, leaving := lab.Devices[0], lab.Devices[2], lab.Devices[1]
	ip := func(args ...string) {
		t.Helper()
		if _, err := lab.Run(t.Context(), lab.GW.NS, "ip", args...); err != nil {
			t.Fatal(err)
		}
	}
	ip("link", "set", late.Port, "nomaster") // joins the bridge later
	h := startSnooperWith(t, lab, func(c *Config) {
		c.Capture = CapturePorts
		c.PortScanInterval = 100 * time.Millisecond
	})
	ports := func(want uint64) {
		t.Helper()
		if err := poll(5*time.Second, func() error {
			if n := h.s.Stats().Ports; n != want {
				return fmt.Errorf("capturing on %d ports, want %d", n, want)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	ports(2)

	cmd, _ := lab.Udhcpc(t, dev, "-x", "0xa1:"+netlab.HexString(urlA))
	ev := h.wait(t, dev.MAC, KindBound, nil, labWait)
	if ev.Interface != netlab.LANBridge || ev.Port != dev.Port || ev.MUDURL != urlA {
		t.Errorf("bound on %q port %q with URL %q, want %s port %s with %s", ev.Interface, ev.Port, ev.MUDURL, netlab.LANBridge, dev.Port, urlA)
	}
	waitAddr(t, lab, dev, ev.IPv4.String())
	time.Sleep(500 * time.Millisecond)
	if n := h.count(dev.MAC, KindRenewed); n != 0 {
		t.Fatalf("%d renewed events after one ACK: the ACK was read more than once", n)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	h.wait(t, dev.MAC, KindRenewed, nil, labWait)
	time.Sleep(500 * time.Millisecond)
	if n := h.count(dev.MAC, KindRenewed); n != 1 {
		t.Fatalf("%d renewed events after one renewal, want 1", n)
	}

	// A port that joins the bridge is captured on; one that leaves is not.
	ip("link", "set", late.Port, "master", netlab.LANBridge)
	ports(3)
	lab.Udhcpc(t, late, "-x", "0xa1:"+netlab.HexString(urlB))
	if ev := h.wait(t, late.MAC, KindBound, nil, labWait); ev.Port != late.Port || ev.MUDURL != urlB {
		t.Errorf("the late port's device: bound on port %q with URL %q, want %s and %s", ev.Port, ev.MUDURL, late.Port, urlB)
	}
	ip("link", "set", leaving.Port, "nomaster")
	ports(2)
	if s := h.s.Stats(); s.QueueDrops != 0 {
		t.Errorf("stats: %+v", s)
	}
}

// A snooper that starts after devices got their leases learns them from
// the server's lease file: bound events with the address, host name and
// the device's port, and the reason saying where they came from (no MUD
// URL: the file does not hold one). The device's next request with its
// URL announces it, and the server's ACK renews the lease read from the
// file.
func TestLabLeaseFile(t *testing.T) {
	lab := netlab.New(t, netlab.Config{Devices: 1})
	netlab.RequireCommand(t, "dnsmasq", "udhcpc")
	dm := lab.StartDNSMasq(t, netlab.DNSMasqConfig{Range4: "192.0.2.100,192.0.2.199,255.255.255.0,2m"})
	dev := lab.Devices[0]
	cmd, _ := lab.Udhcpc(t, dev, "-x", "0xa1:"+netlab.HexString(urlA), "-x", "hostname:plug-7")
	var addr string
	if err := poll(labWait, func() error {
		var err error
		addr, err = leasedAddr(dev)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	h := startSnooperWith(t, lab, func(c *Config) { c.LeaseFile = dm.Dir + "/leases" })
	ev := h.wait(t, dev.MAC, KindBound, nil, labWait)
	if ev.IPv4.String() != addr || ev.Hostname != "plug-7" || ev.MUDURL != "" || ev.Port != dev.Port || ev.Expires.IsZero() {
		t.Errorf("bound from the lease file = %s (expires %s), want %s, plug-7, port %s, no URL", ev, ev.Expires, addr, dev.Port)
	}
	if s := h.s.Stats(); s.LeaseFile != 1 || s.LeaseFileBad != 0 {
		t.Errorf("lease file counters: %+v", s)
	}
	if err := cmd.Process.Signal(syscall.SIGUSR1); err != nil {
		t.Fatal(err)
	}
	if ev := h.wait(t, dev.MAC, KindAnnounced, nil, labWait); ev.MUDURL != urlA {
		t.Errorf("announced %q, want %s", ev.MUDURL, urlA)
	}
	if ev := h.wait(t, dev.MAC, KindRenewed, nil, labWait); ev.MUDURL != urlA || ev.IPv4.String() != addr {
		t.Errorf("renewed = %s", ev)
	}
}
