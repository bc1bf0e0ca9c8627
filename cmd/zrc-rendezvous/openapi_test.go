package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ed25519"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/getkin/kin-openapi/openapi3"
	"github.com/getkin/kin-openapi/openapi3filter"
	"github.com/getkin/kin-openapi/routers"
	"github.com/getkin/kin-openapi/routers/gorillamux"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// The API description, docs/openapi.yaml, is held to the real server: the
// binary, over real sockets, in every auth mode. Every request is checked
// against the document (it matches, or it was meant not to and the server
// refused it), every answer is validated against it (status, headers,
// body), and in the end every status the document lists for an operation,
// and every error code it lists, must have been answered at least once.
// So the document can neither miss what the server does nor list what it
// does not.

// unproduced are the document's entries no request can bring about: an
// internal_error answers only a bug (an error no other answer fits).
var unproduced = map[string]string{
	"POST /v1/mailbox/{recipient_id} 500": "internal_error answers only a bug",
	"GET /v1/mailbox/{recipient_id} 500":  "internal_error answers only a bug",
	"code internal_error":                 "internal_error answers only a bug",
}

// checkedHeader reports whether a response header must be documented for
// the status that carries it.
func checkedHeader(name string) bool {
	name = http.CanonicalHeaderKey(name)
	return strings.HasPrefix(name, "X-") || strings.HasPrefix(name, "Ratelimit-") ||
		slices.Contains([]string{"Retry-After", "Www-Authenticate", "Allow", "Cache-Control", "Connection"}, name)
}

// docServer is where the document's requests are addressed (its servers
// entry); the test sends them to the server under test instead.
const docServer = "http://localhost:8080"

// apiDoc is the loaded document and what the exchanges with the server
// produced so far.
type apiDoc struct {
	t      *testing.T
	doc    *openapi3.T
	router routers.Router
	codes  []string // the ErrorCode enum

	mu        sync.Mutex
	seen      map[string]int // "METHOD /path status" → answers
	seenCodes map[string]int
}

