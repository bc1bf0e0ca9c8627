package httpapi

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"testing/iotest"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// rawAnswer is what the server wrote on a raw connection: its status line
// and the response parsed from the same bytes.
type rawAnswer struct {
	statusLine string
	result
}

// readRaw reads what the server sends on c until it closes the connection
// or, with keepAlive, until one whole response is in; "" when the server
// wrote nothing at all.
func readRaw(t *testing.T, c net.Conn) rawAnswer {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if line == "" {
		if ne, ok := err.(net.Error); ok && ne.Timeout() {
			t.Fatal("the server neither answered nor closed the connection")
		}
		return rawAnswer{}
	}
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), nil)
	if err != nil {
		t.Fatalf("answer after %q: %v", line, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	return rawAnswer{statusLine: strings.TrimRight(line, "\r\n"),
		result: result{status: resp.StatusCode, header: resp.Header, body: b, closed: resp.Close}}
}

// halfClose ends the client's side of c: the server reads EOF, and the
// client can still read the answer.
func halfClose(t *testing.T, c net.Conn) {
	t.Helper()
	if err := c.(*net.TCPConn).CloseWrite(); err != nil {
		t.Fatal(err)
	}
}

// errorsTotal is the errors_total counter of code, scraped.
func (s *testServer) errorsTotal(code string) float64 {
	return s.scrape()[`zrc_rendezvous_errors_total{code="`+code+`"}`]
}

// TestBodyEndsEarly (Z10): a POST whose body ends early — the client
// closes or half-closes before Content-Length bytes or before the last
// chunk, a chunk size is malformed, the chunks run past max_message_size
// — is answered with its error, never net/http's implicit 200, and queues
// nothing; what was queued before is still delivered. A client that
// half-closed still reads the answer; one that closed cannot, so the
// errors_total counter shows what it was sent. (A body that stops
// arriving until the read deadline is TestUnfinishedBodyCutOff's.)
func TestBodyEndsEarly(t *testing.T) {
	id := rid("truncated")
	post := "POST " + mailboxPath(id) + " HTTP/1.1\r\nHost: x\r\n"
	tests := []struct {
		name    string
		request string
		end     func(*testing.T, net.Conn) // nil: the connection stays open
		status  string                     // the status line a client reads; "": it reads nothing (closed)
		code    string
	}{
		{"length, half-closed after 10 of 100 bytes", post + "Content-Length: 100\r\n\r\nten bytes.", halfClose, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"length, closed after 10 of 100 bytes", post + "Content-Length: 100\r\n\r\nten bytes.", closeConn, "", "bad_request"},
		{"length, half-closed before the body", post + "Content-Length: 100\r\n\r\n", halfClose, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"chunked, bad chunk size", post + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", nil, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"chunked, chunk longer than its size", post + "Transfer-Encoding: chunked\r\n\r\n2\r\nhello\r\n0\r\n\r\n", nil, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"chunked, half-closed inside a chunk", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", halfClose, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"chunked, half-closed before the last chunk", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n", halfClose, "HTTP/1.1 400 Bad Request", "bad_request"},
		{"chunked, closed inside a chunk", post + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", closeConn, "", "bad_request"},
		{"chunked, over the limit", post + "Transfer-Encoding: chunked\r\n\r\n" + chunks(2, 600) + "0\r\n\r\n", nil, "HTTP/1.1 413 Request Entity Too Large", "message_too_large"},
		{"chunked, over the limit, never ended", post + "Transfer-Encoding: chunked\r\n\r\n" + chunks(2, 600), nil, "HTTP/1.1 413 Request Entity Too Large", "message_too_large"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			// net/http discards what it can of a body refused unread before
			// it closes the connection; the body deadline bounds that.
			s := newTestServer(t, func(c *config) { c.api.BodyReadTimeout = shortTimeout })
			wantAccepted(t, s.post(id, "before"), seq0, 1)
			c := s.dial()
			io.WriteString(c, tt.request)
			if tt.end != nil {
				tt.end(t, c)
			}
			if tt.status != "" {
				got := readRaw(t, c)
				if got.statusLine != tt.status {
					t.Fatalf("status line %q (body %q); want %q", got.statusLine, got.body, tt.status)
				}
				wantError(t, got.result, got.status, tt.code)
			}
			polltest.Until(t, "errors_total{code=\""+tt.code+"\"} is 1", func() bool { return s.errorsTotal(tt.code) == 1 })
			// The server ends the connection: what is left of the body is
			// unreadable. (Only c stays counted once the client's own
			// keep-alive connections are closed.)
			s.client.CloseIdleConnections()
			polltest.Until(t, "the connection's slot is free", func() bool { return s.conns.Open() == 0 })
			wantMessage(t, s.get(id, "?wait_ms=0"), "before", seq0, 0)
			wantNoContent(t, s.get(id, "?wait_ms=0"))
		})
	}
}

func closeConn(t *testing.T, c net.Conn) { c.Close() }

// chunks is n chunks of size bytes each, chunked-encoded.
func chunks(n, size int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", size, repeat(size))
	}
	return b.String()
}

// TestHalfClosedLongPoll (Z10): a GET whose client half-closes while it
// waits is cancelled like a client that left, and is answered with an
// error, never net/http's implicit 200; a message posted afterwards stays
// queued for the next GET.
func TestHalfClosedLongPoll(t *testing.T) {
	s := newTestServer(t)
	id := rid("half-closed")
	c := s.dial()
	io.WriteString(c, "GET "+mailboxPath(id)+"?wait_ms=10000 HTTP/1.1\r\nHost: x\r\n\r\n")
	s.waitParked(1)
	halfClose(t, c)
	got := readRaw(t, c)
	if got.statusLine != "HTTP/1.1 400 Bad Request" {
		t.Fatalf("status line %q (body %q); want HTTP/1.1 400 Bad Request", got.statusLine, got.body)
	}
	wantError(t, got.result, http.StatusBadRequest, "bad_request")
	s.waitParked(0)
	wantAccepted(t, s.post(id, "after"), seq0, 1)
	wantMessage(t, s.get(id, "?wait_ms=0"), "after", seq0, 0)
}

// TestGetWithBody (Z10): a GET that carries a body — a length or chunked,
// over HTTP/1.1 or HTTP/2 — is answered 400 unexpected_body at once: it
// neither waits nor takes the queued message, which the next GET gets. A
// GET with Content-Length: 0 is an ordinary GET.
func TestGetWithBody(t *testing.T) {
	id := rid("get-with-body")
	get := "GET " + mailboxPath(id) + "?wait_ms=60000 HTTP/1.1\r\nHost: x\r\n"
	for _, queued := range []bool{false, true} {
		for _, tt := range []struct {
			name    string
			request string
		}{
			{"length", get + "Content-Length: 5\r\n\r\nhello"},
			{"chunked", get + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"},
			{"chunked, empty", get + "Transfer-Encoding: chunked\r\n\r\n0\r\n\r\n"},
		} {
			t.Run(fmt.Sprintf("HTTP/1.1, %s, queued %v", tt.name, queued), func(t *testing.T) {
				s := newTestServer(t)
				if queued {
					wantAccepted(t, s.post(id, "before"), seq0, 1)
				}
				c := s.dial()
				io.WriteString(c, tt.request)
				got := readRaw(t, c)
				if got.statusLine != "HTTP/1.1 400 Bad Request" {
					t.Fatalf("status line %q (body %q); want HTTP/1.1 400 Bad Request", got.statusLine, got.body)
				}
				wantError(t, got.result, http.StatusBadRequest, "unexpected_body")
				if w := s.sup.Snapshot().Waiting; w != 0 {
					t.Errorf("%d GETs wait; want none", w)
				}
				if queued {
					wantMessage(t, s.get(id, "?wait_ms=0"), "before", seq0, 0)
				}
				wantNoContent(t, s.get(id, "?wait_ms=0"))
			})
		}
	}
	t.Run("HTTP/1.1, Content-Length: 0", func(t *testing.T) {
		s := newTestServer(t)
		wantAccepted(t, s.post(id, "before"), seq0, 1)
		c := s.dial()
		io.WriteString(c, get+"Content-Length: 0\r\n\r\n")
		got := readRaw(t, c)
		wantMessage(t, got.result, "before", seq0, 0)
	})
	for _, chunked := range []bool{false, true} {
		t.Run(fmt.Sprintf("HTTP/2, chunked %v", chunked), func(t *testing.T) {
			s := newTestServer(t, func(c *config) { c.http2 = true })
			wantAccepted(t, s.post(id, "before"), seq0, 1)
			r := s.do(req{method: http.MethodGet, path: mailboxPath(id) + "?wait_ms=60000", body: []byte("hello"), chunked: chunked})
			if r.proto != "HTTP/2.0" {
				t.Fatalf("spoke %s; want HTTP/2.0", r.proto)
			}
			wantError(t, r, http.StatusBadRequest, "unexpected_body")
			wantMessage(t, s.get(id, "?wait_ms=0"), "before", seq0, 0)
		})
	}
}

// TestGetWithBodyTakesAToken (R4, Z10): a GET refused for its body takes
// its rate-limit token like any other mailbox request.
func TestGetWithBodyTakesAToken(t *testing.T) {
	o := guardOptions()
	o.GetsPerWindow = 2
	s := newGuardedServer(t, o, nil)
	id := rid("limited")
	r := s.do(req{method: http.MethodGet, path: mailboxPath(id), body: []byte("hello")})
	wantError(t, r, http.StatusBadRequest, "unexpected_body")
	wantQuota(t, r, "2", "1", "30")
	wantNoContent(t, s.get(id, "?wait_ms=0"))
	wantLimited(t, s.get(id, "?wait_ms=0"), "30", "get", 2, 60)
}

// countingReader counts the bytes read from it.
type countingReader struct {
	r io.Reader
	n int64
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	return n, err
}

// TestReadGrowing (R1.4, Z10): bodies of every size, arriving a byte at a
// time or at once, come back whole at their exact size; a body with a
// length that ends early is an error; one without a length is never read
// past limit+1 bytes.
func TestReadGrowing(t *testing.T) {
	const limit = 10000
	for _, tt := range []struct {
		name    string
		n       int64 // the declared length; -1: none
		sent    int
		want    int // the body's length; -1: the error below
		wantErr error
	}{
		{"length 1", 1, 1, 1, nil},
		{"length at the first buffer", firstBodyBuffer, firstBodyBuffer, firstBodyBuffer, nil},
		{"length past the first buffer", firstBodyBuffer + 1, firstBodyBuffer + 1, firstBodyBuffer + 1, nil},
		{"length at the limit", limit, limit, limit, nil},
		{"length, cut short", 100, 10, -1, errBadBody},
		{"length, nothing sent", 100, 0, -1, errBadBody},
		{"no length, small", -1, 7, 7, nil},
		{"no length, at the limit", -1, limit, limit, nil},
		{"no length, past the limit", -1, 3 * limit, -1, errMessageTooLarge},
		{"no length, empty", -1, 0, -1, errEmptyMessage},
	} {
		for _, oneByte := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s, one byte a read %v", tt.name, oneByte), func(t *testing.T) {
				sent := []byte(repeat(tt.sent))
				for i := range sent {
					sent[i] = byte(i)
				}
				var src io.Reader = strings.NewReader(string(sent))
				if oneByte {
					src = iotest.OneByteReader(src)
				}
				cr := &countingReader{r: src}
				got, err := readGrowing(cr, tt.n, limit)
				if tt.want < 0 {
					if !errors.Is(err, tt.wantErr) {
						t.Fatalf("err = %v; want %v", err, tt.wantErr)
					}
				} else {
					if err != nil {
						t.Fatal(err)
					}
					if !bytes.Equal(got, sent[:tt.want]) || cap(got) < len(got) {
						t.Fatalf("got %d bytes (cap %d); want the %d sent", len(got), cap(got), tt.want)
					}
					if tt.n > 0 && cap(got) != int(tt.n) {
						t.Errorf("cap %d; want exactly %d", cap(got), tt.n)
					}
				}
				if cr.n > limit+1 {
					t.Errorf("read %d bytes; want at most limit+1 = %d", cr.n, limit+1)
				}
			})
		}
	}
}

