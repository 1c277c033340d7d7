package resolver

// Hold and release: the device's first packet to a freshly answered
// address must find that address allowed, but the snooped answer reaches the
// device at the same moment the snooper sees it. So DNS answers (UDP from
// port 53) sent out of a port of a captured LAN bridge to a device with names are
// dropped in the bridge family's output hook, which runs after the bridge
// device's packet taps: the capture socket still sees them. The resolver
// parses the answer, calls Config.Apply (the enforcer's sets are updated),
// and re-injects the frame through the capture socket with the hold mark,
// which the hook lets pass. Irrelevant answers, and those from sources
// that are not trusted (trust.go), are re-injected at once.
//
//	table bridge mud_dnshold {    # flags owner
//	  set ports { type ifname }         # ports of the captured bridges
//	  set hold { type ether_addr }      # devices with names
//	  chain out {
//	    type filter hook output priority -300;
//	    meta mark & M != M oifname @ports ether daddr @hold
//	      ether type ip meta l4proto udp udp sport 53 counter drop
//	    meta mark & M != M oifname @ports ether daddr @hold
//	      ether type ip6 ip6 nexthdr udp meta l4proto udp udp sport 53 counter drop
//	  }
//	}
//
// The table carries the owner flag: the kernel deletes it when the netlink
// socket that created it closes, also when mudd is killed, so a hold never
// outlives the process that releases it. `ether type` sees the VLAN tag of
// accelerated frames, so tagged frames are never held (the capture could not
// re-inject them with their tag), and IPv6 is held only without extension
// headers, exactly what the capture's filter accepts: anything the hook
// drops, the capture sees. The rule names the bridges' ports, not the
// bridges (`meta obrname` needs nft_meta_bridge, which kernels often lack),
// so that answers leaving a bridge nobody captures are never held; the
// ports are listed when Run starts, and a port added later is not held
// (its devices merely race their answers again).

import (
	"encoding/binary"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/nftbatch"
	"github.com/openmud/mud/internal/packet"
	vnl "github.com/vishvananda/netlink"
	"golang.org/x/sys/unix"
)

const (
	// HoldTable is the name of the bridge-family table that holds DNS
	// answers.
	HoldTable = "mud_dnshold"
	// DefaultHoldMark is a packet mark bit for Config.HoldMark that common
	// firewalls and VPNs leave alone.
	DefaultHoldMark uint32 = 0x10000000
	// DefaultHoldPriority is the hold chain's default priority in the bridge
	// output hook: before the usual bridge filters (-200), so a held answer
	// is counted once by them, when it is released.
	DefaultHoldPriority int32 = -300
	// DefaultApplyTimeout bounds one Config.Apply call for a held answer.
	DefaultApplyTimeout = 100 * time.Millisecond

	// nftTableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table
	// belongs to the netlink socket that created it and goes with it.
	nftTableFlagOwner = 0x2
	// holdLinger is how long frames to a device just removed from the hold
	// set are still treated as held: one captured before the removal may
	// have been dropped by the old set.
	holdLinger = 2 * time.Second
	// maxHeld bounds the answers waiting for Apply at once; beyond it, an
	// answer is released at once (its race is lost, DNS keeps working).
	maxHeld = 64
)

// holdState is the kernel side of hold and release: the owner table and
// which device MACs may be in its hold set.
type holdState struct {
	// mu serialises changes of the device lists with the kernel set, so
	// that the set is always a subset of what held() reports.
	mu   sync.Mutex
	sock *nftbatch.Conn // nil while not holding
	set  *nftables.Set

	macMu sync.RWMutex
	macs  map[[6]byte]holdMAC
}

// holdMAC is a MAC that is, or was until recently, in the kernel set.
type holdMAC struct {
	inKernel bool
	until    time.Time // after removal: held until then
}

// held reports whether the kernel may have dropped a frame to mac.
func (h *holdState) held(mac [6]byte, now time.Time) bool {
	h.macMu.RLock()
	m, ok := h.macs[mac]
	h.macMu.RUnlock()
	return ok && (m.inKernel || now.Before(m.until))
}

func (h *holdState) inKernel(mac [6]byte) bool {
	h.macMu.RLock()
	defer h.macMu.RUnlock()
	return h.macs[mac].inKernel
}

