package client_test

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor"
)

// testClock is the guard's injected Now; the fake sleep moves it, so a
// rate-limited client's wait refills the bucket without real waiting.
type testClock struct{ ns atomic.Int64 }

func (c *testClock) Now() time.Time          { return time.Unix(0, c.ns.Load()) }
func (c *testClock) Advance(d time.Duration) { c.ns.Add(int64(d)) }

// harnessConfig describes a test server: the real supervisor behind the
// real handler, with a guard when guard is set.
type harnessConfig struct {
	sup   supervisor.Options
	api   httpapi.Options
	guard *guard.Options
}

type harness struct {
	url   string
	clock *testClock
	sup   *supervisor.Supervisor
}

func newHarness(t *testing.T, mod func(*harnessConfig)) *harness {
	t.Helper()
	cfg := harnessConfig{
		sup: supervisor.Options{MaxQueueLength: 100, TTL: 5 * time.Minute, IdleTimeout: time.Hour,
			EvictionInterval: time.Hour, MaxMailboxes: 100, MemoryLimit: 1 << 20},
		api: httpapi.Options{MaxMessageSize: 1024, LongPollDefault: 50 * time.Millisecond,
			LongPollMax: 10 * time.Second, ServeMetrics: true, Version: "test"},
	}
	if mod != nil {
		mod(&cfg)
	}
	h := &harness{clock: &testClock{}}
	h.clock.ns.Store(time.Unix(1700000000, 0).UnixNano())
	set := metrics.NewSet()
	cfg.sup.Metrics = set
	h.sup = supervisor.New(cfg.sup)
	var g *guard.Guard
	if cfg.guard != nil {
		o := *cfg.guard
		o.Now = h.clock.Now
		var err error
		if g, err = guard.New(o); err != nil {
			t.Fatal(err)
		}
	}
	srv := httptest.NewServer(httpapi.New(httpapi.Deps{Mailboxes: h.sup, Guard: g, Metrics: set, Options: cfg.api}))
	t.Cleanup(func() {
		srv.CloseClientConnections()
		srv.Close()
		h.sup.Close()
	})
	h.url = srv.URL
	return h
}

// waitParked returns once a GET waits in the engine.
func (h *harness) waitParked(t *testing.T) {
	t.Helper()
	polltest.Until(t, "a GET is parked", func() bool { return h.sup.Snapshot().Waiting > 0 })
}

func guardDefaults() *guard.Options {
	return &guard.Options{PostsPerWindow: 1000, GetsPerWindow: 1000, Window: time.Minute, IPv6Prefix: 64,
		MaxSources: 1000, MaxWaitingPerSource: 100}
}

// fakeSleep records each wait and returns at once, moving clock (if any)
// by the wait.
type fakeSleep struct {
	mu    sync.Mutex
	slept []time.Duration
	clock *testClock
}

func (f *fakeSleep) sleep(ctx context.Context, d time.Duration) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	f.mu.Lock()
	f.slept = append(f.slept, d)
	f.mu.Unlock()
	if f.clock != nil {
		f.clock.Advance(d)
	}
	return nil
}

func (f *fakeSleep) waits() []time.Duration {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]time.Duration(nil), f.slept...)
}

func rid(name string) string {
	sum := sha256.Sum256([]byte(name))
	return hex.EncodeToString(sum[:])
}

// wantError checks that err is a *client.Error with status and code.
func wantError(t *testing.T, err error, status int, code string) *client.Error {
	t.Helper()
	e, ok := errors.AsType[*client.Error](err)
	if !ok {
		t.Fatalf("error %v (%T); want *client.Error %d %s", err, err, status, code)
	}
	if e.Status != status || e.Code != code {
		t.Fatalf("error %d %q (%v); want %d %q", e.Status, e.Code, e, status, code)
	}
	return e
}

