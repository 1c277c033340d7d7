package gwlab

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"time"

	"github.com/openmud/mud/internal/lab/netlab"
)

// clientScript is the devices' DHCP client script, for udhcpc ($1 is the
// event) and dhclient ($reason). It sets only the leased address and the
// default route inside the device's namespace; it never writes resolv.conf:
// each lab namespace has its own /etc/netns/<ns>/resolv.conf pointing at
// the gateway, so the machine's DNS configuration is never touched. (DHCP
// clients can only run a script, so this is the lab's one shell script; Go
// never runs a shell.)
const clientScript = `#!/bin/sh
PATH=/usr/sbin:/usr/bin:/sbin:/bin
router="${router:-$new_routers}"
case "${reason:-$1}" in
bound|BOUND|REBOOT)
	ip -4 addr flush dev "$interface"
	ip -4 addr add "${ip:-$new_ip_address}/24" dev "$interface"
	[ -n "$router" ] && ip -4 route replace default via "${router%% *}" dev "$interface" ;;
renew|RENEW|REBIND)
	ip -4 addr replace "${ip:-$new_ip_address}/24" dev "$interface"
	[ -n "$router" ] && ip -4 route replace default via "${router%% *}" dev "$interface" ;;
deconfig|RELEASE|EXPIRE|STOP|FAIL)
	ip -4 addr flush dev "$interface" ;;
esac
exit 0
`

// Client says which DHCP client a device runs.
type Client int

const (
	// Udhcpc is busybox udhcpc (option 161 as -x 0xa1:<hex>).
	Udhcpc Client = iota
	// Dhclient is ISC dhclient (option 161 declared in its configuration).
	Dhclient
)

// Device is a lab host that joined the LAN with a DHCP client.
type Device struct {
	Host   *netlab.Host
	Name   string // DHCP hostname
	MUDURL string // empty: announces none
	Client Client
	Log    *netlab.SyncBuffer // the client's output
	cmd    *exec.Cmd
	done   chan struct{}
	dir    string
}

// Join starts a DHCP client on h that announces name and, unless empty,
// mudURL (DHCPv4 option 161, RFC 8520 §10). It does not wait for the
// lease (see Device.WaitAddr). The client runs until Stop, Kill or Release,
// or until the gateway's Close. extra are more udhcpc arguments (dhclient
// takes none).
func (g *Gateway) Join(h *netlab.Host, client Client, name, mudURL string, extra ...string) (*Device, error) {
	d := &Device{Host: h, Name: name, MUDURL: mudURL, Client: client, dir: filepath.Join(g.Config.Dir, "client-"+h.NS)}
	if err := os.MkdirAll(d.dir, 0o755); err != nil {
		return nil, fmt.Errorf("creating %s: %w", d.dir, err)
	}
	script := filepath.Join(d.dir, "dhcp-client.sh")
	if err := os.WriteFile(script, []byte(clientScript), 0o755); err != nil {
		return nil, fmt.Errorf("writing the DHCP client script: %w", err)
	}
	var prog string
	var args []string
	switch client {
	case Udhcpc:
		prog = "udhcpc"
		args = []string{"-f", "-i", h.Iface, "-s", script, "-t", "10", "-T", "1", "-A", "1", "-x", "hostname:" + name}
		if mudURL != "" {
			args = append(args, "-x", "0xa1:"+netlab.HexString(mudURL))
		}
		args = append(args, extra...)
	case Dhclient:
		if len(extra) > 0 {
			return nil, errors.New("gwlab: extra arguments are for udhcpc")
		}
		prog = "dhclient"
		// Debian's dhclient 4.4 does not know the option's name: declare it.
		conf := fmt.Sprintf("send host-name %q;\n", name)
		if mudURL != "" {
			conf += fmt.Sprintf("option mud-url code 161 = text;\nsend mud-url %q;\n", mudURL)
		}
		if err := os.WriteFile(filepath.Join(d.dir, "dhclient.conf"), []byte(conf), 0o644); err != nil {
			return nil, fmt.Errorf("writing dhclient.conf: %w", err)
		}
		args = append(d.dhclientArgs(script), "-d", "-v", h.Iface)
	default:
		return nil, fmt.Errorf("gwlab: unknown DHCP client %d", client)
	}
	cmd := g.Lab.Command(context.Background(), h.NS, prog, args...)
	d.Log = &netlab.SyncBuffer{}
	cmd.Stdout, cmd.Stderr = d.Log, d.Log
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("starting %s in %s: %w", prog, h.NS, err)
	}
	d.cmd, d.done = cmd, make(chan struct{})
	go func() { _ = cmd.Wait(); close(d.done) }()
	// The gateway's Close stops the client when the caller never gets to.
	g.mu.Lock()
	g.devices = append(g.devices, d)
	g.mu.Unlock()
	return d, nil
}

func (d *Device) dhclientArgs(script string) []string {
	return []string{"-cf", filepath.Join(d.dir, "dhclient.conf"), "-lf", filepath.Join(d.dir, "leases"),
		"-pf", filepath.Join(d.dir, "pid"), "-sf", script}
}

