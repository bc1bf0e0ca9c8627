package httpapi

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
)

// TestErrorResponses: every client error without auth or rate limits,
// with exact status, JSON body and headers (SPEC "HTTP API", Z8).
func TestErrorResponses(t *testing.T) {
	s := newTestServer(t)
	id := rid("errors")
	mb := mailboxPath(id)
	tests := []struct {
		name   string
		r      req
		status int
		code   string
		header map[string]string
	}{
		{"POST short id", req{method: "POST", path: mailboxPath("abc"), body: []byte("x")}, 400, "bad_recipient_id", nil},
		{"POST 63 hex", req{method: "POST", path: mailboxPath(id[:63]), body: []byte("x")}, 400, "bad_recipient_id", nil},
		{"POST 65 hex", req{method: "POST", path: mailboxPath(id + "0"), body: []byte("x")}, 400, "bad_recipient_id", nil},
		{"POST non-hex", req{method: "POST", path: mailboxPath(strings.Repeat("g", 64)), body: []byte("x")}, 400, "bad_recipient_id", nil},
		{"POST encoded slash", req{method: "POST", path: mailboxPath(id[:31] + "%2F" + id[32:]), body: []byte("x")}, 400, "bad_recipient_id", nil},
		{"GET bad id", req{method: "GET", path: mailboxPath("zz") + "?wait_ms=0"}, 400, "bad_recipient_id", nil},
		{"GET bad id and bad wait", req{method: "GET", path: mailboxPath("zz") + "?wait_ms=x"}, 400, "bad_recipient_id", nil},
		{"POST empty body", req{method: "POST", path: mb}, 400, "empty_message", nil},
		{"POST empty chunked body", req{method: "POST", path: mb, body: []byte{}, chunked: true}, 400, "empty_message", nil},
		{"GET bad wait_ms", req{method: "GET", path: mb + "?wait_ms=1.5"}, 400, "bad_wait_ms", nil},
		{"POST too large by Content-Length", req{method: "POST", path: mb, body: []byte(repeat(1025))}, 413, "message_too_large", nil},
		{"POST too large chunked", req{method: "POST", path: mb, body: []byte(repeat(1025)), chunked: true}, 413, "message_too_large", nil},
		{"POST far too large chunked", req{method: "POST", path: mb, body: []byte(repeat(200_000)), chunked: true}, 413, "message_too_large", nil},
		{"HEAD mailbox", req{method: "HEAD", path: mb}, 405, "", map[string]string{"Allow": "GET, POST"}},
		{"PUT mailbox", req{method: "PUT", path: mb, body: []byte("x")}, 405, "method_not_allowed", map[string]string{"Allow": "GET, POST"}},
		{"DELETE mailbox", req{method: "DELETE", path: mb}, 405, "method_not_allowed", map[string]string{"Allow": "GET, POST"}},
		{"PATCH mailbox", req{method: "PATCH", path: mb}, 405, "method_not_allowed", map[string]string{"Allow": "GET, POST"}},
		{"OPTIONS mailbox", req{method: "OPTIONS", path: mb}, 405, "method_not_allowed", map[string]string{"Allow": "GET, POST"}},
		{"DELETE bad id", req{method: "DELETE", path: mailboxPath("x")}, 405, "method_not_allowed", map[string]string{"Allow": "GET, POST"}},
		{"POST health", req{method: "POST", path: "/health", body: []byte("x")}, 405, "method_not_allowed", map[string]string{"Allow": "GET, HEAD"}},
		{"DELETE metrics", req{method: "DELETE", path: "/metrics"}, 405, "method_not_allowed", map[string]string{"Allow": "GET, HEAD"}},
		{"root", req{method: "GET", path: "/"}, 404, "not_found", nil},
		{"no id", req{method: "GET", path: "/v1/mailbox/"}, 404, "not_found", nil},
		{"no slash", req{method: "POST", path: "/v1/mailbox", body: []byte("x")}, 404, "not_found", nil},
		{"extra segment", req{method: "GET", path: mb + "/x"}, 404, "not_found", nil},
		{"other version", req{method: "POST", path: "/v2/mailbox/" + id, body: []byte("x")}, 404, "not_found", nil},
		{"near health", req{method: "GET", path: "/healthz"}, 404, "not_found", nil},
		{"unknown path, odd method", req{method: "PUT", path: "/nope"}, 404, "not_found", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := s.do(tt.r)
			if tt.code == "" { // HEAD: no body on the wire
				if r.status != tt.status {
					t.Fatalf("status = %d; want %d", r.status, tt.status)
				}
				wantHeader(t, r.header, map[string]string{"Content-Type": "application/json"})
			} else {
				wantError(t, r, tt.status, tt.code)
			}
			wantHeader(t, r.header, tt.header)
			// The rest of an oversized body is never read: the connection
			// cannot carry another request.
			if closes := tt.status == 413; r.closed != closes {
				t.Errorf("connection closed = %v; want %v", r.closed, closes)
			}
			if r.status < 500 {
				wantHeader(t, r.header, map[string]string{"Retry-After": ""})
			}
		})
	}
	// None of it created a mailbox or queued a message.
	if snap := s.sup.Snapshot(); snap.Mailboxes != 0 || snap.Messages != 0 {
		t.Errorf("after errors: %+v; want no mailbox and no message", snap)
	}
}

