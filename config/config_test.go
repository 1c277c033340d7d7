package config

import (
	"net/netip"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// packagedExample is the commented example configuration the packages
// install as /etc/mud/mudd.yaml, and the one the README points to.
var packagedExample = filepath.Join("..", "packaging", "mudd.yaml")

// The packaged example decodes strictly (no unknown key, valid values) and
// sets or mentions every key of Config, so that it cannot fall behind the
// schema: a key added to Config without a line in the example fails here.
func TestPackagedExampleComplete(t *testing.T) {
	cfg, err := Load(packagedExample)
	if err != nil {
		t.Fatalf("the packaged example does not load: %v", err)
	}
	if got := cfg.Interfaces; len(got) != 1 || got[0] != "br-lan" {
		t.Errorf("interfaces = %v", got)
	}
	if cfg.Fetch.Timeout != 10*time.Second || cfg.DNS.MaxTTL != time.Hour || cfg.DNS.HoldMark != DefaultHoldMark {
		t.Errorf("fetch.timeout=%s dns.max_ttl=%s dns.hold_mark=%#x", cfg.Fetch.Timeout, cfg.DNS.MaxTTL, cfg.DNS.HoldMark)
	}
	if cfg.SocketGroup != "mud" || cfg.NFT.Priority != -5 {
		t.Errorf("socket_group=%q nft.priority=%d", cfg.SocketGroup, cfg.NFT.Priority)
	}
	data, err := os.ReadFile(packagedExample)
	if err != nil {
		t.Fatal(err)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		t.Fatal(err)
	}
	keys := configKeys(reflect.TypeOf(Config{}), "")
	if len(keys) < 30 {
		t.Fatalf("only %d keys found in Config: the walk over its yaml tags is broken", len(keys))
	}
	for _, key := range keys {
		if lookup(root.Content[0], strings.Split(key, ".")) == nil && !mentioned(string(data), key) {
			t.Errorf("%s: key %s is neither set nor mentioned in a comment", packagedExample, key)
		}
	}
}

// configKeys lists the dotted YAML keys of t, recursing into structs (but
// not into maps, slices or netip types, whose keys are data).
func configKeys(t reflect.Type, prefix string) []string {
	var keys []string
	for i := range t.NumField() {
		f := t.Field(i)
		name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
		if name == "" || name == "-" {
			continue
		}
		key := name
		if prefix != "" {
			key = prefix + "." + name
		}
		keys = append(keys, key)
		if f.Type.Kind() == reflect.Struct && f.Type.PkgPath() != "net/netip" {
			keys = append(keys, configKeys(f.Type, key)...)
		}
	}
	return keys
}

// lookup returns the value node at path in the mapping n, or nil.
func lookup(n *yaml.Node, path []string) *yaml.Node {
	if n == nil || n.Kind != yaml.MappingNode {
		return nil
	}
	for i := 0; i+1 < len(n.Content); i += 2 {
		if n.Content[i].Value == path[0] {
			if len(path) == 1 {
				return n.Content[i+1]
			}
			return lookup(n.Content[i+1], path[1:])
		}
	}
	return nil
}

// mentioned reports whether a comment line of the file shows the key's last
// element as a key ("#   hold: true").
func mentioned(data, key string) bool {
	last := key[strings.LastIndex(key, ".")+1:]
	return regexp.MustCompile(`(?m)^\s*#\s*` + regexp.QuoteMeta(last) + `:`).MatchString(data)
}

// Maps of prefixes (controllers, my_controllers) decode with their keys,
// URIs with colons included.
func TestControllersDecode(t *testing.T) {
	cfg, err := Parse([]byte("policy:\n  controllers:\n    urn:ietf:params:mud:dns: [192.0.2.1/32, 2001:db8:1::1/128]\n" +
		"  my_controllers:\n    https://lighting.example.com/lightbulb2000: [192.0.2.50/32]\n"))
	if err != nil {
		t.Fatal(err)
	}
	want := netip.MustParsePrefix("192.0.2.1/32")
	if got := cfg.Policy.Controllers["urn:ietf:params:mud:dns"]; len(got) != 2 || got[0] != want {
		t.Errorf("controllers = %v", got)
	}
	if got := cfg.Policy.MyControllers["https://lighting.example.com/lightbulb2000"]; len(got) != 1 || got[0] != netip.MustParsePrefix("192.0.2.50/32") {
		t.Errorf("my_controllers = %v", got)
	}
}

// dns.trusted_sources takes prefixes; a bare address is an error that
// names the key and the /32 or /128 form.
func TestTrustedSourcesDecode(t *testing.T) {
	cfg, err := Parse([]byte("dns:\n  trusted_sources: [198.51.100.53/32, \"2001:db8:53::/48\"]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if got := cfg.DNS.TrustedSources; len(got) != 2 || got[0] != netip.MustParsePrefix("198.51.100.53/32") || got[1] != netip.MustParsePrefix("2001:db8:53::/48") {
		t.Errorf("dns.trusted_sources = %v", got)
	}
	_, err = Parse([]byte("dns:\n  trusted_sources: [198.51.100.53]\n"))
	if err == nil || !strings.Contains(err.Error(), "trusted_sources") || !strings.Contains(err.Error(), "/32") {
		t.Errorf("bare address: err = %v, want one naming trusted_sources and /32", err)
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

// A complete etcd store section parses.
func TestStoreEtcd(t *testing.T) {
	cfg, err := Parse([]byte("store:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://192.0.2.21:2379\", \"https://[2001:db8::21]:2379\"]\n    ca_cert: /etc/mud/etcd-ca.pem\n    cert: /etc/mud/gw1.pem\n    key: /etc/mud/gw1.key\n    gateway_id: gw1\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Store.Backend != BackendEtcd || cfg.Store.Etcd.Prefix != "/mud" || len(cfg.Store.Etcd.Endpoints) != 2 {
		t.Errorf("got %+v", cfg.Store)
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
		{"trusted source not a prefix", "dns:\n  trusted_sources: [resolver.example.net]\n", []string{"resolver.example.net"}},
		{"trusted source without a length", "dns:\n  trusted_sources: [192.0.2.0/24, 198.51.100.53]\n", []string{"line 2", "dns.trusted_sources[1]", "198.51.100.53/32"}},
		{"trusted source with host bits", "dns:\n  trusted_sources: [192.0.2.0/32, 198.51.100.53/24]\n", []string{"dns.trusted_sources[1]", "198.51.100.0/24", "198.51.100.53/32"}},
		{"trusted source IPv4-mapped", "dns:\n  trusted_sources: [\"::ffff:192.0.2.1/128\"]\n", []string{"dns.trusted_sources[0]", "IPv4-mapped"}},
		{"misspelt trusted sources", "dns:\n  trusted_source: [192.0.2.53/32]\n", []string{`"dns.trusted_source"`, "trusted_sources"}},
		{"zero removal grace", "policy:\n  removal_grace: 0s\n", []string{"policy.removal_grace"}},
		{"retry order", "fetch:\n  retry_initial: 10m\n  retry_max: 5m\n", []string{"retry_initial", "retry_max"}},
		{"zero fetch budget", "fetch:\n  budget_per_port: 0\n", []string{"budget_per_port (0)"}},
		{"zero forget_after", "policy:\n  forget_after: 0s\n", []string{"policy.forget_after"}},
		{"bad interface", "interfaces: [\"br lan\"]\n", []string{"interfaces[0]"}},
		{"bad host pin", "fetch:\n  hosts:\n    mud.example.com: nowhere\n", []string{"fetch.hosts.mud.example.com"}},
		{"bad dhcp capture", "dhcp:\n  capture: everywhere\n", []string{"dhcp.capture", `"everywhere"`, "ports"}},
		{"zero dhcp max_devices", "dhcp:\n  max_devices: 0\n", []string{"dhcp.max_devices"}},
		{"relative lease file", "dhcp:\n  lease_file: dhcp.leases\n", []string{"dhcp.lease_file", "absolute"}},
		{"unknown store backend", "store:\n  backend: redis\n", []string{"store.backend", `"redis"`}},
		{"etcd without endpoints", "store:\n  backend: etcd\n  etcd:\n    ca_cert: /c\n    cert: /a\n    key: /k\n    gateway_id: gw1\n", []string{"store.etcd.endpoints"}},
		{"etcd endpoint without TLS", "store:\n  backend: etcd\n  etcd:\n    endpoints: [\"http://192.0.2.21:2379\"]\n    ca_cert: /c\n    cert: /a\n    key: /k\n    gateway_id: gw1\n", []string{"store.etcd.endpoints[0]", "https://host:port"}},
		{"etcd without client certificate", "store:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://192.0.2.21:2379\"]\n    ca_cert: /c\n    gateway_id: gw1\n", []string{"store.etcd.cert", "store.etcd.key"}},
		{"etcd bad gateway id", "store:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://192.0.2.21:2379\"]\n    ca_cert: /c\n    cert: /a\n    key: /k\n    gateway_id: gw/1\n", []string{"store.etcd.gateway_id", `"gw/1"`}},
		{"etcd bad prefix", "store:\n  backend: etcd\n  etcd:\n    endpoints: [\"https://192.0.2.21:2379\"]\n    ca_cert: /c\n    cert: /a\n    key: /k\n    gateway_id: gw1\n    prefix: mud/\n", []string{"store.etcd.prefix"}},
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
	seed, err := os.ReadFile(packagedExample)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(seed)
	f.Add([]byte("fetch:\n  hosts: {a: b}\n"))
	f.Fuzz(func(t *testing.T, data []byte) {
		_, _ = Parse(data) // must not panic
	})
}

// dns.trusted_sources adds to the sources always trusted (the gateway's own
// addresses, loopback, dns.resolver), so its default is empty.
func TestTrustedSourcesDefault(t *testing.T) {
	c, err := Parse([]byte("dns:\n  resolver: 192.0.2.1:53\n"))
	if err != nil {
		t.Fatal(err)
	}
	if c.DNS.TrustedSources != nil {
		t.Errorf("dns.trusted_sources defaults to %v, want nothing beyond the gateway itself", c.DNS.TrustedSources)
	}
	c, err = Parse([]byte("dns:\n  trusted_sources: [0.0.0.0/0, \"::/0\"]\n"))
	if err != nil || len(c.DNS.TrustedSources) != 2 {
		t.Fatalf("trusting every source: %v, %v", err, c.DNS.TrustedSources)
	}
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