func TestPostThenGet(t *testing.T) {
	h := newHarness(t, nil)
	c := client.New(h.url + "/") // a trailing slash is dropped
	ctx := context.Background()
	id := rid("a")
	body := []byte{0, 1, 2, 0xff, 'x'}
	r1, err := c.Post(ctx, id, body)
	if err != nil {
		t.Fatal(err)
	}
	r2, err := c.Post(ctx, strings.ToUpper(id), []byte("second"))
	if err != nil {
		t.Fatal(err)
	}
	if r1.QueueLength != 1 || r2.QueueLength != 2 || r2.Sequence != r1.Sequence+1 {
		t.Fatalf("posts answered %+v, %+v; want queue lengths 1, 2 and consecutive sequences", r1, r2)
	}
	m, ok, err := c.Get(ctx, id, 0)
	if err != nil || !ok {
		t.Fatalf("Get: %v %v; want a message", ok, err)
	}
	if !bytes.Equal(m.Body, body) || m.Sequence != r1.Sequence || m.QueueLength != 1 {
		t.Fatalf("got %+v; want body %v, sequence %d, queue length 1", m, body, r1.Sequence)
	}
	m, ok, err = c.Get(ctx, id, 0)
	if err != nil || !ok || string(m.Body) != "second" || m.QueueLength != 0 {
		t.Fatalf("second Get: %+v %v %v", m, ok, err)
	}
	if _, ok, err = c.Get(ctx, id, 0); err != nil || ok {
		t.Fatalf("Get on an empty mailbox: ok %v, err %v; want ok false (204)", ok, err)
	}
}

func TestLongPollTakesALaterPost(t *testing.T) {
	h := newHarness(t, nil)
	c := client.New(h.url)
	id := rid("long-poll")
	type result struct {
		m   client.Message
		ok  bool
		err error
	}
	got := make(chan result, 1)
	go func() {
		m, ok, err := c.Get(context.Background(), id, 5*time.Second)
		got <- result{m, ok, err}
	}()
	// Post once the GET is parked.
	h.waitParked(t)
	p, err := c.Post(context.Background(), id, []byte("hello"))
	if err != nil {
		t.Fatal(err)
	}
	if p.QueueLength != 0 {
		t.Fatalf("POST to a waiting GET: queue length %d; want 0", p.QueueLength)
	}
	r := <-got
	if r.err != nil || !r.ok || string(r.m.Body) != "hello" || r.m.Sequence != p.Sequence {
		t.Fatalf("long-poll got %+v; want hello with sequence %d", r, p.Sequence)
	}
}

func TestErrorsCarryTheServerCode(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sup.MaxQueueLength = 1 })
	c := client.New(h.url)
	ctx := context.Background()
	full := rid("full")
	if _, err := c.Post(ctx, full, []byte("x")); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name   string
		call   func() error
		status int
		code   string
	}{
		{"empty body", func() error { _, err := c.Post(ctx, rid("e"), nil); return err }, 400, "empty_message"},
		{"too large", func() error { _, err := c.Post(ctx, rid("l"), make([]byte, 1025)); return err }, 413, "message_too_large"},
		{"queue full", func() error { _, err := c.Post(ctx, full, []byte("y")); return err }, 507, "queue_full"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := wantError(t, tt.call(), tt.status, tt.code)
			if e.Message == "" {
				t.Fatalf("%v: no message", e)
			}
		})
	}
	t.Run("bad id is refused before sending", func(t *testing.T) {
		_, err := c.Post(ctx, "abc", []byte("x"))
		if !errors.Is(err, actor.ErrBadID) {
			t.Fatalf("got %v; want actor.ErrBadID", err)
		}
	})
	t.Run("bad base URL", func(t *testing.T) {
		_, _, err := client.New("localhost:8080").Get(ctx, full, 0)
		if err == nil || !strings.Contains(err.Error(), "base URL") {
			t.Fatalf("got %v; want a base URL error", err)
		}
	})
	t.Run("unknown route answers a JSON 404", func(t *testing.T) {
		_, err := client.New(h.url+"/prefix").Post(ctx, full, []byte("x"))
		wantError(t, err, 404, "not_found")
	})
}

