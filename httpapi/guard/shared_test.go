package guard

import (
	"errors"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// bucketsInMemory is a SharedBuckets of fixed budgets: each key's bucket
// holds what is left, never refilling. gate, if set, holds every call
// until it is closed.
type bucketsInMemory struct {
	mu    sync.Mutex
	left  map[string]int
	calls atomic.Int64
	gate  chan struct{}
	err   error
}

func (s *bucketsInMemory) Reserve(key string, _ float64, burst, want int) (int, float64, error) {
	s.calls.Add(1)
	if s.gate != nil {
		<-s.gate
	}
	if s.err != nil {
		return 0, 0, s.err
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.left[key]; !ok {
		s.left[key] = burst
	}
	n := min(want, s.left[key])
	s.left[key] -= n
	return n, float64(s.left[key]), nil
}

func admitPost(g *Guard) error {
	_, err := g.Admit(httptest.NewRecorder(), request(http.MethodPost, "192.0.2.7:4000"), Post)
	return err
}

// Requests that find no reserved token while a reservation is on its way
// wait for it: 100 at once make one call, and the shared budget (60 a
// window) holds however the local bucket stands.
func TestSharedReservationsAreOneAtATime(t *testing.T) {
	shared := &bucketsInMemory{left: map[string]int{}, gate: make(chan struct{})}
	g, _ := newGuard(t, func(o *Options) { o.Shared = shared })
	var admitted, refused atomic.Int64
	var wg sync.WaitGroup
	for range 100 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if admitPost(g) == nil {
				admitted.Add(1)
			} else {
				refused.Add(1)
			}
		}()
	}
	// Give the other 99 time to reach the store too, were they to: the
	// first call is held at the gate meanwhile.
	deadline := time.Now().Add(100 * time.Millisecond)
	for shared.calls.Load() < 2 && time.Now().Before(deadline) {
		runtime.Gosched()
	}
	if n := shared.calls.Load(); n != 1 {
		t.Fatalf("%d calls on their way at once; want 1", n)
	}
	close(shared.gate)
	wg.Wait()
	// A fifth of 60 per call: 12 tokens, so 60 admitted take 5 calls, and
	// the refusals one more each at most once the bucket is empty; without
	// waiting for the reservation on its way, all 100 would call.
	if admitted.Load() != 60 || refused.Load() != 40 {
		t.Fatalf("admitted %d, refused %d; want 60 and 40 (the shared budget)", admitted.Load(), refused.Load())
	}
	if n := shared.calls.Load(); n > 5+40 {
		t.Fatalf("%d calls to the store for 100 requests; want one per reservation", n)
	}
}

// While the store does not answer, the local bucket decides and every
// such request is counted.
func TestSharedFallsBackToTheLocalBucket(t *testing.T) {
	var fallbacks atomic.Int64
	shared := &bucketsInMemory{left: map[string]int{}, err: errors.New("store away")}
	g, _ := newGuard(t, func(o *Options) { o.Shared, o.OnSharedFallback = shared, func() { fallbacks.Add(1) } })
	admitted := 0
	for range 70 {
		if admitPost(g) == nil {
			admitted++
		}
	}
	if admitted != 60 || fallbacks.Load() != 70 {
		t.Fatalf("admitted %d with %d fallbacks; want the local bucket's 60, 70 counted", admitted, fallbacks.Load())
	}
}
