package lanwatch

import (
	"context"
	"encoding/binary"
	"fmt"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"testing"
	"time"
	"unsafe"

	vnl "github.com/vishvananda/netlink"
	"github.com/vishvananda/netlink/nl"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/lab/netlab"
)

// The Watcher on a real gateway namespace (internal/lab/netlab): the kernel's
// notifications and dumps, with veth bridge ports.

const wait = 5 * time.Second

type watchLab struct {
	t   *testing.T
	lab *netlab.Lab
	gw  string
	w   *Watcher
	run chan error
}

// newWatchLab builds a lab with two devices and watches its LAN bridge
// (and extra interfaces). prepare runs before the Watcher is created.
func newWatchLab(t *testing.T, cfg Config, prepare func(l *watchLab)) *watchLab {
	t.Helper()
	l := &watchLab{t: t, lab: netlab.New(t, netlab.Config{Devices: 2, StaticDevices: true})}
	netlab.RequireCommand(t, "bridge", "tc")
	l.gw = l.lab.GW.NS
	if prepare != nil {
		prepare(l)
	}
	h, err := netlab.NSHandle(l.gw)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	cfg.NetNSFd = int(h)
	if cfg.Interfaces == nil {
		cfg.Interfaces = []string{netlab.LANBridge}
	}
	if cfg.Recheck == 0 {
		cfg.Recheck = -1 // the tests ask for rechecks themselves
	}
	if cfg.HostapdConfigs == nil {
		cfg.HostapdConfigs = []string{}
	}
	if cfg.DebugFS == "" {
		cfg.DebugFS = t.TempDir()
	}
	if l.w, err = New(cfg); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.w.Close() })
	return l
}

func (l *watchLab) start() {
	l.run = make(chan error, 1)
	ctx, cancel := context.WithCancel(context.Background())
	go func() { l.run <- l.w.Run(ctx) }()
	l.t.Cleanup(func() {
		cancel()
		if err := <-l.run; err != nil && err != context.Canceled {
			l.t.Errorf("Run: %v", err)
		}
	})
}

// cmd runs a command of iproute2 ("ip", "bridge", "tc") in the gateway
// namespace.
func (l *watchLab) cmd(name string, args ...string) {
	l.t.Helper()
	if _, err := l.lab.Run(context.Background(), l.gw, name, args...); err != nil {
		l.t.Fatal(err)
	}
}

// change waits for the next prefix change.
func (l *watchLab) change() PrefixChange {
	l.t.Helper()
	select {
	case c := <-l.w.Changes():
		return c
	case <-time.After(wait):
		l.t.Fatalf("no prefix change within %s; prefixes %v", wait, l.w.Prefixes())
	}
	return PrefixChange{}
}

// reportWhere waits for a report that satisfies ok.
func (l *watchLab) reportWhere(what string, ok func(Report) bool) Report {
	l.t.Helper()
	deadline := time.After(wait)
	for {
		select {
		case r := <-l.w.Reports():
			if ok(r) {
				return r
			}
		case <-deadline:
			l.t.Fatalf("no report with %s within %s; last:\n%s", what, wait, l.w.Report())
		}
	}
}

func prefixes(s ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, p := range s {
		out = append(out, netip.MustParsePrefix(p))
	}
	return out
}

func findPort(r Report, name string) (Port, bool) {
	for _, l := range r.LANs {
		for _, p := range l.Ports {
			if p.Name == name {
				return p, true
			}
		}
	}
	return Port{}, false
}

func hasFinding(p Port, sev Severity, text string) bool {
	return slices.ContainsFunc(p.Findings, func(f Finding) bool { return f.Severity == sev && strings.Contains(f.Text, text) })
}