// TestReadGrowingSmallBodyOneAllocation: a small body with a length that
// arrives in one read costs one allocation, its own.
func TestReadGrowingSmallBodyOneAllocation(t *testing.T) {
	body := strings.NewReader(repeat(100))
	allocs := testing.AllocsPerRun(100, func() {
		body.Seek(0, io.SeekStart)
		if _, err := readGrowing(body, 100, 1000); err != nil {
			t.Fatal(err)
		}
	})
	if allocs != 1 {
		t.Errorf("%v allocations; want 1", allocs)
	}
}

// TestH2WindowsOnTheWire (Z10, R1.4): the server announces the receive
// windows NewServer sets — SETTINGS_INITIAL_WINDOW_SIZE for each stream,
// a WINDOW_UPDATE on the connection for the rest of its window — read as
// raw HTTP/2 frames.
func TestH2WindowsOnTheWire(t *testing.T) {
	const maxMessageSize = 64 << 10 // max_message_size's default
	s := newTestServer(t, func(c *config) {
		c.http2 = true
		c.api.MaxMessageSize = maxMessageSize
	})
	conf := s.client.Transport.(*http.Transport).TLSClientConfig.Clone()
	conf.NextProtos = []string{"h2"}
	c, err := tls.Dial("tcp", strings.TrimPrefix(s.url, "https://"), conf)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	// The client preface and an empty SETTINGS frame.
	io.WriteString(c, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n\x00\x00\x00\x04\x00\x00\x00\x00\x00")
	wantStream, wantConn := 65537, 4*65537
	stream, conn := -1, -1
	br := bufio.NewReader(c)
	for stream < 0 || conn < 0 {
		var head [9]byte
		if _, err := io.ReadFull(br, head[:]); err != nil {
			t.Fatalf("reading frames: %v (stream window %d, connection window %d so far)", err, stream, conn)
		}
		payload := make([]byte, int(head[0])<<16|int(head[1])<<8|int(head[2]))
		if _, err := io.ReadFull(br, payload); err != nil {
			t.Fatal(err)
		}
		typ, ack := head[3], head[4]&1 != 0
		switch {
		case typ == 0x4 && !ack: // SETTINGS
			for p := payload; len(p) >= 6; p = p[6:] {
				if id := int(p[0])<<8 | int(p[1]); id == 0x4 { // SETTINGS_INITIAL_WINDOW_SIZE
					stream = int(p[2])<<24 | int(p[3])<<16 | int(p[4])<<8 | int(p[5])
				}
			}
		case typ == 0x8 && head[5]|head[6]|head[7]|head[8] == 0: // WINDOW_UPDATE on the connection
			conn = 65535 + (int(payload[0]&0x7f)<<24 | int(payload[1])<<16 | int(payload[2])<<8 | int(payload[3]))
		}
	}
	if stream != wantStream || conn != wantConn {
		t.Errorf("announced windows: %d a stream, %d the connection; want %d, %d", stream, conn, wantStream, wantConn)
	}
}
