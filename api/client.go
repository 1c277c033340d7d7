package api

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// Client talks to mudd's control API over its unix socket. Its methods
// mirror Backend; errors from the daemon match ErrNotFound, ErrInvalid or
// ErrConflict with errors.Is, and a daemon that cannot be reached gives
// ErrUnavailable with a hint.
type Client struct {
	socket string
	hc     *http.Client
}

// NewClient returns a client for the socket at socketPath. It connects
// lazily, on the first request.
func NewClient(socketPath string) *Client {
	var d net.Dialer
	tr := &http.Transport{
		DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			return d.DialContext(ctx, "unix", socketPath)
		},
		MaxIdleConns:      2,
		DisableKeepAlives: false,
	}
	return &Client{socket: socketPath, hc: &http.Client{Transport: tr}}
}

// Close releases idle connections.
func (c *Client) Close() { c.hc.CloseIdleConnections() }

// Error is an error answer from the daemon.
type Error struct {
	Status  int    // HTTP status
	Message string // the daemon's message
}

func (e *Error) Error() string { return e.Message }

// Is makes errors.Is(err, ErrNotFound) and friends work on daemon answers.
func (e *Error) Is(target error) bool {
	switch e.Status {
	case http.StatusNotFound:
		return target == ErrNotFound
	case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
		return target == ErrInvalid
	case http.StatusConflict:
		return target == ErrConflict
	}
	return false
}

// do sends a request with body in (JSON, if not nil) and decodes the JSON
// answer into out (if not nil).
func (c *Client) do(ctx context.Context, method, path string, in, out any) error {
	resp, err := c.send(ctx, method, path, in)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if out == nil {
		_, _ = io.Copy(io.Discard, resp.Body)
		return nil
	}
	if err := json.NewDecoder(resp.Body).Decode(out); err != nil {
		return fmt.Errorf("%s %s: decode answer: %w", method, path, err)
	}
	return nil
}

// send sends a request and returns a 2xx response; any other status is
// turned into an *Error.
func (c *Client) send(ctx context.Context, method, path string, in any) (*http.Response, error) {
	var body io.Reader
	if in != nil {
		b, err := json.Marshal(in)
		if err != nil {
			return nil, fmt.Errorf("%s %s: encode request: %w", method, path, err)
		}
		body = bytes.NewReader(b)
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://mudd"+path, body)
	if err != nil {
		return nil, fmt.Errorf("%s %s: %w", method, path, err)
	}
	if in != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, c.unreachable(err)
	}
	if resp.StatusCode/100 == 2 {
		return resp, nil
	}
	defer resp.Body.Close()
	var eb errorBody
	raw, _ := io.ReadAll(io.LimitReader(resp.Body, 64<<10))
	if json.Unmarshal(raw, &eb) != nil || eb.Error == "" {
		eb.Error = fmt.Sprintf("%s %s: %s", method, path, resp.Status)
	}
	return nil, &Error{Status: resp.StatusCode, Message: eb.Error}
}

// unreachable explains a failure to reach the daemon.
func (c *Client) unreachable(err error) error {
	hint := "is mudd running? (use --socket or $MUDCTL_SOCKET for another socket)"
	switch {
	case errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("%w: no control socket at %s: %s", ErrUnavailable, c.socket, hint)
	case errors.Is(err, syscall.ECONNREFUSED):
		return fmt.Errorf("%w: nothing answers on %s: %s", ErrUnavailable, c.socket, hint)
	case errors.Is(err, os.ErrPermission):
		group := "the socket's group"
		if fi, serr := os.Stat(c.socket); serr == nil {
			if st, ok := fi.Sys().(*syscall.Stat_t); ok {
				group = "group " + strconv.FormatUint(uint64(st.Gid), 10)
				if g, gerr := user.LookupGroupId(strconv.FormatUint(uint64(st.Gid), 10)); gerr == nil {
					group = "group " + g.Name
				}
			}
		}
		return fmt.Errorf("%w: permission denied on %s: are you in %s (or root)?", ErrUnavailable, c.socket, group)
	}
	return fmt.Errorf("%w: %s: %v: %s", ErrUnavailable, c.socket, err, hint)
}

func devicePath(mac, rest string) string {
	return "/v1/devices/" + url.PathEscape(mac) + rest
}

// Status returns the daemon's health.
func (c *Client) Status(ctx context.Context) (Status, error) {
	var s Status
	return s, c.do(ctx, "GET", "/v1/status", nil, &s)
}

// Devices lists the known devices.
func (c *Client) Devices(ctx context.Context) ([]Device, error) {
	var ds []Device
	return ds, c.do(ctx, "GET", "/v1/devices", nil, &ds)
}

// Device returns one device.
func (c *Client) Device(ctx context.Context, mac string) (Device, error) {
	var d Device
	return d, c.do(ctx, "GET", devicePath(mac, ""), nil, &d)
}

// Policy returns the policy in force for a device, with counters.
func (c *Client) Policy(ctx context.Context, mac string, withNFT bool) (PolicyView, error) {
	var p PolicyView
	path := devicePath(mac, "/policy")
	if withNFT {
		path += "?nft=true"
	}
	return p, c.do(ctx, "GET", path, nil, &p)
}

