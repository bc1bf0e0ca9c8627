package polltest

import (
	"testing"
	"testing/synctest"
	"time"
)

// TestUntil: Until returns once the condition holds, polling the while.
func TestUntil(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		start := time.Now()
		calls := 0
		Until(t, "the fifth call", func() bool { calls++; return calls == 5 })
		// 100 + 200 + 400 + 800 µs of pauses between five calls.
		if d := time.Since(start); calls != 5 || d != 1500*time.Microsecond {
			t.Errorf("%d calls in %v; want 5 in 1.5ms", calls, d)
		}
	})
}
