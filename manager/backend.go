package manager

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/policy"
	"github.com/openmud/mud/store"
)

// This file implements api.Backend: every request is answered by the Run
// goroutine (reads see one consistent state; writes are persisted and the
// enforcer driven before the answer).

type subscriber struct {
	ctx context.Context
	ch  chan api.Event
}

func (m *Manager) publish(e store.Event) {
	keep := m.subscribers[:0]
	for _, s := range m.subscribers {
		if s.ctx.Err() != nil {
			close(s.ch)
			continue
		}
		select {
		case s.ch <- e:
			keep = append(keep, s)
		default: // fallen behind: it resumes through Events
			close(s.ch)
		}
	}
	m.subscribers = keep
}

func (m *Manager) pruneSubscribers() {
	keep := m.subscribers[:0]
	for _, s := range m.subscribers {
		if s.ctx.Err() != nil {
			close(s.ch)
			continue
		}
		keep = append(keep, s)
	}
	m.subscribers = keep
}

// Status implements api.Backend.
func (m *Manager) Status(ctx context.Context) (api.Status, error) {
	var st api.Status
	err := m.do(ctx, func() error {
		st = api.Status{Version: m.cfg.Version, StartedAt: m.started, UptimeSeconds: m.now().Sub(m.started).Seconds(),
			Devices: len(m.st.devices), DevicesByState: map[store.State]int{}, PoliciesInstalled: len(m.pushed.policies)}
		for _, d := range m.st.devices {
			st.DevicesByState[d.State]++
			if d.Enforcement == store.EnforcementUnenforced {
				st.DevicesUnenforced++
			}
		}
		es := api.EnforcerStatus{Healthy: !m.needFull && m.lastErr == nil, LastApply: m.lastApply,
			LastApplyLatency: float64(m.lastLatency.Microseconds()) / 1000}
		if m.lastErr != nil {
			es.LastError, es.LastErrorAt = m.lastErr.Error(), m.lastErrAt
		}
		if m.cfg.EnforcerInfo != nil {
			es.Tables, es.BridgeConntrack, es.Repairs = m.cfg.EnforcerInfo()
		}
		if m.cfg.BridgeReplies != nil {
			es.BridgeReplies = m.cfg.BridgeReplies()
		}
		st.Enforcer = es
		return nil
	})
	return st, err
}

func (m *Manager) deviceView(d *store.Device) api.Device {
	v := api.Device{Device: *d, PendingReasons: m.st.pending[d.MAC], Overrides: m.st.overrides[d.MAC].Rules}
	if c := m.st.candidate[d.MUDURL]; c != nil && d.MUDURL != "" {
		v.PendingReasons = append(slices.Clone(v.PendingReasons), "an updated MUD file awaits approval: "+strings.Join(c.reasons, "; "))
	}
	if f := m.st.files[d.MUDURL]; f != nil && d.MUDURL != "" {
		info := &api.MUDInfo{URL: f.URL, Digest: f.Digest(), Signature: f.Verdict, SignatureReason: f.VerdictReason,
			Signer: f.Signer, FetchedAt: f.FetchedAt, VerifiedAt: f.VerifiedAt, CacheValidityHours: int(f.CacheValidity / time.Hour)}
		if md := m.st.models[d.MUDURL]; md != nil && md.file != nil {
			mf := md.file.MUD
			info.SystemInfo, info.MfgName, info.ModelName = mf.SystemInfo, mf.MfgName, mf.ModelName
			info.FirmwareRev, info.SoftwareRev, info.Documentation = mf.FirmwareRev, mf.SoftwareRev, mf.Documentation
			sup := mf.IsSupported
			info.IsSupported, info.LastUpdate = &sup, mf.LastUpdate
		}
		v.MUD = info
	}
	v.Fetch = m.fetchView(d.MUDURL)
	return v
}

