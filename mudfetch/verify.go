package mudfetch

import (
	"bytes"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/asn1"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"
	"unicode"

	"github.com/smallstep/pkcs7"
)

// Status is the outcome of a verification.
type Status string

// Verification outcomes. The zero Status is not Verified.
const (
	StatusVerified        Status = "verified"
	StatusPendingApproval Status = "pending-approval"
)

// OIDMUDSigner is id-pe-mudsigner (RFC 8520 §11): a certificate extension
// whose value is the Name of the certificate that signs the device's MUD file.
var OIDMUDSigner = asn1.ObjectIdentifier{1, 3, 6, 1, 5, 5, 7, 1, 30}

// Verdict is the result of verifying a MUD file's signature. Only
// Status == StatusVerified means the file may be used without approval.
type Verdict struct {
	Status Status    `json:"status"`
	Reason string    `json:"reason,omitempty"` // every problem found, for the administrator
	At     time.Time `json:"at"`               // the time the chain was judged at

	// Filled whenever the signature could be parsed, verified or not.
	SignerSubject string   `json:"signer_subject,omitempty"` // RFC 4514 form
	SignerIssuer  string   `json:"signer_issuer,omitempty"`
	IssuerKeyID   []byte   `json:"issuer_key_id,omitempty"` // SKI of the CA that issued the signer (from the chain, else the signer's AKI)
	Chain         []string `json:"chain,omitempty"`         // subjects, signer first, trust anchor last (only when the chain verified)

	Signer *x509.Certificate `json:"-"`
	err    error
}

// Verified reports whether the file may be used without approval.
func (v Verdict) Verified() bool { return v.Status == StatusVerified && v.err == nil }

// Err is nil when the file is verified; otherwise it wraps
// ErrPendingApproval and every cause found (errors.Is with the sentinels).
func (v Verdict) Err() error {
	if v.Verified() {
		return nil
	}
	if v.err == nil {
		return fmt.Errorf("%w: not verified", ErrPendingApproval)
	}
	return v.err
}

func pending(at time.Time, causes ...error) Verdict {
	v := Verdict{Status: StatusPendingApproval, At: at}
	v.setCauses(causes)
	return v
}

func (v *Verdict) setCauses(causes []error) {
	v.Status = StatusPendingApproval
	msgs := make([]string, 0, len(causes))
	for _, c := range causes {
		msgs = append(msgs, c.Error())
	}
	v.Reason = strings.Join(msgs, "; ")
	v.err = &verifyError{msg: v.Reason, causes: causes}
}

type verifyError struct {
	msg    string
	causes []error
}

func (e *verifyError) Error() string { return "pending approval: " + e.msg }
func (e *verifyError) Unwrap() []error {
	return append([]error{ErrPendingApproval}, e.causes...)
}

// VerifyOptions are the optional inputs of Verify.
type VerifyOptions struct {
	// ExpectedSigner is the DER Name from the device certificate's
	// id-pe-mudsigner extension (see MUDSignerName). When set, the signer's
	// subject must match it (RFC 8520 §13.2).
	ExpectedSigner []byte
}

// MaxSignatureBytes bounds the size of a signature accepted by Verify.
const MaxSignatureBytes = 256 << 10

