package httpapi

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
)

// t0 is the injected clock's start; with it, a new mailbox's first
// sequence is t0 in microseconds (R1.7), so tests can expect exact values.
var t0 = time.Date(2025, 6, 1, 12, 0, 0, 0, time.UTC)

var seq0 = uint64(t0.UnixMicro())

// fakeClock is the supervisor's injected Now.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock() *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t0.UnixNano())
	return c
}

func (c *fakeClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// rid returns a recipient id in lower-case hex, derived from name.
func rid(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

func mailboxPath(id string) string { return "/v1/mailbox/" + id }

// config describes a test server. Zero fields get the defaults of
// defaultConfig.
type config struct {
	sup    supervisor.Options
	api    Options
	logger *zap.Logger
	// noEngineMetrics keeps the supervisor's series off the set, so that
	// only this package's are checked.
	noEngineMetrics bool
	// wrap decorates the real supervisor (to observe or to cancel at a
	// chosen moment); it never replaces the engine.
	wrap func(Mailboxes) Mailboxes
	// server adjusts the http.Server's options (short timeouts).
	server ServerOptions
	// maxConns caps the listener's open connections; 0: 1000.
	maxConns int
	// pending counts the GETs being answered; nil: not counted.
	pending *Pending
	// http2 serves over TLS with HTTP/2 (httptest's certificate; the
	// client trusts it and speaks h2).
	http2 bool
}

func defaultConfig() config {
	return config{
		sup: supervisor.Options{
			MaxQueueLength:   100,
			TTL:              5 * time.Minute,
			IdleTimeout:      time.Hour,
			EvictionInterval: time.Hour, // no sweep runs during a test
			MaxMailboxes:     100,
			MemoryLimit:      1 << 20,
		},
		api: Options{
			MaxMessageSize:  1024,
			LongPollDefault: 50 * time.Millisecond,
			LongPollMax:     10 * time.Second,
			ServeMetrics:    true,
			Version:         "1.2.3-test",
			// Idle answer goroutines end soon after each test.
			AnswerIdle: 50 * time.Millisecond,
		},
	}
}

// testServer is a real supervisor behind the real handler, served over
// loopback by an http.Server built with NewServer.
type testServer struct {
	t        testing.TB
	url      string
	client   *http.Client
	sup      *supervisor.Supervisor
	mb       Mailboxes // the engine as the handler sees it: sup, or cfg.wrap's
	set      *metrics.Set
	clock    *fakeClock
	shutdown context.CancelCauseFunc // cancels the base context
	conns    *ConnLimit
}

func newTestServer(t testing.TB, mod ...func(*config)) *testServer {
	t.Helper()
	cfg := defaultConfig()
	for _, m := range mod {
		m(&cfg)
	}
	clock := newFakeClock()
	set := metrics.NewSet()
	cfg.sup.Now = clock.Now
	if !cfg.noEngineMetrics {
		cfg.sup.Metrics = set
	}
	sup := supervisor.New(cfg.sup)
	var mb Mailboxes = sup
	if cfg.wrap != nil {
		mb = cfg.wrap(sup)
	}
	if cfg.maxConns == 0 {
		cfg.maxConns = 1000
	}
	conns := NewConnLimit(ConnLimitOptions{Max: cfg.maxConns, Logger: cfg.logger, Metrics: set})
	h := New(Deps{Mailboxes: mb, Logger: cfg.logger, Metrics: set, Conns: conns, Pending: cfg.pending, Options: cfg.api})
	base, shutdown := context.WithCancelCause(context.Background())
	ts := httptest.NewUnstartedServer(nil)
	cfg.server.LongPollMax = cfg.api.LongPollMax
	cfg.server.MaxMessageSize = cfg.api.MaxMessageSize
	ts.Config = NewServer(h, base, cfg.server)
	ts.Config.ConnState = conns.ConnState // httptest chains its own after it
	ts.Listener = conns.Listener(ts.Listener, nil)
	if cfg.http2 {
		ts.EnableHTTP2 = true
		ts.StartTLS()
	} else {
		ts.Start()
	}
	t.Cleanup(func() { sup.Close() })
	t.Cleanup(func() { shutdown(nil) })
	t.Cleanup(ts.Close) // runs first: waits for every handler to return
	return &testServer{t: t, url: ts.URL, client: ts.Client(), sup: sup, mb: mb, set: set, clock: clock, shutdown: shutdown, conns: conns}
}

// result is a response read in full.
type result struct {
	status  int
	header  http.Header
	body    []byte
	elapsed time.Duration
	closed  bool // the server said Connection: close
	chunked bool // the body came with Transfer-Encoding: chunked
	proto   string
	err     error // transport error (then the rest is zero)
}

// req describes one request. A non-nil body with chunked set is sent
// without Content-Length.
type req struct {
	method  string
	path    string
	body    []byte
	chunked bool
	header  http.Header
	ctx     context.Context
}

func (s *testServer) do(r req) result {
	s.t.Helper()
	res := s.try(r)
	if res.err != nil {
		s.t.Fatalf("%s %s: %v", r.method, r.path, res.err)
	}
	return res
}

// try is do without failing the test on a transport error; it may run on
// any goroutine.
func (s *testServer) try(r req) result {
	ctx := r.ctx
	if ctx == nil {
		ctx = context.Background()
	}
	var body io.Reader
	if r.body != nil {
		body = bytes.NewReader(r.body)
		if r.chunked {
			body = io.MultiReader(body) // hides the length: the client sends chunked
		}
	}
	hr, err := http.NewRequestWithContext(ctx, r.method, s.url+r.path, body)
	if err != nil {
		return result{err: err}
	}
	if r.chunked {
		hr.ContentLength = -1
	}
	for k, v := range r.header {
		hr.Header[k] = v
	}
	start := time.Now()
	resp, err := s.client.Do(hr)
	if err != nil {
		return result{err: err}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return result{err: err}
	}
	return result{status: resp.StatusCode, header: resp.Header, body: b, elapsed: time.Since(start), closed: resp.Close,
		chunked: len(resp.TransferEncoding) > 0, proto: resp.Proto}
}

func (s *testServer) post(id string, body string) result {
	s.t.Helper()
	return s.do(req{method: http.MethodPost, path: mailboxPath(id), body: []byte(body)})
}

func (s *testServer) get(id, query string) result {
	s.t.Helper()
	return s.do(req{method: http.MethodGet, path: mailboxPath(id) + query})
}

// goGet starts a GET on its own goroutine.
func (s *testServer) goGet(ctx context.Context, id, query string) <-chan result {
	ch := make(chan result, 1)
	go func() { ch <- s.try(req{method: http.MethodGet, path: mailboxPath(id) + query, ctx: ctx}) }()
	return ch
}

// waitParked returns once n GETs are parked (Snapshot().Waiting), without
// sleeping for a guessed time.
func (s *testServer) waitParked(n int64) {
	s.t.Helper()
	polltest.Until(s.t, fmt.Sprintf("%d long-polls wait", n), func() bool { return s.sup.Snapshot().Waiting == n })
}

func receive(t testing.TB, ch <-chan result) result {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(15 * time.Second):
		t.Fatal("no response within 15s")
		return result{}
	}
}

// wantHeader checks header values exactly; "" means the header is absent.
func wantHeader(t testing.TB, h http.Header, want map[string]string) {
	t.Helper()
	for k, v := range want {
		got, ok := h[http.CanonicalHeaderKey(k)]
		switch {
		case v == "" && ok:
			t.Errorf("header %s = %q; want absent", k, got)
		case v != "" && (len(got) != 1 || got[0] != v):
			t.Errorf("header %s = %q; want %q", k, got, v)
		}
	}
}

// wantAccepted checks a 202 exactly: status, headers and JSON body.
func wantAccepted(t testing.TB, r result, seq uint64, queueLen int) {
	t.Helper()
	if r.status != http.StatusAccepted {
		t.Fatalf("status = %d (body %q); want 202", r.status, r.body)
	}
	wantHeader(t, r.header, map[string]string{
		"Content-Type":       "application/json",
		"X-Message-Sequence": fmt.Sprint(seq),
		"X-Queue-Length":     fmt.Sprint(queueLen),
	})
	if want := fmt.Sprintf(`{"sequence":%d,"queue_length":%d}`, seq, queueLen); string(r.body) != want {
		t.Errorf("body = %s; want %s", r.body, want)
	}
}

// wantMessage checks a 200 exactly.
func wantMessage(t testing.TB, r result, body string, seq uint64, queueLen int) {
	t.Helper()
	if r.status != http.StatusOK {
		t.Fatalf("status = %d (body %q); want 200", r.status, r.body)
	}
	wantHeader(t, r.header, map[string]string{
		"Content-Type":       "application/octet-stream",
		"Content-Length":     fmt.Sprint(len(body)),
		"Cache-Control":      "no-store",
		"X-Message-Sequence": fmt.Sprint(seq),
		"X-Queue-Length":     fmt.Sprint(queueLen),
	})
	if string(r.body) != body {
		t.Errorf("body = %q; want %q", r.body, body)
	}
}

// wantNoContent checks a 204 exactly.
func wantNoContent(t testing.TB, r result) {
	t.Helper()
	if r.status != http.StatusNoContent {
		t.Fatalf("status = %d (body %q); want 204", r.status, r.body)
	}
	wantHeader(t, r.header, map[string]string{
		"X-Queue-Length":     "0",
		"X-Message-Sequence": "",
		"Content-Type":       "",
	})
	if len(r.body) != 0 {
		t.Errorf("body = %q; want empty", r.body)
	}
}

// wantError checks an error answer: status, JSON content type and a body
// of exactly {"error":code,"message":…}.
func wantError(t testing.TB, r result, status int, code string) {
	t.Helper()
	if r.status != status {
		t.Fatalf("status = %d (body %q); want %d %s", r.status, r.body, status, code)
	}
	wantHeader(t, r.header, map[string]string{"Content-Type": "application/json"})
	var got map[string]string
	if err := json.Unmarshal(r.body, &got); err != nil {
		t.Fatalf("body %q is not a JSON object of strings: %v", r.body, err)
	}
	if len(got) != 2 || got["error"] != code || got["message"] == "" {
		t.Errorf("body = %s; want {\"error\":%q,\"message\":\"…\"}", r.body, code)
	}
	for _, row := range errorTable {
		if e := row.code.Entry(); e.Error == code && got["message"] != e.Message {
			t.Errorf("message = %q; want %q", got["message"], e.Message)
		}
	}
}

func repeat(n int) string { return strings.Repeat("x", n) }
