// Package dashboard is mudd's web UI for the gateway's administrator: the
// devices (state, enforcement, MUD URL, manufacturer, signature, and the
// gateway when mudd is one of a fleet), one
// device with its policy drawn as the peers it may talk to (an SVG from
// package policy/graph when Graphviz's dot is installed, a list of peers
// and rules always) and its recent events, the devices awaiting approval
// with approve and reject, and the event log.
//
// It is an http.Handler over the control API's Go client (api.Client on
// mudd's socket), so it can do nothing mudctl cannot. It is off unless
// the daemon serves it: New(cfg, client) builds it, ListenAndServe serves
// it on cfg.Listen, loopback by default (another address needs TLS), and
// HashPassword makes the bcrypt hash cfg.PasswordHash holds.
//
// Security: everything shown comes from the network (MUD URLs, host names,
// manufacturer names, a MUD file's strings) and is escaped by html/template;
// the policy picture is an <img>, where no script runs. A login is a
// random session cookie (HttpOnly, SameSite=Strict, Secure over TLS) that
// lasts cfg.SessionLifetime; a client address may fail 5 logins in 15
// minutes and all clients together 30 before logins are refused. Every
// write (approve, reject, logout, and the login form itself) needs a CSRF
// token, and cross-origin writes are refused from the browser's
// Sec-Fetch-Site and Origin headers as well. The CSP allows nothing but
// the dashboard's own stylesheet and images: no script, no external CDN.
//
// Size: the assets (templates/, static/: CSS and an icon, no JavaScript)
// are 11.6 KB, embedded. Linking the dashboard into mudd (go1.26.8,
// linux/amd64, CGO_ENABLED=0, -trimpath -ldflags '-s -w') takes the binary
// from 12,144,802 to 16,908,450 bytes (+4.5 MiB, +39%). Most of that is
// not the dashboard's code (40 KB) but html/template's: executing a
// template looks methods up by name, so the linker keeps every exported
// method of every reachable type (vishvananda/netlink alone grows by
// 0.5 MB). To reproduce: build cmd/mudd, then a copy of its main that also
// calls dashboard.New and ListenAndServe, and compare.
package dashboard
