package mudfetch

import (
	"errors"
	"fmt"
)

// Sentinel errors. Every error returned by this package wraps one or more of
// them, so the manager can switch with errors.Is; the message around them says
// what was being done and with what.
var (
	// Fetch refusals and failures.
	ErrBadURL            = errors.New("malformed URL")
	ErrNotHTTPS          = errors.New("URL scheme is not https")
	ErrForbiddenAddress  = errors.New("destination address is forbidden")
	ErrServerCertificate = errors.New("server certificate not valid")
	ErrRedirectRefused   = errors.New("redirect refused")
	ErrTooManyRedirects  = errors.New("too many redirects")
	ErrBodyTooLarge      = errors.New("response body too large")
	ErrHTTPStatus        = errors.New("unexpected HTTP status")
	ErrTimeout           = errors.New("timed out")
	ErrBusy              = errors.New("fetch limit reached: too many concurrent fetches")
	ErrRateLimited       = errors.New("fetch limit reached: too many fetches in the window")
	ErrFetch             = errors.New("fetch failed")

	// The file itself.
	ErrMalformedFile = errors.New("MUD file header cannot be read")

	// Verification outcomes. Every one of them is also ErrPendingApproval.
	ErrPendingApproval    = errors.New("pending approval")
	ErrNoSignature        = errors.New("MUD file has no mud-signature")
	ErrSignatureFetch     = errors.New("signature could not be fetched")
	ErrSignatureMalformed = errors.New("signature is not a usable DER CMS SignedData")
	ErrSignatureInvalid   = errors.New("signature does not match the file bytes")
	ErrNoTrustAnchors     = errors.New("no trust anchors configured")
	ErrUntrustedSigner    = errors.New("signer certificate does not chain to a trust anchor")
	ErrSignerExpired      = errors.New("signer certificate chain is expired or not yet valid")
	ErrSignerKeyUsage     = errors.New("signer certificate lacks the digitalSignature key usage")
	ErrSignerMismatch     = errors.New("signer subject does not match the device's id-pe-mudsigner")
)

// HTTPStatusError is the error for a response other than 200 (or 304 on a
// conditional refresh). It wraps ErrHTTPStatus.
type HTTPStatusError struct {
	URL  string
	Code int
}

func (e *HTTPStatusError) Error() string {
	return fmt.Sprintf("GET %s: HTTP status %d", e.URL, e.Code)
}

// Unwrap makes errors.Is(err, ErrHTTPStatus) true.
func (e *HTTPStatusError) Unwrap() error { return ErrHTTPStatus }

// ForbiddenAddressError names the address that was refused and why. It wraps
// ErrForbiddenAddress.
type ForbiddenAddressError struct {
	Addr  string // the address that would have been dialled
	Class string // "loopback", "link-local", "private", ...
}

func (e *ForbiddenAddressError) Error() string {
	return fmt.Sprintf("refusing to connect to %s: %s addresses are forbidden", e.Addr, e.Class)
}

// Unwrap makes errors.Is(err, ErrForbiddenAddress) true.
func (e *ForbiddenAddressError) Unwrap() error { return ErrForbiddenAddress }