// Arrive is one arrival and departure of a device, for measurements: a
// udhcpc on h announces mudURL, obtains a lease and configures it, then
// releases it (SIGUSR2) and stops. It returns once the address is gone
// again, which the client script does after the release was sent.
func (g *Gateway) Arrive(ctx context.Context, h *netlab.Host, name, mudURL string) error {
	// -B asks for broadcast replies: a new MAC on an address just
	// released by another one must not depend on the gateway's neighbour
	// cache for its OFFER.
	d, err := g.Join(h, Udhcpc, name, mudURL, "-B")
	if err != nil {
		return err
	}
	defer d.Stop()
	if _, err := d.WaitAddr(ctx, 30*time.Second, netip.Addr{}); err != nil {
		return err
	}
	if err := d.signal(syscall.SIGUSR2); err != nil {
		return err
	}
	return Poll(ctx, 5*time.Second, func() error {
		if a, err := LeasedAddr(h); err == nil {
			return fmt.Errorf("%s still has %s after the release", h.NS, a)
		}
		return nil
	})
}

// Renew asks the client to renew its lease now (udhcpc: SIGUSR1).
func (d *Device) Renew() error {
	if d.Client != Udhcpc {
		return errors.New("gwlab: Renew needs udhcpc")
	}
	return d.signal(syscall.SIGUSR1)
}

// Release makes the client send a DHCPRELEASE: udhcpc releases on SIGUSR2
// (and stays running, unconfigured); dhclient is stopped with `dhclient
// -r`, which releases what the running instance obtained.
func (d *Device) Release(ctx context.Context, lab *netlab.Lab) error {
	switch d.Client {
	case Udhcpc:
		return d.signal(syscall.SIGUSR2)
	case Dhclient:
		out, err := lab.Run(ctx, d.Host.NS, "dhclient", append(d.dhclientArgs(filepath.Join(d.dir, "dhcp-client.sh")), "-r", "-v", d.Host.Iface)...)
		if err != nil {
			return fmt.Errorf("dhclient -r: %w: %s", err, out)
		}
		return nil
	}
	return errors.New("gwlab: unknown DHCP client")
}

// Kill ends the client with SIGKILL: it disappears without a release, as a
// device that is unplugged, and its lease can only expire.
func (d *Device) Kill() error {
	if d.exited() {
		return nil
	}
	if err := d.cmd.Process.Kill(); err != nil {
		return fmt.Errorf("killing the DHCP client of %s: %w", d.Name, err)
	}
	<-d.done
	return nil
}

// Stop ends the client with SIGTERM (udhcpc then neither releases nor
// deconfigures without -R) and waits for it.
func (d *Device) Stop() error {
	if d.exited() {
		return nil
	}
	if err := d.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		return fmt.Errorf("stopping the DHCP client of %s: %w", d.Name, err)
	}
	select {
	case <-d.done:
	case <-time.After(5 * time.Second):
		return d.Kill()
	}
	return nil
}

func (d *Device) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *Device) signal(s syscall.Signal) error {
	if err := d.cmd.Process.Signal(s); err != nil {
		return fmt.Errorf("signalling the DHCP client of %s: %w", d.Name, err)
	}
	return nil
}

// Addr is the IPv4 address configured on the device's interface, if any.
func (d *Device) Addr() (netip.Addr, error) { return LeasedAddr(d.Host) }

// WaitAddr waits until the device's interface has an IPv4 address other
// than not (the zero Addr: any).
func (d *Device) WaitAddr(ctx context.Context, timeout time.Duration, not netip.Addr) (netip.Addr, error) {
	var got netip.Addr
	err := Poll(ctx, timeout, func() (err error) {
		got, err = LeasedAddr(d.Host)
		if err == nil && got == not {
			err = fmt.Errorf("still %s", got)
		}
		return err
	})
	if err != nil {
		return got, fmt.Errorf("waiting for %s's DHCP lease: %w\n%s", d.Name, err, d.Log)
	}
	return got, nil
}

// LeasedAddr is the IPv4 address DHCP gave the host's interface, once it
// has one.
func LeasedAddr(h *netlab.Host) (netip.Addr, error) {
	var got netip.Addr
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
				got, _ = netip.AddrFromSlice(ipn.IP.To4())
				return nil
			}
		}
		return errors.New("no IPv4 address yet")
	})
	return got, err
}

// Resolve asks the gateway's DNS server from inside namespace ns, as a
// device itself would.
func Resolve(ctx context.Context, ns, name string) (netip.Addr, error) {
	r := &net.Resolver{
		PreferGo: true,
		Dial: func(ctx context.Context, network, _ string) (net.Conn, error) {
			return netlab.Dial(ns, network, netip.AddrPortFrom(netlab.GatewayLAN4, 53).String(), 2*time.Second)
		},
	}
	ctx, cancel := context.WithTimeout(ctx, 3*time.Second)
	defer cancel()
	addrs, err := r.LookupNetIP(ctx, "ip4", name)
	if err != nil {
		return netip.Addr{}, fmt.Errorf("resolving %s from %s: %w", name, ns, err)
	}
	return addrs[0].Unmap(), nil
}
