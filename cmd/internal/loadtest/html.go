package loadtest

import (
	"fmt"
	"io"
	"math"
	"slices"
	"strings"
	"time"
)

// WriteHTML writes the report as one self-contained page: tables, the
// latency histogram and throughput over time as inline SVG, no scripts,
// no external assets. The page is well-formed XML (XHTML syntax), so that
// tests and other tools can parse it.
func (rep *Report) WriteHTML(w io.Writer) error {
	var text strings.Builder
	if err := rep.WriteText(&text); err != nil {
		return err
	}
	statuses := make([]kv, 0, len(rep.Statuses))
	for k, v := range rep.Statuses {
		statuses = append(statuses, kv{k, fmt.Sprint(v)})
	}
	slices.SortFunc(statuses, func(a, b kv) int { return strings.Compare(a.K, b.K) })
	verdict := "OK"
	if !rep.Verification.OK() {
		verdict = "FAILED"
	}
	var b strings.Builder
	p := page{
		Title:      "zrc-rendezvous loadtest " + rep.Started.Format(time.RFC3339),
		R:          rep,
		Verdict:    verdict,
		Statuses:   statuses,
		Latency:    latencyChart(rep),
		Throughput: throughputChart(rep),
		Text:       text.String(),
	}
	p.State, p.Memory, p.CPU = serverCharts(rep)
	writePage(&b, p)
	_, err := io.WriteString(w, b.String())
	return err
}

type kv struct{ K, V string }

type page struct {
	Title      string
	R          *Report
	Verdict    string
	Statuses   []kv
	Latency    chart
	Throughput chart
	// The server's side over the run, on the throughput chart's time axis.
	State, Memory, CPU chart
	Text               string
}

// chart is one SVG, its geometry computed here so the template only
// places it.
type chart struct {
	W, H, Left, Top, Right, Bottom int
	Empty                          string // shown instead of the plot when there is nothing to draw
	Bars                           []bar
	Lines                          []line
	Bands                          []bar // shaded phase bands
	XTicks, YTicks                 []tick
	Markers                        []marker
	XLabel, YLabel                 string
}

type bar struct {
	X, Y, W, H float64
	Title      string
	Class      string
}

type line struct {
	Points string
	Class  string
	Name   string
}

type tick struct {
	X, Y  float64
	Label string
}

type marker struct {
	X     float64
	Label string
}

const (
	chartW, chartH         = 760, 280
	padL, padR, padT, padB = 64, 16, 16, 40
	plotW, plotH           = chartW - padL - padR, chartH - padT - padB
	histBins               = 48
)

// latencyChart bins the measured latencies into histBins log-spaced bins
// between the smallest and the largest.
func latencyChart(rep *Report) chart {
	c := chart{W: chartW, H: chartH, Left: padL, Top: padT, Right: chartW - padR, Bottom: chartH - padB,
		XLabel: "latency, post → delivered (log scale)", YLabel: "messages"}
	h := rep.hist
	if h == nil || h.N == 0 {
		c.Empty = "no message sent in the measured window was delivered"
		return c
	}
	lo := math.Max(float64(h.Min()), 1000) // from 1 µs
	hi := math.Max(float64(h.Max), lo*1.5)
	llo, lhi := math.Log(lo), math.Log(hi)
	bins := make([]int64, histBins)
	for i, n := range h.Buckets {
		if n == 0 {
			continue
		}
		blo, bhi := bucketBounds(i)
		mid := math.Max((float64(blo)+float64(bhi))/2, lo)
		k := int((math.Log(mid) - llo) / (lhi - llo) * histBins)
		bins[min(max(k, 0), histBins-1)] += n
	}
	top := slices.Max(bins)
	x := func(ns float64) float64 { return padL + (math.Log(ns)-llo)/(lhi-llo)*plotW }
	bw := float64(plotW) / histBins
	for k, n := range bins {
		if n == 0 {
			continue
		}
		bh := float64(n) / float64(top) * plotH
		from := math.Exp(llo + float64(k)/histBins*(lhi-llo))
		to := math.Exp(llo + float64(k+1)/histBins*(lhi-llo))
		c.Bars = append(c.Bars, bar{X: padL + float64(k)*bw + 0.5, Y: padT + plotH - bh, W: bw - 1, H: bh,
			Title: fmt.Sprintf("%s – %s: %d", fmtDuration(time.Duration(from)), fmtDuration(time.Duration(to)), n)})
	}
	for _, v := range niceLogTicks(lo, hi) {
		c.XTicks = append(c.XTicks, tick{X: x(v), Y: padT + plotH, Label: tickDuration(time.Duration(v))})
	}
	for _, v := range niceTicks(float64(top)) {
		c.YTicks = append(c.YTicks, tick{X: padL, Y: padT + plotH - v/float64(top)*plotH, Label: fmtCount(v)})
	}
	for _, q := range []struct {
		name string
		ms   float64
	}{{"p50", rep.Latency.P50}, {"p95", rep.Latency.P95}, {"p99", rep.Latency.P99}} {
		ns := q.ms * float64(time.Millisecond)
		if ns >= lo && ns <= hi {
			c.Markers = append(c.Markers, marker{X: x(ns), Label: q.name + " " + msText(q.ms)})
		}
	}
	return c
}

