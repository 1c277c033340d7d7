package e2e

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// bulb is the RFC 8520 §9 light bulb made IPv4, plus lateral traffic with
// its manufacturer: it may open TCP connections to port 443 of the cloud
// service and receive the answers, talk TCP with devices of the same
// manufacturer, and nothing else.
func bulb(u, mfg, model string) gwlab.File {
	same := map[string]any{"same-manufacturer": []any{nil}}
	return gwlab.File{URL: u, Mfg: mfg, Model: model,
		From: []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted, Initiated: "from-device"}, {MUD: same}},
		To:   []gwlab.Rule{{Remote: cloudHost, RemotePort: permitted, Initiated: "from-device"}, {MUD: same}},
	}
}

var bulbURL = "https://" + mudHost + "/lightbulb2000.json"

// bulbEnv is a lab whose MUD server publishes the bulb file.
func bulbEnv(t *testing.T, devices int, gw gwlab.Config) *env {
	t.Helper()
	e := newEnv(t, envConfig{devices: devices, gw: gw})
	e.publish(bulb(bulbURL, "Example", "lightbulb2000"))
	return e
}

// A device with a MUD file reaches its permitted host and port; another host
// and another port are refused; the time from the DHCP ACK to enforcement is
// measured (from outside mudd) and logged. RFC 8520 §1.6 (HTTPS with a
// validated server certificate), §13.2 (a verified signature before use), §5
// (default deny), RFC 9726 (names resolved to the addresses the device gets).
func TestPermittedHostAndPort(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	arr, err := WatchArrivals(e.lab.GW.NS, netlab.LANBridge)
	if err != nil {
		t.Fatal(err)
	}
	defer arr.Close()
	h := e.lab.Devices[0]
	_, ip := e.join(0, gwlab.Udhcpc, "bulb-1", bulbURL)
	ctx, cancel := context.WithTimeout(e.ctx, joinWait)
	defer cancel()
	lat, err := arr.Wait(ctx, h.MAC)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("DHCP ACK → binding of %s (%s) in the kernel: %.2f ms (measured outside mudd: AF_PACKET capture of the ACK on %s, nftables netlink notification)",
		h.MAC, lat.IP, float64(lat.Duration.Microseconds())/1000, netlab.LANBridge)
	if lat.IP != ip {
		t.Errorf("ACK for %s, but the device configured %s", lat.IP, ip)
	}

	d := e.waitState(h, api.StateEnforced)
	if d.MUDURL != bulbURL || d.Hostname != "bulb-1" || !slices.Contains(d.IPs, ip) || d.MUD == nil || d.MUD.Signature != api.SignatureValid {
		t.Errorf("mudctl devices: %+v (mud %+v)", d, d.MUD)
	}
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("bulb → cloud:443 (permitted)", h.NS, cloud, permitted)
	e.refuse("bulb → cloud:8080 (another port)", h.NS, cloud, otherPort)
	e.refuse("bulb → other:443 (another host)", h.NS, other, permitted)
	e.refuse("bulb → other:8080", h.NS, other, otherPort)
	// The refused flows are visible to the admin as drops.
	var pv api.PolicyView
	if err := json.Unmarshal([]byte(e.mudctl("policy", "show", h.MAC.String(), "-o", "json")), &pv); err != nil {
		t.Fatal(err)
	}
	if pv.FromDevice.Dropped.Packets == 0 {
		t.Errorf("policy show counts no dropped packet from the device: %+v", pv.FromDevice)
	}
	// --nft shows the device's ruleset as the kernel holds it, with the
	// ids mudd allocated, not an illustration.
	nft := e.mudctl("policy", "show", h.MAC.String(), "--nft")
	if !strings.Contains(nft, "# device "+h.MAC.String()+" (enforce") || !strings.Contains(nft, "as installed") || strings.Contains(nft, "illustrative") {
		t.Errorf("policy show --nft does not show the installed ruleset:\n%s", nft)
	}
}

