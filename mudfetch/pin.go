package mudfetch

import (
	"bytes"
	"encoding/hex"
	"fmt"
	"net/url"
	"path"
	"strings"
)

// Pin is what is remembered of the first accepted file for a MUD URL or a
// MAC (RFC 8520 §16, draft-ietf-iotops-mud-acceptable-urls): who signed it,
// which CA issued the signer, and the URL and its authority. The store
// persists it; ComparePins decides whether a later file needs approval.
type Pin struct {
	URL              string `json:"url"`                          // the canonical MUD URL
	Authority        string `json:"authority"`                    // lower-case host[:port] of URL (port only when not 443)
	SignerSubject    string `json:"signer_subject,omitempty"`     // RFC 4514 form, for people
	SignerSubjectDER []byte `json:"signer_subject_der,omitempty"` // the DER Name, for comparison
	IssuerKeyID      []byte `json:"issuer_key_id,omitempty"`      // SKI of the signer's issuing CA
}

// PinFor builds the Pin of a file fetched from (or emitted as) mudURL with
// verdict v. The signer fields are empty when the signature could not be
// parsed (an administrator may still approve such a file).
func PinFor(mudURL string, v Verdict) (Pin, error) {
	u, err := checkURL(mudURL)
	if err != nil {
		return Pin{}, err
	}
	p := Pin{URL: u.String(), Authority: authority(u)}
	if v.Signer != nil {
		p.SignerSubject = v.Signer.Subject.String()
		p.SignerSubjectDER = append([]byte(nil), v.Signer.RawSubject...)
		p.IssuerKeyID = append([]byte(nil), v.IssuerKeyID...)
		if len(p.IssuerKeyID) == 0 && len(v.Chain) == 1 { // self-signed signer used as its own anchor
			p.IssuerKeyID = append([]byte(nil), v.Signer.SubjectKeyId...)
		}
	}
	return p, nil
}

func authority(u *url.URL) string {
	h := strings.ToLower(u.Hostname())
	if strings.Contains(h, ":") {
		h = "[" + h + "]"
	}
	if p := portOf(u); p != "443" {
		h += ":" + p
	}
	return h
}

// Change names one difference between a pinned file and a later one.
type Change string

// The differences ComparePins reports.
const (
	ChangeAuthority Change = "authority-changed"
	ChangeURL       Change = "url-not-acceptable"
	ChangeSigner    Change = "signer-changed"
	ChangeIssuer    Change = "issuer-changed"
)

// Decision is the outcome of ComparePins.
type Decision struct {
	NeedsApproval bool     `json:"needs_approval"`
	Changes       []Change `json:"changes,omitempty"`
	Reasons       []string `json:"reasons,omitempty"` // one sentence per change, for the administrator
}

func (d *Decision) add(c Change, reason string) {
	d.NeedsApproval = true
	d.Changes = append(d.Changes, c)
	d.Reasons = append(d.Reasons, reason)
}

// ComparePins says whether a later file (cur) may replace the pinned one
// (old) without an administrator's approval. It needs approval when the URL's
// authority changed (RFC 8520 §16), when the new URL differs from the pinned
// one other than in its last path segment (acceptable-urls), when the signer's
// subject changed, or when the signer's issuing CA changed (acceptable-urls
// pins the CA's key identifier and the subject). A signer appearing where the
// pinned file had none is a change too. An accepted cur becomes the new pin.
func ComparePins(old, cur Pin) Decision {
	var d Decision
	if old.Authority != cur.Authority {
		d.add(ChangeAuthority, fmt.Sprintf("the MUD URL's authority changed from %q to %q", old.Authority, cur.Authority))
	} else if ok, why := AcceptableURL(old.URL, cur.URL); !ok {
		d.add(ChangeURL, why)
	}
	switch {
	case len(old.SignerSubjectDER) == 0 && len(cur.SignerSubjectDER) == 0:
	case len(old.SignerSubjectDER) == 0:
		d.add(ChangeSigner, fmt.Sprintf("the file is now signed by %q; the pinned file had no usable signature", cur.SignerSubject))
	case len(cur.SignerSubjectDER) == 0:
		d.add(ChangeSigner, fmt.Sprintf("the file has no usable signature; the pinned file was signed by %q", old.SignerSubject))
	case !sameName(old.SignerSubjectDER, cur.SignerSubjectDER):
		d.add(ChangeSigner, fmt.Sprintf("the signer changed from %q to %q", old.SignerSubject, cur.SignerSubject))
	}
	if len(old.IssuerKeyID) > 0 && !bytes.Equal(old.IssuerKeyID, cur.IssuerKeyID) {
		d.add(ChangeIssuer, fmt.Sprintf("the signer's issuing CA changed (key id %s, pinned %s)", hexOrNone(cur.IssuerKeyID), hexOrNone(old.IssuerKeyID)))
	}
	return d
}

func hexOrNone(b []byte) string {
	if len(b) == 0 {
		return "none"
	}
	return hex.EncodeToString(b)
}

// AcceptableURL applies the acceptable-urls rule: a new MUD URL for the same
// device is acceptable when it equals the pinned one or differs only in the
// last path segment (same scheme, authority, directory, no query change).
func AcceptableURL(oldURL, newURL string) (bool, string) {
	o, err := checkURL(oldURL)
	if err != nil {
		return false, fmt.Sprintf("the pinned URL is unusable: %v", err)
	}
	n, err := checkURL(newURL)
	if err != nil {
		return false, fmt.Sprintf("the new URL is unusable: %v", err)
	}
	if o.String() == n.String() {
		return true, ""
	}
	if authority(o) != authority(n) {
		return false, fmt.Sprintf("the URL moved from authority %q to %q", authority(o), authority(n))
	}
	if o.RawQuery != n.RawQuery {
		return false, fmt.Sprintf("the URL's query changed from %q to %q", o.RawQuery, n.RawQuery)
	}
	op, np := o.EscapedPath(), n.EscapedPath()
	if path.Dir(op) != path.Dir(np) || strings.HasSuffix(op, "/") || strings.HasSuffix(np, "/") {
		return false, fmt.Sprintf("the URL path %q is not %q with only its last segment changed", np, op)
	}
	return true, ""
}
