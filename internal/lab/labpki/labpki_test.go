package labpki

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

func TestSignatureVerifiesAgainstRoot(t *testing.T) {
	ca, err := NewCA("Lab")
	if err != nil {
		t.Fatal(err)
	}
	signer, err := ca.Signer(pkix.Name{CommonName: "lighting.example.com", Organization: []string{"BMS Example"}})
	if err != nil {
		t.Fatal(err)
	}
	body := []byte("{\"ietf-mud:mud\": {}}\r\n")
	sig, err := signer.SignDetached(body)
	if err != nil {
		t.Fatal(err)
	}
	p7, err := pkcs7.Parse(sig)
	if err != nil {
		t.Fatal(err)
	}
	p7.Content = body
	if err := p7.VerifyWithChainAtTime(ca.Pool(), time.Now()); err != nil {
		t.Fatalf("signature does not verify: %v", err)
	}
	p7.Content = append(bytes.Clone(body[:len(body)-1]), 'x')
	if err := p7.VerifyWithChainAtTime(ca.Pool(), time.Now()); err == nil {
		t.Fatal("a changed byte still verifies")
	}
	// The same vector verifies with openssl, as a manufacturer would check it.
	if _, err := exec.LookPath("openssl"); err == nil {
		dir := t.TempDir()
		for name, data := range map[string][]byte{"f.json": body, "f.p7s": sig, "ca.pem": ca.RootPEM()} {
			if err := os.WriteFile(filepath.Join(dir, name), data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		out, err := exec.Command("openssl", "cms", "-verify", "-binary", "-inform", "DER",
			"-in", filepath.Join(dir, "f.p7s"), "-content", filepath.Join(dir, "f.json"),
			"-CAfile", filepath.Join(dir, "ca.pem"), "-purpose", "any", "-out", os.DevNull).CombinedOutput()
		if err != nil {
			t.Fatalf("openssl cms -verify: %v\n%s", err, out)
		}
	}
}

func TestServerCertificate(t *testing.T) {
	ca, err := NewCA("Lab")
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := ca.Server([]string{"mud.example.com"}, []net.IP{net.ParseIP("127.0.0.1")})
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) }))
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{leaf.TLSCertificate()}}
	srv.StartTLS()
	defer srv.Close()
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "mud.example.com"}}}
	resp, err := client.Get(srv.URL)
	if err != nil {
		t.Fatalf("TLS with the lab CA failed: %v", err)
	}
	resp.Body.Close()
	client = &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: ca.Pool(), ServerName: "other.example.com"}}}
	if _, err := client.Get(srv.URL); err == nil {
		t.Fatal("wrong host accepted")
	}
}

// A signer issued until a time expires then; Signer's lasts a year.
func TestSignerUntil(t *testing.T) {
	ca, err := NewCA("Lab")
	if err != nil {
		t.Fatal(err)
	}
	until := time.Now().Add(time.Minute).Truncate(time.Second)
	short, err := ca.SignerUntil(pkix.Name{CommonName: "short-lived"}, until)
	if err != nil {
		t.Fatal(err)
	}
	if !short.Cert.NotAfter.Equal(until) {
		t.Errorf("NotAfter %s, want %s", short.Cert.NotAfter, until)
	}
	long, err := ca.Signer(pkix.Name{CommonName: "long-lived"})
	if err != nil {
		t.Fatal(err)
	}
	if long.Cert.NotAfter.Before(time.Now().Add(300 * 24 * time.Hour)) {
		t.Errorf("Signer expires %s", long.Cert.NotAfter)
	}
}

// Client and peer certificates written as PEM load as TLS key pairs and
// verify against the root for the uses they carry.
func TestClientAndPeerPEM(t *testing.T) {
	ca, err := NewCA("test")
	if err != nil {
		t.Fatal(err)
	}
	client, err := ca.Client("gw1")
	if err != nil {
		t.Fatal(err)
	}
	peer, err := ca.Peer([]string{"localhost"}, []net.IP{net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	for _, tc := range []struct {
		name string
		leaf *Leaf
		uses []x509.ExtKeyUsage
	}{
		{"client", client, []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}},
		{"peer", peer, []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth}},
	} {
		certPath, keyPath := filepath.Join(dir, tc.name+".pem"), filepath.Join(dir, tc.name+".key")
		if err := tc.leaf.WritePEM(certPath, keyPath); err != nil {
			t.Fatal(err)
		}
		pair, err := tls.LoadX509KeyPair(certPath, keyPath)
		if err != nil {
			t.Fatalf("%s: %v", tc.name, err)
		}
		if len(pair.Certificate) != 2 {
			t.Errorf("%s: %d certificates in the file, want leaf and intermediate", tc.name, len(pair.Certificate))
		}
		for _, use := range tc.uses {
			inter := x509.NewCertPool()
			inter.AddCert(ca.Intermediate)
			if _, err := tc.leaf.Cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), Intermediates: inter, KeyUsages: []x509.ExtKeyUsage{use}}); err != nil {
				t.Errorf("%s for %v: %v", tc.name, use, err)
			}
		}
	}
	if client.Cert.Subject.CommonName != "gw1" {
		t.Errorf("client common name %q, want gw1", client.Cert.Subject.CommonName)
	}
}
