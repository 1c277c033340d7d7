package dhcpsnoop

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"strconv"
	"time"
)

// A DHCP server's lease database tells which devices hold a lease right
// now, whatever the snooper saw: the devices that joined while it was not
// running. dnsmasq's lease file (--dhcp-leasefile, OpenWrt's
// /tmp/dhcp.leases) has one DHCPv4 lease per line:
//
//	EXPIRY MAC IPV4 HOSTNAME CLIENT-ID
//
// EXPIRY in seconds since the epoch (0: infinite), HOSTNAME and CLIENT-ID
// "*" when absent; then a "duid SERVER-DUID" line and the DHCPv6 leases,
// keyed by IAID and DUID. It does not hold the MUD URL a device announced
// (dnsmasq keeps no option 161), and DHCPv6 leases name no MAC: those are
// skipped, and a device read from the file is known by its MAC, IPv4
// address and host name until its next DHCP exchange says more.
//
// The file is input like the network's: every field is checked, a line
// that breaks the format is skipped and reported, the size is bounded.

// Lease is one DHCPv4 lease read from a server's lease database.
type Lease struct {
	MAC     net.HardwareAddr
	IPv4    netip.Addr
	Expires time.Time // zero: infinite
	// Hostname is escaped (EscapeBytes); "" when the file has none.
	Hostname string
	ClientID []byte
}

const (
	// maxLeaseFile bounds the lease file read (a line is under 200
	// octets: this is over 80,000 leases).
	maxLeaseFile = 16 << 20
	// maxLeaseLine bounds one line; dnsmasq's longest (a DHCPv6 lease
	// with a 255-octet host name and a 130-octet DUID) is under 700.
	maxLeaseLine = 1024
	// maxLeaseProblems bounds the problems ParseDNSMasqLeases reports.
	maxLeaseProblems = 16
)

// ParseDNSMasqLeases reads the DHCPv4 leases of a dnsmasq lease file, at
// most max (0: no limit). Lines it cannot use are skipped; problems
// describes the first of them by line number (DHCPv6 lines and the server
// DUID are not problems). It never fails as a whole.
func ParseDNSMasqLeases(data []byte, max int) (leases []Lease, problems []error) {
	bad := func(n int, format string, args ...any) {
		if len(problems) < maxLeaseProblems {
			problems = append(problems, fmt.Errorf("line %d: %s", n, fmt.Sprintf(format, args...)))
		}
	}
	seen := map[hwKey]bool{}
	for n := 1; len(data) > 0; n++ {
		line := data
		if i := bytes.IndexByte(data, '\n'); i >= 0 {
			line, data = data[:i], data[i+1:]
		} else {
			data = nil
		}
		if len(line) > maxLeaseLine {
			bad(n, "longer than %d octets", maxLeaseLine)
			continue
		}
		f := bytes.Fields(line)
		if len(f) == 0 {
			continue
		}
		if bytes.Equal(f[0], []byte("duid")) {
			continue // the server's DUID, then DHCPv6 leases
		}
		if len(f) != 5 {
			bad(n, "%d fields, want 5 (expiry, MAC, address, host name, client id)", len(f))
			continue
		}
		l, err := parseLeaseLine(f)
		if errors.Is(err, errV6Lease) {
			continue
		}
		if err != nil {
			bad(n, "%v", err)
			continue
		}
		k, _ := keyOf(l.MAC)
		if seen[k] {
			bad(n, "a second lease for %s", l.MAC)
			continue
		}
		if max > 0 && len(leases) >= max {
			bad(n, "more than %d leases; the rest are not read", max)
			break
		}
		seen[k] = true
		leases = append(leases, l)
	}
	return leases, problems
}

var errV6Lease = errors.New("a DHCPv6 lease")

func parseLeaseLine(f [][]byte) (Lease, error) {
	var l Lease
	exp, err := strconv.ParseUint(string(f[0]), 10, 63)
	if err != nil || len(f[0]) > 20 {
		return l, fmt.Errorf("expiry %q is not a number of seconds", EscapeBytes(f[0], 32))
	}
	if exp != 0 {
		if exp > 1<<40 {
			return l, fmt.Errorf("expiry %d is out of range", exp)
		}
		l.Expires = time.Unix(int64(exp), 0)
	}
	ip, err := netip.ParseAddr(string(f[2]))
	if err != nil {
		return l, fmt.Errorf("address %q is not an IP address", EscapeBytes(f[2], 64))
	}
	if ip.Is6() && !ip.Is4In6() {
		return l, errV6Lease
	}
	ip = ip.Unmap()
	if !ip.IsGlobalUnicast() && !ip.IsPrivate() {
		return l, fmt.Errorf("address %s is not a unicast address", ip)
	}
	l.IPv4 = ip
	// dnsmasq writes "TYPE-MAC" for hardware other than Ethernet; only
	// Ethernet MACs name a device here.
	mac, err := net.ParseMAC(string(f[1]))
	if err != nil || len(mac) != 6 {
		return l, fmt.Errorf("%q is not an Ethernet MAC address", EscapeBytes(f[1], 64))
	}
	if mac[0]&1 != 0 || bytes.Equal(mac, make([]byte, 6)) {
		return l, fmt.Errorf("%s is not a device's MAC address", mac)
	}
	l.MAC = mac
	if h := f[3]; !bytes.Equal(h, []byte("*")) {
		l.Hostname = EscapeBytes(h, 64)
	}
	if c := f[4]; !bytes.Equal(c, []byte("*")) {
		id, err := parseHexColon(c)
		if err != nil {
			return l, fmt.Errorf("client id %q: %v", EscapeBytes(c, 64), err)
		}
		l.ClientID = id
	}
	return l, nil
}