func (h *holdState) setMAC(mac [6]byte, m holdMAC) {
	h.macMu.Lock()
	defer h.macMu.Unlock()
	if h.macs == nil {
		h.macs = make(map[[6]byte]holdMAC)
	}
	now := time.Now()
	for k, o := range h.macs {
		if !o.inKernel && !now.Before(o.until) {
			delete(h.macs, k)
		}
	}
	h.macs[mac] = m
}

// add puts mac into the kernel set (h.mu held). Not holding: nothing to do.
func (h *holdState) add(mac [6]byte) error {
	if h.sock == nil || h.inKernel(mac) {
		return nil
	}
	if err := applyBatch(h.sock, func(c *nftables.Conn) error {
		return c.SetAddElements(h.set, []nftables.SetElement{{Key: mac[:]}})
	}); err != nil {
		return fmt.Errorf("adding %s to the DNS hold set: %w", macString(mac), err)
	}
	h.setMAC(mac, holdMAC{inKernel: true})
	return nil
}

// remove takes mac out of the kernel set (h.mu held). On failure the MAC
// stays held: its answers keep being released.
func (h *holdState) remove(mac [6]byte) error {
	if h.sock == nil || !h.inKernel(mac) {
		return nil
	}
	if err := applyBatch(h.sock, func(c *nftables.Conn) error {
		return c.SetDeleteElements(h.set, []nftables.SetElement{{Key: mac[:]}})
	}); err != nil {
		return fmt.Errorf("removing %s from the DNS hold set: %w", macString(mac), err)
	}
	h.setMAC(mac, holdMAC{until: time.Now().Add(holdLinger)})
	return nil
}

func macString(m [6]byte) string {
	return fmt.Sprintf("%02x:%02x:%02x:%02x:%02x:%02x", m[0], m[1], m[2], m[3], m[4], m[5])
}

// startHold creates the owner table for the ports of the captured bridges
// with every device known so far, on a netlink socket kept until stopHold.
func (r *Resolver) startHold(ports []string) error {
	h := &r.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	sock, err := nftbatch.Open(r.cfg.NetNSFd)
	if err != nil {
		return fmt.Errorf("creating the DNS hold table: %w", err)
	}
	r.snoop.mu.RLock()
	macs := make([][6]byte, 0, len(r.snoop.devices))
	for k := range r.snoop.devices {
		macs = append(macs, k)
	}
	r.snoop.mu.RUnlock()

	t := &nftables.Table{Name: HoldTable, Family: nftables.TableFamilyBridge}
	brs := &nftables.Set{Table: t, Name: "ports", KeyType: nftables.TypeIFName}
	hold := &nftables.Set{Table: t, Name: "hold", KeyType: nftables.TypeEtherAddr}
	err = applyBatch(sock, func(c *nftables.Conn) error {
		var bel []nftables.SetElement
		for _, b := range ports {
			k := make([]byte, unix.IFNAMSIZ)
			copy(k, b)
			bel = append(bel, nftables.SetElement{Key: k})
		}
		if err := c.AddSet(brs, bel); err != nil {
			return err
		}
		var hel []nftables.SetElement
		for _, m := range macs {
			hel = append(hel, nftables.SetElement{Key: m[:]})
		}
		if err := c.AddSet(hold, hel); err != nil {
			return err
		}
		ch := c.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(*r.cfg.HoldPriority))})
		for _, v6 := range []bool{false, true} {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: holdRule(r.cfg.HoldMark, brs, hold, v6)})
		}
		return nil
	}, newOwnerTable())
	if err != nil {
		sock.Close()
		var be *nftbatch.BatchError
		if errors.As(err, &be) && be.Has(unix.EEXIST) {
			return fmt.Errorf("creating the DNS hold table: table bridge %s exists (another mudd running in this namespace?): %w", HoldTable, err)
		}
		return fmt.Errorf("creating the DNS hold table: %w", err)
	}
	h.sock, h.set = sock, hold
	for _, m := range macs {
		h.setMAC(m, holdMAC{inKernel: true})
	}
	return nil
}

// stopHold closes the socket, which makes the kernel delete the table.
func (r *Resolver) stopHold() {
	h := &r.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.sock == nil {
		return
	}
	h.sock.Close()
	h.sock, h.set = nil, nil
	h.macMu.Lock()
	clear(h.macs)
	h.macMu.Unlock()
}

