package netlab

import (
	"context"
	"sync"
	"testing"
	"time"
)

// Serve runs a component's Run method (run) in a goroutine for the rest of
// the test: at the end, it cancels run's context, waits for it to return,
// and fails the test if it returned an error.
func Serve(t testing.TB, run func(context.Context) error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
}

// Recorder records the values a component sends on a channel (its events),
// so that a test can wait for one that matches, at or after a mark.
type Recorder[E any] struct {
	mu      sync.Mutex
	vals    []E
	changed chan struct{} // closed and replaced at each value
}

// Record reads ch until it is closed, recording every value.
func Record[E any](ch <-chan E) *Recorder[E] {
	r := &Recorder[E]{changed: make(chan struct{})}
	go func() {
		for v := range ch {
			r.mu.Lock()
			r.vals = append(r.vals, v)
			close(r.changed)
			r.changed = make(chan struct{})
			r.mu.Unlock()
		}
	}()
	return r
}

// Mark is the index the next value will have.
func (r *Recorder[E]) Mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.vals)
}

// WaitFor returns the first value at index from or later that matches, and
// its index; it fails the test, naming what, when none came within timeout.
func (r *Recorder[E]) WaitFor(t testing.TB, from int, timeout time.Duration, what string, match func(E) bool) (E, int) {
	t.Helper()
	deadline := time.After(timeout)
	for {
		r.mu.Lock()
		for i := from; i < len(r.vals); i++ {
			if match(r.vals[i]) {
				v := r.vals[i]
				r.mu.Unlock()
				return v, i
			}
		}
		from = len(r.vals)
		changed := r.changed
		r.mu.Unlock()
		select {
		case <-changed:
		case <-deadline:
			t.Fatalf("nothing came within %v: %s", timeout, what)
		}
	}
}

// Since returns the values from index from on that match.
func (r *Recorder[E]) Since(from int, match func(E) bool) []E {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []E
	for _, v := range r.vals[from:] {
		if match(v) {
			out = append(out, v)
		}
	}
	return out
}
