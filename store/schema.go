package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"time"

	bolt "go.etcd.io/bbolt"
)

// SchemaVersion is the layout this code reads and writes. Bump it only
// together with a migration from the previous version.
const SchemaVersion = 4

// Bucket names (the current layout). They are constants, not []byte
// variables, so no package state can be changed by accident.
const (
	bucketMeta          = "meta"
	bucketDevices       = "devices"
	bucketBindings      = "bindings"
	bucketMUDFiles      = "mudfiles"
	bucketPinsURL       = "pins_url"
	bucketPinsMAC       = "pins_mac"
	bucketApprovalsMAC  = "approvals_mac"
	bucketApprovalsURL  = "approvals_url"
	bucketOverrides     = "overrides"
	bucketControllers   = "controllers"
	bucketMyControllers = "my_controllers"
	bucketEvents        = "events"
	// bucketDNS holds DNSName records. It needs no migration: Open
	// creates it in a file of an older mudd, which ignores it.
	bucketDNS = "dns"
	// bucketLearned holds LearnedAddrs records, bucketRejections
	// Rejection records; like bucketDNS, they need no migration.
	bucketLearned    = "learned"
	bucketRejections = "rejections_mac"

	// keySchema in the meta bucket holds the version as decimal text, so
	// `bbolt get FILE meta schema` is readable by a human.
	keySchema = "schema"
)

func currentBuckets() []string {
	return []string{
		bucketMeta, bucketDevices, bucketBindings, bucketMUDFiles,
		bucketPinsURL, bucketPinsMAC, bucketApprovalsMAC, bucketApprovalsURL,
		bucketOverrides, bucketControllers, bucketMyControllers, bucketEvents,
		bucketDNS, bucketLearned, bucketRejections,
	}
}

// migration rewrites a database from schema version from to version to.
// It runs inside the Open transaction, so a failing migration leaves the
// file untouched.
type migration struct {
	from, to int
	fn       func(*bolt.Tx) error
}

// migrations are applied in order; each must start where the previous
// ended, and the last must end at SchemaVersion.
func migrations() []migration {
	return []migration{
		{from: 1, to: 2, fn: migrateV1ToV2},
		{from: 2, to: 3, fn: migrateV2ToV3},
		{from: 3, to: 4, fn: migrateV3ToV4},
	}
}

// prepare brings a freshly opened file to SchemaVersion: initialises an
// empty file, or backs up and migrates an older one, or refuses a newer one.
func (s *Store) prepare(path string) error {
	var version int
	var fresh bool
	err := s.db.View(func(btx *bolt.Tx) (err error) {
		version, fresh, err = readVersion(btx)
		return err
	})
	if err != nil {
		return err
	}
	if version > SchemaVersion {
		return fmt.Errorf("%w: file has schema version %d, this build understands up to %d; run a newer mudd or restore a backup",
			ErrSchemaTooNew, version, SchemaVersion)
	}
	if !fresh && version < SchemaVersion {
		backup := fmt.Sprintf("%s.schema-v%d.bak", path, version)
		if err := s.db.View(func(btx *bolt.Tx) error { return btx.CopyFile(backup, 0o600) }); err != nil {
			return fmt.Errorf("back up before migrating from schema %d: %w", version, err)
		}
	}
	return s.db.Update(func(btx *bolt.Tx) error {
		if !fresh {
			if err := migrate(btx, version, SchemaVersion, migrations()); err != nil {
				return err
			}
		}
		for _, name := range currentBuckets() {
			if _, err := btx.CreateBucketIfNotExists([]byte(name)); err != nil {
				return fmt.Errorf("create bucket %s: %w", name, err)
			}
		}
		return writeVersion(btx, SchemaVersion)
	})
}

// readVersion returns the file's schema version; fresh means the file has
// no buckets at all (just created).
func readVersion(btx *bolt.Tx) (version int, fresh bool, err error) {
	meta := btx.Bucket([]byte(bucketMeta))
	if meta == nil {
		empty := true
		_ = btx.ForEach(func([]byte, *bolt.Bucket) error { empty = false; return nil })
		if !empty {
			return 0, false, errors.New("not a mud database: it has no meta bucket")
		}
		return 0, true, nil
	}
	raw := meta.Get([]byte(keySchema))
	v, err := strconv.Atoi(string(raw))
	if err != nil || v < 1 {
		return 0, false, fmt.Errorf("schema version %q in meta bucket is unreadable", raw)
	}
	return v, false, nil
}

