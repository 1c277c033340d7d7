package mudfetch

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// A MUD file with line breaks (text-mode signing changes its bytes).
const testMUD = `{
  "ietf-mud:mud": {
    "mud-version": 1,
    "mud-url": "https://mud.example.com/lightbulb2000",
    "last-update": "2019-01-28T11:20:51+01:00",
    "cache-validity": 48,
    "is-supported": true,
    "systeminfo": "The BMS Example Light Bulb",
    "mud-signature": "lightbulb2000.p7s"
  },
  "ietf-access-control-list:acls": {"acl": []}
}
`

const signerKU = x509.KeyUsageDigitalSignature

func wantPending(t *testing.T, v Verdict, sentinels ...error) {
	t.Helper()
	if v.Verified() || v.Status != StatusPendingApproval {
		t.Fatalf("verdict %q, want pending-approval", v.Status)
	}
	err := v.Err()
	if !errors.Is(err, ErrPendingApproval) {
		t.Errorf("Err() = %v, does not wrap ErrPendingApproval", err)
	}
	for _, s := range sentinels {
		if !errors.Is(err, s) {
			t.Errorf("Err() = %v, does not wrap %v", err, s)
		}
	}
	if v.Reason == "" {
		t.Error("pending verdict without a reason")
	}
}

func TestVerify(t *testing.T) {
	for _, alg := range []keyAlg{algRSA, algECDSA} {
		t.Run(string(alg), func(t *testing.T) {
			p := newPKI(t, alg, "Example Lighting")
			body := []byte(testMUD)
			now := time.Now()
			cert, key := p.signer(t, "Example Lighting MUD signer", signerKU, nil)
			sig := signDetached(t, body, cert, key, p.inter)

			t.Run("verified", func(t *testing.T) { // RFC 8520 §13.2
				v := Verify(body, sig, p.pool(), now, VerifyOptions{})
				if !v.Verified() || v.Err() != nil {
					t.Fatalf("not verified: %v", v.Err())
				}
				if v.SignerSubject != cert.Subject.String() || len(v.Chain) != 3 {
					t.Errorf("signer %q chain %q", v.SignerSubject, v.Chain)
				}
				if !bytes.Equal(v.IssuerKeyID, p.inter.SubjectKeyId) {
					t.Errorf("issuer key id %x, want the intermediate's %x", v.IssuerKeyID, p.inter.SubjectKeyId)
				}
			})
			t.Run("one byte changed", func(t *testing.T) { // RFC 8520 §13.2
				mod := bytes.Clone(body)
				mod[bytes.IndexByte(mod, '4')] = '5' // cache-validity 48 → 58
				v := Verify(mod, sig, p.pool(), now, VerifyOptions{})
				wantPending(t, v, ErrSignatureInvalid)
				if !strings.Contains(v.Reason, "digest") {
					t.Errorf("reason %q does not say the digest differs", v.Reason)
				}
			})
			t.Run("wrong CA", func(t *testing.T) { // RFC 8520 §13.2
				other := newPKI(t, algECDSA, "Someone Else")
				wantPending(t, Verify(body, sig, other.pool(), now, VerifyOptions{}), ErrUntrustedSigner)
			})
			t.Run("intermediate as anchor is not enough without it", func(t *testing.T) {
				// The intermediate is carried in the signature; the pool must hold the root.
				noInter := signDetached(t, body, cert, key)
				wantPending(t, Verify(body, noInter, p.pool(), now, VerifyOptions{}), ErrUntrustedSigner)
			})
			t.Run("expired signer", func(t *testing.T) { // RFC 8520 §13.2
				at := cert.NotAfter.Add(time.Hour)
				v := Verify(body, sig, p.pool(), at, VerifyOptions{})
				wantPending(t, v, ErrSignerExpired)
				if errors.Is(v.Err(), ErrSignatureInvalid) {
					t.Errorf("expiry reported as a bad signature: %v", v.Err())
				}
			})
			t.Run("not the signing time", func(t *testing.T) {
				// The signature claims a signing time inside the validity;
				// judged now+11d the chain is expired all the same.
				wantPending(t, Verify(body, sig, p.pool(), now.Add(11*24*time.Hour), VerifyOptions{}), ErrSignerExpired)
			})
			t.Run("no digitalSignature", func(t *testing.T) { // RFC 8520 §13.2
				ku := x509.KeyUsageKeyEncipherment
				if alg == algECDSA {
					ku = x509.KeyUsageKeyAgreement
				}
				c, k := p.signer(t, "Bad KU signer", ku, nil)
				v := Verify(body, signDetached(t, body, c, k, p.inter), p.pool(), now, VerifyOptions{})
				wantPending(t, v, ErrSignerKeyUsage)
				c, k = p.signer(t, "No KU signer", 0, nil)
				wantPending(t, Verify(body, signDetached(t, body, c, k, p.inter), p.pool(), now, VerifyOptions{}), ErrSignerKeyUsage)
			})
			t.Run("text mode", func(t *testing.T) { // RFC 8520 §13.1: binary, no canonicalisation
				textSig := signDetached(t, toCRLF(body), cert, key, p.inter)
				v := Verify(body, textSig, p.pool(), now, VerifyOptions{})
				wantPending(t, v, ErrSignatureInvalid)
				if !strings.Contains(v.Reason, "text mode") {
					t.Errorf("reason %q does not name text mode", v.Reason)
				}
			})
			t.Run("mudsigner", func(t *testing.T) { // RFC 8520 §13.2
				want, _ := asn1.Marshal(cert.Subject.ToRDNSequence())
				if v := Verify(body, sig, p.pool(), now, VerifyOptions{ExpectedSigner: want}); !v.Verified() {
					t.Fatalf("matching mudsigner: %v", v.Err())
				}
				other, _ := asn1.Marshal(pkix.Name{Organization: []string{"Example Lighting"}, CommonName: "Another signer"}.ToRDNSequence())
				v := Verify(body, sig, p.pool(), now, VerifyOptions{ExpectedSigner: other})
				wantPending(t, v, ErrSignerMismatch)
				if !strings.Contains(v.Reason, "Another signer") {
					t.Errorf("reason %q does not name the expected signer", v.Reason)
				}
				wantPending(t, Verify(body, sig, p.pool(), now, VerifyOptions{ExpectedSigner: []byte{0x30, 0x03}}), ErrSignerMismatch)
			})
		})
	}
}

