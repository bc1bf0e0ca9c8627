package client

import (
	"testing"
	"time"
)

func TestRetryPolicyDelay(t *testing.T) {
	p := RetryPolicy{BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}
	for n := range 10 {
		for range 50 {
			d := p.delay(n, 0)
			hi := min(p.BaseDelay<<n, p.MaxDelay)
			if d < hi/2 || d > hi {
				t.Fatalf("delay(%d) = %v; want within [%v, %v]", n, d, hi/2, hi)
			}
		}
	}
	if d := p.delay(0, 3*time.Second); d != 3*time.Second {
		t.Fatalf("delay with Retry-After 3s = %v; want 3s (honoured above MaxDelay)", d)
	}
	if d := (RetryPolicy{BaseDelay: time.Second}).delay(3, 0); d < 500*time.Millisecond || d > time.Second {
		t.Fatalf("delay with no MaxDelay = %v; want BaseDelay as the cap", d)
	}
}
