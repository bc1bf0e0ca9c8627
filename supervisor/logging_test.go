package supervisor

import (
	"testing"
	"testing/synctest"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// R3.7: evictions are logged as one aggregated line per sweep and one per
// pressure event, with counts by reason — never a line per message — and
// without recipient ids (Z6).
func TestEvictionsAreLoggedAggregated(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		core, logs := observer.New(zap.DebugLevel)
		opts := testOptions()
		opts.Logger = zap.New(core)
		opts.MemoryLimit = 30
		s := newTest(t, opts)
		for i := range 3 {
			post(t, s, id(i), "0123456789")
		}
		post(t, s, id(9), "01234567890123456789") // evicts two at once
		pressure := logs.FilterMessage("memory pressure: evicted oldest messages").All()
		if len(pressure) != 1 || pressure[0].ContextMap()["evicted_memory"] != int64(2) {
			t.Fatalf("pressure lines: %+v; want one with evicted_memory 2", pressure)
		}

		time.Sleep(opts.TTL + opts.EvictionInterval) // the rest expire; one sweep reports them
		synctest.Wait()
		sweeps := logs.FilterMessage("sweep").All()
		if len(sweeps) != 1 || sweeps[0].ContextMap()["evicted_ttl"] != uint64(2) {
			t.Fatalf("sweep lines: %+v; want one with evicted_ttl 2", sweeps)
		}
		for _, e := range logs.All() {
			for k, v := range e.ContextMap() {
				if s, ok := v.(string); ok && len(s) >= 8 && (s == id(1).String() || s == id(1).Short()) {
					t.Fatalf("log line %q carries a recipient id in %s", e.Message, k)
				}
			}
		}
	})
}
