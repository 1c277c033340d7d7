package mudctl

import (
	"crypto/tls"
	"crypto/x509/pkix"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/openmud/mud/internal/cli"
	"github.com/openmud/mud/internal/lab/labpki"
	"github.com/spf13/cobra"
)

const luminaire = "../../../mudfetch/testdata/corpus/cisco-mud-manager/luminaire/"

// The real Cisco Luminaire vector: valid inside its certificate's lifetime,
// refused now that the signer has expired (RFC 8520 §13.2: the chain is
// judged at verification time, not the claimed signing time).
func TestVerifyRealVector(t *testing.T) {
	args := []string{"verify", luminaire + "fs/Luminaire_150.json", "--signature", luminaire + "fs/Luminaire_150.p7s", "--trust", luminaire + "luminaire-cacert.pem"}
	code, out, errOut := mudctl(t, append(args, "--at", "2018-10-01T00:00:00Z")...)
	if code != cli.ExitOK || !strings.Contains(out, "verified") {
		t.Fatalf("at 2018-10-01: exit %d\n%s%s", code, out, errOut)
	}
	code, out, _ = mudctl(t, args...)
	if code != cli.ExitFailure || !strings.Contains(strings.ToLower(out), "expired") {
		t.Fatalf("now: exit %d, want 1 with an expiry reason\n%s", code, out)
	}
	if code, _, _ := mudctl(t, "verify", luminaire+"fs/Luminaire_150.json"); code != cli.ExitUsage {
		t.Fatalf("missing --signature: exit %d, want 2", code)
	}
	if code, _, _ := mudctl(t, append(args, "--at", "1 Oct 2018")...); code != cli.ExitUsage {
		t.Fatalf("--at not in RFC 3339: exit %d, want 2", code)
	}
	// The old spelling --ca still names the trust anchors, with a warning
	// that names --trust.
	old := slices.Replace(slices.Clone(args), 4, 5, "--ca")
	code, out, errOut = mudctl(t, append(old, "--at", "2018-10-01T00:00:00Z")...)
	if code != cli.ExitOK || !strings.Contains(out, "verified") || !strings.Contains(errOut, "--ca is deprecated, use --trust") {
		t.Fatalf("--ca: exit %d\n%s%s", code, out, errOut)
	}
	// Without a trust anchor no signer is trusted.
	if code, out, _ := mudctl(t, append(slices.Clone(args[:4]), "--at", "2018-10-01T00:00:00Z")...); code != cli.ExitFailure || !strings.Contains(out, "trust anchor") {
		t.Fatalf("no anchors: exit %d, want 1\n%s", code, out)
	}
}

// verify and fetch judge a signer with the same options, documented alike.
func TestSignerFlagsAgree(t *testing.T) {
	verify, fetch := newVerifyCmd(), newFetchCmd()
	for _, name := range []string{"trust", "system-roots", "at"} {
		v, f := verify.Flags().Lookup(name), fetch.Flags().Lookup(name)
		if v == nil || f == nil {
			t.Errorf("--%s: in verify %v, in fetch %v", name, v != nil, f != nil)
			continue
		}
		if v.Usage != f.Usage || v.Value.Type() != f.Value.Type() {
			t.Errorf("--%s differs: verify %q (%s), fetch %q (%s)", name, v.Usage, v.Value.Type(), f.Usage, f.Value.Type())
		}
	}
	for cmd, hidden := range map[*cobra.Command]string{verify: "ca", fetch: "ca"} {
		if f := cmd.Flags().Lookup(hidden); f == nil || !f.Hidden {
			t.Errorf("%s --%s: want a hidden alias", cmd.Name(), hidden)
		}
	}
}

// `mudctl fetch` against a real HTTPS server: verifies, lints and explains a
// signed file; a one-byte change is exit 1 (RFC 8520 §13.2).
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
	body, err := os.ReadFile("../../../mudfile/testdata/base.json")
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
	args := []string{"fetch", srv.URL + "/bulb.json", "--server-ca", caFile, "--trust", caFile, "--allow-prefix", "127.0.0.1/32"}
	code, out, errOut := mudctl(t, args...)
	if code != cli.ExitOK {
		t.Fatalf("exit %d\n%s%s", code, out, errOut)
	}
	for _, want := range []string{"verified", "may open TCP connections to port 443 of test.example.com"} {
		if !strings.Contains(out, want) {
			t.Errorf("output lacks %q:\n%s", want, out)
		}
	}
	served = append([]byte{}, body...)
	served[len(served)-2] ^= 0x20
	if code, out, _ := mudctl(t, args...); code != cli.ExitFailure {
		t.Fatalf("tampered file: exit %d, want 1\n%s", code, out)
	}
	// Without the address allow-list, a server on loopback is refused (exit 2).
	if code, _, errOut := mudctl(t, args[:6]...); code != cli.ExitUsage || !strings.Contains(errOut, "127.0.0.1") {
		t.Fatalf("loopback server: exit %d, want 2 naming the address\n%s", code, errOut)
	}
	served = body
	// --at judges the signer at another time: before the lab CA existed
	// its certificate was not valid.
	if code, out, _ := mudctl(t, append(args, "--at", "2001-01-01T00:00:00Z")...); code != cli.ExitFailure || !strings.Contains(out, "2001-01-01T00:00:00Z") {
		t.Fatalf("--at 2001: exit %d, want 1\n%s", code, out)
	}
	// The old spelling --ca still names the server's CA, with a warning
	// that names --server-ca.
	old := slices.Replace(slices.Clone(args), 2, 3, "--ca")
	if code, out, errOut := mudctl(t, old...); code != cli.ExitOK || !strings.Contains(errOut, "--ca is deprecated, use --server-ca") {
		t.Fatalf("--ca: exit %d\n%s%s", code, out, errOut)
	}
	// The server CA is not a signer anchor: without --trust the file is
	// fetched over TLS but not verified.
	if code, out, _ := mudctl(t, slices.Delete(slices.Clone(args), 4, 6)...); code != cli.ExitFailure || !strings.Contains(out, "trust anchor") {
		t.Fatalf("no --trust: exit %d, want 1\n%s", code, out)
	}
}