// TestTooLargeUnread (R1.4): a Content-Length above the limit is answered
// 413 from the header alone: the server reads none of the body (none is
// sent here, so a server that tried would hang) and closes the connection.
func TestTooLargeUnread(t *testing.T) {
	s := newTestServer(t)
	addr := strings.TrimPrefix(s.url, "http://")
	for _, expect := range []string{"", "Expect: 100-continue\r\n"} {
		t.Run(fmt.Sprintf("expect=%q", expect), func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			if err := conn.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
				t.Fatal(err)
			}
			fmt.Fprintf(conn, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000000\r\n%s\r\n", mailboxPath(rid("big")), expect)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("no response without the body: %v", err)
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			wantError(t, result{status: resp.StatusCode, header: resp.Header, body: b}, 413, "message_too_large")
			if !resp.Close {
				t.Error("connection kept open; want it closed")
			}
			if n, err := br.Read(make([]byte, 1)); err != io.EOF {
				t.Errorf("after the 413: read %d bytes, %v; want EOF", n, err)
			}
		})
	}
}

// endless is a body that never ends; it counts what was read of it.
type endless struct{ n int64 }

func (e *endless) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = 'x'
	}
	e.n += int64(len(p))
	return len(p), nil
}

func (e *endless) Close() error { return nil }

// TestBodyReadBound (R1.4): whatever the body and Content-Length claim,
// the handler reads at most max_message_size+1 bytes, and exactly
// Content-Length bytes when that is declared.
func TestBodyReadBound(t *testing.T) {
	const limit = 1024
	tests := []struct {
		name          string
		contentLength int64
		status        int
		maxRead       int64
	}{
		{"chunked, endless", -1, 413, limit + 1},
		{"declared too large", limit + 1, 413, 0},
		{"declared 10, endless", 10, 202, 10},
		{"declared limit, endless", limit, 202, limit},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t)
			h := New(Deps{Mailboxes: s.sup, Options: defaultConfig().api})
			body := &endless{}
			r := httptest.NewRequest("POST", mailboxPath(rid("bound")), nil)
			r.Body, r.ContentLength = body, tt.contentLength
			w := httptest.NewRecorder()
			h.ServeHTTP(w, r)
			if w.Code != tt.status {
				t.Errorf("status = %d; want %d", w.Code, tt.status)
			}
			if body.n > tt.maxRead {
				t.Errorf("read %d body bytes; want at most %d", body.n, tt.maxRead)
			}
		})
	}
}

// TestQueueFull (R1.6): 507 once the mailbox holds max_queue_length
// messages; room again after a GET.
func TestQueueFull(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.sup.MaxQueueLength = 2 })
	id := rid("full")
	wantAccepted(t, s.post(id, "1"), seq0, 1)
	wantAccepted(t, s.post(id, "2"), seq0+1, 2)
	r := s.post(id, "3")
	wantError(t, r, http.StatusInsufficientStorage, "queue_full")
	wantHeader(t, r.header, map[string]string{"Retry-After": "", "X-Message-Sequence": ""})
	wantMessage(t, s.get(id, "?wait_ms=0"), "1", seq0, 1)
	wantAccepted(t, s.post(id, "3"), seq0+2, 2)
}

