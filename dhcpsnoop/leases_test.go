package dhcpsnoop

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// testdata/dnsmasq.leases is a lease file dnsmasq 2.90 wrote: a DHCPv4
// lease (udhcpc with a host name and a client id), the server's DUID and a
// DHCPv6 lease.
func realLeaseFile(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "dnsmasq.leases"))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseDNSMasqLeases(t *testing.T) {
	leases, problems := ParseDNSMasqLeases(realLeaseFile(t), 0)
	if len(problems) != 0 || len(leases) != 1 {
		t.Fatalf("leases %+v, problems %v; want the one DHCPv4 lease", leases, problems)
	}
	l := leases[0]
	if l.MAC.String() != "02:00:00:00:01:07" || l.IPv4 != netip.MustParseAddr("192.0.2.168") || l.Hostname != "thermostat-1" ||
		!l.Expires.Equal(time.Unix(1796451481, 0)) || string(l.ClientID) != "\x01\x02\x00\x00\x00\x01\x07" {
		t.Errorf("lease = %+v", l)
	}

	for _, tc := range []struct{ line, problem string }{
		{"0 02:00:00:00:01:01 192.0.2.5 * *", ""}, // infinite, no name, no id
		{"x 02:00:00:00:01:01 192.0.2.5 * *", "expiry"},
		{"-5 02:00:00:00:01:01 192.0.2.5 * *", "expiry"},
		{"99999999999999999999999 02:00:00:00:01:01 192.0.2.5 * *", "expiry"},
		{"1796451481 06-02:00:00:00:01:01 192.0.2.5 * *", "not an Ethernet MAC"},
		{"1796451481 01:00:5e:00:00:01 192.0.2.5 * *", "not a device's MAC"},
		{"1796451481 02:00:00:00:01:01 192.0.2.256 * *", "not an IP address"},
		{"1796451481 02:00:00:00:01:01 224.0.0.1 * *", "not a unicast"},
		{"1796451481 02:00:00:00:01:01 192.0.2.5 * 01:zz", "client id"},
		{"1796451481 02:00:00:00:01:01 192.0.2.5 *", "4 fields"},
		{"1796451481 02:00:00:00:01:01 192.0.2.5 " + strings.Repeat("a", 2000) + " *", "longer than"},
		{"1796451485 263 2001:db8:1::1b2 * 00:01", ""}, // DHCPv6: skipped silently
	} {
		leases, problems := ParseDNSMasqLeases([]byte(tc.line+"\n"), 0)
		switch {
		case tc.problem == "" && len(problems) != 0:
			t.Errorf("%.60q: problems %v", tc.line, problems)
		case tc.problem != "" && (len(problems) != 1 || !strings.Contains(problems[0].Error(), tc.problem) || len(leases) != 0):
			t.Errorf("%.60q: leases %v, problems %v; want one about %q", tc.line, leases, problems, tc.problem)
		}
	}

	// A hostile name is escaped; a MAC listed twice keeps its first lease;
	// max bounds what is read.
	leases, problems = ParseDNSMasqLeases([]byte("0 02:00:00:00:01:01 192.0.2.5 a\x1b[2Jb *\n0 02:00:00:00:01:01 192.0.2.6 * *\n0 02:00:00:00:01:02 192.0.2.7 * *\n0 02:00:00:00:01:03 192.0.2.8 * *\n"), 2)
	if len(leases) != 2 || leases[0].Hostname != `a\x1b[2Jb` || leases[1].IPv4.String() != "192.0.2.7" || len(problems) != 2 {
		t.Errorf("leases %+v, problems %v", leases, problems)
	}
}

// Seed binds what the file holds unless the tracker knows better: a lease
// already followed is kept, an expired one is not taken, MaxDevices holds.
func TestTrackerSeed(t *testing.T) {
	tr := NewTracker(TrackerConfig{MaxDevices: 2})
	now := time.Unix(1796450000, 0)
	leases, _ := ParseDNSMasqLeases([]byte(
		"1796451481 02:00:00:00:01:07 192.0.2.168 thermostat-1 *\n"+
			"1796449999 02:00:00:00:01:08 192.0.2.169 * *\n"+ // expired
			"0 02:00:00:00:01:09 192.0.2.170 * *\n"+
			"0 02:00:00:00:01:0a 192.0.2.171 * *\n"), 0) // beyond MaxDevices
	evs := tr.Seed(leases, "br-lan", "from the file", now)
	if len(evs) != 2 {
		t.Fatalf("events %v", evs)
	}
	if ev := evs[0]; ev.Kind != KindBound || ev.IPv4.String() != "192.0.2.168" || ev.Reason != "from the file" ||
		ev.LeaseTime != 1481*time.Second || !ev.Expires.Equal(time.Unix(1796451481, 0)) || ev.Interface != "br-lan" {
		t.Errorf("seeded = %s (expires %s)", ev, ev.Expires)
	}
	if ev := evs[1]; ev.LeaseTime != Infinite || !ev.Expires.IsZero() {
		t.Errorf("infinite lease seeded as %s", ev)
	}
	if s := tr.Stats(); s.DeviceCap != 1 || s.Devices != 2 {
		t.Errorf("stats %+v", s)
	}
	if evs := tr.Seed(leases, "br-lan", "again", now); len(evs) != 0 {
		t.Errorf("seeding again: %v", evs)
	}
	if evs := tr.Expire(time.Unix(1796451482, 0)); len(evs) != 1 || evs[0].Kind != KindExpired {
		t.Errorf("expiry of the seeded lease: %v", evs)
	}
}

// FuzzParseDNSMasqLeases: any file parses without panic, and every lease
// it gives is one the tracker can take: an Ethernet unicast MAC, an IPv4
// address, a printable host name.
func FuzzParseDNSMasqLeases(f *testing.F) {
	f.Add(realLeaseFile(f))
	f.Add([]byte("0 02:00:00:00:01:01 192.0.2.5 * *\n"))
	f.Add([]byte("1796451481 02:00:00:00:01:01 ::ffff:192.0.2.5 h 01:02\nduid 00:01\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		leases, problems := ParseDNSMasqLeases(data, 8)
		if len(leases) > 8 || len(problems) > maxLeaseProblems {
			t.Fatalf("%d leases, %d problems", len(leases), len(problems))
		}
		for _, l := range leases {
			if len(l.MAC) != 6 || l.MAC[0]&1 != 0 || !l.IPv4.Is4() {
				t.Fatalf("lease %+v", l)
			}
			for _, c := range l.Hostname {
				if c < 0x20 || c == 0x7f {
					t.Fatalf("control character in host name %q", l.Hostname)
				}
			}
		}
		tr := NewTracker(TrackerConfig{MaxDevices: 4})
		tr.Seed(leases, "br-lan", "fuzz", time.Unix(1796450000, 0))
		tr.Expire(time.Unix(1<<40, 0))
	})
}
