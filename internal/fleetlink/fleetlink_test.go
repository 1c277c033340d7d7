package fleetlink

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/openmud/mud/manager"
)

// Every event of the fleet client reaches the manager with its decision;
// the event types are the same words.
func TestConvert(t *testing.T) {
	for _, ty := range []fleet.EventType{fleet.EventChanged, fleet.EventResync, fleet.EventPartition,
		fleet.EventHeal, fleet.EventConflict, fleet.EventFlushed} {
		ev := fleet.Event{Type: ty, Decision: fleet.Decision{Kind: fleet.KindVerdictMAC, Key: "02:00:00:00:01:01",
			Value: []byte(`{"verdict":"approved"}`), Deleted: true}, Err: errors.New("cut")}
		me, ok := convert(ev)
		if !ok || string(me.Type) != string(ty) || me.Kind != manager.FleetVerdictMAC || me.Key != ev.Decision.Key ||
			string(me.Value) != string(ev.Decision.Value) || !me.Deleted || me.Err == nil {
			t.Errorf("%s: %+v, %v", ty, me, ok)
		}
	}
	if _, ok := convert(fleet.Event{Type: "unknown"}); ok {
		t.Error("an unknown event type was converted")
	}
}

// The client's configuration comes from store.etcd: the credentials are
// read, a file that is not what it should be is named.
func TestConfig(t *testing.T) {
	dir := t.TempDir()
	ca, err := labpki.NewCA("etcd")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Client("gw1")
	if err != nil {
		t.Fatal(err)
	}
	caPath, cert, key := filepath.Join(dir, "ca.pem"), filepath.Join(dir, "gw1.pem"), filepath.Join(dir, "gw1.key")
	if err := ca.WriteRootPEM(caPath); err != nil {
		t.Fatal(err)
	}
	if err := leaf.WritePEM(cert, key); err != nil {
		t.Fatal(err)
	}
	e := config.StoreEtcd{Endpoints: []string{"https://192.0.2.21:2379"}, CACert: caPath, Cert: cert, Key: key, Prefix: "/mud", GatewayID: "gw1"}
	fc, err := Config(e, dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	if fc.QueuePath != filepath.Join(dir, QueueFile) || fc.GatewayID != "gw1" || fc.Prefix != "/mud" || len(fc.TLS.Certificates) != 1 {
		t.Errorf("config %+v", fc)
	}
	if err := os.WriteFile(filepath.Join(dir, "bad.pem"), []byte("not a certificate"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		mod  func(*config.StoreEtcd)
		want string
	}{
		{func(e *config.StoreEtcd) { e.CACert = filepath.Join(dir, "bad.pem") }, "store.etcd.ca_cert"},
		{func(e *config.StoreEtcd) { e.Key = caPath }, "store.etcd.cert, store.etcd.key"},
	} {
		c := e
		tc.mod(&c)
		if _, err := Config(c, dir, nil); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("error %v, want one naming %s", err, tc.want)
		}
	}
}