// Two devices of the same manufacturer (different models, one URL authority)
// talk across the bridge; a device of another manufacturer can reach
// neither, nor they it. RFC 8520 §4.2 (same-manufacturer as a live set keyed
// by the URL authority).
func TestLateralSameManufacturer(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 3, gw: gwlab.Config{MUDHosts: []string{mudHost, mudHost2}}})
	plugURL := "https://" + mudHost + "/plug100.json"
	camURL := "https://" + mudHost2 + "/cam7.json"
	e.publish(bulb(bulbURL, "Example", "lightbulb2000"))
	e.publish(lateralFile(plugURL, "plug100", otherPort)) // names its port: replies pass only as replies of a permitted flow
	e.publish(bulb(camURL, "Other", "cam7"))
	b, p, c := e.lab.Devices[0], e.lab.Devices[1], e.lab.Devices[2]
	for _, h := range []*netlab.Host{b, p, c} {
		e.echo(h, otherPort)
	}
	_, bIP := e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	_, pIP := e.join(1, gwlab.Udhcpc, "plug", plugURL)
	_, cIP := e.join(2, gwlab.Udhcpc, "cam", camURL)
	for _, h := range []*netlab.Host{b, p, c} {
		e.waitState(h, api.StateEnforced)
	}
	e.pass("bulb → plug (same manufacturer)", b.NS, pIP, otherPort)
	e.pass("plug → bulb (same manufacturer)", p.NS, bIP, otherPort)
	e.refuse("cam → bulb (another manufacturer)", c.NS, bIP, otherPort)
	e.refuse("cam → plug (another manufacturer)", c.NS, pIP, otherPort)
	e.refuse("bulb → cam (another manufacturer)", b.NS, cIP, otherPort)
}

// controller, my-controller and local-networks behave as configured: the
// controller class from policy.controllers, the device's my-controller from
// policy.my_controllers and then from `mudctl controllers set --my` (which
// wins), local-networks defaulting to the LAN prefix. RFC 8520 §4.5, §4.6,
// §4.7 (a URL-form controller is never fetched).
func TestControllersAndLocalNetworks(t *testing.T) {
	t.Parallel()
	const (
		ctlPort   = 8081
		myPort    = 8082
		localPort = 8083
	)
	hub := "https://" + mudHost + "/controllers/hub" // URL form: never fetched
	u := "https://" + mudHost + "/thermostat.json"
	cloudIP, otherIP := serverAddr(2), serverAddr(3)
	e := newEnv(t, envConfig{devices: 2, gw: gwlab.Config{Policy: fmt.Sprintf(
		"  controllers:\n    %q: [%s/32]\n  my_controllers:\n    %q: [%s/32]\n", hub, cloudIP, u, cloudIP)}})
	lc := func(port int) gwlab.Rule {
		return gwlab.Rule{MUD: map[string]any{"local-networks": []any{nil}}, RemotePort: port}
	}
	e.publish(gwlab.File{URL: u, Mfg: "Example", Model: "thermostat",
		From: []gwlab.Rule{
			{MUD: map[string]any{"controller": hub}, RemotePort: ctlPort},
			{MUD: map[string]any{"my-controller": []any{nil}}, RemotePort: myPort},
			lc(localPort),
		},
		To: []gwlab.Rule{
			{MUD: map[string]any{"controller": hub}, RemotePort: ctlPort},
			{MUD: map[string]any{"my-controller": []any{nil}}, RemotePort: myPort},
			lc(localPort), // the answers (source port), also across the bridge
		},
	})
	for _, h := range []*netlab.Host{e.cloud, e.other, e.lab.Devices[1]} {
		e.echo(h, ctlPort, myPort, localPort)
	}
	th := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "thermostat", u)
	_, peerIP := e.join(1, gwlab.Udhcpc, "laptop", "")
	e.waitState(th, api.StateEnforced)

	e.pass("thermostat → controller (config) :8081", th.NS, cloudIP, ctlPort)
	e.refuse("thermostat → non-controller :8081", th.NS, otherIP, ctlPort)
	e.pass("thermostat → my-controller (config) :8082", th.NS, cloudIP, myPort)
	e.refuse("thermostat → not its my-controller :8082", th.NS, otherIP, myPort)
	e.pass("thermostat → LAN peer :8083 (local-networks = LAN prefix)", th.NS, peerIP, localPort)
	e.refuse("thermostat → internet host :8083 (not local)", th.NS, cloudIP, localPort)

	// The admin moves the device's my-controller with mudctl; the stored
	// mapping wins over the configuration's.
	e.mudctl("controllers", "set", "--my", u, otherIP.String()+"/32")
	e.pass("thermostat → my-controller (mudctl) :8082", th.NS, otherIP, myPort)
	e.refuse("thermostat → former my-controller :8082", th.NS, cloudIP, myPort)
	var cs []api.Controller
	if err := json.Unmarshal([]byte(e.mudctl("controllers", "list", "-o", "json")), &cs); err != nil {
		t.Fatal(err)
	}
	has := func(uri string, kind api.ControllerKind, src string, p netip.Prefix) bool {
		return slices.ContainsFunc(cs, func(c api.Controller) bool {
			return c.URI == uri && c.Kind == kind && c.Source == src && slices.Contains(c.Prefixes, p)
		})
	}
	if !has(hub, api.KindController, "config", netip.PrefixFrom(cloudIP, 32)) || !has(u, api.KindMyController, "mudctl", netip.PrefixFrom(otherIP, 32)) {
		t.Errorf("mudctl controllers list: %+v", cs)
	}
	if slices.Contains(e.gw.MUD.Requests(), "/controllers/hub") {
		t.Errorf("mudd fetched the URL-form controller %s (RFC 8520 §4.6: MUST NOT)", hub)
	}
}