// An IPv6 /64 and an IPv4 prefix added to and removed from br-lan are
// reported while running, with the sets before and after; addresses on
// other interfaces and link-local ones are not LAN prefixes.
func TestPrefixesFollowTheLANBridge(t *testing.T) {
	l := newWatchLab(t, Config{}, nil)
	initial := prefixes("192.0.2.0/24", "2001:db8:1::/64")
	if got := l.w.Prefixes(); !slices.Equal(got, initial) {
		t.Fatalf("initial prefixes %v, want %v (br-lan's link-local address left out)", got, initial)
	}
	l.start()

	l.cmd("ip", "addr", "add", "2001:db8:5::1/64", "dev", netlab.LANBridge, "nodad")
	c := l.change()
	if !slices.Equal(c.Old, initial) || !slices.Equal(c.Added(), prefixes("2001:db8:5::/64")) || len(c.Removed()) != 0 {
		t.Fatalf("after adding 2001:db8:5::1/64: %+v", c)
	}

	// A WAN address is no LAN prefix: the next change is the LAN's.
	l.cmd("ip", "addr", "add", "203.0.113.9/24", "dev", netlab.WANBridge)
	l.cmd("ip", "addr", "add", "198.51.100.1/24", "dev", netlab.LANBridge)
	c = l.change()
	if !slices.Equal(c.Added(), prefixes("198.51.100.0/24")) || len(c.Removed()) != 0 {
		t.Fatalf("after adding 198.51.100.1/24: %+v", c)
	}

	l.cmd("ip", "addr", "del", "2001:db8:1::1/64", "dev", netlab.LANBridge)
	l.cmd("ip", "addr", "del", "198.51.100.1/24", "dev", netlab.LANBridge)
	c = l.change()
	if !slices.Equal(c.New, prefixes("192.0.2.0/24", "2001:db8:5::/64")) {
		t.Fatalf("after removing 2001:db8:1::1/64 and 198.51.100.1/24: %+v", c)
	}
	if got := l.w.Prefixes(); !slices.Equal(got, c.New) {
		t.Errorf("Prefixes() = %v, want %v", got, c.New)
	}
}

