package e2e

// DNS answers as an attack on the allow-lists. mudd learns a device's
// addresses from the DNS answers the gateway sends it, and only the
// gateway's own answers may grant (dns.trusted_sources): not an answer it
// routes from an internet DNS server the device may reach, nor one forged
// by another host on the LAN.

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/packet"
	"github.com/miekg/dns"
	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
	"github.com/openmud/mud/internal/lab/netlab"
)

// refusedLog is what mudd logs for an answer that may not grant.
const refusedLog = "adds no address"

// forgedAnswer is a DNS response claiming that name has the address a.
func forgedAnswer(name string, a netip.Addr) *dns.Msg {
	m := new(dns.Msg)
	m.SetQuestion(dns.Fqdn(name), dns.TypeA)
	m.Response, m.RecursionAvailable = true, true
	m.Answer = []dns.RR{&dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: 300}, A: a.AsSlice()}}
	return m
}

// lyingDNS serves DNS on h's port 53 (UDP and TCP), answering every A
// question for name with a.
func (e *env) lyingDNS(h *netlab.Host, name string, a netip.Addr) {
	e.t.Helper()
	addr := netip.AddrPortFrom(h.IPv4, 53).String()
	handler := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		resp := new(dns.Msg)
		resp.SetReply(req)
		if len(req.Question) == 1 && strings.EqualFold(req.Question[0].Name, dns.Fqdn(name)) && req.Question[0].Qtype == dns.TypeA {
			resp.Answer = forgedAnswer(name, a).Answer
		} else {
			resp.Rcode = dns.RcodeNameError
		}
		_ = w.WriteMsg(resp)
	})
	pc, err := netlab.ListenPacket(h.NS, "udp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	ln, err := netlab.Listen(h.NS, "tcp", addr)
	if err != nil {
		e.t.Fatal(err)
	}
	for _, s := range []*dns.Server{{PacketConn: pc, Handler: handler}, {Listener: ln, Handler: handler}} {
		go func() { _ = s.ActivateAndServe() }()
		e.t.Cleanup(func() { _ = s.Shutdown() })
	}
}

// ask sends the device's own query for name to server over network and
// returns the address answered.
func ask(ns, network string, server netip.AddrPort, name string) (netip.Addr, error) {
	var got netip.Addr
	err := netlab.Do(ns, func() error {
		m := new(dns.Msg)
		m.SetQuestion(dns.Fqdn(name), dns.TypeA)
		resp, _, err := (&dns.Client{Net: network, Timeout: 3 * time.Second}).Exchange(m, server.String())
		if err != nil {
			return err
		}
		for _, rr := range resp.Answer {
			if a, ok := rr.(*dns.A); ok {
				got, _ = netip.AddrFromSlice(a.A.To4())
				return nil
			}
		}
		return fmt.Errorf("no address in %v", resp.Answer)
	})
	return got, err
}

// waitLogged waits until mudd's log has a line holding every one of want.
func (e *env) waitLogged(what string, want ...string) {
	e.t.Helper()
	err := gwlab.Poll(e.ctx, passWait, func() error {
	lines:
		for line := range strings.SplitSeq(e.gw.MuddLog.String(), "\n") {
			for _, w := range want {
				if !strings.Contains(line, w) {
					continue lines
				}
			}
			return nil
		}
		return fmt.Errorf("no line with %q", want)
	})
	if err != nil {
		e.t.Errorf("mudd did not log %s: %v", what, err)
	}
}

