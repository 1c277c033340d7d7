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
	"slices"
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
	// Released: the exchange was given up after a REQUEST and the client
	// released what it asked for (Err says why it gave up); Late are the
	// addresses the server's late answers leased meanwhile.
	Released bool
	Late     []netip.Addr
	Err      error
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

	// hook, if not nil, is called as an exchange enters a phase, before
	// and after its first message there is sent (tests).
	hook func(p phase, sent bool)
}

// phase is where a client's exchange is.
//
// A client gives up on an exchange whose messages go unanswered, but a
// busy server may still answer them, late, and lease: a client that gives
// up after a REQUEST therefore releases what it asked for (RFC 8415
// §18.2.7, RFC 2131 §4.4.6), so that the server frees the lease and a
// gateway snooping DHCP unbinds the device. A late answer that leased can
// reach the gateway after that RELEASE, which then finds nothing to
// release. The server answers its clients' messages in the order they
// arrive (dnsmasq: one socket, one thread), so its answer to a message the
// client sent after its REQUESTs comes after every late answer to them:
// the REPLY to the RELEASE (DHCPv6), or the OFFER to a DISCOVER (DHCPv4,
// where a RELEASE has no answer). Once that answer is in, the client
// releases again, and that second RELEASE follows any late lease on the
// link.
type phase int

const (
	// phaseSolicit: DISCOVER or SOLICIT sent, awaiting OFFER or ADVERTISE.
	phaseSolicit phase = iota
	// phaseRequest: REQUEST sent, awaiting ACK or REPLY.
	phaseRequest
	// phaseRelease: given up; RELEASE sent, awaiting the answer that
	// follows any late one (the REPLY to the RELEASE; DHCPv4: the OFFER
	// to a DISCOVER sent after the DHCPRELEASE).
	phaseRelease
	// phaseReleaseAgain: DHCPv6, the second RELEASE sent, awaiting its
	// REPLY.
	phaseReleaseAgain
)

// names of the messages awaiting an answer in each phase, for errors.
var phaseMessage = [...]string{"DISCOVER/SOLICIT", "REQUEST", "RELEASE", "RELEASE"}

