package httpapi

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/http/httptest"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// TestPostGetSequence walks one server through posts and gets and checks
// every answer exactly: FIFO (property 1), sequences (R1.7), queue lengths
// (R2.8), 204 on empty (R2.5), ids in either case (Terms).
func TestPostGetSequence(t *testing.T) {
	s := newTestServer(t)
	a, b := rid("alice"), rid("bob")
	A := strings.ToUpper(a)
	type step struct {
		name     string
		method   string
		id       string
		body     string // POST: sent; GET: expected ("" with status 204)
		status   int
		seq      uint64
		queueLen int
	}
	steps := []step{
		{"first post", "POST", a, "m1", 202, seq0, 1},
		{"upper-case id, same mailbox", "POST", A, "m2", 202, seq0 + 1, 2},
		{"third post", "POST", a, "m3", 202, seq0 + 2, 3},
		{"other mailbox starts its own sequence", "POST", b, "other", 202, seq0, 1},
		{"oldest first, upper-case id", "GET", A, "m1", 200, seq0, 2},
		{"second", "GET", a, "m2", 200, seq0 + 1, 1},
		{"third", "GET", a, "m3", 200, seq0 + 2, 0},
		{"empty", "GET", a, "", 204, 0, 0},
		{"other mailbox untouched", "GET", b, "other", 200, seq0, 0},
		{"sequence keeps rising", "POST", a, "m4", 202, seq0 + 3, 1},
		{"and is delivered", "GET", A, "m4", 200, seq0 + 3, 0},
	}
	for _, st := range steps {
		t.Run(st.name, func(t *testing.T) {
			if st.method == "POST" {
				wantAccepted(t, s.post(st.id, st.body), st.seq, st.queueLen)
				return
			}
			r := s.get(st.id, "?wait_ms=0")
			if st.status == 204 {
				wantNoContent(t, r)
				return
			}
			wantMessage(t, r, st.body, st.seq, st.queueLen)
		})
	}
}

// TestPostBodies: any or no Content-Type (R1.2), exact bytes back
// (property 2), bodies up to exactly max_message_size by either framing.
func TestPostBodies(t *testing.T) {
	s := newTestServer(t)
	binary := string([]byte{0, 1, 2, 0xff, 0xfe, '\r', '\n', 0})
	tests := []struct {
		name        string
		body        string
		contentType string
		chunked     bool
	}{
		{"no content type", "hello", "", false},
		{"octet-stream", "hello", "application/octet-stream", false},
		{"text/plain", "hello", "text/plain; charset=utf-8", false},
		{"json", `{"a":1}`, "application/json", false},
		{"form", "a=1&b=2", "application/x-www-form-urlencoded", false},
		{"binary", binary, "", false},
		{"binary chunked", binary, "", true},
		{"exactly the limit", repeat(1024), "", false},
		{"exactly the limit chunked", repeat(1024), "", true},
		{"one byte", "x", "", true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			id := rid(tt.name)
			h := http.Header{}
			if tt.contentType != "" {
				h.Set("Content-Type", tt.contentType)
			}
			wantAccepted(t, s.do(req{method: "POST", path: mailboxPath(id), body: []byte(tt.body), chunked: tt.chunked, header: h}), seq0, 1)
			wantMessage(t, s.get(id, "?wait_ms=0"), tt.body, seq0, 0)
		})
	}
}

// TestHeadNeverConsumes: HEAD is 405 with Allow: GET, POST and leaves the
// message queued (Z7).
func TestHeadNeverConsumes(t *testing.T) {
	s := newTestServer(t)
	id := rid("head")
	wantAccepted(t, s.post(id, "keep me"), seq0, 1)
	for range 3 {
		r := s.do(req{method: http.MethodHead, path: mailboxPath(id) + "?wait_ms=0"})
		if r.status != http.StatusMethodNotAllowed {
			t.Fatalf("HEAD status = %d; want 405", r.status)
		}
		wantHeader(t, r.header, map[string]string{"Allow": "GET, POST", "Content-Type": "application/json"})
	}
	wantMessage(t, s.get(id, "?wait_ms=0"), "keep me", seq0, 0)
}

