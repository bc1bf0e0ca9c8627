// Package apierr is the catalogue of the API's error answers (SPEC "HTTP
// API"): each answer's status, JSON code, message and Retry-After, and
// the one function that renders them, Write. httpapi's handlers answer
// through it (writeError), the guard builds its 429 bodies with it
// (LimitBody), and the connection cap's refusals, written straight on a
// connection the server never sees, are rendered by Write too (Refusal).
// It imports nothing of ours, so every package under httpapi may use it.
package apierr

import (
	"bytes"
	"encoding/json"
	"net/http"
	"strconv"
	"time"
)

// Code names one answer of the catalogue.
type Code uint8

const (
	BadRecipientID Code = iota
	EmptyMessage
	BadWaitMS
	BadRequest
	UnexpectedBody
	Unauthorized
	Forbidden
	Blocked
	NotFound
	MethodNotAllowed
	MessageTooLarge
	RateLimited
	Internal
	Overloaded
	ShuttingDown
	QueueFull
	StoreUnavailable
	// ConnectionLimit and SourceConnectionLimit are the connection cap's
	// refusals (max_connections, max_connections_per_source): an
	// `overloaded` answered on a connection the server never serves.
	ConnectionLimit
	SourceConnectionLimit
	NumCodes
)

// Entry is one answer: its status, JSON code ("error"), message and
// Retry-After.
type Entry struct {
	Status  int
	Error   string
	Message string
	// RetryAfter is the Retry-After in seconds; 0: none. An answer given
	// with a retry time of its own (Write's retryAfter) sends that
	// instead.
	RetryAfter int64
}

// connRetryAfter is the Retry-After of a connection refused at a cap, in
// seconds; every other 503 says 1. The difference is deliberate: a
// request refused at the mailbox or memory limit costs the server one
// small answer on a connection it already has, and room comes back as
// soon as one message is read, so a client may come back after a
// second. A connection refused at the cap costs an accept, a TLS
// handshake and a file descriptor for up to two seconds — the very load
// that filled the cap — and places free up only as long-polls end or
// idle connections are closed, which takes seconds. Five keeps a crowd
// of refused clients from reconnecting in step every second.
const connRetryAfter = 5

// catalogue is the one table of error answers (SPEC "HTTP API").
//
// bad_request answers a request that is malformed or ended early: a body
// that could not be read (cut short, a broken chunk, the read deadline),
// or a client that ended its side of the connection before its answer
// (Z10). internal_error is not in SPEC.md's list: it answers an error no
// other answer fits, which is a bug, so that no failure is ever answered
// 200.
var catalogue = [NumCodes]Entry{
	BadRecipientID:        {Status: http.StatusBadRequest, Error: "bad_recipient_id", Message: "recipient id must be exactly 64 hex characters"},
	EmptyMessage:          {Status: http.StatusBadRequest, Error: "empty_message", Message: "message body is empty"},
	BadWaitMS:             {Status: http.StatusBadRequest, Error: "bad_wait_ms", Message: "wait_ms must be a string of ASCII digits"},
	BadRequest:            {Status: http.StatusBadRequest, Error: "bad_request", Message: "request was malformed or ended early"},
	UnexpectedBody:        {Status: http.StatusBadRequest, Error: "unexpected_body", Message: "a GET request carries no body"},
	Unauthorized:          {Status: http.StatusUnauthorized, Error: "unauthorized", Message: "credentials required"},
	Forbidden:             {Status: http.StatusForbidden, Error: "forbidden", Message: "credentials refused"},
	Blocked:               {Status: http.StatusForbidden, Error: "blocked", Message: "source address is blocked"},
	NotFound:              {Status: http.StatusNotFound, Error: "not_found", Message: "no such route"},
	MethodNotAllowed:      {Status: http.StatusMethodNotAllowed, Error: "method_not_allowed", Message: "method not allowed on this route"},
	MessageTooLarge:       {Status: http.StatusRequestEntityTooLarge, Error: "message_too_large", Message: "message body exceeds max_message_size"},
	RateLimited:           {Status: http.StatusTooManyRequests, Error: "rate_limited", Message: "rate limit exceeded", RetryAfter: 1},
	Internal:              {Status: http.StatusInternalServerError, Error: "internal_error", Message: "internal error"},
	Overloaded:            {Status: http.StatusServiceUnavailable, Error: "overloaded", Message: "server is at its mailbox or memory limit", RetryAfter: 1},
	ShuttingDown:          {Status: http.StatusServiceUnavailable, Error: "shutting_down", Message: "server is shutting down", RetryAfter: 1},
	QueueFull:             {Status: http.StatusInsufficientStorage, Error: "queue_full", Message: "mailbox queue is full"},
	StoreUnavailable:      {Status: http.StatusServiceUnavailable, Error: "store_unavailable", Message: "message store is unavailable", RetryAfter: 1},
	ConnectionLimit:       {Status: http.StatusServiceUnavailable, Error: "overloaded", Message: "server is at its connection limit", RetryAfter: connRetryAfter},
	SourceConnectionLimit: {Status: http.StatusServiceUnavailable, Error: "overloaded", Message: "too many open connections from this source", RetryAfter: connRetryAfter},
}