type exchange struct {
	c     Client
	res   Result
	xid   uint32 // of the DISCOVER/SOLICIT and REQUEST
	phase phase
	sent  time.Time
	msg   []byte // the frame last sent, resent on timeout
	tries int    // sends of the current message
	// restarts counts the exchanges started over after an answer without
	// an address.
	restarts int
	// What a release names: the addresses asked for in REQUESTs, the
	// server's identifier (DHCPv4 option 54, DHCPv6 option 2) and the
	// IAID of the DHCPv6 IA_NA.
	asked   []netip.Addr
	server4 net.IP
	server6 dhcpv6.Option
	iaid    [4]byte
	// relXID is the transaction of the release's awaited answer: the
	// RELEASE (DHCPv6) or the DISCOVER after the DHCPRELEASE (DHCPv4).
	relXID    uint32
	abandoned error        // why the exchange was given up
	late      []netip.Addr // addresses a late answer leased
	done      chan struct{}
	finished  bool
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
// order of clients once all are done or ctx ends. An exchange given up
// after a REQUEST returns once its release is done (see phase).
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

// newXID registers a new transaction id for ex: 24 bits (DHCPv6's), never
// 0, and not reused before the counter wraps. Called with g.mu held.
func (g *Generator) newXID(ex *exchange) uint32 {
	for {
		g.xid++
		if xid := g.xid & 0xffffff; xid != 0 && g.pending[xid] == nil {
			g.pending[xid] = ex
			return xid
		}
	}
}

func (g *Generator) begin(c Client) *exchange {
	ex := &exchange{c: c, done: make(chan struct{}), res: Result{MAC: c.MAC, Start: time.Now()}}
	g.mu.Lock()
	ex.xid = g.newXID(ex)
	if g.cfg.Family == 6 {
		g.ll[LinkLocal(c.MAC)] = c.MAC
	}
	g.mu.Unlock()
	f, err := g.first(c, ex.xid)
	if err != nil {
		g.finish(ex, err)
		return ex
	}
	if g.cfg.Family == 6 && g.cfg.Router6.IsValid() {
		_ = g.conn.Send(solicitNeighbour(c.MAC, g.cfg.Router6))
	}
	g.advance(ex, phaseSolicit, phaseSolicit, f, nil)
	return ex
}

// first is a client's DISCOVER or SOLICIT.
func (g *Generator) first(c Client, xid uint32) ([]byte, error) {
	if g.cfg.Family == 4 {
		return discover(c, xid)
	}
	return solicit(c, xid)
}

// advance moves ex from phase from to phase to and sends f, the first
// message of the new phase, calling then (if not nil) with g.mu held. It
// does nothing and returns false when ex is no longer in phase from: the
// reader and the retransmitter both move exchanges on.
func (g *Generator) advance(ex *exchange, from, to phase, f []byte, then func()) bool {
	g.mu.Lock()
	if ex.finished || ex.phase != from {
		g.mu.Unlock()
		return false
	}
	ex.phase, ex.msg, ex.sent, ex.tries = to, f, time.Now(), 1
	if to <= phaseRequest {
		ex.res.Tries++
	}
	if then != nil {
		then()
	}
	g.mu.Unlock()
	if g.hook != nil {
		g.hook(to, false)
	}
	g.transmit(ex, f)
	if g.hook != nil {
		g.hook(to, true)
	}
	return true
}

func (g *Generator) transmit(ex *exchange, f []byte) {
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

// wait is how long ex's current message goes unanswered before it is sent
// again: Retransmit, doubling with each send, as real clients back off
// (RFC 8415 §15; RFC 2131 §4.1): a burst of clients that all resent every
// second would bury a busy server under its own backlog.
func (g *Generator) wait(ex *exchange) time.Duration {
	return g.cfg.Retransmit << min(max(ex.tries-1, 0), 8)
}

// retransmit resends messages unanswered for their wait and moves on the
// exchanges whose message went unanswered Tries times.
func (g *Generator) retransmit(ctx context.Context) {
	defer g.wg.Done()
	t := time.NewTicker(g.cfg.Retransmit / 4)
	defer t.Stop()
	type resend struct {
		ex  *exchange
		msg []byte
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		now := time.Now()
		var again []resend
		var expired []*exchange
		seen := map[*exchange]bool{}
		g.mu.Lock()
		for _, ex := range g.pending {
			// An exchange releasing is pending under two transactions.
			if seen[ex] || ex.msg == nil || now.Sub(ex.sent) < g.wait(ex) {
				continue
			}
			seen[ex] = true
			if ex.tries >= g.cfg.Tries {
				expired = append(expired, ex)
				continue
			}
			ex.tries++
			ex.sent = now
			if ex.phase <= phaseRequest {
				ex.res.Tries++
			}
			again = append(again, resend{ex, ex.msg})
		}
		g.mu.Unlock()
		for _, r := range again {
			g.transmit(r.ex, r.msg)
		}
		for _, ex := range expired {
			g.expire(ex)
		}
	}
}

// expire moves on an exchange whose message went unanswered Tries times:
// it gives up a DISCOVER/SOLICIT or REQUEST, and ends a release the server
// never confirmed, releasing once more.
func (g *Generator) expire(ex *exchange) {
	g.mu.Lock()
	p, tries := ex.phase, ex.tries
	g.mu.Unlock()
	why := fmt.Errorf("no answer to %d sends of the %s", tries, phaseMessage[p])
	switch p {
	case phaseSolicit, phaseRequest:
		g.abandon(ex, p, fmt.Errorf("framegen: %s: %w", ex.c.MAC, why))
	case phaseRelease:
		g.releaseAgain(ex, why)
	case phaseReleaseAgain:
		g.finishReleased(ex, why)
	}
}

// abandon gives up ex in phase p. A client that never sent a REQUEST has
// nothing leased and is done; one that did releases what it asked for and
// awaits the answer that follows any late lease (phaseRelease).
func (g *Generator) abandon(ex *exchange, p phase, why error) {
	g.mu.Lock()
	if ex.finished || ex.phase != p {
		g.mu.Unlock()
		return
	}
	ex.abandoned = why
	asked := len(ex.asked) > 0
	var xid uint32
	if asked {
		xid = g.newXID(ex)
		ex.relXID = xid
	}
	g.mu.Unlock()
	if !asked {
		g.finish(ex, why)
		return
	}
	f, err := g.releaseFrames(ex, xid)
	if err != nil {
		g.finish(ex, errors.Join(why, err))
		return
	}
	if g.cfg.Family == 4 {
		// DHCPRELEASE has no answer: the awaited one is the OFFER to a
		// DISCOVER sent after it.
		for _, r := range f {
			g.transmit(ex, r)
		}
		d, err := discover(ex.c, xid)
		if err != nil {
			g.finish(ex, errors.Join(why, err))
			return
		}
		g.advance(ex, p, phaseRelease, d, nil)
		return
	}
	g.advance(ex, p, phaseRelease, f[0], nil)
}

// released is the answer that follows any late answer to ex's REQUESTs:
// the client releases again, for the snooping gateway that may have seen
// a late lease after its first RELEASE.
func (g *Generator) released(ex *exchange) { g.releaseAgain(ex, nil) }

// releaseAgain sends ex's second release: DHCPv6 awaits its REPLY
// (phaseReleaseAgain) unless unconfirmed says why the first went
// unanswered; DHCPv4 is done.
func (g *Generator) releaseAgain(ex *exchange, unconfirmed error) {
	g.mu.Lock()
	if ex.finished || ex.phase != phaseRelease {
		g.mu.Unlock()
		return
	}
	xid := g.newXID(ex)
	ex.relXID = xid
	g.mu.Unlock()
	f, err := g.releaseFrames(ex, xid)
	if err != nil {
		g.finishReleased(ex, err)
		return
	}
	if g.cfg.Family == 6 && unconfirmed == nil {
		g.advance(ex, phaseRelease, phaseReleaseAgain, f[0], nil)
		return
	}
	for _, r := range f {
		g.transmit(ex, r)
	}
	g.finishReleased(ex, unconfirmed)
}

// finishReleased ends a released exchange with the error it was given up
// for, what a late answer leased, and unconfirmed, why the server did not
// confirm the release, if it did not.
func (g *Generator) finishReleased(ex *exchange, unconfirmed error) {
	g.mu.Lock()
	ex.res.Released, ex.res.Late = true, slices.Clone(ex.late)
	err := ex.abandoned
	if len(ex.late) > 0 {
		err = fmt.Errorf("%w; a late answer leased %v", err, ex.late)
	}
	if unconfirmed != nil {
		err = fmt.Errorf("%w; released without the server's confirmation (%w)", err, unconfirmed)
	} else {
		err = fmt.Errorf("%w; released", err)
	}
	g.mu.Unlock()
	g.finish(ex, err)
}

// releaseFrames are ex's RELEASEs, with transaction id xid, of every
// address it asked for or a late answer leased.
func (g *Generator) releaseFrames(ex *exchange, xid uint32) ([][]byte, error) {
	g.mu.Lock()
	addrs := slices.Clone(ex.asked)
	for _, a := range ex.late {
		if !slices.Contains(addrs, a) {
			addrs = append(addrs, a)
		}
	}
	server4, server6, iaid := ex.server4, ex.server6, ex.iaid
	g.mu.Unlock()
	if g.cfg.Family == 6 {
		f, err := release6(ex.c, xid, server6, iaid, addrs)
		return [][]byte{f}, err
	}
	var out [][]byte
	for _, a := range addrs {
		f, err := release4(ex.c, xid, server4, a)
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
	return out, nil
}

// lateAnswer records the address an ACK or REPLY leased after ex was
// given up; the release names it.
func (g *Generator) lateAnswer(ex *exchange, addrs []netip.Addr) {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, a := range addrs {
		if !slices.Contains(ex.late, a) {
			ex.late = append(ex.late, a)
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

// lookup is the exchange of transaction xid, its phase, and whether xid
// is the transaction its release awaits an answer to.
func (g *Generator) lookup(xid uint32) (ex *exchange, p phase, release bool) {
	g.mu.Lock()
	defer g.mu.Unlock()
	ex = g.pending[xid]
	if ex == nil {
		return nil, 0, false
	}
	return ex, ex.phase, ex.phase >= phaseRelease && xid == ex.relXID
}

// succeed ends ex with the address a server acknowledged at time at.
func (g *Generator) succeed(ex *exchange, a netip.Addr, at time.Time) {
	g.mu.Lock()
	ex.res.Addr, ex.res.Reply = a, at
	g.mu.Unlock()
	g.finish(ex, nil)
}

func (g *Generator) answer4(b []byte, at time.Time) {
	m, err := dhcpv4.FromBytes(b)
	if err != nil {
		return
	}
	ex, p, release := g.lookup(binary.BigEndian.Uint32(m.TransactionID[:]))
	if ex == nil {
		return
	}
	switch m.MessageType() {
	case dhcpv4.MessageTypeOffer:
		if release {
			g.released(ex)
			return
		}
		if p != phaseSolicit {
			return
		}
		f, err := request4(ex.c, m)
		if err != nil {
			g.finish(ex, err)
			return
		}
		a, _ := netip.AddrFromSlice(m.YourIPAddr.To4())
		g.advance(ex, phaseSolicit, phaseRequest, f, func() {
			ex.server4 = m.ServerIdentifier()
			if a.IsValid() && !slices.Contains(ex.asked, a) {
				ex.asked = append(ex.asked, a)
			}
		})
	case dhcpv4.MessageTypeAck:
		a, ok := netip.AddrFromSlice(m.YourIPAddr.To4())
		if !ok || a.IsUnspecified() {
			return
		}
		if p >= phaseRelease {
			g.lateAnswer(ex, []netip.Addr{a})
			return
		}
		g.succeed(ex, a, at)
	case dhcpv4.MessageTypeNak:
		if p == phaseRequest {
			g.finish(ex, fmt.Errorf("framegen: %s: the server sent a NAK: %s", ex.c.MAC, m.Message()))
		}
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
	ex, p, release := g.lookup(uint32(m.TransactionID[0])<<16 | uint32(m.TransactionID[1])<<8 | uint32(m.TransactionID[2]))
	if ex == nil {
		return
	}
	switch m.MessageType {
	case dhcpv6.MessageTypeAdvertise:
		if p != phaseSolicit {
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
		ia := m.Options.OneIANA() // request6 checked it
		g.advance(ex, phaseSolicit, phaseRequest, f, func() {
			ex.server6, ex.iaid = m.GetOneOption(dhcpv6.OptionServerID), ia.IaId
			for _, a := range addrs6(ia) {
				if !slices.Contains(ex.asked, a) {
					ex.asked = append(ex.asked, a)
				}
			}
		})
	case dhcpv6.MessageTypeReply:
		switch {
		case release && p == phaseRelease:
			g.released(ex)
			return
		case release:
			g.finishReleased(ex, nil)
			return
		}
		var leased []netip.Addr
		if ia := m.Options.OneIANA(); ia != nil {
			leased = addrs6(ia)
		}
		if p >= phaseRelease {
			g.lateAnswer(ex, leased)
			return
		}
		if len(leased) > 0 {
			g.succeed(ex, leased[0], at)
			return
		}
		if p != phaseRequest {
			return
		}
		// The address advertised went to another client meanwhile
		// (NoAddrsAvail or NoBinding in the IA): the client starts over
		// with a SOLICIT (RFC 8415 §18.2.10.1).
		g.mu.Lock()
		restarts := ex.restarts
		ex.restarts++
		g.mu.Unlock()
		if restarts >= maxRestarts {
			g.abandon(ex, phaseRequest, fmt.Errorf("framegen: %s: REPLY without an address %d times", ex.c.MAC, restarts+1))
			return
		}
		f, err := solicit(ex.c, ex.xid)
		if err != nil {
			g.finish(ex, err)
			return
		}
		g.advance(ex, phaseRequest, phaseSolicit, f, nil)
	}
}

// addrs6 are the addresses of an IA_NA.
func addrs6(ia *dhcpv6.OptIANA) []netip.Addr {
	var out []netip.Addr
	for _, o := range ia.Options.Addresses() {
		if a, ok := netip.AddrFromSlice(o.IPv6Addr); ok {
			out = append(out, a)
		}
	}
	return out
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
