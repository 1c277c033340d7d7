package manager

import (
	"bytes"
	"fmt"
	"strings"
	"time"

	"github.com/openmud/mud/api"
	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/store"
)

// fetchOutcome is a finished fetch, handed back to the Run goroutine.
type fetchOutcome struct {
	url   string
	res   *mudfetch.Result
	err   error
	took  time.Duration
	force bool
}

// startFetch starts fetching u in a goroutine the manager owns (bounded by
// MaxFetches, stopped by Run's context, waited for when Run returns).
func (m *Manager) startFetch(u, key string, force bool) {
	if m.st.fetching[u] || m.fetchCtx == nil {
		return
	}
	m.st.fetching[u] = true
	req := mudfetch.Request{URL: u, Key: key}
	if f := m.st.files[u]; f != nil && f.Verdict == store.VerdictValid && !force {
		req.Cached = cachedResult(f)
	}
	ctx := m.fetchCtx
	m.fetchWG.Add(1)
	go func() {
		defer m.fetchWG.Done()
		select {
		case m.fetchSem <- struct{}{}:
		case <-ctx.Done():
			return
		}
		start := time.Now()
		res, err := m.cfg.Fetcher.Fetch(ctx, req)
		<-m.fetchSem
		select {
		case m.results <- fetchOutcome{url: u, res: res, err: err, took: time.Since(start), force: force}:
		case <-ctx.Done():
		}
	}()
}

func cachedResult(f *store.MUDFile) *mudfetch.Result {
	h, _ := mudfetch.DecodeHeader(f.Body)
	return &mudfetch.Result{URL: f.URL, FinalURL: f.URL, Body: f.Body, ETag: f.ETag, LastModified: f.LastModified,
		FetchedAt: f.FetchedAt, SignatureURL: f.SignatureURL, Signature: f.Signature, Header: h}
}

// inUse reports whether a live device announces u.
func (m *Manager) inUse(u string) bool {
	for _, d := range m.st.devices {
		if d.MUDURL == u && d.State != store.StateRemoved {
			return true
		}
	}
	return false
}

// refreshDue starts the fetches whose time has come: cached files past
// their refresh time (RFC 8520 §3.5: no earlier) and retries after failures.
func (m *Manager) refreshDue(now time.Time) {
	for u, f := range m.st.files {
		if !f.RefreshDue.IsZero() && !now.Before(f.RefreshDue) && !m.st.fetching[u] && m.inUse(u) {
			if at, ok := m.st.retryAt[u]; ok && now.Before(at) {
				continue
			}
			m.startFetch(u, "", false)
		}
	}
	for u, at := range m.st.retryAt {
		if _, cached := m.st.files[u]; cached || now.Before(at) || m.st.fetching[u] {
			continue
		}
		if !m.inUse(u) {
			delete(m.st.retryAt, u)
			delete(m.st.fetchErr, u)
			continue
		}
		delete(m.st.fetchErr, u)
		m.startFetch(u, "", false)
	}
}

// onFetch handles a finished fetch.
func (m *Manager) onFetch(o fetchOutcome) {
	s := m.st
	delete(s.fetching, o.url)
	m.metrics.fetches.Add(1)
	m.metrics.fetchSeconds.observe(o.took.Seconds())
	now := m.now()
	if o.res == nil {
		m.metrics.fetchFailures.Add(1)
		s.retryAt[o.url] = now.Add(m.cfg.RetryInterval)
		if f := s.files[o.url]; f != nil {
			// RFC 8520 §1.6, §3.5: the cached file stays enforced.
			m.log.Warn("MUD server unreachable; keeping the cached file", "url", o.url, "cached_at", f.FetchedAt, "err", o.err)
			m.event("", "fetch-failed", "", "", fmt.Sprintf("%s: %v; the cached file (fetched %s) stays in force", o.url, o.err, f.FetchedAt.Format(time.RFC3339)))
			return
		}
		s.fetchErr[o.url] = "fetching the MUD file failed: " + errString(o.err)
		m.reevaluateURL(o.url, "fetch-failed", "")
		return
	}
	delete(s.retryAt, o.url)
	delete(s.fetchErr, o.url)
	verdict, reason := verdictOf(o.res.Verdict)
	if verdict != store.VerdictValid {
		m.metrics.verifyFailures.Add(1)
	}
	nf := fileFromResult(o.res, verdict, reason)
	nf.URL = o.url // the key devices use, whatever normalisation the fetcher did
	old := s.files[o.url]
	changed := old == nil || !bytes.Equal(old.Body, nf.Body) || old.Verdict != nf.Verdict || old.Signer != nf.Signer
	if changed && old != nil && old.Verdict == store.VerdictValid {
		if why := m.updateNeedsApproval(nf); len(why) > 0 {
			// The verified file stays in force; the update waits for an
			// administrator (RFC 8520 §13.2, §16).
			s.candidate[o.url] = &candidate{file: nf, reasons: why}
			upd := *old
			upd.RefreshDue = nf.RefreshDue
			m.putFile(&upd, false)
			m.event("", "update-pending-approval", "", "", fmt.Sprintf("%s: the refreshed file needs approval (%s); the cached verified file stays in force", o.url, strings.Join(why, "; ")))
			return
		}
	}
	m.putFile(nf, changed)
	if changed {
		kind := "fetched"
		if old != nil {
			kind = "file-updated"
		}
		m.reevaluateURL(o.url, kind, string(verdict))
	}
}

