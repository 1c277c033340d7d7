package lanwatch

import (
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

// A hostapd configuration with two BSSes: the first named by interface=,
// with ap_isolate before the interface line (hostapd reads the first
// section in any order), and a second started by bss=.
const hostapdConf = `# written by the test
ap_isolate=1
driver=nl80211
interface=wlan0
bridge=br-lan
ssid=home

bss=wlan0-1
ssid=iot
#ap_isolate=1
bss=wlan0-2
ssid=guest
ap_isolate=1
`

func TestHostapdIsolation(t *testing.T) {
	for iface, want := range map[string]Tristate{"wlan0": On, "wlan0-1": Off, "wlan0-2": On, "wlan1": Unknown, "": Unknown} {
		if got := parseHostapd(strings.NewReader(hostapdConf), iface); got != want {
			t.Errorf("%q: ap_isolate %s, want %s", iface, got, want)
		}
	}
}

func TestIsolationSources(t *testing.T) {
	dir := t.TempDir()
	debugfs := filepath.Join(dir, "debug")
	// mac80211 says wlan0 isolates (bit 3 of its flags) and wlan1 does not.
	for iface, flags := range map[string]string{"wlan0": "0x8\n", "wlan1": "0x1\n"} {
		d := filepath.Join(debugfs, "ieee80211", "phy0", "netdev:"+iface)
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(d, "flags"), []byte(flags), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	conf := filepath.Join(dir, "hostapd-phy1.conf")
	if err := os.WriteFile(conf, []byte("interface=wlan2\nap_isolate=1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	src := isolationSource{debugFS: debugfs, hostapd: []string{filepath.Join(dir, "hostapd-*.conf")}}
	for iface, want := range map[string]Tristate{"wlan0": On, "wlan1": Off, "wlan2": On, "wlan3": Unknown, "wlan*": Unknown} {
		got, from := src.isolation(iface)
		if got != want {
			t.Errorf("%s: isolation %s, want %s", iface, got, want)
		}
		if (got == Unknown) != (from == "") {
			t.Errorf("%s: isolation %s read from %q", iface, got, from)
		}
	}
	if _, from := src.isolation("wlan2"); from != conf {
		t.Errorf("wlan2 read from %q, want %s", from, conf)
	}
}

func TestLANPrefixes(t *testing.T) {
	a := func(index int, s string) ifAddr { return ifAddr{index: index, prefix: netip.MustParsePrefix(s)} }
	addrs := []ifAddr{
		a(3, "2001:db8:1::1/64"),
		a(3, "fe80::1/64"), // link-local
		a(3, "192.0.2.1/24"),
		a(3, "192.0.2.2/24"), // the same prefix again
		a(3, "fd12:3456:789a::1/64"),
		a(3, "169.254.7.1/16"), // IPv4 link-local
		a(4, "203.0.113.1/24"), // not a LAN interface
		a(5, "2001:db8:5::1/64"),
	}
	got := lanPrefixes(addrs, map[int]bool{3: true, 5: true})
	want := []netip.Prefix{
		netip.MustParsePrefix("192.0.2.0/24"),
		netip.MustParsePrefix("2001:db8:1::/64"),
		netip.MustParsePrefix("2001:db8:5::/64"),
		netip.MustParsePrefix("fd12:3456:789a::/64"),
	}
	if !slices.Equal(got, want) {
		t.Errorf("prefixes %v, want %v", got, want)
	}
	c := PrefixChange{Old: want[:2], New: want[1:]}
	if !slices.Equal(c.Added(), want[2:]) || !slices.Equal(c.Removed(), want[:1]) {
		t.Errorf("added %v removed %v", c.Added(), c.Removed())
	}
}
