package loadtest

import (
	"bytes"
	"context"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
)

// newServer serves the real handler and supervisor over loopback; wrap,
// if set, decorates the handler (to tamper with answers or watch peers).
func newServer(t *testing.T, serveMetrics bool, wrap func(http.Handler) http.Handler) string {
	t.Helper()
	set := metrics.NewSet()
	sup := supervisor.New(supervisor.Options{MaxQueueLength: 100, TTL: 5 * time.Minute, IdleTimeout: time.Hour,
		EvictionInterval: time.Hour, MaxMailboxes: 1000, MemoryLimit: 16 << 20, Metrics: set})
	var h http.Handler = httpapi.New(httpapi.Deps{Mailboxes: sup, Metrics: set, Options: httpapi.Options{
		MaxMessageSize: 4096, LongPollDefault: time.Second, LongPollMax: 10 * time.Second,
		ServeMetrics: serveMetrics}})
	if wrap != nil {
		h = wrap(h)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		sup.Close()
	})
	return srv.URL
}

func shortConfig(url string) Config {
	return Config{URL: url, Mailboxes: 4, Pollers: 2, Posters: 2, Rate: 200, Size: 256,
		WarmUp: 200 * time.Millisecond, Duration: time.Second, Drain: 5 * time.Second, Wait: 2 * time.Second}
}

// peers records the source addresses the server saw.
type peers struct {
	mu   sync.Mutex
	seen map[string]bool
}

func (p *peers) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if host, _, err := net.SplitHostPort(r.RemoteAddr); err == nil {
			p.mu.Lock()
			p.seen[host] = true
			p.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

func TestRunDeliversEverything(t *testing.T) {
	p := &peers{seen: map[string]bool{}}
	cfg := shortConfig(newServer(t, true, p.wrap))
	if runtime.GOOS == "linux" {
		cfg.SourceAddrs = []string{"127.0.0.1", "127.0.0.2"} // all of 127/8 is loopback on Linux
	}
	var progress bytes.Buffer
	cfg.Progress, cfg.ProgressEvery, cfg.SampleEvery = &progress, 100*time.Millisecond, 100*time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	checkServerTimeline(t, rep, cfg.Mailboxes, cfg.Mailboxes*cfg.Pollers)
	v := rep.Verification
	if !v.OK() || !v.Drained || v.Accepted == 0 || v.Delivered != v.Accepted || v.DeliveredUnconfirmed != 0 {
		t.Fatalf("verification %+v; want every accepted message delivered once, intact", v)
	}
	if v.Evicted == nil || *v.Evicted != 0 {
		t.Fatalf("evicted %v; want 0 read from /metrics", v.Evicted)
	}
	if got := rep.Statuses["POST 202"]; got != v.Accepted {
		t.Fatalf("POST 202 counted %d; accepted %d", got, v.Accepted)
	}
	tp := rep.Throughput
	if tp.SentPerSec < 100 || tp.SentPerSec > 300 || tp.Delivered == 0 {
		t.Fatalf("throughput %+v; want about 200 sent/s and deliveries", tp)
	}
	l := rep.Latency
	if l.Count == 0 || l.P50 <= 0 || l.P50 > l.P95 || l.P95 > l.P99 || l.P99 > l.Max || l.Mean > l.Max {
		t.Fatalf("latency %+v; want 0 < p50 ≤ p95 ≤ p99 ≤ max", l)
	}
	s := rep.Server
	if !s.Metrics || s.Actors == nil || *s.Actors != 4 || s.WaitingLongPolls == nil || s.QueuedAfterDrain == nil ||
		*s.QueuedAfterDrain != 0 || s.Posted == nil || *s.Posted != v.Accepted {
		t.Fatalf("server %+v; want metrics with 4 actors, nothing queued after the drain, %d posted", s, v.Accepted)
	}
	if runtime.GOOS == "linux" {
		if s.RSSBytes == nil || *s.RSSBytes <= 0 || s.CPUSeconds == nil {
			t.Fatalf("server RSS %v, CPU %v; want both read from process metrics", s.RSSBytes, s.CPUSeconds)
		}
		if !p.seen["127.0.0.1"] || !p.seen["127.0.0.2"] {
			t.Fatalf("the server saw peers %v; want both source addresses", p.seen)
		}
	}
	if len(rep.Timeline) < 1 || rep.Phases.Measure < 0.9 {
		t.Fatalf("timeline of %d seconds, phases %+v", len(rep.Timeline), rep.Phases)
	}
	if !strings.Contains(progress.String(), "delivered") || !strings.Contains(progress.String(), "actors 4  queued ") ||
		!strings.HasSuffix(progress.String(), "\r\033[K") {
		t.Fatalf("progress output %q; want lines, cleared at the end", progress.String())
	}

	var text, js, page bytes.Buffer
	if err := rep.WriteText(&text); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"verification (whole run): OK", "p99", "POST 202", "actors"} {
		if !strings.Contains(text.String(), want) {
			t.Fatalf("text report lacks %q:\n%s", want, text.String())
		}
	}
	if err := rep.WriteJSON(&js); err != nil {
		t.Fatal(err)
	}
	var back map[string]any
	if err := json.Unmarshal(js.Bytes(), &back); err != nil {
		t.Fatalf("JSON report: %v", err)
	}
	for _, key := range []string{"throughput", "latency_ms", "statuses", "verification", "server", "timeline", "server_timeline"} {
		if _, ok := back[key]; !ok {
			t.Fatalf("JSON report lacks %q", key)
		}
	}
	if err := rep.WriteHTML(&page); err != nil {
		t.Fatal(err)
	}
	checkHTML(t, page.Bytes())
}

