package loadtest

import (
	"context"
	"sync"
	"time"
)

// ServerPoint is the server's side at one moment of the run, read from
// its /metrics (summed over the nodes) and, with ServerPIDs, /proc. A
// figure the server did not report is null.
type ServerPoint struct {
	T                float64  `json:"t"` // seconds since the start
	Actors           *int64   `json:"actors"`
	WaitingLongPolls *int64   `json:"waiting_long_polls"`
	QueuedMessages   *int64   `json:"queued_messages"`
	RSSBytes         *int64   `json:"rss_bytes"`
	CPUPercent       *float64 `json:"cpu_percent"` // since the previous point; 100 = one core busy
}

// sampler reads the server's side every cfg.SampleEvery while the run
// lasts, for the report's server timeline and the progress line.
type sampler struct {
	mu     sync.Mutex
	points []ServerPoint // guarded by mu
	stop   context.CancelFunc
	done   chan struct{}
}

func (r *run) startSampler(ctx context.Context) *sampler {
	ctx, cancel := context.WithCancel(ctx)
	s := &sampler{stop: cancel, done: make(chan struct{})}
	go func() {
		defer close(s.done)
		t := time.NewTicker(r.cfg.SampleEvery)
		defer t.Stop()
		var prev serverSample
		var prevAt time.Duration
		for {
			cur := r.serverSample(ctx)
			if ctx.Err() != nil {
				return
			}
			at := time.Since(r.start)
			p := ServerPoint{T: at.Seconds()}
			for _, m := range []struct {
				name string
				to   **int64
			}{{metricActors, &p.Actors}, {metricWaiting, &p.WaitingLongPolls}, {metricQueued, &p.QueuedMessages}} {
				if v, ok := cur.scrape.get(m.name); ok {
					*m.to = ptr(int64(v))
				}
			}
			if cur.rssOK {
				p.RSSBytes = ptr(cur.rss)
			}
			if cur.cpuOK && prev.cpuOK && at > prevAt {
				p.CPUPercent = ptr(100 * float64(cur.cpu-prev.cpu) / float64(at-prevAt))
			}
			prev, prevAt = cur, at
			s.mu.Lock()
			s.points = append(s.points, p)
			s.mu.Unlock()
			select {
			case <-t.C:
			case <-ctx.Done():
				return
			}
		}
	}()
	return s
}

// latest is the newest point; ok is false before the first.
func (s *sampler) latest() (ServerPoint, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.points) == 0 {
		return ServerPoint{}, false
	}
	return s.points[len(s.points)-1], true
}

// finish stops sampling and returns the points.
func (s *sampler) finish() []ServerPoint {
	s.stop()
	<-s.done
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.points
}