// R4.4: a 429's Retry-After is honoured: the client waits at least that
// long (here on the guard's fake clock) and the retry goes through.
func TestRetryAfterHonouredOn429(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.guard = guardDefaults()
		c.guard.PostsPerWindow, c.guard.Window = 1, 10*time.Second
	})
	fs := &fakeSleep{clock: h.clock}
	c := client.New(h.url, client.WithSleep(fs.sleep), client.WithClock(h.clock.Now),
		client.WithRetry(client.RetryPolicy{MaxAttempts: 3, MaxWait: time.Minute, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}))
	ctx := context.Background()
	if _, err := c.Post(ctx, rid("r"), []byte("1")); err != nil {
		t.Fatal(err)
	}
	if _, err := c.Post(ctx, rid("r"), []byte("2")); err != nil {
		t.Fatalf("second POST after a 429: %v; want it retried and accepted", err)
	}
	w := fs.waits()
	if len(w) != 1 || w[0] < 10*time.Second {
		t.Fatalf("waits %v; want one wait of at least the 10 s Retry-After", w)
	}

	t.Run("without retries the 429 is returned", func(t *testing.T) {
		c := client.New(h.url, client.WithRetry(client.NoRetry))
		_, err := c.Post(ctx, rid("r"), []byte("3"))
		e := wantError(t, err, 429, "rate_limited")
		if e.RetryAfter < time.Second {
			t.Fatalf("RetryAfter %v; want the server's, at least 1 s", e.RetryAfter)
		}
	})
	t.Run("a Retry-After beyond MaxWait is not waited for", func(t *testing.T) {
		fs := &fakeSleep{}
		c := client.New(h.url, client.WithSleep(fs.sleep),
			client.WithRetry(client.RetryPolicy{MaxAttempts: 5, MaxWait: 2 * time.Second, BaseDelay: 100 * time.Millisecond, MaxDelay: time.Second}))
		_, err := c.Post(ctx, rid("r"), []byte("4"))
		wantError(t, err, 429, "rate_limited")
		if w := fs.waits(); len(w) != 0 {
			t.Fatalf("waited %v; want no wait when Retry-After exceeds MaxWait", w)
		}
	})
}

// A 503 overloaded (every mailbox slot held by a waiting GET) is retried
// with exponential backoff, jittered, never below Retry-After, capped by
// MaxDelay, MaxAttempts and MaxWait.
func TestBackoffBounds(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sup.MaxMailboxes = 1 })
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go client.New(h.url).Get(ctx, rid("holder"), 10*time.Second)
	h.waitParked(t)

	fs := &fakeSleep{}
	p := client.RetryPolicy{MaxAttempts: 6, MaxWait: time.Hour, BaseDelay: 2 * time.Second, MaxDelay: 8 * time.Second}
	c := client.New(h.url, client.WithSleep(fs.sleep), client.WithRetry(p))
	_, err := c.Post(context.Background(), rid("other"), []byte("x"))
	e := wantError(t, err, 503, "overloaded")
	if e.RetryAfter != time.Second {
		t.Fatalf("RetryAfter %v; want 1s", e.RetryAfter)
	}
	w := fs.waits()
	if len(w) != p.MaxAttempts-1 {
		t.Fatalf("%d waits %v; want %d (MaxAttempts - 1)", len(w), w, p.MaxAttempts-1)
	}
	bounds := [][2]time.Duration{{1 * time.Second, 2 * time.Second}, {2 * time.Second, 4 * time.Second},
		{4 * time.Second, 8 * time.Second}, {4 * time.Second, 8 * time.Second}, {4 * time.Second, 8 * time.Second}}
	for i, d := range w {
		if d < bounds[i][0] || d > bounds[i][1] {
			t.Fatalf("wait %d is %v; want within %v (all waits %v)", i, d, bounds[i], w)
		}
	}

	t.Run("MaxWait stops the retries", func(t *testing.T) {
		fs := &fakeSleep{}
		p := client.RetryPolicy{MaxAttempts: 100, MaxWait: 5 * time.Second, BaseDelay: time.Second, MaxDelay: time.Second}
		_, err := client.New(h.url, client.WithSleep(fs.sleep), client.WithRetry(p)).Post(context.Background(), rid("other"), []byte("x"))
		wantError(t, err, 503, "overloaded")
		var total time.Duration
		for _, d := range fs.waits() {
			total += d
		}
		if total > p.MaxWait || len(fs.waits()) == 0 {
			t.Fatalf("waited %v in total (%v); want some waits, at most %v", total, fs.waits(), p.MaxWait)
		}
	})
}

