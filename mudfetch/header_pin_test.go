package mudfetch

import (
	"errors"
	"slices"
	"strings"
	"testing"
	"time"
)

// RFC 8520 §3.5: cache-validity 1..168, default 48.
func TestDecodeHeader(t *testing.T) {
	for _, tc := range []struct {
		name    string
		body    string
		cv      time.Duration
		sig     string
		warn    string
		wantErr bool
	}{
		{name: "default", body: `{"ietf-mud:mud":{"mud-url":"https://a.example/x"}}`, cv: 48 * time.Hour},
		{name: "24", body: `{"ietf-mud:mud":{"cache-validity":24,"mud-signature":"x.p7s"}}`, cv: 24 * time.Hour, sig: "x.p7s"},
		{name: "over 168", body: `{"ietf-mud:mud":{"cache-validity":14400}}`, cv: 168 * time.Hour, warn: "above 168"},
		{name: "zero", body: `{"ietf-mud:mud":{"cache-validity":0}}`, cv: time.Hour, warn: "below 1"},
		{name: "fraction", body: `{"ietf-mud:mud":{"cache-validity":1.5}}`, cv: 48 * time.Hour, warn: "not an integer"},
		{name: "string", body: `{"ietf-mud:mud":{"cache-validity":"48"}}`, cv: 48 * time.Hour, warn: "not a number"},
		{name: "bad signature type", body: `{"ietf-mud:mud":{"mud-signature":5}}`, cv: 48 * time.Hour, warn: "mud-signature"},
		{name: "bad last-update", body: `{"ietf-mud:mud":{"last-update":"2019-01-28T11:20:51"}}`, cv: 48 * time.Hour, warn: "last-update"},
		{name: "no mud", body: `{"ietf-access-control-list:acls":{}}`, wantErr: true},
		{name: "array", body: `[1,2]`, wantErr: true},
		{name: "double-encoded", body: `"{\"ietf-mud:mud\":{}}"`, wantErr: true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			h, err := DecodeHeader([]byte(tc.body))
			if tc.wantErr {
				if !errors.Is(err, ErrMalformedFile) {
					t.Fatalf("error %v, want ErrMalformedFile", err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if h.CacheValidity != tc.cv || h.Signature != tc.sig {
				t.Errorf("cache-validity %v signature %q", h.CacheValidity, h.Signature)
			}
			if tc.warn != "" && !strings.Contains(strings.Join(h.Warnings, "\n"), tc.warn) {
				t.Errorf("warnings %q, want %q", h.Warnings, tc.warn)
			}
		})
	}
	h, _ := DecodeHeader([]byte(`{"ietf-mud:mud":{"last-update":"2019-01-28T11:20:51+01:00"}}`))
	if !h.LastUpdate.Equal(time.Date(2019, 1, 28, 10, 20, 51, 0, time.UTC)) {
		t.Errorf("last-update %v", h.LastUpdate)
	}
}

func TestSignatureURL(t *testing.T) {
	for _, tc := range []struct{ mudURL, sig, fetched, want string }{
		{"https://a.example/dir/file.json", "file.json.p7s", "https://a.example/dir/file.json", "https://a.example/dir/file.json.p7s"},
		{"https://a.example/dir/file.json", "/sigs/f.p7s", "", "https://a.example/sigs/f.p7s"},
		{"https://a.example/dir/file.json", "https://b.example/f.p7s", "", "https://b.example/f.p7s"},
		// mud-url missing or not https: the fetched URL is the base.
		{"", "f.p7s", "https://c.example/x/y", "https://c.example/x/f.p7s"},
		{"http://a.example/dir/file.json", "f.p7s", "https://c.example/x/y", "https://c.example/x/f.p7s"},
	} {
		got, err := Header{MUDURL: tc.mudURL, Signature: tc.sig}.SignatureURL(tc.fetched)
		if err != nil || got != tc.want {
			t.Errorf("%q against %q/%q: %q %v, want %q", tc.sig, tc.mudURL, tc.fetched, got, err, tc.want)
		}
	}
	if _, err := (Header{MUDURL: "https://a.example/x"}).SignatureURL(""); !errors.Is(err, ErrNoSignature) {
		t.Errorf("no mud-signature: %v", err)
	}
	if _, err := (Header{Signature: "rel.p7s"}).SignatureURL(""); !errors.Is(err, ErrBadURL) {
		t.Errorf("relative without base: %v", err)
	}
}

// RFC 8520 §16: signer and authority changes are flagged; the pin follows
// draft-ietf-iotops-mud-acceptable-urls.
func TestComparePins(t *testing.T) {
	p := newPKI(t, algECDSA, "Example")
	body := []byte(testMUD)
	now := time.Now()
	c1, k1 := p.signer(t, "signer one", signerKU, nil)
	c2, k2 := p.signer(t, "signer two", signerKU, nil)
	other := newPKI(t, algECDSA, "Example") // same names, another CA key
	c3, k3 := other.signer(t, "signer one", signerKU, nil)
	v1 := Verify(body, signDetached(t, body, c1, k1, p.inter), p.pool(), now, VerifyOptions{})
	v2 := Verify(body, signDetached(t, body, c2, k2, p.inter), p.pool(), now, VerifyOptions{})
	v3 := Verify(body, signDetached(t, body, c3, k3, other.inter), other.pool(), now, VerifyOptions{})
	unsigned := Verify(body, nil, p.pool(), now, VerifyOptions{})
	pin := func(u string, v Verdict) Pin {
		t.Helper()
		pp, err := PinFor(u, v)
		if err != nil {
			t.Fatal(err)
		}
		return pp
	}
	base := pin("https://mud.example.com/models/bulb-v1", v1)
	if base.Authority != "mud.example.com" || base.SignerSubject != c1.Subject.String() || len(base.IssuerKeyID) == 0 {
		t.Fatalf("pin %+v", base)
	}
	for _, tc := range []struct {
		name string
		cur  Pin
		want []Change
	}{
		{"same", pin("https://MUD.example.com/models/bulb-v1", v1), nil},
		{"new last segment", pin("https://mud.example.com/models/bulb-v2", v1), nil},
		{"other directory", pin("https://mud.example.com/other/bulb-v2", v1), []Change{ChangeURL}},
		{"query added", pin("https://mud.example.com/models/bulb-v1?x=1", v1), []Change{ChangeURL}},
		{"other authority", pin("https://mud.evil.example/models/bulb-v1", v1), []Change{ChangeAuthority}},
		{"other port", pin("https://mud.example.com:8443/models/bulb-v1", v1), []Change{ChangeAuthority}},
		{"signer changed", pin("https://mud.example.com/models/bulb-v1", v2), []Change{ChangeSigner}},
		{"issuing CA changed, same names", pin("https://mud.example.com/models/bulb-v1", v3), []Change{ChangeIssuer}},
		{"signature gone", pin("https://mud.example.com/models/bulb-v1", unsigned), []Change{ChangeSigner, ChangeIssuer}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d := ComparePins(base, tc.cur)
			if !slices.Equal(d.Changes, tc.want) || d.NeedsApproval != (len(tc.want) > 0) || len(d.Reasons) != len(d.Changes) {
				t.Errorf("changes %v (%q), want %v", d.Changes, d.Reasons, tc.want)
			}
		})
	}
	// An approved unsigned file, then a signed one: a change too.
	if d := ComparePins(pin("https://mud.example.com/models/bulb-v1", unsigned), base); !slices.Equal(d.Changes, []Change{ChangeSigner}) {
		t.Errorf("unsigned → signed: %v", d.Changes)
	}
	if _, err := PinFor("http://mud.example.com/x", v1); !errors.Is(err, ErrNotHTTPS) {
		t.Errorf("PinFor(http): %v", err)
	}
}
