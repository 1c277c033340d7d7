// Package config owns mudd's configuration file (/etc/mud/mudd.yaml): its
// schema, defaults, and strict decoding. An unknown or misspelt key is an
// error that names the key by its full path and line, because a typo in a
// firewall's configuration must not silently fall back to a default.
package config

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"net/url"
	"os"
	"reflect"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// DefaultPath is where mudd looks for its configuration.
const DefaultPath = "/etc/mud/mudd.yaml"

// DefaultHoldMark is dns.hold_mark's default, dnshold.DefaultMark: a
// high bit that OpenWrt's fw4, mwan3 and the usual QoS scripts leave alone.
const DefaultHoldMark = 0x10000000

// maxFileSize bounds the configuration file; a real one is a few KiB.
const maxFileSize = 1 << 20

// Config is mudd's configuration. Field tags are the YAML keys.
type Config struct {
	// Interfaces are the LAN interfaces to snoop DHCP/DNS on and whose
	// devices are enforced (e.g. br-lan).
	Interfaces []string `yaml:"interfaces"`
	StateDir   string   `yaml:"state_dir"`
	Socket     string   `yaml:"socket"`
	// SocketGroup may use the control socket besides root (mode 0660).
	SocketGroup string     `yaml:"socket_group"`
	Trust       Trust      `yaml:"trust"`
	Fetch       Fetch      `yaml:"fetch"`
	DNS         DNS        `yaml:"dns"`
	Policy      Policy     `yaml:"policy"`
	Log         Log        `yaml:"log"`
	Metrics     Metrics    `yaml:"metrics"`
	NFT         NFT        `yaml:"nft"`
	DHCP        DHCP       `yaml:"dhcp"`
	Addresses   Addresses  `yaml:"addresses"`
	Violations  Violations `yaml:"violations"`
	Dashboard   Dashboard  `yaml:"dashboard"`
	Store       Store      `yaml:"store"`
}

// Store backends.
const (
	BackendBbolt = "bbolt"
	BackendEtcd  = "etcd"
)

// Store says where decisions live. "bbolt" keeps everything in the local
// file under state_dir. "etcd" keeps that file too (the gateway enforces
// from it, also while etcd is unreachable) and shares the decisions every
// gateway applies — trust pins, approvals and rejections, overrides,
// controller maps, bindings — through an etcd cluster (package fleet).
type Store struct {
	Backend string    `yaml:"backend"`
	Etcd    StoreEtcd `yaml:"etcd"`
}

// StoreEtcd is the etcd cluster of store.backend etcd.
type StoreEtcd struct {
	// Endpoints are the members' client URLs, https://host:port.
	Endpoints []string `yaml:"endpoints"`
	// CACert verifies the members; Cert and Key are this gateway's client
	// certificate (its common name is its etcd user), PEM files.
	CACert string `yaml:"ca_cert"`
	Cert   string `yaml:"cert"`
	Key    string `yaml:"key"`
	// Prefix is the root of mud's keys.
	Prefix string `yaml:"prefix"`
	// GatewayID names this gateway's own keys (device summaries,
	// liveness); unique per gateway.
	GatewayID string `yaml:"gateway_id"`
}

// Violations configures what mudd makes of the drops the enforcer logs to
// nft.log_group (package violations): per-device violation records, events
// and metrics, and optionally an automatic quarantine.
type Violations struct {
	// Enabled reads the log group (it needs nft.log_group).
	Enabled bool `yaml:"enabled"`
	// MaxRecords bounds the violation records kept in memory, and
	// MaxPerDevice those of one device; the least recently seen goes.
	MaxRecords   int `yaml:"max_records"`
	MaxPerDevice int `yaml:"max_per_device"`
	// QuarantineAfter, when not 0, quarantines a device that commits this
	// many distinct violations (another peer, protocol or port) within
	// QuarantineWindow. Off by default: a device with a file that misses
	// one of its own needs would cut itself off.
	QuarantineAfter  int           `yaml:"quarantine_after"`
	QuarantineWindow time.Duration `yaml:"quarantine_window"`
}