// checkServerTimeline checks the server's side sampled during a run:
// actors rise to the number of mailboxes, waiting long-polls reach the
// number of pollers and never exceed it, the samples cover the run in
// order, and memory and CPU were read.
func checkServerTimeline(t *testing.T, rep *Report, mailboxes, polls int) {
	t.Helper()
	tl := rep.ServerTimeline
	if len(tl) < 10 {
		t.Fatalf("%d server samples; want one every 100 ms of a run of %.1f s", len(tl), rep.Phases.WarmUp+rep.Phases.Measure)
	}
	var maxActors, maxWaiting int64
	cpu := 0
	for i, p := range tl {
		if p.Actors == nil || p.WaitingLongPolls == nil || p.QueuedMessages == nil {
			t.Fatalf("sample %d %+v lacks a metric", i, p)
		}
		if i > 0 && p.T <= tl[i-1].T {
			t.Fatalf("sample %d at %.2f s after one at %.2f s", i, p.T, tl[i-1].T)
		}
		if *p.Actors > int64(mailboxes) || *p.WaitingLongPolls > int64(polls) || *p.QueuedMessages < 0 {
			t.Fatalf("sample %d: %d actors, %d waiting, %d queued; want at most %d actors and %d waiting",
				i, *p.Actors, *p.WaitingLongPolls, *p.QueuedMessages, mailboxes, polls)
		}
		maxActors, maxWaiting = max(maxActors, *p.Actors), max(maxWaiting, *p.WaitingLongPolls)
		if p.CPUPercent != nil {
			if *p.CPUPercent < 0 || *p.CPUPercent > 100*float64(runtime.NumCPU())+50 {
				t.Fatalf("sample %d: CPU %.0f %%", i, *p.CPUPercent)
			}
			cpu++
		}
	}
	if maxActors != int64(mailboxes) || maxWaiting != int64(polls) {
		t.Fatalf("actors rose to %d, waiting long-polls to %d; want %d and %d", maxActors, maxWaiting, mailboxes, polls)
	}
	// One sample every 100 ms until the run ends.
	if last, end := tl[len(tl)-1].T, rep.Phases.Connect+rep.Phases.WarmUp+rep.Phases.Measure+rep.Phases.Drain; last < end-0.15 {
		t.Fatalf("the last sample at %.2f s; the run ended at %.2f s", last, end)
	}
	if runtime.GOOS == "linux" && (tl[0].RSSBytes == nil || *tl[0].RSSBytes <= 0 || cpu != len(tl)-1) {
		t.Fatalf("resident memory %v, CPU in %d of %d samples; want both read", tl[0].RSSBytes, cpu, len(tl))
	}
}

