// Package scale measures mudd as a daemon with thousands of devices: the
// real mudd binary in a gwlab gateway, a real DHCP server answering the
// devices, the lab's HTTPS MUD server, and the devices themselves simulated
// by internal/lab/framegen, which runs the DHCP exchanges of thousands of
// MACs over one AF_PACKET socket. What is measured is seen from outside
// mudd: the DHCP answer's kernel receive timestamp at the device and the
// nftables netlink notification of the device's binding (an element
// holding its MAC and its address), as e2e's arrival benchmark does.
//
// An IPv4 documentation /24 holds about 250 leases, so the installed
// population joins with DHCPv6 (Kea leases from 2001:db8:1::/64, see
// startKea); the timed single arrivals use DHCPv6 and DHCPv4 (option 161,
// dnsmasq, from 192.0.2.50–254), and the burst DHCPv6 again. `make
// bench-scale` runs BenchmarkScale; TestLabScale is the CI check. Both
// need root.
package scale

import (
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"

	"github.com/openmud/mud/internal/cli/multicall"
	"github.com/openmud/mud/internal/lab/framegen"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

const cloudHost = "cloud.example.com"

var bins struct {
	once sync.Once
	dir  string
	mudd string
	err  error
}

func TestMain(m *testing.M) {
	code := m.Run()
	if bins.dir != "" {
		os.RemoveAll(bins.dir)
	}
	os.Exit(code)
}

func buildMudd(t testing.TB) string {
	t.Helper()
	bins.once.Do(func() {
		if bins.dir, bins.err = os.MkdirTemp("", "mud-scale-bin-"); bins.err != nil {
			return
		}
		bins.mudd, _, bins.err = multicall.Build(bins.dir, multicall.Options{})
	})
	if bins.err != nil {
		t.Fatal(bins.err)
	}
	return bins.mudd
}

// scaleLab is a gateway with dnsmasq serving DHCPv4 and DHCPv6 on the LAN
// and a frame generator of each family on the one device port.
type scaleLab struct {
	t          testing.TB
	ctx        context.Context
	lab        *netlab.Lab
	gw         *gwlab.Gateway
	gen4, gen6 *framegen.Generator
	w          *watcher
	urls       []string
	seq        int // MACs handed out
	// all are the devices that joined.
	all []arrival
}

// newScaleLab builds the lab and publishes urls signed MUD files.
func newScaleLab(t testing.TB, urls int) *scaleLab {
	t.Helper()
	netlab.RequireRoot(t)
	netlab.RequireCommand(t, "ip", "nft", "dnsmasq", "kea-dhcp6", "go")
	mudd := buildMudd(t)
	lab := netlab.New(t, netlab.Config{Devices: 1, Servers: 2})
	s := &scaleLab{t: t, ctx: t.Context(), lab: lab}
	cfg := gwlab.Config{
		Mudd: mudd, Dir: t.TempDir(), LogLevel: "warn", QuietDNSMasq: true,
		MetricsListen: "127.0.0.1:9610",
		Names:         map[string]netip.Addr{cloudHost: lab.Servers[1].IPv4},
		// The IPv4 range holds the DHCPv4 arrivals of every step (50 each;
		// an IPv4 /24 cannot hold the installed population, see install).
		// DHCPv6 is Kea's (startKea).
		DHCPRanges:  []string{"192.0.2.20,192.0.2.254,255.255.255.0,1h"},
		DNSMasqArgs: []string{"--leasefile-ro"},
		// Every simulated device is behind one bridge port.
		Fetch: "  budget: 100000\n  budget_per_port: 100000\n",
	}
	gw, err := gwlab.Start(context.Background(), lab, cfg)
	if gw != nil {
		s.gw = gw
		t.Cleanup(func() {
			if t.Failed() {
				log := gw.MuddLog.String()
				if len(log) > 20000 {
					log = log[len(log)-20000:]
				}
				t.Logf("--- mudd log (tail) ---\n%s", log)
				dl := gw.DNSLog.String()
				t.Logf("--- dnsmasq (tail) ---\n%s", dl[max(0, len(dl)-6000):])
			}
			gw.Close()
		})
	}
	if err != nil {
		t.Fatalf("starting the gateway: %v", err)
	}
	k, err := startKea(s.ctx, lab, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(k.Close)
	dev := lab.Devices[0]
	for _, fam := range []int{4, 6} {
		g, err := framegen.Open(framegen.Config{NetNS: dev.NS, Iface: dev.Iface, Family: fam, Router6: netlab.GatewayLAN6})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(g.Close)
		if fam == 4 {
			s.gen4 = g
		} else {
			s.gen6 = g
		}
	}
	if s.w, err = watch(lab.GW.NS); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.w.Close)
	same := map[string]any{"same-manufacturer": []any{nil}}
	for i := range urls {
		f := gwlab.File{URL: fmt.Sprintf("https://%s/scale/%d.json", gwlab.DefaultMUDHost, i), Mfg: "Example", Model: fmt.Sprintf("scale%d", i),
			From: []gwlab.Rule{{Remote: cloudHost, RemotePort: 443, Initiated: "from-device"}, {MUD: same}},
			To:   []gwlab.Rule{{Remote: cloudHost, RemotePort: 443, Initiated: "from-device"}, {MUD: same}},
		}
		if _, err := gw.Publish(f); err != nil {
			t.Fatal(err)
		}
		s.urls = append(s.urls, f.URL)
	}
	return s
}

// clients are the next n devices, announcing the lab's URLs in turn.
func (s *scaleLab) clients(n int) []framegen.Client {
	cs := make([]framegen.Client, n)
	for i := range cs {
		s.seq++
		cs[i] = framegen.Client{MAC: macFor(s.seq), Hostname: fmt.Sprintf("dev%d", s.seq), MUDURL: s.urls[s.seq%len(s.urls)]}
	}
	return cs
}

// arrival is one device's join: its DHCP answer and its binding.
type arrival struct {
	framegen.Result
	Active time.Time
}

func (a arrival) latency() time.Duration { return a.Active.Sub(a.Reply) }

// install joins n devices over DHCPv6, installRate a second.
//
// An exchange that fails (the lab's DHCP server, not mudd) is replaced by
// another device, at most n times over; the generator released whatever
// the server may have leased it, so mudd ends with no binding for it. A
// device whose exchange succeeded but whose binding never came is an
// error; with tolerant, it only counts as a failure too.
func (s *scaleLab) install(n int, tolerant bool) ([]arrival, error) {
	var all []arrival
	nFailed := 0
	for n > 0 {
		k := min(n, 1000)
		as, failed, lost := s.arriveSplit(s.gen6, k, installRate, 60*time.Second)
		if len(lost) > 0 && !tolerant {
			return all, fmt.Errorf("%d of %d devices acknowledged by the DHCP server never had their binding in the kernel: %w", len(lost), k, errors.Join(lost[:min(5, len(lost))]...))
		}
		failed = append(failed, lost...)
		all = append(all, as...)
		n -= len(as)
		if nFailed += len(failed); nFailed > len(all)+n {
			return all, fmt.Errorf("%d devices failed to join: %w", nFailed, errors.Join(failed[:min(5, len(failed))]...))
		}
		if len(failed) > 0 {
			s.t.Logf("%d DHCP exchanges failed in the lab (replaced): %v", len(failed), failed[0])
		}
	}
	return all, nil
}

// neighbours adds a permanent entry for each client's link-local address
// to the gateway's neighbour table on the LAN bridge, as a real gateway
// learns it from the client's router or neighbour solicitation, and keeps
// it for the lab's life. The DHCPv6 server answers a client at that
// address, and the kernel's table holds gc_thresh3 (1,024) entries it
// resolved itself across all namespaces (a sysctl of the root namespace
// only, which the lab leaves alone); permanent entries do not count
// against it. mudd does not see them: they are no traffic.
func (s *scaleLab) neighbours(cs []framegen.Client) error {
	h, err := netlab.NSHandle(s.lab.GW.NS)
	if err != nil {
		return err
	}
	defer h.Close()
	nl, err := vnl.NewHandleAt(h)
	if err != nil {
		return fmt.Errorf("opening rtnetlink in %s: %w", s.lab.GW.NS, err)
	}
	defer nl.Close()
	br, err := nl.LinkByName(netlab.LANBridge)
	if err != nil {
		return fmt.Errorf("finding %s: %w", netlab.LANBridge, err)
	}
	for _, c := range cs {
		n := &vnl.Neigh{LinkIndex: br.Attrs().Index, Family: unix.AF_INET6, State: vnl.NUD_PERMANENT,
			IP: framegen.LinkLocal(c.MAC).AsSlice(), HardwareAddr: c.MAC}
		if err := nl.NeighSet(n); err != nil {
			return fmt.Errorf("neighbour entry of %s: %w", c.MAC, err)
		}
	}
	return nil
}

// installRate is the DHCPv6 arrivals per second of install.
const installRate = 500

// macFor is the i-th simulated MAC (locally administered, 02:5c prefix).
func macFor(i int) net.HardwareAddr {
	m := net.HardwareAddr{0x02, 0x5c, 0, 0, 0, 0}
	binary.BigEndian.PutUint32(m[2:], uint32(i))
	return m
}

// rssFile is the part of pid's resident set that maps files (RssFile):
// for mudd, mostly its store, which bbolt reads through mmap; the kernel
// reclaims those pages under memory pressure.
func rssFile(pid int) (int64, error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "RssFile:" {
			kb, err := strconv.ParseInt(f[1], 10, 64)
			return kb << 10, err
		}
	}
	return 0, fmt.Errorf("no RssFile in /proc/%d/status", pid)
}

