package manager

import (
	"fmt"
	"slices"
	"time"

	"github.com/openmud/mud/store"
)

// Fetch scheduling: which queued fetch starts next.
//
// A fetch waits in the queue of the bridge port its device is on (the port
// dhcpsnoop found in the bridge's forwarding database; "" is the "unknown
// port" bucket). When a fetch slot is free, the ports take turns; within a
// port, URLs of devices that hold a lease go before those of devices that
// only asked (a DHCP flood from made-up MACs mostly gets no lease), each in
// arrival order. A fetch starts only within four limits:
//
//   - MaxFetches slots in flight overall, and MaxFetchesPerPort of them for
//     one port, so that a port whose fetches hang (slow MUD servers) leaves
//     slots to the others;
//   - FetchBudget fetches started overall, FetchBudgetPerPort per port and
//     FetchBudgetPerDevice per device in any FetchWindow, so that one port
//     (or one device announcing URL after URL) cannot spend what the others
//     need.
//
// A fetch over a budget is not refused: it waits, and the device stays in
// "fetching" (unenforced or blocked, with the reason in its fetch status)
// until the window lets it start. An administrator's refresh goes first on
// its port and is held only to the slots and the overall budget. A port
// with FloodQueue URLs waiting, or over its budget, raises a "fetch-flood"
// event naming it, at most once a FloodEventEvery.

// Defaults of the scheduling limits (see Config).
const (
	DefaultMaxFetches           = 8
	DefaultFetchWindow          = 10 * time.Minute
	DefaultFetchBudget          = 600
	DefaultFetchBudgetPerPort   = 150
	DefaultFetchBudgetPerDevice = 10
	DefaultFloodQueue           = 32
	DefaultFloodEventEvery      = time.Minute
)

// fetchJob is a fetch waiting to start.
type fetchJob struct {
	url   string
	mac   string // the device whose arrival asked for it (its budget pays)
	port  string // that device's port
	force bool   // an administrator's refresh: unconditional, first in line
	at    time.Time
}

// portQueue holds the URLs waiting on one port: leased devices' first.
type portQueue struct {
	leased, other []string
	in            map[string]bool
}

// scheduler is the Run goroutine's bookkeeping of slots and budgets.
type scheduler struct {
	queues   map[string]*portQueue
	ring     []string // ports with a queue, in turn order
	turn     int
	busy     int
	portBusy map[string]int
	started  []time.Time            // fetch starts in the window, overall
	portRun  map[string][]time.Time // ... per port
	macRun   map[string][]time.Time // ... per device
	flooded  map[string]time.Time   // port → last fetch-flood event
}

func newScheduler() *scheduler {
	return &scheduler{queues: map[string]*portQueue{}, portBusy: map[string]int{}, portRun: map[string][]time.Time{},
		macRun: map[string][]time.Time{}, flooded: map[string]time.Time{}}
}

// portName is how events and views name a port.
func portName(p string) string {
	if p == "" {
		return "unknown port"
	}
	return "port " + p
}

// enqueue asks for a fetch of u for device d (which decides the port,
// the budget and the priority). A URL already queued or in flight is not
// queued twice; an administrator's refresh goes first on its port.
func (m *Manager) enqueue(u string, d *store.Device, force bool) {
	s := m.st
	if u == "" || s.fetching[u] {
		return
	}
	mac, port := "", ""
	leased := false
	if d != nil {
		mac, port, leased = d.MAC, d.Port, len(d.IPs) > 0
	}
	j := s.jobs[u]
	if j == nil {
		j = &fetchJob{url: u, mac: mac, port: port, at: m.now()}
		s.jobs[u] = j
	}
	j.force = j.force || force
	q := m.sched.queues[port]
	if q == nil {
		q = &portQueue{in: map[string]bool{}}
		m.sched.queues[port] = q
		m.sched.ring = append(m.sched.ring, port)
	}
	switch {
	case force:
		q.leased = append([]string{u}, q.leased...)
	case q.in[u] && !(leased && !slices.Contains(q.leased, u)):
		// Already waiting here (in the right line).
	case leased:
		q.leased = append(q.leased, u)
	default:
		q.other = append(q.other, u)
	}
	q.in[u] = true
	if n := len(q.leased) + len(q.other); n >= m.cfg.FloodQueue {
		m.floodEvent(port, fmt.Sprintf("%d MUD URLs are waiting to be fetched", n))
	}
	m.dispatch()
}