// TestLongPollWokenByPost: a parked GET gets the next post at once, and the
// POST reports queue length 0 because the waiter took it (R2.4, R1.3).
func TestLongPollWokenByPost(t *testing.T) {
	s := newTestServer(t)
	id := rid("wake")
	got := s.goGet(context.Background(), id, "?wait_ms=5000")
	s.waitParked(1)
	r := s.post(id, "hi")
	// The GET may reach its actor after the post (Waiting counts it
	// before it parks); then the message was queued for it.
	if r.status != http.StatusAccepted || (r.header.Get("X-Queue-Length") != "0" && r.header.Get("X-Queue-Length") != "1") {
		t.Fatalf("POST = %d %q", r.status, r.body)
	}
	g := receive(t, got)
	wantMessage(t, g, "hi", seq0, 0)
	if g.elapsed > 4*time.Second {
		t.Errorf("GET took %v; want it woken by the post", g.elapsed)
	}
}

// TestTwoWaitersOneMessage (Z1): one message goes to exactly one of two
// waiters; the other keeps waiting until its own deadline and gets 204.
func TestTwoWaitersOneMessage(t *testing.T) {
	s := newTestServer(t)
	id := rid("two waiters")
	const wait = 100 * time.Millisecond
	first := s.goGet(context.Background(), id, "?wait_ms=100")
	second := s.goGet(context.Background(), id, "?wait_ms=100")
	s.waitParked(2)
	if r := s.post(id, "only one"); r.status != http.StatusAccepted {
		t.Fatalf("POST status = %d", r.status)
	}
	r1, r2 := receive(t, first), receive(t, second)
	if r1.status == http.StatusNoContent {
		r1, r2 = r2, r1
	}
	wantMessage(t, r1, "only one", seq0, 0)
	wantNoContent(t, r2)
	if r2.elapsed < wait {
		t.Errorf("204 after %v; want no earlier than its own wait_ms (%v)", r2.elapsed, wait)
	}
	wantNoContent(t, s.get(id, "?wait_ms=0"))
}

// TestWaitMS: absent, valid, clamped and invalid wait_ms values (R2.2).
func TestWaitMS(t *testing.T) {
	s := newTestServer(t, func(c *config) {
		c.api.LongPollDefault = 40 * time.Millisecond
		c.api.LongPollMax = 60 * time.Millisecond
	})
	id := rid("wait")
	valid := []struct {
		name    string
		query   string
		atLeast time.Duration
	}{
		{"absent: default", "", 40 * time.Millisecond},
		{"absent with other params", "?x=1&wait=5", 40 * time.Millisecond},
		{"zero: at once", "?wait_ms=0", 0},
		{"leading zeros", "?wait_ms=0000", 0},
		{"small", "?wait_ms=20", 20 * time.Millisecond},
		{"percent-encoded digits", "?wait_ms=%32%30", 20 * time.Millisecond},
		{"first of two", "?wait_ms=0&wait_ms=abc", 0},
		{"above max: clamped", "?wait_ms=5000", 60 * time.Millisecond},
		{"beyond int64: clamped", "?wait_ms=99999999999999999999999999999999", 60 * time.Millisecond},
	}
	for _, tt := range valid {
		t.Run(tt.name, func(t *testing.T) {
			r := s.get(id, tt.query)
			wantNoContent(t, r)
			if r.elapsed < tt.atLeast {
				t.Errorf("answered after %v; want at least %v", r.elapsed, tt.atLeast)
			}
			if r.elapsed > 5*time.Second {
				t.Errorf("answered after %v; want the wait clamped to 60ms", r.elapsed)
			}
		})
	}
	invalid := []string{
		"?wait_ms", "?wait_ms=", "?wait_ms=-1", "?wait_ms=+1", "?wait_ms=%2B1", "?wait_ms=1.5",
		"?wait_ms=abc", "?wait_ms=1e3", "?wait_ms=0x10", "?wait_ms=%201", "?wait_ms=1+",
		"?wait_ms=1%20", "?wait_ms=%EF%BC%91", "?wait_ms=-0", "?a=b&wait_ms=x",
	}
	for _, q := range invalid {
		t.Run("invalid "+q, func(t *testing.T) {
			wantError(t, s.get(id, q), http.StatusBadRequest, "bad_wait_ms")
		})
	}
}