// A device whose MUD file permits DNS to an internet server (UDP and TCP
// port 53 to other.example.net) asks that server for its own permitted
// name, cloud.example.com, and gets the answer that it is
// other.example.net's address. The answer reaches the device (DNS is not
// mudd's to block, also with dns.hold), but the device still cannot reach
// other.example.net's port 443, and mudd logs the refusal.
func TestDNSAnswerFromPermittedInternetServerGrantsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 1})
	u := "https://" + mudHost + "/dnsbulb.json"
	f := bulb(u, "Example", "dnsbulb")
	for _, proto := range []int{17, 6} {
		initiated := ""
		if proto == 6 {
			initiated = "from-device"
		}
		r := gwlab.Rule{Remote: otherHost, Protocol: proto, RemotePort: 53, Initiated: initiated}
		f.From, f.To = append(f.From, r), append(f.To, r)
	}
	e.publish(f)
	e.lyingDNS(e.other, cloudHost, e.other.IPv4)
	h := e.lab.Devices[0]
	e.join(0, gwlab.Udhcpc, "dnsbulb", u)
	e.waitState(h, api.StateEnforced)
	e.pass("device → cloud:443 (permitted)", h.NS, e.resolve(h, cloudHost), permitted)
	e.refuse("device → other:443 before any answer", h.NS, e.other.IPv4, permitted)

	server := netip.AddrPortFrom(e.other.IPv4, 53)
	for _, network := range []string{"udp", "tcp"} {
		// The MUD rules are in place once the device is enforced, but the
		// set of other.example.net fills when mudd has resolved it.
		var got netip.Addr
		err := gwlab.Poll(e.ctx, passWait, func() (err error) {
			got, err = ask(h.NS, network, server, cloudHost)
			return err
		})
		if err != nil {
			t.Fatalf("the device asking %s over %s: %v; a permitted server's answer must reach it", server, network, err)
		}
		if got != e.other.IPv4 {
			t.Fatalf("the device got %v from %s, want the forged %v", got, server, e.other.IPv4)
		}
		// Long enough for a retransmitted SYN: a grant applied a moment
		// after the answer would let it through.
		netlab.MustDrop(t, fmt.Sprintf("device → other:443 after %s told it over %s that %s is there", server, network, cloudHost),
			netlab.TCPEcho(h.NS, netip.AddrPortFrom(e.other.IPv4, permitted), 3*time.Second))
		e.refuse("device → other:8080", h.NS, e.other.IPv4, otherPort)
	}
	e.pass("device → cloud:443 still", h.NS, e.resolve(h, cloudHost), permitted)
	mac := "device=" + h.MAC.String()
	e.waitLogged("the refused UDP answer", refusedLog, "source="+e.other.IPv4.String(), mac, "names=["+cloudHost+"]", "refused_total=1")
	e.waitLogged("the refused TCP answer", refusedLog, "source="+e.other.IPv4.String(), mac, "refused_total=2")
	var st api.Status
	if err := json.Unmarshal([]byte(e.mudctl("status", "-o", "json")), &st); err != nil {
		t.Fatal(err)
	}
	if st.DNSAnswersRefused != 2 {
		t.Errorf("mudctl status: dns_answers_refused = %d, want 2", st.DNSAnswersRefused)
	}
}