func loadAPIDoc(t *testing.T) *apiDoc {
	t.Helper()
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromFile(filepath.Join("..", "..", "docs", "openapi.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(loader.Context); err != nil {
		t.Fatalf("docs/openapi.yaml: %v", err)
	}
	router, err := gorillamux.NewRouter(doc)
	if err != nil {
		t.Fatal(err)
	}
	a := &apiDoc{t: t, doc: doc, router: router, seen: map[string]int{}, seenCodes: map[string]int{}}
	for _, v := range doc.Components.Schemas["ErrorCode"].Value.Enum {
		a.codes = append(a.codes, v.(string))
	}
	// The enum is the catalogue's codes, exactly (each once, in any order).
	var catalogue []string
	for c := range apierr.NumCodes {
		if e := c.Entry().Error; !slices.Contains(catalogue, e) {
			catalogue = append(catalogue, e)
		}
	}
	enum := slices.Clone(a.codes)
	slices.Sort(catalogue)
	slices.Sort(enum)
	if !slices.Equal(enum, catalogue) {
		t.Errorf("ErrorCode enum %v; want the catalogue's codes %v", enum, catalogue)
	}
	return a
}

// documented lists every (operation, status) pair of the document.
func (a *apiDoc) documented() []string {
	var out []string
	for path, item := range a.doc.Paths.Map() {
		for method, op := range item.Operations() {
			for status := range op.Responses.Map() {
				out = append(out, method+" "+path+" "+status)
			}
		}
	}
	slices.Sort(out)
	return out
}

// want says how the request is expected to fare against the document.
type want uint8

const (
	valid     want = iota // the document allows the request
	invalid               // the document forbids it (the server refuses it too)
	unchecked             // the document cannot say (a body cut short is not in a request's form)
)

// call is one request and the answer expected.
type call struct {
	method string
	path   string // with the query
	header http.Header
	body   []byte
	req    want
	status int
	code   string // the error code expected; "" for a success
}

// check holds one exchange to the document: the request (as the document
// sees it: addressed to docServer, its body whole) and the answer.
func (a *apiDoc) check(c call, resp *http.Response, body []byte) {
	t := a.t
	t.Helper()
	what := fmt.Sprintf("%s %s → %d", c.method, c.path, resp.StatusCode)
	vreq, err := http.NewRequest(c.method, docServer+c.path, bytes.NewReader(c.body))
	if err != nil {
		t.Fatal(err)
	}
	if c.body == nil {
		vreq.Body, vreq.ContentLength = http.NoBody, 0
	}
	for k, v := range c.header {
		vreq.Header[k] = v
	}
	route, params, err := a.router.FindRoute(vreq)
	if err != nil {
		t.Errorf("%s: the request has no operation in the document: %v", what, err)
		return
	}
	in := &openapi3filter.RequestValidationInput{
		Request: vreq, PathParams: params, Route: route,
		Options: &openapi3filter.Options{
			AuthenticationFunc:                openapi3filter.NoopAuthenticationFunc,
			RejectWhenRequestBodyNotSpecified: true,
			MultiError:                        true,
		},
	}
	err = openapi3filter.ValidateRequest(context.Background(), in)
	switch {
	case c.req == valid && err != nil:
		t.Errorf("%s: the document refuses a request the server serves: %v", what, err)
	case c.req == invalid && err == nil:
		t.Errorf("%s: the document allows a request the server refuses", what)
	}
	if resp.StatusCode != c.status {
		t.Errorf("%s: want status %d (body %q)", what, c.status, body)
	}

	op := c.method + " " + route.Path
	status := fmt.Sprint(resp.StatusCode)
	ref := route.Operation.Responses.Value(status)
	if ref == nil || ref.Value == nil {
		t.Errorf("%s: status not documented for %s (a)", what, op)
		return
	}
	doc := ref.Value
	for name := range resp.Header {
		if !checkedHeader(name) {
			continue
		}
		if documentedHeader(doc, name) == nil {
			t.Errorf("%s: header %s (%q) not documented for %s %s (b)", what, name, resp.Header[name], op, status)
		}
	}
	// kin-openapi checks required headers but not for HEAD: so here, for all.
	for name, h := range doc.Headers {
		if h.Value != nil && h.Value.Required && resp.Header.Get(name) == "" {
			t.Errorf("%s: required header %s missing", what, name)
		}
	}
	rin := &openapi3filter.ResponseValidationInput{
		RequestValidationInput: in, Status: resp.StatusCode, Header: resp.Header,
		Body:    io.NopCloser(bytes.NewReader(body)),
		Options: &openapi3filter.Options{IncludeResponseStatus: true, MultiError: true},
	}
	if err := openapi3filter.ValidateResponse(context.Background(), rin); err != nil {
		t.Errorf("%s: answer does not match the document: %v\nheaders %v\nbody %q", what, err, resp.Header, body)
	}
	var code string
	if strings.HasPrefix(resp.Header.Get("Content-Type"), "application/json") && c.method != http.MethodHead {
		var e struct {
			Error *string `json:"error"`
		}
		if json.Unmarshal(body, &e) == nil && e.Error != nil {
			code = *e.Error
			if !slices.Contains(a.codes, code) {
				t.Errorf("%s: error code %q not in the ErrorCode enum (c)", what, code)
			}
		}
	}
	if code != c.code && c.method != http.MethodHead {
		t.Errorf("%s: error code %q; want %q (body %q)", what, code, c.code, body)
	}
	a.mu.Lock()
	a.seen[op+" "+status]++
	if code != "" {
		a.seenCodes[code]++
	}
	a.mu.Unlock()
}

// documentedHeader finds name among a response's headers, in any case.
func documentedHeader(r *openapi3.Response, name string) *openapi3.HeaderRef {
	for k, h := range r.Headers {
		if strings.EqualFold(k, name) {
			return h
		}
	}
	return nil
}

// coverage fails for every (operation, status) and every error code of the
// document that no answer produced (d).
func (a *apiDoc) coverage() {
	t := a.t
	t.Helper()
	a.mu.Lock()
	defer a.mu.Unlock()
	for _, k := range a.documented() {
		if a.seen[k] == 0 && unproduced[k] == "" {
			t.Errorf("documented but never answered: %s (d)", k)
		}
	}
	for _, c := range a.codes {
		if a.seenCodes[c] == 0 && unproduced["code "+c] == "" {
			t.Errorf("error code %s documented but never answered (d)", c)
		}
	}
	for k := range unproduced {
		if code, ok := strings.CutPrefix(k, "code "); ok {
			if !slices.Contains(a.codes, code) {
				t.Errorf("unproduced lists code %s, which the document does not", code)
			}
		} else if !slices.Contains(a.documented(), k) {
			t.Errorf("unproduced lists %s, which the document does not", k)
		}
	}
}

// apiServer is one server process and a client for it.
type apiServer struct {
	*server
	a      *apiDoc
	client *http.Client
	// sources hands out a distinct source address per request (through
	// X-Forwarded-For, from a trusted 127.0.0.1), so that the rate limits
	// of one case never touch another's.
	sources atomic.Int32
	xff     bool
}

func (a *apiDoc) start(xff bool, args ...string) *apiServer {
	a.t.Helper()
	s := &apiServer{server: startServer(a.t, nil, args...), a: a, xff: xff,
		client: &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}, Timeout: 15 * time.Second}}
	a.t.Cleanup(s.client.CloseIdleConnections)
	return s
}

