package mudfetch

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"syscall"
	"time"
)

// addrGuard decides whether an address may be dialled. The MUD URL comes from
// the device, so without this guard a device could make the gateway fetch
// from its own management interfaces or the LAN (SSRF).
type addrGuard struct {
	allowPrivate bool
	allow        []netip.Prefix
}

// Ranges refused whatever the configuration (unless allow-listed).
var alwaysForbidden = []struct {
	p     netip.Prefix
	class string
}{
	{netip.MustParsePrefix("0.0.0.0/8"), "this-network"},
	{netip.MustParsePrefix("192.0.0.0/24"), "IETF-protocol-assignment"},
	{netip.MustParsePrefix("192.0.2.0/24"), "documentation"},
	{netip.MustParsePrefix("198.18.0.0/15"), "benchmarking"},
	{netip.MustParsePrefix("198.51.100.0/24"), "documentation"},
	{netip.MustParsePrefix("203.0.113.0/24"), "documentation"},
	{netip.MustParsePrefix("240.0.0.0/4"), "reserved"}, // includes 255.255.255.255
	{netip.MustParsePrefix("100::/64"), "discard-only"},
	{netip.MustParsePrefix("2001:db8::/32"), "documentation"},
	{netip.MustParsePrefix("fec0::/10"), "site-local"},
}

// Ranges refused unless AllowPrivate (besides netip's IsPrivate).
var privateExtra = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"), // shared address space (CGNAT): the ISP side of many gateways
}

// check returns nil if a may be dialled, or a *ForbiddenAddressError.
func (g *addrGuard) check(a netip.Addr) error {
	a = a.Unmap()
	for _, p := range g.allow {
		if p.Contains(a) {
			return nil
		}
	}
	if cls := g.class(a); cls != "" {
		return &ForbiddenAddressError{Addr: a.String(), Class: cls}
	}
	// An IPv6 address that embeds an IPv4 one (NAT64, 6to4) reaches that
	// IPv4 address through a translator: judge the embedded one too.
	if v4, ok := embeddedIPv4(a); ok {
		if cls := g.class(v4); cls != "" {
			return &ForbiddenAddressError{Addr: a.String(), Class: cls + " (embedded " + v4.String() + ")"}
		}
	}
	return nil
}

func (g *addrGuard) class(a netip.Addr) string {
	switch {
	case !a.IsValid():
		return "invalid"
	case a.IsUnspecified():
		return "unspecified"
	case a.IsLoopback():
		return "loopback"
	case a.IsLinkLocalUnicast():
		return "link-local"
	case a.IsMulticast():
		return "multicast"
	}
	for _, f := range alwaysForbidden {
		if f.p.Contains(a) {
			return f.class
		}
	}
	if !g.allowPrivate {
		if a.IsPrivate() {
			if a.Is6() {
				return "unique-local (ULA)"
			}
			return "private"
		}
		for _, p := range privateExtra {
			if p.Contains(a) {
				return "shared (CGNAT)"
			}
		}
	}
	return ""
}

var (
	nat64WKP   = netip.MustParsePrefix("64:ff9b::/96")
	nat64Local = netip.MustParsePrefix("64:ff9b:1::/48")
	sixToFour  = netip.MustParsePrefix("2002::/16")
)

func embeddedIPv4(a netip.Addr) (netip.Addr, bool) {
	if !a.Is6() {
		return netip.Addr{}, false
	}
	b := a.As16()
	switch {
	case nat64WKP.Contains(a), nat64Local.Contains(a):
		return netip.AddrFrom4([4]byte{b[12], b[13], b[14], b[15]}), true
	case sixToFour.Contains(a):
		return netip.AddrFrom4([4]byte{b[2], b[3], b[4], b[5]}), true
	}
	return netip.Addr{}, false
}

// control is the net.Dialer Control hook: it sees the address the socket is
// about to connect to, after any name resolution, so DNS rebinding cannot
// slip past it.
func (g *addrGuard) control(network, address string, _ syscall.RawConn) error {
	ap, err := netip.ParseAddrPort(address)
	if err != nil {
		return fmt.Errorf("%w: cannot parse dialled address %q", ErrForbiddenAddress, address)
	}
	return g.check(ap.Addr())
}

// dialer resolves through the configured seam and dials each address in turn
// with the guard in Control.
type dialer struct {
	guard   *addrGuard
	resolve func(ctx context.Context, host string) ([]netip.Addr, error)
	nd      net.Dialer
}

func newDialer(g *addrGuard, resolve func(context.Context, string) ([]netip.Addr, error), connectTimeout time.Duration) *dialer {
	d := &dialer{guard: g, resolve: resolve}
	d.nd = net.Dialer{Timeout: connectTimeout, Control: g.control}
	if d.resolve == nil {
		d.resolve = func(ctx context.Context, host string) ([]netip.Addr, error) {
			return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		}
	}
	return d
}

func (d *dialer) DialContext(ctx context.Context, network, address string) (net.Conn, error) {
	host, portStr, err := net.SplitHostPort(address)
	if err != nil {
		return nil, fmt.Errorf("%w: dial address %q: %v", ErrBadURL, address, err)
	}
	port, err := strconv.ParseUint(portStr, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("%w: port %q", ErrBadURL, portStr)
	}
	var addrs []netip.Addr
	literal := false
	if a, err := netip.ParseAddr(host); err == nil {
		addrs, literal = []netip.Addr{a}, true
	} else {
		addrs, err = d.resolve(ctx, host)
		if err != nil {
			return nil, fmt.Errorf("%w: resolving %s: %w", ErrFetch, host, err)
		}
		if len(addrs) == 0 {
			return nil, fmt.Errorf("%w: resolving %s: no addresses", ErrFetch, host)
		}
	}
	var errs []error
	for _, a := range addrs {
		// Refuse before even creating the socket; Control checks again on
		// the exact address handed to connect(2).
		if err := d.guard.check(a); err != nil {
			if !literal {
				err = fmt.Errorf("%s resolved to %s: %w", host, a, err)
			}
			errs = append(errs, err)
			continue
		}
		c, err := d.nd.DialContext(ctx, network, netip.AddrPortFrom(a.Unmap(), uint16(port)).String())
		if err == nil {
			return c, nil
		}
		errs = append(errs, err)
		if ctx.Err() != nil {
			break
		}
	}
	return nil, errors.Join(errs...)
}