// timeSeries is one line of a chart over the run: values at seconds
// since the start.
type timeSeries struct {
	name, class string
	t, v        []float64
}

func (s *timeSeries) add(t, v float64) { s.t, s.v = append(s.t, t), append(s.v, v) }

// timeSpan is the x axis every chart over the run shares: the whole run,
// from the timeline and the server's samples.
func timeSpan(rep *Report) float64 {
	span := float64(max(len(rep.Timeline), 2))
	if n := len(rep.ServerTimeline); n > 0 {
		span = max(span, math.Ceil(rep.ServerTimeline[n-1].T))
	}
	return span
}

// timeChart draws series over the run on the shared time axis, with the
// measured window shaded; empty says why when no series has a point.
func timeChart(rep *Report, yLabel, empty string, series []timeSeries) chart {
	c := chart{W: chartW, H: chartH, Left: padL, Top: padT, Right: chartW - padR, Bottom: chartH - padB,
		XLabel: "seconds since start", YLabel: yLabel}
	top, points := 0.0, 0
	for _, s := range series {
		for _, v := range s.v {
			top = max(top, v)
		}
		points += len(s.v)
	}
	if points == 0 {
		c.Empty = empty
		return c
	}
	top = max(top, 1)
	span := timeSpan(rep)
	x := func(t float64) float64 { return padL + t/span*plotW }
	y := func(v float64) float64 { return padT + plotH - v/top*plotH }
	for _, s := range series {
		if len(s.v) == 0 {
			continue
		}
		var pts strings.Builder
		for i, v := range s.v {
			fmt.Fprintf(&pts, "%.1f,%.1f ", x(s.t[i]), y(v))
		}
		c.Lines = append(c.Lines, line{Points: strings.TrimSpace(pts.String()), Class: s.class, Name: s.name})
	}
	ph := rep.Phases
	from := ph.Connect + ph.WarmUp
	c.Bands = append(c.Bands, bar{X: x(from), Y: padT, W: x(from+ph.Measure) - x(from), H: plotH,
		Title: "measured window", Class: "window"})
	for _, v := range niceTicks(span) {
		c.XTicks = append(c.XTicks, tick{X: x(v), Y: padT + plotH, Label: fmt.Sprintf("%.0f", v)})
	}
	for _, v := range niceTicks(top) {
		c.YTicks = append(c.YTicks, tick{X: padL, Y: y(v), Label: fmtCount(v)})
	}
	return c
}

// throughputChart draws sent, delivered and errors per second over the
// run; each second's count at the middle of its second.
func throughputChart(rep *Report) chart {
	series := []timeSeries{{name: "sent", class: "sent"}, {name: "delivered", class: "delivered"}, {name: "errors", class: "errors"}}
	for _, p := range rep.Timeline {
		for i, v := range []int64{p.Sent, p.Delivered, p.Errors} {
			series[i].add(float64(p.T)+0.5, float64(v))
		}
	}
	return timeChart(rep, "per second", "no timeline", series)
}