// Dashboard configures the web dashboard (package dashboard), off unless
// Listen is set.
type Dashboard struct {
	// Listen is a host:port; only loopback without TLS.
	Listen string `yaml:"listen"`
	// PasswordHash is the bcrypt hash of the admin's password (mudd
	// hash-password prints one).
	PasswordHash string `yaml:"password_hash"`
	// TLSCert and TLSKey are PEM files; both or neither.
	TLSCert string `yaml:"tls_cert"`
	TLSKey  string `yaml:"tls_key"`
	// SessionLifetime is how long a login lasts.
	SessionLifetime time.Duration `yaml:"session_lifetime"`
}

// DHCP configures how mudd follows the devices' DHCP (package dhcpsnoop).
type DHCP struct {
	// Capture is where DHCP is captured: "bridge" (the interfaces
	// themselves: enough when the gateway runs the DHCP server), "ports"
	// (also every port of each interface that is a bridge, which sees the
	// unicast between a DHCP server elsewhere on the LAN and its clients)
	// or "promiscuous" (the interfaces in promiscuous mode: the same, at
	// the price of a copy of all forwarded traffic to the gateway's stack).
	Capture string `yaml:"capture"`
	// MaxDevices bounds the devices with a lease mudd follows; a lease
	// beyond it is not followed (counted in the metrics) and its device
	// is treated as one without MUD.
	MaxDevices int `yaml:"max_devices"`
	// LeaseFile is the DHCP server's lease database, in dnsmasq's format
	// (OpenWrt: /tmp/dhcp.leases), read at start: the devices that got a
	// lease while mudd was down are known at once, their MUD URL from
	// their next DHCP request. Empty: none.
	LeaseFile string `yaml:"lease_file"`
}

// Addresses configures how mudd learns the addresses each device holds
// besides its DHCP leases (package neighbor): SLAAC, privacy and static
// IPv6 addresses, from neighbour discovery and the kernel's neighbour
// table (ARP is followed too, but a device's IPv4 addresses are its
// leases' and an administrator's static ones only). Only addresses inside the LAN interfaces' prefixes are
// learned; one another device holds is refused (an address-conflict
// event).
type Addresses struct {
	// MaxIPv4PerDevice and MaxIPv6PerDevice bound the addresses one device
	// may hold; when a device uses one more, the least recently seen goes.
	MaxIPv4PerDevice int `yaml:"max_ipv4_per_device"`
	MaxIPv6PerDevice int `yaml:"max_ipv6_per_device"`
	// TTL is how long an address not seen again stays bound to its
	// device.
	TTL time.Duration `yaml:"ttl"`
	// Promiscuous captures on the LAN interfaces in promiscuous mode, to
	// see the neighbour advertisements devices send each other, not only
	// those to the gateway and to multicast groups.
	Promiscuous bool `yaml:"promiscuous"`
}

// Trust configures MUD file signature verification.
type Trust struct {
	// Anchors are PEM files (or globs) of CAs trusted to sign MUD files.
	Anchors []string `yaml:"anchors"`
	// SystemRoots also trusts the system's TLS roots as MUD signers.
	SystemRoots bool `yaml:"system_roots"`
	// ServerCAs are extra PEM files trusted for MUD servers' TLS
	// certificates, besides the system roots.
	ServerCAs []string `yaml:"server_cas"`
}

// Fetch configures MUD file retrieval.
type Fetch struct {
	Timeout  time.Duration `yaml:"timeout"`
	MaxBytes int64         `yaml:"max_bytes"`
	// AllowPrivate permits MUD servers on private and ULA addresses.
	AllowPrivate bool `yaml:"allow_private"`
	// AllowPrefixes permits these destinations even when otherwise
	// forbidden (a lab, a MUD server on the gateway's own network).
	AllowPrefixes []netip.Prefix `yaml:"allow_prefixes"`
	// Hosts pins MUD server names to addresses, bypassing DNS.
	Hosts map[string]string `yaml:"hosts"`
	// RetryInitial is how long after a failed fetch the next attempt
	// starts; each further failure doubles it, up to RetryMax (with up to a
	// quarter taken off at random, so that devices that failed together do
	// not retry together).
	RetryInitial time.Duration `yaml:"retry_initial"`
	RetryMax     time.Duration `yaml:"retry_max"`
	// Budget, BudgetPerPort and BudgetPerDevice bound the fetches started
	// in any BudgetWindow: overall, per bridge port and per device; a fetch
	// beyond them waits for the window to move on.
	Budget          int           `yaml:"budget"`
	BudgetPerPort   int           `yaml:"budget_per_port"`
	BudgetPerDevice int           `yaml:"budget_per_device"`
	BudgetWindow    time.Duration `yaml:"budget_window"`
}

