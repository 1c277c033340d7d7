package manager

import (
	"bytes"
	"errors"
	"fmt"
	"slices"
	"strings"
	"time"

	"github.com/openmud/mud/mudfetch"
	"github.com/openmud/mud/store"
)

// fetchOutcome is a finished fetch, handed back to the Run goroutine.
type fetchOutcome struct {
	job  *fetchJob
	res  *mudfetch.Result
	err  error
	at   time.Time // when it started, on the manager's clock
	took time.Duration
}

// urlFetch is what the manager knows about fetching one URL: the failures
// since the last success (the retry delay follows them), why the last one
// failed, when the next attempt is due, and the latest attempts.
type urlFetch struct {
	failures int
	why      string
	next     time.Time
	attempts []FetchAttempt
}

// maxAttempts is how many attempts per URL a device view lists.
const maxAttempts = 8

func (f *urlFetch) record(a FetchAttempt) {
	f.attempts = append(f.attempts, a)
	if n := len(f.attempts); n > maxAttempts {
		f.attempts = slices.Delete(f.attempts, 0, n-maxAttempts)
	}
}

// reason is a device's reason while its URL's fetches fail.
func (f *urlFetch) reason() string {
	n := "1 failed attempt"
	if f.failures != 1 {
		n = fmt.Sprintf("%d failed attempts", f.failures)
	}
	return fmt.Sprintf("%s (%s; retrying)", f.why, n)
}

// backoff is the delay before the attempt that follows n failures:
// initial, doubled with each further failure up to max, less up to a
// quarter at random (r in [0, 1)), so that devices that failed together
// do not all retry together.
func backoff(n int, initial, max time.Duration, r float64) time.Duration {
	d := initial
	for i := 1; i < n && d < max; i++ {
		d *= 2
	}
	d = min(d, max)
	return d - time.Duration(r*float64(d)/4)
}

// fetchFailure says in an admin's words why a fetch got no file.
func fetchFailure(err error) string {
	what := "MUD server unreachable"
	switch {
	case err == nil:
		return what
	case errors.Is(err, mudfetch.ErrRateLimited), errors.Is(err, mudfetch.ErrBusy):
		what = "fetch limit reached"
	case errors.Is(err, mudfetch.ErrHTTPStatus):
		what = "the MUD server did not serve the file"
	case errors.Is(err, mudfetch.ErrServerCertificate):
		what = "the MUD server's certificate is not valid"
	case errors.Is(err, mudfetch.ErrForbiddenAddress):
		what = "the MUD server's address is forbidden"
	case errors.Is(err, mudfetch.ErrBodyTooLarge), errors.Is(err, mudfetch.ErrTooManyRedirects), errors.Is(err, mudfetch.ErrRedirectRefused):
		what = "the MUD file could not be retrieved"
	case errors.Is(err, mudfetch.ErrBadURL), errors.Is(err, mudfetch.ErrNotHTTPS):
		what = "the MUD URL cannot be fetched"
	}
	return what + ": " + err.Error()
}

// fetchOf returns u's fetch record, creating it.
func (m *Manager) fetchOf(u string) *urlFetch {
	f := m.st.fetch[u]
	if f == nil {
		f = &urlFetch{}
		m.st.fetch[u] = f
	}
	return f
}

// launch starts a fetch the scheduler took from its queue, in a goroutine
// the manager owns (stopped by Run's context, waited for when Run
// returns). A verified cached file makes it conditional.
func (m *Manager) launch(j *fetchJob) {
	s := m.st
	delete(s.jobs, j.url)
	s.fetching[j.url] = true
	at := m.now()
	m.charge(j, at)
	req := mudfetch.Request{URL: j.url}
	if f := s.files[j.url]; f != nil && f.Verdict == store.VerdictValid {
		req.Cached = cachedResult(f)
	}
	ctx, fetcher := m.fetchCtx, m.cfg.Fetcher
	m.fetchWG.Go(func() {
		start := time.Now()
		res, err := fetcher.Fetch(ctx, req)
		select {
		case m.results <- fetchOutcome{job: j, res: res, err: err, at: at, took: time.Since(start)}:
		case <-ctx.Done():
		}
	})
}

func cachedResult(f *store.MUDFile) *mudfetch.Result {
	h, _ := mudfetch.DecodeHeader(f.Body)
	return &mudfetch.Result{URL: f.URL, FinalURL: f.URL, Body: f.Body, ETag: f.ETag, LastModified: f.LastModified,
		FetchedAt: f.FetchedAt, SignatureURL: f.SignatureURL, Signature: f.Signature, Header: h}
}

// urlUsers maps every URL a live device announces to one of them (one
// with a lease, if any: its fetch goes first).
func (m *Manager) urlUsers() map[string]*store.Device {
	out := map[string]*store.Device{}
	for _, d := range m.st.devices {
		if d.MUDURL == "" || d.State == store.StateRemoved {
			continue
		}
		if cur := out[d.MUDURL]; cur == nil || (len(cur.IPs) == 0 && len(d.IPs) > 0) {
			out[d.MUDURL] = d
		}
	}
	return out
}

