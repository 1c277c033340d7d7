package dashboard

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"sync"
	"time"
)

// maxSessions bounds the logins held at once; a new one beyond it ends
// the one that expires first.
const maxSessions = 64

// session is one login.
type session struct {
	csrf    string
	expires time.Time
	flash   string // a message shown once, on the next page
}

// sessions holds the logins by the SHA-256 of their cookie, so that
// nothing in memory is the cookie itself.
type sessions struct {
	mu   sync.Mutex
	byID map[[32]byte]*session
}

func newToken() string {
	b := make([]byte, 32)
	_, _ = rand.Read(b) // never fails (crypto/rand)
	return base64.RawURLEncoding.EncodeToString(b)
}

func (s *sessions) create(now time.Time, lifetime time.Duration) (token string, sess *session) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for id, x := range s.byID {
		if !now.Before(x.expires) {
			delete(s.byID, id)
		}
	}
	if len(s.byID) >= maxSessions {
		var oldest [32]byte
		var first time.Time
		for id, x := range s.byID {
			if first.IsZero() || x.expires.Before(first) {
				oldest, first = id, x.expires
			}
		}
		delete(s.byID, oldest)
	}
	token = newToken()
	sess = &session{csrf: newToken(), expires: now.Add(lifetime)}
	s.byID[sha256.Sum256([]byte(token))] = sess
	return token, sess
}

// get returns the live session of a cookie, or nil.
func (s *sessions) get(token string, now time.Time) *session {
	if token == "" {
		return nil
	}
	id := sha256.Sum256([]byte(token))
	s.mu.Lock()
	defer s.mu.Unlock()
	x := s.byID[id]
	if x == nil {
		return nil
	}
	if !now.Before(x.expires) {
		delete(s.byID, id)
		return nil
	}
	return x
}

func (s *sessions) remove(token string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.byID, sha256.Sum256([]byte(token)))
}

// takeFlash returns the session's one-time message and clears it.
func (s *sessions) takeFlash(x *session) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	f := x.flash
	x.flash = ""
	return f
}

func (s *sessions) setFlash(x *session, msg string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	x.flash = msg
}

// sameToken compares a submitted token with the expected one in constant
// time; an empty expected token matches nothing.
func sameToken(got, want string) bool {
	return want != "" && subtle.ConstantTimeCompare([]byte(got), []byte(want)) == 1
}

// Login limits: a client address may fail loginFailures times in
// loginWindow, and all clients together globalFailures times; then logins
// are refused, without checking the password, until the window has
// passed.
const (
	loginFailures  = 5
	globalFailures = 30
	loginWindow    = 15 * time.Minute
)

// limiter counts failed logins per client address and in all.
type limiter struct {
	mu     sync.Mutex
	byAddr map[string]*window
	all    window
}

type window struct {
	start    time.Time
	failures int
}

func (w *window) current(now time.Time) *window {
	if now.Sub(w.start) >= loginWindow {
		w.start, w.failures = now, 0
	}
	return w
}

// allow says whether addr may try to log in now, and if not, when it may
// again.
func (l *limiter) allow(addr string, now time.Time) (bool, time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if w := l.all.current(now); w.failures >= globalFailures {
		return false, w.start.Add(loginWindow)
	}
	if w := l.byAddr[addr]; w != nil && w.current(now).failures >= loginFailures {
		return false, w.start.Add(loginWindow)
	}
	return true, time.Time{}
}

func (l *limiter) failed(addr string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.all.current(now).failures++
	w := l.byAddr[addr]
	if w == nil {
		if len(l.byAddr) >= 4096 {
			for a, x := range l.byAddr {
				if now.Sub(x.start) >= loginWindow {
					delete(l.byAddr, a)
				}
			}
		}
		if len(l.byAddr) >= 4096 {
			return // the global limit still counts it
		}
		w = &window{start: now}
		l.byAddr[addr] = w
	}
	w.current(now).failures++
}

func (l *limiter) succeeded(addr string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	delete(l.byAddr, addr)
}
