package fleet

import (
	"path/filepath"
	"testing"
)

func TestDecisionKeyRoundTrip(t *testing.T) {
	l := layout{"/mud"}
	for _, tc := range []struct {
		kind Kind
		key  string
	}{
		{KindVerdictURL, "https://mud.example.com/a/b.json?x=1"},
		{KindVerdictMAC, "02:00:00:00:01:01"},
		{KindController, "urn:ietf:params:mud:ntp"},
		{KindPinURL, "https://mud.example.com/%2F/../x"},
	} {
		k := l.decision(tc.kind, tc.key)
		kind, key, err := l.parseDecision(k)
		if err != nil || kind != tc.kind || key != tc.key {
			t.Errorf("%s: parsed %q %q %v, want %q %q", k, kind, key, err, tc.kind, tc.key)
		}
	}
	for _, bad := range []string{"/mud/shared/unknown/x", "/mud/shared/pins-url/", "/mud/shared/pins-url/%zz", "/other/shared/pins-url/x", "/mud/shared/pins-url"} {
		if _, _, err := l.parseDecision(bad); err == nil {
			t.Errorf("%q parsed; want an error", bad)
		}
	}
}

func TestGatewayIDAndPrefix(t *testing.T) {
	for _, ok := range []string{"gw1", "site-a.gw_2"} {
		if err := ValidGatewayID(ok); err != nil {
			t.Errorf("%q: %v", ok, err)
		}
	}
	for _, bad := range []string{"", "..", "a/b", "a b", "gw*", string(make([]byte, 65))} {
		if err := ValidGatewayID(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	for _, bad := range []string{"", "mud", "/mud/", "//mud"} {
		if err := validPrefix(bad); err == nil {
			t.Errorf("prefix %q accepted", bad)
		}
	}
}

// TestQueueSurvivesReopen: queued writes and known revisions are on disk, in
// order, after the file is closed and opened again.
func TestQueueSurvivesReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "q.db")
	l, err := openLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"a", "b", "c"} {
		if err := l.enqueue(Write{Op: opPut, Kind: KindBinding, Key: k, Value: []byte(k), BaseRev: 7}); err != nil {
			t.Fatal(err)
		}
	}
	if err := l.record([]mirrorUpdate{{key: "/mud/shared/bindings/a", modRev: 9}}, 12); err != nil {
		t.Fatal(err)
	}
	ws, _ := l.pending()
	if err := l.done(ws[0].Sequence); err != nil {
		t.Fatal(err)
	}
	if err := l.close(); err != nil {
		t.Fatal(err)
	}
	l, err = openLocal(path)
	if err != nil {
		t.Fatal(err)
	}
	defer l.close()
	ws, err = l.pending()
	if err != nil || len(ws) != 2 || ws[0].Key != "b" || ws[1].Key != "c" || ws[0].BaseRev != 7 {
		t.Fatalf("after reopen: %+v %v, want b and c based on 7", ws, err)
	}
	if l.watchRev() != 12 || l.known("/mud/shared/bindings/a") != 9 {
		t.Fatalf("watch rev %d, known %d; want 12 and 9", l.watchRev(), l.known("/mud/shared/bindings/a"))
	}
}

// FuzzParseDecision: keys read from etcd are input from other writers;
// parsing never panics, and what parses re-encodes to the same key.
func FuzzParseDecision(f *testing.F) {
	l := layout{"/mud"}
	for _, s := range []string{
		"/mud/shared/verdicts-url/https:%2F%2Fmud.example.com%2Fthermostat.json",
		"/mud/shared/verdicts-mac/02:00:00:00:01:01",
		"/mud/shared/overrides/02:00:00:00:01:01",
		"/mud/shared/controllers/urn:ietf:params:mud:dns",
		"/mud/shared/pins-url/%zz", "/mud/shared//x",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, k string) {
		kind, key, err := l.parseDecision(k)
		if err != nil {
			return
		}
		if !kind.Valid() || key == "" {
			t.Fatalf("%q parsed to %q %q", k, kind, key)
		}
		if _, _, err := l.parseDecision(l.decision(kind, key)); err != nil {
			t.Fatalf("re-encoded %q does not parse: %v", l.decision(kind, key), err)
		}
	})
}
