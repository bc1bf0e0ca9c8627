package supervisor

import (
	"io"
	"strconv"

	"github.com/VictoriaMetrics/metrics"
)

// queueDepthBuckets cover 0 up to the default max_queue_length of 100.
var queueDepthBuckets = []float64{0, 1, 2, 5, 10, 20, 50, 100, 200, 500, 1000}

// registerMetrics exposes the engine's state on set. Gauges are callbacks
// over counters the actors keep anyway, so scraping asks no actor and the
// request path pays nothing for them.
func (s *Supervisor) registerMetrics(set *metrics.Set) {
	set.NewGauge("zrc_rendezvous_active_mailboxes", func() float64 { return float64(s.live.Load()) })
	set.NewGauge("zrc_rendezvous_total_messages", func() float64 { return float64(s.stats.QueuedMessages.Load()) })
	set.NewGauge("zrc_rendezvous_queued_bytes", func() float64 { return float64(s.stats.QueuedBytes.Load()) })
	set.NewGauge("zrc_rendezvous_waiting_long_polls", func() float64 { return float64(s.stats.Waiting.Load()) })
	set.NewGauge("zrc_rendezvous_busy_mailboxes", func() float64 { return float64(s.Snapshot().Busy) })
	set.NewGauge("zrc_rendezvous_memory_limit_bytes", func() float64 { return float64(s.opts.MemoryLimit) })
	set.NewGauge("zrc_rendezvous_max_mailboxes", func() float64 { return float64(s.opts.MaxMailboxes) })
	s.queueDepth = set.NewPrometheusHistogramExt("zrc_rendezvous_queue_depth", queueDepthBuckets)
	s.reapedIdle = set.NewCounter(`zrc_rendezvous_mailboxes_reaped_total{reason="idle"}`)
	s.reclaimed = set.NewCounter(`zrc_rendezvous_mailboxes_reaped_total{reason="reclaimed"}`)
	set.RegisterMetricsWriter(func(w io.Writer) {
		st := &s.stats
		metrics.WriteCounterUint64(w, "zrc_rendezvous_messages_posted_total", st.Posted.Load())
		metrics.WriteCounterUint64(w, "zrc_rendezvous_messages_delivered_total", st.Delivered.Load())
		metrics.WriteCounterUint64(w, "zrc_rendezvous_messages_requeued_total", st.Requeued.Load())
		metrics.WriteCounterUint64(w, "zrc_rendezvous_reclaim_scans_total", s.reaper.scans.Load())
		// One family, three series: its metadata (when exposed) must come
		// once, before all of them.
		metrics.WriteMetadataIfNeeded(w, "zrc_rendezvous_messages_evicted_total", "counter")
		var buf []byte
		for _, e := range []struct {
			reason string
			n      uint64
		}{
			{"ttl", st.EvictedTTL.Load()},
			{"memory", st.EvictedMemory.Load()},
			// Only empty mailboxes are reaped for idleness, so no message
			// is ever evicted for it; the series exists because the
			// reference metric names it.
			{"idle", 0},
		} {
			buf = append(buf, `zrc_rendezvous_messages_evicted_total{reason="`...)
			buf = append(buf, e.reason...)
			buf = append(buf, `"} `...)
			buf = strconv.AppendUint(buf, e.n, 10)
			buf = append(buf, '\n')
		}
		w.Write(buf)
	})
}