// TestClientDisconnectKeepsMessage (Z2): a GET whose client leaves while
// parked must not swallow the next message: it stays for the next GET.
func TestClientDisconnectKeepsMessage(t *testing.T) {
	s := newTestServer(t)
	id := rid("disconnect")
	ctx, cancel := context.WithCancel(context.Background())
	gone := s.goGet(ctx, id, "?wait_ms=5000")
	s.waitParked(1)
	cancel()
	if r := receive(t, gone); r.err == nil {
		t.Fatalf("cancelled GET got a response %d", r.status)
	}
	// The server noticed the disconnect once the handler has returned.
	s.waitParked(0)
	// Queue length 1: nobody was handed the message.
	wantAccepted(t, s.post(id, "not lost"), seq0, 1)
	wantMessage(t, s.get(id, "?wait_ms=0"), "not lost", seq0, 0)
}

// cancelAfterReceive decorates the real engine: it ends the request's
// context right after a hand-off, before the answer is written, as a
// client leaving at that moment would.
type cancelAfterReceive struct {
	Mailboxes
	cancel context.CancelCauseFunc
	cause  error
}

func (c *cancelAfterReceive) StartReceive(ctx context.Context, id actor.ID, wait time.Duration, to actor.Receiver) (actor.Receipt, error) {
	return c.Mailboxes.StartReceive(ctx, id, wait, cancelThenTell{c, to})
}

type cancelThenTell struct {
	c  *cancelAfterReceive
	to actor.Receiver
}

func (ct cancelThenTell) Received(d actor.Delivery, err error) {
	ct.c.cancel(ct.c.cause)
	ct.to.Received(d, err)
}

// TestHandOffToGoneClient (Z2): when the request's context is done after
// the hand-off, the message goes back to the head of the queue and a
// client that left is answered 400 bad_request, never net/http's implicit
// 200 (Z10); a shutdown still delivers it.
func TestHandOffToGoneClient(t *testing.T) {
	tests := []struct {
		name       string
		cause      error
		wantStatus int
		wantBody   string
		requeued   bool
	}{
		{"client left", context.Canceled, http.StatusBadRequest, string(apierr.BadRequest.Body()), true},
		{"shutdown", ErrShuttingDown, http.StatusOK, "first", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t)
			id := rid("handoff")
			wantAccepted(t, s.post(id, "first"), seq0, 1)
			wantAccepted(t, s.post(id, "second"), seq0+1, 2)

			ctx, cancel := context.WithCancelCause(context.Background())
			dec := &cancelAfterReceive{Mailboxes: s.sup, cancel: cancel, cause: tt.cause}
			h := New(Deps{Mailboxes: dec, Options: defaultConfig().api})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", mailboxPath(id)+"?wait_ms=0", nil))
			if w.Code != tt.wantStatus || w.Body.String() != tt.wantBody {
				t.Errorf("got %d %q; want %d %q", w.Code, w.Body, tt.wantStatus, tt.wantBody)
			}
			if tt.requeued {
				wantMessage(t, s.get(id, "?wait_ms=0"), "first", seq0, 1)
			}
			wantMessage(t, s.get(id, "?wait_ms=0"), "second", seq0+1, 0)
		})
	}
}

// failingWriter fails every body write, as a connection that broke would.
type failingWriter struct{ *httptest.ResponseRecorder }

func (f failingWriter) Write([]byte) (int, error) { return 0, errors.New("connection reset") }

// TestWriteFailureRequeues (Z2): a message whose response cannot be written
// goes back to the head of its queue (at-least-once).
func TestWriteFailureRequeues(t *testing.T) {
	s := newTestServer(t)
	id := rid("write fails")
	wantAccepted(t, s.post(id, "first"), seq0, 1)
	wantAccepted(t, s.post(id, "second"), seq0+1, 2)
	h := New(Deps{Mailboxes: s.sup, Options: defaultConfig().api})
	h.ServeHTTP(failingWriter{httptest.NewRecorder()}, httptest.NewRequest("GET", mailboxPath(id)+"?wait_ms=0", nil))
	wantMessage(t, s.get(id, "?wait_ms=0"), "first", seq0, 1)
	wantMessage(t, s.get(id, "?wait_ms=0"), "second", seq0+1, 0)
	if got := s.sup.Stats().Requeued.Load(); got != 1 {
		t.Errorf("requeued = %d; want 1", got)
	}
}