// A POST whose connection broke after the body was sent is never retried
// (the server may have queued it); a GET is, and so is a POST whose
// connection could not be opened at all.
func TestTransportFailures(t *testing.T) {
	var posts, gets atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost {
			posts.Add(1)
		} else {
			gets.Add(1)
		}
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer srv.Close()
	p := client.RetryPolicy{MaxAttempts: 3, MaxWait: time.Minute, BaseDelay: time.Millisecond, MaxDelay: time.Millisecond}
	fs := &fakeSleep{}
	c := client.New(srv.URL, client.WithSleep(fs.sleep), client.WithRetry(p))
	if _, err := c.Post(context.Background(), rid("x"), []byte("body")); err == nil {
		t.Fatal("POST on a broken connection succeeded")
	}
	if n := posts.Load(); n != 1 {
		t.Fatalf("the server saw %d POSTs; want 1 (never retried once sent)", n)
	}
	if _, _, err := c.Get(context.Background(), rid("x"), 0); err == nil {
		t.Fatal("GET on a broken connection succeeded")
	}
	if n := gets.Load(); n != 3 {
		t.Fatalf("the server saw %d GETs; want 3 (MaxAttempts)", n)
	}

	// A port nobody listens on.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	fs = &fakeSleep{}
	c = client.New("http://"+addr, client.WithSleep(fs.sleep), client.WithRetry(p))
	if _, err := c.Post(context.Background(), rid("x"), []byte("body")); !isDialError(err) {
		t.Fatalf("got %v; want a dial error", err)
	}
	if n := len(fs.waits()); n != 2 {
		t.Fatalf("%d waits; want 2: a POST that never connected is retried", n)
	}
}

func TestContextCancellation(t *testing.T) {
	h := newHarness(t, nil)
	t.Run("during a long-poll", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() {
			_, _, err := client.New(h.url).Get(ctx, rid("cancel"), 10*time.Second)
			done <- err
		}()
		h.waitParked(t)
		start := time.Now()
		cancel()
		select {
		case err := <-done:
			if !errors.Is(err, context.Canceled) {
				t.Fatalf("got %v; want context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("Get did not return after its context was cancelled")
		}
		if d := time.Since(start); d > 2*time.Second {
			t.Fatalf("Get took %v to notice the cancellation", d)
		}
	})
	t.Run("during a backoff wait", func(t *testing.T) {
		h := newHarness(t, func(c *harnessConfig) {
			c.guard = guardDefaults()
			c.guard.PostsPerWindow, c.guard.Window = 1, time.Hour
		})
		c := client.New(h.url, client.WithRetry(client.RetryPolicy{MaxAttempts: 5, MaxWait: 2 * time.Hour, BaseDelay: time.Second, MaxDelay: time.Second}))
		if _, err := c.Post(context.Background(), rid("c"), []byte("1")); err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
		defer cancel()
		_, err := c.Post(ctx, rid("c"), []byte("2")) // Retry-After is an hour: the real sleep waits for ctx
		if !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("got %v; want context.DeadlineExceeded", err)
		}
		wantError(t, err, 429, "rate_limited") // the last answer travels with it
	})
	t.Run("already cancelled", func(t *testing.T) {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if _, err := client.New(h.url).Post(ctx, rid("c"), []byte("x")); !errors.Is(err, context.Canceled) {
			t.Fatalf("got %v; want context.Canceled", err)
		}
	})
}