// direction-initiated: the device connects out to the cloud's port 443; the
// cloud connecting in to the device's port 443 is refused (RFC 8520 §4.8).
func TestDirectionInitiatedRefusesInbound(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	e.echo(h, permitted)
	_, ip := e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	cloud := e.resolve(h, cloudHost)
	e.pass("bulb → cloud:443 (from-device initiated)", h.NS, cloud, permitted)
	e.refuse("cloud → bulb:443 (initiated towards the device)", e.cloud.NS, ip, permitted)
}

// A device without a MUD URL is untouched — it reaches anything and is
// reachable, mudd lists it without a MUD URL, and no element of our tables
// names it — while a MUD device next to it is enforced. RFC 8520 §16 (MUD
// never grants more than, and here exactly, the no-MUD baseline).
func TestDeviceWithoutMUDURLUntouched(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 2, gwlab.Config{})
	lap, b := e.lab.Devices[0], e.lab.Devices[1]
	e.echo(lap, otherPort)
	_, lapIP := e.join(0, gwlab.Udhcpc, "laptop", "")
	e.join(1, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(b, api.StateEnforced)
	d, err := e.gw.WaitDevice(e.ctx, lap.MAC.String(), joinWait, func(d api.Device) bool { return len(d.IPs) > 0 })
	if err != nil {
		t.Fatal(err)
	}
	if d.MUDURL != "" || d.State == api.StateEnforced || d.State == api.StateQuarantined || d.Hostname != "laptop" || d.PolicyID != "" {
		t.Errorf("mudctl devices lists the laptop as %+v", d)
	}
	other := e.resolve(lap, otherHost)
	e.pass("laptop → other:8080", lap.NS, other, otherPort)
	e.pass("laptop → other:443", lap.NS, other, permitted)
	e.pass("other → laptop:8080 (inbound)", e.other.NS, lapIP, otherPort)
	e.refuse("bulb → other:8080 (the MUD device next to it is enforced)", b.NS, other, otherPort)
	if e.inKernel(lap.MAC) {
		t.Errorf("our tables name the laptop's MAC %s:\n%s", lap.MAC, e.nftTables())
	}
	if !e.inKernel(b.MAC) {
		t.Errorf("our tables do not name the bulb's MAC %s", b.MAC)
	}
}

