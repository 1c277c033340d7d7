// Package nftwire is the wire layer of the enforcer: it encodes a plan
// (package plan) into one batch of netlink messages — tables, sets and
// chains through google/nftables, rules as their expressions, set
// elements by hand with a codec for every key type — and decodes what the
// kernel lists back into the plan's typed values. The batches go to the
// kernel on internal/nftbatch's socket.
package nftwire

import (
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/userdata"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/internal/nftbatch"
	"golang.org/x/sys/unix"
)

// Encoder encodes plans. It is not safe for concurrent use.
type Encoder struct {
	cap   *nftbatch.Capture
	setID uint32
}

// NewEncoder returns an Encoder.
func NewEncoder() (*Encoder, error) {
	c, err := nftbatch.NewCapture()
	if err != nil {
		return nil, err
	}
	return &Encoder{cap: c}, nil
}

// Table is the google/nftables object of one of our tables.
func Table(f plan.Family) *nftables.Table {
	if f == plan.Bridge {
		return &nftables.Table{Family: nftables.TableFamilyBridge, Name: plan.TableName}
	}
	return &nftables.Table{Family: nftables.TableFamilyINet, Name: plan.TableName}
}

var keyTypes = map[plan.KeyType]nftables.SetDatatype{
	plan.KeyMark:     nftables.TypeMark,
	plan.KeyMAC:      nftables.TypeEtherAddr,
	plan.KeyIPv4:     nftables.TypeIPAddr,
	plan.KeyIPv6:     nftables.TypeIP6Addr,
	plan.KeyMACIPv4:  nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIPAddr),
	plan.KeyMACIPv6:  nftables.MustConcatSetType(nftables.TypeEtherAddr, nftables.TypeIP6Addr),
	plan.KeyMarkIPv4: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIPAddr),
	plan.KeyMarkIPv6: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeIP6Addr),
	plan.KeyMarkMark: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark),
	plan.KeyACL: nftables.MustConcatSetType(nftables.TypeMark, nftables.TypeMark, nftables.TypeMark,
		nftables.TypeInetProto, nftables.TypeInetService),
	// the flow keys are raw bytes of their concatenation's length
	plan.KeyFlow4: {Name: "flow", Bytes: 36},
	plan.KeyFlow6: {Name: "flow", Bytes: 60},
}

// SetObject is the google/nftables object of one of our sets (for reading
// it, or creating it with an id).
func SetObject(f plan.Family, s plan.Set) *nftables.Set {
	kt := keyTypes[s.Key]
	o := &nftables.Set{Table: Table(f), Name: s.Name, KeyType: kt, Concatenation: isConcat(s.Key),
		Interval: s.Interval, HasTimeout: s.Timeout, Counter: s.Counter, Dynamic: s.Dynamic, Size: s.Size}
	switch s.Value {
	case plan.ValueMark:
		o.IsMap, o.DataType = true, nftables.TypeMark
	case plan.ValueVerdict:
		o.IsMap, o.DataType = true, nftables.TypeVerdict
	}
	return o
}

func isConcat(k plan.KeyType) bool {
	switch k {
	case plan.KeyMACIPv4, plan.KeyMACIPv6, plan.KeyMarkIPv4, plan.KeyMarkIPv6, plan.KeyMarkMark, plan.KeyACL:
		return true
	}
	return false
}

var hooks = map[plan.HookNum]*nftables.ChainHook{
	plan.HookForward: nftables.ChainHookForward,
	plan.HookInput:   nftables.ChainHookInput,
}

// ChainObject is the google/nftables object of one of our chains.
func ChainObject(c plan.ChainRef, h *plan.Hook) *nftables.Chain {
	ch := &nftables.Chain{Table: Table(c.Family), Name: c.Name}
	if h != nil {
		pol := nftables.ChainPolicyAccept
		ch.Type, ch.Hooknum, ch.Priority, ch.Policy = nftables.ChainTypeFilter, hooks[h.Num],
			nftables.ChainPriorityRef(nftables.ChainPriority(h.Priority)), &pol
	}
	return ch
}

// Encode encodes a plan as one batch (BATCH_BEGIN … BATCH_END), in the
// order Plan documents. Timeouts are the elements' expiries minus now.
// fault, if not nil, may append messages after the rules and before the
// added elements (tests: a batch the kernel rejects half-way).
func (en *Encoder) Encode(p *plan.Plan, now time.Time, fault func([]netlink.Message) []netlink.Message) ([]netlink.Message, error) {
	c := en.cap.Conn
	for _, t := range p.Tables {
		tb := Table(t.Family)
		// add + delete + add: the old table (whatever someone made of
		// it) goes away and the new one appears in the same
		// transaction; packets see one or the other.
		c.AddTable(tb)
		c.DelTable(tb)
		c.AddTable(tb)
		for _, s := range t.Sets {
			o := SetObject(t.Family, s)
			// Our own set ids: google/nftables' counter is a package
			// global, unsafe with more than one connection.
			en.setID++
			o.ID = en.setID
			if err := c.AddSet(o, nil); err != nil {
				en.reset()
				return nil, fmt.Errorf("adding set %s: %w", s.Name, err)
			}
		}
	}
	setup, err := en.take()
	if err != nil {
		return nil, err
	}
	batch := []netlink.Message{batchMsg(unix.NFNL_MSG_BATCH_BEGIN)}
	batch = append(batch, setup...)
	for _, se := range p.DelElems {
		op := ElemDelete
		if se.Destroy {
			op = ElemDestroy
		}
		batch = append(batch, ElemMsgs(se.Set, se.Elems, op, now)...)
	}
	for _, ch := range p.AddChains {
		c.AddChain(ChainObject(ch.ID, ch.Hook))
	}
	for _, ch := range p.FlushChains {
		c.FlushChain(ChainObject(ch.ID, ch.Hook))
	}
	for _, id := range p.DelChains {
		c.DelChain(ChainObject(id, nil))
	}
	for _, l := range [][]*plan.Chain{p.FlushChains, p.AddChains} {
		for _, ch := range l {
			co := ChainObject(ch.ID, nil)
			for _, r := range ch.Rules {
				nr := &nftables.Rule{Table: co.Table, Chain: co, Exprs: r.Exprs()}
				if cm := r.Comment(); cm != "" {
					nr.UserData = userdata.AppendString(nil, userdata.TypeComment, cm)
				}
				c.AddRule(nr)
			}
		}
	}
	chains, err := en.take()
	if err != nil {
		return nil, err
	}
	batch = append(batch, chains...)
	if fault != nil {
		batch = fault(batch)
	}
	return append(addElems(batch, p.AddElems, now), batchMsg(unix.NFNL_MSG_BATCH_END)), nil
}

