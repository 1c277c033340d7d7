package mudd

import (
	"context"
	"errors"
	"strconv"
	"testing"

	"github.com/openmud/mud/config"
	"github.com/openmud/mud/mudfetch"
)

// fetch.budget is the one overall fetch budget: the fetcher starts as
// many fetches in a window as the manager may schedule, beyond the
// fetcher's own default of 600, and refuses the next.
func TestFetcherFollowsFetchBudget(t *testing.T) {
	fc := config.Default().Fetch
	fc.Budget = mudfetch.DefaultMaxFetches + 100
	fc.Hosts = map[string]string{"mud.example": "127.0.0.1"}
	f, err := mudfetch.New(fetcherConfig(fc, nil, nil))
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	// A cancelled context: each fetch is admitted (and counted), then
	// ends before any connection.
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	fetch := func(i int) error {
		_, err := f.Fetch(ctx, mudfetch.Request{URL: "https://mud.example/thing.json", Key: "device-" + strconv.Itoa(i)})
		return err
	}
	for i := range fc.Budget {
		if err := fetch(i); errors.Is(err, mudfetch.ErrRateLimited) {
			t.Fatalf("fetch %d of a budget of %d refused: %v", i+1, fc.Budget, err)
		}
	}
	if err := fetch(fc.Budget); !errors.Is(err, mudfetch.ErrRateLimited) {
		t.Errorf("fetch beyond the budget of %d: %v, want %v", fc.Budget, err, mudfetch.ErrRateLimited)
	}
}
