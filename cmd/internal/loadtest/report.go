package loadtest

import (
	"encoding/json"
	"fmt"
	"io"
	"slices"
	"strings"
	"text/tabwriter"
	"time"
)

// Report is a run's result; its JSON form is `--json`'s output
// (docs/loadtest.md describes every field). Figures the tool could not
// obtain — the server's metrics from cmd/zrc-baseline, /proc figures
// without a server pid — are null in JSON and "n/a" in the table.
type Report struct {
	URL         string    `json:"url"`
	Started     time.Time `json:"started"`
	Interrupted bool      `json:"interrupted"` // ended early (Ctrl-C): figures cover what ran
	Config      RunConfig `json:"config"`
	// Phases are the seconds each phase took.
	Phases       Phases           `json:"phases_seconds"`
	Throughput   Throughput       `json:"throughput"`
	Latency      Latency          `json:"latency_ms"`
	Statuses     map[string]int64 `json:"statuses"`
	Verification Verification     `json:"verification"`
	Server       Server           `json:"server"`
	Client       ClientSide       `json:"client"`
	Notes        []string         `json:"notes,omitempty"`
	Timeline     []Second         `json:"timeline"`
	// ServerTimeline samples the server's side during the run (absent
	// when neither its /metrics nor its pids were given).
	ServerTimeline []ServerPoint `json:"server_timeline,omitempty"`

	hist *Counts // the measured latencies, for the HTML histogram
}

// RunConfig echoes the run's settings.
type RunConfig struct {
	Mailboxes         int      `json:"mailboxes"`
	PollersPerMailbox int      `json:"pollers_per_mailbox"`
	Posters           int      `json:"posters"`
	TargetRate        float64  `json:"target_rate"` // posts/s; 0 = unlimited
	PayloadBytes      int      `json:"payload_bytes"`
	WaitMS            int64    `json:"wait_ms"`
	SourceAddrs       []string `json:"source_addrs,omitempty"`
	ServerPIDs        []int    `json:"server_pids,omitempty"`
}

// Phases are seconds.
type Phases struct {
	Connect float64 `json:"connect"`
	WarmUp  float64 `json:"warm_up"`
	Measure float64 `json:"measure"`
	Drain   float64 `json:"drain"`
}

// Throughput is per second over the measured window: posts sent and
// accepted (202) by their send time, deliveries by their arrival.
type Throughput struct {
	SentPerSec      float64 `json:"sent_per_sec"`
	AcceptedPerSec  float64 `json:"accepted_per_sec"`
	DeliveredPerSec float64 `json:"delivered_per_sec"`
	Sent            int64   `json:"sent"`
	Accepted        int64   `json:"accepted"`
	Delivered       int64   `json:"delivered"`
}

// Latency is end-to-end delivery latency in milliseconds — from just
// before a POST is sent to the end of the GET that delivers it — of the
// messages sent in the measured window.
type Latency struct {
	Count int64   `json:"count"`
	P50   float64 `json:"p50"`
	P95   float64 `json:"p95"`
	P99   float64 `json:"p99"`
	P999  float64 `json:"p99_9"`
	Max   float64 `json:"max"`
	Mean  float64 `json:"mean"`
}

// Verification covers the whole run, warm-up and drain included.
type Verification struct {
	Accepted  int64 `json:"accepted"`  // POSTs answered 202
	Delivered int64 `json:"delivered"` // distinct messages delivered intact
	// DeliveredUnconfirmed were delivered though their POST got no 202
	// (it failed in transit after the server had queued it): not lost,
	// not counted in Delivered's match against Accepted.
	DeliveredUnconfirmed int64 `json:"delivered_unconfirmed"`
	Duplicated           int64 `json:"duplicated"` // delivered again after an intact delivery
	Corrupt              int64 `json:"corrupt"`    // a body not byte-identical to the one sent
	Misrouted            int64 `json:"misrouted"`  // delivered from a mailbox it was not posted to
	Foreign              int64 `json:"foreign"`    // a body of no message of this run
	Undelivered          int64 `json:"undelivered"`
	// Evicted is what the server counted as evicted during the run
	// (zrc_rendezvous_messages_evicted_total, all reasons); null without
	// metrics, when it is taken as 0.
	Evicted *int64 `json:"evicted"`
	// Lost = Undelivered − Evicted, never below 0.
	Lost int64 `json:"lost"`
	// Drained is whether the drain phase saw every accepted message
	// delivered or evicted before its time ran out.
	Drained bool `json:"drained"`
}

