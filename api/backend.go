package api

import (
	"context"
	"errors"

	"github.com/openmud/mud/enforcer"
	"github.com/openmud/mud/manager"
	"github.com/openmud/mud/store"
)

// Sentinel errors a Backend returns (wrapped, with what was being done) to
// choose the HTTP status; the client maps the status back to the same
// sentinel, so errors.Is works on both sides of the socket.
var (
	// ErrNotFound (404): no such device, policy or mapping.
	ErrNotFound = errors.New("not found")
	// ErrInvalid (400): the request is malformed or not acceptable.
	ErrInvalid = errors.New("invalid request")
	// ErrConflict (409): the request does not fit the current state,
	// e.g. approving a device that is not pending approval.
	ErrConflict = errors.New("conflict")
	// ErrUnavailable: the client could not reach mudd (client side only).
	ErrUnavailable = errors.New("mudd unavailable")
)

// Backend is what the control API serves, in wire types: the daemon's
// manager through NewManagerBackend, or a fake in tests (api/apitest).
// Methods must be safe for concurrent use and honour ctx. Errors wrap
// ErrNotFound, ErrInvalid or ErrConflict to say which kind of no they are
// (the manager's and the store's sentinels are understood too); anything
// else is a 500.
//
// MACs passed in are normalised (store.NormalizeMAC). Mutating methods get
// the Caller (from SO_PEERCRED) to record who did it (RFC 8520 §16).
type Backend interface {
	// Status reports the daemon's health.
	Status(ctx context.Context) (Status, error)
	// Devices lists every known device, in a stable order (by MAC).
	Devices(ctx context.Context) ([]Device, error)
	// Device returns one device.
	Device(ctx context.Context, mac string) (Device, error)
	// Policy returns the policy in force for a device with counters;
	// withNFT adds the device's ruleset in nft syntax.
	Policy(ctx context.Context, mac string, withNFT bool) (PolicyView, error)
	// Events returns up to limit events with Seq > since, oldest first
	// (limit <= 0: all).
	Events(ctx context.Context, since uint64, limit int) ([]Event, error)
	// SubscribeEvents delivers every event appended from now on, until ctx
	// is done; the backend then closes the channel. A backend may also
	// close it if the subscriber falls behind: the follower then resumes
	// from the last Seq it saw, through Events.
	SubscribeEvents(ctx context.Context) (<-chan Event, error)

	// Approve enforces a pending device's MUD file (ErrConflict if the
	// device is not pending approval).
	Approve(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error)
	// Reject refuses a pending device's MUD file: the device keeps the
	// fallback treatment.
	Reject(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error)
	// Quarantine cuts a device to the quarantine policy (and flushes its
	// conntrack entries).
	Quarantine(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error)
	// Release lifts a quarantine (ErrConflict if there is none).
	Release(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error)
	// Bind assigns an admin MUD URL to a device; an empty URL removes the
	// binding. The URL has been checked to be an https URL.
	Bind(ctx context.Context, by Caller, mac string, req BindRequest) (Device, error)
	// AddOverride appends an admin allow/deny entry (the request passed
	// OverrideRequest.Validate) and returns the device's overrides.
	AddOverride(ctx context.Context, by Caller, mac string, req OverrideRequest) (Overrides, error)
	// ClearOverrides removes all the device's admin entries.
	ClearOverrides(ctx context.Context, by Caller, mac string) error
	// Violations lists what devices tried and were refused, most recently
	// seen first: one device's, or every device's when mac is "".
	Violations(ctx context.Context, mac string) ([]Violation, error)
	// Controllers lists the controller and my-controller mappings.
	Controllers(ctx context.Context) ([]Controller, error)
	// SetController replaces a mapping's prefixes (URI, Kind and
	// Prefixes are set and validated); no prefixes removes the mapping.
	SetController(ctx context.Context, by Caller, c Controller) (Controller, error)
	// Refresh re-fetches MUD files and re-resolves names: for one device,
	// or for all when mac is "".
	Refresh(ctx context.Context, by Caller, mac string) (RefreshResult, error)
	// Import takes a MUD file obtained out of band; it is verified like
	// a fetched one (File is non-empty).
	Import(ctx context.Context, by Caller, req ImportRequest) (ImportResult, error)
}