// parseHexColon parses dnsmasq's colon-separated hex octets ("01:02:0a").
func parseHexColon(b []byte) ([]byte, error) {
	if len(b) > 3*255 {
		return nil, errors.New("too long")
	}
	var out []byte
	for part := range bytes.SplitSeq(b, []byte(":")) {
		if len(part) == 0 || len(part) > 2 {
			return nil, errors.New("not colon-separated hex octets")
		}
		v, err := strconv.ParseUint(string(part), 16, 8)
		if err != nil {
			return nil, errors.New("not colon-separated hex octets")
		}
		out = append(out, byte(v))
	}
	return out, nil
}

// ReadDNSMasqLeases reads the lease file at path with ParseDNSMasqLeases.
// A file that does not exist holds no lease (a server that gave none
// yet may not have written it): no leases, no error.
func ReadDNSMasqLeases(path string, max int) ([]Lease, []error, error) {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil, nil
	}
	if err != nil {
		return nil, nil, fmt.Errorf("reading the lease file: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxLeaseFile+1))
	if err != nil {
		return nil, nil, fmt.Errorf("reading the lease file %s: %w", path, err)
	}
	if len(data) > maxLeaseFile {
		return nil, nil, fmt.Errorf("the lease file %s is larger than %d octets", path, maxLeaseFile)
	}
	leases, problems := ParseDNSMasqLeases(data, max)
	return leases, problems, nil
}

// ReasonLeaseFile is the Reason of the bound events of leases read from
// Config.LeaseFile: the MUD URL is unknown until the device's next request.
const ReasonLeaseFile = "read from the DHCP server's lease file"

// Seed takes leases a server's database holds as if their ACKs had been
// seen on iface: a MAC with no lease yet is bound (a KindBound event whose
// Reason says where it came from), one with a lease already, or whose
// lease has expired, is left as it is. MaxDevices holds.
func (t *Tracker) Seed(leases []Lease, iface, reason string, now time.Time) []Event {
	var evs []Event
	for _, l := range leases {
		key, ok := keyOf(l.MAC)
		if !ok || !l.IPv4.Is4() || t.bound[key] != nil || (!l.Expires.IsZero() && !l.Expires.After(now)) {
			continue
		}
		dev := t.promote(key, iface, now)
		if dev == nil {
			continue
		}
		dev.v4, dev.v4Lease, dev.v4Expires = l.IPv4, Infinite, l.Expires
		if !l.Expires.IsZero() {
			// What is left of it: the file says when it ends, not how
			// long it was.
			dev.v4Lease = l.Expires.Sub(now).Truncate(time.Second)
		}
		if l.Hostname != "" {
			dev.hostname = l.Hostname
		}
		if len(l.ClientID) > 0 {
			dev.clientID = l.ClientID
		}
		ev := t.event(KindBound, dev, 4, now)
		ev.Added = []netip.Addr{l.IPv4}
		ev.Reason = reason
		evs = append(evs, ev)
	}
	t.c.devices.Store(uint64(len(t.bound)))
	t.c.pending.Store(uint64(len(t.pending)))
	t.c.events.Add(uint64(len(evs)))
	return evs
}

// readLeaseFile reads Config.LeaseFile and seeds the tracker with it.
func (s *Snooper) readLeaseFile(now time.Time) []Event {
	leases, problems, err := ReadDNSMasqLeases(s.cfg.LeaseFile, s.tracker.cfg.MaxDevices)
	if err != nil {
		s.log.Warn("the DHCP server's lease file cannot be read; devices that joined while mudd was down are known from their next DHCP exchange", "err", err)
		return nil
	}
	s.c.leaseFileBad.Add(uint64(len(problems)))
	for _, p := range problems {
		s.log.Warn("a line of the DHCP server's lease file was skipped", "file", s.cfg.LeaseFile, "err", p)
	}
	evs := s.tracker.Seed(leases, s.cfg.Interfaces[0], ReasonLeaseFile, now)
	s.c.leaseFile.Add(uint64(len(evs)))
	s.log.Info("read the DHCP server's lease file", "file", s.cfg.LeaseFile, "leases", len(leases), "new", len(evs))
	return evs
}