// fetchView is the state of fetching u, nil when nothing is known.
func (m *Manager) fetchView(u string) *api.FetchStatus {
	s := m.st
	fi, j := s.fetch[u], s.jobs[u]
	if u == "" || (fi == nil && j == nil && !s.fetching[u]) {
		return nil
	}
	v := &api.FetchStatus{URL: u, InFlight: s.fetching[u], Queued: j != nil}
	if j != nil {
		v.Waiting = m.waiting(j)
	}
	if fi != nil {
		v.Failures, v.NextAttempt = fi.failures, fi.next
		v.Attempts = slices.Clone(fi.attempts)
	}
	return v
}

// Devices implements api.Backend.
func (m *Manager) Devices(ctx context.Context) ([]api.Device, error) {
	var out []api.Device
	err := m.do(ctx, func() error {
		for _, mac := range m.macs() {
			out = append(out, m.deviceView(m.st.devices[mac]))
		}
		return nil
	})
	return out, err
}

func (m *Manager) lookup(mac string) (*store.Device, error) {
	n, err := store.NormalizeMAC(mac)
	if err != nil {
		return nil, errorf(errInvalid, "MAC %q: %v", mac, err)
	}
	d := m.st.devices[n]
	if d == nil {
		return nil, errorf(errNotFound, "device %s", n)
	}
	return d, nil
}

// onDevice runs fn for a known device in the Run goroutine and returns the
// device's view afterwards.
func (m *Manager) onDevice(ctx context.Context, mac string, fn func(d *store.Device) error) (api.Device, error) {
	var out api.Device
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		if err := fn(d); err != nil {
			return err
		}
		out = m.deviceView(m.st.devices[d.MAC])
		return nil
	})
	return out, err
}

// Device implements api.Backend.
func (m *Manager) Device(ctx context.Context, mac string) (api.Device, error) {
	var out api.Device
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		out = m.deviceView(d)
		return nil
	})
	return out, err
}

// Policy implements api.Backend: the device's policy with the kernel's
// per-rule counters (read outside the loop: the enforcer is safe for
// concurrent use).
func (m *Manager) Policy(ctx context.Context, mac string, withNFT bool) (api.PolicyView, error) {
	var (
		view api.PolicyView
		pol  *policy.Policy
		ed   enforcer.Device
	)
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		md := m.st.models[d.MUDURL]
		if md == nil || md.pol == nil {
			return errorf(errNotFound, "device %s has no compiled policy", d.MAC)
		}
		pol = md.pol
		view = api.NewPolicyView(d.MAC, pol, m.st.overrides[d.MAC].Rules)
		view.State, view.MUDURL = d.State, d.MUDURL
		hw, _ := net.ParseMAC(d.MAC)
		ed = enforcer.Device{MAC: hw, PolicyID: pol.ID, Overrides: m.overridesOf(d.MAC)}
		for _, a := range d.IPs {
			if a.Unmap().Is4() {
				ed.IPv4s = append(ed.IPv4s, a.Unmap())
			} else {
				ed.IPv6s = append(ed.IPv6s, a)
			}
		}
		return nil
	})
	if err != nil {
		return view, err
	}
	if cs, err := m.cfg.Enforcer.Counters(ctx); err == nil {
		view.CountersAt = m.now()
		fill := func(dv *api.DirectionView, dir policy.Direction) {
			for _, c := range cs {
				if c.PolicyID != pol.ID || c.Direction != dir {
					continue
				}
				if c.Rule == "default-deny" {
					dv.Dropped.Packets += c.Packets
					dv.Dropped.Bytes += c.Bytes
					continue
				}
				for i := range dv.Rules {
					if dv.Rules[i].Name == c.Rule && !dv.Rules[i].Override {
						dv.Rules[i].Packets += c.Packets
						dv.Rules[i].Bytes += c.Bytes
					}
				}
			}
		}
		fill(&view.FromDevice, policy.FromDevice)
		fill(&view.ToDevice, policy.ToDevice)
	}
	if withNFT {
		txt, err := enforcer.Render(*pol, ed, m.cfg.Render)
		if err != nil {
			return view, fmt.Errorf("rendering the policy of %s: %w", mac, err)
		}
		view.NFT = txt
	}
	return view, nil
}

