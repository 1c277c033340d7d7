package dhcpsnoop

import (
	"encoding/hex"
	"encoding/json"
	"net"
	"net/netip"
	"strings"
	"time"
)

// Kind names what happened. Lifecycle kinds describe a lease; flag kinds
// (IsFlag) report something suspicious or invalid that an admin or the
// manager's policy should look at.
type Kind string

// Lifecycle kinds.
const (
	// KindAnnounced: a client request carried a valid MUD URL not seen from
	// this MAC before. It comes before any lease, so an admin can see a
	// device announce itself even when no server answers.
	KindAnnounced Kind = "mud-url-announced"
	// KindBound: a server confirmed a lease in a family (v4 or v6) for a MAC
	// with no lease in that family.
	KindBound Kind = "bound"
	// KindRenewed: a lease was extended with the same addresses.
	KindRenewed Kind = "renewed"
	// KindAddressChanged: a lease now has other addresses (Added/Removed).
	KindAddressChanged Kind = "address-changed"
	// KindReleased: the client released addresses.
	KindReleased Kind = "released"
	// KindDeclined: the client declined addresses (in use by another host).
	KindDeclined Kind = "declined"
	// KindExpired: the lease time passed without a renewal — also the way a
	// device that just disappears ends.
	KindExpired Kind = "expired"
	// KindPresent: a device found on the LAN when the snooper started (in
	// a bridge's forwarding database or the kernel's neighbour table) with
	// no lease the snooper knows of: it joined while nothing watched. Its
	// MUD URL is unknown until its next DHCP request (a renewal, at half
	// its lease time); Reason says where it was found.
	KindPresent Kind = "present"
	// KindAddressesLearned: IPv6 addresses the device configured itself
	// (SLAAC, privacy addresses), learned from the neighbour table.
	KindAddressesLearned Kind = "addresses-learned"
)

// Flag kinds.
const (
	// KindInvalidURL: a MUD option that breaks RFC 8520 §10 (Reason says how).
	KindInvalidURL Kind = "invalid-mud-url"
	// KindURLMismatch: the device's DHCPv4 and DHCPv6 URLs differ (RFC 8520 §10.1).
	KindURLMismatch Kind = "mud-url-mismatch"
	// KindURLChanged: the same MAC now announces another URL (RFC 8520 §16: the
	// manager should not follow without review if the authority changed).
	KindURLChanged Kind = "mud-url-changed"
	// KindMACMismatch: a DHCPv4 request whose chaddr is not the frame's
	// source MAC, sent directly (not through a relay).
	KindMACMismatch Kind = "chaddr-mismatch"
)

// IsFlag reports whether k reports a problem rather than a lease change.
func (k Kind) IsFlag() bool {
	switch k {
	case KindInvalidURL, KindURLMismatch, KindURLChanged, KindMACMismatch:
		return true
	}
	return false
}

// Event is one thing the snooper learned. Addresses describe the device's
// binding after the event; Added and Removed say what this event changed.
type Event struct {
	Kind      Kind
	Time      time.Time
	Interface string
	// Port is the bridge port the device's frames arrive on, from the
	// bridge's forwarding database (the Snooper fills it in): the frame's
	// source for what a client sent, the device's MAC otherwise. When
	// Interface is not a bridge it is Interface; "" when unknown.
	Port   string
	Family int // 4 or 6: the protocol that caused the event; 0 when neither
	MAC    net.HardwareAddr

	IPv4    netip.Addr   // current DHCPv4 address, if any
	IPv6    []netip.Addr // current DHCPv6 and learned IPv6 addresses
	Added   []netip.Addr
	Removed []netip.Addr

	LeaseTime time.Duration // of the family's lease; Infinite for never
	Expires   time.Time     // zero for infinite or unknown

	MUDURL   string // the valid URL the device announced (this family's first), "" if none
	Hostname string // escaped
	ClientID []byte // DHCPv4 client identifier or DHCPv6 DUID
	Relayed  bool   // the message came through a relay agent

	// Gone is true when the device has no address left: the manager removes
	// its rules (RFC 8520 §10.2: policy lasts as long as the lease).
	Gone bool
	// Reason explains flag events and expiries; Raw is the offending value
	// (escaped) of an invalid URL.
	Reason string
	Raw    string

	// src is the Ethernet source of the client frame the event came
	// from (nil for server answers and timers): the address whose
	// forwarding entry names the port.
	src net.HardwareAddr
}

// Addresses returns all current addresses, IPv4 first.
func (e Event) Addresses() []netip.Addr {
	var out []netip.Addr
	if e.IPv4.IsValid() {
		out = append(out, e.IPv4)
	}
	return append(out, e.IPv6...)
}

