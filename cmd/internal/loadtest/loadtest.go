// Package loadtest drives a zrc-rendezvous server — or any server of the
// same API, such as cmd/zrc-baseline — with many mailboxes, long-pollers
// and posters, verifies every delivered body as it goes, and reports
// throughput, end-to-end delivery latency, statuses, lost and duplicated
// messages and, where it can read them, the server's resident memory and
// CPU time. `zrc-rendezvous loadtest` is its command line;
// docs/loadtest.md describes the flags and the report.
package loadtest

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// Config describes a run.
type Config struct {
	// URL is the server's base URL, e.g. http://127.0.0.1:8080, or the
	// base URLs of several nodes that share one store, separated by
	// commas: mailbox i's long-polls go to node i mod N and its posts to
	// node i+1 mod N, so every message crosses from one node to another
	// (unless SameNode).
	URL string
	// SameNode sends each mailbox's posts to the node of its long-polls,
	// as a load balancer that routes by path does: no message crosses.
	SameNode bool
	// MetricsURL is where the server's Prometheus metrics are read; ""
	// is every node's URL + "/metrics", their counters summed; "-" reads
	// none. A server without metrics (cmd/zrc-baseline) is detected and
	// its figures reported as n/a.
	MetricsURL string
	// Mailboxes is M, the number of mailboxes (fresh random ids per run).
	Mailboxes int
	// Pollers is P, the long-pollers per mailbox: M×P GETs wait at once.
	Pollers int
	// Posters is S, the goroutines that post, each on its own connection.
	Posters int
	// Rate is the target of posts per second over all posters; 0 posts
	// as fast as the posters can (each waits for its answer).
	Rate float64
	// Size is the payload size in bytes, at least MinPayload.
	Size int
	// WarmUp runs traffic before measuring; Duration is the measured
	// window; Drain is the most time given, once posting stops, for the
	// pollers to take every accepted message.
	WarmUp, Duration, Drain time.Duration
	// Wait is each long-poll's wait_ms.
	Wait time.Duration
	// SourceAddrs are local IP addresses to open connections from, round
	// robin (e.g. 127.0.0.1 … 127.0.0.8 for a loopback target, so that
	// 10,000 long-polls do not share one address's ephemeral ports). Empty:
	// the system picks.
	SourceAddrs []string
	// ServerPIDs are the server's process ids (several nodes, and their
	// store's server if it should count): their CPU time and resident
	// memory are read from /proc (Linux) and summed.
	ServerPIDs []int
	// Token is sent as a Bearer token (auth_mode server_wide).
	Token string
	// Insecure skips TLS certificate verification (a self-signed test
	// certificate).
	Insecure bool
	// Progress receives a progress line every ProgressEvery (1 s if 0);
	// nil: none.
	Progress      io.Writer
	ProgressEvery time.Duration
	// SampleEvery is how often the server's side (actors, waiting
	// long-polls, queued messages, memory, CPU) is read during the run
	// for the report's server timeline and the progress line; 1 s if 0,
	// never if negative (each read of /metrics is work for the server).
	SampleEvery time.Duration
	// Connect bounds the wait for every long-poll to be parked on the
	// server before posting starts (when the server's metrics tell);
	// 0: 10 s plus 1 s per 1,000 long-polls.
	Connect time.Duration
}

// Check reports every problem with c at once.
func (c *Config) Check() error {
	var problems []error
	bad := func(f string, a ...any) { problems = append(problems, fmt.Errorf(f, a...)) }
	for _, raw := range c.urls() {
		if u, err := url.Parse(raw); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			bad("url %q: want http://host:port or https://host:port", raw)
		}
	}
	if c.Mailboxes < 1 {
		bad("mailboxes must be at least 1, got %d", c.Mailboxes)
	}
	if c.Pollers < 1 {
		bad("pollers per mailbox must be at least 1, got %d", c.Pollers)
	}
	if c.Posters < 1 {
		bad("posters must be at least 1, got %d", c.Posters)
	}
	if c.Rate < 0 {
		bad("rate must be 0 (unlimited) or positive, got %v", c.Rate)
	}
	if c.Size < MinPayload {
		bad("payload size must be at least %d bytes (the verification header), got %d", MinPayload, c.Size)
	}
	if c.Duration <= 0 {
		bad("duration must be positive, got %v", c.Duration)
	}
	if c.WarmUp < 0 || c.Drain < 0 || c.Wait < 0 {
		bad("warm-up, drain and wait must not be negative")
	}
	for _, a := range c.SourceAddrs {
		if net.ParseIP(a) == nil {
			bad("source address %q is not an IP address", a)
		}
	}
	return errors.Join(problems...)
}