// dispatch starts queued fetches while slots and budgets allow.
func (m *Manager) dispatch() {
	if m.fetchCtx == nil {
		return
	}
	for m.sched.busy < m.cfg.MaxFetches {
		j, ok := m.nextJob(m.now())
		if !ok {
			return
		}
		m.launch(j)
	}
}

// nextJob takes the next fetch that may start now, the ports taking turns.
func (m *Manager) nextJob(now time.Time) (*fetchJob, bool) {
	sc := m.sched
	cut := now.Add(-m.cfg.FetchWindow)
	sc.started = pruneTimes(sc.started, cut)
	if len(sc.started) >= m.cfg.FetchBudget {
		return nil, false
	}
	for tries := len(sc.ring); tries > 0 && len(sc.ring) > 0; tries-- {
		sc.turn %= len(sc.ring)
		port := sc.ring[sc.turn]
		q := sc.queues[port]
		j := m.takeFrom(q, port, now, cut)
		if len(q.leased)+len(q.other) == 0 {
			delete(sc.queues, port)
			sc.ring = slices.Delete(sc.ring, sc.turn, sc.turn+1)
		} else {
			sc.turn++
		}
		if j != nil {
			return j, true
		}
	}
	return nil, false
}

// maxScan bounds how far into a port's queue nextJob looks past devices
// over their own budget.
const maxScan = 64

// takeFrom removes and returns the first job of q that may start now, or
// nil; stale entries (started from another port's queue, or dropped) go.
func (m *Manager) takeFrom(q *portQueue, port string, now, cut time.Time) *fetchJob {
	sc := m.sched
	if sc.portBusy[port] >= m.cfg.MaxFetchesPerPort {
		return nil
	}
	sc.portRun[port] = pruneTimes(sc.portRun[port], cut)
	portOver := len(sc.portRun[port]) >= m.cfg.FetchBudgetPerPort
	if portOver {
		m.floodEvent(port, fmt.Sprintf("%d fetches started in the last %s, its whole budget", len(sc.portRun[port]), m.cfg.FetchWindow))
	}
	for _, line := range []*[]string{&q.leased, &q.other} {
		for i := 0; i < len(*line) && i < maxScan; {
			u := (*line)[i]
			j := m.st.jobs[u]
			if j == nil || m.st.fetching[u] {
				*line = slices.Delete(*line, i, i+1)
				delete(q.in, u)
				continue
			}
			// An administrator's refresh is not held to the port's or
			// the device's budget (only to the slots and the gateway's).
			if !j.force && (portOver || m.overDeviceBudget(j.mac, cut)) {
				i++
				continue
			}
			*line = slices.Delete(*line, i, i+1)
			delete(q.in, u)
			j.port = port // the port whose budget pays
			return j
		}
	}
	return nil
}

func (m *Manager) overDeviceBudget(mac string, cut time.Time) bool {
	if mac == "" {
		return false
	}
	ts := pruneTimes(m.sched.macRun[mac], cut)
	if len(ts) == 0 {
		delete(m.sched.macRun, mac)
	} else {
		m.sched.macRun[mac] = ts
	}
	return len(ts) >= m.cfg.FetchBudgetPerDevice
}

// charge counts a fetch start against the budgets and takes a slot.
func (m *Manager) charge(j *fetchJob, now time.Time) {
	sc := m.sched
	sc.busy++
	sc.portBusy[j.port]++
	sc.started = append(sc.started, now)
	sc.portRun[j.port] = append(sc.portRun[j.port], now)
	if j.mac != "" {
		sc.macRun[j.mac] = append(sc.macRun[j.mac], now)
	}
}