// candidate is a refreshed file that may not replace the verified one in
// force without an administrator's approval.
type candidate struct {
	file    *store.MUDFile
	reasons []string
}

// updateNeedsApproval says why a refreshed file must not silently replace
// a verified one: its signature, its content (IP literals), or a signer
// other than the one pinned for its URL — unless this exact file was
// approved for the URL.
func (m *Manager) updateNeedsApproval(f *store.MUDFile) []string {
	if a, ok := m.st.approvalsByURL[f.URL]; ok && a.Digest == f.Digest() {
		return nil
	}
	var why []string
	if f.Verdict != store.VerdictValid {
		why = append(why, joinMsg("the signature is not valid ("+string(f.Verdict)+")", f.VerdictReason))
	}
	md := compileModel(f.URL, f)
	if md.err != "" {
		why = append(why, md.err)
	} else {
		why = append(why, md.pol.NeedsApproval...)
	}
	if p, ok := m.st.pinsByURL[f.URL]; ok && p.Signer != "" && f.Signer != p.Signer {
		why = append(why, fmt.Sprintf("the signer changed from %q to %q", p.Signer, f.Signer))
	}
	return why
}

// adoptCandidate approves the pending update of a URL for every device
// announcing it and puts it in force.
func (m *Manager) adoptCandidate(u string, by, reason string) error {
	c := m.st.candidate[u]
	a := store.Approval{MUDURL: u, Digest: c.file.Digest(), By: by, At: m.now(), Reason: reason}
	if err := m.cfg.Store.Update(func(tx *store.Tx) error { return tx.ApprovalsByURL().Put(a) }); err != nil {
		return fmt.Errorf("recording the approval of the update of %s: %w", u, err)
	}
	m.st.approvalsByURL[u] = a
	m.putFile(c.file, true)
	m.reevaluateURL(u, "update-approved", "approved by "+by)
	return nil
}

func errString(err error) string {
	if err == nil {
		return "unknown error"
	}
	return err.Error()
}

// putFile caches a file (store first), and drops its compiled model when
// the body changed.
func (m *Manager) putFile(f *store.MUDFile, changed bool) {
	if err := m.cfg.Store.Update(func(tx *store.Tx) error { return tx.MUDFiles().Put(*f) }); err != nil {
		m.log.Error("caching MUD file", "url", f.URL, "err", err)
		return
	}
	m.st.files[f.URL] = f
	if changed {
		delete(m.st.models, f.URL)
		delete(m.st.candidate, f.URL)
	}
}

func fileFromResult(r *mudfetch.Result, v store.Verdict, reason string) *store.MUDFile {
	f := &store.MUDFile{URL: r.URL, Body: r.Body, Signature: r.Signature, SignatureURL: r.SignatureURL,
		ETag: r.ETag, LastModified: r.LastModified, FetchedAt: r.FetchedAt, Verdict: v, VerdictReason: reason,
		Signer: r.Verdict.SignerSubject, CacheValidity: r.Header.CacheValidity, RefreshDue: r.NextRefresh()}
	if v == store.VerdictValid {
		f.VerifiedAt = r.Verdict.At
	}
	return f
}

// importFile verifies a file obtained out of band and caches it (RFC 8520
// §1.6); returns the file, the devices updated, and an error when the
// file cannot be taken.
func (m *Manager) importFile(body, sig []byte) (*store.MUDFile, int, error) {
	h, err := mudfetch.DecodeHeader(body)
	if err != nil {
		return nil, 0, errorf(errInvalid, "reading the imported file: %v", err)
	}
	if h.MUDURL == "" {
		return nil, 0, errorf(errInvalid, "the imported file has no mud-url")
	}
	now := m.now()
	v := mudfetch.Verify(body, sig, m.cfg.Anchors, now, mudfetch.VerifyOptions{})
	verdict, reason := verdictOf(v)
	if len(sig) == 0 {
		verdict, reason = store.VerdictUnsigned, "no signature given"
	}
	if verdict != store.VerdictValid {
		m.metrics.verifyFailures.Add(1)
	}
	f := &store.MUDFile{URL: h.MUDURL, Body: body, Signature: sig, FetchedAt: now, Verdict: verdict, VerdictReason: reason,
		Signer: v.SignerSubject, CacheValidity: h.CacheValidity, RefreshDue: now.Add(h.CacheValidity)}
	if verdict == store.VerdictValid {
		f.VerifiedAt = now
	}
	if old := m.st.files[h.MUDURL]; old != nil && old.Verdict == store.VerdictValid && verdict != store.VerdictValid {
		return f, 0, errorf(errConflict, "the imported file is not verified (%s) and would replace a verified one", verdict)
	}
	m.putFile(f, true)
	delete(m.st.fetchErr, h.MUDURL)
	n := m.reevaluateURL(h.MUDURL, "imported", string(verdict))
	return f, n, nil
}

var (
	errInvalid  = api.ErrInvalid
	errConflict = api.ErrConflict
	errNotFound = api.ErrNotFound
)