// TestTTL (R3.1): a message as old as the TTL is never delivered, even
// before any sweep; one just younger is.
func TestTTL(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.sup.TTL = time.Minute })
	id := rid("ttl")
	wantAccepted(t, s.post(id, "old"), seq0, 1)
	s.clock.Advance(30 * time.Second)
	wantAccepted(t, s.post(id, "young"), seq0+1, 2)
	s.clock.Advance(30 * time.Second) // "old" is exactly one TTL old now
	wantMessage(t, s.get(id, "?wait_ms=0"), "young", seq0+1, 0)
	s.clock.Advance(time.Hour)
	wantAccepted(t, s.post(id, "expires unseen"), seq0+2, 1)
	s.clock.Advance(time.Minute)
	wantNoContent(t, s.get(id, "?wait_ms=0"))
	if got := s.sup.Stats().EvictedTTL.Load(); got != 2 {
		t.Errorf("evicted for TTL = %d; want 2", got)
	}
}

// The mailbox routes flush their answers before the handler returns (they
// are written off the connection's goroutine, see postEndpoint); every
// answer still carries its exact length instead of going chunked.
func TestMailboxAnswersCarryTheirLength(t *testing.T) {
	s := newTestServer(t)
	id := rid("length")
	for _, tc := range []struct {
		name   string
		r      req
		status int
		length string // "" for none (204)
	}{
		{"202", req{method: http.MethodPost, path: mailboxPath(id), body: []byte("hello")}, http.StatusAccepted, ""},
		{"200", req{method: http.MethodGet, path: mailboxPath(id) + "?wait_ms=0"}, http.StatusOK, "5"},
		{"204", req{method: http.MethodGet, path: mailboxPath(id) + "?wait_ms=0"}, http.StatusNoContent, ""},
		{"400 on POST", req{method: http.MethodPost, path: mailboxPath("nothex"), body: []byte("x")}, http.StatusBadRequest, ""},
		{"400 on GET", req{method: http.MethodGet, path: mailboxPath(id) + "?wait_ms=x"}, http.StatusBadRequest, ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			res := s.do(tc.r)
			if res.status != tc.status {
				t.Fatalf("status %d; want %d (body %q)", res.status, tc.status, res.body)
			}
			if res.chunked {
				t.Fatalf("answer went chunked; want a Content-Length")
			}
			want := tc.length
			if want == "" && tc.status != http.StatusNoContent {
				want = strconv.Itoa(len(res.body))
			}
			if got := res.header.Get("Content-Length"); got != want {
				t.Fatalf("Content-Length %q; want %q (body %q)", got, want, res.body)
			}
		})
	}
}

// panicOnPost decorates the real engine with a Post that panics.
type panicOnPost struct{ Mailboxes }

func (panicOnPost) Post(context.Context, actor.ID, []byte) (actor.PostReply, error) {
	panic("engine bug")
}

// A panic while a mailbox request is served off the connection's goroutine
// is net/http's to recover, as any handler's: the request's connection is
// closed, the process lives on and other requests are served.
func TestPanicInAnswerIsRecovered(t *testing.T) {
	s := newTestServer(t, func(c *config) {
		c.wrap = func(m Mailboxes) Mailboxes { return panicOnPost{m} }
	})
	id := rid("panic")
	res := s.try(req{method: http.MethodPost, path: mailboxPath(id), body: []byte("x")})
	if res.err == nil {
		t.Fatalf("POST answered %d %q; want the connection closed", res.status, res.body)
	}
	wantNoContent(t, s.get(id, "?wait_ms=0"))
}

// answerGoroutines counts the answer goroutines in a dump of all
// goroutines.
func answerGoroutines() int {
	buf := make([]byte, 1<<20)
	for {
		n := runtime.Stack(buf, true)
		if n < len(buf) {
			return strings.Count(string(buf[:n]), "httpapi.(*api).answerLoop(")
		}
		buf = make([]byte, 2*len(buf))
	}
}