type eventJSON struct {
	Kind         Kind       `json:"kind"`
	Time         time.Time  `json:"time"`
	Interface    string     `json:"interface,omitempty"`
	Port         string     `json:"port,omitempty"`
	Family       int        `json:"family,omitempty"`
	MAC          string     `json:"mac"`
	IPv4         string     `json:"ipv4,omitempty"`
	IPv6         []string   `json:"ipv6,omitempty"`
	Added        []string   `json:"added,omitempty"`
	Removed      []string   `json:"removed,omitempty"`
	LeaseSeconds *int64     `json:"lease_seconds,omitempty"` // -1: infinite
	Expires      *time.Time `json:"expires,omitempty"`
	MUDURL       string     `json:"mud_url,omitempty"`
	Hostname     string     `json:"hostname,omitempty"`
	ClientID     string     `json:"client_id,omitempty"`
	Relayed      bool       `json:"relayed,omitempty"`
	Gone         bool       `json:"gone,omitempty"`
	Reason       string     `json:"reason,omitempty"`
	Raw          string     `json:"raw,omitempty"`
}

// MarshalJSON writes the event with text addresses, the MAC in colon form
// and the lease in seconds: the shape `mudctl snoop -o json` prints.
func (e Event) MarshalJSON() ([]byte, error) {
	j := eventJSON{
		Kind: e.Kind, Time: e.Time, Interface: e.Interface, Port: e.Port, Family: e.Family,
		MAC: e.MAC.String(), IPv6: addrStrings(e.IPv6),
		Added: addrStrings(e.Added), Removed: addrStrings(e.Removed),
		MUDURL: e.MUDURL, Hostname: e.Hostname, Relayed: e.Relayed, Gone: e.Gone,
		Reason: e.Reason, Raw: e.Raw,
	}
	if e.IPv4.IsValid() {
		j.IPv4 = e.IPv4.String()
	}
	if e.LeaseTime != 0 {
		s := int64(-1)
		if e.LeaseTime != Infinite {
			s = int64(e.LeaseTime / time.Second)
		}
		j.LeaseSeconds = &s
	}
	if !e.Expires.IsZero() {
		j.Expires = &e.Expires
	}
	if len(e.ClientID) > 0 {
		j.ClientID = hex.EncodeToString(e.ClientID)
	}
	return json.Marshal(j)
}

// String is the human one-line form used by `mudctl snoop`. Every value from
// the network in it is already escaped.
func (e Event) String() string {
	var b strings.Builder
	b.WriteString(e.Time.Format("15:04:05"))
	b.WriteString(" ")
	b.WriteString(string(e.Kind))
	if e.Family != 0 {
		b.WriteString(" v")
		b.WriteByte(byte('0' + e.Family))
	}
	b.WriteString(" ")
	b.WriteString(e.MAC.String())
	if e.Interface != "" {
		b.WriteString(" on ")
		b.WriteString(e.Interface)
		if e.Port != "" && e.Port != e.Interface {
			b.WriteString(" port ")
			b.WriteString(e.Port)
		}
	}
	if addrs := e.Addresses(); len(addrs) > 0 {
		b.WriteString(" addrs=")
		b.WriteString(strings.Join(addrStrings(addrs), ","))
	}
	if len(e.Added) > 0 {
		b.WriteString(" added=")
		b.WriteString(strings.Join(addrStrings(e.Added), ","))
	}
	if len(e.Removed) > 0 {
		b.WriteString(" removed=")
		b.WriteString(strings.Join(addrStrings(e.Removed), ","))
	}
	switch {
	case e.LeaseTime == Infinite:
		b.WriteString(" lease=infinite")
	case e.LeaseTime > 0:
		b.WriteString(" lease=")
		b.WriteString(e.LeaseTime.String())
	}
	if e.Hostname != "" {
		b.WriteString(" host=")
		b.WriteString(e.Hostname)
	}
	if e.MUDURL != "" {
		b.WriteString(" mud-url=")
		b.WriteString(e.MUDURL)
	}
	if e.Relayed {
		b.WriteString(" relayed")
	}
	if e.Gone {
		b.WriteString(" gone")
	}
	if e.Reason != "" {
		b.WriteString(" reason=")
		b.WriteString(e.Reason)
	}
	if e.Raw != "" {
		b.WriteString(" raw=\"")
		b.WriteString(e.Raw)
		b.WriteString("\"")
	}
	return b.String()
}

func addrStrings(as []netip.Addr) []string {
	if len(as) == 0 {
		return nil
	}
	out := make([]string, len(as))
	for i, a := range as {
		out[i] = a.String()
	}
	return out
}
