package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func TestLoadExample(t *testing.T) {
	cfg, err := Load(filepath.Join("testdata", "mudd.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.Interfaces; len(got) != 1 || got[0] != "br-lan" {
		t.Errorf("interfaces = %v", got)
	}
	if cfg.Fetch.Timeout != 10*time.Second || cfg.DNS.MaxTTL != time.Hour {
		t.Errorf("durations: fetch.timeout=%s dns.max_ttl=%s", cfg.Fetch.Timeout, cfg.DNS.MaxTTL)
	}
	want := netip.MustParsePrefix("192.0.2.1/32")
	if got := cfg.Policy.Controllers["urn:ietf:params:mud:dns"]; len(got) != 2 || got[0] != want {
		t.Errorf("controllers = %v", got)
	}
	if cfg.SocketGroup != "mud" || cfg.NFT.Priority != -5 {
		t.Errorf("socket_group=%q nft.priority=%d", cfg.SocketGroup, cfg.NFT.Priority)
	}
}

func TestEmptyFileIsDefaults(t *testing.T) {
	cfg, err := Parse(nil)
	if err != nil {
		t.Fatal(err)
	}
	if d := Default(); cfg.StateDir != d.StateDir || cfg.Policy.OnFailure != Baseline || cfg.Socket != d.Socket {
		t.Errorf("got %+v", cfg)
	}
}

// Strict decoding: every mistake names the key (by its full path) and line.
func TestParseErrors(t *testing.T) {
	for _, tc := range []struct {
		name, yaml string
		want       []string
	}{
		{"unknown top-level key", "interface: [br-lan]\n", []string{`unknown key "interface"`, "line 1", "interfaces"}},
		{"misspelt nested key", "fetch:\n  timout: 5s\n", []string{`unknown key "fetch.timout"`, "line 2", "in fetch", "timeout"}},
		{"unknown key deep in a map", "policy:\n  controllers:\n    urn:x: [192.0.2.1/32]\n  on_fail: block\n", []string{`"policy.on_fail"`, "line 4"}},
		{"bad duration", "fetch:\n  timeout: soon\n", []string{"soon"}},
		{"bad prefix", "policy:\n  local_networks: [not-a-prefix]\n", []string{"not-a-prefix"}},
		{"bad on_failure", "policy:\n  on_failure: open\n", []string{"policy.on_failure", `"open"`}},
		{"bad log level", "log:\n  level: loud\n", []string{"log.level"}},
		{"bad resolver", "dns:\n  resolver: localhost\n", []string{"dns.resolver"}},
		{"ttl order", "dns:\n  min_ttl: 2h\n  max_ttl: 1h\n", []string{"min_ttl"}},
		{"hold without snoop", "dns:\n  snoop: false\n", []string{"dns.hold", "dns.snoop"}},
		{"hold without mark", "dns:\n  hold_mark: 0\n", []string{"dns.hold_mark"}},
		{"zero removal grace", "policy:\n  removal_grace: 0s\n", []string{"policy.removal_grace"}},
		{"retry order", "fetch:\n  retry_initial: 10m\n  retry_max: 5m\n", []string{"retry_initial", "retry_max"}},
		{"zero forget_after", "policy:\n  forget_after: 0s\n", []string{"policy.forget_after"}},
		{"bad interface", "interfaces: [\"br lan\"]\n", []string{"interfaces[0]"}},
		{"bad host pin", "fetch:\n  hosts:\n    mud.example.com: nowhere\n", []string{"fetch.hosts.mud.example.com"}},
		{"not yaml", "interfaces: [\n", []string{"yaml"}},
		{"wrong type", "interfaces: br-lan\n", []string{"cannot unmarshal"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Parse([]byte(tc.yaml))
			if err == nil {
				t.Fatal("accepted")
			}
			for _, w := range tc.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q does not mention %q", err, w)
				}
			}
		})
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "mudd.yaml")
	if err := os.WriteFile(path, []byte("bogus: 1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := Load(path)
	if err == nil || !strings.Contains(err.Error(), path) {
		t.Fatalf("error %v does not name %s", err, path)
	}
	if _, err := Load(filepath.Join(t.TempDir(), "missing.yaml")); err == nil {
		t.Fatal("missing file accepted")
	}
}

func FuzzParse(f *testing.F) {
	seed, err := os.ReadFile(filepath.Join("testdata", "mudd.yaml"))
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("fetch:\n  hosts: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse(data) // must not panic
	})
}

func TestHoldHexMark(t *testing.T) {
	c, err := Parse([]byte("dns:\n  hold_mark: 0x20000000\n"))
	if err != nil {
		t.Fatal(err)
	}
	if !c.DNS.Hold || c.DNS.HoldMark != 0x20000000 {
		t.Fatalf("dns = %+v, want hold on with mark 0x20000000", c.DNS)
	}
	if c, err := Parse([]byte("dns:\n  snoop: false\n  hold: false\n")); err != nil || c.DNS.Hold {
		t.Fatalf("hold off: %v, %+v", err, c.DNS)
	}
}