// Verify checks a detached DER CMS signature over the exact bytes of body
// (binary: no line-ending canonicalisation) as RFC 8520 §13.2 requires: the
// signature math, the signer's chain to one of anchors judged at time at
// (normally now, never the signing time the signature claims), the
// digitalSignature key usage, and opts.ExpectedSigner. It needs no network.
// Every problem found is reported in the Verdict, which is pending approval
// unless all checks pass. A nil anchors is "no trust anchors", never "skip the
// chain check".
func Verify(body, sig []byte, anchors *x509.CertPool, at time.Time, opts VerifyOptions) Verdict {
	if len(sig) == 0 {
		return pending(at, fmt.Errorf("%w: empty signature", ErrSignatureMalformed))
	}
	if len(sig) > MaxSignatureBytes {
		return pending(at, fmt.Errorf("%w: %d bytes, limit %d", ErrSignatureMalformed, len(sig), MaxSignatureBytes))
	}
	p7, err := parseCMS(sig)
	if err != nil {
		return pending(at, fmt.Errorf("%w: %v", ErrSignatureMalformed, err))
	}
	if len(p7.Signers) != 1 {
		return pending(at, fmt.Errorf("%w: %d signers, exactly one expected", ErrSignatureMalformed, len(p7.Signers)))
	}
	signer := p7.GetOnlySigner()
	if signer == nil {
		return pending(at, fmt.Errorf("%w: the signer's certificate is not included in the signature", ErrSignatureMalformed))
	}
	v := Verdict{At: at, Signer: signer, SignerSubject: signer.Subject.String(), SignerIssuer: signer.Issuer.String()}
	if len(signer.AuthorityKeyId) > 0 {
		v.IssuerKeyID = signer.AuthorityKeyId
	}
	var causes []error

	// 0. Algorithms: SHA-1 and older are refused (chosen-prefix collisions);
	// the library and crypto/x509 would accept SHA-1.
	if err := checkAlgorithms(p7); err != nil {
		causes = append(causes, err)
	}

	// 1. Signature math over the exact bytes (nil trust store: pkcs7 checks
	// only the digest and the signature here; the chain is step 2).
	if err := checkMath(p7, body, at); err != nil {
		cause := fmt.Errorf("%w: %v", ErrSignatureInvalid, err)
		var mm *pkcs7.MessageDigestMismatchError
		if errors.As(err, &mm) {
			cause = fmt.Errorf("%w: the digest of the file bytes differs from the signed digest (file modified, or not the signed file)", ErrSignatureInvalid)
			if crlf := toCRLF(body); !bytes.Equal(crlf, body) && checkMath(p7, crlf, at) == nil {
				cause = fmt.Errorf("%w: the signature was made in text mode (line endings canonicalised to CRLF); RFC 8520 §13 requires binary signing (openssl cms -sign -binary)", ErrSignatureInvalid)
			}
		}
		causes = append(causes, cause)
	}

	// 2. Chain to a configured trust anchor, at time at.
	switch {
	case anchors == nil:
		causes = append(causes, fmt.Errorf("%w: cannot judge signer %q", ErrNoTrustAnchors, v.SignerSubject))
	default:
		chain, err := signerChain(signer, p7.Certificates, anchors, at)
		if err != nil {
			causes = append(causes, err)
		} else {
			for _, c := range chain {
				v.Chain = append(v.Chain, c.Subject.String())
			}
			if len(chain) > 1 && len(chain[1].SubjectKeyId) > 0 {
				v.IssuerKeyID = chain[1].SubjectKeyId
			}
			// The mandated library check, judged at time at (not the
			// signing time the signature claims).
			p7.Content = body
			if err := p7.VerifyWithChainAtTime(anchors, at); err != nil && len(causes) == 0 {
				causes = append(causes, fmt.Errorf("%w: %v", ErrUntrustedSigner, err))
			}
		}
	}

	// 3. Key usage: present, with digitalSignature.
	if signer.KeyUsage&x509.KeyUsageDigitalSignature == 0 {
		what := "has no key usage extension"
		if signer.KeyUsage != 0 {
			what = "has a key usage without digitalSignature"
		}
		causes = append(causes, fmt.Errorf("%w: signer %q %s", ErrSignerKeyUsage, v.SignerSubject, what))
	}

	// 4. id-pe-mudsigner.
	if len(opts.ExpectedSigner) > 0 {
		var want pkix.RDNSequence
		if rest, err := asn1.Unmarshal(opts.ExpectedSigner, &want); err != nil || len(rest) > 0 {
			causes = append(causes, fmt.Errorf("%w: the expected signer Name is not valid DER", ErrSignerMismatch))
		} else if !sameName(signer.RawSubject, opts.ExpectedSigner) {
			var wn pkix.Name
			wn.FillFromRDNSequence(&want)
			causes = append(causes, fmt.Errorf("%w: signer is %q, the device certificate names %q", ErrSignerMismatch, v.SignerSubject, wn.String()))
		}
	}

	if len(causes) > 0 {
		v.setCauses(causes)
		return v
	}
	v.Status = StatusVerified
	return v
}

func checkAlgorithms(p7 *pkcs7.PKCS7) error {
	si := p7.Signers[0]
	d := si.DigestAlgorithm.Algorithm
	if !d.Equal(pkcs7.OIDDigestAlgorithmSHA256) && !d.Equal(pkcs7.OIDDigestAlgorithmSHA384) && !d.Equal(pkcs7.OIDDigestAlgorithmSHA512) {
		return fmt.Errorf("%w: digest algorithm %s is not accepted (SHA-256, SHA-384 or SHA-512 required)", ErrSignatureInvalid, d)
	}
	e := si.DigestEncryptionAlgorithm.Algorithm
	for _, weak := range []asn1.ObjectIdentifier{pkcs7.OIDEncryptionAlgorithmRSAMD5, pkcs7.OIDEncryptionAlgorithmRSASHA1,
		pkcs7.OIDDigestAlgorithmECDSASHA1, pkcs7.OIDDigestAlgorithmDSA, pkcs7.OIDDigestAlgorithmDSASHA1} {
		if e.Equal(weak) {
			return fmt.Errorf("%w: signature algorithm %s is not accepted", ErrSignatureInvalid, e)
		}
	}
	return nil
}

// parseCMS parses DER CMS, turning a panic in the parser (malformed input
// from the network) into an error.
func parseCMS(sig []byte) (p7 *pkcs7.PKCS7, err error) {
	defer func() {
		if r := recover(); r != nil {
			p7, err = nil, fmt.Errorf("parser failure on malformed DER: %v", r)
		}
	}()
	if err := checkBERStructure(sig); err != nil {
		return nil, err
	}
	p7, err = pkcs7.Parse(sig)
	if err == nil && p7 == nil {
		err = errors.New("not a CMS structure")
	}
	return p7, err
}

func checkMath(p7 *pkcs7.PKCS7, content []byte, at time.Time) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("verifier failure on malformed input: %v", r)
		}
	}()
	p7.Content = content
	return p7.VerifyWithChainAtTime(nil, at)
}