// Answers are written by goroutines kept for reuse: sequential requests
// share one (two, if a request comes before the first is back to idle),
// and it ends once idle for Options.AnswerIdle.
func TestAnswerGoroutinesAreReusedThenEnd(t *testing.T) {
	// Other tests' answer goroutines end within their AnswerIdle.
	polltest.Until(t, "earlier tests' answer goroutines to end", func() bool { return answerGoroutines() == 0 })
	s := newTestServer(t, func(c *config) { c.api.AnswerIdle = 100 * time.Millisecond })
	id := rid("answerers")
	for i := range 20 {
		wantAccepted(t, s.post(id, "m"), seq0+uint64(i), 1)
		wantMessage(t, s.get(id, "?wait_ms=0"), "m", seq0+uint64(i), 0)
	}
	if n := answerGoroutines(); n < 1 || n > 2 {
		t.Fatalf("%d answer goroutines after 40 sequential requests; want 1 or 2, kept for reuse", n)
	}
	polltest.Until(t, "the idle answer goroutines to end", func() bool { return answerGoroutines() == 0 })
}

// reuseAfterAnswer decorates the real engine: before the endpoint gets its
// Receipt, the answer has been written, the client has left, and another
// receive has parked — on the same Waiter, if the one answered was
// already back in the pool.
type reuseAfterAnswer struct {
	Mailboxes
	written <-chan struct{}
	cancel  context.CancelFunc
	other   actor.ID
}

func (d *reuseAfterAnswer) StartReceive(ctx context.Context, id actor.ID, wait time.Duration, to actor.Receiver) (actor.Receipt, error) {
	rc, err := d.Mailboxes.StartReceive(ctx, id, wait, to)
	<-d.written
	d.cancel()
	if _, err := d.Mailboxes.StartReceive(context.Background(), d.other, time.Minute, ignoreAnswer{}); err != nil {
		panic(err)
	}
	return rc, err
}

// ignoreAnswer is a Receiver for a receive whose answer nobody reads.
type ignoreAnswer struct{}

func (ignoreAnswer) Received(actor.Delivery, error) {}

// flushSignal closes flushed when the answer is flushed.
type flushSignal struct {
	*httptest.ResponseRecorder
	once    sync.Once
	flushed chan struct{}
}

func (f *flushSignal) Flush() {
	f.ResponseRecorder.Flush()
	f.once.Do(func() { close(f.flushed) })
}

// A GET whose client leaves after its answer was written must not
// withdraw another receive: by then its Waiter may serve another receive,
// which would lose its message to a cancel meant for the first. One processor
// makes the pool hand the Waiter straight to the next receive, and the
// endpoint's select sees the answer and the ended context at once, so
// the rounds take the ended context about half the time.
func TestLeftAfterAnswerLeavesTheWaiterAlone(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	s := newTestServer(t)
	for i := range 40 {
		id, other := rid(fmt.Sprint("answered", i)), rid(fmt.Sprint("other", i))
		otherID, err := actor.ParseID(other)
		if err != nil {
			t.Fatal(err)
		}
		wantAccepted(t, s.post(id, "first"), seq0, 1)
		ctx, cancel := context.WithCancel(context.Background())
		w := &flushSignal{ResponseRecorder: httptest.NewRecorder(), flushed: make(chan struct{})}
		dec := &reuseAfterAnswer{Mailboxes: s.sup, written: w.flushed, cancel: cancel, other: otherID}
		h := New(Deps{Mailboxes: dec, Options: defaultConfig().api})
		h.ServeHTTP(w, httptest.NewRequestWithContext(ctx, "GET", mailboxPath(id)+"?wait_ms=0", nil))
		if w.Code != http.StatusOK || w.Body.String() != "first" {
			t.Fatalf("round %d: got %d %q; want 200 %q", i, w.Code, w.Body, "first")
		}
		if r := s.post(other, "second"); r.status != http.StatusAccepted || r.header.Get("X-Queue-Length") != "0" {
			t.Fatalf("round %d: post to the other mailbox: %d, queue length %q; want 202 and 0: its parked receive was cancelled",
				i, r.status, r.header.Get("X-Queue-Length"))
		}
	}
}
