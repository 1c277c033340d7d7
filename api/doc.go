// Package api owns mudd's control API: the JSON wire types, the Backend
// interface the manager implements, the HTTP server that serves them on a
// unix socket (mode 0660, group configurable, SO_PEERCRED logged for every
// change), and the Go client mudctl uses.
//
// Everything between the socket and the CLI lives here; the decisions live
// behind Backend. The package does not import the manager: the manager
// depends on api, not the other way round, and the server is tested with a
// fake Backend, without root or the kernel.
//
// Routes are versioned under /v1. Errors are JSON bodies {"error": "..."}
// with a status that says what kind of no it is: 400 (ErrInvalid), 404
// (ErrNotFound), 409 (ErrConflict), 405, 413, 500. The client maps them
// back, so errors.Is(err, api.ErrNotFound) works on the client side too.
package api