// DNS configures resolution of the names in MUD files.
type DNS struct {
	// Resolver is the DNS server to ask, host:port; by default the
	// gateway's own resolver, the one its devices are given.
	Resolver string        `yaml:"resolver"`
	MinTTL   time.Duration `yaml:"min_ttl"`
	MaxTTL   time.Duration `yaml:"max_ttl"`
	// Snoop reads DNS answers sent to MUD devices so that addresses are
	// allowed before the device's first packet to them.
	Snoop bool `yaml:"snoop"`
	// Hold (with Snoop, on a LAN bridge) holds those answers back until
	// their addresses are in the device's sets, so that not even the
	// device's first packet to a new address is dropped. It stops by itself
	// when mudd stops or dies (the kernel removes the holding table).
	Hold bool `yaml:"hold"`
	// HoldMark is the packet mark bit mudd sets on the answers it releases;
	// no other firewall rule of the gateway may depend on it.
	HoldMark uint32 `yaml:"hold_mark"`
	// TrustedSources are the sources (prefixes; /32 or /128 for one
	// address) whose snooped answers may add addresses, besides the ones
	// always trusted: the gateway's own addresses on the interfaces (read
	// at start and followed as they change), loopback, and Resolver's
	// address. An answer from any other source (a DNS server a device
	// reaches through the gateway because its MUD file or an override
	// permits port 53 there) adds nothing: mudd logs it and the device
	// still gets it. List a resolver the devices are given that is not
	// the gateway, and reached through it; a gateway that redirects the
	// devices' DNS to its own resolver (DNAT) answers from the addresses
	// the devices asked, which must be listed too. 0.0.0.0/0 and ::/0
	// trust every answer the gateway sends to a device.
	TrustedSources []netip.Prefix `yaml:"trusted_sources"`
}

// OnFailure is the treatment of a device whose MUD file cannot be used.
type OnFailure string

const (
	// Baseline treats the device as if it had no MUD URL.
	Baseline OnFailure = "baseline"
	// Block lets the device do nothing but DHCP and DNS.
	Block OnFailure = "block"
)

// Policy configures how MUD files become rules.
type Policy struct {
	OnFailure OnFailure `yaml:"on_failure"`
	// LocalNetworks overrides the local-networks abstraction; by default
	// the LAN interfaces' prefixes.
	LocalNetworks []netip.Prefix `yaml:"local_networks"`
	// Controllers maps controller class URIs to addresses.
	Controllers map[string][]netip.Prefix `yaml:"controllers"`
	// MyControllers maps MUD URLs to their my-controller addresses.
	MyControllers map[string][]netip.Prefix `yaml:"my_controllers"`
	// RemovalGrace is how long a device's rules stay after its lease was
	// released or expired, so a device that rejoins at once (a reboot)
	// keeps its policy without a gap. Read at start.
	RemovalGrace time.Duration `yaml:"removal_grace"`
	// ForgetAfter is how long the record of a device that never got past
	// DHCP — never enforced, no address now — stays after it was last
	// seen. A flood of made-up MACs leaves nothing behind for longer.
	ForgetAfter time.Duration `yaml:"forget_after"`
	// PruneAfter is how long the record of any device without an address
	// stays after it was last seen, unless an administrator set something
	// for it (quarantine, binding, approval, override). Devices that
	// randomise their MAC leave a record per address; this bounds them.
	PruneAfter time.Duration `yaml:"prune_after"`
}

// Log configures logging.
type Log struct {
	Level  string `yaml:"level"`  // debug, info, warn, error
	Format string `yaml:"format"` // text, json
}

// Metrics configures the Prometheus listener.
type Metrics struct {
	// Listen is a host:port, localhost by default; empty disables.
	Listen string `yaml:"listen"`
}