// procStats reads mudd's resident set (bytes) and CPU time used so far.
func procStats(pid int) (rss int64, cpu time.Duration, err error) {
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, 0, err
	}
	for _, l := range strings.Split(string(st), "\n") {
		if f := strings.Fields(l); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseInt(f[1], 10, 64)
			rss = kb << 10
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0, 0, err
	}
	// Fields after the command (which may hold spaces), from state on.
	f := strings.Fields(string(stat[bytes.LastIndexByte(stat, ')')+2:]))
	if len(f) < 13 {
		return 0, 0, fmt.Errorf("short /proc/%d/stat", pid)
	}
	ut, _ := strconv.ParseInt(f[11], 10, 64)
	stt, _ := strconv.ParseInt(f[12], 10, 64)
	return rss, time.Duration(ut+stt) * time.Second / 100, nil // USER_HZ
}

// watcher indexes the set elements added in the gateway namespace by the
// simulated MACs they hold.
type watcher struct {
	nl    *netlink.Conn
	wg    sync.WaitGroup
	mu    sync.Mutex
	byMAC map[[6]byte][]elem
	err   error
	wake  chan struct{}
	done  chan struct{}
}

type elem struct {
	key []byte
	at  time.Time
}

func watch(ns string) (*watcher, error) {
	w := &watcher{byMAC: map[[6]byte][]elem{}, wake: make(chan struct{}), done: make(chan struct{})}
	err := netlab.Do(ns, func() (err error) {
		w.nl, err = netlink.Dial(unix.NETLINK_NETFILTER, nil)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening netlink: %w", err)
	}
	_ = w.nl.SetReadBuffer(64 << 20)
	if err := w.nl.JoinGroup(unix.NFNLGRP_NFTABLES); err != nil {
		w.nl.Close()
		return nil, fmt.Errorf("joining NFNLGRP_NFTABLES: %w", err)
	}
	w.wg.Add(1)
	go w.read()
	return w, nil
}

func (w *watcher) Close() {
	close(w.done)
	w.nl.Close()
	w.wg.Wait()
}

func (w *watcher) read() {
	defer w.wg.Done()
	newElem := netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWSETELEM)
	for {
		msgs, err := w.nl.Receive()
		at := time.Now()
		if err != nil {
			select {
			case <-w.done:
				return
			default:
			}
			w.mu.Lock()
			w.err = fmt.Errorf("reading nftables notifications: %w", err)
			w.signal()
			w.mu.Unlock()
			if errors.Is(err, unix.ENOBUFS) {
				continue
			}
			return
		}
		w.mu.Lock()
		for _, m := range msgs {
			if m.Header.Type != newElem || len(m.Data) < 4 {
				continue
			}
			for _, k := range elementKeys(m.Data[4:]) {
				for i := 0; i+6 <= len(k); i++ {
					if k[i] == 0x02 && k[i+1] == 0x5c {
						var mac [6]byte
						copy(mac[:], k[i:i+6])
						w.byMAC[mac] = append(w.byMAC[mac], elem{key: k, at: at})
					}
				}
			}
		}
		w.signal()
		w.mu.Unlock()
	}
}