func writeVersion(btx *bolt.Tx, v int) error {
	meta, err := btx.CreateBucketIfNotExists([]byte(bucketMeta))
	if err == nil {
		err = meta.Put([]byte(keySchema), []byte(strconv.Itoa(v)))
	}
	if err != nil {
		return fmt.Errorf("write schema version %d: %w", v, err)
	}
	return nil
}

// migrate applies the chain of migrations from version from to version to.
func migrate(btx *bolt.Tx, from, to int, ms []migration) error {
	for v := from; v < to; {
		i := 0
		for i < len(ms) && ms[i].from != v {
			i++
		}
		if i == len(ms) {
			return fmt.Errorf("no migration from schema version %d", v)
		}
		if err := ms[i].fn(btx); err != nil {
			return fmt.Errorf("migrate schema %d to %d: %w", ms[i].from, ms[i].to, err)
		}
		v = ms[i].to
	}
	return nil
}

// Schema v1, the initial layout, differed from v2 in:
//   - devices were keyed by the MAC as first received (any case, any
//     separator) and had one IPv4 address in "ip" and no URL source;
//   - quarantine was a separate bucket, MAC → reason;
//   - there were no pins, approvals, overrides or controller buckets.
//
// Bindings, MUD files and events were already as in v2.
const bucketV1Quarantine = "quarantine"

type v1Device struct {
	MAC      string    `json:"mac"`
	IP       string    `json:"ip"`
	Hostname string    `json:"hostname"`
	MUDURL   string    `json:"mud_url"`
	State    State     `json:"state"`
	Reason   string    `json:"reason"`
	Updated  time.Time `json:"updated"`
}

// migrateV1ToV2 re-keys devices by normalised MAC (keeping the most
// recently updated record when two spellings meet), turns "ip" into
// "ips", fills in the URL source, and folds the quarantine bucket into
// Device.Quarantine. A MAC that cannot be normalised fails the migration
// rather than silently dropping a device.
func migrateV1ToV2(btx *bolt.Tx) error {
	old := btx.Bucket([]byte(bucketDevices))
	if old == nil {
		return errors.New("v1 devices bucket missing")
	}
	bindings := btx.Bucket([]byte(bucketBindings))
	devs := map[string]Device{}
	err := old.ForEach(func(k, raw []byte) error {
		var o v1Device
		if err := json.Unmarshal(raw, &o); err != nil {
			return fmt.Errorf("device %q: %w", k, err)
		}
		mac, err := NormalizeMAC(string(k))
		if err != nil {
			return fmt.Errorf("device key: %w", err)
		}
		d := Device{MAC: mac, Hostname: o.Hostname, MUDURL: o.MUDURL, State: o.State, Reason: o.Reason, UpdatedAt: o.Updated}
		if o.IP != "" {
			ip, err := netip.ParseAddr(o.IP)
			if err != nil {
				return fmt.Errorf("device %s: %w", mac, err)
			}
			d.IPs = []netip.Addr{ip}
		}
		if d.MUDURL != "" {
			// v1 read only DHCPv4 option 161, or the admin's binding.
			d.URLSource = SourceDHCPv4
			if bindings != nil && bindings.Get([]byte(mac)) != nil {
				d.URLSource = SourceAdminBind
			}
		}
		if prev, dup := devs[mac]; !dup || d.UpdatedAt.After(prev.UpdatedAt) {
			devs[mac] = d
		}
		return nil
	})
	if err != nil {
		return err
	}
	if q := btx.Bucket([]byte(bucketV1Quarantine)); q != nil {
		err := q.ForEach(func(k, reason []byte) error {
			mac, err := NormalizeMAC(string(k))
			if err != nil {
				return fmt.Errorf("quarantine key: %w", err)
			}
			d, ok := devs[mac]
			if !ok {
				// Keep the admin's decision even for a device we no
				// longer have: it applies when the device returns.
				d = Device{MAC: mac, State: StateRemoved}
			}
			d.Quarantine = &Hold{Reason: string(reason)}
			devs[mac] = d
			return nil
		})
		if err != nil {
			return err
		}
		if err := btx.DeleteBucket([]byte(bucketV1Quarantine)); err != nil {
			return fmt.Errorf("drop quarantine bucket: %w", err)
		}
	}
	if err := btx.DeleteBucket([]byte(bucketDevices)); err != nil {
		return fmt.Errorf("drop v1 devices: %w", err)
	}
	nb, err := btx.CreateBucket([]byte(bucketDevices))
	if err != nil {
		return fmt.Errorf("create v2 devices: %w", err)
	}
	for mac, d := range devs {
		if !d.State.Valid() {
			return fmt.Errorf("device %s: unknown state %q", mac, d.State)
		}
		raw, err := json.Marshal(&d)
		if err == nil {
			err = nb.Put([]byte(mac), raw)
		}
		if err != nil {
			return fmt.Errorf("device %s: %w", mac, err)
		}
	}
	return nil
}