// urls are the nodes' base URLs.
func (c *Config) urls() []string {
	var out []string
	for _, u := range strings.Split(c.URL, ",") {
		out = append(out, strings.TrimRight(strings.TrimSpace(u), "/"))
	}
	return out
}

// Phases of a run, in order.
const (
	phaseConnect int32 = iota // long-polls opening
	phaseWarmUp
	phaseMeasure
	phaseDrain
	phaseDone
)

var phaseNames = [...]string{"connect", "warm-up", "measure", "drain", "done"}

// run is one load test in progress.
type run struct {
	cfg     Config
	runID   uint64
	start   time.Time // durations below are since start (monotonic)
	ids     []string
	clients [][]*client.Client // per node, one per source address
	// metricsURLs are the /metrics pages read and summed.
	metricsURLs []string
	conns       []*http.Transport
	scrapeHC    *http.Client
	tr          *tracker
	nextMsg     atomic.Uint64

	phase         atomic.Int32
	windowFrom    atomic.Int64 // ns since start; MaxInt64 until the window opens
	windowTo      atomic.Int64 // ns since start; MaxInt64 until it closes
	phaseStarts   [phaseDone + 1]atomic.Int64
	all, measured Histogram // latency of every delivery; of messages sent in the window

	// Counters of the measured window.
	winSent, winAccepted, winDelivered atomic.Int64
	// Counters of the whole run.
	sent, posted202, got200, got204 atomic.Int64
	failures                        atomic.Int64 // answers other than 200/202/204, and transport errors
	corrupt, foreign, misrouted     atomic.Int64
	duplicated                      atomic.Int64

	statusMu sync.Mutex
	statuses map[string]int64 // the rarer answers; the common three are counted above

	timeline []second
	server   *sampler
}

// second is one second of the run's timeline.
type second struct {
	sent, accepted, delivered, errors atomic.Int64
}

// Run drives the server as cfg says and returns the report. Ending ctx
// stops the run early; the report then says Interrupted.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	if err := cfg.Check(); err != nil {
		return nil, err
	}
	var metricsURLs []string
	switch cfg.MetricsURL {
	case "":
		for _, u := range cfg.urls() {
			metricsURLs = append(metricsURLs, u+"/metrics")
		}
	case "-":
	default:
		metricsURLs = []string{cfg.MetricsURL}
	}
	if cfg.ProgressEvery <= 0 {
		cfg.ProgressEvery = time.Second
	}
	if cfg.SampleEvery <= 0 {
		cfg.SampleEvery = time.Second
	}
	polls := cfg.Mailboxes * cfg.Pollers
	if cfg.Connect <= 0 {
		cfg.Connect = 10*time.Second + time.Duration(polls)*time.Millisecond
	}
	r := &run{cfg: cfg, tr: newTracker(), statuses: map[string]int64{}, metricsURLs: metricsURLs}
	var seed [8]byte
	rand.Read(seed[:])
	r.runID = binary.LittleEndian.Uint64(seed[:])
	r.windowFrom.Store(1<<63 - 1)
	r.windowTo.Store(1<<63 - 1)
	r.ids = make([]string, cfg.Mailboxes)
	for i := range r.ids {
		var id [32]byte
		rand.Read(id[:])
		r.ids[i] = fmt.Sprintf("%x", id)
	}
	r.timeline = make([]second, int((cfg.Connect+cfg.WarmUp+cfg.Duration+cfg.Drain)/time.Second)+10)
	openFiles, rlErr := raiseOpenFiles()
	r.buildClients(polls + cfg.Posters)
	defer func() {
		for _, t := range r.conns {
			t.CloseIdleConnections()
		}
	}()
	rep := newReport(cfg, r)
	rep.Client.OpenFilesLimit = openFiles
	if rlErr != nil {
		rep.Notes = append(rep.Notes, "could not raise the open-file limit: "+rlErr.Error())
	}
	if need := uint64(polls + cfg.Posters + 64); openFiles > 0 && openFiles < need {
		rep.Notes = append(rep.Notes, fmt.Sprintf("the open-file limit %d is below the %d sockets this run needs", openFiles, need))
	}

	before := r.readMetrics(ctx)
	r.start = time.Now()
	rep.Started = r.start
	if cfg.SampleEvery > 0 && (len(metricsURLs) > 0 || len(cfg.ServerPIDs) > 0) {
		r.server = r.startSampler(ctx)
	}
	stopProgress := r.startProgress()

	// Connect: open the long-polls in batches, so that thousands of SYNs
	// do not overflow the server's accept queue at once.
	pollCtx, stopPolls := context.WithCancel(ctx)
	defer stopPolls()
	var polling sync.WaitGroup
	for i := range polls {
		polling.Add(1)
		go func() {
			defer polling.Done()
			mb := i % cfg.Mailboxes
			r.poller(pollCtx, mb, r.client(mb, i, 0))
		}()
		if (i+1)%250 == 0 && !sleepCtx(ctx, 20*time.Millisecond) {
			break
		}
	}
	r.awaitParked(ctx, before != nil, polls)

	// Warm-up and measured window: the posters run through both.
	r.enter(phaseWarmUp)
	var stopPosting atomic.Bool
	var posting sync.WaitGroup
	for i := range cfg.Posters {
		posting.Add(1)
		go func() {
			defer posting.Done()
			r.poster(ctx, i, &stopPosting)
		}()
	}
	sleepCtx(ctx, cfg.WarmUp)
	mStart := r.serverSample(ctx)
	r.windowFrom.Store(int64(time.Since(r.start)))
	r.enter(phaseMeasure)
	rss := r.sampleRSS(ctx, cfg.Duration)
	sleepCtx(ctx, cfg.Duration)
	r.windowTo.Store(int64(time.Since(r.start)))
	r.enter(phaseDrain)
	mEnd := r.serverSample(ctx)
	peakRSS := <-rss
	stopPosting.Store(true)
	posting.Wait()

	// Drain: give the pollers every accepted message, or as much of the
	// drain time as it takes.
	drained := r.drain(ctx, before)
	r.enter(phaseDone) // before closing thousands of connections, which takes a while
	stopPolls()
	polling.Wait()
	stopProgress()
	if r.server != nil {
		rep.ServerTimeline = r.server.finish()
	}
	after := r.readMetrics(context.WithoutCancel(ctx))

	rep.Interrupted = ctx.Err() != nil
	rep.fill(r, mStart, mEnd, peakRSS, before, after, drained)
	return rep, nil
}