// Events implements api.Backend.
func (m *Manager) Events(ctx context.Context, since uint64, limit int) ([]api.Event, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	return m.cfg.Store.Events(since, limit)
}

// SubscribeEvents implements api.Backend. The channel is closed when ctx
// ends (within one Tick), when the subscriber falls behind, or when Run
// returns.
func (m *Manager) SubscribeEvents(ctx context.Context) (<-chan api.Event, error) {
	s := &subscriber{ctx: ctx, ch: make(chan api.Event, 256)}
	err := m.do(ctx, func() error { m.subscribers = append(m.subscribers, s); return nil })
	if err != nil {
		return nil, err
	}
	return s.ch, nil
}

// Approve implements api.Backend (RFC 8520 §13.2: processing continues
// once an administrator has given approval). The approval covers exactly
// the current file's digest.
func (m *Manager) Approve(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if c := m.st.candidate[d.MUDURL]; c != nil && d.State != store.StatePendingApproval {
			// An update of the file in force waits: approving it is for
			// every device of the URL.
			return m.adoptCandidate(d.MUDURL, by.String(), req.Reason)
		}
		if d.State != store.StatePendingApproval && !(d.State == store.StateFailed && m.st.rejected[d.MAC] != "") {
			return errorf(errConflict, "device %s is %s, not pending approval", d.MAC, d.State)
		}
		md := m.modelFor(d.MUDURL)
		if md == nil || md.pol == nil {
			return errorf(errConflict, "device %s has no usable MUD file to approve", d.MAC)
		}
		a := store.Approval{MAC: d.MAC, MUDURL: d.MUDURL, Digest: md.digest, By: by.String(), At: m.now(), Reason: req.Reason}
		err := m.cfg.Store.Update(func(tx *store.Tx) error {
			if req.AllWithURL {
				a.MAC = ""
				return tx.ApprovalsByURL().Put(a)
			}
			return tx.ApprovalsByMAC().Put(a)
		})
		if err != nil {
			return fmt.Errorf("recording the approval of %s: %w", d.MAC, err)
		}
		if req.AllWithURL {
			m.st.approvalsByURL[d.MUDURL] = a
		} else {
			m.st.approvalsByMAC[d.MAC] = a
		}
		delete(m.st.rejected, d.MAC)
		delete(m.st.flags, d.MAC)
		msg := "approved by " + by.String()
		if req.AllWithURL {
			for _, o := range m.macs() {
				if od := m.st.devices[o]; od.MUDURL == d.MUDURL && od.State == store.StatePendingApproval && o != d.MAC {
					_ = m.settle(*od, "approved", msg)
				}
			}
		}
		return m.settle(*d, "approved", msg)
	})
}

// Reject implements api.Backend: the device keeps the fallback treatment
// (state failed) until its file changes or an administrator approves.
func (m *Manager) Reject(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if d.State != store.StatePendingApproval {
			return errorf(errConflict, "device %s is %s, not pending approval", d.MAC, d.State)
		}
		md := m.modelFor(d.MUDURL)
		if md == nil {
			return errorf(errConflict, "device %s has no MUD file to reject", d.MAC)
		}
		err := m.cfg.Store.Update(func(tx *store.Tx) error {
			if err := tx.ApprovalsByMAC().Delete(d.MAC); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("removing approvals of %s: %w", d.MAC, err)
		}
		delete(m.st.approvalsByMAC, d.MAC)
		m.st.rejected[d.MAC] = md.digest
		return m.settle(*d, "rejected", joinMsg("rejected by "+by.String(), req.Reason))
	})
}

// Quarantine implements api.Backend.
func (m *Manager) Quarantine(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		// A removed device keeps the hold: it comes back quarantined.
		nd := *d
		nd.Quarantine = &store.Hold{By: by.String(), At: m.now(), Reason: req.Reason}
		return m.settle(nd, "quarantined", req.Reason)
	})
}