// source is a source address no request has come from yet.
func (s *apiServer) source() string {
	n := s.sources.Add(1)
	return fmt.Sprintf("10.%d.%d.%d", n>>16&255, n>>8&255, n&255)
}

// prepare adds the X-Forwarded-For header a call comes from.
func (s *apiServer) prepare(c *call) {
	c.header = c.header.Clone()
	if c.header == nil {
		c.header = http.Header{}
	}
	if s.xff && c.header.Get("X-Forwarded-For") == "" {
		c.header.Set("X-Forwarded-For", s.source())
	}
}

// do sends c with the client and checks the exchange.
func (s *apiServer) do(c call) {
	s.a.t.Helper()
	s.doCtx(context.Background(), c)
}

func (s *apiServer) doCtx(ctx context.Context, c call) {
	s.a.t.Helper()
	s.prepare(&c)
	var body io.Reader
	if c.body != nil {
		body = bytes.NewReader(c.body)
	}
	req, err := http.NewRequestWithContext(ctx, c.method, s.url+c.path, body)
	if err != nil {
		s.a.t.Fatal(err)
	}
	for k, v := range c.header {
		req.Header[k] = v
	}
	resp, err := s.client.Do(req)
	if err != nil {
		s.a.t.Errorf("%s %s: %v", c.method, c.path, err)
		return
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		s.a.t.Errorf("%s %s: body: %v", c.method, c.path, err)
		return
	}
	s.a.check(c, resp, b)
}

// goDo is do on a goroutine of its own; wait for it on the channel.
func (s *apiServer) goDo(ctx context.Context, c call) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		defer close(done)
		s.doCtx(ctx, c)
	}()
	return done
}

// rawConn is a connection the test writes bytes on as it likes.
type rawConn struct {
	s  *apiServer
	c  net.Conn
	br *bufio.Reader
}

func (s *apiServer) dial() *rawConn {
	s.a.t.Helper()
	c, err := net.Dial("tcp", strings.TrimPrefix(s.url, "http://"))
	if err != nil {
		s.a.t.Fatal(err)
	}
	s.a.t.Cleanup(func() { c.Close() })
	return &rawConn{s: s, c: c, br: bufio.NewReader(c)}
}

func (r *rawConn) write(b string) {
	r.s.a.t.Helper()
	if _, err := io.WriteString(r.c, b); err != nil {
		r.s.a.t.Fatal(err)
	}
}

// head is c's request line and headers, without the blank line that ends
// them.
func (r *rawConn) head(c *call, contentLength int) string {
	r.s.prepare(c)
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s HTTP/1.1\r\nHost: x\r\n", c.method, c.path)
	for k, vs := range c.header {
		for _, v := range vs {
			fmt.Fprintf(&b, "%s: %s\r\n", k, v)
		}
	}
	if contentLength >= 0 {
		fmt.Fprintf(&b, "Content-Length: %d\r\n", contentLength)
	}
	return b.String()
}

