package framegen

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/openmud/mud/dhcpsnoop"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/packet/capture"
)

// A client that gives up on its REQUEST while the server is stopped
// releases: dnsmasq, running again, answers the REQUESTs late and leases,
// then frees the lease on the RELEASE (no lease left in its lease file);
// and a gateway snooping DHCP (dhcpsnoop's tracker, reading the frames
// the gateway's bridge saw, as mudd does) ends with the device unbound,
// however the first RELEASE and the late answer were ordered on the
// bridge: the client released again after the server's answer to a
// message it sent after the REQUESTs.
func TestLabGivenUpExchangeReleased(t *testing.T) {
	for _, fam := range []int{4, 6} {
		t.Run(fmt.Sprintf("DHCPv%d", fam), func(t *testing.T) {
			lab := netlab.New(t, netlab.Config{Devices: 1})
			netlab.RequireCommand(t, "dnsmasq")
			dm := lab.StartDNSMasq(t, netlab.DNSMasqConfig{
				Range4: "192.0.2.100,192.0.2.199,255.255.255.0,1h",
				Range6: "2001:db8:1::100,2001:db8:1::1ff,64,1h",
			})
			t.Cleanup(func() {
				_ = dm.Cmd.Process.Signal(syscall.SIGCONT)
				if t.Failed() {
					t.Logf("dnsmasq log:\n%s", dm.Out.String())
				}
			})
			snoop := snoopBridge(t, lab.GW.NS)
			dev := lab.Devices[0]
			g, err := Open(Config{NetNS: dev.NS, Iface: dev.Iface, Family: fam, Retransmit: 200 * time.Millisecond, Tries: 2, Router6: netlab.GatewayLAN6})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(g.Close)
			var (
				hookMu  sync.Mutex
				hookErr error
			)
			g.hook = func(p phase, sent bool) {
				var err error
				switch {
				case p == phaseRequest && !sent:
					// The REQUESTs wait in dnsmasq's socket.
					err = stop(dm.Cmd.Process.Pid)
				case p == phaseRelease && sent:
					time.Sleep(20 * time.Millisecond)
					err = dm.Cmd.Process.Signal(syscall.SIGCONT)
				}
				hookMu.Lock()
				hookErr = errors.Join(hookErr, err)
				hookMu.Unlock()
			}
			c := Client{MAC: net.HardwareAddr{0x02, 0x5c, 0, 0, 0, byte(fam)}, Hostname: "dev", MUDURL: "https://mud.example.com/a.json"}
			ctx, cancel := context.WithTimeout(t.Context(), 60*time.Second)
			defer cancel()
			r := g.Join(ctx, []Client{c}, 0)[0]
			hookMu.Lock()
			err = hookErr
			hookMu.Unlock()
			if err != nil {
				t.Fatal(err)
			}
			if r.Err == nil || !r.Released || len(r.Late) != 1 || strings.Contains(r.Err.Error(), "confirmation") {
				t.Fatalf("result: released %v, late leases %v, error %v; want given up, a late lease, released", r.Released, r.Late, r.Err)
			}
			t.Logf("%v", r.Err)
			// The lease file is rewritten once dnsmasq handled the RELEASE.
			leases := filepath.Join(dm.Dir, "leases")
			deadline := time.Now().Add(5 * time.Second)
			for {
				b, err := os.ReadFile(leases)
				if err != nil && !os.IsNotExist(err) {
					t.Fatal(err)
				}
				if !strings.Contains(string(b), r.Late[0].String()) {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("dnsmasq still leases %s:\n%s", r.Late[0], b)
				}
				time.Sleep(50 * time.Millisecond)
			}
			evs, devices := snoop(200 * time.Millisecond)
			var kinds []string
			bound := false
			for _, ev := range evs {
				if ev.MAC.String() == c.MAC.String() && !ev.Kind.IsFlag() {
					kinds = append(kinds, string(ev.Kind))
					bound = bound || ev.Kind == dhcpsnoop.KindBound
				}
			}
			if !bound || devices != 0 || kinds[len(kinds)-1] != string(dhcpsnoop.KindReleased) {
				t.Errorf("the snooper's events %v, %d devices bound at the end; want bound by the late answer, then released, none bound", kinds, devices)
			}
		})
	}
}

// stop stops the process pid and returns once it is stopped.
func stop(pid int) error {
	if err := syscall.Kill(pid, syscall.SIGSTOP); err != nil {
		return err
	}
	deadline := time.Now().Add(2 * time.Second)
	for {
		b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
		if err != nil {
			return err
		}
		if f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+1:])); len(f) > 0 && f[0] == "T" {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("process %d did not stop", pid)
		}
		time.Sleep(time.Millisecond)
	}
}

// snoopBridge feeds the frames of the gateway's LAN bridge to a dhcpsnoop
// tracker; the function returned waits quiet, stops, and returns the
// tracker's events and the devices it holds bound.
func snoopBridge(t *testing.T, ns string) func(quiet time.Duration) ([]dhcpsnoop.Event, uint64) {
	conn, err := capture.Open(netlab.LANBridge, capture.Config{NetNS: ns})
	if err != nil {
		t.Fatal(err)
	}
	tr := dhcpsnoop.NewTracker(dhcpsnoop.TrackerConfig{})
	var (
		mu   sync.Mutex
		evs  []dhcpsnoop.Event
		wg   sync.WaitGroup
		once sync.Once
	)
	wg.Add(1)
	go func() {
		defer wg.Done()
		buf := make([]byte, 65536)
		for {
			f, _, err := conn.ReadFrame(buf)
			if err != nil {
				return
			}
			es, _ := tr.HandleFrame(f, netlab.LANBridge, time.Now())
			mu.Lock()
			evs = append(evs, es...)
			mu.Unlock()
		}
	}()
	done := func() {
		_ = conn.SetReadDeadline(time.Unix(1, 0))
		wg.Wait()
		_ = conn.Close()
	}
	t.Cleanup(func() { once.Do(done) })
	return func(quiet time.Duration) ([]dhcpsnoop.Event, uint64) {
		time.Sleep(quiet)
		once.Do(done)
		mu.Lock()
		defer mu.Unlock()
		return evs, tr.Stats().Devices
	}
}
