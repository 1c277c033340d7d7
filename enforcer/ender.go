package enforcer

import (
	"context"
	"net"
	"net/netip"
	"sync"
	"time"
)

// ender ends the flows of devices whose treatment tightened, in a goroutine
// of its own, right after the commit that changed their rules. Finding a
// device's conntrack entries means one walk of the kernel's whole conntrack
// hash table (~10 ms with 262,144 buckets, whatever the number of entries),
// and finding its remembered bridge flows a dump of the flow sets: done
// inside the commit, every device arrival would cost that, and the manager
// would wait for it. Here the commit returns as soon as the rules are in
// the kernel, and the walk follows at once; cuts queued while a walk runs
// are coalesced into the next, so a burst of 1,000 arrivals costs a few
// walks, not 1,000. Between the commit and the walk (milliseconds), a flow
// opened under the looser treatment can still pass; after it, none does.
type ender struct {
	mu      sync.Mutex
	addrs   map[netip.Addr]bool
	macs    map[string]net.HardwareAddr
	queued  uint64 // cuts handed over so far
	done    uint64 // cuts whose walk has completed
	doneC   *sync.Cond
	wake    chan struct{}
	stop    context.CancelFunc
	stopped chan struct{}
}

func newEnder() *ender {
	n := &ender{addrs: map[netip.Addr]bool{}, macs: map[string]net.HardwareAddr{}, wake: make(chan struct{}, 1), stopped: make(chan struct{})}
	n.doneC = sync.NewCond(&n.mu)
	return n
}

// add queues the flows of addresses and MACs to be ended.
func (n *ender) add(addrs []netip.Addr, macs []net.HardwareAddr) {
	if len(addrs) == 0 && len(macs) == 0 {
		return
	}
	n.mu.Lock()
	for _, a := range addrs {
		n.addrs[a.Unmap()] = true
	}
	for _, m := range macs {
		n.macs[string(m)] = m
	}
	n.queued++
	n.mu.Unlock()
	select {
	case n.wake <- struct{}{}:
	default:
	}
}

// take empties the queue.
func (n *ender) take() (addrs []netip.Addr, macs []net.HardwareAddr, upto uint64) {
	n.mu.Lock()
	defer n.mu.Unlock()
	for a := range n.addrs {
		addrs = append(addrs, a)
	}
	for _, m := range n.macs {
		macs = append(macs, m)
	}
	clear(n.addrs)
	clear(n.macs)
	return addrs, macs, n.queued
}

// finished records that every cut up to upto has been walked.
func (n *ender) finished(upto uint64) {
	n.mu.Lock()
	if upto > n.done {
		n.done = upto
	}
	n.doneC.Broadcast()
	n.mu.Unlock()
}

// startEnder starts the goroutine that ends flows; Close stops it.
func (e *Enforcer) startEnder() {
	n := newEnder()
	ctx, cancel := context.WithCancel(context.Background())
	n.stop = cancel
	e.ender = n
	go func() {
		defer close(n.stopped)
		for {
			select {
			case <-ctx.Done():
				n.finished(^uint64(0)) // release waiters
				return
			case <-n.wake:
			}
			addrs, macs, upto := n.take()
			e.endFlows(addrs, macs)
			n.finished(upto)
		}
	}()
}

// stopEnder stops the goroutine and waits for it.
func (e *Enforcer) stopEnder() {
	if e.ender != nil {
		e.ender.stop()
		<-e.ender.stopped
	}
}

// endFlows deletes the conntrack entries of the addresses and the bridge
// table's remembered flows of the MACs.
func (e *Enforcer) endFlows(addrs []netip.Addr, macs []net.HardwareAddr) {
	if err := e.deleteConntrack(addrs); err != nil {
		e.log.Warn("ending the flows of devices whose treatment tightened", "err", err)
	}
	if len(macs) == 0 {
		return
	}
	// Removal races with a packet that found its flow just before and
	// refreshes (re-adds) it after: the removal is repeated once, after
	// such a packet has long finished.
	for i := range 2 {
		if i > 0 {
			time.Sleep(2 * time.Millisecond)
		}
		e.mu.Lock()
		var err error
		if !e.closed {
			err = e.forgetFlows(macs, i == 0)
		}
		e.mu.Unlock()
		if err != nil {
			e.log.Warn("removing remembered bridged flows of devices whose treatment tightened", "err", err)
		}
	}
}

// FlowsEnded waits until the flows of every device whose treatment
// tightened in a commit that has returned have been ended (or ctx ends).
func (e *Enforcer) FlowsEnded(ctx context.Context) error {
	n := e.ender
	n.mu.Lock()
	want := n.queued
	n.mu.Unlock()
	stop := context.AfterFunc(ctx, func() {
		n.mu.Lock()
		n.doneC.Broadcast()
		n.mu.Unlock()
	})
	defer stop()
	n.mu.Lock()
	defer n.mu.Unlock()
	for n.done < want {
		if err := ctx.Err(); err != nil {
			return err
		}
		n.doneC.Wait()
	}
	return nil
}