// statusOf maps a Backend error to an HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrNotFound), errors.Is(err, manager.ErrNotFound), errors.Is(err, store.ErrNotFound):
		return 404
	case errors.Is(err, ErrInvalid), errors.Is(err, manager.ErrInvalid), errors.Is(err, store.ErrInvalid):
		return 400
	case errors.Is(err, ErrConflict), errors.Is(err, manager.ErrConflict):
		return 409
	}
	return 500
}

// NewManagerBackend returns the Backend that serves m: each call is the
// manager's query or command, its answer converted to wire types
// (convert.go).
func NewManagerBackend(m *manager.Manager) Backend { return managerBackend{m} }

// WithDeviceCounters adds to b's devices (Devices, Device) the counters
// read returns, by MAC: the enforcer's per-device counters. A failed read
// leaves the counters out and is not an error of the answer.
func WithDeviceCounters(b Backend, read func(ctx context.Context) (map[string]enforcer.DeviceCount, error)) Backend {
	return countingBackend{b, read}
}

type countingBackend struct {
	Backend
	read func(ctx context.Context) (map[string]enforcer.DeviceCount, error)
}

func (b countingBackend) Devices(ctx context.Context) ([]Device, error) {
	ds, err := b.Backend.Devices(ctx)
	if err != nil {
		return ds, err
	}
	if cs, err := b.read(ctx); err == nil {
		for i := range ds {
			if c, ok := cs[ds[i].MAC]; ok {
				ds[i].Counters = CountersFrom(c)
			}
		}
	}
	return ds, nil
}

func (b countingBackend) Device(ctx context.Context, mac string) (Device, error) {
	d, err := b.Backend.Device(ctx, mac)
	if err != nil {
		return d, err
	}
	if cs, err := b.read(ctx); err == nil {
		if c, ok := cs[d.MAC]; ok {
			d.Counters = CountersFrom(c)
		}
	}
	return d, nil
}

// WithGatewayID names the fleet gateway b serves (store.etcd.gateway_id)
// in every Device its answers carry. An empty id (a mudd in no fleet)
// returns b as it is.
func WithGatewayID(b Backend, id string) Backend {
	if id == "" {
		return b
	}
	return gatewayBackend{b, id}
}

type gatewayBackend struct {
	Backend
	id string
}

// onGateway sets the gateway of the device an answer carries.
func (b gatewayBackend) onGateway(d Device, err error) (Device, error) {
	if err == nil {
		d.Gateway = b.id
	}
	return d, err
}

func (b gatewayBackend) Devices(ctx context.Context) ([]Device, error) {
	ds, err := b.Backend.Devices(ctx)
	if err == nil {
		for i := range ds {
			ds[i].Gateway = b.id
		}
	}
	return ds, err
}

func (b gatewayBackend) Device(ctx context.Context, mac string) (Device, error) {
	return b.onGateway(b.Backend.Device(ctx, mac))
}

func (b gatewayBackend) Approve(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return b.onGateway(b.Backend.Approve(ctx, by, mac, req))
}

func (b gatewayBackend) Reject(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return b.onGateway(b.Backend.Reject(ctx, by, mac, req))
}

func (b gatewayBackend) Quarantine(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return b.onGateway(b.Backend.Quarantine(ctx, by, mac, req))
}

func (b gatewayBackend) Release(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return b.onGateway(b.Backend.Release(ctx, by, mac, req))
}

func (b gatewayBackend) Bind(ctx context.Context, by Caller, mac string, req BindRequest) (Device, error) {
	return b.onGateway(b.Backend.Bind(ctx, by, mac, req))
}

type managerBackend struct{ m *manager.Manager }

// The methods convert the manager's answer whether or not it comes with an
// error: the server does not send a value with an error.

func (b managerBackend) Status(ctx context.Context) (Status, error) {
	s, err := b.m.Status(ctx)
	return statusFrom(s), err
}

