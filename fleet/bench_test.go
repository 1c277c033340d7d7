package fleet

import (
	"context"
	"encoding/json"
	"fmt"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/openmud/mud/internal/lab/etcdlab"
	"github.com/openmud/mud/store"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// BenchmarkKeysPer10kDevices fills a 3-member lab cluster with what a site
// of 10,000 MUD devices behind one gateway keeps in etcd — a device summary
// and a MAC pin per device, a URL pin and a URL approval per model (50
// models), overrides for 5% of the devices and bindings for 2% — and
// reports the keys, the bytes of keys and values, and etcd's database size
// in use. The write itself is batched and not what is measured.
func BenchmarkKeysPer10kDevices(b *testing.B) {
	const devices, models = 10000, 50
	for range b.N {
		cl := etcdlab.Start(b, 3)
		tc, err := cl.ClientTLS("gw0")
		if err != nil {
			b.Fatal(err)
		}
		c, err := Open(Config{Endpoints: cl.Endpoints(), TLS: tc, Prefix: "/mud", GatewayID: "gw0",
			QueuePath: filepath.Join(b.TempDir(), "q.db"), Dial: cl.Dialer(etcdlab.Source(0))})
		if err != nil {
			b.Fatal(err)
		}
		ctx := context.Background()
		now := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
		var ops []clientv3.Op
		flush := func() {
			if len(ops) == 0 {
				return
			}
			if _, err := c.cli.Txn(ctx).Then(ops...).Commit(); err != nil {
				b.Fatal(err)
			}
			ops = ops[:0]
		}
		put := func(k string, v any) {
			buf, err := json.Marshal(v)
			if err != nil {
				b.Fatal(err)
			}
			ops = append(ops, clientv3.OpPut(k, string(buf)))
			if len(ops) == 100 {
				flush()
			}
		}
		url := func(m int) string { return fmt.Sprintf("https://mud.example.com/models/model-%02d.json", m) }
		for m := range models {
			put(c.lay.decision(KindPinURL, url(m)), store.Pin{MUDURL: url(m), Signer: "CN=Example Devices MUD Signer,O=Example", Authority: "mud.example.com", FirstSeen: now})
			put(c.lay.decision(KindVerdictURL, url(m)), map[string]any{"verdict": "approve", "mud_url": url(m),
				"digest": store.Digest([]byte(url(m))), "by": "admin", "at": now})
		}
		for i := range devices {
			mac := fmt.Sprintf("02:00:00:%02x:%02x:%02x", i>>16, (i>>8)&0xff, i&0xff)
			ip4 := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
			put(c.lay.device("gw0", mac), DeviceSummary{MAC: mac, IPs: []string{ip4.String(), fmt.Sprintf("2001:db8:1::%x", i+16)},
				MUDURL: url(i % models), State: "enforced", Enforcement: "enforced", PolicyID: store.Digest([]byte(url(i % models)))[:23], UpdatedAt: now})
			put(c.lay.decision(KindPinMAC, mac), store.Pin{MAC: mac, MUDURL: url(i % models), Signer: "CN=Example Devices MUD Signer,O=Example", Authority: "mud.example.com", FirstSeen: now})
			if i%20 == 0 {
				put(c.lay.decision(KindOverrides, mac), store.Overrides{MAC: mac, Rules: []store.OverrideRule{{
					Direction: store.OverrideFromDevice, Verdict: store.OverrideAllow, Prefix: netip.MustParsePrefix("198.51.100.7/32"),
					Protocol: store.ProtoTCP, DstPort: &store.PortRange{First: 443, Last: 443}, By: "admin", CreatedAt: now}}})
			}
			if i%50 == 0 {
				put(c.lay.decision(KindBinding, mac), store.Binding{MAC: mac, MUDURL: url(i % models), By: "admin", CreatedAt: now})
			}
		}
		flush()
		resp, err := c.cli.Get(ctx, "/mud/", clientv3.WithPrefix())
		if err != nil {
			b.Fatal(err)
		}
		var kv int64
		for _, x := range resp.Kvs {
			kv += int64(len(x.Key) + len(x.Value))
		}
		st, err := c.cli.Status(ctx, cl.Members[0].ClientURL)
		if err != nil {
			b.Fatal(err)
		}
		b.ReportMetric(float64(resp.Count), "keys")
		b.ReportMetric(float64(kv), "kv-bytes")
		b.ReportMetric(float64(kv)/devices, "kv-bytes/device")
		b.ReportMetric(float64(st.DbSizeInUse), "db-bytes-in-use")
		b.ReportMetric(float64(st.DbSize), "db-bytes")
		_ = c.Close()
	}
}
