package scale

import (
	"encoding/json"
	"fmt"
	"net"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/internal/lab/gwlab"
)

// TestLabScale: 2,000 devices join through Kea, announcing 100 MUD URLs
// (RFC 8520 §10); every one the DHCP server acknowledged ends
// enforced with its address, none is lost. An exchange that fails in the
// lab, without an acknowledgement in time (a busy machine), is replaced by
// another device; the generator releases what the server may have leased
// it late, and mudd, which snoops the RELEASE, ends with no binding for
// it. mudd is killed (SIGKILL, no clean-up) half-way and started again:
// the kernel's sets come back exactly as they were — device bindings and
// the addresses of the names the files permit (mudd restores them from
// its store; the lab's DNS server still answers, so this test alone does
// not tell a restored address from one asked again) — and the kernel's
// bindings are exactly the store's devices and addresses, at the end too.
func TestLabScale(t *testing.T) {
	const n = 2000
	s := newScaleLab(t, 100)
	if _, err := s.install(n/2, false); err != nil {
		t.Fatal(err)
	}
	s.checkStoreIsKernel(n / 2)
	before := s.kernelElems()
	if err := s.gw.KillMudd(); err != nil {
		t.Fatal(err)
	}
	// Left behind by the killed mudd; a restart starts from the store, not
	// from what is in the kernel.
	for _, fam := range []string{"inet", "bridge"} {
		if _, err := s.gw.NFT(s.ctx, "delete", "table", fam, "mud"); err != nil {
			t.Fatalf("removing the killed mudd's table: %v", err)
		}
	}
	start := time.Now()
	if err := s.gw.StartMudd(s.ctx); err != nil {
		t.Fatal(err)
	}
	var after map[string]bool
	err := gwlab.Poll(s.ctx, 30*time.Second, func() error {
		after = s.kernelElems()
		if missing, extra := diff(before, after); len(missing)+len(extra) > 0 {
			return fmt.Errorf("%d elements missing (%v), %d new (%v)", len(missing), head(missing), len(extra), head(extra))
		}
		return nil
	})
	if err != nil {
		t.Fatalf("the kernel after the restart is not what it was before the kill: %v", err)
	}
	t.Logf("restart with %d devices: kernel as before the kill %v after start (%d elements)", n/2, time.Since(start).Round(time.Millisecond), len(after))
	if !hasDNSAddress(after, s.lab.Servers[1].IPv4) {
		t.Errorf("no set holds %s, %s's address, after the restart", s.lab.Servers[1].IPv4, cloudHost)
	}
	as, err := s.install(n/2, false)
	if err != nil {
		t.Fatal(err)
	}
	s.checkStoreIsKernel(n)
	var lat []time.Duration
	for _, a := range as {
		lat = append(lat, a.latency())
	}
	t.Logf("DHCPv6 REPLY → binding active with %d–%d devices: p50 %v, p99 %v", n/2, n, percentile(lat, 50), percentile(lat, 99))
}

// checkStoreIsKernel: mudd lists the n simulated devices that joined,
// each enforced with the one address the DHCP server acknowledged to it;
// a device whose exchange the generator gave up (and released, see
// framegen) holds no address, though mudd lists it, having read its MUD
// URL; and the kernel's bindings of simulated MACs are exactly the
// store's. mudd applies the last RELEASE of a given-up exchange as it
// reads it, after the generator returned: the comparison is retried for
// a while.
func (s *scaleLab) checkStoreIsKernel(n int) {
	s.t.Helper()
	want := map[string]string{}
	for _, a := range s.all {
		want[a.MAC.String()] = a.Addr.String()
	}
	var problems []string
	err := gwlab.Poll(s.ctx, 30*time.Second, func() error {
		problems = s.storeKernelProblems(want, n)
		if len(problems) > 0 {
			return fmt.Errorf("%d differences", len(problems))
		}
		return nil
	})
	if err != nil {
		for _, p := range head(problems) {
			s.t.Error(p)
		}
		if len(problems) > 5 {
			s.t.Errorf("and %d more", len(problems)-5)
		}
	}
}

