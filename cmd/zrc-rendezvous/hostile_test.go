package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
)

// The hostile-input suite: raw bytes that no well-behaved client sends,
// against the real process. Every case checks the exact status line and
// body the server writes — JSON {"error":…} where the server answers,
// net/http's own plain text where the request never reaches a handler
// (a malformed request line or header block, HTTP/0.9, an unsupported
// version or transfer encoding) — and that a message accepted just before
// is delivered afterwards, once, and nothing else.

// hostileID is the mailbox the suite checks delivery on; otherID is where
// an oddly written but whole request queues.
const (
	hostileID = "aabbccddeeff00112233445566778899aabbccddeeff00112233445566778899"
	otherID   = "ffeeddccbbaa99887766554433221100ffeeddccbbaa99887766554433221100"
)

// rawAnswer is one response read off a raw connection.
type rawAnswer struct {
	statusLine  string
	contentType string
	body        string
}

// exchange writes request on a new connection, then ends the client's
// side as end says ("" leaves it open, "half" half-closes), and reads one
// response.
func exchange(t *testing.T, addr, request, end string) rawAnswer {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := io.WriteString(c, request); err != nil {
		t.Fatal(err)
	}
	if end == "half" {
		c.(*net.TCPConn).CloseWrite()
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	line, err := br.ReadString('\n')
	if err != nil {
		t.Fatalf("no answer (read %q): %v", line, err)
	}
	// The method tells ReadResponse whether a body follows (not after HEAD).
	method, _, _ := strings.Cut(request, " ")
	resp, err := http.ReadResponse(bufio.NewReader(io.MultiReader(strings.NewReader(line), br)), &http.Request{Method: method})
	if err != nil {
		t.Fatalf("answer after %q: %v", line, err)
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("answer body: %v", err)
	}
	return rawAnswer{strings.TrimRight(line, "\r\n"), resp.Header.Get("Content-Type"), string(b)}
}

// jsonError is the body the server writes for code.
func jsonError(t *testing.T, got string) string {
	t.Helper()
	var e struct{ Error, Message string }
	if err := json.Unmarshal([]byte(got), &e); err != nil || e.Message == "" {
		t.Fatalf("body %q is not an error object: %v", got, err)
	}
	return e.Error
}

// fetch GETs url with c and returns the status and the body.
func fetch(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b)
}

// wantDelivered checks that id holds exactly the message body.
func wantDelivered(t *testing.T, base, id, body string) {
	t.Helper()
	for _, want := range []struct {
		status int
		body   string
	}{{http.StatusOK, body}, {http.StatusNoContent, ""}} {
		if status, got := fetch(t, http.DefaultClient, base+"/v1/mailbox/"+id+"?wait_ms=0"); status != want.status || got != want.body {
			t.Fatalf("GET: %d %q; want %d %q", status, got, want.status, want.body)
		}
	}
}

