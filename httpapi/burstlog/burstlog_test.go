package burstlog

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

type line struct {
	count   int64
	example string
}

func lines(logs *observer.ObservedLogs) []line {
	var out []line
	for _, e := range logs.TakeAll() {
		m := e.ContextMap()
		out = append(out, line{m["count"].(int64), m["example"].(string)})
	}
	return out
}

func TestLogger(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.DebugLevel)
		l := New(zap.New(core), "handshake failures", 10*time.Second)
		defer l.Close()

		// The first event is logged at once.
		l.Event("a")
		if got := lines(logs); len(got) != 1 || got[0] != (line{1, "a"}) {
			t.Fatalf("after one event: %+v; want one line, count 1, example a", got)
		}

		// A burst within the interval: nothing until the interval ends,
		// then one line with the count and the latest detail.
		for _, d := range []string{"b", "c", "d"} {
			l.Event(d)
			time.Sleep(time.Second)
		}
		if got := lines(logs); len(got) != 0 {
			t.Fatalf("during the burst: %+v; want no line", got)
		}
		time.Sleep(7 * time.Second) // the interval ends 10 s after the first line
		synctest.Wait()
		if got := lines(logs); len(got) != 1 || got[0] != (line{3, "d"}) {
			t.Fatalf("after the interval: %+v; want one line, count 3, example d", got)
		}

		// Quiet for an interval: the next event is logged at once again.
		time.Sleep(10 * time.Second)
		l.Event("e")
		if got := lines(logs); len(got) != 1 || got[0] != (line{1, "e"}) {
			t.Fatalf("after a quiet interval: %+v; want count 1, example e", got)
		}

		// 10,000 events in one interval still make one line.
		for range 10000 {
			l.Event("f")
		}
		time.Sleep(10 * time.Second)
		synctest.Wait()
		if got := lines(logs); len(got) != 1 || got[0] != (line{10000, "f"}) {
			t.Fatalf("after a flood: %+v; want one line, count 10000", got)
		}
	})
}

// TestLoggerClose: Close logs what is pending at once and stops the timer.
func TestLoggerClose(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.DebugLevel)
		l := New(zap.New(core), "x", time.Minute)
		l.Event("a")
		l.Event("b")
		l.Event("c")
		lines(logs)
		l.Close()
		if got := lines(logs); len(got) != 1 || got[0] != (line{2, "c"}) {
			t.Fatalf("Close: %+v; want one line, count 2", got)
		}
		l.Event("late")
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if got := lines(logs); len(got) != 0 {
			t.Fatalf("after Close: %+v; want nothing", got)
		}
	})
}
