package mudfetch

import (
	"crypto/x509"
	"errors"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The real signature vectors (testdata/corpus/PROVENANCE.md): each gives the
// verdict `openssl cms -verify` gives.

func corpusFile(t testing.TB, rel string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "corpus", filepath.FromSlash(rel)))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func corpusPool(t testing.TB, rels ...string) *x509.CertPool {
	t.Helper()
	pool := x509.NewCertPool()
	for _, rel := range rels {
		certs, err := ParseCertificatesPEM(corpusFile(t, rel))
		if err != nil {
			t.Fatalf("%s: %v", rel, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool
}

func date(s string) time.Time {
	t, err := time.Parse(time.DateOnly, s)
	if err != nil {
		panic(err)
	}
	return t
}

func TestCorpusVectors(t *testing.T) {
	lumBody := corpusFile(t, "cisco-mud-manager/luminaire/fs/Luminaire_150.json")
	lumSig := corpusFile(t, "cisco-mud-manager/luminaire/fs/Luminaire_150.p7s")
	lumCA := corpusPool(t, "cisco-mud-manager/luminaire/luminaire-cacert.pem")
	ciraCAs := corpusPool(t, "ciralabs-highway/spec/files/cert/mud_prime256v1.crt", "ciralabs-highway/spec/files/borgin/mud_prime256v1.crt")

	t.Run("Luminaire_150 inside validity: verified", func(t *testing.T) {
		v := Verify(lumBody, lumSig, lumCA, date("2018-10-01"), VerifyOptions{})
		if !v.Verified() {
			t.Fatalf("not verified: %v", v.Err())
		}
		if v.SignerSubject != "CN=luminaire.example.com,O=Demo Luminaire Manufacturer" || len(v.Chain) != 2 {
			t.Errorf("signer %q chain %q", v.SignerSubject, v.Chain)
		}
	})
	t.Run("Luminaire_150 now: expired", func(t *testing.T) {
		v := Verify(lumBody, lumSig, lumCA, time.Now(), VerifyOptions{})
		wantPending(t, v, ErrSignerExpired)
		if errors.Is(v.Err(), ErrSignatureInvalid) {
			t.Errorf("expiry reported as a bad signature: %v", v.Err())
		}
	})
	t.Run("Luminaire_150 text mode: fails", func(t *testing.T) { // RFC 8520 §13.1: binary, over the exact bytes
		wantPending(t, Verify(toCRLF(lumBody), lumSig, lumCA, date("2018-10-01"), VerifyOptions{}), ErrSignatureInvalid)
	})
	t.Run("lightbulb2000: math OK, chain cannot be built", func(t *testing.T) {
		body := corpusFile(t, "hslatman-mud-file-server/examples/lightbulb2000.json")
		sig := corpusFile(t, "hslatman-mud-file-server/examples/lightbulb2000.json.p7s")
		v := Verify(body, sig, x509.NewCertPool(), date("2020-09-01"), VerifyOptions{})
		wantPending(t, v, ErrUntrustedSigner, ErrSignerKeyUsage)
		if errors.Is(v.Err(), ErrSignatureInvalid) {
			t.Errorf("math reported bad: %v", v.Err())
		}
		if v.SignerSubject == "" {
			t.Error("signer not reported")
		}
	})
	for _, name := range []string{"toaster_mud.json", "thermostat-example.json"} {
		t.Run(name+": math OK, issuer not in corpus", func(t *testing.T) {
			body := corpusFile(t, "ciralabs-highway/spec/files/mudsig/"+name)
			sig := corpusFile(t, "ciralabs-highway/spec/files/mudsig/"+name+".sig")
			for _, content := range [][]byte{body, toCRLF(body)} { // no newlines: text mode is the same
				v := Verify(content, sig, ciraCAs, date("2019-06-01"), VerifyOptions{})
				wantPending(t, v, ErrUntrustedSigner)
				if errors.Is(v.Err(), ErrSignatureInvalid) {
					t.Errorf("math reported bad: %v", v.Err())
				}
			}
			h, err := DecodeHeader(body)
			if err != nil {
				t.Fatal(err)
			}
			// Relative mud-signature resolved against mud-url.
			u, err := h.SignatureURL("https://fetched.example/other/path")
			if err != nil {
				t.Fatal(err)
			}
			want := map[string]string{
				"toaster_mud.json":        "https://cira.ca/mud/toaster_mud.json.sig",
				"thermostat-example.json": "https://mud.ciralabs.ca/mud/thermostat-example.json.sig",
			}[name]
			if u != want {
				t.Errorf("signature URL %q, want %q", u, want)
			}
		})
	}
}

// A MUD file passed as its own signature: its bytes read as BER elements with
// overlapping lengths, on which the pkcs7 BER converter takes exponential
// time (found by FuzzVerify). It must be refused at once.
func TestVerifyOverlappingBER(t *testing.T) {
	body := corpusFile(t, "hslatman-mud-file-server/examples/lightbulb2000.json")
	done := make(chan Verdict, 1)
	go func() { done <- Verify(body, body, x509.NewCertPool(), time.Now(), VerifyOptions{}) }()
	select {
	case v := <-done:
		wantPending(t, v, ErrSignatureMalformed)
	case <-time.After(10 * time.Second):
		t.Fatal("Verify did not return") // the goroutine is leaked only on failure
	}
	for _, bad := range [][]byte{{0x30, 0x80, 0x00, 0x00}, {0x30, 0x03, 0x30, 0x05, 0x00}, {0x04, 0x80}, {0x30, 0x85, 1, 2, 3, 4, 5}, {0x30, 0x02, 0x00, 0x00, 0x00}} {
		if err := checkBERStructure(bad); err == nil {
			t.Errorf("%x accepted", bad)
		}
	}
}
