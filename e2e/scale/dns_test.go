package scale

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"time"

	"github.com/miekg/dns"

	"github.com/openmud/mud/internal/lab/framegen"
	"github.com/openmud/mud/internal/lab/netlab"
	"github.com/openmud/mud/internal/netns"
)

// dnsProbe is an enforced device with names that asks the gateway's DNS
// server for cloudHost from a kernel socket, so that each answer goes
// through mudd's hold and release: the answer is dropped on its way out of
// the LAN bridge, mudd's snooper applies it to the device's sets and
// re-injects it. The time from query to answer is therefore the lab's
// DNS round trip plus answer → set updated. The device is the device
// namespace's own interface, given a MAC of its own: it joins over DHCPv6
// with that MAC (through the frame generator on that interface, announcing
// a MUD URL) and then holds its leased address.
type dnsProbe struct {
	conn *net.UDPConn
	id   uint16
}

// newDNSProbe joins the probe device and opens its socket. The device is
// one of s.all from then on.
func (s *scaleLab) newDNSProbe() (*dnsProbe, error) {
	dev := s.lab.Devices[0]
	// A MAC of the simulated devices' prefix, which the watcher follows.
	mac := macFor(0xffff0001)
	if _, err := s.lab.Run(s.ctx, dev.NS, "ip", "link", "set", "dev", dev.Iface, "address", mac.String()); err != nil {
		return nil, err
	}
	c := framegen.Client{MAC: mac, Hostname: "dnsprobe", MUDURL: s.urls[0]}
	if err := s.neighbours([]framegen.Client{c}); err != nil {
		return nil, err
	}
	r := s.gen6.Join(s.ctx, []framegen.Client{c}, 0)[0]
	if r.Err != nil {
		return nil, fmt.Errorf("the DNS probe's DHCPv6 exchange: %w", r.Err)
	}
	ctx, cancel := context.WithTimeout(s.ctx, 30*time.Second)
	defer cancel()
	at, err := s.w.wait(ctx, mac, r.Addr, time.Time{})
	if err != nil {
		return nil, fmt.Errorf("the DNS probe's binding: %w", err)
	}
	s.all = append(s.all, arrival{Result: r, Active: at})
	if _, err := s.lab.Run(s.ctx, dev.NS, "ip", "-6", "addr", "add", r.Addr.String()+"/64", "dev", dev.Iface, "nodad"); err != nil {
		return nil, err
	}
	p := &dnsProbe{}
	err = netns.Do(dev.NS, func() error {
		var err error
		p.conn, err = net.DialUDP("udp6", net.UDPAddrFromAddrPort(netip.AddrPortFrom(r.Addr, 0)),
			net.UDPAddrFromAddrPort(netip.AddrPortFrom(netlab.GatewayLAN6, 53)))
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("opening the DNS probe's socket: %w", err)
	}
	s.t.Cleanup(func() { p.conn.Close() })
	// An answer proves the path: the device may ask the gateway's DNS
	// server, and its answers are released. The first queries may find
	// the address still unknown to the gateway's neighbour table.
	var errs []error
	for range 10 {
		_, err := p.ask()
		if err == nil {
			return p, nil
		}
		errs = append(errs, err)
	}
	return nil, fmt.Errorf("the DNS probe's queries: %w", errors.Join(errs...))
}

// ask sends one query for cloudHost and returns the time until its answer
// (at most dnsWait).
func (p *dnsProbe) ask() (time.Duration, error) {
	p.id++
	q := new(dns.Msg).SetQuestion(dns.Fqdn(cloudHost), dns.TypeA)
	q.Id = p.id
	wire, err := q.Pack()
	if err != nil {
		return 0, err
	}
	start := time.Now()
	if _, err := p.conn.Write(wire); err != nil {
		return 0, err
	}
	if err := p.conn.SetReadDeadline(start.Add(dnsWait)); err != nil {
		return 0, err
	}
	buf := make([]byte, 1500)
	for {
		n, err := p.conn.Read(buf)
		if err != nil {
			return 0, fmt.Errorf("no answer to query %d within %v: %w", q.Id, dnsWait, err)
		}
		var a dns.Msg
		if a.Unpack(buf[:n]) != nil || a.Id != q.Id {
			continue // an earlier query's late answer
		}
		if len(a.Answer) == 0 {
			return 0, fmt.Errorf("answer %d to %s has no address (rcode %s)", a.Id, cloudHost, dns.RcodeToString[a.Rcode])
		}
		return time.Since(start), nil
	}
}

// dnsWait is how long a query waits for its answer: far beyond the hold
// timeout (resolver.DefaultApplyTimeout, 100 ms), after which mudd
// releases an answer it could not apply.
const dnsWait = time.Second

// run asks every interval until stop is closed and returns the round
// trips of the answered queries and the errors of the others.
func (p *dnsProbe) run(stop <-chan struct{}, every time.Duration) (rtts []time.Duration, lost []error) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if d, err := p.ask(); err != nil {
			lost = append(lost, err)
		} else {
			rtts = append(rtts, d)
		}
		select {
		case <-stop:
			return rtts, lost
		case <-t.C:
		}
	}
}

// sample asks n times, every interval.
func (p *dnsProbe) sample(n int, every time.Duration) (rtts []time.Duration, lost []error) {
	for i := range n {
		if i > 0 {
			time.Sleep(every)
		}
		if d, err := p.ask(); err != nil {
			lost = append(lost, err)
		} else {
			rtts = append(rtts, d)
		}
	}
	return rtts, lost
}

// holdTimeouts counts the snooped answers mudd could not apply in time
// and released anyway (the hold timeout, or a failed update), from its
// /metrics.
func (s *scaleLab) holdTimeouts() (int, error) {
	n, err := s.gw.Metric("mud_dns_apply_failures_total")
	return int(n), err
}

func logLost(tb interface{ Logf(string, ...any) }, what string, lost []error) {
	if len(lost) > 0 {
		tb.Logf("%s: %d queries unanswered: %v", what, len(lost), errors.Join(lost[:min(3, len(lost))]...))
	}
}
