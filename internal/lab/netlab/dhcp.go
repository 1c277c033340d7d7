package netlab

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// DNSMasqConfig configures a dnsmasq DHCP server on the lab's LAN bridge.
type DNSMasqConfig struct {
	// Range4 and Range6 are dnsmasq --dhcp-range values; empty disables the
	// family. dnsmasq refuses leases shorter than 2 minutes.
	Range4, Range6 string
	// Hosts are initial --dhcp-hostsfile lines ("MAC,IP"); SetHosts
	// replaces them while dnsmasq runs.
	Hosts []string
	// Extra arguments, e.g. "--dhcp-rapid-commit".
	Extra []string
	// Quiet leaves out --log-dhcp (for floods: its log is kept in memory).
	Quiet bool
}

// DNSMasq is a running dnsmasq in the gateway namespace.
type DNSMasq struct {
	Cmd       *exec.Cmd
	Out       *SyncBuffer // dnsmasq's log (--log-dhcp to stderr)
	Dir       string      // lease, pid and hosts files
	HostsFile string
}

// StartDNSMasq runs dnsmasq as a DHCP-only server (no DNS: --port=0) on the
// gateway's LAN bridge, with its own configuration (never /etc/dnsmasq.conf)
// and its state in a test directory. The lab stops it on Close.
func (l *Lab) StartDNSMasq(t testing.TB, cfg DNSMasqConfig) *DNSMasq {
	t.Helper()
	RequireCommand(t, "dnsmasq")
	d := &DNSMasq{Dir: t.TempDir()}
	d.HostsFile = filepath.Join(d.Dir, "hosts")
	if err := os.WriteFile(d.HostsFile, []byte(strings.Join(cfg.Hosts, "\n")+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	args := []string{
		"--keep-in-foreground", "--conf-file=/dev/null", "--port=0", "--no-resolv", "--no-hosts",
		"--interface=" + LANBridge, "--bind-interfaces",
		"--dhcp-leasefile=" + filepath.Join(d.Dir, "leases"),
		"--pid-file=" + filepath.Join(d.Dir, "pid"),
		"--dhcp-hostsfile=" + d.HostsFile,
		"--dhcp-authoritative", "--log-facility=-",
		// Without --no-ping dnsmasq pings each address before offering it,
		// which delays every lease by seconds.
		"--no-ping",
		"--user=root", "--group=root",
	}
	if !cfg.Quiet {
		args = append(args, "--log-dhcp")
	}
	if cfg.Range4 != "" {
		args = append(args, "--dhcp-range="+cfg.Range4)
	}
	if cfg.Range6 != "" {
		args = append(args, "--dhcp-range="+cfg.Range6)
	}
	args = append(args, cfg.Extra...)
	cmd, out, err := l.Start(l.GW.NS, "dnsmasq", args...)
	if err != nil {
		t.Fatal(err)
	}
	d.Cmd, d.Out = cmd, out
	// dnsmasq logs its DHCP ranges once its sockets are open.
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(out.String(), "DHCP") {
		if time.Now().After(deadline) {
			t.Fatalf("dnsmasq did not start: %s", out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	return d
}

// SetHosts replaces the host reservations and makes dnsmasq re-read them
// (SIGHUP re-reads --dhcp-hostsfile).
func (d *DNSMasq) SetHosts(lines ...string) error {
	if err := os.WriteFile(d.HostsFile, []byte(strings.Join(lines, "\n")+"\n"), 0o644); err != nil {
		return err
	}
	return d.Cmd.Process.Signal(syscall.SIGHUP)
}

// clientScript configures only the leased address on the client's
// interface; it never touches resolv.conf or routes. It serves udhcpc ($1 is
// the event) and dhclient ($reason).
const clientScript = `#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
case "${reason:-$1}" in
bound|BOUND|REBOOT)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "${ip:-$new_ip_address}/24" dev "$interface" ;;
renew|RENEW|REBIND)
	ip -4 addr replace "${ip:-$new_ip_address}/24" dev "$interface" ;;
deconfig|RELEASE|EXPIRE|STOP|FAIL)
	ip -4 addr flush dev "$interface" ;;
BOUND6|RENEW6|REBIND6|REBOOT6)
	[ -n "$new_ip6_address" ] && ip -6 addr replace "$new_ip6_address/128" dev "$interface" nodad ;;
RELEASE6|EXPIRE6|STOP6)
	[ -n "$old_ip6_address" ] && ip -6 addr del "$old_ip6_address/128" dev "$interface" ;;
esac
exit 0
`

// ClientScript writes the lab's DHCP client script (for udhcpc -s and
// dhclient -sf) into a test directory and returns its path.
func ClientScript(t testing.TB) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "dhcp-client.sh")
	if err := os.WriteFile(p, []byte(clientScript), 0o755); err != nil {
		t.Fatal(err)
	}
	return p
}

// Udhcpc starts busybox udhcpc in the foreground on h's interface with the
// lab's client script; extra are more udhcpc arguments (e.g. "-x",
// "0xa1:<hex>" for option 161). SIGUSR1 renews, SIGUSR2 releases.
func (l *Lab) Udhcpc(t testing.TB, h *Host, extra ...string) (*exec.Cmd, *SyncBuffer) {
	t.Helper()
	RequireCommand(t, "udhcpc")
	args := append([]string{"-f", "-i", h.Iface, "-s", ClientScript(t), "-t", "10", "-T", "1", "-A", "1"}, extra...)
	cmd, out, err := l.Start(h.NS, "udhcpc", args...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// Dhclient is an ISC dhclient instance's files, so that `dhclient -r` can
// release what the running one obtained.
type Dhclient struct {
	Host             *Host
	V6               bool
	Conf, Lease, PID string
	Script           string
}

// NewDhclient writes a dhclient configuration (conf is its text, e.g.
// `send mud-url "https://…";`) and returns the instance's file set.
func NewDhclient(t testing.TB, h *Host, v6 bool, conf string) *Dhclient {
	t.Helper()
	RequireCommand(t, "dhclient")
	dir := t.TempDir()
	d := &Dhclient{
		Host: h, V6: v6,
		Conf: filepath.Join(dir, "dhclient.conf"), Lease: filepath.Join(dir, "leases"),
		PID: filepath.Join(dir, "pid"), Script: ClientScript(t),
	}
	if err := os.WriteFile(d.Conf, []byte(conf), 0o644); err != nil {
		t.Fatal(err)
	}
	return d
}

func (d *Dhclient) args(extra ...string) []string {
	a := []string{"-cf", d.Conf, "-lf", d.Lease, "-pf", d.PID, "-sf", d.Script}
	if d.V6 {
		a = append([]string{"-6"}, a...)
	}
	return append(append(a, extra...), d.Host.Iface)
}

// Start runs dhclient in the foreground (-d) inside the host's namespace.
func (l *Lab) StartDhclient(t testing.TB, d *Dhclient) (*exec.Cmd, *SyncBuffer) {
	t.Helper()
	cmd, out, err := l.Start(d.Host.NS, "dhclient", d.args("-d", "-v")...)
	if err != nil {
		t.Fatal(err)
	}
	return cmd, out
}

// Release runs `dhclient -r`, which stops the running instance and sends a
// release for its lease.
func (l *Lab) ReleaseDhclient(t testing.TB, d *Dhclient) string {
	t.Helper()
	out, err := l.Run(t.Context(), d.Host.NS, "dhclient", d.args("-r", "-v")...)
	if err != nil {
		t.Fatalf("dhclient -r: %v\n%s", err, out)
	}
	return out
}

// HexString is s in the hex form udhcpc's -x option takes.
func HexString(s string) string { return fmt.Sprintf("%x", s) }