// release gives a finished fetch's slot back.
func (m *Manager) release(port string) {
	sc := m.sched
	sc.busy--
	if sc.portBusy[port]--; sc.portBusy[port] <= 0 {
		delete(sc.portBusy, port)
	}
}

// dropJobs forgets the queued fetches of URLs no live device announces
// (their entries in the port queues go when they come up).
func (m *Manager) dropJobs(users map[string]*store.Device) {
	for u := range m.st.jobs {
		if users[u] == nil {
			delete(m.st.jobs, u)
		}
	}
	cut := m.now().Add(-m.cfg.FetchWindow)
	for p, ts := range m.sched.portRun {
		if ts = pruneTimes(ts, cut); len(ts) == 0 {
			delete(m.sched.portRun, p)
		} else {
			m.sched.portRun[p] = ts
		}
	}
	for mac := range m.sched.macRun {
		m.overDeviceBudget(mac, cut) // prunes
	}
}

// waiting says why a queued fetch has not started.
func (m *Manager) waiting(j *fetchJob) string {
	sc := m.sched
	now := m.now()
	cut := now.Add(-m.cfg.FetchWindow)
	count := func(ts []time.Time) int { return len(pruneTimes(ts, cut)) }
	switch {
	case count(sc.started) >= m.cfg.FetchBudget:
		return fmt.Sprintf("the gateway started its whole budget of %d fetches in the last %s", m.cfg.FetchBudget, m.cfg.FetchWindow)
	case !j.force && count(sc.portRun[j.port]) >= m.cfg.FetchBudgetPerPort:
		return fmt.Sprintf("%s started its whole budget of %d fetches in the last %s", portName(j.port), m.cfg.FetchBudgetPerPort, m.cfg.FetchWindow)
	case j.mac != "" && !j.force && count(sc.macRun[j.mac]) >= m.cfg.FetchBudgetPerDevice:
		return fmt.Sprintf("device %s started its whole budget of %d fetches in the last %s", j.mac, m.cfg.FetchBudgetPerDevice, m.cfg.FetchWindow)
	case sc.portBusy[j.port] >= m.cfg.MaxFetchesPerPort:
		return fmt.Sprintf("%s has all its %d fetch slots busy", portName(j.port), m.cfg.MaxFetchesPerPort)
	case sc.busy >= m.cfg.MaxFetches:
		return fmt.Sprintf("all %d fetch slots are busy", m.cfg.MaxFetches)
	}
	ahead := 0
	if q := sc.queues[j.port]; q != nil {
		for _, line := range [][]string{q.leased, q.other} {
			if i := slices.Index(line, j.url); i >= 0 {
				ahead += i
				break
			}
			ahead += len(line)
		}
	}
	return fmt.Sprintf("%d fetches queued before it on %s", ahead, portName(j.port))
}

// floodEvent reports a port that asks for more fetches than it may start,
// at most once per FloodEventEvery per port.
func (m *Manager) floodEvent(port, what string) {
	now := m.now()
	if last, ok := m.sched.flooded[port]; ok && now.Sub(last) < m.cfg.FloodEventEvery {
		return
	}
	m.sched.flooded[port] = now
	devs := 0
	for _, d := range m.st.devices {
		if d.Port == port && d.State == store.StateFetching {
			devs++
		}
	}
	msg := fmt.Sprintf("%s: %s (%d devices on it wait for their MUD file); its fetches are limited to %d at a time and %d per %s, devices on other ports go first",
		portName(port), what, devs, m.cfg.MaxFetchesPerPort, m.cfg.FetchBudgetPerPort, m.cfg.FetchWindow)
	m.log.Warn("fetch flood", "port", port, "waiting_devices", devs, "what", what)
	m.metrics.floods.Add(1)
	m.event("", "fetch-flood", "", "", msg)
}

func pruneTimes(ts []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return ts[i:]
}