// Schema v2 differed from v3 only in the overrides bucket: each entry was
// {"direction": N, "rule": <policy.Rule of that version>, "comment", "by",
// "created_at"}, with the policy package's enums as numbers. The numbers
// are pinned here, as that version wrote them.
const (
	v2FromDevice = 1 // policy.Direction
	v2ToDevice   = 2
	v2Accept     = 1 // policy.Verdict
	v2Drop       = 2
	v2AnyFamily  = 0 // policy.Family
	v2IPv4       = 1
	v2IPv6       = 2
	v2AnyPeer    = 0 // policy.PeerKind
	v2DNSName    = 1
	v2Prefix     = 7
)

type v2PortRange struct {
	First  uint16 `json:"first"`
	Last   uint16 `json:"last"`
	Negate bool   `json:"negate"`
}

type v2OverrideRule struct {
	Direction int `json:"direction"`
	Rule      struct {
		Family int `json:"family"`
		Peer   struct {
			Kind   int          `json:"kind"`
			Value  string       `json:"value"`
			Prefix netip.Prefix `json:"prefix"`
		} `json:"peer"`
		Protocol  uint8           `json:"protocol"`
		SrcPort   *v2PortRange    `json:"src_port"`
		DstPort   *v2PortRange    `json:"dst_port"`
		ICMP      json.RawMessage `json:"icmp"`
		Initiated int             `json:"initiated"`
		Verdict   int             `json:"verdict"`
		Default   bool            `json:"default"`
	} `json:"rule"`
	Comment   string    `json:"comment"`
	By        string    `json:"by"`
	CreatedAt time.Time `json:"created_at"`
}

// migrateV2ToV3 rewrites every override into the store's own record. An
// entry that record cannot express (source ports, ICMP types, a peer
// other than an address, a prefix or a DNS name, ...) fails the
// migration: mudctl override never wrote one, and dropping or widening an
// administrator's entry silently would change what the device may do.
func migrateV2ToV3(btx *bolt.Tx) error {
	b := btx.Bucket([]byte(bucketOverrides))
	if b == nil {
		return nil // created empty by prepare
	}
	out := map[string][]byte{}
	err := b.ForEach(func(k, raw []byte) error {
		var old struct {
			MAC   string           `json:"mac"`
			Rules []v2OverrideRule `json:"rules"`
		}
		if err := json.Unmarshal(raw, &old); err != nil {
			return fmt.Errorf("overrides %s: %w", k, err)
		}
		o := Overrides{MAC: old.MAC, Rules: make([]OverrideRule, 0, len(old.Rules))}
		for i, r := range old.Rules {
			nr, err := overrideFromV2(r)
			if err != nil {
				return fmt.Errorf("overrides %s: entry %d: %w", k, i+1, err)
			}
			o.Rules = append(o.Rules, nr)
		}
		if err := o.validate(); err != nil {
			return fmt.Errorf("overrides %s: %w", k, err)
		}
		nraw, err := json.Marshal(&o)
		if err != nil {
			return fmt.Errorf("overrides %s: %w", k, err)
		}
		out[string(k)] = nraw
		return nil
	})
	if err != nil {
		return err
	}
	for k, raw := range out {
		if err := b.Put([]byte(k), raw); err != nil {
			return fmt.Errorf("overrides %s: %w", k, err)
		}
	}
	return nil
}