// TestOverloaded: 503 overloaded with Retry-After when no mailbox can be
// created (Z5) or a message cannot fit in memory (R3.5).
func TestOverloaded(t *testing.T) {
	t.Run("max_mailboxes", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.sup.MaxMailboxes = 1 })
		a, b := rid("a"), rid("b")
		wantAccepted(t, s.post(a, "keeps a alive"), seq0, 1)
		for _, r := range []result{s.post(b, "no room"), s.get(b, "?wait_ms=50")} {
			wantError(t, r, http.StatusServiceUnavailable, "overloaded")
			wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
		}
		// A GET that would not wait creates nothing, so it is no trouble.
		wantNoContent(t, s.get(b, "?wait_ms=0"))
		h := s.do(req{method: "GET", path: "/health"})
		if h.status != 503 || !strings.Contains(string(h.body), `"status":"overloaded"`) {
			t.Errorf("health = %d %s; want 503 overloaded", h.status, h.body)
		}
	})
	t.Run("idle mailbox reclaimed", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.sup.MaxMailboxes = 1 })
		// A long-poll that timed out leaves an empty mailbox without a
		// waiter: reclaimable at once (Z5).
		wantNoContent(t, s.get(rid("a"), "?wait_ms=20"))
		wantAccepted(t, s.post(rid("b"), "room"), seq0, 1)
	})
	t.Run("memory", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.sup.MemoryLimit = 100 })
		r := s.post(rid("m"), repeat(101))
		wantError(t, r, http.StatusServiceUnavailable, "overloaded")
		wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
	})
}

// TestShutdown (R9.4): once the base context is cancelled with
// ErrShuttingDown, a parked GET answers 503 shutting_down at once, and so
// do new requests; /health says shutting_down.
func TestShutdown(t *testing.T) {
	s := newTestServer(t)
	id := rid("shutdown")
	parked := s.goGet(context.Background(), id, "?wait_ms=10000")
	s.waitParked(1)
	start := time.Now()
	s.shutdown(ErrShuttingDown)
	r := receive(t, parked)
	wantError(t, r, http.StatusServiceUnavailable, "shutting_down")
	wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("parked GET answered %v after shutdown; want at once", d)
	}

	for _, rq := range []req{
		{method: "POST", path: mailboxPath(id), body: []byte("late")},
		{method: "GET", path: mailboxPath(id) + "?wait_ms=0"},
		{method: "GET", path: mailboxPath(id) + "?wait_ms=5000"},
	} {
		r := s.do(rq)
		wantError(t, r, http.StatusServiceUnavailable, "shutting_down")
		wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
	}
	h := s.do(req{method: "GET", path: "/health"})
	if h.status != 503 || !strings.Contains(string(h.body), `"status":"shutting_down"`) {
		t.Errorf("health = %d %s; want 503 shutting_down", h.status, h.body)
	}
	wantHeader(t, h.header, map[string]string{"Retry-After": "1", "Content-Type": "application/json"})
	if snap := s.sup.Snapshot(); snap.Messages != 0 {
		t.Errorf("a POST during shutdown queued a message: %+v", snap)
	}
}

// TestSupervisorClosed: a closed engine answers shutting_down too.
func TestSupervisorClosed(t *testing.T) {
	s := newTestServer(t)
	s.sup.Close()
	for _, r := range []result{s.post(rid("c"), "x"), s.get(rid("c"), "?wait_ms=50")} {
		wantError(t, r, http.StatusServiceUnavailable, "shutting_down")
		wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
	}
}

