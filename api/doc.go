// Package api owns mudd's control API: the JSON wire types, the Backend
// interface the server serves, the adapter that makes the manager a
// Backend, the HTTP server that serves it on a unix socket (mode 0660,
// group configurable, SO_PEERCRED logged for every change), and the Go
// client mudctl uses. docs/api.md documents the protocol.
//
// The wire types (types.go) are the API's own, with string enums; the
// daemon's types (store records, the manager's views, compiled policies)
// become wire types in one place, convert.go. The manager does not know
// this package: it offers queries and commands in its own terms, and
// NewManagerBackend adapts them. The server is tested with a fake Backend
// (api/apitest), without root or the kernel.
//
// Routes are versioned under /v1. Errors are JSON bodies {"error": "..."}
// with a status that says what kind of no it is: 400 (ErrInvalid), 404
// (ErrNotFound), 409 (ErrConflict), 405, 413, 500, 503. The client maps
// them back, so errors.Is(err, api.ErrNotFound) works on the client side
// too.
package api