// OK reports whether nothing was lost, duplicated, corrupted, misrouted
// or foreign.
func (v Verification) OK() bool {
	return v.Lost == 0 && v.Duplicated == 0 && v.Corrupt == 0 && v.Misrouted == 0 && v.Foreign == 0
}

// Server is what the server's /metrics and /proc said. Memory, actors,
// queued and waiting are read as the measured window closes, under load.
type Server struct {
	Metrics          bool   `json:"metrics"` // its /metrics could be read
	RSSBytes         *int64 `json:"rss_bytes"`
	RSSPeakBytes     *int64 `json:"rss_peak_bytes"` // sampled every 100 ms over the window; needs --server-pid
	Actors           *int64 `json:"actors"`
	QueuedMessages   *int64 `json:"queued_messages"`
	WaitingLongPolls *int64 `json:"waiting_long_polls"`
	QueuedAfterDrain *int64 `json:"queued_after_drain"`
	// Posted and Delivered are the server's own counts over the run.
	Posted    *int64 `json:"posted"`
	Delivered *int64 `json:"delivered"`
	// CPUSeconds is the server's CPU time (user + system) during the
	// measured window; CPUPerDeliveredUS divides it by the messages
	// delivered in the window. CPUSource is "proc" or "metrics".
	CPUSeconds        *float64 `json:"cpu_seconds"`
	CPUPerDeliveredUS *float64 `json:"cpu_us_per_delivered"`
	CPUSource         string   `json:"cpu_source,omitempty"`
}

// ClientSide describes the load tool's own side.
type ClientSide struct {
	OpenFilesLimit uint64 `json:"open_files_limit,omitempty"` // 0: unknown (not Linux)
	Connections    int    `json:"connections"`                // long-polls plus posters
}

// Second is one second of the run.
type Second struct {
	T         int    `json:"t"` // seconds since the start
	Phase     string `json:"phase"`
	Sent      int64  `json:"sent"`
	Accepted  int64  `json:"accepted"`
	Delivered int64  `json:"delivered"`
	Errors    int64  `json:"errors"`
}

func newReport(cfg Config, r *run) *Report {
	return &Report{
		URL: cfg.URL,
		Config: RunConfig{Mailboxes: cfg.Mailboxes, PollersPerMailbox: cfg.Pollers, Posters: cfg.Posters,
			TargetRate: cfg.Rate, PayloadBytes: cfg.Size, WaitMS: cfg.Wait.Milliseconds(),
			SourceAddrs: cfg.SourceAddrs, ServerPIDs: cfg.ServerPIDs},
		Client:   ClientSide{Connections: cfg.Mailboxes*cfg.Pollers + cfg.Posters},
		Statuses: map[string]int64{},
	}
}

func ptr[T any](v T) *T { return &v }