func overrideFromV2(r v2OverrideRule) (OverrideRule, error) {
	o := OverrideRule{Protocol: r.Rule.Protocol, Comment: r.Comment, By: r.By, CreatedAt: r.CreatedAt}
	switch r.Direction {
	case v2FromDevice:
		o.Direction = OverrideFromDevice
	case v2ToDevice:
		o.Direction = OverrideToDevice
	default:
		return o, fmt.Errorf("direction %d unknown", r.Direction)
	}
	switch r.Rule.Verdict {
	case v2Accept:
		o.Verdict = OverrideAllow
	case v2Drop:
		o.Verdict = OverrideDeny
	default:
		return o, fmt.Errorf("verdict %d unknown", r.Rule.Verdict)
	}
	switch p := r.Rule.Peer; p.Kind {
	case v2AnyPeer:
		if r.Rule.Family != v2AnyFamily {
			return o, fmt.Errorf("family %d without an address", r.Rule.Family)
		}
	case v2DNSName:
		if p.Value == "" || r.Rule.Family != v2AnyFamily {
			return o, fmt.Errorf("DNS name %q with family %d", p.Value, r.Rule.Family)
		}
		o.DNSName = p.Value
	case v2Prefix:
		want := v2IPv4
		if p.Prefix.Addr().Is6() {
			want = v2IPv6
		}
		if !p.Prefix.IsValid() || r.Rule.Family != want {
			return o, fmt.Errorf("prefix %s with family %d", p.Prefix, r.Rule.Family)
		}
		o.Prefix = p.Prefix.Masked()
	default:
		return o, fmt.Errorf("peer kind %d is not an address, a prefix or a DNS name", p.Kind)
	}
	switch {
	case r.Rule.SrcPort != nil, len(r.Rule.ICMP) > 0 && string(r.Rule.ICMP) != "null", r.Rule.Initiated != 0, r.Rule.Default:
		return o, errors.New("source ports, ICMP types, connection direction or a default marker: not an override mudctl writes")
	case r.Rule.DstPort != nil && r.Rule.DstPort.Negate:
		return o, errors.New("a negated port range")
	case r.Rule.DstPort != nil:
		o.DstPort = &PortRange{First: r.Rule.DstPort.First, Last: r.Rule.DstPort.Last}
	}
	return o, nil
}

// Schema v3 differed from v4 only in the bindings bucket: a binding had no
// addresses ("ips", "first_use"), and its device's IPv4 addresses were its
// DHCP leases' alone.

// migrateV3ToV4 marks every binding as bound on first use: it was made
// without addresses, and under v4 a binding without addresses binds the
// first address of each family its device is seen using. A binding that
// does not decode, or has no MUD URL, fails the migration.
func migrateV3ToV4(btx *bolt.Tx) error {
	b := btx.Bucket([]byte(bucketBindings))
	if b == nil {
		return nil // created empty by prepare
	}
	out := map[string][]byte{}
	err := b.ForEach(func(k, raw []byte) error {
		var bd Binding
		if err := json.Unmarshal(raw, &bd); err != nil {
			return fmt.Errorf("binding %s: %w", k, err)
		}
		if len(bd.IPs) == 0 {
			bd.FirstUse = true
		}
		if err := bd.validate(); err != nil {
			return err
		}
		nraw, err := json.Marshal(&bd)
		if err != nil {
			return fmt.Errorf("binding %s: %w", k, err)
		}
		out[string(k)] = nraw
		return nil
	})
	if err != nil {
		return err
	}
	for k, raw := range out {
		if err := b.Put([]byte(k), raw); err != nil {
			return fmt.Errorf("binding %s: %w", k, err)
		}
	}
	return nil
}
