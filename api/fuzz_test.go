package api_test

import (
	"github.com/openmud/mud/api"
	"github.com/openmud/mud/api/apitest"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// FuzzRequestDecoding feeds arbitrary bodies to the handlers that decode
// one (override, bind, actions, controllers, import): no panic, and every
// answer is a success or a client error, never a 500.
func FuzzRequestDecoding(f *testing.F) {
	paths := []string{
		"/v1/devices/" + apitest.MACEnforced + "/overrides",
		"/v1/devices/" + apitest.MACPending + "/bind",
		"/v1/devices/" + apitest.MACPending + "/approve",
		"/v1/devices/" + apitest.MACEnforced + "/quarantine",
		"/v1/controllers",
		"/v1/import",
	}
	seeds := []string{
		`{"verdict":"allow","peer":"198.51.100.7","protocol":"tcp","port":"443"}`,
		`{"verdict":"deny","dns_name":"x.example","direction":"to-device","port":"1-2","protocol":"udp"}`,
		`{"mud_url":"https://cam.example.net/v2.json"}`,
		`{"reason":"r","all_with_url":true}`,
		`{"uri":"urn:ietf:params:mud:ntp","addrs":["192.0.2.1","2001:db8::/64"]}`,
		`{"file":"eyJpZXRmLW11ZDptdWQiOnsibXVkLXVybCI6Imh0dHBzOi8veC5leGFtcGxlL20ifX0=","signature":"AQI="}`,
		``, `{}`, `null`, `[]`, `{"verdict":1}`, `{"port":"99999"}`,
	}
	for i, s := range seeds {
		f.Add(uint8(i), s)
	}
	srv := api.NewServer(apitest.NewFake(), api.ServerOptions{MaxBody: 4 << 10, MaxImport: 8 << 10})
	f.Fuzz(func(t *testing.T, which uint8, body string) {
		path := paths[int(which)%len(paths)]
		w := httptest.NewRecorder()
		srv.ServeHTTP(w, httptest.NewRequest(http.MethodPost, path, strings.NewReader(body)))
		switch w.Code {
		case 200, 400, 404, 409, 413:
		default:
			t.Fatalf("POST %s %q: %d %s", path, body, w.Code, w.Body)
		}
		if w.Code != 200 && !strings.HasPrefix(w.Body.String(), `{"error":`) {
			t.Fatalf("POST %s %q: error body %s", path, body, w.Body)
		}
	})
}