// storeKernelProblems are the ways mudd's store and the kernel differ
// from want (each joined device's MAC and address) and from each other.
func (s *scaleLab) storeKernelProblems(want map[string]string, n int) []string {
	ds, err := s.gw.Devices(s.ctx)
	if err != nil {
		return []string{err.Error()}
	}
	var devs []string
	store := map[string]bool{}
	count := 0
	for _, d := range ds {
		if !strings.HasPrefix(d.MAC, "02:5c:") {
			continue
		}
		for _, ip := range d.IPs {
			store[d.MAC+" "+ip.String()] = true
		}
		addr, joined := want[d.MAC]
		switch {
		case joined:
			count++
			if d.State != api.StateEnforced || len(d.IPs) != 1 || d.IPs[0].String() != addr {
				devs = append(devs, fmt.Sprintf("device %s is %s (%s) with addresses %v, want enforced with %s", d.MAC, d.State, d.Reason, d.IPs, addr))
			}
		case len(d.IPs) > 0:
			devs = append(devs, fmt.Sprintf("device %s, whose DHCP exchange was given up and released, holds %v", d.MAC, d.IPs))
		}
	}
	var problems []string
	if count != n {
		problems = append(problems, fmt.Sprintf("mudd lists %d devices that joined, want %d", count, n))
	}
	missing, extra := diff(store, s.kernelBindings())
	if len(missing)+len(extra) > 0 {
		problems = append(problems, fmt.Sprintf("store and kernel differ: %d bindings of the store not in the kernel (%v), %d in the kernel only (%v)",
			len(missing), head(missing), len(extra), head(extra)))
	}
	return append(problems, devs...)
}

// kernelElems are the elements of every set of mudd's tables, each as
// "family table set | values", without timeouts and expiry.
func (s *scaleLab) kernelElems() map[string]bool {
	s.t.Helper()
	out := map[string]bool{}
	for _, fam := range []string{"inet", "bridge"} {
		js, err := s.gw.NFT(s.ctx, "-j", "list", "table", fam, "mud")
		if err != nil {
			s.t.Fatal(err)
		}
		var doc struct {
			Nftables []map[string]json.RawMessage `json:"nftables"`
		}
		if err := json.Unmarshal([]byte(js), &doc); err != nil {
			s.t.Fatalf("decoding nft -j: %v", err)
		}
		for _, o := range doc.Nftables {
			var ok bool
			raw, isSet := o["set"]
			if !isSet {
				if raw, ok = o["map"]; !ok {
					continue
				}
			}
			var set struct {
				Name string `json:"name"`
				Elem []any  `json:"elem"`
			}
			if err := json.Unmarshal(raw, &set); err != nil {
				s.t.Fatalf("decoding a set: %v", err)
			}
			for _, e := range set.Elem {
				// A map's values are numbers mudd assigns its policies as
				// it installs them, in another order after a restart: the
				// keys are compared.
				if pair, ok := e.([]any); ok && !isSet && len(pair) == 2 {
					e = pair[0]
				}
				var vs []string
				leaves(e, "", &vs)
				out[fam+" "+set.Name+" | "+strings.Join(vs, " ")] = true
			}
		}
	}
	return out
}

func leaves(v any, key string, out *[]string) {
	switch v := v.(type) {
	case map[string]any:
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		slices.Sort(keys)
		for _, k := range keys {
			if k == "expires" || k == "timeout" {
				continue
			}
			leaves(v[k], k, out)
		}
	case []any:
		for _, x := range v {
			leaves(x, key, out)
		}
	case nil:
	default:
		*out = append(*out, fmt.Sprint(v))
	}
}

// kernelBindings are the "MAC address" pairs of simulated MACs that set
// elements hold.
func (s *scaleLab) kernelBindings() map[string]bool {
	out := map[string]bool{}
	for e := range s.kernelElems() {
		_, vals, _ := strings.Cut(e, " | ")
		var mac, ip string
		for _, v := range strings.Fields(vals) {
			if m, err := net.ParseMAC(v); err == nil && strings.HasPrefix(m.String(), "02:5c:") {
				mac = m.String()
			} else if a, err := netip.ParseAddr(v); err == nil {
				ip = a.String()
			}
		}
		if mac != "" && ip != "" {
			out[mac+" "+ip] = true
		}
	}
	return out
}

func hasDNSAddress(elems map[string]bool, a netip.Addr) bool {
	for e := range elems {
		_, vals, _ := strings.Cut(e, " | ")
		if slices.Contains(strings.Fields(vals), a.String()) {
			return true
		}
	}
	return false
}

func diff(want, got map[string]bool) (missing, extra []string) {
	for k := range want {
		if !got[k] {
			missing = append(missing, k)
		}
	}
	for k := range got {
		if !want[k] {
			extra = append(extra, k)
		}
	}
	slices.Sort(missing)
	slices.Sort(extra)
	return missing, extra
}

func head(s []string) []string { return s[:min(len(s), 5)] }

// percentile is the p-th percentile (nearest rank) of ds.
func percentile(ds []time.Duration, p int) time.Duration {
	if len(ds) == 0 {
		return 0
	}
	s := slices.Clone(ds)
	slices.Sort(s)
	rank := (p*len(s) + 99) / 100
	return s[max(rank, 1)-1]
}