// answer reads one response and checks the exchange.
func (r *rawConn) answer(c call) {
	r.s.a.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r.br, &http.Request{Method: c.method})
	if err != nil {
		r.s.a.t.Errorf("%s %s: no answer: %v", c.method, c.path, err)
		return
	}
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		r.s.a.t.Errorf("%s %s: body: %v", c.method, c.path, err)
		return
	}
	r.s.a.check(c, resp, b)
}

// continued waits for a 100 Continue: the handler has begun to read the
// body.
func (r *rawConn) continued() {
	r.s.a.t.Helper()
	r.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(r.br, nil)
	if err != nil || resp.StatusCode != http.StatusContinue {
		r.s.a.t.Fatalf("want 100 Continue: %v %v", resp, err)
	}
}

// waiting is /health's waiting_long_polls, read outside the checks.
func (s *apiServer) waiting(n int64) {
	s.a.t.Helper()
	polltest.Until(s.a.t, fmt.Sprintf("%d long-polls waiting", n), func() bool {
		resp, err := http.Get(s.url + "/health")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var h struct {
			Waiting int64 `json:"waiting_long_polls"`
		}
		return json.NewDecoder(resp.Body).Decode(&h) == nil && h.Waiting == n
	})
}

func mbox(id string) string { return "/v1/mailbox/" + id }

var octet = http.Header{"Content-Type": {"application/octet-stream"}}

func hdr(kv ...string) http.Header {
	h := http.Header{}
	for i := 0; i < len(kv); i += 2 {
		h.Set(kv[i], kv[i+1])
	}
	return h
}

// otherMethods are the methods every path answers 405 (or 404).
var otherMethods = map[string][]string{
	"/v1/mailbox/": {http.MethodHead, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, http.MethodTrace},
	"/health":      {http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, http.MethodTrace},
	"/metrics":     {http.MethodPost, http.MethodPut, http.MethodDelete, http.MethodPatch, http.MethodOptions, http.MethodTrace},
}

// TestOpenAPIDescribesTheServer holds docs/openapi.yaml to the server.
func TestOpenAPIDescribesTheServer(t *testing.T) {
	a := loadAPIDoc(t)
	t.Run("open", func(t *testing.T) { a.t = t; openCases(a) })
	t.Run("crowded", func(t *testing.T) { a.t = t; crowdedCases(a) })
	t.Run("server_wide", func(t *testing.T) { a.t = t; serverWideCases(a) })
	t.Run("per_mailbox", func(t *testing.T) { a.t = t; perMailboxCases(a) })
	t.Run("signature", func(t *testing.T) { a.t = t; signatureCases(a) })
	t.Run("store_unavailable", func(t *testing.T) { a.t = t; storeCases(a) })
	t.Run("connection_cap", func(t *testing.T) { a.t = t; connectionCapCases(a) })
	a.t = t
	a.coverage()
}