// Another host on the LAN sends a device forged DNS answers claiming its
// permitted name (cloud.example.com) is other.example.net's address:
// across the bridge with the gateway's address as source, across the
// bridge with its own, and through the gateway (routed back onto the LAN)
// with its own. The device's policy lets DNS answers from the local
// networks in, so each reaches it; none grants anything.
func TestForgedDNSAnswerFromLANHostGrantsNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, envConfig{devices: 2})
	u := "https://" + mudHost + "/lanbulb.json"
	f := bulb(u, "Example", "lanbulb")
	f.To = append(f.To, gwlab.Rule{MUD: map[string]any{"local-networks": []any{nil}}, Protocol: 17, RemotePort: 53})
	e.publish(f)
	h, attacker := e.lab.Devices[0], e.lab.Devices[1]
	_, ip := e.join(0, gwlab.Udhcpc, "lanbulb", u)
	e.waitState(h, api.StateEnforced)
	e.refuse("device → other:443 before any answer", h.NS, e.other.IPv4, permitted)

	const port = 40053
	pc, err := netlab.ListenPacket(h.NS, "udp", netip.AddrPortFrom(ip, port).String())
	if err != nil {
		t.Fatal(err)
	}
	defer pc.Close()
	msg, err := forgedAnswer(cloudHost, e.other.IPv4).Pack()
	if err != nil {
		t.Fatal(err)
	}
	own := netip.MustParseAddr("192.0.2.250") // outside the DHCP range
	// The bridge's address now: it took a port's when the ports joined.
	var gwMAC net.HardwareAddr
	if err := netlab.Do(e.lab.GW.NS, func() error {
		ifi, err := net.InterfaceByName(netlab.LANBridge)
		if err == nil {
			gwMAC = ifi.HardwareAddr
		}
		return err
	}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name   string
		dstMAC net.HardwareAddr
		src    netip.Addr
	}{
		{"across the bridge, from the gateway's address", h.MAC, netlab.GatewayLAN4},
		{"across the bridge, from its own address", h.MAC, own},
		{"through the gateway, from its own address", gwMAC, own},
	} {
		frame := udpFrame(tc.dstMAC, attacker.MAC, tc.src, ip, 53, port, msg)
		if err := sendFrame(attacker, frame); err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		_ = pc.SetReadDeadline(time.Now().Add(passWait))
		buf := make([]byte, 1500)
		n, from, err := pc.ReadFrom(buf)
		if err != nil {
			t.Fatalf("%s: the forged answer did not reach the device: %v", tc.name, err)
		}
		if string(buf[:n]) != string(msg) || from.(*net.UDPAddr).AddrPort() != netip.AddrPortFrom(tc.src, 53) {
			t.Fatalf("%s: the device got %d bytes from %v", tc.name, n, from)
		}
		e.refuse("device → other:443 after a forged answer "+tc.name, h.NS, e.other.IPv4, permitted)
	}
	// Only the routed one was ever the gateway's to send; it is refused.
	e.waitLogged("the refused routed answer", refusedLog, "source="+own.String(), "device="+h.MAC.String(), "refused_total=1")
}

// udpFrame is an Ethernet frame with an IPv4 UDP datagram (no UDP
// checksum, which IPv4 allows) from srcMAC to dstMAC.
func udpFrame(dstMAC, srcMAC net.HardwareAddr, src, dst netip.Addr, sport, dport uint16, payload []byte) []byte {
	b := make([]byte, 0, 14+28+len(payload))
	b = append(append(append(b, dstMAC...), srcMAC...), 0x08, 0x00)
	ip := len(b)
	b = append(b, 0x45, 0, 0, 0, 0, 0, 0x40, 0, 64, 17, 0, 0)
	b = append(append(b, src.AsSlice()...), dst.AsSlice()...)
	binary.BigEndian.PutUint16(b[ip+2:], uint16(28+len(payload)))
	var sum uint32 // the header checksum (RFC 791)
	for i := ip; i < ip+20; i += 2 {
		sum += uint32(binary.BigEndian.Uint16(b[i:]))
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	binary.BigEndian.PutUint16(b[ip+10:], ^uint16(sum))
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	b = binary.BigEndian.AppendUint16(b, uint16(8+len(payload)))
	b = append(b, 0, 0)
	return append(b, payload...)
}

// sendFrame sends a raw frame out of h's interface.
func sendFrame(h *netlab.Host, frame []byte) error {
	return netlab.Do(h.NS, func() error {
		ifi, err := net.InterfaceByName(h.Iface)
		if err != nil {
			return err
		}
		c, err := packet.Listen(ifi, packet.Raw, 0x0800, nil)
		if err != nil {
			return err
		}
		defer c.Close()
		_ = c.SetWriteDeadline(time.Now().Add(time.Second))
		_, err = c.WriteTo(frame, &packet.Addr{HardwareAddr: net.HardwareAddr(frame[0:6])})
		return err
	})
}
