package resolver

// Everything that touches github.com/miekg/dns lives in this file, so that
// moving to another DNS library (miekg/dns v2 moved elsewhere) replaces
// this file only.

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"
	"time"

	"github.com/miekg/dns"
)

// DNS wire constants the package uses (RFC 1035, RFC 3596).
const (
	TypeA     uint16 = 1
	TypeCNAME uint16 = 5
	TypeAAAA  uint16 = 28

	RcodeSuccess  = 0
	RcodeServFail = 2
	RcodeNXDomain = 3
)

// Record is one answer record the resolver cares about: A, AAAA or CNAME,
// class IN. Names are lower case with the trailing dot.
type Record struct {
	Name   string
	Type   uint16
	TTL    uint32
	Addr   netip.Addr // A and AAAA
	Target string     // CNAME
}

// Answer is a DNS response reduced to what resolution needs.
type Answer struct {
	Rcode int
	// Records are the A, AAAA and CNAME records of the answer section.
	Records []Record
	// NegTTL is the negative-caching TTL from the SOA in the authority
	// section (RFC 2308), 0 when there is none.
	NegTTL uint32
	// TCP reports that the answer came over TCP (after truncation).
	TCP bool
}

// Transport sends one query to a recursive resolver and returns its answer.
// Implementations retry over TCP when the UDP answer is truncated. An error
// means no usable answer (timeout, network, malformed); a DNS error code is
// returned in Answer.Rcode, not as an error.
type Transport interface {
	Exchange(ctx context.Context, name string, qtype uint16) (*Answer, error)
}

// ednsSize is the EDNS(0) UDP payload size advertised (the DNS flag day
// 2020 value, which avoids IP fragmentation).
const ednsSize = 1232

type dnsTransport struct {
	server   string
	udp, tcp *dns.Client
}

// NewTransport returns a Transport that queries server ("host:port") with
// github.com/miekg/dns over UDP, retrying over TCP when the answer is
// truncated. timeout bounds each exchange.
func NewTransport(server string, timeout time.Duration) Transport {
	return &dnsTransport{
		server: server,
		udp:    &dns.Client{Net: "udp", UDPSize: ednsSize, Timeout: timeout},
		tcp:    &dns.Client{Net: "tcp", Timeout: timeout},
	}
}

// SystemServer returns the first name server of /etc/resolv.conf as
// "host:port".
func SystemServer() (string, error) {
	cc, err := dns.ClientConfigFromFile("/etc/resolv.conf")
	if err != nil {
		return "", fmt.Errorf("reading /etc/resolv.conf: %w", err)
	}
	if len(cc.Servers) == 0 {
		return "", errors.New("reading /etc/resolv.conf: no nameserver")
	}
	addr, err := netip.ParseAddr(cc.Servers[0])
	if err != nil {
		return "", fmt.Errorf("reading /etc/resolv.conf: nameserver: %w", err)
	}
	return netip.AddrPortFrom(addr, 53).String(), nil
}

func (t *dnsTransport) Exchange(ctx context.Context, name string, qtype uint16) (*Answer, error) {
	m := new(dns.Msg)
	m.SetQuestion(name, qtype)
	m.RecursionDesired = true
	m.SetEdns0(ednsSize, false)
	r, _, err := t.udp.ExchangeContext(ctx, m, t.server)
	if err != nil {
		return nil, fmt.Errorf("querying %s over udp: %w", t.server, err)
	}
	tcp := false
	if r.Truncated {
		r, _, err = t.tcp.ExchangeContext(ctx, m, t.server)
		if err != nil {
			return nil, fmt.Errorf("querying %s over tcp after truncation: %w", t.server, err)
		}
		tcp = true
	}
	if len(r.Question) != 1 || !strings.EqualFold(r.Question[0].Name, name) || r.Question[0].Qtype != qtype {
		return nil, fmt.Errorf("querying %s: answer for another question", t.server)
	}
	a := convert(r)
	a.TCP = tcp
	return a, nil
}

// convert reduces a miekg message to an Answer.
func convert(r *dns.Msg) *Answer {
	a := &Answer{Rcode: r.Rcode}
	for _, rr := range r.Answer {
		h := rr.Header()
		if h.Class != dns.ClassINET {
			continue
		}
		rec := Record{Name: strings.ToLower(h.Name), TTL: h.Ttl}
		switch v := rr.(type) {
		case *dns.A:
			ip, ok := netip.AddrFromSlice(v.A.To4())
			if !ok {
				continue
			}
			rec.Type, rec.Addr = TypeA, ip
		case *dns.AAAA:
			ip, ok := netip.AddrFromSlice(v.AAAA.To16())
			if !ok || len(v.AAAA) != 16 {
				continue
			}
			rec.Type, rec.Addr = TypeAAAA, ip
		case *dns.CNAME:
			rec.Type, rec.Target = TypeCNAME, strings.ToLower(v.Target)
		default:
			continue
		}
		a.Records = append(a.Records, rec)
	}
	for _, rr := range r.Ns {
		if soa, ok := rr.(*dns.SOA); ok {
			a.NegTTL = min(soa.Hdr.Ttl, soa.Minttl)
		}
	}
	return a
}

// parseResponse decodes a DNS message seen on the wire. It returns ok=false
// for anything that is not a standard-query response with one question.
func parseResponse(b []byte) (qname string, a *Answer, ok bool) {
	var m dns.Msg
	if err := m.Unpack(b); err != nil {
		return "", nil, false
	}
	if !m.Response || m.Opcode != dns.OpcodeQuery || len(m.Question) != 1 || m.Question[0].Qclass != dns.ClassINET {
		return "", nil, false
	}
	return strings.ToLower(m.Question[0].Name), convert(&m), true
}