func TestVerifyRefusals(t *testing.T) {
	p := newPKI(t, algECDSA, "Example Lighting")
	body := []byte(testMUD)
	now := time.Now()
	cert, key := p.signer(t, "signer", signerKU, nil)
	sig := signDetached(t, body, cert, key, p.inter)

	wantPending(t, Verify(body, sig, nil, now, VerifyOptions{}), ErrNoTrustAnchors)
	wantPending(t, Verify(body, nil, p.pool(), now, VerifyOptions{}), ErrSignatureMalformed)
	wantPending(t, Verify(body, []byte("not DER at all"), p.pool(), now, VerifyOptions{}), ErrSignatureMalformed)
	wantPending(t, Verify(body, sig[:len(sig)/2], p.pool(), now, VerifyOptions{}), ErrSignatureMalformed)
	wantPending(t, Verify(body, make([]byte, MaxSignatureBytes+1), p.pool(), now, VerifyOptions{}), ErrSignatureMalformed)

	// SHA-1 is refused (x509 treats SHA-1 signatures as insecure).
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA1)
	if err := sd.AddSignerChain(cert, key, []*x509.Certificate{p.inter}, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	sha1Sig, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	wantPending(t, Verify(body, sha1Sig, p.pool(), now, VerifyOptions{}), ErrSignatureInvalid)

	// Two signers: which one is "the signer" would be ambiguous.
	sd, _ = pkcs7.NewSignedData(body)
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	c2, k2 := p.signer(t, "second", signerKU, nil)
	if err := sd.AddSignerChain(cert, key, []*x509.Certificate{p.inter}, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	if err := sd.AddSignerChain(c2, k2, []*x509.Certificate{p.inter}, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	two, _ := sd.Finish()
	wantPending(t, Verify(body, two, p.pool(), now, VerifyOptions{}), ErrSignatureMalformed)

	// The zero Verdict is not verified.
	var zero Verdict
	if zero.Verified() || !errors.Is(zero.Err(), ErrPendingApproval) {
		t.Error("zero Verdict counts as verified")
	}
}

func TestMUDSignerName(t *testing.T) {
	p := newPKI(t, algECDSA, "Device Maker")
	want := pkix.Name{Organization: []string{"Device Maker"}, CommonName: "Device Maker MUD signer"}
	dev, _ := p.signer(t, "device 0001", x509.KeyUsageDigitalSignature, func(c *x509.Certificate) {
		c.ExtraExtensions = []pkix.Extension{mudSignerExt(t, want)}
	})
	name, ok, err := MUDSignerName(dev)
	if err != nil || !ok {
		t.Fatalf("MUDSignerName: %v %v", ok, err)
	}
	signer, key := p.signer(t, "Device Maker MUD signer", signerKU, nil)
	body := []byte(testMUD)
	v := Verify(body, signDetached(t, body, signer, key, p.inter), p.pool(), time.Now(), VerifyOptions{ExpectedSigner: name})
	if !v.Verified() {
		t.Fatalf("signer named by the device certificate not accepted: %v", v.Err())
	}
	if _, ok, _ := MUDSignerName(p.inter); ok {
		t.Error("certificate without the extension reported one")
	}
}

// openssl interop: a detached binary signature verifies; one made without
// -binary (S/MIME text mode, CRLF canonicalisation) over a file with line
// breaks does not. Run only where openssl exists; exec, never a shell.
func TestVerifyOpenSSL(t *testing.T) {
	bin, err := exec.LookPath("openssl")
	if err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("openssl not found (CI installs it via scripts/install-deps.sh): %v", err)
		}
		t.Skip("openssl not installed")
	}
	p := newPKI(t, algRSA, "Example Lighting")
	cert, key := p.signer(t, "openssl signer", signerKU, nil)
	dir := t.TempDir()
	write := func(name string, data []byte) string {
		f := filepath.Join(dir, name)
		if err := os.WriteFile(f, data, 0o600); err != nil {
			t.Fatal(err)
		}
		return f
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	body := []byte(testMUD)
	in := write("mud.json", body)
	certF := write("signer.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: cert.Raw}))
	keyF := write("signer.key", pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: keyDER}))
	interF := write("inter.pem", pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: p.inter.Raw}))
	sign := func(binary bool) []byte {
		out := filepath.Join(dir, "sig.der")
		args := []string{"cms", "-sign", "-in", in, "-signer", certF, "-inkey", keyF, "-certfile", interF, "-md", "sha256", "-outform", "DER", "-out", out}
		if binary {
			args = append(args, "-binary")
		}
		if b, err := exec.Command(bin, args...).CombinedOutput(); err != nil {
			t.Fatalf("openssl %v: %v\n%s", args, err, b)
		}
		sig, err := os.ReadFile(out)
		if err != nil {
			t.Fatal(err)
		}
		return sig
	}
	if v := Verify(body, sign(true), p.pool(), time.Now(), VerifyOptions{}); !v.Verified() {
		t.Fatalf("openssl -binary signature: %v", v.Err())
	}
	v := Verify(body, sign(false), p.pool(), time.Now(), VerifyOptions{})
	wantPending(t, v, ErrSignatureInvalid)
	if !strings.Contains(v.Reason, "text mode") {
		t.Errorf("reason %q does not name text mode", v.Reason)
	}
}

func TestSameName(t *testing.T) {
	a, _ := asn1.Marshal(pkix.Name{Organization: []string{"Example"}, CommonName: "MUD  Signer"}.ToRDNSequence())
	b, _ := asn1.Marshal(pkix.Name{Organization: []string{"example"}, CommonName: "mud signer"}.ToRDNSequence())
	c, _ := asn1.Marshal(pkix.Name{Organization: []string{"example"}, CommonName: "mud signer 2"}.ToRDNSequence())
	if !sameName(a, b) {
		t.Error("names differing in case and spacing should match")
	}
	if sameName(a, c) || sameName(a, []byte{0x30}) {
		t.Error("different names match")
	}
}