// signerChain verifies the signer's chain with the certificates carried in
// the signature as intermediates, and classifies the failure.
func signerChain(signer *x509.Certificate, certs []*x509.Certificate, anchors *x509.CertPool, at time.Time) ([]*x509.Certificate, error) {
	inter := x509.NewCertPool()
	for _, c := range certs {
		if c != signer {
			inter.AddCert(c)
		}
	}
	chains, err := signer.Verify(x509.VerifyOptions{
		Roots:         anchors,
		Intermediates: inter,
		CurrentTime:   at,
		KeyUsages:     []x509.ExtKeyUsage{x509.ExtKeyUsageAny},
	})
	if err == nil {
		return chains[0], nil
	}
	subj := signer.Subject.String()
	var inv x509.CertificateInvalidError
	if errors.As(err, &inv) && inv.Reason == x509.Expired {
		return nil, fmt.Errorf("%w: signer %q at %s: %v", ErrSignerExpired, subj, at.UTC().Format(time.RFC3339), err)
	}
	return nil, fmt.Errorf("%w: signer %q issued by %q: %v", ErrUntrustedSigner, subj, signer.Issuer.String(), err)
}

// toCRLF canonicalises line endings the way S/MIME text mode does.
func toCRLF(b []byte) []byte {
	var out bytes.Buffer
	for i, c := range b {
		if c == '\n' && (i == 0 || b[i-1] != '\r') {
			out.WriteByte('\r')
		}
		out.WriteByte(c)
	}
	return out.Bytes()
}

// sameName compares two DER Names: byte-equal, or equal attribute by
// attribute with string values compared case-insensitively after folding
// white space (a simplification of RFC 5280 §7.1 / RFC 4518).
func sameName(a, b []byte) bool {
	if bytes.Equal(a, b) {
		return true
	}
	var ra, rb pkix.RDNSequence
	if rest, err := asn1.Unmarshal(a, &ra); err != nil || len(rest) > 0 {
		return false
	}
	if rest, err := asn1.Unmarshal(b, &rb); err != nil || len(rest) > 0 {
		return false
	}
	if len(ra) != len(rb) {
		return false
	}
	for i := range ra {
		if len(ra[i]) != len(rb[i]) {
			return false
		}
		for j := range ra[i] {
			x, y := ra[i][j], rb[i][j]
			if !x.Type.Equal(y.Type) {
				return false
			}
			xs, ok1 := x.Value.(string)
			ys, ok2 := y.Value.(string)
			if !ok1 || !ok2 || !strings.EqualFold(foldSpace(xs), foldSpace(ys)) {
				return false
			}
		}
	}
	return true
}

func foldSpace(s string) string { return strings.Join(strings.FieldsFunc(s, unicode.IsSpace), " ") }

// MUDSignerName returns the DER Name carried in a device certificate's
// id-pe-mudsigner extension, for VerifyOptions.ExpectedSigner; ok is false
// when the certificate has no such extension.
func MUDSignerName(device *x509.Certificate) (name []byte, ok bool, err error) {
	for _, e := range device.Extensions {
		if !e.Id.Equal(OIDMUDSigner) {
			continue
		}
		var rdn pkix.RDNSequence
		if rest, err := asn1.Unmarshal(e.Value, &rdn); err != nil || len(rest) > 0 {
			return nil, true, fmt.Errorf("reading id-pe-mudsigner of device certificate %q: not a DER Name", device.Subject.String())
		}
		return e.Value, true, nil
	}
	return nil, false, nil
}

// ParseCertificatesPEM returns every CERTIFICATE block of a PEM document.
func ParseCertificatesPEM(data []byte) ([]*x509.Certificate, error) {
	var out []*x509.Certificate
	for {
		var blk *pem.Block
		blk, data = pem.Decode(data)
		if blk == nil {
			break
		}
		if blk.Type != "CERTIFICATE" {
			continue
		}
		c, err := x509.ParseCertificate(blk.Bytes)
		if err != nil {
			return nil, fmt.Errorf("parsing certificate %d: %w", len(out)+1, err)
		}
		out = append(out, c)
	}
	if len(out) == 0 {
		return nil, errors.New("no PEM CERTIFICATE block found")
	}
	return out, nil
}

// LoadCertPool builds a pool from PEM files, starting from the system roots
// when system is true. Used for trust anchors and for extra server CAs.
func LoadCertPool(files []string, system bool) (*x509.CertPool, error) {
	pool := x509.NewCertPool()
	if system {
		sp, err := x509.SystemCertPool()
		if err != nil {
			return nil, fmt.Errorf("loading the system root certificates: %w", err)
		}
		pool = sp
	}
	for _, f := range files {
		data, err := os.ReadFile(f)
		if err != nil {
			return nil, fmt.Errorf("reading certificates: %w", err)
		}
		certs, err := ParseCertificatesPEM(data)
		if err != nil {
			return nil, fmt.Errorf("reading certificates from %s: %w", f, err)
		}
		for _, c := range certs {
			pool.AddCert(c)
		}
	}
	return pool, nil
}