// checkHTML parses the page as strict XML and checks its structure: the
// inline SVG charts with their bars and lines, and nothing fetched from
// elsewhere.
func checkHTML(t *testing.T, page []byte) {
	t.Helper()
	d := xml.NewDecoder(bytes.NewReader(page))
	d.Strict = true
	count := map[string]int{}
	var stack []string
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("the HTML report is not well-formed: %v", err)
		}
		switch e := tok.(type) {
		case xml.StartElement:
			count[e.Name.Local]++
			stack = append(stack, e.Name.Local)
			for _, a := range e.Attr {
				if a.Name.Local == "src" || a.Name.Local == "href" {
					t.Fatalf("<%s %s=%q>: the page must not load anything", e.Name.Local, a.Name.Local, a.Value)
				}
			}
		case xml.EndElement:
			stack = stack[:len(stack)-1]
		}
	}
	if len(stack) != 0 {
		t.Fatalf("unclosed elements %v", stack)
	}
	for el, want := range map[string]int{"html": 1, "svg": 5, "polyline": 8, "table": 5} {
		if count[el] < want {
			t.Fatalf("%d <%s>; want at least %d (counts %v)", count[el], el, want, count)
		}
	}
	if count["rect"] < 3 {
		t.Fatalf("%d <rect>; want histogram bars and the window band", count["rect"])
	}
	if bytes.Contains(page, []byte("url(")) || bytes.Contains(page, []byte("<script")) {
		t.Fatal("the page references external assets or scripts")
	}
}

// flipper changes the last byte of every delivered body.
func flipper(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodGet && strings.HasPrefix(r.URL.Path, "/v1/mailbox/") {
			w = &flipWriter{ResponseWriter: w}
		}
		h.ServeHTTP(w, r)
	})
}

type flipWriter struct {
	http.ResponseWriter
	status int
}

func (f *flipWriter) WriteHeader(code int) { f.status = code; f.ResponseWriter.WriteHeader(code) }

func (f *flipWriter) Write(b []byte) (int, error) {
	if (f.status == 0 || f.status == http.StatusOK) && len(b) > 0 {
		b = bytes.Clone(b)
		b[len(b)-1] ^= 0x01
	}
	return f.ResponseWriter.Write(b)
}

func (f *flipWriter) Unwrap() http.ResponseWriter { return f.ResponseWriter }

// A server that changes one bit of each body is caught: every delivery is
// corrupt, none counts as delivered, and the run fails verification.
func TestRunCatchesCorruptBodies(t *testing.T) {
	cfg := shortConfig(newServer(t, true, flipper))
	cfg.Mailboxes, cfg.Pollers, cfg.Posters, cfg.Rate = 2, 1, 1, 50
	cfg.Duration, cfg.Drain = 500*time.Millisecond, 300*time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	v := rep.Verification
	if v.Corrupt == 0 || v.Corrupt != rep.Statuses["GET 200"] || v.Delivered != 0 || v.OK() {
		t.Fatalf("verification %+v (GET 200: %d); want every delivery corrupt and the run failed", v, rep.Statuses["GET 200"])
	}
	if v.Lost != v.Accepted || v.Drained {
		t.Fatalf("lost %d of %d accepted, drained %v; a corrupt delivery is no delivery", v.Lost, v.Accepted, v.Drained)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "FAILED") {
		t.Fatalf("text report does not say FAILED:\n%s", text.String())
	}
}