// serverCharts draw the server's side over the run: its actors, waiting
// long-polls and queued messages; its resident memory; its CPU.
func serverCharts(rep *Report) (state, memory, cpu chart) {
	state3 := []timeSeries{{name: "actors", class: "actors"}, {name: "waiting long-polls", class: "waiting"},
		{name: "queued messages", class: "queued"}}
	rss := []timeSeries{{name: "resident memory, MiB", class: "rss"}}
	busy := []timeSeries{{name: "CPU, % of one core", class: "cpu"}}
	count := func(s *timeSeries, t float64, v *int64) {
		if v != nil {
			s.add(t, float64(*v))
		}
	}
	for _, p := range rep.ServerTimeline {
		count(&state3[0], p.T, p.Actors)
		count(&state3[1], p.T, p.WaitingLongPolls)
		count(&state3[2], p.T, p.QueuedMessages)
		if p.RSSBytes != nil {
			rss[0].add(p.T, float64(*p.RSSBytes)/(1<<20))
		}
		if p.CPUPercent != nil {
			busy[0].add(p.T, *p.CPUPercent)
		}
	}
	none := "the server's metrics were not read during the run"
	return timeChart(rep, "count", none, state3),
		timeChart(rep, "MiB", none+" (nor /proc: --server-pid)", rss),
		timeChart(rep, "% of one core", none+" (nor /proc: --server-pid)", busy)
}

// niceTicks returns about five round values from 0 to top.
func niceTicks(top float64) []float64 {
	if top <= 0 {
		return []float64{0}
	}
	raw := top / 5
	mag := math.Pow(10, math.Floor(math.Log10(raw)))
	step := mag
	for _, m := range []float64{1, 2, 5, 10} {
		if m*mag >= raw {
			step = m * mag
			break
		}
	}
	var out []float64
	for v := 0.0; v <= top*1.0001; v += step {
		out = append(out, v)
	}
	return out
}

// niceLogTicks returns the 1-2-5 values between lo and hi.
func niceLogTicks(lo, hi float64) []float64 {
	var out []float64
	for mag := math.Pow(10, math.Floor(math.Log10(lo))); mag <= hi; mag *= 10 {
		for _, m := range []float64{1, 2, 5} {
			if v := m * mag; v >= lo && v <= hi {
				out = append(out, v)
			}
		}
	}
	return out
}

// tickDuration is fmtDuration without trailing zeros: 1ms, not 1.00ms.
func tickDuration(d time.Duration) string {
	s := fmtDuration(d)
	num := strings.TrimRight(s, "µms")
	if strings.Contains(num, ".") {
		num = strings.TrimRight(strings.TrimRight(num, "0"), ".")
	}
	return num + s[len(strings.TrimRight(s, "µms")):]
}

func fmtCount(v float64) string {
	switch {
	case v >= 1e6:
		return fmt.Sprintf("%gM", v/1e6)
	case v >= 1e4:
		return fmt.Sprintf("%gk", v/1e3)
	}
	return fmt.Sprintf("%g", v)
}

// esc escapes text for HTML and XML content and quoted attributes.
var esc = strings.NewReplacer("&", "&amp;", "<", "&lt;", ">", "&gt;", `"`, "&#34;", "'", "&#39;").Replace