// fill computes the report from a finished run.
func (rep *Report) fill(r *run, mStart, mEnd serverSample, peakRSS int64, before, after scrape, drained bool) {
	sec := func(d int64) float64 { return float64(d) / float64(time.Second) }
	ps := func(p int32) int64 { return r.phaseStarts[p].Load() }
	rep.Phases = Phases{Connect: sec(ps(phaseWarmUp)), WarmUp: sec(ps(phaseMeasure) - ps(phaseWarmUp)),
		Measure: sec(ps(phaseDrain) - ps(phaseMeasure)), Drain: sec(ps(phaseDone) - ps(phaseDrain))}
	window := rep.Phases.Measure
	rate := func(n int64) float64 {
		if window <= 0 {
			return 0
		}
		return float64(n) / window
	}
	rep.Throughput = Throughput{Sent: r.winSent.Load(), Accepted: r.winAccepted.Load(), Delivered: r.winDelivered.Load()}
	rep.Throughput.SentPerSec = rate(rep.Throughput.Sent)
	rep.Throughput.AcceptedPerSec = rate(rep.Throughput.Accepted)
	rep.Throughput.DeliveredPerSec = rate(rep.Throughput.Delivered)

	h := r.measured.Snapshot()
	rep.hist = h
	ms := func(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
	rep.Latency = Latency{Count: h.N, P50: ms(h.Quantile(0.50)), P95: ms(h.Quantile(0.95)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(time.Duration(h.Max)), Mean: ms(h.Mean())}

	rep.Statuses["POST 202"] = r.posted202.Load()
	rep.Statuses["GET 200"] = r.got200.Load()
	rep.Statuses["GET 204"] = r.got204.Load()
	r.statusMu.Lock()
	for k, v := range r.statuses {
		rep.Statuses[k] = v
	}
	r.statusMu.Unlock()

	both, undelivered, unconfirmed := r.tr.tally(r.nextMsg.Load())
	v := &rep.Verification
	*v = Verification{Accepted: both + undelivered, Delivered: both, DeliveredUnconfirmed: unconfirmed,
		Duplicated: r.duplicated.Load(), Corrupt: r.corrupt.Load(), Misrouted: r.misrouted.Load(),
		Foreign: r.foreign.Load(), Undelivered: undelivered, Drained: drained}
	var evicted int64
	if e, ok := evictions(before, after); ok {
		v.Evicted, evicted = ptr(e), e
	}
	v.Lost = max(undelivered-evicted, 0)

	s := &rep.Server
	s.Metrics = mEnd.scrape != nil
	if mEnd.rssOK {
		s.RSSBytes = ptr(mEnd.rss)
	}
	if peakRSS >= 0 {
		if mEnd.rssOK && mEnd.source == "proc" {
			peakRSS = max(peakRSS, mEnd.rss) // read after the last sample
		}
		s.RSSPeakBytes = ptr(peakRSS)
	}
	gauge := func(sc scrape, name string) *int64 {
		if v, ok := sc.get(name); ok {
			return ptr(int64(v))
		}
		return nil
	}
	delta := func(name string) *int64 {
		b, ok1 := before.get(name)
		a, ok2 := after.get(name)
		if !ok1 || !ok2 {
			return nil
		}
		return ptr(int64(a - b))
	}
	s.Actors = gauge(mEnd.scrape, metricActors)
	s.QueuedMessages = gauge(mEnd.scrape, metricQueued)
	s.WaitingLongPolls = gauge(mEnd.scrape, metricWaiting)
	s.QueuedAfterDrain = gauge(after, metricQueued)
	s.Posted, s.Delivered = delta(metricPosted), delta(metricDelivers)
	if mStart.cpuOK && mEnd.cpuOK && mStart.source == mEnd.source {
		cpu := mEnd.cpu - mStart.cpu
		s.CPUSeconds, s.CPUSource = ptr(cpu.Seconds()), mEnd.source
		if n := rep.Throughput.Delivered; n > 0 {
			s.CPUPerDeliveredUS = ptr(float64(cpu.Microseconds()) / float64(n))
		}
	}
	if s.CPUSource == "metrics" {
		rep.Notes = append(rep.Notes, "server CPU time from process_cpu_seconds_total (10 ms ticks); --server-pid reads /proc")
	}

	last := int(ps(phaseDone) / int64(time.Second))
	for i := 0; i <= last && i < len(r.timeline); i++ {
		t := &r.timeline[i]
		at := int64(i) * int64(time.Second)
		p := phaseConnect
		for q := phaseWarmUp; q <= phaseDone; q++ {
			if at >= ps(q) {
				p = q
			}
		}
		rep.Timeline = append(rep.Timeline, Second{T: i, Phase: phaseNames[p], Sent: t.sent.Load(),
			Accepted: t.accepted.Load(), Delivered: t.delivered.Load(), Errors: t.errors.Load()})
	}
}

// WriteJSON writes the report as indented JSON.
func (rep *Report) WriteJSON(w io.Writer) error {
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(rep)
}

// WriteText writes the report as tables.
func (rep *Report) WriteText(w io.Writer) error {
	var b strings.Builder
	c := rep.Config
	target := "unlimited"
	if c.TargetRate > 0 {
		target = fmt.Sprintf("%g/s", c.TargetRate)
	}
	fmt.Fprintf(&b, "loadtest %s  %s\n", rep.URL, rep.Started.Format(time.RFC3339))
	fmt.Fprintf(&b, "  %d mailboxes × %d long-polls (wait %d ms), %d posters at %s, %d-byte payloads\n",
		c.Mailboxes, c.PollersPerMailbox, c.WaitMS, c.Posters, target, c.PayloadBytes)
	fmt.Fprintf(&b, "  connect %.1fs, warm-up %.1fs, measured %.1fs, drain %.1fs", rep.Phases.Connect,
		rep.Phases.WarmUp, rep.Phases.Measure, rep.Phases.Drain)
	if rep.Interrupted {
		b.WriteString("  (interrupted)")
	}
	b.WriteString("\n\n")

	tw := tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	t := rep.Throughput
	// Equal-width labels stay left-aligned in a right-aligned table.
	fmt.Fprintf(tw, "%-28s\tsent\taccepted\tdelivered\t\n", "throughput (measured window)")
	fmt.Fprintf(tw, "%-28s\t%.1f\t%.1f\t%.1f\t\n", "  per second", t.SentPerSec, t.AcceptedPerSec, t.DeliveredPerSec)
	fmt.Fprintf(tw, "%-28s\t%d\t%d\t%d\t\n", "  messages", t.Sent, t.Accepted, t.Delivered)
	tw.Flush()
	l := rep.Latency
	fmt.Fprintf(&b, "\nlatency, post → delivered (%d messages sent in the window)\n", l.Count)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', tabwriter.AlignRight)
	fmt.Fprintf(tw, "p50\tp95\tp99\tp99.9\tmax\tmean\t\n")
	fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t\n", msText(l.P50), msText(l.P95), msText(l.P99), msText(l.P999),
		msText(l.Max), msText(l.Mean))
	tw.Flush()

	b.WriteString("\nstatuses (whole run)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	keys := make([]string, 0, len(rep.Statuses))
	for k := range rep.Statuses {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		fmt.Fprintf(tw, "  %s\t%d\n", k, rep.Statuses[k])
	}
	tw.Flush()

	v := rep.Verification
	verdict := "OK"
	if !v.OK() {
		verdict = "FAILED"
	}
	fmt.Fprintf(&b, "\nverification (whole run): %s\n", verdict)
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  accepted\t%d\tdelivered\t%d\tunconfirmed delivered\t%d\n", v.Accepted, v.Delivered, v.DeliveredUnconfirmed)
	fmt.Fprintf(tw, "  undelivered\t%d\tevicted\t%s\tlost\t%d\n", v.Undelivered, intText(v.Evicted), v.Lost)
	fmt.Fprintf(tw, "  duplicated\t%d\tcorrupt\t%d\tmisrouted\t%d\n", v.Duplicated, v.Corrupt, v.Misrouted)
	fmt.Fprintf(tw, "  foreign\t%d\tdrained\t%v\t\t\n", v.Foreign, v.Drained)
	tw.Flush()

	s := rep.Server
	b.WriteString("\nserver (as the window closed)\n")
	tw = tabwriter.NewWriter(&b, 0, 0, 2, ' ', 0)
	fmt.Fprintf(tw, "  RSS\t%s\tpeak RSS\t%s\n", mibText(s.RSSBytes), mibText(s.RSSPeakBytes))
	fmt.Fprintf(tw, "  actors\t%s\twaiting long-polls\t%s\n", intText(s.Actors), intText(s.WaitingLongPolls))
	fmt.Fprintf(tw, "  queued messages\t%s\tqueued after drain\t%s\n", intText(s.QueuedMessages), intText(s.QueuedAfterDrain))
	cpu := "n/a"
	if s.CPUPerDeliveredUS != nil {
		cpu = fmt.Sprintf("%.1f µs (%s)", *s.CPUPerDeliveredUS, s.CPUSource)
	}
	cpuSec := "n/a"
	if s.CPUSeconds != nil {
		cpuSec = fmt.Sprintf("%.2f s", *s.CPUSeconds)
	}
	fmt.Fprintf(tw, "  CPU in window\t%s\tCPU per delivered\t%s\n", cpuSec, cpu)
	tw.Flush()
	for _, n := range rep.Notes {
		fmt.Fprintf(&b, "note: %s\n", n)
	}
	_, err := io.WriteString(w, b.String())
	return err
}

func msText(ms float64) string {
	return fmtDuration(time.Duration(ms * float64(time.Millisecond)))
}

func intText(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprint(*v)
}

func mibText(v *int64) string {
	if v == nil {
		return "n/a"
	}
	return fmt.Sprintf("%.1f MiB", float64(*v)/(1<<20))
}