// Entry is c's row of the catalogue.
func (c Code) Entry() Entry { return catalogue[c] }

// bodies and retryHV are each answer's JSON body and Retry-After header
// value, built once: an error answer allocates nothing for them.
var bodies, retryHV = func() (b [NumCodes][]byte, hv [NumCodes][]string) {
	for c, e := range catalogue {
		b[c] = body(e.Error, e.Message, nil)
		if e.RetryAfter > 0 {
			hv[c] = []string{strconv.FormatInt(e.RetryAfter, 10)}
		}
	}
	return b, hv
}()

// RetryAfterHeader is c's Retry-After header value; nil: none. /health's
// 503s send their answer's.
func (c Code) RetryAfterHeader() []string { return retryHV[c] }

// Body is c's JSON body: {"error":…,"message":…}.
func (c Code) Body() []byte { return bodies[c] }

// Limit is what a 429 says of the limit that was hit (R4.4).
type Limit struct {
	Name string // "limit": post, get, long_polls, sources, signature_nonces…
	Max  int    // "max": its number
	// WindowSeconds is "window_seconds", the token buckets' window; 0
	// leaves it out.
	WindowSeconds int64
}

// LimitBody is a rate_limited body with message and the limit's fields.
func LimitBody(message string, l Limit) []byte {
	return body(catalogue[RateLimited].Error, message, &l)
}

// body renders an error body; l adds a 429's fields.
func body(code, message string, l *Limit) []byte {
	b := []byte(`{"error":`)
	b = appendString(b, code)
	b = append(b, `,"message":`...)
	b = appendString(b, message)
	if l != nil {
		b = append(b, `,"limit":`...)
		b = appendString(b, l.Name)
		b = append(b, `,"max":`...)
		b = strconv.AppendInt(b, int64(l.Max), 10)
		if l.WindowSeconds > 0 {
			b = append(b, `,"window_seconds":`...)
			b = strconv.AppendInt(b, l.WindowSeconds, 10)
		}
	}
	return append(b, '}')
}

func appendString(b []byte, s string) []byte {
	q, err := json.Marshal(s)
	if err != nil {
		panic("BUG: error body: " + err.Error())
	}
	return append(b, q...)
}

var hvJSON = []string{"application/json"}

// Write answers c on w: Content-Type, Retry-After, Content-Length, the
// status and the body. body nil is c's own (Body); a retryAfter above
// zero replaces the catalogue's Retry-After, rounded up to whole seconds
// and at least 1 (R4.4) — for answers that have one. Headers set on w
// before (WWW-Authenticate, RateLimit-*, Connection) go out with it.
func Write(w http.ResponseWriter, c Code, body []byte, retryAfter time.Duration) {
	h := w.Header()
	h["Content-Type"] = hvJSON
	if hv := retryHV[c]; hv != nil {
		if retryAfter > 0 {
			hv = []string{strconv.FormatInt(max(CeilSeconds(retryAfter), 1), 10)}
		}
		h["Retry-After"] = hv
	}
	if body == nil {
		body = bodies[c]
	}
	// An explicit length: a mailbox answer is flushed before its handler
	// returns, and without one it would go chunked.
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(catalogue[c].Status)
	_, _ = w.Write(body)
}

// CeilSeconds rounds d up to whole seconds, never below 0: the unit of
// Retry-After and RateLimit-Reset (R4.4).
func CeilSeconds(d time.Duration) int64 {
	return max(int64((d+time.Second-1)/time.Second), 0)
}

// Refusal is c as a complete HTTP/1.1 response, for an answer written
// straight on a connection that is then closed (the connection cap's):
// Write's headers and body, plus Cache-Control: no-store and
// Connection: close.
func Refusal(c Code) []byte {
	rw := &rawWriter{h: http.Header{
		"Cache-Control": {"no-store"},
		"Connection":    {"close"},
	}}
	Write(rw, c, nil, 0)
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 " + strconv.Itoa(rw.status) + " " + http.StatusText(rw.status) + "\r\n")
	if err := rw.h.Write(&b); err != nil {
		panic("BUG: refusal headers: " + err.Error())
	}
	b.WriteString("\r\n")
	b.Write(rw.body)
	return b.Bytes()
}

// rawWriter records what Write writes, for Refusal.
type rawWriter struct {
	h      http.Header
	status int
	body   []byte
}

func (rw *rawWriter) Header() http.Header    { return rw.h }
func (rw *rawWriter) WriteHeader(status int) { rw.status = status }
func (rw *rawWriter) Write(p []byte) (int, error) {
	rw.body = append(rw.body, p...)
	return len(p), nil
}