// addElems appends the messages adding elements. Many elements (a
// rebuild: ~350,000 at 10,000 policies) are encoded in two halves at once,
// the second on another core.
func addElems(batch []netlink.Message, sets []plan.SetElems, now time.Time) []netlink.Message {
	total := 0
	for _, se := range sets {
		total += len(se.Elems)
	}
	half, n := len(sets), 0
	if total >= 20000 {
		for i, se := range sets {
			if n += len(se.Elems); n >= total/2 {
				half = i + 1
				break
			}
		}
	}
	second := make(chan []netlink.Message, 1)
	if half < len(sets) {
		go func() {
			var msgs []netlink.Message
			for _, se := range sets[half:] {
				msgs = append(msgs, ElemMsgs(se.Set, se.Elems, ElemAdd, now)...)
			}
			second <- msgs
		}()
	} else {
		second <- nil
	}
	for _, se := range sets[:half] {
		batch = append(batch, ElemMsgs(se.Set, se.Elems, ElemAdd, now)...)
	}
	return append(batch, <-second...)
}

// Probe encodes a batch that creates a table with one chain holding one
// rule and deletes it again: the kernel accepts it only if it can do what
// the rule does.
func (en *Encoder) Probe(f plan.Family, table string, hook *plan.Hook, r plan.Rule) ([]netlink.Message, error) {
	tb := Table(f)
	tb.Name = table
	c := en.cap.Conn
	c.AddTable(tb)
	ch := ChainObject(plan.ChainRef{Family: f, Name: "probe"}, hook)
	ch.Table = tb
	c.AddChain(ch)
	c.AddRule(&nftables.Rule{Table: tb, Chain: ch, Exprs: r.Exprs()})
	c.DelTable(tb)
	msgs, err := en.take()
	if err != nil {
		return nil, err
	}
	return Batch(msgs...), nil
}

// ProbeDestroy encodes a batch that creates a table with a set, deletes
// an element the set does not have with NFT_MSG_DESTROYSETELEM and deletes
// the table again: a kernel that knows the message (Linux 6.3) accepts it.
func (en *Encoder) ProbeDestroy(table string) ([]netlink.Message, error) {
	tb := Table(plan.Inet)
	tb.Name = table
	c := en.cap.Conn
	c.AddTable(tb)
	en.setID++
	s := &nftables.Set{Table: tb, Name: "probe", KeyType: nftables.TypeMark, ID: en.setID}
	if err := c.AddSet(s, nil); err != nil {
		en.reset()
		return nil, err
	}
	setup, err := en.take()
	if err != nil {
		return nil, err
	}
	c.DelTable(tb)
	del, err := en.take()
	if err != nil {
		return nil, err
	}
	destroy := elemMsgs(table, plan.SetRef{Family: plan.Inet, Name: "probe"}, []*plan.Elem{{Key: plan.MarkKey(1)}}, ElemDestroy, time.Time{})
	return Batch(append(append(setup, destroy...), del...)...), nil
}

// take returns the captured messages without BATCH_BEGIN and BATCH_END.
func (en *Encoder) take() ([]netlink.Message, error) {
	msgs, err := en.cap.Take()
	if err != nil {
		en.reset()
		return nil, err
	}
	if len(msgs) < 2 {
		return nil, nil
	}
	return msgs[1 : len(msgs)-1], nil
}

// reset starts afresh: google/nftables keeps a marshalling error forever.
func (en *Encoder) reset() {
	if c, err := nftbatch.NewCapture(); err == nil {
		en.cap = c
	}
}

// Batch wraps messages in BATCH_BEGIN and BATCH_END.
func Batch(msgs ...netlink.Message) []netlink.Message {
	out := make([]netlink.Message, 0, len(msgs)+2)
	out = append(out, batchMsg(unix.NFNL_MSG_BATCH_BEGIN))
	out = append(out, msgs...)
	return append(out, batchMsg(unix.NFNL_MSG_BATCH_END))
}

func batchMsg(typ int) netlink.Message {
	return netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, 0, 0, unix.NFNL_SUBSYS_NFTABLES},
	}
}