// EventsQuery selects events: those with Seq > Since, at most Limit of
// them from the oldest (0: all) or, with Tail, only the newest Tail.
type EventsQuery struct {
	Since uint64
	Limit int
	Tail  int
}

func (q EventsQuery) path(follow bool) string {
	v := url.Values{}
	if q.Since > 0 {
		v.Set("since", strconv.FormatUint(q.Since, 10))
	}
	if q.Limit > 0 {
		v.Set("limit", strconv.Itoa(q.Limit))
	}
	if q.Tail > 0 {
		v.Set("tail", strconv.Itoa(q.Tail))
	}
	if follow {
		v.Set("follow", "1")
	}
	if len(v) == 0 {
		return "/v1/events"
	}
	return "/v1/events?" + v.Encode()
}

// Events lists events, oldest first.
func (c *Client) Events(ctx context.Context, q EventsQuery) ([]Event, error) {
	var es []Event
	return es, c.do(ctx, "GET", q.path(false), nil, &es)
}

// FollowEvents calls fn for each event of the backlog selected by q (Limit
// is ignored) and then for each new event, until ctx is done (it then
// returns ctx.Err()), fn returns an error (returned), or the daemon ends
// the stream (io.EOF: resume with Since set to the last Seq seen).
func (c *Client) FollowEvents(ctx context.Context, q EventsQuery, fn func(Event) error) error {
	q.Limit = 0
	resp, err := c.send(ctx, "GET", q.path(true), nil)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	sc := bufio.NewScanner(resp.Body)
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for sc.Scan() {
		var e Event
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			return fmt.Errorf("follow events: decode: %w", err)
		}
		if err := fn(e); err != nil {
			return err
		}
	}
	if ctx.Err() != nil {
		return ctx.Err()
	}
	if err := sc.Err(); err != nil {
		return fmt.Errorf("follow events: %w", err)
	}
	return io.EOF
}

func (c *Client) action(ctx context.Context, name, mac string, req ActionRequest) (Device, error) {
	var d Device
	return d, c.do(ctx, "POST", devicePath(mac, "/"+name), req, &d)
}

// Approve enforces a pending device's MUD file.
func (c *Client) Approve(ctx context.Context, mac string, req ActionRequest) (Device, error) {
	return c.action(ctx, "approve", mac, req)
}

// Reject refuses a pending device's MUD file.
func (c *Client) Reject(ctx context.Context, mac string, req ActionRequest) (Device, error) {
	return c.action(ctx, "reject", mac, req)
}

// Quarantine cuts a device to the quarantine policy.
func (c *Client) Quarantine(ctx context.Context, mac string, req ActionRequest) (Device, error) {
	return c.action(ctx, "quarantine", mac, req)
}

// Release lifts a device's quarantine.
func (c *Client) Release(ctx context.Context, mac string, req ActionRequest) (Device, error) {
	return c.action(ctx, "release", mac, req)
}

// Bind assigns a MUD URL to a device (an empty URL removes the binding).
func (c *Client) Bind(ctx context.Context, mac string, req BindRequest) (Device, error) {
	var d Device
	return d, c.do(ctx, "POST", devicePath(mac, "/bind"), req, &d)
}

// AddOverride appends an admin allow/deny entry and returns the device's
// overrides.
func (c *Client) AddOverride(ctx context.Context, mac string, req OverrideRequest) (Overrides, error) {
	var o Overrides
	return o, c.do(ctx, "POST", devicePath(mac, "/overrides"), req, &o)
}

// ClearOverrides removes a device's admin entries.
func (c *Client) ClearOverrides(ctx context.Context, mac string) error {
	return c.do(ctx, "DELETE", devicePath(mac, "/overrides"), nil, nil)
}

// Violations lists what devices tried and were refused: one device's, or
// all when mac is "".
func (c *Client) Violations(ctx context.Context, mac string) ([]Violation, error) {
	path := "/v1/violations"
	if mac != "" {
		path = devicePath(mac, "/violations")
	}
	var vs []Violation
	return vs, c.do(ctx, "GET", path, nil, &vs)
}

// Controllers lists the controller mappings.
func (c *Client) Controllers(ctx context.Context) ([]Controller, error) {
	var cs []Controller
	return cs, c.do(ctx, "GET", "/v1/controllers", nil, &cs)
}

// SetController replaces a controller mapping (no Addrs removes it).
func (c *Client) SetController(ctx context.Context, req ControllerRequest) (Controller, error) {
	var ctl Controller
	return ctl, c.do(ctx, "POST", "/v1/controllers", req, &ctl)
}

// Refresh re-fetches MUD files: one device's, or all when mac is "".
func (c *Client) Refresh(ctx context.Context, mac string) (RefreshResult, error) {
	var r RefreshResult
	path := "/v1/refresh"
	if mac != "" {
		path = devicePath(mac, "/refresh")
	}
	return r, c.do(ctx, "POST", path, nil, &r)
}

// Import hands the daemon a MUD file obtained out of band.
func (c *Client) Import(ctx context.Context, req ImportRequest) (ImportResult, error) {
	var r ImportResult
	return r, c.do(ctx, "POST", "/v1/import", req, &r)
}