// NFT configures the nftables tables mudd owns.
type NFT struct {
	// Priority of mudd's base chains; before the usual filter (0).
	Priority int    `yaml:"priority"`
	LogGroup uint16 `yaml:"log_group"`
	// DirectDispatch dispatches devices by verdict maps keyed by MAC and
	// address instead of through meta secmark: for gateways whose security
	// module (SELinux, AppArmor) labels forwarded packets. Adding a device
	// then costs milliseconds at thousands of devices instead of ~0.2 ms.
	DirectDispatch bool `yaml:"direct_dispatch"`
	// RuleCounters gives every ACE of an allow-only policy a packet
	// counter (mudctl, metrics). Such ACEs are set elements; a counter
	// costs ~70 bytes of kernel memory per element. Without it those
	// policies count their default deny only.
	RuleCounters bool `yaml:"rule_counters"`
	// DeviceCounters counts every MUD device's packets and bytes, sent and
	// received, and what of them was dropped (mudctl devices, device show,
	// the dashboard), in sets the packet path fills: no rule or element
	// per device, ~140 bytes of kernel memory per device counted per set
	// it is counted in. Every packet from or to a MUD device then passes
	// two lookups before the established fast path.
	DeviceCounters bool `yaml:"device_counters"`
	// BridgeAllAddresses installs every address of every DNS name in the
	// bridge table too. By default the bridge table (device ↔ device
	// traffic) holds only those inside the LAN interfaces' prefixes: no
	// other address crosses the bridge, and skipping them keeps kernel
	// memory within bounds at thousands of policies. Set it when LAN hosts
	// use addresses outside those prefixes (another router on the LAN).
	BridgeAllAddresses bool `yaml:"bridge_all_addresses"`
}

// Default returns the configuration used for keys a file leaves out.
func Default() Config {
	return Config{
		StateDir: "/var/lib/mud",
		Socket:   "/run/mud/mudd.sock",
		Trust:    Trust{SystemRoots: false},
		Fetch: Fetch{Timeout: 10 * time.Second, MaxBytes: 1 << 20, RetryInitial: 5 * time.Second, RetryMax: 5 * time.Minute,
			Budget: 600, BudgetPerPort: 150, BudgetPerDevice: 10, BudgetWindow: 10 * time.Minute},
		DNS: DNS{Resolver: "127.0.0.1:53", MinTTL: 30 * time.Second, MaxTTL: time.Hour, Snoop: true,
			Hold: true, HoldMark: DefaultHoldMark},
		Policy:    Policy{OnFailure: Baseline, RemovalGrace: 30 * time.Second, ForgetAfter: time.Hour, PruneAfter: 30 * 24 * time.Hour},
		Log:       Log{Level: "info", Format: "text"},
		Metrics:   Metrics{Listen: "127.0.0.1:9641"},
		NFT:       NFT{Priority: -5, LogGroup: 100},
		DHCP:      DHCP{Capture: "bridge", MaxDevices: 16384},
		Addresses: Addresses{MaxIPv4PerDevice: 4, MaxIPv6PerDevice: 32, TTL: time.Hour},
		Violations: Violations{Enabled: true, MaxRecords: 4096, MaxPerDevice: 64,
			QuarantineWindow: 10 * time.Minute},
		Dashboard: Dashboard{SessionLifetime: 8 * time.Hour},
		Store:     Store{Backend: BackendBbolt, Etcd: StoreEtcd{Prefix: "/mud"}},
	}
}