// Release implements api.Backend.
func (m *Manager) Release(ctx context.Context, by api.Caller, mac string, req api.ActionRequest) (api.Device, error) {
	return m.onDevice(ctx, mac, func(d *store.Device) error {
		if d.Quarantine == nil {
			return errorf(errConflict, "device %s is not quarantined", d.MAC)
		}
		nd := *d
		nd.Quarantine = nil
		return m.settle(nd, "released", joinMsg("released by "+by.String(), req.Reason))
	})
}

// Bind implements api.Backend.
func (m *Manager) Bind(ctx context.Context, by api.Caller, mac string, req api.BindRequest) (api.Device, error) {
	var out api.Device
	err := m.do(ctx, func() error {
		n, err := store.NormalizeMAC(mac)
		if err != nil {
			return errorf(errInvalid, "MAC %q: %v", mac, err)
		}
		var d store.Device
		if old := m.st.devices[n]; old != nil {
			d = *old
		} else {
			d = store.Device{MAC: n, State: store.StateDiscovered, FirstSeen: m.now()}
		}
		b := store.Binding{MAC: n, MUDURL: req.MUDURL, By: by.String(), CreatedAt: m.now()}
		err = m.cfg.Store.Update(func(tx *store.Tx) error {
			if req.MUDURL == "" {
				if err := tx.Bindings().Delete(n); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return nil
			}
			return tx.Bindings().Put(b)
		})
		if err != nil {
			return fmt.Errorf("binding %s: %w", n, err)
		}
		if req.MUDURL == "" {
			delete(m.st.bindings, n)
			if d.URLSource == store.SourceAdminBind {
				d.MUDURL, d.URLSource = "", ""
			}
		} else {
			m.st.bindings[n] = b
			d.MUDURL, d.URLSource = req.MUDURL, store.SourceAdminBind
		}
		if err := m.settle(d, "bound-by-admin", joinMsg(req.MUDURL, req.Reason)); err != nil {
			return err
		}
		out = m.deviceView(m.st.devices[n])
		return nil
	})
	return out, err
}

// AddOverride implements api.Backend.
func (m *Manager) AddOverride(ctx context.Context, by api.Caller, mac string, rule store.OverrideRule) (store.Overrides, error) {
	var out store.Overrides
	err := m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		o := m.st.overrides[d.MAC]
		o.MAC = d.MAC
		rule.By, rule.CreatedAt = by.String(), m.now()
		o.Rules = append(slices.Clone(o.Rules), rule)
		if err := m.cfg.Store.Update(func(tx *store.Tx) error { return tx.Overrides().Put(o) }); err != nil {
			return fmt.Errorf("adding an override for %s: %w", d.MAC, err)
		}
		m.st.overrides[d.MAC] = o
		m.event(d.MAC, "override-added", "", "", policy.Describe(rule.Direction, rule.Rule))
		out = o
		return nil
	})
	return out, err
}

// ClearOverrides implements api.Backend.
func (m *Manager) ClearOverrides(ctx context.Context, by api.Caller, mac string) error {
	return m.do(ctx, func() error {
		d, err := m.lookup(mac)
		if err != nil {
			return err
		}
		err = m.cfg.Store.Update(func(tx *store.Tx) error {
			if err := tx.Overrides().Delete(d.MAC); err != nil && !errors.Is(err, store.ErrNotFound) {
				return err
			}
			return nil
		})
		if err != nil {
			return fmt.Errorf("clearing the overrides of %s: %w", d.MAC, err)
		}
		delete(m.st.overrides, d.MAC)
		m.event(d.MAC, "overrides-cleared", "", "", "by "+by.String())
		return nil
	})
}