// The MUD server goes down; the cached, verified file keeps being enforced —
// when the device re-joins, after a failed refresh, and after mudd restarts
// (RFC 8520 §1.6: keep using the file after a failed fetch; §3.5: expiry does
// not end access).
func TestMUDServerDownKeepsCachedFile(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	dev, _ := e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	check := func(when string) {
		t.Helper()
		d := e.waitState(h, api.StateEnforced)
		if d.MUD == nil || d.MUD.Signature != api.SignatureValid {
			t.Errorf("%s: MUD file %+v", when, d.MUD)
		}
		e.pass(when+": bulb → cloud:443", h.NS, cloud, permitted)
		e.refuse(when+": bulb → other:8080", h.NS, other, otherPort)
	}
	e.gw.MUD.Close()
	fetched := len(e.gw.MUD.Requests())

	// The device leaves without a release and joins again: a new
	// DHCPDISCOVER announcing the URL.
	if err := dev.Stop(); err != nil {
		t.Fatal(err)
	}
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	check("re-joined with the MUD server down")

	// An admin's refresh cannot reach the server; the cached file stays.
	if _, err := e.gw.Mudctl(e.ctx, "refresh", h.MAC.String()); err != nil {
		t.Logf("mudctl refresh with the MUD server down: %v", err)
	}
	check("after a failed refresh")

	if err := e.gw.StopMudd(); err != nil {
		t.Fatal(err)
	}
	if err := e.gw.StartMudd(e.ctx); err != nil {
		t.Fatal(err)
	}
	check("after a mudd restart")
	if n := len(e.gw.MUD.Requests()); n != fetched {
		t.Errorf("the closed MUD server saw %d more requests", n-fetched)
	}
}

// A file whose signature does not verify puts the device in pending-approval
// with the configured fallback (policy.on_failure "block": nothing but DHCP
// and DNS; then, reloaded, "baseline": the no-MUD treatment); `mudctl
// approve` enforces the file (RFC 8520 §13.2: cease processing until an
// administrator approves).
func TestBadSignaturePendingApproval(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1, gw: gwlab.Config{Policy: "  on_failure: block\n"}})
	f := bulb(bulbURL, "Example", "lightbulb2000")
	body := f.JSON()
	// A valid signature, but over other bytes: one flipped byte is enough.
	altered := slices.Clone(body)
	altered[len(altered)-2] ^= ' ' ^ '\t'
	sig, err := e.gw.PKI.Signer.SignDetached(altered)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.gw.PublishRaw(f.URL, body, f.SignatureURL(), sig); err != nil {
		t.Fatal(err)
	}
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	d := e.waitState(h, api.StatePendingApproval)
	if len(d.PendingReasons) == 0 || d.MUD == nil || d.MUD.Signature != api.SignatureInvalid {
		t.Errorf("pending device: reasons %q, MUD %+v", d.PendingReasons, d.MUD)
	}
	// DNS still works under "block" (the resolution is the device's own).
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.refuse("pending, block: bulb → cloud:443", h.NS, cloud, permitted)
	e.refuse("pending, block: bulb → other:8080", h.NS, other, otherPort)

	if err := e.gw.ReloadPolicy(e.ctx, "  on_failure: baseline\n"); err != nil {
		t.Fatal(err)
	}
	e.pass("pending, baseline: bulb → other:8080 (no-MUD treatment)", h.NS, other, otherPort)
	e.waitState(h, api.StatePendingApproval)

	e.mudctl("approve", h.MAC.String())
	e.waitState(h, api.StateEnforced)
	e.pass("approved: bulb → cloud:443", h.NS, cloud, permitted)
	e.refuse("approved: bulb → other:8080", h.NS, other, otherPort)
}