// Without /metrics (cmd/zrc-baseline has none) the server's figures are
// n/a, and lost is accepted − delivered.
func TestRunWithoutMetrics(t *testing.T) {
	cfg := shortConfig(newServer(t, false, nil))
	cfg.Mailboxes, cfg.Pollers, cfg.Duration = 2, 1, 500*time.Millisecond
	rep, err := Run(context.Background(), cfg)
	if err != nil {
		t.Fatal(err)
	}
	s, v := rep.Server, rep.Verification
	if s.Metrics || s.Actors != nil || s.RSSBytes != nil || s.CPUSeconds != nil || v.Evicted != nil {
		t.Fatalf("server %+v, evicted %v; want n/a everywhere", s, v.Evicted)
	}
	if !v.OK() || v.Delivered == 0 {
		t.Fatalf("verification %+v", v)
	}
	var text bytes.Buffer
	rep.WriteText(&text)
	if !strings.Contains(text.String(), "n/a") {
		t.Fatalf("text report without n/a:\n%s", text.String())
	}
}

func TestRunInterrupted(t *testing.T) {
	cfg := shortConfig(newServer(t, true, nil))
	cfg.Duration = time.Minute
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	start := time.Now()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	if !rep.Interrupted || time.Since(start) > 10*time.Second {
		t.Fatalf("interrupted %v after %v; want a prompt, marked stop", rep.Interrupted, time.Since(start))
	}
}

func TestConfigCheck(t *testing.T) {
	good := Config{URL: "http://127.0.0.1:1", Mailboxes: 1, Pollers: 1, Posters: 1, Size: MinPayload, Duration: time.Second}
	if err := good.Check(); err != nil {
		t.Fatalf("good config refused: %v", err)
	}
	tests := []struct {
		name string
		mod  func(*Config)
	}{
		{"url", func(c *Config) { c.URL = "127.0.0.1:8080" }},
		{"mailboxes", func(c *Config) { c.Mailboxes = 0 }},
		{"pollers", func(c *Config) { c.Pollers = 0 }},
		{"posters", func(c *Config) { c.Posters = 0 }},
		{"rate", func(c *Config) { c.Rate = -1 }},
		{"size", func(c *Config) { c.Size = MinPayload - 1 }},
		{"duration", func(c *Config) { c.Duration = 0 }},
		{"source address", func(c *Config) { c.SourceAddrs = []string{"localhost"} }},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := good
			tt.mod(&c)
			if err := c.Check(); err == nil {
				t.Fatal("accepted")
			}
		})
	}
}

// Every single-byte change of a payload is detected, and a payload of
// another run is foreign.
func TestPayloadVerification(t *testing.T) {
	for _, size := range []int{MinPayload, 41, 100, 1024} {
		b := make([]byte, size)
		h := header{run: 42, msg: 7, mailbox: 3, sent: 123456}
		encode(b, h)
		got, err := decode(b, 42)
		if err != nil || got != h {
			t.Fatalf("size %d: decode %+v, %v; want %+v", size, got, err, h)
		}
		if _, err := decode(b, 43); !errors.Is(err, errForeign) {
			t.Fatalf("size %d: another run's payload: %v; want errForeign", size, err)
		}
		for i := range b {
			c := bytes.Clone(b)
			c[i] ^= 0x80
			if _, err := decode(c, 42); err == nil {
				t.Fatalf("size %d: a change at byte %d went unnoticed", size, i)
			}
		}
		if _, err := decode(b[:size-1], 42); err == nil {
			t.Fatalf("size %d: a truncated payload went unnoticed", size)
		}
	}
	a, b := make([]byte, 64), make([]byte, 64)
	encode(a, header{run: 1, msg: 1})
	encode(b, header{run: 1, msg: 2})
	if bytes.Equal(a[headerSize:], b[headerSize:]) {
		t.Fatal("two messages share a filler")
	}
}

