package resolver

import (
	"net"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// seenQuery is one query the test server received.
type seenQuery struct {
	name  string
	qtype uint16
	tcp   bool
	at    time.Time
}

// testServer is an in-process miekg/dns server whose behaviour a test sets
// with handle. Returning nil from handle makes the server silent.
type testServer struct {
	addr string
	srv  []*dns.Server

	mu      sync.Mutex
	handle  func(q dns.Question, tcp bool, n int) *dns.Msg // n counts queries for this name+type
	counts  map[string]int
	queries []seenQuery
}

func (s *testServer) setHandler(h func(q dns.Question, tcp bool, n int) *dns.Msg) {
	s.mu.Lock()
	s.handle = h
	s.mu.Unlock()
}

func (s *testServer) seen() []seenQuery {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]seenQuery(nil), s.queries...)
}

func (s *testServer) ServeDNS(w dns.ResponseWriter, req *dns.Msg) {
	if len(req.Question) != 1 {
		return
	}
	q := req.Question[0]
	_, tcp := w.LocalAddr().(*net.TCPAddr)
	s.mu.Lock()
	key := strings.ToLower(q.Name) + "/" + dns.TypeToString[q.Qtype]
	n := s.counts[key]
	s.counts[key]++
	s.queries = append(s.queries, seenQuery{name: strings.ToLower(q.Name), qtype: q.Qtype, tcp: tcp, at: time.Now()})
	h := s.handle
	s.mu.Unlock()
	if h == nil {
		return
	}
	m := h(q, tcp, n)
	if m == nil {
		return // silent
	}
	rc, tc := m.Rcode, m.Truncated
	m.SetReply(req)
	m.Rcode, m.Truncated = rc, tc
	_ = w.WriteMsg(m)
}

// serve starts the server on pc (UDP) and ln (TCP) and stops it when t ends.
func serve(t testing.TB, s *testServer, pc net.PacketConn, ln net.Listener) {
	t.Helper()
	s.counts = map[string]int{}
	started := make(chan struct{}, 2)
	for _, srv := range []*dns.Server{
		{PacketConn: pc, Handler: s, NotifyStartedFunc: func() { started <- struct{}{} }},
		{Listener: ln, Handler: s, NotifyStartedFunc: func() { started <- struct{}{} }},
	} {
		s.srv = append(s.srv, srv)
		go func() { _ = srv.ActivateAndServe() }()
	}
	<-started
	<-started
	t.Cleanup(func() {
		for _, srv := range s.srv {
			_ = srv.Shutdown()
		}
	})
}

// newTestServer starts a server on 127.0.0.1, UDP and TCP on the same port.
func newTestServer(t testing.TB) *testServer {
	t.Helper()
	for range 20 {
		pc, err := net.ListenPacket("udp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := pc.LocalAddr().String()
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			pc.Close()
			continue
		}
		s := &testServer{addr: addr}
		serve(t, s, pc, ln)
		return s
	}
	t.Fatal("no free port for UDP and TCP")
	return nil
}

// Record constructors for handlers.
func rrA(name string, ttl uint32, ip string) dns.RR {
	return &dns.A{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeA, Class: dns.ClassINET, Ttl: ttl}, A: net.ParseIP(ip).To4()}
}

func rrAAAA(name string, ttl uint32, ip string) dns.RR {
	return &dns.AAAA{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeAAAA, Class: dns.ClassINET, Ttl: ttl}, AAAA: net.ParseIP(ip)}
}

func rrCNAME(name string, ttl uint32, target string) dns.RR {
	return &dns.CNAME{Hdr: dns.RR_Header{Name: dns.Fqdn(name), Rrtype: dns.TypeCNAME, Class: dns.ClassINET, Ttl: ttl}, Target: dns.Fqdn(target)}
}

func rrSOA(zone string, ttl, minttl uint32) dns.RR {
	return &dns.SOA{Hdr: dns.RR_Header{Name: dns.Fqdn(zone), Rrtype: dns.TypeSOA, Class: dns.ClassINET, Ttl: ttl},
		Ns: "ns." + dns.Fqdn(zone), Mbox: "hostmaster." + dns.Fqdn(zone), Serial: 1, Refresh: 60, Retry: 60, Expire: 600, Minttl: minttl}
}

// answer builds a reply holding the records of rrs whose type matches q
// (CNAMEs always).
func answer(q dns.Question, rrs ...dns.RR) *dns.Msg {
	m := new(dns.Msg)
	for _, rr := range rrs {
		if t := rr.Header().Rrtype; t == q.Qtype || t == dns.TypeCNAME {
			m.Answer = append(m.Answer, rr)
		}
	}
	return m
}

func rcode(code int) *dns.Msg {
	m := new(dns.Msg)
	m.Rcode = code
	return m
}

func addrs(ss ...string) []netip.Addr {
	out := make([]netip.Addr, len(ss))
	for i, s := range ss {
		out[i] = netip.MustParseAddr(s)
	}
	return out
}
