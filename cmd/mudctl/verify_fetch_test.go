package main

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/labpki"
)

const luminaire = "../../mudfetch/testdata/corpus/cisco-mud-manager/luminaire/"

// The real Cisco Luminaire vector: valid inside its certificate's lifetime,
// refused now that the signer has expired (spec §4 item 12).
func TestVerifyRealVector(t *testing.T) {
	args := []string{"verify", luminaire + "fs/Luminaire_150.json", "--signature", luminaire + "fs/Luminaire_150.p7s", "--ca", luminaire + "luminaire-cacert.pem"}
	code, out, errOut := mudctl(t, append(args, "--at", "2018-10-01T00:00:00Z")...)
	if code != exitOK || !strings.Contains(out, "verified") {
		t.Fatalf("at 2018-10-01: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = mudctl(t, args...)
	if code != exitInvalid || !strings.Contains(strings.ToLower(out), "expired") {
		t.Fatalf("now: exit %d, want 1 with an expiry reason\n%s", code, out)
	}
	if code, _, _ := mudctl(t, "verify", luminaire+"fs/Luminaire_150.json"); code != exitUsage {
		t.Fatalf("missing --signature: exit %d, want 2", code)
	}
}

// `mudctl fetch` against a real HTTPS server: verifies, lints and explains a
// signed file; a one-byte change is exit 1 (spec §4 item 11).
func TestFetchVerifiesAndExplains(t *testing.T) {
	ca, err := labpki.NewCA("Fetch Test")
	if err != nil {
		t.Fatal(err)
	}
	srvCert, err := ca.Server(nil, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ca.Signer(pkix.Name{CommonName: "lighting.example.com"})
	if err != nil {
		t.Fatal(err)
	}
	var served, sig []byte
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/bulb.json":
			_, _ = w.Write(served)
		case "/bulb.p7s":
			_, _ = w.Write(sig)
		default:
			http.NotFound(w, r)
		}
	}))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{srvCert.TLSCertificate()}}
	srv.StartTLS()
	defer srv.Close()
	// The file names itself at the test server, and its signature relative
	// to that, so nothing is looked up outside loopback.
	body, err := os.ReadFile("../../mudfile/testdata/base.json")
	if err != nil {
		t.Fatal(err)
	}
	text := strings.Replace(string(body), "https://lighting.example.com/lightbulb2000", srv.URL+"/bulb.json", 1)
	body = []byte(strings.Replace(text, `"cache-validity"`, `"mud-signature": "bulb.p7s", "cache-validity"`, 1))
	if sig, err = signer.SignDetached(body); err != nil {
		t.Fatal(err)
	}
	served = body
	dir := t.TempDir()
	caFile := filepath.Join(dir, "ca.pem")
	if err := ca.WriteRootPEM(caFile); err != nil {
		t.Fatal(err)
	}
	args := []string{"fetch", srv.URL + "/bulb.json", "--ca", caFile, "--trust", caFile, "--allow-prefix", "127.0.0.1/32"}
	code, out, errOut := mudctl(t, args...)
	if code != exitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"verified", "may open TCP connections to port 443 of test.example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	served = append([]byte{}, body...)
	served[len(served)-2] ^= 0x20
	if code, out, _ := mudctl(t, args...); code != exitInvalid {
		t.Fatalf("tampered file: exit %d, want 1\n%s", code, out)
	}
	// Without the address allow-list, a server on loopback is refused (exit 2).
	if code, _, errOut := mudctl(t, args[:6]...); code != exitUsage || !strings.Contains(errOut, "127.0.0.1") {
		t.Fatalf("loopback server: exit %d, want 2 naming the address\n%s", code, errOut)
	}
}