// client is the client for connection number conn to mailbox mb's node:
// its long-polls' (hop 0) or its posts' (hop 1, the next node unless
// SameNode), on one of the source addresses. With one node both are the
// same.
func (r *run) client(mb, conn, hop int) *client.Client {
	if r.cfg.SameNode {
		hop = 0
	}
	byAddr := r.clients[(mb+hop)%len(r.clients)]
	return byAddr[conn%len(byAddr)]
}

// buildClients makes one Transport per source address and on it one
// Client per node, each Transport with room in its idle pool for every
// connection it will hold.
func (r *run) buildClients(conns int) {
	addrs := r.cfg.SourceAddrs
	if len(addrs) == 0 {
		addrs = []string{""}
	}
	for _, a := range addrs {
		d := &net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}
		if a != "" {
			d.LocalAddr = &net.TCPAddr{IP: net.ParseIP(a)}
		}
		t := &http.Transport{
			DialContext:         d.DialContext,
			MaxIdleConnsPerHost: conns/len(addrs) + 64,
			IdleConnTimeout:     90 * time.Second,
			DisableCompression:  true,
			TLSHandshakeTimeout: 10 * time.Second,
			// Each long-poll on its own HTTP/1.1 connection, as separate
			// clients would be; no proxy, whatever the environment says.
		}
		if r.cfg.Insecure {
			t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		}
		r.conns = append(r.conns, t)
		opts := []client.Option{client.WithHTTPClient(&http.Client{Transport: t}), client.WithRetry(client.NoRetry),
			client.WithUserAgent("zrc-rendezvous-loadtest")}
		if r.cfg.Token != "" {
			opts = append(opts, client.WithToken(r.cfg.Token))
		}
		for n, u := range r.cfg.urls() {
			if n == len(r.clients) {
				r.clients = append(r.clients, nil)
			}
			r.clients[n] = append(r.clients[n], client.New(u, opts...))
		}
	}
	r.scrapeHC = &http.Client{Transport: &http.Transport{DisableCompression: true, MaxIdleConnsPerHost: 2}, Timeout: 10 * time.Second}
	if r.cfg.Insecure {
		r.scrapeHC.Transport.(*http.Transport).TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
	}
}

func (r *run) enter(p int32) {
	r.phaseStarts[p].Store(int64(time.Since(r.start)))
	r.phase.Store(p)
}

