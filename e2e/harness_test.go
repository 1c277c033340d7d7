package e2e

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// Names and ports of the labs' internet (documentation ranges only).
// Server 1 (203.0.113.11) is the MUD server, server 2 the cloud service
// the files permit, server 3 a host no file names.
const (
	mudHost   = gwlab.DefaultMUDHost
	mudHost2  = "mud.example.org" // a second manufacturer
	cloudHost = "cloud.example.com"
	otherHost = "other.example.net"

	permitted = 443  // the port the files permit to the cloud
	otherPort = 8080 // a port they do not
)

// Timeouts: a permitted flow may need a moment (a policy can be installed
// just before the name is resolved); a refused one is a dropped SYN, so a
// short wait is enough to call it.
const (
	passWait   = 5 * time.Second
	refuseWait = 700 * time.Millisecond
	joinWait   = 20 * time.Second
)

// bins are the mudd binary and mudctl, a link to it, built once per test
// binary.
var bins struct {
	once         sync.Once
	dir          string
	mudd, mudctl string
	err          error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func buildBinaries(t testing.TB) (mudd, mudctl string) {
	t.Helper()
	bins.once.Do(func() {
		if bins.dir, bins.err = os.MkdirTemp("", "mud-e2e-bin-"); bins.err != nil {
			return
		}
		bins.mudd, bins.mudctl, bins.err = multicall.Build(bins.dir, multicall.Options{})
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.mudd, bins.mudctl
}

// env is one test's lab: devices, three servers, a gateway with
// dnsmasq and mudd, echo services on the servers.
type env struct {
	t   testing.TB
	ctx context.Context
	lab *netlab.Lab
	gw  *gwlab.Gateway
	// mudSrv, cloud and other are the lab's servers.
	mudSrv, cloud, other *netlab.Host
	devs                 []*gwlab.Device
}

type envConfig struct {
	devices int
	gw      gwlab.Config // Mudd, Mudctl, Dir and Names are filled in
	// sysctls are set in the gateway namespace before mudd starts (e.g.
	// "net.bridge.bridge-nf-call-iptables=1"; netlab sets it to 0).
	sysctls []string
}

func newEnv(t testing.TB, cfg envConfig) *env {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "dnsmasq", "udhcpc", "go")
	mudd, mudctl := buildBinaries(t)
	lab := netlab.New(t, netlab.Config{Devices: cfg.devices, Servers: 3})
	e := &env{t: t, ctx: t.Context(), lab: lab, mudSrv: lab.Servers[0], cloud: lab.Servers[1], other: lab.Servers[2]}
	if len(cfg.sysctls) > 0 {
		if err := lab.Sysctl(lab.GW.NS, cfg.sysctls...); err != nil {
			t.Fatal(err)
		}
	}
	c := cfg.gw
	c.Mudd, c.Mudctl, c.Dir = mudd, mudctl, t.TempDir()
	if c.Names == nil {
		c.Names = map[string]netip.Addr{}
	}
	c.Names[cloudHost], c.Names[otherHost] = e.cloud.IPv4, e.other.IPv4
	gw, err := gwlab.Start(context.Background(), lab, c)
	if gw != nil {
		e.gw = gw
		t.Cleanup(func() {
			if t.Failed() {
				e.dumpLogs()
			}
			gw.Close()
		})
	}
	if err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	for _, h := range []*netlab.Host{e.cloud, e.other} {
		e.echo(h, permitted, otherPort)
	}
	return e
}

// echo serves TCP and UDP echo on the host's ports (all addresses).
func (e *env) echo(h *netlab.Host, ports ...int) {
	e.t.Helper()
	for _, p := range ports {
		s, err := netlab.ServeEcho(h.NS, fmt.Sprintf("0.0.0.0:%d", p))
		if err != nil {
			e.t.Fatalf("echo service in %s on %d: %v", h.NS, p, err)
		}
		e.t.Cleanup(s.Close)
	}
}

func (e *env) dumpLogs() {
	e.t.Logf("--- mudd log ---\n%s", e.gw.MuddLog)
	if e.gw.DNSLog != nil {
		e.t.Logf("--- dnsmasq log ---\n%s", e.gw.DNSLog)
	}
	for _, d := range e.devs {
		e.t.Logf("--- DHCP client of %s (%s) ---\n%s", d.Name, d.Host.MAC, d.Log)
	}
	for _, fam := range []string{"inet", "bridge"} {
		out, err := e.gw.NFT(context.Background(), "list", "table", fam, "mud")
		e.t.Logf("--- nft list table %s mud (%v) ---\n%s", fam, err, out)
	}
}

// publish serves a correctly signed file and returns its URL.
func (e *env) publish(f gwlab.File) string {
	e.t.Helper()
	if _, err := e.gw.Publish(f); err != nil {
		e.t.Fatal(err)
	}
	return f.URL
}

// join starts a DHCP client on device i announcing mudURL and waits for
// its address.
func (e *env) join(i int, client gwlab.Client, name, mudURL string) (*gwlab.Device, netip.Addr) {
	e.t.Helper()
	d, err := e.gw.Join(e.lab.Devices[i], client, name, mudURL)
	if err != nil {
		e.t.Fatal(err)
	}
	e.devs = append(e.devs, d)
	ip, err := d.WaitAddr(e.ctx, joinWait, netip.Addr{})
	if err != nil {
		e.t.Fatal(err)
	}
	return d, ip
}

// waitState waits for mudctl to list the device in state, with an address.
func (e *env) waitState(h *netlab.Host, state api.DeviceState) api.Device {
	e.t.Helper()
	d, err := e.gw.WaitState(e.ctx, h.MAC.String(), state, joinWait)
	if err != nil {
		e.t.Fatal(err)
	}
	return d
}

// mudctl runs mudctl and fails the test when it fails.
func (e *env) mudctl(args ...string) string {
	e.t.Helper()
	out, err := e.gw.Mudctl(e.ctx, args...)
	if err != nil {
		e.t.Fatal(err)
	}
	return out
}

// resolve asks the gateway's DNS from the device, as the device would
// (which also lets mudd's DNS snooping see the answer).
func (e *env) resolve(h *netlab.Host, name string) netip.Addr {
	e.t.Helper()
	a, err := gwlab.Resolve(e.ctx, h.NS, name)
	if err != nil {
		e.t.Fatal(err)
	}
	return a
}

// pass asserts that a TCP echo from ns to addr:port works (retrying for
// passWait: a policy may be committed a moment after the name resolved).
func (e *env) pass(what, ns string, addr netip.Addr, port int) {
	e.t.Helper()
	err := gwlab.Poll(e.ctx, passWait, func() error { return netlab.TCPEcho(ns, netlab.HostPort(addr, port), time.Second) })
	netlab.MustPass(e.t, what, err)
}

// refuse asserts that a TCP echo from ns to addr:port gets nothing back.
func (e *env) refuse(what, ns string, addr netip.Addr, port int) {
	e.t.Helper()
	netlab.MustDrop(e.t, what, netlab.TCPEcho(ns, netlab.HostPort(addr, port), refuseWait))
}

// nftTables is our two tables as `nft -s list` shows them.
func (e *env) nftTables() string {
	e.t.Helper()
	var b strings.Builder
	for _, fam := range []string{"inet", "bridge"} {
		out, err := e.gw.NFT(e.ctx, "-s", "list", "table", fam, "mud")
		if err != nil {
			e.t.Fatalf("nft list table %s mud: %v", fam, err)
		}
		b.WriteString(out)
	}
	return b.String()
}

// inKernel reports whether any element of our tables mentions mac.
func (e *env) inKernel(mac net.HardwareAddr) bool {
	e.t.Helper()
	return strings.Contains(e.nftTables(), mac.String())
}

// normalizeRuleset removes what legitimately differs between two listings
// of the same ruleset: element timeouts counting down, the order of
// elements in hash sets, the elements packets add to dynamic sets, and the
// order in which a table's sets, maps and chains were declared (nft lists
// them in creation order; chains are referred to by name, so the order
// means nothing).
func normalizeRuleset(s string) string {
	s = timeoutRE.ReplaceAllString(s, "")
	var out, block []string
	var blocks []string
	lines := strings.Split(s, "\n")
	for i := 0; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " ")
		switch {
		case strings.Contains(line, "elements = {"):
			// Gather the element list (it ends with "}") and sort it.
			list := line
			for !strings.HasSuffix(strings.TrimSpace(lines[i]), "}") && i+1 < len(lines) {
				i++
				list += " " + strings.TrimSpace(lines[i])
			}
			head, body, _ := strings.Cut(list, "{")
			body = strings.TrimSuffix(strings.TrimSpace(body), "}")
			elems := strings.Split(body, ",")
			for j := range elems {
				elems[j] = strings.Join(strings.Fields(elems[j]), " ")
			}
			// A dynamic set's elements are added by the packet path
			// (default-deny counters, flow state): traffic's, not mudd's.
			if slices.ContainsFunc(block, func(l string) bool { return strings.Contains(l, "flags dynamic") }) {
				continue
			}
			slices.Sort(elems)
			block = append(block, head+"{ "+strings.Join(elems, ", ")+" }")
		case strings.HasPrefix(line, "table "):
			out = append(out, line)
		case line == "}": // end of the table: its declarations, sorted
			slices.Sort(blocks)
			out = append(out, blocks...)
			out = append(out, line)
			blocks = nil
		case line == "\t}":
			blocks = append(blocks, strings.Join(append(block, line), "\n"))
			block = nil
		case strings.TrimSpace(line) == "":
		default:
			block = append(block, line)
		}
	}
	return strings.Join(out, "\n")
}

var timeoutRE = regexp.MustCompile(`\s+(timeout|expires) [0-9hmsd]+`)

// diffLines lists the lines of a not in b and of b not in a.
func diffLines(a, b string) string {
	as, bs := strings.Split(a, "\n"), strings.Split(b, "\n")
	var d []string
	for _, l := range as {
		if !slices.Contains(bs, l) {
			d = append(d, "- "+l)
		}
	}
	for _, l := range bs {
		if !slices.Contains(as, l) {
			d = append(d, "+ "+l)
		}
	}
	return strings.Join(d, "\n")
}

// serverAddr is the IPv4 address netlab gives server j (1-based).
func serverAddr(j int) netip.Addr {
	a := netlab.WANPrefix4.Addr().As4()
	a[3] = byte(10 + j)
	return netip.AddrFrom4(a)
}