// TestClassify covers the table itself: every engine error, wrapped or not.
func TestClassify(t *testing.T) {
	live := httptest.NewRequest("GET", "/", nil)
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	gone := live.WithContext(ctx)
	sctx, scancel := context.WithCancelCause(context.Background())
	scancel(ErrShuttingDown)
	stopping := live.WithContext(sctx)
	tests := []struct {
		name string
		r    *http.Request
		err  error
		want string
		left bool // answered, but counted as a client that left
	}{
		{"bad id", live, actor.ErrBadID, "bad_recipient_id", false},
		{"queue full wrapped", live, fmt.Errorf("post: %w", actor.ErrQueueFull), "queue_full", false},
		{"overloaded", live, actor.ErrOverloaded, "overloaded", false},
		{"closed", live, actor.ErrClosed, "shutting_down", false},
		{"shutdown cause", live, ErrShuttingDown, "shutting_down", false},
		{"too large", live, errMessageTooLarge, "message_too_large", false},
		{"unreadable body", live, bodyError(io.ErrUnexpectedEOF), "bad_request", false},
		{"too large from MaxBytesReader", live, bodyError(&http.MaxBytesError{Limit: 1}), "message_too_large", false},
		{"unknown", live, io.ErrClosedPipe, "internal_error", false},
		// Z10: a request whose client has gone still gets its status.
		{"client gone", gone, context.Canceled, "bad_request", true},
		{"client gone, body cut short", gone, bodyError(io.ErrUnexpectedEOF), "bad_request", false},
		{"client gone, any error", gone, actor.ErrQueueFull, "queue_full", false},
		{"shutdown wins", stopping, actor.ErrQueueFull, "shutting_down", false},
		{"shutdown, cancelled receive", stopping, context.Canceled, "shutting_down", false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c, left := classify(tt.r, tt.err)
			if got := c.Entry().Error; got != tt.want || left != tt.left {
				t.Errorf("classify(%v) = %q, left %v; want %q, left %v", tt.err, got, left, tt.want, tt.left)
			}
		})
	}
}

// TestErrorTable: SPEC.md's codes all exist with their statuses in the
// catalogue, each JSON code but overloaded (the connection cap's two
// refusals) names one answer, every handler's answer is counted under its
// own code, and every body is the JSON object clients expect.
func TestErrorTable(t *testing.T) {
	spec := map[string]int{
		"bad_recipient_id": 400, "empty_message": 400, "bad_wait_ms": 400,
		"unexpected_body": 400, "bad_request": 400,
		"unauthorized": 401, "forbidden": 403, "blocked": 403, "not_found": 404,
		"method_not_allowed": 405, "message_too_large": 413, "rate_limited": 429,
		"overloaded": 503, "shutting_down": 503, "queue_full": 507,
	}
	seen := map[string]int{}
	for c := range apierr.NumCodes {
		row := c.Entry()
		seen[row.Error]++
		if want, ok := spec[row.Error]; ok && row.Status != want {
			t.Errorf("%s: status %d; want %d", row.Error, row.Status, want)
		}
		var body struct{ Error, Message string }
		if err := json.Unmarshal(c.Body(), &body); err != nil || body.Error != row.Error || body.Message != row.Message {
			t.Errorf("%s: body %s (%v)", row.Error, c.Body(), err)
		}
	}
	for code, n := range seen {
		if code == "" || n > 1 && code != "overloaded" {
			t.Errorf("code %q: %d answers; want one", code, n)
		}
	}
	handled := map[string]bool{}
	for _, row := range errorTable {
		if code := row.code.Entry().Error; handled[code] {
			t.Errorf("errorTable: code %s twice", code)
		} else {
			handled[code] = true
		}
	}
	for code := range spec {
		if !handled[code] {
			t.Errorf("SPEC code %s missing from errorTable", code)
		}
	}
}

// rateLimited is what the coming rate limiter may return.
type rateLimited struct{ after time.Duration }

func (e rateLimited) Error() string             { return "rate limited" }
func (e rateLimited) Unwrap() error             { return errRateLimited }
func (e rateLimited) RetryAfter() time.Duration { return e.after }

// TestRetryAfter: an error that knows its retry time sets Retry-After in
// whole seconds, at least 1 (R4.4).
func TestRetryAfter(t *testing.T) {
	a := &api{log: zap.NewNop()}
	for _, tt := range []struct {
		after time.Duration
		want  string
	}{{0, "1"}, {time.Millisecond, "1"}, {time.Second, "1"}, {1001 * time.Millisecond, "2"}, {59 * time.Second, "59"}} {
		w := httptest.NewRecorder()
		a.writeError(w, httptest.NewRequest("POST", "/", nil), routeMailbox, rateLimited{tt.after})
		if w.Code != 429 || w.Header().Get("Retry-After") != tt.want {
			t.Errorf("after %v: %d Retry-After %q; want 429 %q", tt.after, w.Code, w.Header().Get("Retry-After"), tt.want)
		}
	}
}