// Load reads and validates a configuration file.
func Load(path string) (Config, error) {
	f, err := os.Open(path)
	if err != nil {
		return Config{}, fmt.Errorf("reading config: %w", err)
	}
	defer f.Close()
	data, err := io.ReadAll(io.LimitReader(f, maxFileSize+1))
	if err != nil {
		return Config{}, fmt.Errorf("reading config %s: %w", path, err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return Config{}, fmt.Errorf("config %s: %w", path, err)
	}
	return cfg, nil
}

// Parse decodes a configuration over the defaults and validates it.
func Parse(data []byte) (Config, error) {
	cfg := Default()
	if len(data) > maxFileSize {
		return cfg, fmt.Errorf("larger than %d bytes", maxFileSize)
	}
	var root yaml.Node
	if err := yaml.Unmarshal(data, &root); err != nil {
		return cfg, err
	}
	if len(root.Content) == 0 {
		return cfg, cfg.Validate() // an empty file means all defaults
	}
	if err := checkKeys(root.Content[0], reflect.TypeOf(cfg), ""); err != nil {
		return cfg, err
	}
	dec := yaml.NewDecoder(bytes.NewReader(data))
	dec.KnownFields(true) // backstop for anything checkKeys does not walk
	if err := dec.Decode(&cfg); err != nil {
		return cfg, err
	}
	return cfg, cfg.Validate()
}

// checkKeys walks the YAML tree alongside the Go type and reports the first
// key the type does not have, by its dotted path.
func checkKeys(n *yaml.Node, t reflect.Type, path string) error {
	for t.Kind() == reflect.Pointer {
		t = t.Elem()
	}
	switch {
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Struct && t != reflect.TypeOf(netip.Prefix{}):
		known := map[string]reflect.Type{}
		var names []string
		for i := range t.NumField() {
			f := t.Field(i)
			name, _, _ := strings.Cut(f.Tag.Get("yaml"), ",")
			if name == "" || name == "-" {
				continue
			}
			known[name] = f.Type
			names = append(names, name)
		}
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			ft, ok := known[k.Value]
			if !ok {
				where := "at the top level"
				if path != "" {
					where = "in " + path
				}
				slices.Sort(names)
				return fmt.Errorf("line %d: unknown key %q %s (known: %s)", k.Line, join(path, k.Value), where, strings.Join(names, ", "))
			}
			if err := checkKeys(v, ft, join(path, k.Value)); err != nil {
				return err
			}
		}
	case n.Kind == yaml.MappingNode && t.Kind() == reflect.Map:
		for i := 0; i+1 < len(n.Content); i += 2 {
			if err := checkKeys(n.Content[i+1], t.Elem(), join(path, n.Content[i].Value)); err != nil {
				return err
			}
		}
	case n.Kind == yaml.SequenceNode && t.Kind() == reflect.Slice:
		for i, c := range n.Content {
			if err := checkKeys(c, t.Elem(), fmt.Sprintf("%s[%d]", path, i)); err != nil {
				return err
			}
		}
	case n.Kind == yaml.ScalarNode && t == reflect.TypeOf(netip.Prefix{}):
		// A bare address is a common slip; say how to write it.
		if a, err := netip.ParseAddr(n.Value); err == nil {
			return fmt.Errorf("line %d: %s: %q is an address, not a prefix: write %s for that one address", n.Line, path, n.Value, netip.PrefixFrom(a, a.BitLen()))
		}
	}
	return nil
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

// Validate checks values that decode but make no sense.
func (c *Config) Validate() error {
	var errs []error
	bad := func(key, format string, args ...any) {
		errs = append(errs, fmt.Errorf("%s: %s", key, fmt.Sprintf(format, args...)))
	}
	for i, ifname := range c.Interfaces {
		if ifname == "" || len(ifname) > 15 || strings.ContainsAny(ifname, "/ \t\n") {
			bad(fmt.Sprintf("interfaces[%d]", i), "%q is not an interface name", ifname)
		}
	}
	if c.StateDir == "" {
		bad("state_dir", "must not be empty")
	}
	if c.Socket == "" {
		bad("socket", "must not be empty")
	}
	if c.Fetch.Timeout <= 0 {
		bad("fetch.timeout", "must be positive, got %s", c.Fetch.Timeout)
	}
	if c.Fetch.MaxBytes < 1024 {
		bad("fetch.max_bytes", "must be at least 1024, got %d", c.Fetch.MaxBytes)
	}
	if c.Fetch.RetryInitial <= 0 || c.Fetch.RetryMax < c.Fetch.RetryInitial || c.Fetch.RetryMax > 24*time.Hour {
		bad("fetch", "need 0s < retry_initial (%s) <= retry_max (%s) <= 24h", c.Fetch.RetryInitial, c.Fetch.RetryMax)
	}
	if c.Fetch.Budget < 1 || c.Fetch.BudgetPerPort < 1 || c.Fetch.BudgetPerDevice < 1 || c.Fetch.BudgetWindow <= 0 {
		bad("fetch", "need budget (%d), budget_per_port (%d), budget_per_device (%d) >= 1 and budget_window (%s) > 0",
			c.Fetch.Budget, c.Fetch.BudgetPerPort, c.Fetch.BudgetPerDevice, c.Fetch.BudgetWindow)
	}
	for host, addr := range c.Fetch.Hosts {
		if _, err := netip.ParseAddr(addr); err != nil {
			bad("fetch.hosts."+host, "%q is not an IP address", addr)
		}
	}
	if c.DNS.MinTTL < 0 || c.DNS.MaxTTL <= 0 || c.DNS.MinTTL > c.DNS.MaxTTL {
		bad("dns", "need 0 <= min_ttl (%s) <= max_ttl (%s), max_ttl > 0", c.DNS.MinTTL, c.DNS.MaxTTL)
	}
	if c.DNS.Hold && !c.DNS.Snoop {
		bad("dns.hold", "needs dns.snoop: only snooped answers can be held")
	}
	if c.DNS.Hold && c.DNS.HoldMark == 0 {
		bad("dns.hold_mark", "must have at least one bit set while dns.hold is on")
	}
	for i, p := range c.DNS.TrustedSources {
		key := fmt.Sprintf("dns.trusted_sources[%d]", i)
		switch {
		case !p.IsValid():
			bad(key, "not a prefix")
		case p.Addr().Is4In6():
			bad(key, "%s is an IPv4-mapped IPv6 prefix; write the IPv4 prefix", p)
		case p.Masked() != p:
			bad(key, "%s has address bits beyond /%d: write %s, or %s for the one address", p, p.Bits(), p.Masked(), netip.PrefixFrom(p.Addr(), p.Addr().BitLen()))
		}
	}
	if c.DNS.Resolver != "" {
		if _, err := netip.ParseAddrPort(c.DNS.Resolver); err != nil {
			bad("dns.resolver", "%q is not an address:port", c.DNS.Resolver)
		}
	}
	if c.Policy.RemovalGrace <= 0 || c.Policy.RemovalGrace > 24*time.Hour {
		bad("policy.removal_grace", "must be in (0s, 24h], got %s", c.Policy.RemovalGrace)
	}
	if c.Policy.PruneAfter < c.Policy.ForgetAfter {
		bad("policy.prune_after", "must be at least policy.forget_after (%s), got %s", c.Policy.ForgetAfter, c.Policy.PruneAfter)
	}
	if c.Policy.ForgetAfter <= 0 {
		bad("policy.forget_after", "must be positive, got %s", c.Policy.ForgetAfter)
	}
	switch c.Policy.OnFailure {
	case Baseline, Block:
	default:
		bad("policy.on_failure", "%q is neither %q nor %q", c.Policy.OnFailure, Baseline, Block)
	}
	switch c.Log.Level {
	case "debug", "info", "warn", "error":
	default:
		bad("log.level", "%q is not one of debug, info, warn, error", c.Log.Level)
	}
	switch c.Log.Format {
	case "text", "json":
	default:
		bad("log.format", "%q is neither text nor json", c.Log.Format)
	}
	switch c.DHCP.Capture {
	case "bridge", "ports", "promiscuous":
	default:
		bad("dhcp.capture", "%q is not one of bridge, ports, promiscuous", c.DHCP.Capture)
	}
	if c.DHCP.MaxDevices < 1 || c.DHCP.MaxDevices > 1<<20 {
		bad("dhcp.max_devices", "must be in 1..1048576, got %d", c.DHCP.MaxDevices)
	}
	if c.DHCP.LeaseFile != "" && !strings.HasPrefix(c.DHCP.LeaseFile, "/") {
		bad("dhcp.lease_file", "%q is not an absolute path", c.DHCP.LeaseFile)
	}
	if c.Addresses.MaxIPv4PerDevice < 1 || c.Addresses.MaxIPv4PerDevice > 1024 {
		bad("addresses.max_ipv4_per_device", "must be in 1..1024, got %d", c.Addresses.MaxIPv4PerDevice)
	}
	if c.Addresses.MaxIPv6PerDevice < 1 || c.Addresses.MaxIPv6PerDevice > 1024 {
		bad("addresses.max_ipv6_per_device", "must be in 1..1024, got %d", c.Addresses.MaxIPv6PerDevice)
	}
	if c.Addresses.TTL < time.Minute || c.Addresses.TTL > 7*24*time.Hour {
		bad("addresses.ttl", "must be in [1m, 168h], got %s", c.Addresses.TTL)
	}
	v := c.Violations
	if v.Enabled && c.NFT.LogGroup == 0 {
		bad("violations.enabled", "needs nft.log_group (the drops are read from it)")
	}
	if v.MaxRecords < 1 || v.MaxRecords > 1<<20 {
		bad("violations.max_records", "must be in 1..1048576, got %d", v.MaxRecords)
	}
	if v.MaxPerDevice < 1 || v.MaxPerDevice > v.MaxRecords {
		bad("violations.max_per_device", "must be in 1..max_records, got %d", v.MaxPerDevice)
	}
	if v.QuarantineAfter < 0 || v.QuarantineAfter > v.MaxPerDevice {
		bad("violations.quarantine_after", "must be in 0..max_per_device (0: never), got %d", v.QuarantineAfter)
	}
	if v.QuarantineWindow < time.Second || v.QuarantineWindow > 24*time.Hour {
		bad("violations.quarantine_window", "must be in [1s, 24h], got %s", v.QuarantineWindow)
	}
	if d := c.Dashboard; d.Listen != "" {
		if d.PasswordHash == "" {
			bad("dashboard.password_hash", "is needed with dashboard.listen (mudd hash-password prints one)")
		}
		if (d.TLSCert == "") != (d.TLSKey == "") {
			bad("dashboard.tls_cert", "tls_cert and tls_key go together")
		}
		if d.SessionLifetime < time.Minute || d.SessionLifetime > 30*24*time.Hour {
			bad("dashboard.session_lifetime", "must be in [1m, 720h], got %s", d.SessionLifetime)
		}
	}
	switch c.Store.Backend {
	case BackendBbolt:
	case BackendEtcd:
		validateEtcd(c.Store.Etcd, bad)
	default:
		bad("store.backend", "%q is neither %q nor %q", c.Store.Backend, BackendBbolt, BackendEtcd)
	}
	if c.NFT.Priority < -300 || c.NFT.Priority > 300 {
		bad("nft.priority", "%d is outside -300..300", c.NFT.Priority)
	}
	return errors.Join(errs...)
}

// validateEtcd checks store.etcd for backend etcd.
func validateEtcd(e StoreEtcd, bad func(key, format string, args ...any)) {
	if len(e.Endpoints) == 0 {
		bad("store.etcd.endpoints", "needs at least one member with store.backend etcd")
	}
	for i, ep := range e.Endpoints {
		u, err := url.Parse(ep)
		if err != nil || u.Scheme != "https" || u.Port() == "" || u.Hostname() == "" || (u.Path != "" && u.Path != "/") {
			bad(fmt.Sprintf("store.etcd.endpoints[%d]", i), "%q is not https://host:port", ep)
		}
	}
	for _, f := range []struct{ key, val string }{{"ca_cert", e.CACert}, {"cert", e.Cert}, {"key", e.Key}} {
		if f.val == "" {
			bad("store.etcd."+f.key, "is needed with store.backend etcd (members require client certificates)")
		}
	}
	if e.Prefix == "" || e.Prefix[0] != '/' || strings.HasSuffix(e.Prefix, "/") || strings.Contains(e.Prefix, "//") {
		bad("store.etcd.prefix", "%q must start with / and not end with /", e.Prefix)
	}
	okID := len(e.GatewayID) > 0 && len(e.GatewayID) <= 64 && e.GatewayID != "." && e.GatewayID != ".."
	for _, r := range e.GatewayID {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_' || r == '.') {
			okID = false
		}
	}
	if !okID {
		bad("store.etcd.gateway_id", "%q must be 1-64 characters of a-z, A-Z, 0-9, '-', '_' and '.'", e.GatewayID)
	}
}
