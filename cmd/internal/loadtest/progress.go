package loadtest

import (
	"fmt"
	"time"
)

// startProgress prints a progress line to cfg.Progress every
// cfg.ProgressEvery, rewriting it in place (a terminal), until stop is
// called, which clears it.
func (r *run) startProgress() (stop func()) {
	w := r.cfg.Progress
	if w == nil {
		return func() {}
	}
	done, finished := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(finished)
		t := time.NewTicker(r.cfg.ProgressEvery)
		defer t.Stop()
		prev := r.all.Snapshot()
		prevSent, prevDel, prevErr := r.sent.Load(), r.all.n.Load(), r.failures.Load()
		last := time.Now()
		for {
			select {
			case <-done:
				fmt.Fprint(w, "\r\033[K")
				return
			case now := <-t.C:
				cur := r.all.Snapshot()
				sent, del, errs := r.sent.Load(), r.all.n.Load(), r.failures.Load()
				secs := now.Sub(last).Seconds()
				p := r.phase.Load()
				fmt.Fprintf(w, "\r\033[K%-7s %5.0fs  sent %7.0f/s  delivered %7.0f/s  p99 %8s  errors %d  outstanding %d%s",
					phaseNames[p], time.Since(r.start).Seconds(),
					float64(sent-prevSent)/secs, float64(del-prevDel)/secs,
					fmtDuration(cur.Sub(prev).Quantile(0.99)), errs-prevErr, r.tr.outstanding.Load(), r.serverProgress())
				prev, prevSent, prevDel, prevErr, last = cur, sent, del, errs, now
			}
		}
	}()
	return func() { close(done); <-finished }
}

// serverProgress is the progress line's server part: the latest sample's
// actors and queued messages.
func (r *run) serverProgress() string {
	if r.server == nil {
		return ""
	}
	p, ok := r.server.latest()
	if !ok {
		return ""
	}
	return "  actors " + intText(p.Actors) + "  queued " + intText(p.QueuedMessages)
}

// fmtDuration prints a latency with three significant digits.
func fmtDuration(d time.Duration) string {
	ms := float64(d) / float64(time.Millisecond)
	switch {
	case d == 0:
		return "-"
	case ms < 1:
		return fmt.Sprintf("%.0fµs", ms*1000)
	case ms < 10:
		return fmt.Sprintf("%.2fms", ms)
	case ms < 100:
		return fmt.Sprintf("%.1fms", ms)
	}
	return fmt.Sprintf("%.0fms", ms)
}