// writePage writes the page. It is plain writes rather than html/template
// on purpose: text/template calls methods through reflection, which makes
// the linker keep every exported method of every type in the binary — the
// server binary, which holds this tool — and that cost 3.7 MB of binary
// and 2 MB of the server's resident memory at start. Every string that is
// not a literal here goes through esc.
func writePage(b *strings.Builder, p page) {
	r := p.R
	f := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	row := func(cells ...string) {
		b.WriteString("<tr>")
		for _, c := range cells {
			b.WriteString(c)
		}
		b.WriteString("</tr>\n")
	}
	th := func(s string) string { return "<th>" + esc(s) + "</th>" }
	td := func(s string) string { return "<td>" + esc(s) + "</td>" }
	f1 := func(v float64) string { return fmt.Sprintf("%.1f", v) }
	n := func(v int64) string { return fmt.Sprint(v) }

	f(`<!DOCTYPE html>
<html xmlns="http://www.w3.org/1999/xhtml" lang="en">
<head>
<meta charset="utf-8"/>
<title>%s</title>
<style>
body { font: 14px/1.4 system-ui, sans-serif; margin: 2em; color: #222; max-width: 60em; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
td, th { padding: 0.2em 0.8em; border-bottom: 1px solid #ddd; text-align: right; }
th { text-align: left; font-weight: 600; }
.ok { color: #176f2c; } .failed { color: #b00020; }
svg { display: block; margin: 0.5em 0 1.5em; }
svg text { font: 11px system-ui, sans-serif; fill: #444; }
.axis { stroke: #888; stroke-width: 1; }
.grid { stroke: #eee; stroke-width: 1; }
.bar { fill: #4a78c2; }
.marker { stroke: #b00020; stroke-dasharray: 4 3; }
.window { fill: #f3f6ea; }
polyline { fill: none; stroke-width: 1.5; }
.sent { stroke: #4a78c2; } .delivered { stroke: #2e9d4e; } .errors { stroke: #b00020; }
.key-sent { color: #4a78c2; } .key-delivered { color: #2e9d4e; } .key-errors { color: #b00020; }
.actors { stroke: #7b4ab0; } .waiting { stroke: #d08a1c; } .queued { stroke: #2b8c8c; } .rss { stroke: #555; } .cpu { stroke: #c2474a; }
.key-actors { color: #7b4ab0; } .key-waiting { color: #d08a1c; } .key-queued { color: #2b8c8c; }
pre { background: #f6f6f6; padding: 1em; overflow-x: auto; }
</style>
</head>
<body>
<h1>%s</h1>
`, esc(p.Title), esc(p.Title))
	c := r.Config
	pace := ", unpaced"
	if c.TargetRate > 0 {
		pace = fmt.Sprintf(" at %g/s", c.TargetRate)
	}
	f("<p>%s: %d mailboxes × %d long-polls (wait %d ms), %d posters%s, %d-byte payloads. Measured %.1f s after %.1f s of warm-up; drain %.1f s.",
		esc(r.URL), c.Mailboxes, c.PollersPerMailbox, c.WaitMS, c.Posters, esc(pace), c.PayloadBytes,
		r.Phases.Measure, r.Phases.WarmUp, r.Phases.Drain)
	if r.Interrupted {
		b.WriteString(" <strong>Interrupted.</strong>")
	}
	b.WriteString("</p>\n")

	t := r.Throughput
	b.WriteString("<h2>Throughput (measured window)</h2>\n<table>\n")
	row(th(""), th("sent"), th("accepted"), th("delivered"))
	row(th("per second"), td(f1(t.SentPerSec)), td(f1(t.AcceptedPerSec)), td(f1(t.DeliveredPerSec)))
	row(th("messages"), td(n(t.Sent)), td(n(t.Accepted)), td(n(t.Delivered)))
	b.WriteString("</table>\n")
	writeChart(b, p.Throughput)
	b.WriteString(`<p><span class="key-sent">■</span> sent <span class="key-delivered">■</span> delivered ` +
		`<span class="key-errors">■</span> errors per second; the shaded band is the measured window.</p>` + "\n")
	b.WriteString("<h2>Server over the run</h2>\n")
	writeChart(b, p.State)
	b.WriteString(`<p><span class="key-actors">■</span> actors <span class="key-waiting">■</span> waiting long-polls ` +
		`<span class="key-queued">■</span> queued messages, summed over the nodes, read from /metrics every sample.</p>` + "\n")
	writeChart(b, p.Memory)
	writeChart(b, p.CPU)
	b.WriteString("<p>Resident memory and CPU of the server's processes (from /proc with --server-pid, else from /metrics), " +
		"on the same time axis as the throughput above.</p>\n")

	l := r.Latency
	b.WriteString("<h2>Latency, post → delivered</h2>\n<table>\n")
	row(th("messages"), th("p50"), th("p95"), th("p99"), th("p99.9"), th("max"), th("mean"))
	row(td(n(l.Count)), td(msText(l.P50)), td(msText(l.P95)), td(msText(l.P99)), td(msText(l.P999)), td(msText(l.Max)), td(msText(l.Mean)))
	b.WriteString("</table>\n")
	writeChart(b, p.Latency)

	v := r.Verification
	f(`<h2>Verification (whole run): <span class="%s">%s</span></h2>`+"\n<table>\n", strings.ToLower(p.Verdict), esc(p.Verdict))
	row(th("accepted"), td(n(v.Accepted)), th("delivered"), td(n(v.Delivered)), th("unconfirmed delivered"), td(n(v.DeliveredUnconfirmed)))
	row(th("undelivered"), td(n(v.Undelivered)), th("evicted"), td(intText(v.Evicted)), th("lost"), td(n(v.Lost)))
	row(th("duplicated"), td(n(v.Duplicated)), th("corrupt"), td(n(v.Corrupt)), th("misrouted"), td(n(v.Misrouted)))
	b.WriteString("</table>\n")

	s := r.Server
	b.WriteString("<h2>Server (as the window closed)</h2>\n<table>\n")
	row(th("RSS"), td(mibText(s.RSSBytes)), th("peak RSS"), td(mibText(s.RSSPeakBytes)))
	row(th("actors"), td(intText(s.Actors)), th("waiting long-polls"), td(intText(s.WaitingLongPolls)))
	row(th("queued messages"), td(intText(s.QueuedMessages)), th("queued after drain"), td(intText(s.QueuedAfterDrain)))
	b.WriteString("</table>\n")

	b.WriteString("<h2>Statuses (whole run)</h2>\n<table>\n")
	for _, kv := range p.Statuses {
		row(th(kv.K), td(kv.V))
	}
	b.WriteString("</table>\n")
	f("<h2>Report</h2>\n<pre>%s</pre>\n</body>\n</html>\n", esc(p.Text))
}

