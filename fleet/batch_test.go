package fleet_test

import (
	"context"
	"testing"
	"time"

	"github.com/openmud/mud/fleet"
	"github.com/openmud/mud/internal/lab/etcdlab"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// PutDevices queues several summaries in one write and they reach this
// gateway's keys in etcd; a nil summary removes the device's key.
func TestPutDevicesWritesSummaries(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	if a.GatewayID() != "gw0" {
		t.Errorf("GatewayID %q", a.GatewayID())
	}
	if err := a.PutDevices(map[string][]byte{
		"02:00:00:00:01:01": []byte(`{"mac":"02:00:00:00:01:01","state":"enforced"}`),
		"02:00:00:00:01:02": []byte(`{"mac":"02:00:00:00:01:02","state":"failed"}`),
	}); err != nil {
		t.Fatal(err)
	}
	if err := a.PutDevices(map[string][]byte{"": []byte(`{}`)}); err == nil {
		t.Error("a summary without a MAC was queued")
	}
	admin, err := cl.AdminClient("root")
	if err != nil {
		t.Fatal(err)
	}
	defer admin.Close()
	keys := func() map[string]string {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		resp, err := admin.Get(ctx, "/mud/gateways/gw0/devices/", clientv3.WithPrefix())
		if err != nil {
			t.Fatal(err)
		}
		out := map[string]string{}
		for _, kv := range resp.Kvs {
			out[string(kv.Key)] = string(kv.Value)
		}
		return out
	}
	a.waitFor(t, 10*time.Second, "flushed", isType(fleet.EventFlushed))
	got := keys()
	if len(got) != 2 || got["/mud/gateways/gw0/devices/02:00:00:00:01:02"] != `{"mac":"02:00:00:00:01:02","state":"failed"}` {
		t.Fatalf("device keys: %v", got)
	}
	if err := a.PutDevices(map[string][]byte{"02:00:00:00:01:02": nil}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(keys()) != 1 {
		if time.Now().After(deadline) {
			t.Fatalf("device keys after a removal: %v", keys())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// SubmitAll queues decisions in one write, each based on the revision
// this gateway knows; one invalid decision queues none.
func TestSubmitAllQueuesInOrder(t *testing.T) {
	cl := etcdlab.Start(t, 3)
	a := startGateway(t, cl, 0, nil)
	b := startGateway(t, cl, 1, nil)
	b.waitFor(t, 20*time.Second, "resync", isType(fleet.EventResync))
	if err := a.SubmitAll([]fleet.Decision{{Kind: fleet.KindOverrides, Key: "02:00:00:00:01:01", Value: []byte(`{}`)},
		{Kind: "no-such-kind", Key: "x", Value: []byte(`{}`)}}); err == nil {
		t.Fatal("a batch with an unknown kind was queued")
	}
	if n := a.Queued(); n != 0 {
		t.Fatalf("%d writes queued from a refused batch", n)
	}
	v1, v2 := approval("sha256:01", "gw0"), `{"mac":"02:00:00:00:01:01","rules":[]}`
	if err := a.SubmitAll([]fleet.Decision{{Kind: fleet.KindVerdictMAC, Key: "02:00:00:00:01:01", Value: []byte(v1)},
		{Kind: fleet.KindOverrides, Key: "02:00:00:00:01:01", Value: []byte(v2)}}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, 10*time.Second, "verdict", changed(fleet.KindVerdictMAC, "02:00:00:00:01:01", v1))
	b.waitFor(t, 10*time.Second, "overrides", changed(fleet.KindOverrides, "02:00:00:00:01:01", v2))
	// Withdrawn in a batch too.
	a.waitFor(t, 10*time.Second, "own verdict", changed(fleet.KindVerdictMAC, "02:00:00:00:01:01", v1))
	if err := a.SubmitAll([]fleet.Decision{{Kind: fleet.KindVerdictMAC, Key: "02:00:00:00:01:01"}}); err != nil {
		t.Fatal(err)
	}
	b.waitFor(t, 10*time.Second, "withdrawal", func(e fleet.Event) bool {
		return e.Type == fleet.EventChanged && e.Decision.Kind == fleet.KindVerdictMAC && e.Decision.Deleted
	})
}