// openCases: auth disabled, small limits, every source its own.
func openCases(a *apiDoc) {
	s := a.start(true,
		"--trusted-proxies", "127.0.0.1", "--ip-blocklist", "192.0.2.66",
		"--rate-limit-posts-per-minute", "2", "--rate-limit-gets-per-minute", "2",
		"--max-waiting-per-source", "1", "--max-queue-length", "1",
		"--long-poll-default-ms", "100", "--long-poll-max-ms", "200")
	id := func(n int) string { return fmt.Sprintf("%064x", 0xa000+n) }

	// Post and take, with and without a Content-Type; ids in either case.
	s.do(call{method: "POST", path: mbox(id(1)), header: octet, body: []byte("hello"), status: 202})
	s.do(call{method: "GET", path: mbox(id(1)) + "?wait_ms=0", status: 200})
	s.do(call{method: "POST", path: mbox(strings.ToUpper(id(2))), body: []byte("no type"), status: 202})
	s.do(call{method: "GET", path: mbox(id(2)) + "?wait_ms=0", status: 200})
	s.do(call{method: "POST", path: mbox(id(3)), header: hdr("Content-Type", "text/plain"), body: []byte("typed"), status: 202})
	s.do(call{method: "GET", path: mbox(strings.ToUpper(id(3))), status: 200})
	// Nothing there: at once, after the default wait, after a clamped one.
	s.do(call{method: "GET", path: mbox(id(4)) + "?wait_ms=0", status: 204})
	s.do(call{method: "GET", path: mbox(id(4)), status: 204})
	s.do(call{method: "GET", path: mbox(id(4)) + "?wait_ms=99999999999999999999999999", status: 204})
	// A waiting GET is handed the next POST.
	got := s.goDo(context.Background(), call{method: "GET", path: mbox(id(5)) + "?wait_ms=10000", status: 200})
	s.waiting(1)
	s.do(call{method: "POST", path: mbox(id(5)), header: octet, body: []byte("for the waiter"), status: 202})
	<-got

	// 400s.
	s.do(call{method: "POST", path: mbox(id(6)[1:]), header: octet, body: []byte("x"), req: invalid, status: 400, code: "bad_recipient_id"})
	s.do(call{method: "POST", path: mbox(id(6)[1:] + "g"), header: octet, body: []byte("x"), req: invalid, status: 400, code: "bad_recipient_id"})
	s.do(call{method: "GET", path: mbox(id(6)+"0") + "?wait_ms=0", req: invalid, status: 400, code: "bad_recipient_id"})
	s.do(call{method: "POST", path: mbox(id(6)), header: octet, body: []byte{}, req: invalid, status: 400, code: "empty_message"})
	for _, w := range []string{"", "-1", "+1", "1.5", "1e3", "abc", "%201"} {
		s.do(call{method: "GET", path: mbox(id(6)) + "?wait_ms=" + w, req: invalid, status: 400, code: "bad_wait_ms"})
	}
	s.do(call{method: "GET", path: mbox(id(6)) + "?wait_ms=0", header: octet, body: []byte("x"), req: invalid, status: 400, code: "unexpected_body"})
	// A POST body cut short: the client half-closes after 5 of 10 bytes.
	{
		c := call{method: "POST", path: mbox(id(6)), header: octet, body: []byte("cut.."), req: unchecked, status: 400, code: "bad_request"}
		r := s.dial()
		r.write(r.head(&c, 10) + "\r\n" + string(c.body))
		r.c.(*net.TCPConn).CloseWrite()
		r.answer(c)
	}
	// A waiting GET whose client half-closes.
	{
		c := call{method: "GET", path: mbox(id(7)) + "?wait_ms=10000", status: 400, code: "bad_request"}
		r := s.dial()
		r.write(r.head(&c, -1) + "\r\n")
		s.waiting(1)
		r.c.(*net.TCPConn).CloseWrite()
		r.answer(c)
	}

	// 403 blocked.
	blocked := hdr("X-Forwarded-For", "192.0.2.66", "Content-Type", "application/octet-stream")
	s.do(call{method: "POST", path: mbox(id(8)), header: blocked, body: []byte("x"), status: 403, code: "blocked"})
	s.do(call{method: "GET", path: mbox(id(8)) + "?wait_ms=0", header: blocked, status: 403, code: "blocked"})

	// 413, from Content-Length alone: the body is never sent.
	{
		c := call{method: "POST", path: mbox(id(9)), header: octet, body: bytes.Repeat([]byte("x"), 65537), req: invalid, status: 413, code: "message_too_large"}
		r := s.dial()
		r.write(r.head(&c, len(c.body)) + "\r\n")
		r.answer(c)
	}

	// One source: 202, 507 (max_queue_length 1), 429 (2 POSTs a minute).
	src := s.source()
	for _, want := range []struct {
		status int
		code   string
	}{{202, ""}, {507, "queue_full"}, {429, "rate_limited"}} {
		s.do(call{method: "POST", path: mbox(id(10)), header: hdr("X-Forwarded-For", src, "Content-Type", "application/octet-stream"),
			body: []byte("x"), status: want.status, code: want.code})
	}
	src = s.source()
	for _, want := range []struct {
		status int
		code   string
	}{{200, ""}, {204, ""}, {429, "rate_limited"}} {
		s.do(call{method: "GET", path: mbox(id(10)) + "?wait_ms=0", header: hdr("X-Forwarded-For", src), status: want.status, code: want.code})
	}
	// max_waiting_per_source 1: a second waiting GET of one source is 429.
	src = s.source()
	got = s.goDo(context.Background(), call{method: "GET", path: mbox(id(11)) + "?wait_ms=10000", header: hdr("X-Forwarded-For", src), status: 200})
	s.waiting(1)
	s.do(call{method: "GET", path: mbox(id(12)) + "?wait_ms=10000", header: hdr("X-Forwarded-For", src), status: 429, code: "rate_limited"})
	s.do(call{method: "POST", path: mbox(id(11)), header: octet, body: []byte("x"), status: 202})
	<-got

	// 405 on every other method of every path.
	for path, methods := range otherMethods {
		if path == "/v1/mailbox/" {
			path = mbox(id(13))
		}
		for _, m := range methods {
			s.do(call{method: m, path: path, status: 405, code: "method_not_allowed"})
		}
	}

	// Health and metrics.
	s.do(call{method: "GET", path: "/health", status: 200})
	s.do(call{method: "HEAD", path: "/health", status: 200})
	s.do(call{method: "GET", path: "/metrics", status: 200})
	s.do(call{method: "HEAD", path: "/metrics", status: 200})
}

