package resolver

import (
	"flag"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"time"

	"github.com/miekg/dns"
)

var update = flag.Bool("update", false, "rewrite resolver/testdata/frames (built frames; the lab test adds captured ones)")

const framesDir = "testdata/frames"

// seedFrames are built frames covering the parser's paths.
func seedFrames() map[string][]byte {
	aaaa := response("time.vendor.test", dns.TypeAAAA, rrAAAA("time.vendor.test", 7, "2001:db8:100::123"))
	v6 := frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000}
	v4 := frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000}
	tcp4, vlan4 := v4, v4
	tcp4.tcp, vlan4.vlan = true, true
	tcp6 := v6
	tcp6.tcp = true
	return map[string][]byte{
		"built-udp4-cname.bin": udp4(cdnResponse()),
		"built-udp6-aaaa.bin":  buildFrame(v6, aaaa),
		"built-tcp4-cname.bin": buildFrame(tcp4, cdnResponse()),
		"built-tcp6-aaaa.bin":  buildFrame(tcp6, aaaa),
		"built-vlan4.bin":      buildFrame(vlan4, cdnResponse()),
	}
}

// TestSeedFramesCurrent keeps the committed built seeds equal to what
// seedFrames builds today; -update rewrites them.
func TestSeedFramesCurrent(t *testing.T) {
	if *update {
		if err := os.MkdirAll(framesDir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for name, b := range seedFrames() {
		path := filepath.Join(framesDir, name)
		if *update {
			if err := os.WriteFile(path, b, 0o644); err != nil {
				t.Fatal(err)
			}
			continue
		}
		got, err := os.ReadFile(path)
		if err != nil {
			t.Errorf("%v (run the test with -update)", err)
		} else if !slices.Equal(got, b) {
			t.Errorf("%s is not what seedFrames builds; run the test with -update", path)
		}
	}
}

// TestSeedFramesParse keeps the committed seeds meaningful: every one of
// them yields an update for device 1.
func TestSeedFramesParse(t *testing.T) {
	files, _ := filepath.Glob(filepath.Join(framesDir, "*.bin"))
	if len(files) == 0 {
		t.Fatal("no seed frames in testdata/frames")
	}
	r := snooper(t, Config{})
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if len(r.HandleFrame(b, time.Now())) == 0 {
			t.Errorf("%s: no update", f)
		}
	}
}

func FuzzHandleFrame(f *testing.F) {
	files, _ := filepath.Glob(filepath.Join(framesDir, "*.bin"))
	for _, file := range files {
		b, err := os.ReadFile(file)
		if err != nil {
			f.Fatal(err)
		}
		f.Add(b)
	}
	for _, b := range seedFrames() {
		f.Add(b)
	}
	// The hold path: a first fragment (held, not whole) and a frame with
	// an IPv6 extension header (not held).
	f.Add(buildFrame(frameSpec{dst: devMAC, src: gw4, dstIP: dev4, sport: 53, dport: 40000, fragment: true}, cdnResponse()))
	ext := buildFrame(frameSpec{dst: devMAC, src: gw6, dstIP: dev6, sport: 53, dport: 40000}, cdnResponse())
	ext[14+6] = 0
	f.Add(ext)
	// An answer from a source that is not trusted.
	f.Add(buildFrame(frameSpec{dst: devMAC, src: netip.MustParseAddr("203.0.113.13"), dstIP: dev4, sport: 53, dport: 40000}, cdnResponse()))
	r := snooper(f, Config{})
	r.hold.markHeld([6]byte(devMAC))
	// Devices of the lab's captured frames too.
	for i := byte(1); i <= 4; i++ {
		_ = r.SetDeviceNames([]byte{2, 0, 0, 0, 1, i}, []string{"api.vendor.test", "edge7.cdn.test", "time.vendor.test"})
	}
	now := time.Unix(1_700_000_000, 0)
	f.Fuzz(func(t *testing.T, frame []byte) {
		in := slices.Clone(frame)
		ups := r.HandleFrame(frame, now)
		if len(ups) > 0 {
			if src, _, _, ok := dnsPayload(frame); !ok || !r.trust.trusted(src) {
				t.Fatalf("updates from an answer whose source %v is not trusted", src)
			}
		}
		for _, u := range ups {
			if len(u.Addrs) == 0 || u.Source != Snooped || u.Expires.Before(now) || len(u.Device) != 6 {
				t.Fatalf("bad update %+v", u)
			}
			if _, err := Normalize(u.Name); err != nil {
				t.Fatalf("update for an invalid name: %v", err)
			}
			for _, a := range u.Addrs {
				if !usable(a) {
					t.Fatalf("unusable address %v", a)
				}
			}
		}
		if !slices.Equal(in, frame) {
			t.Fatal("HandleFrame modified its input")
		}
		held := r.heldFrame(frame, false, now)
		if held && (len(frame) < 14 || frame[12] != 0x08 && frame[12] != 0x86) {
			t.Fatalf("held a frame that is neither IPv4 nor IPv6")
		}
	})
}
