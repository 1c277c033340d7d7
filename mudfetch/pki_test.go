package mudfetch

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha1"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"math/big"
	"sync"
	"testing"
	"time"

	"github.com/smallstep/pkcs7"
)

// Test PKI: root → intermediate → leaf, RSA or ECDSA, generated in the tests.

type keyAlg string

const (
	algRSA   keyAlg = "rsa"
	algECDSA keyAlg = "ecdsa"
)

// RSA key generation is slow under -race: make a few keys once per run.
var rsaKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 4)
	for i := range keys {
		k, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic(err)
		}
		keys[i] = k
	}
	return keys
})

func newKey(t testing.TB, alg keyAlg, i int) crypto.Signer {
	t.Helper()
	if alg == algRSA {
		return rsaKeys()[i%4]
	}
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

type pki struct {
	alg       keyAlg
	root      *x509.Certificate
	rootKey   crypto.Signer
	inter     *x509.Certificate
	interKey  crypto.Signer
	serial    int64
	name      string
	notBefore time.Time
	notAfter  time.Time
}

func ski(pub crypto.PublicKey) []byte {
	der, _ := x509.MarshalPKIXPublicKey(pub)
	s := sha1.Sum(der)
	return s[:]
}

func newPKI(t testing.TB, alg keyAlg, name string) *pki {
	t.Helper()
	now := time.Now()
	p := &pki{alg: alg, name: name, serial: 1, notBefore: now.Add(-24 * time.Hour), notAfter: now.Add(10 * 24 * time.Hour)}
	p.rootKey = newKey(t, alg, 0)
	p.root = p.issue(t, nil, nil, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " Root CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, p.rootKey)
	p.interKey = newKey(t, alg, 1)
	p.inter = p.issue(t, p.root, p.rootKey, &x509.Certificate{
		Subject:               pkix.Name{Organization: []string{name}, CommonName: name + " Intermediate CA"},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, p.interKey)
	return p
}

// issue signs tmpl with parent (self-signed when parent is nil).
func (p *pki) issue(t testing.TB, parent *x509.Certificate, parentKey crypto.Signer, tmpl *x509.Certificate, key crypto.Signer) *x509.Certificate {
	t.Helper()
	p.serial++
	tmpl.SerialNumber = big.NewInt(p.serial)
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = p.notBefore
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = p.notAfter
	}
	tmpl.SubjectKeyId = ski(key.Public())
	if parent == nil {
		parent, parentKey = tmpl, key
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, key.Public(), parentKey)
	if err != nil {
		t.Fatal(err)
	}
	c, err := x509.ParseCertificate(der)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// signer issues a MUD signer certificate from the intermediate.
func (p *pki) signer(t testing.TB, cn string, ku x509.KeyUsage, mod func(*x509.Certificate)) (*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey(t, p.alg, 2)
	tmpl := &x509.Certificate{
		Subject:  pkix.Name{Organization: []string{p.name}, CommonName: cn},
		KeyUsage: ku,
	}
	if mod != nil {
		mod(tmpl)
	}
	return p.issue(t, p.inter, p.interKey, tmpl, key), key
}

// server issues a TLS server certificate for hosts from the intermediate.
func (p *pki) server(t testing.TB, hosts ...string) ([]*x509.Certificate, crypto.Signer) {
	t.Helper()
	key := newKey(t, p.alg, 3)
	c := p.issue(t, p.inter, p.interKey, &x509.Certificate{
		Subject:     pkix.Name{CommonName: hosts[0]},
		DNSNames:    hosts,
		KeyUsage:    x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}, key)
	return []*x509.Certificate{c, p.inter}, key
}

func (p *pki) pool() *x509.CertPool {
	pool := x509.NewCertPool()
	pool.AddCert(p.root)
	return pool
}

// signDetached makes a detached DER CMS signature over content (SHA-256),
// carrying the signer and the intermediate.
func signDetached(t testing.TB, content []byte, cert *x509.Certificate, key crypto.Signer, parents ...*x509.Certificate) []byte {
	t.Helper()
	sd, err := pkcs7.NewSignedData(content)
	if err != nil {
		t.Fatal(err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(cert, key, parents, pkcs7.SignerInfoConfig{}); err != nil {
		t.Fatal(err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		t.Fatal(err)
	}
	return der
}

// mudSignerExt makes an id-pe-mudsigner extension naming subject.
func mudSignerExt(t testing.TB, subject pkix.Name) pkix.Extension {
	t.Helper()
	der, err := asn1.Marshal(subject.ToRDNSequence())
	if err != nil {
		t.Fatal(err)
	}
	return pkix.Extension{Id: OIDMUDSigner, Value: der}
}
