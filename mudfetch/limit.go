package mudfetch

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// limiter bounds fetches: overall concurrency (callers wait for a slot, as
// long as their context allows), per-key concurrency (a second concurrent
// fetch for the same device is refused at once) and per-key and overall
// counts in a sliding window (refused at once).
type limiter struct {
	slots chan struct{}

	mu          sync.Mutex
	perKey      map[string]*keyState
	overall     []time.Time
	keyMax      int
	keyWindow   int
	totalWindow int
	window      time.Duration
	maxKeys     int
	now         func() time.Time
}

type keyState struct {
	inFlight int
	starts   []time.Time
}

func newLimiter(cfg *Config) *limiter {
	return &limiter{
		slots:       make(chan struct{}, cfg.MaxConcurrent),
		perKey:      make(map[string]*keyState),
		keyMax:      cfg.MaxConcurrentPerKey,
		keyWindow:   cfg.MaxFetchesPerKey,
		totalWindow: cfg.MaxFetches,
		window:      cfg.RateWindow,
		maxKeys:     cfg.MaxTrackedKeys,
		now:         cfg.Now,
	}
}

// acquire reserves a fetch for key; the returned release must be called.
func (l *limiter) acquire(ctx context.Context, key string) (release func(), err error) {
	if err := l.admit(key); err != nil {
		return nil, err
	}
	select {
	case l.slots <- struct{}{}:
	case <-ctx.Done():
		l.done(key)
		return nil, fmt.Errorf("%w: all %d fetch slots stayed busy: %w", ErrBusy, cap(l.slots), ctx.Err())
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-l.slots
			l.done(key)
		})
	}, nil
}

func (l *limiter) admit(key string) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	cut := now.Add(-l.window)
	l.overall = prune(l.overall, cut)
	if l.totalWindow > 0 && len(l.overall) >= l.totalWindow {
		return fmt.Errorf("%w: %d fetches overall in the last %s", ErrRateLimited, len(l.overall), l.window)
	}
	ks := l.perKey[key]
	if ks == nil {
		if len(l.perKey) >= l.maxKeys {
			l.gc(cut)
		}
		if len(l.perKey) >= l.maxKeys {
			return fmt.Errorf("%w: %d devices fetched in the last %s", ErrRateLimited, len(l.perKey), l.window)
		}
		ks = &keyState{}
		l.perKey[key] = ks
	}
	ks.starts = prune(ks.starts, cut)
	if ks.inFlight >= l.keyMax {
		return fmt.Errorf("%w: a fetch for %q is already running", ErrBusy, key)
	}
	if l.keyWindow > 0 && len(ks.starts) >= l.keyWindow {
		return fmt.Errorf("%w: %d fetches for %q in the last %s", ErrRateLimited, len(ks.starts), key, l.window)
	}
	ks.inFlight++
	ks.starts = append(ks.starts, now)
	l.overall = append(l.overall, now)
	return nil
}

func (l *limiter) done(key string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if ks := l.perKey[key]; ks != nil {
		ks.inFlight--
	}
}

// gc forgets keys with nothing in flight and nothing in the window.
func (l *limiter) gc(cut time.Time) {
	for k, ks := range l.perKey {
		ks.starts = prune(ks.starts, cut)
		if ks.inFlight == 0 && len(ks.starts) == 0 {
			delete(l.perKey, k)
		}
	}
}

func prune(ts []time.Time, cut time.Time) []time.Time {
	i := 0
	for i < len(ts) && !ts[i].After(cut) {
		i++
	}
	return ts[i:]
}