// crowdedCases: max_mailboxes 1, then a shutdown.
func crowdedCases(a *apiDoc) {
	s := a.start(false, "--max-mailboxes", "1")
	id := func(n int) string { return fmt.Sprintf("%064x", 0xb000+n) }
	s.do(call{method: "POST", path: mbox(id(1)), header: octet, body: []byte("holds the one mailbox"), status: 202})
	s.do(call{method: "POST", path: mbox(id(2)), header: octet, body: []byte("x"), status: 503, code: "overloaded"})
	s.do(call{method: "GET", path: mbox(id(2)) + "?wait_ms=1000", status: 503, code: "overloaded"})
	s.do(call{method: "GET", path: mbox(id(2)) + "?wait_ms=0", status: 204})
	s.do(call{method: "GET", path: "/health", status: 503})
	s.do(call{method: "HEAD", path: "/health", status: 503})
	s.do(call{method: "GET", path: mbox(id(1)) + "?wait_ms=0", status: 200})

	// Shutdown: a waiting GET is answered 503 at once. So is a POST being
	// served when it began, whatever else would have refused it: here its
	// body is cut short (its client half-closes after 2 of 4 bytes).
	waiter := s.goDo(context.Background(), call{method: "GET", path: mbox(id(3)) + "?wait_ms=30000", status: 503, code: "shutting_down"})
	s.waiting(1)
	late := call{method: "POST", path: mbox(id(4)), header: hdr("Content-Type", "application/octet-stream", "Expect", "100-continue"),
		body: []byte("la"), req: unchecked, status: 503, code: "shutting_down"}
	r := s.dial()
	r.write(r.head(&late, 4) + "\r\n")
	r.continued() // the handler is reading the body
	r.write(string(late.body))
	if err := s.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		a.t.Fatal(err)
	}
	<-waiter
	r.c.(*net.TCPConn).CloseWrite()
	r.answer(late)
	<-s.done
	if err := s.cmd.Wait(); err != nil {
		a.t.Errorf("after SIGTERM: %v; want exit status 0", err)
	}
}

// serverWideCases: every mailbox request needs a server token.
func serverWideCases(a *apiDoc) {
	s := a.start(false, "--auth-mode", "server_wide", "--auth-tokens", "the-server-token")
	id := fmt.Sprintf("%064x", 0xc000)
	good, bad := hdr("Authorization", "Bearer the-server-token"), hdr("Authorization", "Bearer another-token")
	s.do(call{method: "POST", path: mbox(id), header: octet, body: []byte("x"), status: 401, code: "unauthorized"})
	s.do(call{method: "POST", path: mbox(id), header: bad, body: []byte("x"), status: 403, code: "forbidden"})
	s.do(call{method: "POST", path: mbox(id), header: good, body: []byte("x"), status: 202})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", status: 401, code: "unauthorized"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: bad, status: 403, code: "forbidden"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: good, status: 200})
}

