package httpapi

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// Slow and stuck clients, over raw TCP, against the real server with its
// timeouts shortened through ServerOptions and Options. Each test checks
// that the server, not the client, ends the connection, within the
// timeout plus a margin, and that the slot it held is given back.

const (
	shortTimeout = 300 * time.Millisecond
	// margin absorbs scheduling under -race on a loaded machine; every
	// bound below is still far shorter than the client would go on for.
	margin = 3 * time.Second
)

func (s *testServer) dial() net.Conn {
	s.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.t.Fatal(err)
	}
	s.t.Cleanup(func() { c.Close() })
	return c
}

// dribble writes p one byte per interval until the server hangs up or the
// test ends; it returns at once.
func dribble(t *testing.T, c net.Conn, p string, interval time.Duration) {
	go func() {
		tick := time.NewTicker(interval)
		defer tick.Stop()
		for i := 0; ; i = (i + 1) % len(p) {
			if _, err := c.Write([]byte{p[i]}); err != nil {
				return
			}
			select {
			case <-tick.C:
			case <-t.Context().Done():
				return
			}
		}
	}()
}

// readUntilClosed reads what the server sends until it closes the
// connection, and how long that took from start.
func readUntilClosed(t *testing.T, c net.Conn, start time.Time) (string, time.Duration) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(shortTimeout + 2*margin))
	b, err := io.ReadAll(c)
	if err != nil {
		// A reset also ends the connection; only the client's own
		// deadline means the server held it.
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatalf("the server still held the connection after %v (read %q)", time.Since(start), b)
		}
	}
	return string(b), time.Since(start)
}

func wantCutOff(t *testing.T, took time.Duration) {
	t.Helper()
	if took < shortTimeout-50*time.Millisecond || took > shortTimeout+margin {
		t.Errorf("connection closed after %v; want about %v", took, shortTimeout)
	}
}

// TestSlowHeadersCutOff: headers dribbled a byte at a time are cut off
// ReadHeaderTimeout after the request began, whatever the pace.
func TestSlowHeadersCutOff(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.server.ReadHeaderTimeout = shortTimeout })
	c := s.dial()
	start := time.Now()
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n")
	dribble(t, c, "X-Slow: aaaaaaaaaaaaaaaa\r\n", 20*time.Millisecond)
	got, took := readUntilClosed(t, c, start)
	wantCutOff(t, took)
	if got != "" {
		t.Errorf("server answered %q; want the connection closed without an answer", got)
	}
	polltest.Until(t, "the connection's slot is free", func() bool { return s.conns.Open() == 0 })
}

// TestUnfinishedBodyCutOff: a request whose body never ends is answered
// and its connection closed BodyReadTimeout after its handler began to
// read the body, or after the handler finished without reading it —
// whether the body has a length or is chunked, is sent in part or
// dribbled — and nothing is queued.
func TestUnfinishedBodyCutOff(t *testing.T) {
	id := rid("slow")
	tests := []struct {
		name    string
		request string
		dribble string // then sent a byte at a time; "" sends nothing more
		status  int
		code    string
	}{
		{"POST, length, stalled", "POST " + mailboxPath(id) + " HTTP/1.1\r\nContent-Length: 100\r\n\r\nten bytes.", "", 400, "bad_request"},
		{"POST, length, dribbled", "POST " + mailboxPath(id) + " HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", "x", 400, "bad_request"},
		{"POST, chunked, stalled", "POST " + mailboxPath(id) + " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", "", 400, "bad_request"},
		{"POST, chunked, dribbled", "POST " + mailboxPath(id) + " HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nfffff\r\n", "x", 400, "bad_request"},
		// Refused before the body is read: net/http's own drain of the
		// body is what must be bounded.
		{"POST, too large by length, dribbled", "POST " + mailboxPath(id) + " HTTP/1.1\r\nContent-Length: 100000\r\n\r\n", "x", 413, "message_too_large"},
		{"POST, bad id, dribbled", "POST /v1/mailbox/nothex HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", "x", 400, "bad_recipient_id"},
		{"POST to /health, dribbled", "POST /health HTTP/1.1\r\nContent-Length: 1000\r\n\r\n", "x", 405, "method_not_allowed"},
		{"GET with a body, stalled", "GET " + mailboxPath(id) + "?wait_ms=0 HTTP/1.1\r\nContent-Length: 1000\r\n\r\nx", "", 400, "unexpected_body"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, func(c *config) { c.api.BodyReadTimeout = shortTimeout })
			c := s.dial()
			start := time.Now()
			head, rest, _ := strings.Cut(tt.request, "\r\n")
			io.WriteString(c, head+"\r\nHost: x\r\n"+rest)
			if tt.dribble != "" {
				dribble(t, c, tt.dribble, 20*time.Millisecond)
			}
			got, took := readUntilClosed(t, c, start)
			wantCutOff(t, took)
			resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(got)), nil)
			if err != nil {
				t.Fatalf("answer %q: %v", got, err)
			}
			body, _ := io.ReadAll(resp.Body)
			wantError(t, result{status: resp.StatusCode, header: resp.Header, body: body}, tt.status, tt.code)
			polltest.Until(t, "the connection's slot is free", func() bool { return s.conns.Open() == 0 })
			wantNoContent(t, s.get(id, "?wait_ms=0"))
		})
	}
}