// A second intact delivery of a message counts as duplicated, not as
// delivered.
func TestVerifyCountsDuplicates(t *testing.T) {
	r := &run{tr: newTracker(), timeline: make([]second, 1), runID: 9}
	r.windowFrom.Store(0)
	r.windowTo.Store(1<<63 - 1)
	r.nextMsg.Store(1)
	body := make([]byte, 100)
	encode(body, header{run: 9, msg: 0, mailbox: 1, sent: 10})
	r.tr.accepted(0)
	r.verify(body, 1, time.Millisecond)
	r.verify(body, 1, 2*time.Millisecond)
	r.verify(body, 0, 3*time.Millisecond)
	if r.duplicated.Load() != 1 || r.misrouted.Load() != 1 || r.all.n.Load() != 1 || r.tr.outstanding.Load() != 0 {
		t.Fatalf("duplicated %d, misrouted %d, delivered %d, outstanding %d; want 1, 1, 1, 0",
			r.duplicated.Load(), r.misrouted.Load(), r.all.n.Load(), r.tr.outstanding.Load())
	}
	both, undelivered, unconfirmed := r.tr.tally(1)
	if both != 1 || undelivered != 0 || unconfirmed != 0 {
		t.Fatalf("tally %d %d %d; want 1 0 0", both, undelivered, unconfirmed)
	}
}

func TestTrackerOrder(t *testing.T) {
	tr := newTracker()
	// Delivered before its 202 is seen (a waiting GET took it at once).
	if !tr.delivered(70000) {
		t.Fatal("first delivery refused")
	}
	tr.accepted(70000)
	tr.accepted(5)
	if n := tr.outstanding.Load(); n != 1 {
		t.Fatalf("outstanding %d; want 1 (only id 5)", n)
	}
	tr.delivered(5)
	tr.delivered(6) // never accepted: unconfirmed
	both, undelivered, unconfirmed := tr.tally(70001)
	if both != 2 || undelivered != 0 || unconfirmed != 1 || tr.outstanding.Load() != 0 {
		t.Fatalf("tally %d %d %d, outstanding %d; want 2 0 1, 0", both, undelivered, unconfirmed, tr.outstanding.Load())
	}
}

func TestHistogram(t *testing.T) {
	for range 10000 {
		v := rand.Int64N(1 << 40)
		lo, hi := bucketBounds(bucketOf(v))
		if v < lo || v > hi || (hi-lo+1)*128 > max(lo, 128)+128 {
			t.Fatalf("value %d in bucket [%d, %d]", v, lo, hi)
		}
	}
	if i := bucketOf(1<<63 - 1); i != numBuckets-1 {
		t.Fatalf("the largest value is in bucket %d; want %d", i, numBuckets-1)
	}
	var h Histogram
	for i := 1; i <= 10000; i++ {
		h.Record(time.Duration(i) * time.Microsecond)
	}
	c := h.Snapshot()
	for _, q := range []struct {
		q    float64
		want time.Duration
	}{{0.5, 5 * time.Millisecond}, {0.99, 9900 * time.Microsecond}, {1, 10 * time.Millisecond}} {
		got := c.Quantile(q.q)
		if got < q.want || float64(got) > float64(q.want)*1.01 {
			t.Fatalf("p%v = %v; want %v within +1%%", q.q*100, got, q.want)
		}
	}
	if c.Max != int64(10*time.Millisecond) || c.Mean() < 5*time.Millisecond || c.Mean() > 5001*time.Microsecond {
		t.Fatalf("max %v, mean %v", time.Duration(c.Max), c.Mean())
	}
	prev := h.Snapshot()
	h.Record(time.Second)
	if d := h.Snapshot().Sub(prev); d.N != 1 || d.Quantile(0.99) < time.Second*99/100 {
		t.Fatalf("difference of snapshots: n %d, p99 %v; want the one new second", d.N, d.Quantile(0.99))
	}
}