func (b managerBackend) Devices(ctx context.Context) ([]Device, error) {
	ds, err := b.m.Devices(ctx)
	return mapAll(ds, deviceFrom), err
}

func (b managerBackend) Device(ctx context.Context, mac string) (Device, error) {
	d, err := b.m.Device(ctx, mac)
	return deviceFrom(d), err
}

func (b managerBackend) Policy(ctx context.Context, mac string, withNFT bool) (PolicyView, error) {
	p, err := b.m.Policy(ctx, mac, withNFT)
	return policyViewFrom(p), err
}

func (b managerBackend) Events(ctx context.Context, since uint64, limit int) ([]Event, error) {
	es, err := b.m.Events(ctx, since, limit)
	return mapAll(es, eventFrom), err
}

// SubscribeEvents relays the manager's events, converted, until ctx is
// done or the manager closes its channel (the subscriber fell behind, or
// the manager stopped); then it closes its own.
func (b managerBackend) SubscribeEvents(ctx context.Context) (<-chan Event, error) {
	in, err := b.m.SubscribeEvents(ctx)
	if err != nil {
		return nil, err
	}
	out := make(chan Event)
	go func() {
		defer close(out)
		for e := range in {
			select {
			case out <- eventFrom(e):
			case <-ctx.Done():
				return // the manager closes in when it sees ctx done
			}
		}
	}()
	return out, nil
}

// managerAction is one of the manager's decisions about a device.
type managerAction func(ctx context.Context, by, mac string, a manager.Action) (manager.DeviceView, error)

func act(ctx context.Context, fn managerAction, by Caller, mac string, req ActionRequest) (Device, error) {
	d, err := fn(ctx, by.String(), mac, actionTo(req))
	return deviceFrom(d), err
}

func (b managerBackend) Approve(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return act(ctx, b.m.Approve, by, mac, req)
}

func (b managerBackend) Reject(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return act(ctx, b.m.Reject, by, mac, req)
}

func (b managerBackend) Quarantine(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return act(ctx, b.m.Quarantine, by, mac, req)
}

func (b managerBackend) Release(ctx context.Context, by Caller, mac string, req ActionRequest) (Device, error) {
	return act(ctx, b.m.Release, by, mac, req)
}

func (b managerBackend) Bind(ctx context.Context, by Caller, mac string, req BindRequest) (Device, error) {
	d, err := b.m.Bind(ctx, by.String(), mac, req.MUDURL, req.Reason, req.IPs)
	return deviceFrom(d), err
}

func (b managerBackend) AddOverride(ctx context.Context, by Caller, mac string, req OverrideRequest) (Overrides, error) {
	rec, err := overrideRecord(req)
	if err != nil {
		return Overrides{}, err
	}
	o, err := b.m.AddOverride(ctx, by.String(), mac, rec)
	return overridesFrom(o), err
}

func (b managerBackend) ClearOverrides(ctx context.Context, by Caller, mac string) error {
	return b.m.ClearOverrides(ctx, by.String(), mac)
}

func (b managerBackend) Violations(ctx context.Context, mac string) ([]Violation, error) {
	vs, err := b.m.Violations(ctx, mac)
	return mapAll(vs, violationFrom), err
}

func (b managerBackend) Controllers(ctx context.Context) ([]Controller, error) {
	cs, err := b.m.Controllers(ctx)
	return mapAll(cs, controllerFrom), err
}

func (b managerBackend) SetController(ctx context.Context, by Caller, c Controller) (Controller, error) {
	got, err := b.m.SetController(ctx, by.String(), controllerTo(c))
	return controllerFrom(got), err
}

func (b managerBackend) Refresh(ctx context.Context, by Caller, mac string) (RefreshResult, error) {
	r, err := b.m.Refresh(ctx, by.String(), mac)
	return RefreshResult{Devices: r.Devices, URLs: r.URLs}, err
}

func (b managerBackend) Import(ctx context.Context, by Caller, req ImportRequest) (ImportResult, error) {
	o, err := b.m.Import(ctx, by.String(), req.File, req.Signature)
	return importResultFrom(o), err
}
