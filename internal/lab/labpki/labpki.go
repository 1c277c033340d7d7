// Package labpki makes the certificates and signatures a MUD lab needs: a CA
// (with an intermediate) that issues HTTPS server certificates for MUD servers
// and MUD-signer certificates, and detached DER CMS signatures over MUD files
// as manufacturers publish them (`openssl cms -sign -binary -outform DER`).
// It is for tests and the demo only: keys live in memory or in the lab's
// temporary directory.
package labpki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"os"
	"time"

	"github.com/smallstep/pkcs7"
)

// CA is a root and an intermediate; leaves are issued by the intermediate,
// so verifiers must use the chain a signature or TLS handshake carries.
type CA struct {
	Root, Intermediate       *x509.Certificate
	rootKey, intermediateKey crypto.Signer
}

// Leaf is an issued certificate with its key and the chain up to (not
// including) the root.
type Leaf struct {
	Cert  *x509.Certificate
	Key   crypto.Signer
	Chain []*x509.Certificate // intermediates
}

// NewCA creates a root and an intermediate valid from an hour ago for a year.
func NewCA(name string) (*CA, error) {
	rootKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	root, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Root CA", Organization: []string{name}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, nil, rootKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("issuing root: %w", err)
	}
	intKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	intermediate, err := issue(&x509.Certificate{
		Subject:               pkix.Name{CommonName: name + " Intermediate CA", Organization: []string{name}},
		IsCA:                  true,
		BasicConstraintsValid: true,
		MaxPathLen:            0,
		MaxPathLenZero:        true,
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}, root, intKey.Public(), rootKey)
	if err != nil {
		return nil, fmt.Errorf("issuing intermediate: %w", err)
	}
	return &CA{Root: root, Intermediate: intermediate, rootKey: rootKey, intermediateKey: intKey}, nil
}

// Server issues a TLS server certificate for the given DNS names and IPs.
func (ca *CA) Server(names []string, ips []net.IP) (*Leaf, error) {
	return ca.leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: firstOr(names, "server")},
		DNSNames:    names,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	})
}

// Client issues a TLS client certificate whose subject common name is cn
// (etcd takes it as the user name when client-certificate auth is on).
func (ca *CA) Client(cn string) (*Leaf, error) {
	return ca.leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: cn},
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	})
}

// Peer issues a certificate usable as both TLS server and client, as
// members of a cluster (etcd peers) need.
func (ca *CA) Peer(names []string, ips []net.IP) (*Leaf, error) {
	return ca.leaf(&x509.Certificate{
		Subject:     pkix.Name{CommonName: firstOr(names, "peer")},
		DNSNames:    names,
		IPAddresses: ips,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
	})
}

// Signer issues a MUD-signer certificate (digitalSignature, RFC 8520 §13.2).
func (ca *CA) Signer(subject pkix.Name) (*Leaf, error) {
	return ca.SignerUntil(subject, time.Time{})
}

// SignerUntil issues a MUD-signer certificate that expires at notAfter
// (the zero time: a year from now).
func (ca *CA) SignerUntil(subject pkix.Name, notAfter time.Time) (*Leaf, error) {
	return ca.leaf(&x509.Certificate{
		Subject:     subject,
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageCodeSigning},
		NotAfter:    notAfter,
	})
}

func (ca *CA) leaf(tmpl *x509.Certificate) (*Leaf, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, err
	}
	cert, err := issue(tmpl, ca.Intermediate, key.Public(), ca.intermediateKey)
	if err != nil {
		return nil, fmt.Errorf("issuing %s: %w", tmpl.Subject.CommonName, err)
	}
	return &Leaf{Cert: cert, Key: key, Chain: []*x509.Certificate{ca.Intermediate}}, nil
}

// Pool returns a pool holding the root.
func (ca *CA) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(ca.Root)
	return p
}

// RootPEM is the root certificate in PEM, as an admin would configure it.
func (ca *CA) RootPEM() []byte {
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ca.Root.Raw})
}

// WriteRootPEM writes the root to path.
func (ca *CA) WriteRootPEM(path string) error {
	return os.WriteFile(path, ca.RootPEM(), 0o644)
}

// TLSCertificate is the leaf for a tls.Config, chain included.
func (l *Leaf) TLSCertificate() tls.Certificate {
	c := tls.Certificate{Certificate: [][]byte{l.Cert.Raw}, PrivateKey: l.Key, Leaf: l.Cert}
	for _, ic := range l.Chain {
		c.Certificate = append(c.Certificate, ic.Raw)
	}
	return c
}

// WritePEM writes the certificate followed by its chain to certPath and
// the PKCS #8 key to keyPath (mode 0600), as TLS servers and clients read
// them from files.
func (l *Leaf) WritePEM(certPath, keyPath string) error {
	var certs []byte
	certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: l.Cert.Raw})...)
	for _, ic := range l.Chain {
		certs = append(certs, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: ic.Raw})...)
	}
	der, err := x509.MarshalPKCS8PrivateKey(l.Key)
	if err != nil {
		return fmt.Errorf("encoding key: %w", err)
	}
	if err := os.WriteFile(certPath, certs, 0o644); err != nil {
		return err
	}
	return os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600)
}

// SignDetached returns a detached DER CMS SignedData over exactly body,
// carrying the signer's chain, as RFC 8520 §13 prescribes.
func (l *Leaf) SignDetached(body []byte) ([]byte, error) {
	sd, err := pkcs7.NewSignedData(body)
	if err != nil {
		return nil, fmt.Errorf("starting signature: %w", err)
	}
	sd.SetDigestAlgorithm(pkcs7.OIDDigestAlgorithmSHA256)
	if err := sd.AddSignerChain(l.Cert, l.Key, l.Chain, pkcs7.SignerInfoConfig{}); err != nil {
		return nil, fmt.Errorf("adding signer: %w", err)
	}
	sd.Detach()
	der, err := sd.Finish()
	if err != nil {
		return nil, fmt.Errorf("finishing signature: %w", err)
	}
	return der, nil
}

func issue(tmpl, parent *x509.Certificate, pub crypto.PublicKey, signer crypto.Signer) (*x509.Certificate, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 120))
	if err != nil {
		return nil, err
	}
	tmpl.SerialNumber = serial
	if tmpl.NotBefore.IsZero() {
		tmpl.NotBefore = time.Now().Add(-time.Hour)
	}
	if tmpl.NotAfter.IsZero() {
		tmpl.NotAfter = time.Now().Add(365 * 24 * time.Hour)
	}
	if parent == nil {
		parent = tmpl
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, parent, pub, signer)
	if err != nil {
		return nil, err
	}
	return x509.ParseCertificate(der)
}

func firstOr(s []string, def string) string {
	if len(s) > 0 {
		return s[0]
	}
	return def
}