func TestParseMetrics(t *testing.T) {
	s := parseMetrics(strings.NewReader(`# HELP x
# TYPE zrc_rendezvous_messages_evicted_total counter
zrc_rendezvous_messages_evicted_total{reason="ttl"} 3
zrc_rendezvous_messages_evicted_total{reason="memory",x="a}b"} 4
zrc_rendezvous_active_mailboxes 12
process_resident_memory_bytes 3.3554432e+07 1700000000
broken_line{
`))
	for name, want := range map[string]float64{metricEvicted: 7, metricActors: 12, metricRSS: 33554432} {
		if got, ok := s.get(name); !ok || got != want {
			t.Fatalf("%s = %v, %v; want %v", name, got, ok, want)
		}
	}
}

func TestTickDuration(t *testing.T) {
	for d, want := range map[time.Duration]string{
		time.Millisecond: "1ms", 2500 * time.Microsecond: "2.5ms", 50 * time.Millisecond: "50ms",
		500 * time.Microsecond: "500µs", 200 * time.Millisecond: "200ms",
	} {
		if got := tickDuration(d); got != want {
			t.Errorf("tickDuration(%v) = %q; want %q", d, got, want)
		}
	}
}

// byNode records which mailboxes each node saw POSTs and GETs for.
type byNode struct {
	mu    sync.Mutex
	posts map[string]bool
	gets  map[string]bool
}

func (n *byNode) wrap(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if id, ok := strings.CutPrefix(r.URL.Path, "/v1/mailbox/"); ok {
			n.mu.Lock()
			if r.Method == http.MethodPost {
				n.posts[id] = true
			} else {
				n.gets[id] = true
			}
			n.mu.Unlock()
		}
		h.ServeHTTP(w, r)
	})
}

// Several nodes sharing one engine, as nodes share one store: every
// message is verified across them, and each mailbox's posts go to one
// node and its long-polls to another, or with SameNode both to one.
func TestRunSpreadsOverNodes(t *testing.T) {
	for _, sameNode := range []bool{false, true} {
		t.Run(fmt.Sprintf("same node %v", sameNode), func(t *testing.T) {
			set := metrics.NewSet()
			sup := supervisor.New(supervisor.Options{MaxQueueLength: 100, TTL: 5 * time.Minute, IdleTimeout: time.Hour,
				EvictionInterval: time.Hour, MaxMailboxes: 1000, MemoryLimit: 16 << 20, Metrics: set})
			t.Cleanup(sup.Close)
			h := httpapi.New(httpapi.Deps{Mailboxes: sup, Metrics: set, Options: httpapi.Options{
				MaxMessageSize: 4096, LongPollDefault: time.Second, LongPollMax: 10 * time.Second, ServeMetrics: true}})
			nodes := []*byNode{{posts: map[string]bool{}, gets: map[string]bool{}}, {posts: map[string]bool{}, gets: map[string]bool{}}}
			var urls []string
			for _, n := range nodes {
				srv := httptest.NewServer(n.wrap(h))
				t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
				urls = append(urls, srv.URL)
			}
			cfg := shortConfig(strings.Join(urls, ","))
			cfg.SameNode = sameNode
			cfg.MetricsURL = urls[0] + "/metrics" // one engine behind both: read it once
			rep, err := Run(context.Background(), cfg)
			if err != nil {
				t.Fatal(err)
			}
			if v := rep.Verification; !v.OK() || !v.Drained || v.Accepted == 0 || v.Delivered != v.Accepted {
				t.Fatalf("verification %+v; want every accepted message delivered once, intact", v)
			}
			for i, n := range nodes {
				if len(n.posts) == 0 || len(n.gets) == 0 {
					t.Fatalf("node %d saw %d mailboxes posted to and %d polled; want both kinds of traffic", i, len(n.posts), len(n.gets))
				}
				for id := range n.posts {
					if n.gets[id] != sameNode {
						t.Fatalf("node %d: mailbox %s… polled here %v; want %v", i, id[:8], n.gets[id], sameNode)
					}
				}
			}
		})
	}
}