// Z4: with a signing key every GET carries fresh signature headers; the
// server refuses an unsigned GET with 401.
func TestSignedGet(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.guard = guardDefaults()
		c.guard.Mode = guard.Signature
	})
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		t.Fatal(err)
	}
	id := client.MailboxID(pub)
	ctx := context.Background()
	anon := client.New(h.url)
	if _, err := anon.Post(ctx, id, []byte("for the key holder")); err != nil {
		t.Fatalf("POST stays open: %v", err)
	}
	_, _, err = anon.Get(ctx, id, 0)
	wantError(t, err, 401, "unauthorized")

	signed := client.New(h.url, client.WithSigningKey(key), client.WithClock(h.clock.Now)) // the guard runs on the fake clock
	for i := range 2 {                                                                     // a second GET needs a fresh nonce
		m, ok, err := signed.Get(ctx, id, 0)
		if err != nil {
			t.Fatalf("signed GET %d: %v", i, err)
		}
		if i == 0 && (!ok || string(m.Body) != "for the key holder") {
			t.Fatalf("signed GET got %+v, %v", m, ok)
		}
	}
	if _, _, err := signed.Get(ctx, rid("someone else"), 0); !errors.Is(err, client.ErrKeyMismatch) {
		t.Fatalf("GET of another mailbox: %v; want client.ErrKeyMismatch", err)
	}
}

// R5.1–R5.5: the Bearer token goes on every mailbox request.
func TestBearerToken(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) {
		c.guard = guardDefaults()
		c.guard.Mode, c.guard.ServerTokens = guard.ServerWide, []string{"s3cret"}
	})
	ctx := context.Background()
	_, err := client.New(h.url).Post(ctx, rid("t"), []byte("x"))
	wantError(t, err, 401, "unauthorized")
	_, err = client.New(h.url, client.WithToken("wrong")).Post(ctx, rid("t"), []byte("x"))
	wantError(t, err, 403, "forbidden")
	c := client.New(h.url, client.WithToken("s3cret"))
	if _, err := c.Post(ctx, rid("t"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	if _, ok, err := c.Get(ctx, rid("t"), 0); err != nil || !ok {
		t.Fatalf("GET with the token: %v %v", ok, err)
	}
}

func TestHealth(t *testing.T) {
	h := newHarness(t, func(c *harnessConfig) { c.sup.MaxMailboxes = 1 })
	c := client.New(h.url)
	ctx := context.Background()
	hl, err := c.Health(ctx)
	if err != nil || hl.Status != "healthy" || hl.Version != "test" {
		t.Fatalf("Health: %+v, %v; want healthy, version test", hl, err)
	}
	if _, err := c.Post(ctx, rid("h"), []byte("x")); err != nil {
		t.Fatal(err)
	}
	hl, err = c.Health(ctx)
	e := wantError(t, err, 503, "overloaded")
	if hl.Status != "overloaded" || hl.Mailboxes != 1 || hl.Messages != 1 || e.RetryAfter != time.Second {
		t.Fatalf("Health at max_mailboxes: %+v, %v; want overloaded with 1 mailbox and 1 message", hl, e)
	}

	t.Run("a plain-text health answer", func(t *testing.T) {
		srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) }))
		defer srv.Close()
		hl, err := client.New(srv.URL).Health(ctx)
		if err != nil || hl.Status != "ok" {
			t.Fatalf("got %+v, %v; want status ok", hl, err)
		}
	})
}

func isDialError(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && op.Op == "dial"
}
