package manager

import (
	"context"
	"fmt"
	"net"
	"net/netip"
	"os"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/resolver"
	"github.com/openmud/mud/store"
)

// benchClass is how many installed devices share a MUD URL (and so a
// manufacturer and a model class) in the benchmarks, unless one says
// otherwise.
const benchClass = 10

// tmpfsDir is a directory for a store: on tmpfs when there is one, so
// that what a benchmark measures is the manager and not the disk's fsync,
// and a test of thousands of writes is not slowed by it.
func tmpfsDir(tb testing.TB) string {
	tb.Helper()
	if fi, err := os.Stat("/dev/shm"); err == nil && fi.IsDir() {
		dir, err := os.MkdirTemp("/dev/shm", "mud-manager-test-")
		if err == nil {
			tb.Cleanup(func() { os.RemoveAll(dir) })
			return dir
		}
	}
	return tb.TempDir()
}

func benchURL(srv *mudServer, i int) string {
	return srv.url(fmt.Sprintf("mfr%d.example", i), "/cam.json")
}

// benchInstalled starts a manager (fake enforcer, real store) with n
// enforced devices installed: their signed MUD files cached and verified,
// class devices per MUD URL, each URL at an authority of its own, so that
// every manufacturer and model class holds class devices whatever n is.
// URL 0 always has a cached file. It returns the running harness and the
// MUD server.
func benchInstalled(b *testing.B, n, class int) (*harness, *mudServer) {
	b.Helper()
	srv := newMUDServer(b)
	dir := tmpfsDir(b)
	st, err := store.Open(dir+"/mud.db", store.Options{})
	if err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	const signer = "CN=Example MUD signer,O=Example"
	err = st.Update(func(tx *store.Tx) error {
		urls := max(1, (n+class-1)/class)
		ids := make([]string, urls)
		for i := range urls {
			u := benchURL(srv, i)
			body := mudFile(u, "")
			sig, err := srv.signer.SignDetached(body)
			if err != nil {
				return err
			}
			f := store.MUDFile{URL: u, Body: body, Signature: sig, FetchedAt: now, VerifiedAt: now, Verdict: store.VerdictValid,
				Signer: signer, CacheValidity: 48 * time.Hour, RefreshDue: now.Add(48 * time.Hour)}
			if err := tx.MUDFiles().Put(f); err != nil {
				return err
			}
			if err := tx.PinsByURL().Put(store.Pin{MUDURL: u, Signer: signer, Authority: authority(u), FirstSeen: now}); err != nil {
				return err
			}
			md := compileModel(u, &f)
			if md.err != "" {
				return fmt.Errorf("%s", md.err)
			}
			ids[i] = md.pol.ID
		}
		for i := range n {
			u := benchURL(srv, i/class)
			mac := benchMAC(1, i).String()
			d := store.Device{MAC: mac, IPs: []netip.Addr{benchAddr(1, i)}, MUDURL: u, URLSource: store.SourceDHCPv6,
				State: store.StateEnforced, PolicyID: ids[i/class], Enforcement: store.EnforcementEnforced,
				FirstSeen: now, LastSeen: now}
			if err := tx.Devices().Put(d); err != nil {
				return err
			}
			if err := tx.PinsByMAC().Put(store.Pin{MAC: mac, MUDURL: u, Signer: signer, Authority: authority(u), FirstSeen: now}); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
	st.Close()
	fe := newFakeEnforcer()
	h := startManager(b, harnessOpts{dir: dir, enf: fe, fetcher: srv.fetcher(b, srv.ca.Pool()), anchors: srv.ca.Pool(),
		tweak: func(c *Config) { c.Tick = time.Hour }})
	fe.mu.Lock()
	got := len(fe.devices)
	fe.mu.Unlock()
	if got != n {
		b.Fatalf("%d devices in the enforcer after start-up, want %d", got, n)
	}
	return h, srv
}

// benchMAC is a locally administered MAC: group g, number i.
func benchMAC(g, i int) net.HardwareAddr {
	return net.HardwareAddr{2, byte(g), 0, byte(i >> 16), byte(i >> 8), byte(i)}
}

// benchAddr is an address of 2001:db8::/32: group g, number i.
func benchAddr(g, i int) netip.Addr {
	return netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 0, byte(g), 12: byte(i >> 24), 13: byte(i >> 16), 14: byte(i >> 8), 15: byte(i)})
}

var benchSizes = []int{0, 1000, 10000}

// BenchmarkLeaseEvent is one device arriving — a DHCP bound event of a
// new device whose MUD file is cached and verified, up to the enforcer
// holding it — with N other devices installed, in classes of benchClass;
// "one-class" puts them all in the arriving device's class, whose peer
// set (same-manufacturer) changes by the arriving device's addresses. The
// fake enforcer copies a changed peer's elements (10,000 here): most of
// the bytes per operation of that case. The device is
// forgotten again between iterations, outside the measurement.
func BenchmarkLeaseEvent(b *testing.B) {
	type size struct {
		name     string
		n, class int
	}
	var sizes []size
	for _, n := range benchSizes {
		sizes = append(sizes, size{fmt.Sprintf("installed=%d", n), n, benchClass})
	}
	sizes = append(sizes, size{"installed=10000/one-class", 10000, 10000})
	for _, sz := range sizes {
		b.Run(sz.name, func(b *testing.B) {
			h, srv := benchInstalled(b, sz.n, sz.class)
			u := benchURL(srv, 0)
			ctx := context.Background()
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				hw := benchMAC(2, i)
				ev := dhcpsnoop.Event{Kind: dhcpsnoop.KindBound, Time: time.Now(), Family: 6, MAC: hw,
					IPv6: []netip.Addr{benchAddr(2, i)}, MUDURL: u, LeaseTime: time.Hour, Expires: time.Now().Add(time.Hour)}
				if err := h.m.HandleLease(ctx, ev); err != nil {
					b.Fatal(err)
				}
				b.StopTimer()
				benchForget(b, h.m, hw.String())
				b.StartTimer()
			}
		})
	}
}