// `mudctl quarantine` cuts the device's established connection (the next
// round trip on it fails) and refuses new ones; `mudctl release` restores the
// policy.
func TestQuarantineCutsEstablished(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	cloud := e.resolve(h, cloudHost)
	e.pass("bulb → cloud:443", h.NS, cloud, permitted)

	conn, err := netlab.Dial(h.NS, "tcp", netlab.HostPort(cloud, permitted).String(), passWait)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	if err := roundTrip(conn, passWait); err != nil {
		t.Fatalf("the established connection does not work before the quarantine: %v", err)
	}
	e.mudctl("quarantine", h.MAC.String())
	if d, _, _ := e.gw.Device(e.ctx, h.MAC.String()); d.State != api.StateQuarantined {
		t.Errorf("after mudctl quarantine the device is %s", d.State)
	}
	if err := roundTrip(conn, 1500*time.Millisecond); err == nil {
		t.Error("the connection established before the quarantine still works")
	}
	e.refuse("quarantined: new connection bulb → cloud:443", h.NS, cloud, permitted)

	e.mudctl("release", h.MAC.String())
	e.waitState(h, api.StateEnforced)
	e.pass("released: bulb → cloud:443", h.NS, cloud, permitted)
}

// roundTrip writes a line on c and reads it back within timeout.
func roundTrip(c net.Conn, timeout time.Duration) error {
	_ = c.SetDeadline(time.Now().Add(timeout))
	msg := []byte("mud-e2e\n")
	if _, err := c.Write(msg); err != nil {
		return err
	}
	got := make([]byte, len(msg))
	_, err := io.ReadFull(c, got)
	return err
}

// mudd killed with SIGKILL and restarted: our tables are identical
// afterwards (timeouts and element order aside), and a prober sending refused
// traffic the whole time gets nothing through.
func TestKillAndRestartKeepsTables(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 2, gwlab.Config{})
	b, lap := e.lab.Devices[0], e.lab.Devices[1]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.join(1, gwlab.Udhcpc, "laptop", "")
	e.waitState(b, api.StateEnforced)
	cloud := e.resolve(b, cloudHost)
	e.pass("bulb → cloud:443", b.NS, cloud, permitted)
	before := normalizeRuleset(e.nftTables())

	// The sink counts whatever reaches it from the bulb, which its policy
	// refuses: TCP connections and UDP datagrams to the other host.
	sink := newSink(t, e.other, 9000)
	stop := make(chan struct{})
	var probes atomic.Int64
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		dst := netlab.HostPort(e.other.IPv4, 9000).String()
		for {
			select {
			case <-stop:
				return
			default:
			}
			if c, err := netlab.Dial(b.NS, "tcp", dst, 100*time.Millisecond); err == nil {
				c.Close()
			}
			if c, err := netlab.Dial(b.NS, "udp", dst, 100*time.Millisecond); err == nil {
				_, _ = c.Write([]byte("probe"))
				c.Close()
			}
			probes.Add(1)
		}
	}()
	defer func() {
		close(stop)
		wg.Wait()
	}()
	time.Sleep(300 * time.Millisecond)
	if err := e.gw.KillMudd(); err != nil {
		t.Fatal(err)
	}
	downAt := probes.Load()
	time.Sleep(time.Second) // mudd is down: our rules must hold alone
	if probes.Load() == downAt {
		t.Error("the prober made no attempt while mudd was down")
	}
	if err := e.gw.StartMudd(e.ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := sink.count(); n != 0 {
		t.Errorf("%d refused packets/connections got through around the kill and restart", n)
	}
	// The sink does count what is not refused: the laptop (no MUD) reaches it.
	if c, err := netlab.Dial(lap.NS, "tcp", netlab.HostPort(e.other.IPv4, 9000).String(), passWait); err != nil {
		t.Errorf("laptop → other:9000: %v", err)
	} else {
		c.Close()
	}
	if err := gwlab.Poll(e.ctx, passWait, func() error {
		if sink.count() == 0 {
			return errors.New("the sink counted nothing")
		}
		return nil
	}); err != nil {
		t.Errorf("laptop → other:9000: %v", err)
	}

	// Names are re-resolved after the restart; give the kernel a moment
	// to hold everything it held before.
	var after string
	restarted := time.Now()
	err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		after = normalizeRuleset(e.nftTables())
		if after != before {
			return errors.New("differs")
		}
		return nil
	})
	if err != nil {
		t.Errorf("our tables differ after the restart:\n%s\n--- before ---\n%s\n--- after ---\n%s", diffLines(before, after), before, after)
	} else {
		t.Logf("tables identical to before the kill %.0f ms after mudd answered again", float64(time.Since(restarted).Microseconds())/1000)
	}
	e.waitState(b, api.StateEnforced)
	e.pass("after restart: bulb → cloud:443", b.NS, cloud, permitted)
}