func (w *watcher) signal() {
	close(w.wake)
	w.wake = make(chan struct{})
}

// elementKeys are the keys (and interval ends) of the elements of one
// NFT_MSG_NEWSETELEM notification.
func elementKeys(data []byte) [][]byte {
	ad, err := netlink.NewAttributeDecoder(data)
	if err != nil {
		return nil
	}
	var out [][]byte
	for ad.Next() {
		if ad.Type() != unix.NFTA_SET_ELEM_LIST_ELEMENTS {
			continue
		}
		ad.Nested(func(list *netlink.AttributeDecoder) error {
			for list.Next() {
				var key []byte
				list.Nested(func(el *netlink.AttributeDecoder) error {
					for el.Next() {
						if t := el.Type(); t == unix.NFTA_SET_ELEM_KEY || t == 10 { // NFTA_SET_ELEM_KEY_END
							el.Nested(func(d *netlink.AttributeDecoder) error {
								for d.Next() {
									if d.Type() == unix.NFTA_DATA_VALUE {
										key = append(key, d.Bytes()...)
									}
								}
								return nil
							})
						}
					}
					return nil
				})
				out = append(out, key)
			}
			return nil
		})
	}
	return out
}

// wait returns when an element holding mac and addr, committed at or
// after since, was seen.
func (w *watcher) wait(ctx context.Context, mac net.HardwareAddr, addr netip.Addr, since time.Time) (time.Time, error) {
	var k [6]byte
	copy(k[:], mac)
	ip := addr.AsSlice()
	for {
		w.mu.Lock()
		if w.err != nil {
			err := w.err
			w.mu.Unlock()
			return time.Time{}, err
		}
		for _, e := range w.byMAC[k] {
			if !e.at.Before(since) && bytes.Contains(e.key, ip) {
				w.mu.Unlock()
				return e.at, nil
			}
		}
		wake := w.wake
		w.mu.Unlock()
		select {
		case <-ctx.Done():
			return time.Time{}, fmt.Errorf("no binding of %s with %s in the kernel: %w", mac, addr, context.Cause(ctx))
		case <-wake:
		}
	}
}
