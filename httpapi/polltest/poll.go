// Package polltest is the tests' one way to wait for something another
// goroutine or process does: poll a condition until it holds, instead of
// sleeping for a guessed time. Like tlsreload/tlstest it is a test-support
// package under httpapi, whose tests and cmd's use it; it imports nothing
// of ours, and only tests import it.
package polltest

import (
	"testing"
	"time"
)

// Timeout is how long Until polls before it fails the test.
const Timeout = 10 * time.Second

// Until polls cond until it holds, and fails t, naming what it waited
// for, if it does not within Timeout. It polls every 100 µs at first, for
// a cheap condition soon met, and backs off to every 10 ms, for one that
// scrapes a server. Under testing/synctest its sleeps advance the bubble's
// clock.
func Until(t testing.TB, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(Timeout)
	for pause := 100 * time.Microsecond; !cond(); pause = min(2*pause, 10*time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting until %s", Timeout, what)
		}
		time.Sleep(pause)
	}
}
