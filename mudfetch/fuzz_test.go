package mudfetch

import (
	"crypto/x509"
	"encoding/pem"
	"errors"
	"testing"
	"time"
)

// FuzzVerify feeds malformed DER signatures and trust-anchor certificates,
// seeded from the real vectors, through Verify: no panic, and a verdict is
// verified only with a nil error and a signer.
func FuzzVerify(f *testing.F) {
	pemDER := func(rel string) []byte {
		blk, _ := pem.Decode(corpusFile(f, rel))
		if blk == nil {
			f.Fatalf("%s: no PEM", rel)
		}
		return blk.Bytes
	}
	lumCA := pemDER("cisco-mud-manager/luminaire/luminaire-cacert.pem")
	ciraCA := pemDER("ciralabs-highway/spec/files/cert/mud_prime256v1.crt")
	for _, v := range []struct{ body, sig string }{
		{"cisco-mud-manager/luminaire/fs/Luminaire_150.json", "cisco-mud-manager/luminaire/fs/Luminaire_150.p7s"},
		{"hslatman-mud-file-server/examples/lightbulb2000.json", "hslatman-mud-file-server/examples/lightbulb2000.json.p7s"},
		{"ciralabs-highway/spec/files/mudsig/toaster_mud.json", "ciralabs-highway/spec/files/mudsig/toaster_mud.json.sig"},
		{"ciralabs-highway/spec/files/mudsig/thermostat-example.json", "ciralabs-highway/spec/files/mudsig/thermostat-example.json.sig"},
	} {
		body, sig := corpusFile(f, v.body), corpusFile(f, v.sig)
		f.Add(body, sig, lumCA, int64(1538352000)) // 2018-10-01
		f.Add(body, sig, ciraCA, int64(1559347200))
		f.Add(body[:len(body)/2], sig[:len(sig)-1], lumCA[:len(lumCA)/2], int64(0))
	}
	f.Add([]byte("{}"), []byte{0x30, 0x80, 0x06, 0x09, 0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x07, 0x02, 0xa0, 0x80}, []byte{0x30, 0x00}, int64(-1))
	f.Fuzz(func(t *testing.T, body, sig, anchorDER []byte, unix int64) {
		pool := x509.NewCertPool()
		if c, err := x509.ParseCertificate(anchorDER); err == nil {
			pool.AddCert(c)
		}
		at := timeFromUnix(unix)
		v := Verify(body, sig, pool, at, VerifyOptions{ExpectedSigner: anchorDER})
		if v.Verified() {
			if v.Err() != nil || v.Signer == nil {
				t.Fatalf("verified verdict with error %v / signer %v", v.Err(), v.Signer)
			}
		} else if !errors.Is(v.Err(), ErrPendingApproval) || v.Reason == "" {
			t.Fatalf("unverified verdict without reason: %v", v.Err())
		}
		// The certificate path handling on its own.
		if c, err := x509.ParseCertificate(anchorDER); err == nil {
			MUDSignerName(c)
			sameName(c.RawSubject, sig)
		}
	})
}

// FuzzDecodeHeader: the minimal ietf-mud:mud decode never panics and keeps
// cache-validity inside 1..168 hours.
func FuzzDecodeHeader(f *testing.F) {
	for _, rel := range []string{
		"cisco-mud-manager/luminaire/fs/Luminaire_150.json",
		"hslatman-mud-file-server/examples/lightbulb2000.json",
		"ciralabs-highway/spec/files/mudsig/toaster_mud.json",
	} {
		f.Add(corpusFile(f, rel), "https://mud.example.com/dir/file")
	}
	f.Add([]byte(`{"ietf-mud:mud":{"cache-validity":1e400,"mud-signature":"//x/../y","mud-url":"https://[::1"}}`), "")
	f.Fuzz(func(t *testing.T, body []byte, fetched string) {
		h, err := DecodeHeader(body)
		if err != nil {
			if !errors.Is(err, ErrMalformedFile) {
				t.Fatalf("error without ErrMalformedFile: %v", err)
			}
			return
		}
		if h.CacheValidity < MinCacheValidity || h.CacheValidity > MaxCacheValidity {
			t.Fatalf("cache-validity %v out of range", h.CacheValidity)
		}
		h.SignatureURL(fetched)
	})
}

func timeFromUnix(s int64) time.Time { return time.Unix(s%(1<<40), 0) }
