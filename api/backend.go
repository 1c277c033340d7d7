package api

import (
	"context"
	"errors"

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

// Backend is what the control API needs from the daemon: the narrow seam
// the manager implements. Methods must be safe for concurrent use and
// honour ctx. Errors wrap ErrNotFound, ErrInvalid or ErrConflict to say
// which kind of no they are (store.ErrNotFound and store.ErrInvalid are
// understood too); anything else is a 500.
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
	// (limit <= 0: all), as store.Tx.Events.
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
	// AddOverride appends an admin allow/deny entry (validated by
	// OverrideRequest.Rule, By and CreatedAt not yet set) and returns the
	// device's overrides.
	AddOverride(ctx context.Context, by Caller, mac string, rule store.OverrideRule) (store.Overrides, error)
	// ClearOverrides removes all the device's admin entries.
	ClearOverrides(ctx context.Context, by Caller, mac string) error
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
	case errors.Is(err, ErrNotFound), errors.Is(err, store.ErrNotFound):
		return 404
	case errors.Is(err, ErrInvalid), errors.Is(err, store.ErrInvalid):
		return 400
	case errors.Is(err, ErrConflict):
		return 409
	}
	return 500
}
