// Package mudfetch owns getting a MUD file from the network and deciding
// whether it can be trusted (RFC 8520 §1.6, §3.5, §13, §16):
//
//   - an HTTPS-only fetcher with server-certificate validation, the Accept,
//     Accept-Language and User-Agent headers, connect and total timeouts, a
//     body-size limit, a bounded number of same-host HTTPS redirects, a guard
//     against reaching the gateway's own networks (checked on the address
//     actually dialled), and limits on concurrent and repeated fetches per
//     device and overall ([Fetcher]);
//   - retrieval of the file's mud-signature and verification of the detached
//     DER CMS signature over the exact bytes at the current time, with the
//     key-usage, trust-anchor and id-pe-mudsigner checks ([Verify], usable
//     offline);
//   - pinning of the signer and the URL's authority and the decision whether
//     a later file needs an administrator's approval ([Pin], [ComparePins]);
//   - cache-validity and HTTP validators (ETag, Last-Modified) for refreshes
//     ([Result.NextRefresh], [Request.Cached]).
//
// The package reads only the few ietf-mud:mud leaves it needs ([DecodeHeader]);
// it never parses ACLs (that is package mudfile) and it persists nothing
// (that is package store): it hands values and decisions to the manager.
//
// A file that is not verified never comes back with a nil error: [Fetcher.Fetch]
// and [Verdict.Err] return an error wrapping [ErrPendingApproval] and the
// precise cause, so a caller that only checks the error cannot enforce an
// unverified file by mistake.
package mudfetch