// awaitParked waits until the server reports every long-poll parked,
// when it has metrics; otherwise it gives them a moment.
func (r *run) awaitParked(ctx context.Context, metrics bool, polls int) {
	if !metrics {
		sleepCtx(ctx, 500*time.Millisecond+time.Duration(polls)*50*time.Microsecond)
		return
	}
	deadline := time.Now().Add(r.cfg.Connect)
	for time.Now().Before(deadline) && ctx.Err() == nil {
		s := r.readMetrics(ctx)
		if w, ok := s.get(metricWaiting); !ok || w >= float64(polls) {
			return
		}
		sleepCtx(ctx, 100*time.Millisecond)
	}
}

// poller long-polls mailbox mb until ctx ends, verifying each delivery.
func (r *run) poller(ctx context.Context, mb int, c *client.Client) {
	id := r.ids[mb]
	for ctx.Err() == nil {
		m, ok, err := c.Get(ctx, id, r.cfg.Wait)
		if ctx.Err() != nil {
			return // stopping: whatever this GET was, it is not a failure
		}
		now := time.Since(r.start)
		switch {
		case err != nil:
			r.failed("GET", err, now)
			r.pause(ctx, err)
		case !ok:
			r.got204.Add(1)
		default:
			r.got200.Add(1)
			r.verify(m.Body, mb, now)
		}
	}
}

// verify checks a delivered body and records its latency.
func (r *run) verify(body []byte, mb int, now time.Duration) {
	h, err := decode(body, r.runID)
	switch {
	case errors.Is(err, errForeign):
		r.foreign.Add(1)
		return
	case err != nil || h.msg >= r.nextMsg.Load() || h.sent < 0 || h.sent > int64(now):
		r.corrupt.Add(1)
		return
	case int(h.mailbox) != mb:
		r.misrouted.Add(1)
		return
	}
	if !r.tr.delivered(h.msg) {
		r.duplicated.Add(1)
		return
	}
	lat := now - time.Duration(h.sent)
	r.all.Record(lat)
	if h.sent >= r.windowFrom.Load() && h.sent < r.windowTo.Load() {
		r.measured.Record(lat)
	}
	r.at(now).delivered.Add(1)
	if r.phase.Load() == phaseMeasure {
		r.winDelivered.Add(1)
	}
}

// poster posts until stop is set or ctx ends, paced to its share of the
// target rate. A poster that falls more than one interval behind drops
// the missed slots rather than bursting to catch up.
func (r *run) poster(ctx context.Context, i int, stop *atomic.Bool) {
	conn := i + r.cfg.Mailboxes*r.cfg.Pollers
	var interval time.Duration
	next := time.Now()
	if r.cfg.Rate > 0 {
		interval = time.Duration(float64(r.cfg.Posters) / r.cfg.Rate * float64(time.Second))
		next = next.Add(interval * time.Duration(i) / time.Duration(r.cfg.Posters))
	}
	timer := time.NewTimer(0)
	<-timer.C
	defer timer.Stop()
	for !stop.Load() && ctx.Err() == nil {
		if interval > 0 {
			now := time.Now()
			if d := next.Sub(now); d > 0 {
				timer.Reset(d)
				select {
				case <-timer.C:
				case <-ctx.Done():
					return
				}
			} else if -d > interval {
				next = now
			}
			next = next.Add(interval)
			if stop.Load() {
				return
			}
		}
		msg := r.nextMsg.Add(1) - 1
		mb := int(msg % uint64(len(r.ids)))
		body := make([]byte, r.cfg.Size)
		sent := time.Since(r.start)
		encode(body, header{run: r.runID, msg: msg, mailbox: uint32(mb), sent: int64(sent)})
		inWindow := r.phase.Load() == phaseMeasure
		r.sent.Add(1)
		r.at(sent).sent.Add(1)
		if inWindow {
			r.winSent.Add(1)
		}
		_, err := r.client(mb, conn, 1).Post(ctx, r.ids[mb], body)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			r.failed("POST", err, time.Since(r.start))
			if interval == 0 {
				// Unpaced, a refused poster would spin.
				sleepCtx(ctx, 10*time.Millisecond)
			}
			continue
		}
		r.posted202.Add(1)
		r.tr.accepted(msg)
		r.at(sent).accepted.Add(1)
		if inWindow {
			r.winAccepted.Add(1)
		}
	}
}

// failed counts a refusal or a transport error under its status key.
func (r *run) failed(method string, err error, now time.Duration) {
	r.failures.Add(1)
	r.at(now).errors.Add(1)
	key := method + " " + errorKey(err)
	r.statusMu.Lock()
	r.statuses[key]++
	r.statusMu.Unlock()
}