// benchForget removes a device from the enforcer and deletes its record.
func benchForget(b *testing.B, m *Manager, mac string) {
	b.Helper()
	ctx := context.Background()
	if err := m.do(ctx, func() error { m.remove(mac); return nil }); err != nil {
		b.Fatal(err)
	}
	err := m.do(ctx, func() error {
		if d := m.st.devices[mac]; d == nil || d.State != store.StateRemoved {
			return fmt.Errorf("device %s not removed", mac)
		}
		if err := m.cfg.Store.Update(func(tx *store.Tx) error { return tx.Devices().Delete(mac) }); err != nil {
			return err
		}
		m.dropDevice(mac)
		return nil
	})
	if err != nil {
		b.Fatal(err)
	}
}

// BenchmarkDNSUpdate is one resolver answer for a name the installed
// devices' policy uses (one address out of 8 gets a later expiry, so the
// peer's elements change every time), up to the enforcer holding it, with
// N other devices installed besides one device using the name.
func BenchmarkDNSUpdate(b *testing.B) {
	for _, n := range benchSizes {
		b.Run(fmt.Sprintf("installed=%d", n), func(b *testing.B) {
			h, _ := benchInstalled(b, n+1, benchClass)
			ctx := context.Background()
			base := time.Now().Add(time.Hour)
			b.ReportAllocs()
			b.ResetTimer()
			for i := range b.N {
				u := resolver.Update{Name: "cloud.example", Addrs: []netip.Addr{netip.AddrFrom4([4]byte{203, 0, 113, byte(1 + i%8)})},
					Expires: base.Add(time.Duration(i) * time.Second), Source: resolver.Active}
				if err := h.m.HandleDNS(ctx, u); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