func postMessage(t *testing.T, base, id, body string) {
	t.Helper()
	resp, err := http.Post(base+"/v1/mailbox/"+id, "", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusAccepted {
		t.Fatalf("POST: %d; want 202", resp.StatusCode)
	}
}

// chunkedBody is n chunks of size bytes each.
func chunkedBody(n, size int) string {
	var b strings.Builder
	for range n {
		fmt.Fprintf(&b, "%x\r\n%s\r\n", size, strings.Repeat("x", size))
	}
	return b.String()
}

// TestProcessHostileInput: malformed request lines, oversized headers, NUL
// and invalid UTF-8 in paths and queries, percent-encoded ids and "..",
// broken, truncated and oversized bodies, GETs with bodies — each answered
// with its exact status, none with a 2xx unless the request was whole, and
// none losing or delivering a queued message.
func TestProcessHostileInput(t *testing.T) {
	s := startServer(t, nil)
	addr := strings.TrimPrefix(s.url, "http://")
	mailbox := "/v1/mailbox/" + hostileID
	var encodedID strings.Builder
	for _, c := range []byte(otherID) {
		fmt.Fprintf(&encodedID, "%%%02x", c)
	}
	const (
		plain = "text/plain; charset=utf-8"
		json  = "application/json"
	)
	tests := []struct {
		name        string
		request     string
		end         string // "half": the client half-closes after the request
		statusLine  string
		contentType string
		body        string // net/http's plain text; for JSON, the error code
	}{
		// Never reach a handler: net/http's own answers, plain text.
		{"malformed request line", "GARBAGE\r\n\r\n", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"HTTP/0.9 request line", "GET " + mailbox + "\r\n\r\n", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"unsupported version", "GET /health HTTP/9.9\r\nHost: x\r\n\r\n", "",
			"HTTP/1.1 505 HTTP Version Not Supported: unsupported protocol version", plain, "505 HTTP Version Not Supported: unsupported protocol version"},
		{"oversized header", "GET /health HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 32<<10) + "\r\n\r\n", "",
			"HTTP/1.1 431 Request Header Fields Too Large", plain, "431 Request Header Fields Too Large"},
		{"NUL in the path", "GET /v1/mailbox/ab\x00cd HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"NUL in the query", "GET " + mailbox + "?wait_ms=0\x00 HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"two Content-Lengths", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nxx", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"negative Content-Length", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\nx", "", "HTTP/1.1 400 Bad Request", plain, "400 Bad Request"},
		{"unknown transfer encoding", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", "", "HTTP/1.1 501 Not Implemented", plain, "Unsupported transfer encoding"},

		// Reach the API: JSON errors.
		{"invalid UTF-8 in the path, GET", "GET /v1/mailbox/\xff\xfe HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_recipient_id"},
		{"invalid UTF-8 in the path, POST", "POST /v1/mailbox/\xff\xfe HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", "", "HTTP/1.1 400 Bad Request", json, "bad_recipient_id"},
		{"invalid UTF-8 in the query", "GET " + mailbox + "?wait_ms=\xff HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_wait_ms"},
		{"encoded NUL as the id", "GET /v1/mailbox/%00 HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_recipient_id"},
		{"encoded invalid UTF-8 in the query", "GET " + mailbox + "?wait_ms=%ff HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_wait_ms"},
		{"encoded .. as the id, GET", "GET /v1/mailbox/%2e%2e HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_recipient_id"},
		{"encoded .. as the id, POST", "POST /v1/mailbox/%2e%2e HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", "", "HTTP/1.1 400 Bad Request", json, "bad_recipient_id"},
		{"encoded slash as the id", "GET /v1/mailbox/%2f HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 404 Not Found", json, "not_found"},
		{"lower-case method", "post " + mailbox + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx", "", "HTTP/1.1 405 Method Not Allowed", json, "method_not_allowed"},
		{"HEAD (no body in the answer)", "HEAD " + mailbox + " HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 405 Method Not Allowed", json, ""},
		{"chunked, over the limit", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" + chunkedBody(2, 40000) + "0\r\n\r\n", "",
			"HTTP/1.1 413 Request Entity Too Large", json, "message_too_large"},
		{"Content-Length over the limit", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nContent-Length: 65537\r\n\r\n", "",
			"HTTP/1.1 413 Request Entity Too Large", json, "message_too_large"},
		{"chunked, bad size", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nx\r\n0\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_request"},
		{"chunked, size overflows", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nffffffffffffffffff\r\nx\r\n0\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_request"},
		{"chunked, negative size", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\nx\r\n0\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "bad_request"},
		{"chunked, half-closed inside a chunk", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel", "half", "HTTP/1.1 400 Bad Request", json, "bad_request"},
		{"shorter than Content-Length, half-closed", "POST " + mailbox + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes.", "half", "HTTP/1.1 400 Bad Request", json, "bad_request"},
		{"GET with a Content-Length body", "GET " + mailbox + "?wait_ms=60000 HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", "", "HTTP/1.1 400 Bad Request", json, "unexpected_body"},
		{"GET with a chunked body", "GET " + mailbox + "?wait_ms=60000 HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "", "HTTP/1.1 400 Bad Request", json, "unexpected_body"},

		// Whole requests, oddly written: they do what they say.
		{"undecodable wait_ms skipped for the next", "GET /v1/mailbox/" + otherID + "?wait_ms=%zz&wait_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n", "", "HTTP/1.1 204 No Content", "", ""},
		{"Content-Length and chunked: chunked wins", "POST /v1/mailbox/" + otherID + " HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n", "",
			"HTTP/1.1 202 Accepted", json, ""},
		{"percent-encoded hex id", "POST /v1/mailbox/" + encodedID.String() + " HTTP/1.1\r\nHost: x\r\nContent-Length: 7\r\n\r\nencoded", "", "HTTP/1.1 202 Accepted", json, ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			before := "before " + tt.name
			postMessage(t, s.url, hostileID, before)
			got := exchange(t, addr, tt.request, tt.end)
			if got.statusLine != tt.statusLine || got.contentType != tt.contentType {
				t.Fatalf("answer %q, %q, %q; want %q, %q", got.statusLine, got.contentType, got.body, tt.statusLine, tt.contentType)
			}
			switch {
			case tt.contentType == plain && got.body != tt.body:
				t.Errorf("body %q; want %q", got.body, tt.body)
			case tt.contentType == json && tt.body != "":
				if code := jsonError(t, got.body); code != tt.body {
					t.Errorf("error %q; want %q", code, tt.body)
				}
			}
			wantDelivered(t, s.url, hostileID, before)
		})
	}
	// What the oddly written POSTs queued, in order, once.
	for _, body := range []string{"hello", "encoded"} {
		if status, got := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+otherID+"?wait_ms=0"); status != http.StatusOK || got != body {
			t.Fatalf("GET the other mailbox: %d %q; want 200 %q", status, got, body)
		}
	}
}

// TestProcessBodyClosedEarly (Z10): a POST whose client closes after part
// of its body cannot read its answer; errors_total shows it was 400
// bad_request, not net/http's implicit 200, and nothing was queued.
func TestProcessBodyClosedEarly(t *testing.T) {
	s := startServer(t, nil)
	const series = `zrc_rendezvous_errors_total{code="bad_request"}`
	postMessage(t, s.url, hostileID, "before")
	for i, request := range []string{
		"POST /v1/mailbox/" + hostileID + " HTTP/1.1\r\nHost: x\r\nContent-Length: 100\r\n\r\nten bytes.",
		"POST /v1/mailbox/" + hostileID + " HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhel",
	} {
		c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(c, request)
		c.Close()
		polltest.Until(t, "the series counts the attempt", func() bool { return metricValue(t, metricsText(t, s), series) == float64(i+1) })
	}
	wantDelivered(t, s.url, hostileID, "before")
}

// TestProcessSlowReader: a client that pipelines GETs for large messages
// and never reads an answer stalls only its own connection; the server
// goes on answering everyone else, and their messages are all delivered.
// When the slow reader leaves, no message is lost or delivered twice.
func TestProcessSlowReader(t *testing.T) {
	s := startServer(t, nil)
	big := strings.Repeat("m", 64<<10)
	// max_queue_length's default in each of three mailboxes: 19 MiB of
	// answers, past what loopback's socket buffers hold (4 MiB for the
	// server's side with Linux's default tcp_wmem; the client's is small).
	const perMailbox, mailboxes = 100, 3
	var pipeline bytes.Buffer
	for m := range mailboxes {
		id := fmt.Sprintf("%064x", m+1)
		for range perMailbox {
			postMessage(t, s.url, id, big)
			fmt.Fprintf(&pipeline, "GET /v1/mailbox/%s?wait_ms=0 HTTP/1.1\r\nHost: x\r\n\r\n", id)
		}
	}
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.(*net.TCPConn).SetReadBuffer(4 << 10)
	go c.Write(pipeline.Bytes()) // never read
	polltest.Until(t, "a message is delivered", func() bool {
		return metricValue(t, metricsText(t, s), "zrc_rendezvous_messages_delivered_total") > 0
	})
	for i := range 20 {
		body := fmt.Sprintf("meanwhile %d", i)
		postMessage(t, s.url, hostileID, body)
		wantDelivered(t, s.url, hostileID, body)
	}
	if status, _ := fetch(t, http.DefaultClient, s.url+"/health"); status != http.StatusOK {
		t.Fatalf("/health: %d; want 200", status)
	}
	// The slow reader is still stuck: not all its answers went out.
	if n := metricValue(t, metricsText(t, s), "zrc_rendezvous_messages_delivered_total") - 20; n >= perMailbox*mailboxes {
		t.Errorf("all %v of the slow reader's answers were written; want its connection stuck", n)
	} else {
		t.Logf("the slow reader's connection was handed %v answers before it filled", n)
	}

	// Once the slow reader goes, the answer stuck in its write is put back:
	// what it was written and what the mailboxes still hold are every
	// message, each once.
	c.Close()
	requeued := func() float64 {
		return metricValue(t, metricsText(t, s), "zrc_rendezvous_messages_requeued_total")
	}
	// Handed out, less what came back, less the 20 meanwhile.
	delivered := func() float64 {
		return metricValue(t, metricsText(t, s), "zrc_rendezvous_messages_delivered_total") - requeued() - 20
	}
	polltest.Until(t, "every mailbox is emptied", func() bool {
		for m := range mailboxes {
			for {
				status, body := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+fmt.Sprintf("%064x", m+1)+"?wait_ms=0")
				if status == http.StatusNoContent {
					break
				}
				if status != http.StatusOK || body != big {
					t.Fatalf("GET after the slow reader left: %d, %d bytes", status, len(body))
				}
			}
		}
		return delivered() >= perMailbox*mailboxes
	})
	if n := delivered(); n != perMailbox*mailboxes {
		t.Errorf("%v messages delivered; want each of the %d once", n, perMailbox*mailboxes)
	}
	if r := requeued(); r < 1 {
		t.Errorf("%v messages requeued; want the one whose answer was stuck", r)
	}
}

// TestProcessGetWithBodyHTTP2 (Z10): over HTTP/2, a GET with a body —
// with a length or without one — is refused 400 unexpected_body at once,
// and the queued message stays for the next GET.
func TestProcessGetWithBodyHTTP2(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	s := startServer(t, nil, "--tls-cert-path", p.CertPath, "--tls-key-path", p.KeyPath)
	base := "https://" + strings.TrimPrefix(s.url, "http://")
	client := httpsClient(p)
	post, err := client.Post(base+"/v1/mailbox/"+hostileID, "", strings.NewReader("before"))
	if err != nil {
		t.Fatal(err)
	}
	post.Body.Close()
	for _, length := range []int64{5, -1} {
		req, err := http.NewRequest(http.MethodGet, base+"/v1/mailbox/"+hostileID+"?wait_ms=60000", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		req.ContentLength = length
		if length < 0 {
			req.Body = io.NopCloser(io.MultiReader(strings.NewReader("hello")))
		}
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.Proto != "HTTP/2.0" || resp.StatusCode != http.StatusBadRequest || jsonError(t, string(b)) != "unexpected_body" {
			t.Fatalf("length %d: %s %d %s; want HTTP/2.0 400 unexpected_body", length, resp.Proto, resp.StatusCode, b)
		}
	}
	if status, got := fetch(t, client, base+"/v1/mailbox/"+hostileID+"?wait_ms=0"); status != http.StatusOK || got != "before" {
		t.Fatalf("GET: %d %q; want 200 before", status, got)
	}
}
