// Package framegen is a DHCP client population for labs: it crafts the
// DHCPv4 (DISCOVER, REQUEST with option 161) and DHCPv6 (SOLICIT, REQUEST
// with option 112) frames of many client MACs, announcing their MUD URLs
// (RFC 8520 §10), sends them through one AF_PACKET socket on a lab
// interface, and reads the server's OFFER/ACK or ADVERTISE/REPLY, so that
// thousands of devices can join a gateway through its real DHCP server
// without a namespace or a client process each. For DHCPv6 it answers the
// gateway's neighbour solicitations for the clients' link-local addresses,
// which the server's replies are sent to (RFC 8415 §18.3).
//
// It owns the socket and one reader goroutine; Close stops both. It is a
// test tool: it trusts nothing it reads beyond what it parses, and never
// runs a program.
package framegen

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"sync"
	"time"

	"github.com/insomniacslk/dhcp/dhcpv4"
	"github.com/insomniacslk/dhcp/dhcpv6"
	"github.com/insomniacslk/dhcp/iana"

	"github.com/openmud/mud/internal/packet"
	"github.com/openmud/mud/internal/packet/capture"
)

// Client is one simulated device.
type Client struct {
	MAC      net.HardwareAddr
	Hostname string
	// MUDURL is announced in option 161 (DHCPv4) or 112 (DHCPv6); empty:
	// none.
	MUDURL string
}

// Result is how one client's exchange ended.
type Result struct {
	MAC  net.HardwareAddr
	Addr netip.Addr // the address the server acknowledged; invalid on error
	// Start is when the first DISCOVER/SOLICIT was sent; Reply when the
	// kernel received the ACK/REPLY (the socket's receive timestamp).
	Start, Reply time.Time
	Tries        int // DISCOVERs/SOLICITs and REQUESTs sent
	Err          error
}

// Config tunes a Generator.
type Config struct {
	// NetNS and Iface are where the socket is opened (a veth whose peer
	// is a port of the LAN bridge).
	NetNS, Iface string
	// Family is 4 (DHCPv4) or 6 (DHCPv6).
	Family int
	// Retransmit is the wait for an answer before a message is sent again
	// [1s]; Tries the most sends per message [5].
	Retransmit time.Duration
	Tries      int
	// Router6 is the DHCPv6 server's address on the link. Before a
	// client's SOLICIT, a neighbour solicitation for it from the client's
	// link-local address (with the client's MAC, RFC 4861 §7.2.3) puts the
	// client in the server's neighbour cache, as a host's resolving its
	// router would: dnsmasq learns a DHCPv6 client's MAC from that cache
	// and, when the client is not in it, probes and sleeps 100 ms per try
	// in its single thread. Invalid: no solicitation.
	Router6 netip.Addr
}