// TestIdleConnectionClosed: a kept-alive connection with no next request
// is closed after IdleTimeout.
func TestIdleConnectionClosed(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.server.IdleTimeout = shortTimeout })
	c := s.dial()
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	start := time.Now()
	c.SetReadDeadline(time.Now().Add(shortTimeout + 2*margin))
	if n, err := br.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("idle connection: read %d, %v; want EOF", n, err)
	}
	wantCutOff(t, time.Since(start))
}

// TestHeadersTooLarge: a header block over MaxHeaderBytes is refused.
func TestHeadersTooLarge(t *testing.T) {
	s := newTestServer(t)
	c := s.dial()
	fmt.Fprintf(c, "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: %s\r\n\r\n", strings.Repeat("a", maxHeaderBytes+8<<10))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("status %d; want 431", resp.StatusCode)
	}
}

// TestLongPollOutlivesReadTimeouts: the read deadlines that cut slow
// clients never touch a waiting long-poll. A GET parks on a connection
// that has just carried a POST (whose body deadline was lifted), waits
// while a slow-header client alongside is cut off and past the body
// timeout, and still gets its message; WriteTimeout lets it answer at
// long_poll_max_ms.
func TestLongPollOutlivesReadTimeouts(t *testing.T) {
	s := newTestServer(t, func(c *config) {
		c.server.ReadHeaderTimeout = shortTimeout
		c.api.BodyReadTimeout = shortTimeout
		c.api.LongPollMax = 10 * shortTimeout
		// Slack enough for a loaded machine to write the last answer.
		c.server.WriteSlack = margin
	})
	id := rid("patient")
	c := s.dial()
	br := bufio.NewReader(c)
	roundTrip := func(req string) int {
		t.Helper()
		io.WriteString(c, req)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		return resp.StatusCode
	}
	post := func(body string) string {
		return fmt.Sprintf("POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", mailboxPath(rid("other")), len(body), body)
	}
	if code := roundTrip(post("warm-up")); code != http.StatusAccepted {
		t.Fatalf("POST: %d", code)
	}

	type answer struct {
		status int
		body   string
	}
	got := make(chan answer, 1)
	go func() {
		io.WriteString(c, fmt.Sprintf("GET %s?wait_ms=999999 HTTP/1.1\r\nHost: x\r\n\r\n", mailboxPath(id)))
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			got <- answer{body: err.Error()}
			return
		}
		b, _ := io.ReadAll(resp.Body)
		got <- answer{resp.StatusCode, string(b)}
	}()
	s.waitParked(1)

	// The slow client starts after the POST: once it is cut off, the
	// POST's body timeout has passed too.
	slow := s.dial()
	start := time.Now()
	dribble(t, slow, "GET /health HTTP/1.1\r\n", 20*time.Millisecond)
	_, took := readUntilClosed(t, slow, start)
	wantCutOff(t, took)

	wantAccepted(t, s.post(id, "worth the wait"), seq0, 0)
	select {
	case a := <-got:
		if a.status != http.StatusOK || a.body != "worth the wait" {
			t.Fatalf("long-poll: %d %q; want 200 with the message", a.status, a.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the long-poll got no answer")
	}

	// A GET that waits the longest allowed is answered 204, not cut off
	// by WriteTimeout (long_poll_max_ms plus the write slack).
	start = time.Now()
	if code := roundTrip(fmt.Sprintf("GET %s?wait_ms=999999 HTTP/1.1\r\nHost: x\r\n\r\n", mailboxPath(id))); code != http.StatusNoContent {
		t.Fatalf("longest long-poll: %d; want 204", code)
	}
	if took := time.Since(start); took < 10*shortTimeout {
		t.Fatalf("longest long-poll answered after %v; want %v", took, 10*shortTimeout)
	}
}

// TestUnroutedBodyCutOff: requests that never reach an endpoint — an
// unclean path that ServeMux redirects, OPTIONS * — leave their body to
// net/http's discard too; ReadTimeout bounds it.
func TestUnroutedBodyCutOff(t *testing.T) {
	for _, line := range []string{
		"POST /v1//mailbox/../x HTTP/1.1",
		"OPTIONS * HTTP/1.1",
	} {
		t.Run(line, func(t *testing.T) {
			s := newTestServer(t, func(c *config) {
				c.server.ReadHeaderTimeout = shortTimeout / 3
				c.api.LongPollMax = shortTimeout / 3
				c.server.WriteSlack = shortTimeout / 3
			})
			c := s.dial()
			start := time.Now()
			io.WriteString(c, line+"\r\nHost: x\r\nContent-Length: 1000\r\n\r\nab")
			_, took := readUntilClosed(t, c, start)
			wantCutOff(t, took)
			polltest.Until(t, "the connection's slot is free", func() bool { return s.conns.Open() == 0 })
		})
	}
}
