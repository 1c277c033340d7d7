package netlab

import (
	"net/netip"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// DNSForwarder is a dnsmasq serving DNS (not DHCP) to the LAN from the
// gateway namespace.
type DNSForwarder struct {
	Cmd *exec.Cmd
	Out *SyncBuffer // dnsmasq's log, queries included (--log-queries)
	Dir string      // pid file
}

// StartDNSForwarder runs dnsmasq in the gateway namespace as the LAN's DNS
// forwarder on 192.0.2.1:53 and [2001:db8:1::1]:53 (UDP and TCP), sending
// every query to the upstream servers (dnsmasq --server values: "addr" or
// "addr#port"). It reads no system configuration (no resolv.conf, hosts
// file or /etc/dnsmasq.conf), serves no DHCP, and keeps its pid file in a
// test directory. It returns once dnsmasq accepts TCP connections; the lab
// stops it on Close. extra arguments are appended (e.g. "--cache-size=0").
func (l *Lab) StartDNSForwarder(t testing.TB, upstreams []string, extra ...string) *DNSForwarder {
	t.Helper()
	RequireCommand(t, "dnsmasq")
	d := &DNSForwarder{Dir: t.TempDir()}
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--no-resolv", "--no-hosts",
		"--bind-interfaces",
		"--listen-address=" + GatewayLAN4.String(),
		"--listen-address=" + GatewayLAN6.String(),
		"--pid-file=" + filepath.Join(d.Dir, "pid"),
		"--log-queries", "--log-facility=-",
		"--user=root", "--group=root",
	}
	for _, u := range upstreams {
		args = append(args, "--server="+u)
	}
	args = append(args, extra...)
	cmd, out, err := l.Start(l.GW.NS, "dnsmasq", args...)
	if err != nil {
		t.Fatal(err)
	}
	d.Cmd, d.Out = cmd, out
	addr := netip.AddrPortFrom(GatewayLAN4, 53).String()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c, err := Dial(l.GW.NS, "tcp", addr, 200*time.Millisecond)
		if err == nil {
			c.Close()
			return d
		}
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq not answering on %s: %v; output: %s", addr, err, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}
