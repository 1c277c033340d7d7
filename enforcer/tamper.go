package enforcer

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"github.com/openmud/mud/enforcer/nftwire"
	"github.com/openmud/mud/enforcer/plan"
	"github.com/openmud/mud/internal/nftmon"
	"golang.org/x/sys/unix"
)

// Tamper is a change to our tables that someone else made, and that Run
// undid.
type Tamper struct {
	At time.Time
	// What names what was changed and by whom, e.g. "element deleted from
	// set guard4 in table bridge mud by port 4242 (nft, task 4242)", or
	// what the periodic comparison found different.
	What string
}

// Defaults of the watch.
const (
	// DefaultVerifyInterval is how often Run compares the kernel's tables
	// with the plan as a backstop to the notifications.
	DefaultVerifyInterval = time.Minute
	// tamperSettle is how long Run waits for more notifications after a
	// foreign change before it repairs, so that one `nft -f` script costs
	// one repair (well within the second a repair may take).
	tamperSettle = 50 * time.Millisecond
)

// watchedTables are the tables whose notifications Run follows.
func watchedTables() []nftmon.Table {
	var out []nftmon.Table
	for _, f := range plan.Families {
		t := nftwire.Table(f)
		out = append(out, nftmon.Table{Family: t.Family, Name: t.Name})
	}
	return out
}

// openMonitor subscribes to nftables notifications in our namespace and
// tells the kernel to drop those of our own batches. Without it (an error),
// Run falls back to polling the base chains.
func (e *Enforcer) openMonitor() (*nftmon.Monitor, error) {
	mon, err := nftmon.Open(nftmon.Config{NetNSFd: e.nsFd, Tables: watchedTables()})
	if err != nil {
		return nil, err
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	port, err := e.raw.PortID()
	if err == nil {
		e.ownPorts = []uint32{port}
		err = mon.IgnorePorts(port)
	}
	if err != nil {
		mon.Close()
		return nil, err
	}
	e.mon = mon
	return mon, nil
}

// reopened is called (e.mu held) when commit replaced the batch socket:
// the new socket's batches are ours too, and so are any of the old one's
// still queued.
func (e *Enforcer) reopened() {
	if e.mon == nil {
		return
	}
	port, err := e.raw.PortID()
	if err != nil {
		e.log.Warn("watching our tables: the new netlink socket's port is unknown; our own batches will look foreign", "err", err)
		return
	}
	e.ownPorts = append([]uint32{port}, e.ownPorts...)
	if len(e.ownPorts) > 2 {
		e.ownPorts = e.ownPorts[:2]
	}
	if err := e.mon.IgnorePorts(e.ownPorts...); err != nil {
		e.log.Warn("watching our tables: ignoring our own batches", "err", err)
	}
}

// Run keeps our tables as planned until ctx ends, and returns ctx.Err().
//
// It follows the kernel's nftables notifications for our tables: a change
// made by any other netlink socket (nft, a script, another daemon) is
// undone at once by rebuilding the tables from the plan in one transaction,
// and reported to Config.OnTamper and the log, naming what was changed. If
// notifications were lost, it compares everything. Every VerifyInterval it
// compares the kernel's chains, rule counts and set elements with the plan
// anyway, as a backstop. Every RepairInterval it re-reads br_netfilter's
// settings (bridged replies follow them) and retries a rebuild that failed.
func (e *Enforcer) Run(ctx context.Context) error {
	var events <-chan nftmon.Event
	mon, err := e.openMonitor()
	if err != nil {
		e.log.Warn("cannot watch nftables notifications; falling back to polling our base chains", "err", err)
	} else {
		var wg sync.WaitGroup
		mctx, cancel := context.WithCancel(ctx)
		wg.Go(func() { _ = mon.Run(mctx) })
		defer func() {
			cancel()
			mon.Close()
			wg.Wait()
			e.mu.Lock()
			e.mon = nil
			e.mu.Unlock()
		}()
		events = mon.Events()
	}
	tick := time.NewTicker(e.cfg.RepairInterval)
	defer tick.Stop()
	verify := time.NewTicker(e.cfg.VerifyInterval)
	defer verify.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			e.onNotifications(ctx, e.settle(ctx, ev, events))
		case <-tick.C:
			if err := e.checkAndRepair(ctx, mon == nil); err != nil {
				e.log.Error("repairing nftables tables", "err", err)
			}
		case <-verify.C:
			if err := e.verify(ctx); err != nil {
				e.log.Error("comparing nftables tables with the plan", "err", err)
			}
		}
	}
}

// settle collects the notifications that follow first within tamperSettle.
func (e *Enforcer) settle(ctx context.Context, first nftmon.Event, events <-chan nftmon.Event) []nftmon.Event {
	evs := []nftmon.Event{first}
	t := time.NewTimer(tamperSettle)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return evs
		case <-t.C:
			return evs
		case ev, ok := <-events:
			if !ok {
				return evs
			}
			evs = append(evs, ev)
		}
	}
}

// onNotifications repairs after foreign changes (or lost notifications).
func (e *Enforcer) onNotifications(ctx context.Context, evs []nftmon.Event) {
	var what []string
	resync := false
	for _, ev := range evs {
		switch {
		case ev.Resync:
			resync = true
		case e.foreign(ev):
			what = append(what, ev.String())
		}
	}
	if len(what) > 0 {
		if err := e.repair(ctx, strings.Join(what, "; ")); err != nil {
			e.log.Error("repairing nftables tables", "err", err)
		}
		return
	}
	if resync {
		e.log.Warn("nftables notifications were lost; comparing our tables with the plan")
		if err := e.verify(ctx); err != nil {
			e.log.Error("comparing nftables tables with the plan", "err", err)
		}
	}
}