// perMailboxCases: a GET needs a token of its mailbox; POST is open.
func perMailboxCases(a *apiDoc) {
	id := fmt.Sprintf("%064x", 0xd000)
	file := filepath.Join(a.t.TempDir(), "tokens.toml")
	if err := os.WriteFile(file, []byte("[mailboxes]\n\""+id+"\" = [\"the-mailbox-token\"]\n"), 0o600); err != nil {
		a.t.Fatal(err)
	}
	s := a.start(false, "--auth-mode", "per_mailbox", "--mailbox-tokens-file", file)
	s.do(call{method: "POST", path: mbox(id), header: octet, body: []byte("x"), status: 202})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", status: 401, code: "unauthorized"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: hdr("Authorization", "Bearer not-this-one"), status: 403, code: "forbidden"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: hdr("Authorization", "Bearer the-mailbox-token"), status: 200})
}

// signatureCases: a GET is signed by the mailbox's key; and /metrics is
// off, so every /metrics request is 404.
func signatureCases(a *apiDoc) {
	s := a.start(false, "--auth-mode", "signature", "--metrics-enabled=false")
	pub, key, err := ed25519.GenerateKey(nil)
	if err != nil {
		a.t.Fatal(err)
	}
	id := client.MailboxID(pub)
	signed := func(mangle bool) http.Header {
		nonce, err := client.NewNonce()
		if err != nil {
			a.t.Fatal(err)
		}
		sg, err := client.SignGet(key, time.Now(), nonce)
		if err != nil {
			a.t.Fatal(err)
		}
		if mangle {
			sg.Timestamp = fmt.Sprint(time.Now().Add(-time.Hour).Unix())
		}
		h := http.Header{}
		sg.Apply(h)
		return h
	}
	s.do(call{method: "POST", path: mbox(id), header: octet, body: []byte("x"), status: 202})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", status: 401, code: "unauthorized"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: signed(true), status: 403, code: "forbidden"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", header: signed(false), status: 200})

	s.do(call{method: "GET", path: "/metrics", status: 404, code: "not_found"})
	s.do(call{method: "HEAD", path: "/metrics", status: 404})
	for _, m := range otherMethods["/metrics"] {
		s.do(call{method: m, path: "/metrics", status: 404, code: "not_found"})
	}
}

// storeCases: the Redis store cannot be reached.
func storeCases(a *apiDoc) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		a.t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // nothing listens there now
	s := a.start(false, "--store", "redis", "--redis-url", "redis://"+addr, "--redis-timeout-ms", "50")
	id := fmt.Sprintf("%064x", 0xe000)
	s.do(call{method: "POST", path: mbox(id), header: octet, body: []byte("x"), status: 503, code: "store_unavailable"})
	s.do(call{method: "GET", path: mbox(id) + "?wait_ms=0", status: 503, code: "store_unavailable"})
	s.do(call{method: "GET", path: "/health", status: 503})
}

// connectionCapCases: max_connections 1, held by a waiting GET: every
// other connection, whatever it asks, is refused.
func connectionCapCases(a *apiDoc) {
	s := a.start(false, "--max-connections", "1")
	s.client = &http.Client{Transport: &http.Transport{DisableKeepAlives: true}, Timeout: 15 * time.Second}
	id := fmt.Sprintf("%064x", 0xf000)
	// The holder's connection is accepted first (it is first in the
	// listen queue) and sends nothing; the server counts it from accept.
	s.dial()
	for path, item := range a.doc.Paths.Map() {
		path = strings.Replace(path, "{recipient_id}", id, 1)
		for method := range item.Operations() {
			c := call{method: method, path: path, status: 503, code: "overloaded"}
			switch {
			case method == "POST" && strings.HasPrefix(path, "/v1/"):
				c.header, c.body = octet, []byte("x")
			case method == "GET" && strings.HasPrefix(path, "/v1/"):
				c.path += "?wait_ms=0"
			}
			s.do(c)
		}
	}
}