// Generator runs DHCP exchanges for many clients over one socket.
type Generator struct {
	cfg  Config
	conn *capture.Conn

	mu      sync.Mutex
	pending map[uint32]*exchange // by transaction id
	ll      map[netip.Addr]net.HardwareAddr
	xid     uint32
	readErr error

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type exchange struct {
	c     Client
	res   Result
	state int // 0: awaiting OFFER/ADVERTISE, 1: awaiting ACK/REPLY
	sent  time.Time
	msg   []byte // the frame last sent, resent on timeout
	tries int    // sends of the current message
	// restarts counts the exchanges started over after an answer without
	// an address.
	restarts int
	done     chan struct{}
	finished bool
}

// Open opens the socket and starts reading.
func Open(cfg Config) (*Generator, error) {
	if cfg.Family != 4 && cfg.Family != 6 {
		return nil, fmt.Errorf("framegen: family %d is neither 4 nor 6", cfg.Family)
	}
	if cfg.Retransmit <= 0 {
		cfg.Retransmit = time.Second
	}
	if cfg.Tries <= 0 {
		cfg.Tries = 5
	}
	conn, err := capture.Open(cfg.Iface, capture.Config{NetNS: cfg.NetNS, Promiscuous: true, Timestamps: true,
		Filter: capture.Filter{Direction: capture.Incoming}})
	if err != nil {
		return nil, fmt.Errorf("framegen: %w", err)
	}
	g := &Generator{cfg: cfg, conn: conn, pending: map[uint32]*exchange{}, ll: map[netip.Addr]net.HardwareAddr{}}
	ctx, cancel := context.WithCancel(context.Background())
	g.cancel = cancel
	g.wg.Add(2)
	go g.read(ctx)
	go g.retransmit(ctx)
	return g, nil
}

// Close stops the reader and closes the socket.
func (g *Generator) Close() {
	g.cancel()
	_ = g.conn.SetReadDeadline(time.Unix(1, 0))
	g.wg.Wait()
	_ = g.conn.Close()
}

// Join runs the exchange of every client, starting at most rate new
// clients per second (0: all at once), and returns their results in the
// order of clients once all are done or ctx ends.
func (g *Generator) Join(ctx context.Context, clients []Client, rate float64) []Result {
	exs := make([]*exchange, len(clients))
	start := time.Now()
	for i, c := range clients {
		if rate > 0 {
			at := start.Add(time.Duration(float64(i) / rate * float64(time.Second)))
			if d := time.Until(at); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		exs[i] = g.begin(c)
	}
	out := make([]Result, len(clients))
	for i, ex := range exs {
		select {
		case <-ex.done:
		case <-ctx.Done():
			g.finish(ex, fmt.Errorf("framegen: %s: %w", ex.c.MAC, context.Cause(ctx)))
		}
		g.mu.Lock()
		out[i] = ex.res
		g.mu.Unlock()
	}
	return out
}

func (g *Generator) begin(c Client) *exchange {
	ex := &exchange{c: c, done: make(chan struct{}), res: Result{MAC: c.MAC, Start: time.Now()}}
	g.mu.Lock()
	g.xid++
	xid := g.xid&0xffffff | 1 // DHCPv6 ids are 24 bits; never 0
	for g.pending[xid] != nil {
		g.xid++
		xid = g.xid&0xffffff | 1
	}
	g.pending[xid] = ex
	if g.cfg.Family == 6 {
		g.ll[linkLocal(c.MAC)] = c.MAC
	}
	var f []byte
	var err error
	if g.cfg.Family == 4 {
		f, err = discover(c, xid)
	} else {
		f, err = solicit(c, xid)
	}
	g.mu.Unlock()
	if err != nil {
		g.finish(ex, err)
		return ex
	}
	if g.cfg.Family == 6 && g.cfg.Router6.IsValid() {
		_ = g.conn.Send(solicitNeighbour(c.MAC, g.cfg.Router6))
	}
	g.send(ex, f)
	return ex
}

func (g *Generator) send(ex *exchange, f []byte) {
	g.mu.Lock()
	ex.msg, ex.sent = f, time.Now()
	ex.tries++
	ex.res.Tries++
	g.mu.Unlock()
	if err := g.conn.Send(f); err != nil {
		g.finish(ex, fmt.Errorf("framegen: sending for %s: %w", ex.c.MAC, err))
	}
}

func (g *Generator) finish(ex *exchange, err error) {
	g.mu.Lock()
	defer g.mu.Unlock()
	if ex.finished {
		return
	}
	ex.finished = true
	if err != nil {
		ex.res.Err = err
	}
	for k, v := range g.pending {
		if v == ex {
			delete(g.pending, k)
		}
	}
	close(ex.done)
}

// retransmit resends messages unanswered for Retransmit and gives up after
// Tries.
func (g *Generator) retransmit(ctx context.Context) {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.Retransmit / 4)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		type resend struct {
			ex  *exchange
			msg []byte
		}
		var again []resend
		var fail []*exchange
		var why []error
		g.mu.Lock()
		for _, ex := range g.pending {
			if ex.msg == nil || now.Sub(ex.sent) < g.cfg.Retransmit {
				continue // not sent yet, or not due
			}
			if ex.tries >= g.cfg.Tries {
				fail = append(fail, ex)
				why = append(why, fmt.Errorf("framegen: %s: no answer to %d sends of the %s", ex.c.MAC, ex.tries, [2]string{"DISCOVER/SOLICIT", "REQUEST"}[ex.state]))
			} else {
				again = append(again, resend{ex, ex.msg})
			}
		}
		g.mu.Unlock()
		for i, ex := range fail {
			g.finish(ex, why[i])
		}
		for _, r := range again {
			g.send(r.ex, r.msg)
		}
	}
}

func (g *Generator) read(ctx context.Context) {
	defer g.wg.Done()
	buf := make([]byte, 4096)
	for {
		f, info, err := g.conn.ReadFrame(buf)
		if err != nil {
			if ctx.Err() == nil {
				g.mu.Lock()
				g.readErr = err
				g.mu.Unlock()
			}
			return
		}
		at := info.Time
		if at.IsZero() {
			at = time.Now()
		}
		var fr packet.Frame
		if packet.Decode(f, &fr) != nil || fr.IP.Version == 0 {
			continue
		}
		switch {
		case fr.IP.Version == 6 && fr.IP.Protocol == 58:
			g.neighbour(f, &fr)
		case fr.IP.Protocol == packet.ProtoUDP && fr.UDP.DstPort == 68 && g.cfg.Family == 4:
			g.answer4(fr.UDP.Payload, at)
		case fr.IP.Protocol == packet.ProtoUDP && fr.UDP.DstPort == 546 && g.cfg.Family == 6:
			g.answer6(fr.UDP.Payload, at)
		}
	}
}