// errorKey names an error for the statuses table: "429 rate_limited",
// or a transport error's kind.
func errorKey(err error) string {
	if e, ok := errors.AsType[*client.Error](err); ok {
		if e.Code != "" {
			return fmt.Sprintf("%d %s", e.Status, e.Code)
		}
		return fmt.Sprintf("%d", e.Status)
	}
	var ne net.Error
	var op *net.OpError
	switch {
	case errors.As(err, &op) && op.Op == "dial":
		return "error: connect failed"
	case errors.As(err, &ne) && ne.Timeout():
		return "error: timeout"
	case errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) || strings.Contains(err.Error(), "connection reset"):
		return "error: connection closed"
	}
	return "error: other"
}

// pause waits after a failed GET: a Retry-After (at most 5 s), or a
// moment after a transport error, so that a failing server is not
// hammered by every poller at once.
func (r *run) pause(ctx context.Context, err error) {
	d := 100 * time.Millisecond
	if e, ok := errors.AsType[*client.Error](err); ok && e.RetryAfter > 0 {
		d = min(e.RetryAfter, 5*time.Second)
	}
	sleepCtx(ctx, d)
}

// at is the timeline's second holding t.
func (r *run) at(t time.Duration) *second {
	i := int(t / time.Second)
	return &r.timeline[min(max(i, 0), len(r.timeline)-1)]
}

// drain waits until every accepted message was delivered or counted as
// evicted by the server, or the drain time is up; it reports which.
func (r *run) drain(ctx context.Context, before scrape) bool {
	deadline := time.Now().Add(r.cfg.Drain)
	lastScrape := time.Time{}
	var evicted int64
	for {
		out := r.tr.outstanding.Load()
		if out <= 0 {
			return true
		}
		if before != nil && time.Since(lastScrape) > 500*time.Millisecond {
			lastScrape = time.Now()
			if e, ok := evictions(before, r.readMetrics(ctx)); ok {
				evicted = e
			}
		}
		if out <= evicted {
			return true
		}
		if !time.Now().Before(deadline) || !sleepCtx(ctx, 20*time.Millisecond) {
			return false
		}
	}
}

// evictions is how many messages the server counted as evicted between
// two scrapes.
func evictions(before, after scrape) (int64, bool) {
	b, ok1 := before.get(metricEvicted)
	a, ok2 := after.get(metricEvicted)
	if !ok1 || !ok2 {
		return 0, false
	}
	return int64(a - b), true
}

// serverSample is the server's CPU time when the measured window opens or
// closes: from /proc with ServerPID, else from its metrics.
type serverSample struct {
	cpu    time.Duration
	cpuOK  bool
	source string
	rss    int64
	rssOK  bool
	scrape scrape
}

func (r *run) serverSample(ctx context.Context) serverSample {
	var s serverSample
	s.scrape = r.readMetrics(ctx)
	if len(r.cfg.ServerPIDs) > 0 {
		if ps, err := readProcs(r.cfg.ServerPIDs); err == nil {
			s.cpu, s.cpuOK, s.source, s.rss, s.rssOK = ps.cpu, true, "proc", ps.rss, true
			return s
		}
	}
	if v, ok := s.scrape.get(metricCPU); ok {
		s.cpu, s.cpuOK, s.source = time.Duration(v*float64(time.Second)), true, "metrics"
	}
	if v, ok := s.scrape.get(metricRSS); ok {
		s.rss, s.rssOK = int64(v), true
	}
	return s
}

// sampleRSS reads the server's resident memory from /proc every 100 ms
// for d and sends the peak (-1 without ServerPID).
func (r *run) sampleRSS(ctx context.Context, d time.Duration) <-chan int64 {
	out := make(chan int64, 1)
	if len(r.cfg.ServerPIDs) == 0 {
		out <- -1
		return out
	}
	go func() {
		peak := int64(-1)
		end := time.Now().Add(d)
		t := time.NewTicker(100 * time.Millisecond)
		defer t.Stop()
		for time.Now().Before(end) {
			if ps, err := readProcs(r.cfg.ServerPIDs); err == nil {
				peak = max(peak, ps.rss)
			}
			select {
			case <-t.C:
			case <-ctx.Done():
				out <- peak
				return
			}
		}
		out <- peak
	}()
	return out
}

// sleepCtx waits d; false if ctx ended first.
func sleepCtx(ctx context.Context, d time.Duration) bool {
	if d <= 0 {
		return ctx.Err() == nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
