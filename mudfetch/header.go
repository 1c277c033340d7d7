package mudfetch

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"time"
)

// Cache-validity bounds of ietf-mud (hours).
const (
	MinCacheValidity     = 1 * time.Hour
	MaxCacheValidity     = 168 * time.Hour
	DefaultCacheValidity = 48 * time.Hour
)

// Header is the handful of ietf-mud:mud leaves this package needs. It is a
// minimal, tolerant decode: validating the file is package mudfile's job.
type Header struct {
	MUDURL        string        // "mud-url", as written
	Signature     string        // "mud-signature", as written ("" if absent)
	LastUpdate    time.Time     // "last-update"; zero if absent or unparsable
	CacheValidity time.Duration // "cache-validity", clamped to 1..168 h; 48 h if absent or invalid
	// Warnings says which of the above were absent or out of range and
	// what was used instead.
	Warnings []string
}

// DecodeHeader reads the ietf-mud:mud container of a MUD file. It fails only
// when body is not a JSON object with an "ietf-mud:mud" object in it; odd
// leaf values become warnings with a safe default.
func DecodeHeader(body []byte) (Header, error) {
	var doc struct {
		MUD *struct {
			MUDURL        json.RawMessage `json:"mud-url"`
			Signature     json.RawMessage `json:"mud-signature"`
			LastUpdate    json.RawMessage `json:"last-update"`
			CacheValidity json.RawMessage `json:"cache-validity"`
		} `json:"ietf-mud:mud"`
	}
	dec := json.NewDecoder(bytes.NewReader(body))
	if err := dec.Decode(&doc); err != nil {
		return Header{}, fmt.Errorf("%w: not a JSON object: %v", ErrMalformedFile, err)
	}
	if doc.MUD == nil {
		return Header{}, fmt.Errorf("%w: no \"ietf-mud:mud\" object", ErrMalformedFile)
	}
	h := Header{CacheValidity: DefaultCacheValidity}
	m := doc.MUD
	h.MUDURL = rawString(m.MUDURL, "mud-url", &h)
	h.Signature = rawString(m.Signature, "mud-signature", &h)
	if lu := rawString(m.LastUpdate, "last-update", &h); lu != "" {
		t, err := time.Parse(time.RFC3339Nano, lu)
		if err != nil {
			h.Warnings = append(h.Warnings, "last-update "+strconv.Quote(lu)+" is not an RFC 3339 date-and-time with offset; ignored")
		} else {
			h.LastUpdate = t
		}
	}
	if len(m.CacheValidity) > 0 && string(m.CacheValidity) != "null" {
		var n json.Number
		if err := json.Unmarshal(m.CacheValidity, &n); err != nil || m.CacheValidity[0] == '"' {
			h.Warnings = append(h.Warnings, "cache-validity is not a number; using 48 hours")
		} else if v, err := strconv.ParseInt(n.String(), 10, 64); err != nil {
			h.Warnings = append(h.Warnings, "cache-validity "+n.String()+" is not an integer; using 48 hours")
		} else {
			switch {
			case v < 1:
				h.CacheValidity = MinCacheValidity
				h.Warnings = append(h.Warnings, "cache-validity "+n.String()+" is below 1; using 1 hour")
			case v > 168:
				h.CacheValidity = MaxCacheValidity
				h.Warnings = append(h.Warnings, "cache-validity "+n.String()+" is above 168; using 168 hours")
			default:
				h.CacheValidity = time.Duration(v) * time.Hour
			}
		}
	}
	return h, nil
}

func rawString(raw json.RawMessage, name string, h *Header) string {
	if len(raw) == 0 || string(raw) == "null" {
		return ""
	}
	var s string
	if err := json.Unmarshal(raw, &s); err != nil {
		h.Warnings = append(h.Warnings, name+" is not a string; ignored")
		return ""
	}
	return s
}

// SignatureURL resolves the file's mud-signature reference: relative
// references are resolved against the file's mud-url when that is an
// absolute https URL, otherwise against fetchedURL (the URL the file was
// actually read from). It returns ErrNoSignature if the file names none.
func (h Header) SignatureURL(fetchedURL string) (string, error) {
	if h.Signature == "" {
		return "", ErrNoSignature
	}
	ref, err := url.Parse(h.Signature)
	if err != nil {
		return "", fmt.Errorf("%w: mud-signature %q: %v", ErrBadURL, h.Signature, err)
	}
	var base *url.URL
	if u, err := url.Parse(h.MUDURL); err == nil && u.IsAbs() && u.Scheme == "https" && u.Host != "" {
		base = u
	} else if u, err := url.Parse(fetchedURL); err == nil && u.IsAbs() {
		base = u
	}
	if base == nil {
		if !ref.IsAbs() {
			return "", fmt.Errorf("%w: relative mud-signature %q and no absolute base URL", ErrBadURL, h.Signature)
		}
		return ref.String(), nil
	}
	return base.ResolveReference(ref).String(), nil
}