func (g *Generator) lookup(xid uint32) *exchange {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.pending[xid]
}

func (g *Generator) answer4(b []byte, at time.Time) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return
	}
	xid := binary.BigEndian.Uint32(m.TransactionID[:])
	ex := g.lookup(xid)
	if ex == nil {
		return
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		g.mu.Lock()
		st := ex.state
		g.mu.Unlock()
		if st != 0 {
			return
		}
		f, err := request4(ex.c, m)
		if err != nil {
			g.finish(ex, err)
			return
		}
		g.mu.Lock()
		ex.state, ex.tries = 1, 0
		g.mu.Unlock()
		g.send(ex, f)
	case dhcpv4.MessageTypeAck:
		a, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
		if !ok {
			return
		}
		g.mu.Lock()
		ex.res.Addr, ex.res.Reply = a, at
		g.mu.Unlock()
		g.finish(ex, nil)
	case dhcpv4.MessageTypeNak:
		g.finish(ex, fmt.Errorf("framegen: %s: the server sent a NAK: %s", ex.c.MAC, m.Message()))
	}
}

func (g *Generator) answer6(b []byte, at time.Time) {
	d, err := dhcpv6.FromBytes(b)
	if err != nil {
		return
	}
	m, ok := d.(*dhcpv6.Message)
	if !ok {
		return
	}
	xid := uint32(m.TransactionID[0])<<16 | uint32(m.TransactionID[1])<<8 | uint32(m.TransactionID[2])
	ex := g.lookup(xid)
	if ex == nil {
		return
	}
	switch m.MessageType {
	case dhcpv6.MessageTypeAdvertise:
		g.mu.Lock()
		st := ex.state
		g.mu.Unlock()
		if st != 0 {
			return
		}
		if sc := m.Options.Status(); sc != nil && sc.StatusCode != iana.StatusSuccess {
			g.finish(ex, fmt.Errorf("framegen: %s: ADVERTISE with status %s", ex.c.MAC, sc))
			return
		}
		f, err := request6(ex.c, m)
		if err != nil {
			g.finish(ex, err)
			return
		}
		g.mu.Lock()
		ex.state, ex.tries = 1, 0
		g.mu.Unlock()
		g.send(ex, f)
	case dhcpv6.MessageTypeReply:
		ia := m.Options.OneIANA()
		if ia == nil || len(ia.Options.Addresses()) == 0 {
			// The address advertised went to another client meanwhile
			// (NoAddrsAvail or NoBinding in the IA): the client starts
			// over with a SOLICIT (RFC 8415 §18.2.10.1).
			g.mu.Lock()
			restarts := ex.restarts
			ex.restarts++
			if restarts < maxRestarts {
				ex.state, ex.tries = 0, 0
			}
			g.mu.Unlock()
			if restarts >= maxRestarts {
				g.finish(ex, fmt.Errorf("framegen: %s: REPLY without an address %d times", ex.c.MAC, restarts+1))
				return
			}
			f, err := solicit(ex.c, xid)
			if err != nil {
				g.finish(ex, err)
				return
			}
			g.send(ex, f)
			return
		}
		a, ok := netip.AddrFromSlice(ia.Options.Addresses()[0].IPv6Addr)
		if !ok {
			return
		}
		g.mu.Lock()
		ex.res.Addr, ex.res.Reply = a, at
		g.mu.Unlock()
		g.finish(ex, nil)
	}
}

// neighbour answers a neighbour solicitation (RFC 4861 §4.3) for a
// client's link-local address.
func (g *Generator) neighbour(f []byte, fr *packet.Frame) {
	msg := fr.IP.Payload
	if len(msg) < 24 || msg[0] != 135 {
		return
	}
	target, _ := netip.AddrFromSlice(msg[8:24])
	g.mu.Lock()
	mac := g.ll[target]
	g.mu.Unlock()
	if mac == nil {
		return
	}
	dst := fr.IP.Src
	if !dst.IsValid() || dst.IsUnspecified() {
		return // DAD; the clients' addresses are not tentative
	}
	na := make([]byte, 32)
	na[0] = 136
	na[4] = 0x60 // solicited, override
	copy(na[8:24], msg[8:24])
	na[24], na[25] = 2, 1 // target link-layer address, 8 octets
	copy(na[26:32], mac)
	binary.BigEndian.PutUint16(na[2:4], packet.Checksum6(target, dst, 58, na))
	_ = g.conn.Send(frame6(fr.Src, mac, target, dst, 58, 255, na))
}

// Err is the reader's error, if it stopped.
func (g *Generator) Err() error {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.readErr
}

// maxRestarts bounds the exchanges a client starts over.
const maxRestarts = 5

var errNoServerID = errors.New("framegen: the server's answer has no server identifier")