// holdRule drops a DNS answer (UDP from port 53, over IPv4, or IPv6 without
// extension headers) sent out of a port of a captured bridge to a held
// device, unless it carries the hold mark.
func holdRule(mark uint32, ports, hold *nftables.Set, v6 bool) []expr.Any {
	m := binary.NativeEndian.AppendUint32(nil, mark)
	etype := []byte{0x08, 0x00}
	if v6 {
		etype = []byte{0x86, 0xdd}
	}
	e := []expr.Any{
		// Released answers first: they carry the mark.
		&expr.Meta{Key: expr.MetaKeyMARK, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: m, Xor: []byte{0, 0, 0, 0}},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: m},
		&expr.Meta{Key: expr.MetaKeyOIFNAME, Register: 1},
		&expr.Lookup{SourceRegister: 1, SetName: ports.Name, SetID: ports.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 0, Len: 6},
		&expr.Lookup{SourceRegister: 1, SetName: hold.Name, SetID: hold.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseLLHeader, Offset: 12, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: etype},
	}
	if v6 {
		e = append(e,
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 6, Len: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}})
	}
	return append(e,
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_UDP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 2},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{0, 53}},
		&expr.Counter{},
		&expr.Verdict{Kind: expr.VerdictDrop},
	)
}

// newOwnerTable is the NEWTABLE message of the hold table with the owner
// flag (google/nftables v0.3.0 does not send Table.Flags). NLM_F_EXCL: a
// table of that name that is not ours is never taken over.
func newOwnerTable() netlink.Message {
	ae := netlink.NewAttributeEncoder()
	ae.String(unix.NFTA_TABLE_NAME, HoldTable)
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_TABLE_FLAGS, nftTableFlagOwner)
	data, _ := ae.Encode() // encoding a string and an integer cannot fail
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Create | netlink.Excl,
		},
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

// heldFrame reports whether the hold chain dropped this captured frame,
// mirroring its rule: untagged (neither a tag in the bytes nor one the
// kernel held apart, tagged), to a held device, IPv4 or IPv6 without
// extension headers, UDP from port 53, not a later fragment. The capture
// filter already skipped frames with the hold mark.
func (r *Resolver) heldFrame(frame []byte, tagged bool, now time.Time) bool {
	if tagged || len(frame) < 14 || !r.hold.held([6]byte(frame[0:6]), now) {
		return false
	}
	var f packet.Frame
	_ = packet.Decode(frame, &f) // the layers before an error stay decoded
	if f.NumTags != 0 || f.Transport != packet.ProtoUDP || f.UDP.SrcPort != 53 {
		return false
	}
	// A first IPv4 fragment is held: the rule sees its UDP header. An
	// IPv6 one has a fragment header, which the rule's nexthdr test refuses.
	return f.IP.Version == 4 || f.IP.NumExt == 0
}

// applyBatch marshals what build adds (after the extra messages, which go
// first in the batch) and sends it on conn, the lasting socket that owns
// the hold table, waiting for the kernel's verdict.
func applyBatch(conn *nftbatch.Conn, build func(c *nftables.Conn) error, first ...netlink.Message) error {
	cp, err := nftbatch.NewCapture()
	if err != nil {
		return err
	}
	if err := build(cp.Conn); err != nil {
		return fmt.Errorf("building nftables batch: %w", err)
	}
	msgs, err := cp.Take()
	if err != nil {
		return err
	}
	if len(msgs) < 2 {
		return errors.New("marshalling nftables batch: no batch")
	}
	// msgs is BATCH_BEGIN, the messages, BATCH_END.
	batch := append([]netlink.Message{msgs[0]}, first...)
	return conn.Send(append(batch, msgs[1:]...))
}

// bridgePorts lists the ports of the bridges in the namespace nsFd (0: the
// current one).
func bridgePorts(nsFd int, bridges []string) ([]string, error) {
	var h *vnl.Handle
	err := netns.DoFd(nsFd, func() (err error) {
		h, err = vnl.NewHandle()
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("listing bridge ports: %w", err)
	}
	defer h.Close()
	master := map[int]bool{}
	for _, b := range bridges {
		l, err := h.LinkByName(b)
		if err != nil {
			return nil, fmt.Errorf("listing the ports of %s: %w", b, err)
		}
		master[l.Attrs().Index] = true
	}
	links, err := h.LinkList()
	if err != nil {
		return nil, fmt.Errorf("listing bridge ports: %w", err)
	}
	var out []string
	for _, l := range links {
		if master[l.Attrs().MasterIndex] {
			out = append(out, l.Attrs().Name)
		}
	}
	return out, nil
}
