package resolver

import (
	"errors"
	"net/netip"
	"slices"
)

// Errors of resolution. Updates carry them (wrapped) in Update.Err.
var (
	// ErrNXDomain: the name does not exist (a negative answer).
	ErrNXDomain = errors.New("name does not exist (NXDOMAIN)")
	// ErrNoAddresses: the name exists but has no A or AAAA records
	// (NODATA, a negative answer).
	ErrNoAddresses = errors.New("name has no A or AAAA records")
	// ErrCNAMELoop: a CNAME chain comes back to a name already on it.
	ErrCNAMELoop = errors.New("CNAME loop")
	// ErrCNAMEDepth: a CNAME chain is longer than Config.MaxCNAMEDepth.
	ErrCNAMEDepth = errors.New("CNAME chain too long")
	// ErrServer: the resolver answered with an error code (SERVFAIL,
	// REFUSED, ...), or could not be reached.
	ErrServer = errors.New("resolver failure")
	// ErrExpired: the grace period after a failure has ended and the last
	// known addresses are withdrawn.
	ErrExpired = errors.New("last answers expired after grace period")
)

// chain is the result of following CNAMEs from a start name through the
// records of one message.
type chain struct {
	names []string // names[0] is the start; each next one a CNAME target
	ttls  []uint32 // ttls[i] is the TTL of the CNAME names[i] -> names[i+1]
	addrs []netip.Addr
	// addrTTL is the minimum TTL of the address records (valid when addrs
	// is not empty).
	addrTTL uint32
}

// end is the last name of the chain, owner of the addresses.
func (c *chain) end() string { return c.names[len(c.names)-1] }

// ttlFrom is the minimum TTL of the chain from names[i] to the addresses.
func (c *chain) ttlFrom(i int) uint32 {
	t := c.addrTTL
	for _, x := range c.ttls[i:] {
		t = min(t, x)
	}
	return t
}

// follow walks the CNAME chain from start through recs and collects the A
// and AAAA records of its end (of type qtype, or both when qtype is 0).
// prior holds names already visited by earlier queries of the same
// resolution (for loop detection across re-queries); maxDepth bounds the
// number of CNAMEs in total.
func follow(recs []Record, start string, qtype uint16, prior []string, maxDepth int) (chain, error) {
	c := chain{names: []string{start}}
	cur := start
	for {
		next, ttl, found := "", uint32(0), false
		for i := range recs {
			if recs[i].Type == TypeCNAME && recs[i].Name == cur {
				next, ttl, found = recs[i].Target, recs[i].TTL, true
				break
			}
		}
		if !found {
			break
		}
		if slices.Contains(c.names, next) || slices.Contains(prior, next) {
			return c, ErrCNAMELoop
		}
		if len(c.ttls)+len(prior) >= maxDepth {
			return c, ErrCNAMEDepth
		}
		c.names = append(c.names, next)
		c.ttls = append(c.ttls, ttl)
		cur = next
	}
	first := true
	for i := range recs {
		r := &recs[i]
		if r.Name != cur || (r.Type != TypeA && r.Type != TypeAAAA) || (qtype != 0 && r.Type != qtype) {
			continue
		}
		if !usable(r.Addr) || slices.Contains(c.addrs, r.Addr) {
			continue
		}
		c.addrs = append(c.addrs, r.Addr)
		if first || r.TTL < c.addrTTL {
			c.addrTTL = r.TTL
		}
		first = false
	}
	return c, nil
}

// usable rejects addresses no allow-list should ever contain from DNS.
func usable(a netip.Addr) bool {
	return a.IsValid() && !a.IsUnspecified() && !a.IsLoopback() && !a.IsMulticast() && !a.Is4In6()
}
