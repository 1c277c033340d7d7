// Package dnshold owns table bridge mud_dnshold, the nftables table that
// holds DNS answers back on their way to a MUD device: it creates the
// table, its sets and its chain on a netlink socket of its own, changes
// the set of held devices, and nothing else. Which devices are held, and
// when a held answer is released (re-sent with the mark), is the
// resolver's decision; it calls this package.
//
//	table bridge mud_dnshold {    # flags owner
//	  set ports { type ifname }         # the bridge ports answers leave by
//	  set hold { type ether_addr }      # the held devices
//	  chain out {
//	    type filter hook output priority -300;
//	    meta mark & M != M oifname @ports ether daddr @hold
//	      ether type ip meta l4proto udp udp sport 53 counter drop
//	    meta mark & M != M oifname @ports ether daddr @hold
//	      ether type ip6 ip6 nexthdr udp meta l4proto udp udp sport 53 counter drop
//	  }
//	}
//
// The bridge family's output hook runs after the bridge device's packet
// taps, so a capture socket on the bridge still sees every answer the
// chain drops. The table carries the owner flag: the kernel deletes it
// when the netlink socket that created it closes, also when the process
// is killed, so a hold never outlives the process that releases it.
// `ether type` sees the VLAN tag of accelerated frames, so tagged frames
// are never held, and IPv6 is held only without extension headers: what
// the chain drops is exactly what a capture that re-injects untagged
// frames can release (the resolver mirrors the rule to tell which
// captured frames were dropped; change both together). The rule names
// the bridges' ports, not the bridges (`meta obrname` needs
// nft_meta_bridge, which kernels often lack), so that answers leaving a
// bridge nobody captures are never held.
package dnshold

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"sync"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/internal/nftbatch"
	"golang.org/x/sys/unix"
)

const (
	// TableName is the name of the bridge-family table that holds DNS
	// answers.
	TableName = "mud_dnshold"
	// DefaultMark is a packet mark bit for Config.Mark that common
	// firewalls and VPNs leave alone.
	DefaultMark uint32 = 0x10000000
	// DefaultPriority is the hold chain's default priority in the bridge
	// output hook: before the usual bridge filters (-200), so a held answer
	// is counted once by them, when it is released.
	DefaultPriority int32 = -300

	// elementsPerMessage bounds the MACs of one netlink message (each
	// takes about 24 bytes of attributes; a message may not pass 64 KiB).
	elementsPerMessage = 1024

	// flagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to
	// the netlink socket that created it and goes with it.
	flagOwner = 0x2
)

// Config says where the table is created and what it holds.
type Config struct {
	// NetNSFd is the network namespace the table is created in (0: the
	// current one).
	NetNSFd int
	// Ports are the bridge ports whose outgoing DNS answers are held
	// (interface names). Answers leaving by any other interface pass.
	Ports []string
	// Devices are the MACs held from the start; Add and Remove change them.
	Devices [][6]byte
	// Mark is the release mark: an answer whose packet mark has all of its
	// bits passes. It must not be zero. DefaultMark is mudd's default.
	Mark uint32
	// Priority is the chain's priority in the bridge output hook;
	// DefaultPriority is mudd's default.
	Priority int32
}

// Table is the hold table in the kernel, alive while its socket is open.
// Its methods are safe for concurrent use.
type Table struct {
	mu   sync.Mutex
	sock *nftbatch.Conn // nil once closed
	hold *nftables.Set
}