// foreign tells whether a notified transaction is someone else's change.
// The kernel filter drops our own batches; what still arrives from port 0
// to a flow set is the packet path remembering a flow (reflexive mode).
func (e *Enforcer) foreign(ev nftmon.Event) bool {
	e.mu.Lock()
	own := slices.Contains(e.ownPorts, ev.PortID)
	e.mu.Unlock()
	if own {
		return false
	}
	for _, c := range ev.Changes {
		if ev.PortID == 0 && c.Kind == nftmon.KindElement && (c.Name == plan.SetFlows4 || c.Name == plan.SetFlows6) {
			continue
		}
		return true
	}
	return ev.Omitted > 0
}

// repair rebuilds our tables from the plan in one transaction and reports
// what was changed.
func (e *Enforcer) repair(ctx context.Context, what string) error {
	e.mu.Lock()
	if e.closed || !e.pl.Installed() {
		e.mu.Unlock()
		return nil
	}
	e.log.Warn("nftables tables of mud were changed from outside; restoring", "what", what)
	e.repairs++
	err := e.commit(ctx, e.pl.Rebuild)
	e.mu.Unlock()
	if e.cfg.OnTamper != nil {
		e.cfg.OnTamper(Tamper{At: time.Now(), What: what})
	}
	return err
}

// verify compares the kernel's tables with the plan and repairs what
// differs.
func (e *Enforcer) verify(ctx context.Context) error {
	e.mu.Lock()
	if e.closed || !e.pl.Installed() || !e.pl.Known() {
		e.mu.Unlock()
		return nil
	}
	diff, err := e.compare(time.Now())
	e.mu.Unlock()
	if err != nil || diff == "" {
		return err
	}
	return e.repair(ctx, "the periodic comparison found "+diff)
}

// compare lists how the kernel's tables differ from the plan (e.mu held):
// chains missing or unexpected, rule counts, sets unexpected, set elements
// missing, unexpected or with another value. An element with a timeout
// that is due within a few seconds may be gone; the flow sets of the
// bridge table, which the packet path fills, are not compared.
func (e *Enforcer) compare(now time.Time) (string, error) {
	got := plan.NewTables()
	var diffs []string
	for _, f := range plan.Families {
		t := nftwire.Table(f)
		counts, err := e.ruleCounts(t)
		if err != nil {
			return "", err
		}
		if counts == nil {
			continue // no such table
		}
		tb := got.PutTable(f)
		for name, n := range counts {
			// the rules' number, not what they are
			tb.PutChain(&plan.Chain{ID: plan.ChainRef{Family: f, Name: name}, Rules: make([]plan.Rule, n)})
		}
		sets, err := e.rd.GetSets(t)
		if err != nil {
			return "", fmt.Errorf("listing the sets of table %s %s: %w", f, t.Name, err)
		}
		for _, s := range sets {
			spec, ok := e.pl.Set(f, s.Name)
			if !ok {
				tb.PutSet(plan.Set{Name: s.Name})
				continue
			}
			st := tb.PutSet(spec)
			if spec.Dynamic {
				continue
			}
			els, err := e.rd.GetSetElements(s)
			if err != nil {
				return "", fmt.Errorf("listing set %s of table %s %s: %w", s.Name, f, t.Name, err)
			}
			for _, el := range els {
				if el.IntervalEnd {
					continue
				}
				pe, err := nftwire.DecodeElem(spec, el)
				if err != nil {
					diffs = append(diffs, fmt.Sprintf("an element of set %s of table %s %s is not of its type", s.Name, f, t.Name))
					continue
				}
				st.Elems[pe.Key] = pe
			}
		}
	}
	diffs = append(diffs, plan.Verify(e.pl.Tables(), got, now, 8)...)
	return strings.Join(diffs[:min(len(diffs), 8)], "; "), nil
}

// ruleCounts dumps the rules of a table and counts them per chain (one
// netlink dump; only each rule's chain attribute is read). Nil means the
// table does not exist.
func (e *Enforcer) ruleCounts(t *nftables.Table) (map[string]int, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: max(e.nsFd, 0)})
	if err != nil {
		return nil, fmt.Errorf("opening netfilter netlink socket: %w", err)
	}
	defer c.Close()
	_ = c.SetReadBuffer(8 << 20)
	chains, err := e.rd.ListChainsOfTableFamily(t.Family)
	if err != nil {
		return nil, fmt.Errorf("listing chains: %w", err)
	}
	counts := map[string]int{}
	found := false
	for _, ch := range chains {
		if ch.Table.Name == t.Name {
			counts[ch.Name] = 0
			found = true
		}
	}
	if !found {
		if _, err := e.rd.ListTableOfFamily(t.Name, t.Family); err != nil {
			return nil, nil // no such table
		}
	}
	attrs, err := netlink.MarshalAttributes([]netlink.Attribute{{Type: unix.NFTA_RULE_TABLE, Data: []byte(t.Name + "\x00")}})
	if err != nil {
		return nil, err
	}
	req := netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETRULE),
			Flags: netlink.Request | netlink.Dump},
		Data: append([]byte{byte(t.Family), unix.NFNETLINK_V0, 0, 0}, attrs...),
	}
	msgs, err := c.Execute(req)
	if err != nil {
		return nil, fmt.Errorf("dumping the rules of table %s: %w", t.Name, err)
	}
	for _, m := range msgs {
		if len(m.Data) < 4 {
			continue
		}
		ad, err := netlink.NewAttributeDecoder(m.Data[4:])
		if err != nil {
			return nil, fmt.Errorf("decoding a rule: %w", err)
		}
		for ad.Next() {
			if ad.Type() == unix.NFTA_RULE_CHAIN {
				counts[ad.String()]++
			}
		}
	}
	return counts, nil
}