// When the notifications overflow the receive buffer, the Watcher
// subscribes again and reads everything anew: the change made during the
// overflow is reported all the same, and the overrun is counted.
func TestOverrunResubscribesAndMissesNothing(t *testing.T) {
	l := newWatchLab(t, Config{ReadBuffer: 4096}, nil)
	release := make(chan struct{})
	l.w.beforeRecv = func() { <-release }
	l.start()

	// 300 notifications while the Watcher does not read, the last of them
	// a new LAN prefix.
	var batch strings.Builder
	for i := range 150 {
		fmt.Fprintf(&batch, "addr add 2001:db8:1::%x:1/64 dev %s nodad\n", 0x100+i, netlab.LANBridge)
	}
	for i := range 150 {
		fmt.Fprintf(&batch, "addr del 2001:db8:1::%x:1/64 dev %s\n", 0x100+i, netlab.LANBridge)
	}
	fmt.Fprintf(&batch, "addr add 198.51.100.1/24 dev %s\n", netlab.LANBridge)
	file := filepath.Join(t.TempDir(), "batch")
	if err := os.WriteFile(file, []byte(batch.String()), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("ip", "-n", l.gw, "-batch", file).CombinedOutput(); err != nil {
		t.Fatalf("ip -batch: %v: %s", err, out)
	}
	close(release)

	c := l.change()
	if !slices.Equal(c.Added(), prefixes("198.51.100.0/24")) || len(c.Removed()) != 0 {
		t.Fatalf("change %+v, want 198.51.100.0/24 added", c)
	}
	if l.w.Overruns() == 0 {
		t.Error("no overrun counted: the test did not overflow the buffer")
	}
}

// Bridge port flags set before the Watcher starts, changed while it runs,
// and a port added later: each is inspected and reported.
func TestBridgePortsAreInspected(t *testing.T) {
	l := newWatchLab(t, Config{}, func(l *watchLab) {
		l.cmd("bridge", "link", "set", "dev", "lan1", "isolated", "on")
		l.cmd("bridge", "link", "set", "dev", "lan2", "isolated", "on", "hairpin", "on")
	})
	r := l.w.Report()
	lan1, ok1 := findPort(r, "lan1")
	lan2, ok2 := findPort(r, "lan2")
	if !ok1 || !ok2 {
		t.Fatalf("report lacks the ports:\n%s", r)
	}
	if lan1.Kind != KindVeth || !slices.Equal(lan1.Flags, []string{"isolated"}) {
		t.Errorf("lan1: kind %s flags %v, want veth [isolated]", lan1.Kind, lan1.Flags)
	}
	if !slices.Equal(lan2.Flags, []string{"isolated", "hairpin"}) {
		t.Errorf("lan2 flags %v, want [isolated hairpin]", lan2.Flags)
	}
	if !hasFinding(lan1, Info, "drops traffic between it and lan2") {
		t.Errorf("lan1 findings %+v", lan1.Findings)
	}
	if r.Worst() != Info {
		t.Errorf("worst %s, want info:\n%s", r.Worst(), r)
	}
	l.start()

	l.cmd("bridge", "link", "set", "dev", "lan1", "isolated", "off")
	r = l.reportWhere("lan1 no longer isolated", func(r Report) bool {
		p, _ := findPort(r, "lan2")
		return hasFinding(p, Info, "no other port is")
	})
	if p, _ := findPort(r, "lan1"); len(p.Flags) != 0 {
		t.Errorf("lan1 flags %v, want none", p.Flags)
	}

	// A port added later, isolated and without learning.
	l.cmd("ip", "link", "add", "lan9", "type", "veth", "peer", "name", "lan9p")
	l.cmd("ip", "link", "set", "lan9", "master", netlab.LANBridge)
	l.cmd("bridge", "link", "set", "dev", "lan9", "isolated", "on", "learning", "off")
	l.reportWhere("lan9 isolated with learning off", func(r Report) bool {
		p, ok := findPort(r, "lan9")
		return ok && p.Kind == KindVeth && slices.Equal(p.Flags, []string{"isolated", "learning off"}) &&
			hasFinding(p, Info, "drops traffic between it and lan2")
	})
	l.cmd("ip", "link", "del", "lan9")
	l.reportWhere("lan9 gone", func(r Report) bool {
		_, ok := findPort(r, "lan9")
		return !ok
	})
}

// Several source addresses behind one port (a switch or access point
// beyond it) and tc ingress filters are reported as traffic that may pass
// the bridge by; a port with one device behind it is not.
func TestSegmentsAndIngressFiltersAreReported(t *testing.T) {
	l := newWatchLab(t, Config{}, nil)
	l.start()
	send := func(h *netlab.Host, srcs ...net.HardwareAddr) {
		t.Helper()
		c, err := netlab.RawConn(h)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for _, src := range srcs {
			frame := make([]byte, 60)
			copy(frame, net.HardwareAddr{0xff, 0xff, 0xff, 0xff, 0xff, 0xff})
			copy(frame[6:], src)
			frame[12], frame[13] = 0x88, 0xb5 // local experimental EtherType
			if err := c.Send(frame); err != nil {
				t.Fatal(err)
			}
		}
	}
	dev1, dev2 := l.lab.Devices[0], l.lab.Devices[1]
	send(dev1, dev1.MAC, net.HardwareAddr{0x02, 0, 0, 0, 0x01, 0x99})
	send(dev2, dev2.MAC)
	l.cmd("tc", "qdisc", "add", "dev", "lan2", "clsact")
	l.cmd("tc", "filter", "add", "dev", "lan2", "ingress", "protocol", "all", "u32", "match", "u32", "0", "0")
	l.w.Recheck()
	r := l.reportWhere("two devices behind lan1 and filters on lan2", func(r Report) bool {
		p1, _ := findPort(r, "lan1")
		p2, _ := findPort(r, "lan2")
		return hasFinding(p1, Warning, "more than one device was seen behind it") && hasFinding(p2, Warning, "lan2 has tc ingress filters")
	})
	if p2, _ := findPort(r, "lan2"); len(p2.Findings) != 1 {
		t.Errorf("lan2 findings %+v, want only the filters: one device is behind it", p2.Findings)
	}
	if got := r.Summary(); len(got) != 2 {
		t.Errorf("summary %q, want two warnings", got)
	}
}

// A LAN interface that is not a bridge, and one that does not exist (yet):
// both are reported, and the missing one is picked up once it appears.
func TestPlainAndMissingLANInterfaces(t *testing.T) {
	l := newWatchLab(t, Config{Interfaces: []string{netlab.LANBridge, "plain0", "br-iot"}}, func(l *watchLab) {
		l.cmd("ip", "link", "add", "plain0", "type", "veth", "peer", "name", "plain0p")
		l.cmd("ip", "addr", "add", "198.51.100.1/24", "dev", "plain0")
	})
	r := l.w.Report()
	if len(r.LANs) != 3 {
		t.Fatalf("report:\n%s", r)
	}
	if lan := r.LANs[1]; lan.Name != "plain0" || lan.Bridge || !lan.Exists || !strings.Contains(lan.Findings[0].Text, "plain0 is not a bridge") {
		t.Errorf("plain0: %+v", lan)
	}
	if lan := r.LANs[2]; lan.Exists || !strings.Contains(lan.Findings[0].Text, "does not exist") {
		t.Errorf("br-iot: %+v", lan)
	}
	if got, want := l.w.Prefixes(), prefixes("192.0.2.0/24", "198.51.100.0/24", "2001:db8:1::/64"); !slices.Equal(got, want) {
		t.Errorf("prefixes %v, want %v (a plain LAN interface's prefixes count)", got, want)
	}
	l.start()
	l.cmd("ip", "link", "add", "br-iot", "type", "bridge")
	l.cmd("ip", "link", "set", "br-iot", "up")
	l.cmd("ip", "addr", "add", "2001:db8:7::1/64", "dev", "br-iot", "nodad")
	c := l.change()
	if !slices.Equal(c.Added(), prefixes("2001:db8:7::/64")) {
		t.Errorf("change %+v, want br-iot's prefix added", c)
	}
	l.reportWhere("br-iot as an empty bridge", func(r Report) bool {
		return len(r.LANs) == 3 && r.LANs[2].Exists && r.LANs[2].Bridge
	})
}

// An XDP program attached to a port, and detached again, is reported
// through the link notifications.
func TestXDPProgramIsReported(t *testing.T) {
	l := newWatchLab(t, Config{}, nil)
	l.start()
	prog := loadXDPPass(t)
	attach := func(fd int) {
		t.Helper()
		err := netlab.Do(l.gw, func() error {
			link, err := vnl.LinkByName("lan1")
			if err != nil {
				return err
			}
			return vnl.LinkSetXdpFdWithFlags(link, fd, nl.XDP_FLAGS_SKB_MODE)
		})
		if err != nil {
			t.Fatalf("attaching XDP program %d to lan1: %v", fd, err)
		}
	}
	attach(prog)
	l.reportWhere("an XDP program on lan1", func(r Report) bool {
		p, _ := findPort(r, "lan1")
		return hasFinding(p, Warning, "an XDP program is attached to lan1")
	})
	attach(-1)
	l.reportWhere("no XDP program on lan1", func(r Report) bool {
		p, ok := findPort(r, "lan1")
		return ok && len(p.Findings) == 0
	})
}

// loadXDPPass loads an XDP program that passes every frame (r0 = XDP_PASS;
// exit) and returns its file descriptor.
func loadXDPPass(t *testing.T) int {
	t.Helper()
	insns := []byte{
		0xb7, 0x00, 0, 0, 2, 0, 0, 0, // BPF_ALU64|BPF_MOV|BPF_K r0 = 2 (XDP_PASS)
		0x95, 0x00, 0, 0, 0, 0, 0, 0, // BPF_JMP|BPF_EXIT
	}
	license := []byte("GPL\x00")
	attr := make([]byte, 128) // union bpf_attr, BPF_PROG_LOAD's fields first
	binary.NativeEndian.PutUint32(attr[0:], unix.BPF_PROG_TYPE_XDP)
	binary.NativeEndian.PutUint32(attr[4:], uint32(len(insns)/8))
	binary.NativeEndian.PutUint64(attr[8:], uint64(uintptr(unsafe.Pointer(&insns[0]))))
	binary.NativeEndian.PutUint64(attr[16:], uint64(uintptr(unsafe.Pointer(&license[0]))))
	fd, _, errno := unix.Syscall(unix.SYS_BPF, unix.BPF_PROG_LOAD, uintptr(unsafe.Pointer(&attr[0])), uintptr(len(attr)))
	runtime.KeepAlive(insns)
	runtime.KeepAlive(license)
	if errno != 0 {
		t.Fatalf("loading an XDP program: %v", errno)
	}
	t.Cleanup(func() { unix.Close(int(fd)) })
	return int(fd)
}
