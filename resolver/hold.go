package resolver

// Hold and release: the device's first packet to a freshly answered
// address must find that address allowed, but the snooped answer reaches the
// device at the same moment the snooper sees it. So DNS answers (UDP from
// port 53) sent out of a port of a captured LAN bridge to a device with names are
// dropped in the bridge family's output hook by table bridge mud_dnshold
// (package enforcer/dnshold owns it and describes its rule), which runs
// after the bridge device's packet taps: the capture socket still sees
// them. The resolver decides what is held: the ports of the captured
// bridges and the devices with names. It parses the answer, calls
// Config.Apply (the enforcer's sets are updated), and re-injects the frame
// through the capture socket with the hold mark, which the hook lets pass.
// Irrelevant answers, and those from sources that are not trusted
// (trust.go), are re-injected at once. heldFrame mirrors the table's rule,
// so that every answer the hook drops is released. The ports are listed
// when Run starts, and a port added later is not held (its devices merely
// race their answers again).

import (
	"fmt"
	"sync"
	"time"

	"github.com/openmud/mud/enforcer/dnshold"
	"github.com/openmud/mud/internal/netns"
	"github.com/openmud/mud/internal/packet"
	vnl "github.com/vishvananda/netlink"
)

const (
	// DefaultApplyTimeout bounds one Config.Apply call for a held answer.
	DefaultApplyTimeout = 100 * time.Millisecond

	// holdLinger is how long frames to a device just removed from the hold
	// set are still treated as held: one captured before the removal may
	// have been dropped by the old set.
	holdLinger = 2 * time.Second
	// maxHeld bounds the answers waiting for Apply at once; beyond it, an
	// answer is released at once (its race is lost, DNS keeps working).
	maxHeld = 64
)

// holdState is the resolver's side of hold and release: the hold table
// and which device MACs may be in its hold set.
type holdState struct {
	// mu serialises changes of the device lists with the kernel set, so
	// that the set is always a subset of what held() reports.
	mu    sync.Mutex
	table *dnshold.Table // nil while not holding

	macMu sync.RWMutex
	// kernel is the MACs in the kernel set, which while holding is every
	// device with names: it keeps nothing but the MAC.
	kernel map[[6]byte]struct{}
	// lingering are MACs removed from the kernel set recently, held until
	// the time given; swept at most every holdLinger, so that a burst of
	// removals costs no more than its entries.
	lingering map[[6]byte]time.Time
	sweepAt   time.Time
}

// held reports whether the kernel may have dropped a frame to mac.
func (h *holdState) held(mac [6]byte, now time.Time) bool {
	h.macMu.RLock()
	defer h.macMu.RUnlock()
	if _, ok := h.kernel[mac]; ok {
		return true
	}
	until, ok := h.lingering[mac]
	return ok && now.Before(until)
}

func (h *holdState) inKernel(mac [6]byte) bool {
	h.macMu.RLock()
	defer h.macMu.RUnlock()
	_, ok := h.kernel[mac]
	return ok
}

// markHeld records that mac is in the kernel set.
func (h *holdState) markHeld(mac [6]byte) {
	h.macMu.Lock()
	defer h.macMu.Unlock()
	if h.kernel == nil {
		h.kernel = make(map[[6]byte]struct{})
	}
	h.kernel[mac] = struct{}{}
	delete(h.lingering, mac)
}

// markReleased records that mac left the kernel set and is held until then.
func (h *holdState) markReleased(mac [6]byte, until time.Time) {
	h.macMu.Lock()
	defer h.macMu.Unlock()
	delete(h.kernel, mac)
	if h.lingering == nil {
		h.lingering = make(map[[6]byte]time.Time)
	}
	if now := time.Now(); !now.Before(h.sweepAt) {
		for k, u := range h.lingering {
			if !now.Before(u) {
				delete(h.lingering, k)
			}
		}
		h.sweepAt = now.Add(holdLinger)
	}
	h.lingering[mac] = until
}

// add puts mac into the kernel set (h.mu held). Not holding: nothing to do.
func (h *holdState) add(mac [6]byte) error {
	if h.table == nil || h.inKernel(mac) {
		return nil
	}
	if err := h.table.Add(mac); err != nil {
		return err
	}
	h.markHeld(mac)
	return nil
}

// remove takes mac out of the kernel set (h.mu held). On failure the MAC
// stays held: its answers keep being released.
func (h *holdState) remove(mac [6]byte) error {
	if h.table == nil || !h.inKernel(mac) {
		return nil
	}
	if err := h.table.Remove(mac); err != nil {
		return err
	}
	h.markReleased(mac, time.Now().Add(holdLinger))
	return nil
}

// startHold creates the hold table for the ports of the captured bridges
// with every device known so far; it lasts until stopHold.
func (r *Resolver) startHold(ports []string) error {
	h := &r.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	r.snoop.mu.RLock()
	macs := make([][6]byte, 0, len(r.snoop.devices))
	for k := range r.snoop.devices {
		macs = append(macs, k)
	}
	r.snoop.mu.RUnlock()
	t, err := dnshold.Open(dnshold.Config{NetNSFd: r.cfg.NetNSFd, Ports: ports, Devices: macs,
		Mark: r.cfg.HoldMark, Priority: *r.cfg.HoldPriority})
	if err != nil {
		return err
	}
	h.table = t
	for _, m := range macs {
		h.markHeld(m)
	}
	return nil
}

// stopHold closes the hold table: the kernel deletes it.
func (r *Resolver) stopHold() {
	h := &r.hold
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.table == nil {
		return
	}
	h.table.Close()
	h.table = nil
	h.macMu.Lock()
	h.kernel, h.lingering = nil, nil
	h.macMu.Unlock()
}

// heldFrame reports whether the hold chain dropped this captured frame,
// mirroring the rule of enforcer/dnshold's table: untagged (neither a tag
// in the bytes nor one the kernel held apart, tagged), to a held device,
// IPv4 or IPv6 without extension headers, UDP from port 53, not a later
// fragment. The capture filter already skipped frames with the hold mark.
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
