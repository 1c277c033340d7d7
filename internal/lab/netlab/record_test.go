package netlab

import (
	"context"
	"testing"
	"time"
)

// A Recorder hands back, from a mark, the first value that matches, and
// lists what matched; Serve runs a component until the test ends, then
// stops it.
func TestRecorderAndServe(t *testing.T) {
	ch := make(chan int)
	r := Record(ch)
	var stopped bool
	t.Run("serve", func(t *testing.T) {
		Serve(t, func(ctx context.Context) error {
			defer close(ch)
			for i := 1; ; i++ {
				select {
				case ch <- i:
				case <-ctx.Done():
					stopped = true
					return nil
				}
				if i == 5 {
					<-ctx.Done()
					stopped = true
					return nil
				}
			}
		})
		v, i := r.WaitFor(t, 0, 5*time.Second, "an even value", func(v int) bool { return v%2 == 0 })
		if v != 2 || i != 1 {
			t.Errorf("first even value %d at %d", v, i)
		}
		if v, _ := r.WaitFor(t, i+1, 5*time.Second, "the next even value", func(v int) bool { return v%2 == 0 }); v != 4 {
			t.Errorf("next even value %d", v)
		}
		r.WaitFor(t, 0, 5*time.Second, "5", func(v int) bool { return v == 5 })
		if got := r.Since(2, func(v int) bool { return v > 3 }); len(got) != 2 || r.Mark() != 5 {
			t.Errorf("since 2: %v, mark %d", got, r.Mark())
		}
	})
	if !stopped {
		t.Error("Serve did not stop the component at the end of the test")
	}
}