// Open creates the table on a netlink socket of its own, in one
// transaction, and keeps the socket until Close. A table of the same name
// that is not this socket's (another mudd's in the namespace, or one made
// with nft) is never taken over: Open fails and says which it is.
func Open(cfg Config) (*Table, error) {
	if cfg.Mark == 0 {
		return nil, errors.New("creating the DNS hold table: the release mark is zero, so no held answer could ever pass")
	}
	ports := make([]nftables.SetElement, 0, len(cfg.Ports))
	for _, p := range cfg.Ports {
		if p == "" || len(p) >= unix.IFNAMSIZ {
			return nil, fmt.Errorf("creating the DNS hold table: %q is not an interface name", p)
		}
		k := make([]byte, unix.IFNAMSIZ)
		copy(k, p)
		ports = append(ports, nftables.SetElement{Key: k})
	}
	held := make([]nftables.SetElement, 0, len(cfg.Devices))
	for _, m := range cfg.Devices {
		held = append(held, nftables.SetElement{Key: m[:]})
	}

	sock, err := nftbatch.Open(cfg.NetNSFd)
	if err != nil {
		return nil, fmt.Errorf("creating the DNS hold table: %w", err)
	}
	t := &nftables.Table{Name: TableName, Family: nftables.TableFamilyBridge}
	portSet := &nftables.Set{Table: t, Name: "ports", KeyType: nftables.TypeIFName}
	holdSet := &nftables.Set{Table: t, Name: "hold", KeyType: nftables.TypeEtherAddr}
	err = applyBatch(sock, func(c *nftables.Conn) error {
		if err := c.AddSet(portSet, ports); err != nil {
			return err
		}
		// One netlink message holds at most 64 KiB: the MACs go in
		// chunks, all in the one transaction.
		first := held[:min(len(held), elementsPerMessage)]
		if err := c.AddSet(holdSet, first); err != nil {
			return err
		}
		for rest := held[len(first):]; len(rest) > 0; {
			n := min(len(rest), elementsPerMessage)
			if err := c.SetAddElements(holdSet, rest[:n]); err != nil {
				return err
			}
			rest = rest[n:]
		}
		ch := c.AddChain(&nftables.Chain{Name: "out", Table: t, Type: nftables.ChainTypeFilter,
			Hooknum: nftables.ChainHookOutput, Priority: nftables.ChainPriorityRef(nftables.ChainPriority(cfg.Priority))})
		for _, v6 := range []bool{false, true} {
			c.AddRule(&nftables.Rule{Table: t, Chain: ch, Exprs: holdRule(cfg.Mark, portSet, holdSet, v6)})
		}
		return nil
	}, newOwnerTable())
	if err != nil {
		sock.Close()
		var be *nftbatch.BatchError
		switch {
		case errors.As(err, &be) && be.Has(unix.EPERM):
			// The kernel's answer for a table another socket owns.
			return nil, fmt.Errorf("creating the DNS hold table: table bridge %s belongs to another process (another mudd running in this namespace?): %w", TableName, err)
		case errors.As(err, &be) && be.Has(unix.EEXIST):
			return nil, fmt.Errorf("creating the DNS hold table: table bridge %s exists and is not mudd's (delete it, e.g. with nft): %w", TableName, err)
		}
		return nil, fmt.Errorf("creating the DNS hold table: %w", err)
	}
	return &Table{sock: sock, hold: holdSet}, nil
}

// Add puts mac into the hold set; one already there stays.
func (t *Table) Add(mac [6]byte) error {
	if err := t.change(func(c *nftables.Conn) error {
		return c.SetAddElements(t.hold, []nftables.SetElement{{Key: mac[:]}})
	}); err != nil {
		return fmt.Errorf("adding %s to the DNS hold set: %w", net.HardwareAddr(mac[:]), err)
	}
	return nil
}

// Remove takes mac out of the hold set. The kernel refuses a MAC that is
// not in it; on any failure the MAC stays held.
func (t *Table) Remove(mac [6]byte) error {
	if err := t.change(func(c *nftables.Conn) error {
		return c.SetDeleteElements(t.hold, []nftables.SetElement{{Key: mac[:]}})
	}); err != nil {
		return fmt.Errorf("removing %s from the DNS hold set: %w", net.HardwareAddr(mac[:]), err)
	}
	return nil
}

func (t *Table) change(build func(c *nftables.Conn) error) error {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sock == nil {
		return errors.New("the DNS hold table is closed")
	}
	return applyBatch(t.sock, build)
}

// Close closes the socket, which makes the kernel delete the table. Later
// calls do nothing.
func (t *Table) Close() {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.sock != nil {
		t.sock.Close()
		t.sock = nil
	}
}

// holdRule drops a DNS answer (UDP from port 53, over IPv4, or IPv6 without
// extension headers) sent out of one of the ports to a held device, unless
// it carries the mark.
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
	ae.String(unix.NFTA_TABLE_NAME, TableName)
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_TABLE_FLAGS, flagOwner)
	data, _ := ae.Encode() // encoding a string and an integer cannot fail
	return netlink.Message{
		Header: netlink.Header{
			Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_NEWTABLE),
			Flags: netlink.Request | netlink.Create | netlink.Excl,
		},
		Data: append([]byte{unix.NFPROTO_BRIDGE, unix.NFNETLINK_V0, 0, 0}, data...),
	}
}

// applyBatch marshals what build adds (after the extra messages, which go
// first in the batch) and sends it on conn, the lasting socket that owns
// the table, waiting for the kernel's verdict.
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