// refreshDue queues the fetches whose time has come: cached files past
// their refresh time (RFC 8520 §3.5: no earlier) and
// retries after failures; and forgets what no live device needs.
func (m *Manager) refreshDue(now time.Time) {
	s := m.st
	users := m.urlUsers()
	m.dropJobs(users)
	for u := range s.fetch {
		if users[u] == nil {
			delete(s.fetch, u)
		}
	}
	for u, d := range users {
		if s.fetching[u] || s.jobs[u] != nil {
			continue
		}
		f, fi := s.files[u], s.fetch[u]
		switch {
		case fi != nil && fi.failures > 0:
			if !now.Before(fi.next) {
				m.enqueue(u, d, false)
			}
		case f == nil:
			m.enqueue(u, d, false) // not fetched yet, and not queued
		case !f.RefreshDue.IsZero() && !now.Before(f.RefreshDue):
			m.enqueue(u, d, false)
		}
	}
}

// onFetch handles a finished fetch. Every attempt is recorded (the URL's
// latest attempts in the device view; an event per attempt that failed).
func (m *Manager) onFetch(o fetchOutcome) {
	s := m.st
	u := o.job.url
	delete(s.fetching, u)
	m.release(o.job.port)
	defer m.dispatch()
	m.metrics.fetches.Add(1)
	m.metrics.fetchSeconds.observe(o.took.Seconds())
	now := m.now()
	fi := m.fetchOf(u)
	att := FetchAttempt{At: o.at, Took: o.took, Port: o.job.port, OK: o.res != nil}
	if o.res == nil {
		att.Error = errString(o.err)
		fi.record(att)
		m.metrics.fetchFailures.Add(1)
		fi.failures++
		delay := backoff(fi.failures, m.cfg.Settings.RetryInitial, m.cfg.Settings.RetryMax, m.rand())
		fi.next, fi.why = now.Add(delay), fetchFailure(o.err)
		msg := fmt.Sprintf("attempt %d failed: %s; the next in %s", fi.failures, fi.why, delay.Round(100*time.Millisecond))
		if f := s.files[u]; f != nil {
			// RFC 8520 §1.6, §3.5: the cached file stays enforced.
			m.log.Warn("MUD server unreachable; keeping the cached file", "url", u, "cached_at", f.FetchedAt, "err", o.err, "retry_in", delay)
			m.event("", "fetch-failed", "", "", fmt.Sprintf("%s: %s; the cached file (fetched %s) stays in force", u, msg, f.FetchedAt.Format(time.RFC3339)))
			return
		}
		m.reevaluateURL(u, "fetch-failed", msg)
		return
	}
	fi.record(att)
	fi.failures, fi.why, fi.next = 0, "", time.Time{}
	verdict, reason := verdictOf(o.res.Verdict)
	if verdict != store.VerdictValid {
		m.metrics.verifyFailures.Add(1)
	}
	nf := fileFromResult(o.res, verdict, reason)
	nf.URL = u // the key devices use, whatever normalisation the fetcher did
	old := s.files[u]
	changed := old == nil || !bytes.Equal(old.Body, nf.Body) || old.Verdict != nf.Verdict || old.Signer != nf.Signer
	if changed && old != nil && old.Verdict == store.VerdictValid {
		if why := m.updateNeedsApproval(nf); len(why) > 0 {
			// The verified file stays in force; the update waits for an
			// administrator (RFC 8520 §13.2, §16).
			s.candidate[u] = &candidate{file: nf, reasons: why}
			upd := *old
			upd.RefreshDue = nf.RefreshDue
			m.putFile(&upd, false)
			m.event("", "update-pending-approval", "", "", fmt.Sprintf("%s: the refreshed file needs approval (%s); the cached verified file stays in force", u, strings.Join(why, "; ")))
			return
		}
	}
	m.putFile(nf, changed)
	if changed {
		kind := "fetched"
		if old != nil {
			kind = "file-updated"
		}
		m.reevaluateURL(u, kind, string(verdict))
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
	if err := m.update(func(tx *store.Tx) error { return tx.ApprovalsByURL().Put(a) }); err != nil {
		return fmt.Errorf("recording the approval of the update of %s: %w", u, err)
	}
	m.st.approvalsByURL[u] = a
	m.share(FleetVerdictURL, u, fleetVerdict{Verdict: verdictApproved, Approval: &a})
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
	if err := m.update(func(tx *store.Tx) error { return tx.MUDFiles().Put(*f) }); err != nil {
		m.log.Error("caching MUD file", "url", f.URL, "err", err)
		return
	}
	m.st.files[f.URL] = f
	if changed {
		delete(m.st.models, f.URL)
		delete(m.st.candidate, f.URL)
		m.markURL(f.URL)
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
		return nil, 0, errorf(ErrInvalid, "reading the imported file: %v", err)
	}
	if h.MUDURL == "" {
		return nil, 0, errorf(ErrInvalid, "the imported file has no mud-url")
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
		return f, 0, errorf(ErrConflict, "the imported file is not verified (%s) and would replace a verified one", verdict)
	}
	m.putFile(f, true)
	if fi := m.st.fetch[h.MUDURL]; fi != nil {
		fi.failures, fi.why, fi.next = 0, "", time.Time{}
	}
	n := m.reevaluateURL(h.MUDURL, "imported", string(verdict))
	return f, n, nil
}