// Controllers implements api.Backend: the store's mappings and the
// configuration's (which a store mapping of the same URI replaces).
func (m *Manager) Controllers(ctx context.Context) ([]api.Controller, error) {
	var out []api.Controller
	err := m.do(ctx, func() error {
		add := func(kind api.ControllerKind, st map[string]store.ControllerMapping, cf map[string][]netip.Prefix) {
			for _, k := range sortedKeys(st) {
				c := st[k]
				out = append(out, api.Controller{URI: k, Kind: kind, Prefixes: c.Prefixes, Source: c.Source, UpdatedAt: c.UpdatedAt})
			}
			for _, k := range sortedKeys(cf) {
				if _, ok := st[k]; !ok {
					out = append(out, api.Controller{URI: k, Kind: kind, Prefixes: cf[k], Source: "config"})
				}
			}
		}
		add(api.KindController, m.st.controllers, m.cfg.Settings.Controllers)
		add(api.KindMyController, m.st.myControllers, m.cfg.Settings.MyControllers)
		return nil
	})
	return out, err
}

// SetController implements api.Backend: the administrator's mapping of a
// controller class or my-controller (RFC 8520 §4.6, §4.7).
func (m *Manager) SetController(ctx context.Context, by api.Caller, c api.Controller) (api.Controller, error) {
	err := m.do(ctx, func() error {
		my := c.Kind == api.KindMyController
		cm := store.ControllerMapping{Name: c.URI, Prefixes: c.Prefixes, Source: "mudctl", UpdatedAt: m.now()}
		err := m.cfg.Store.Update(func(tx *store.Tx) error {
			t := tx.Controllers()
			if my {
				t = tx.MyControllers()
			}
			if len(c.Prefixes) == 0 {
				if err := t.Delete(c.URI); err != nil && !errors.Is(err, store.ErrNotFound) {
					return err
				}
				return nil
			}
			return t.Put(cm)
		})
		if err != nil {
			return fmt.Errorf("setting controller %s: %w", c.URI, err)
		}
		tbl := m.st.controllers
		if my {
			tbl = m.st.myControllers
		}
		if len(c.Prefixes) == 0 {
			delete(tbl, c.URI)
		} else {
			tbl[c.URI] = cm
		}
		c.Source, c.UpdatedAt = cm.Source, cm.UpdatedAt
		m.event("", "controller-set", "", "", fmt.Sprintf("%s %s: %v by %s", c.Kind, c.URI, c.Prefixes, by.String()))
		return nil
	})
	return c, err
}

// Refresh implements api.Backend: fetch again now (conditionally, with
// the cached validators), whatever the cache-validity says.
func (m *Manager) Refresh(ctx context.Context, by api.Caller, mac string) (api.RefreshResult, error) {
	var out api.RefreshResult
	err := m.do(ctx, func() error {
		urls := map[string]*store.Device{}
		for _, k := range m.macs() {
			d := m.st.devices[k]
			if d.MUDURL == "" || d.State == store.StateRemoved {
				continue
			}
			if mac != "" {
				if n, _ := store.NormalizeMAC(mac); n != k {
					continue
				}
			}
			out.Devices++
			if urls[d.MUDURL] == nil {
				urls[d.MUDURL] = d
			}
		}
		if mac != "" && out.Devices == 0 {
			if _, err := m.lookup(mac); err != nil {
				return err
			}
		}
		for _, u := range sortedKeys(urls) {
			if fi := m.st.fetch[u]; fi != nil {
				fi.next = time.Time{} // no waiting out a retry delay
			}
			m.enqueue(u, urls[u], true)
		}
		out.URLs = len(urls)
		return nil
	})
	return out, err
}

// Import implements api.Backend: a file obtained out of band, taken only if
// its signature verifies (RFC 8520 §1.6).
func (m *Manager) Import(ctx context.Context, by api.Caller, req api.ImportRequest) (api.ImportResult, error) {
	var out api.ImportResult
	err := m.do(ctx, func() error {
		if len(req.File) == 0 {
			return errorf(errInvalid, "no file")
		}
		f, n, err := m.importFile(req.File, req.Signature)
		if f != nil {
			out = api.ImportResult{MUDURL: f.URL, Digest: f.Digest(), Signature: f.Verdict, Signer: f.Signer, Reason: f.VerdictReason, DevicesUpdated: n}
		}
		if err == nil {
			m.event("", "imported", "", "", fmt.Sprintf("%s (%s) by %s", f.URL, f.Verdict, by.String()))
		}
		return err
	})
	return out, err
}