// sink counts TCP connections accepted and UDP datagrams received on a
// host's port.
type sink struct {
	n atomic.Int64
}

func newSink(t *testing.T, h *netlab.Host, port int) *sink {
	t.Helper()
	s := &sink{}
	addr := fmt.Sprintf("0.0.0.0:%d", port)
	ln, err := netlab.Listen(h.NS, "tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := netlab.ListenPacket(h.NS, "udp", addr)
	if err != nil {
		ln.Close()
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(2)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s.n.Add(1)
			c.Close()
		}
	}()
	go func() {
		defer wg.Done()
		buf := make([]byte, 512)
		for {
			if _, _, err := pc.ReadFrom(buf); err != nil {
				return
			}
			s.n.Add(1)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		pc.Close()
		wg.Wait()
	})
	return s
}

func (s *sink) count() int64 { return s.n.Load() }

// `nft delete table inet mud` (and the bridge table) from outside mudd:
// restored within a second, device and policy included, enforcing again,
// and an event names what was changed.
func TestDeletedTablesRestored(t *testing.T) {
	t.Parallel()
	e := bulbEnv(t, 1, gwlab.Config{})
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "bulb", bulbURL)
	e.waitState(h, api.StateEnforced)
	cloud, other := e.resolve(h, cloudHost), e.resolve(h, otherHost)
	e.pass("bulb → cloud:443", h.NS, cloud, permitted)
	for _, fam := range []string{"inet", "bridge"} {
		if _, err := e.gw.NFT(e.ctx, "delete", "table", fam, "mud"); err != nil {
			t.Fatal(err)
		}
		deleted := time.Now()
		var took time.Duration
		err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
			out, err := e.gw.NFT(e.ctx, "list", "table", fam, "mud")
			if err != nil {
				return err
			}
			if !strings.Contains(out, h.MAC.String()) {
				return fmt.Errorf("table %s mud is back without the device", fam)
			}
			took = time.Since(deleted)
			return nil
		})
		if err != nil {
			t.Fatalf("table %s mud not restored: %v", fam, err)
		}
		t.Logf("table %s mud restored %.0f ms after `nft delete table %s mud`", fam, float64(took.Microseconds())/1000, fam)
		if took > time.Second {
			t.Errorf("table %s mud restored after %v; enforcer/README.md promises within 1 s", fam, took)
		}
	}
	err := gwlab.Poll(e.ctx, 5*time.Second, func() error {
		out := e.mudctl("events", "-o", "json")
		for _, fam := range []string{"inet", "bridge"} {
			if !regexp.MustCompile(`"nftables-tampered"[^}]*table ` + fam + ` mud deleted`).MatchString(out) {
				return fmt.Errorf("no nftables-tampered event naming table %s mud:\n%s", fam, out)
			}
		}
		return nil
	})
	if err != nil {
		t.Error(err)
	}
	e.refuse("restored: bulb → other:8080", h.NS, other, otherPort)
	e.pass("restored: bulb → cloud:443", h.NS, cloud, permitted)
}