// writeChart writes one chart as inline SVG.
func writeChart(b *strings.Builder, c chart) {
	f := func(format string, a ...any) { fmt.Fprintf(b, format, a...) }
	f(`<svg xmlns="http://www.w3.org/2000/svg" width="%d" height="%d" viewBox="0 0 %d %d" role="img">`+"\n", c.W, c.H, c.W, c.H)
	if c.Empty != "" {
		f(`<text x="%d" y="%d" dy="1em">%s</text>`+"\n</svg>\n", c.Left, c.Top, esc(c.Empty))
		return
	}
	for _, r := range c.Bands {
		f(`<rect class="%s" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect>`+"\n",
			esc(r.Class), r.X, r.Y, r.W, r.H, esc(r.Title))
	}
	for _, t := range c.YTicks {
		f(`<line class="grid" x1="%d" x2="%d" y1="%.1f" y2="%.1f"/><text x="%d" y="%.1f" dy="0.3em" text-anchor="end">%s</text>`+"\n",
			c.Left, c.Right, t.Y, t.Y, c.Left-6, t.Y, esc(t.Label))
	}
	for _, r := range c.Bars {
		f(`<rect class="bar" x="%.1f" y="%.1f" width="%.1f" height="%.1f"><title>%s</title></rect>`+"\n",
			r.X, r.Y, r.W, r.H, esc(r.Title))
	}
	for _, l := range c.Lines {
		f(`<polyline class="%s" points="%s"><title>%s</title></polyline>`+"\n", esc(l.Class), esc(l.Points), esc(l.Name))
	}
	for _, m := range c.Markers {
		f(`<line class="marker" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/><text x="%.1f" y="%d" dx="3" dy="0.8em">%s</text>`+"\n",
			m.X, m.X, c.Top, c.Bottom, m.X, c.Top, esc(m.Label))
	}
	for _, t := range c.XTicks {
		f(`<line class="axis" x1="%.1f" x2="%.1f" y1="%d" y2="%d"/><text x="%.1f" y="%d" dy="1.2em" text-anchor="middle">%s</text>`+"\n",
			t.X, t.X, c.Bottom, c.Bottom+4, t.X, c.Bottom, esc(t.Label))
	}
	f(`<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`+"\n", c.Left, c.Right, c.Bottom, c.Bottom)
	f(`<line class="axis" x1="%d" x2="%d" y1="%d" y2="%d"/>`+"\n", c.Left, c.Left, c.Top, c.Bottom)
	f(`<text x="%d" y="%d" dy="-0.3em" text-anchor="middle">%s</text>`+"\n", (c.Left+c.Right)/2, c.H, esc(c.XLabel))
	f(`<text x="8" y="%d">%s</text>`+"\n</svg>\n", c.Top-12, esc(c.YLabel))
}
