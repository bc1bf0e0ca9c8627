package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"strconv"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
)

// ErrShuttingDown is the cancel cause cmd gives the root context
// (http.Server.BaseContext) when shutdown begins. A request whose context
// ends with this cause answers 503 shutting_down at once (R9.4); one whose
// context ends with any other cause has lost its client.
var ErrShuttingDown = errors.New("server is shutting down")

// ErrBadWaitMS is ParseWaitMS's answer to anything but a string of ASCII
// digits (R2.2).
var ErrBadWaitMS = errors.New("wait_ms must be a string of ASCII digits")

// Errors the handlers return besides the engine's own. writeError maps each
// through errorTable. errUnauthorized, errForbidden, errBlocked and
// errRateLimited are package guard's (R4, R5).
var (
	errEmptyMessage     = errors.New("message body is empty")
	errMessageTooLarge  = errors.New("message body exceeds max_message_size")
	errBadBody          = errors.New("request body could not be read")
	errUnexpectedBody   = errors.New("a GET carries no body")
	errNotFound         = errors.New("no such route")
	errMethodNotAllowed = errors.New("method not allowed on this route")
	errUnauthorized     = guard.ErrUnauthorized
	errForbidden        = guard.ErrForbidden
	errBlocked          = guard.ErrBlocked
	errRateLimited      = guard.ErrRateLimited
)

// errorCode indexes errorTable; it is also how the errors_total counters
// are found without a map lookup.
type errorCode uint8

const (
	codeBadRecipientID errorCode = iota
	codeEmptyMessage
	codeBadWaitMS
	codeBadRequest
	codeUnexpectedBody
	codeUnauthorized
	codeForbidden
	codeBlocked
	codeNotFound
	codeMethodNotAllowed
	codeMessageTooLarge
	codeRateLimited
	codeInternal
	codeOverloaded
	codeShuttingDown
	codeQueueFull
	numCodes
)

// errorRow is one line of the error table: the errors that map to it
// (matched with errors.Is), the status and the JSON code (SPEC "HTTP API").
type errorRow struct {
	is         []error
	status     int
	code       string
	message    string
	retryAfter bool // send Retry-After: 1 unless the error says otherwise
}

// errorTable is the one place that turns an error into a response. Rows
// are tried in order; the first whose error matches wins.
//
// bad_request answers a request that is malformed or ended early: a body
// that could not be read (cut short, a broken chunk, the read deadline),
// or a client that ended its side of the connection before its answer
// (Z10). internal_error is not in SPEC.md's list: it answers an error no
// row knows, which is a bug, so that no failure is ever answered 200.
var errorTable = [numCodes]errorRow{
	codeBadRecipientID:   {is: []error{actor.ErrBadID}, status: http.StatusBadRequest, code: "bad_recipient_id", message: "recipient id must be exactly 64 hex characters"},
	codeEmptyMessage:     {is: []error{errEmptyMessage}, status: http.StatusBadRequest, code: "empty_message", message: "message body is empty"},
	codeBadWaitMS:        {is: []error{ErrBadWaitMS}, status: http.StatusBadRequest, code: "bad_wait_ms", message: "wait_ms must be a string of ASCII digits"},
	codeBadRequest:       {is: []error{errBadBody}, status: http.StatusBadRequest, code: "bad_request", message: "request was malformed or ended early"},
	codeUnexpectedBody:   {is: []error{errUnexpectedBody}, status: http.StatusBadRequest, code: "unexpected_body", message: "a GET request carries no body"},
	codeUnauthorized:     {is: []error{errUnauthorized}, status: http.StatusUnauthorized, code: "unauthorized", message: "credentials required"},
	codeForbidden:        {is: []error{errForbidden}, status: http.StatusForbidden, code: "forbidden", message: "credentials refused"},
	codeBlocked:          {is: []error{errBlocked}, status: http.StatusForbidden, code: "blocked", message: "source address is blocked"},
	codeNotFound:         {is: []error{errNotFound}, status: http.StatusNotFound, code: "not_found", message: "no such route"},
	codeMethodNotAllowed: {is: []error{errMethodNotAllowed}, status: http.StatusMethodNotAllowed, code: "method_not_allowed", message: "method not allowed on this route"},
	codeMessageTooLarge:  {is: []error{errMessageTooLarge}, status: http.StatusRequestEntityTooLarge, code: "message_too_large", message: "message body exceeds max_message_size"},
	codeRateLimited:      {is: []error{errRateLimited}, status: http.StatusTooManyRequests, code: "rate_limited", message: "rate limit exceeded", retryAfter: true},
	codeInternal:         {status: http.StatusInternalServerError, code: "internal_error", message: "internal error"},
	codeOverloaded:       {is: []error{actor.ErrOverloaded}, status: http.StatusServiceUnavailable, code: "overloaded", message: "server is at its mailbox or memory limit", retryAfter: true},
	codeShuttingDown:     {is: []error{ErrShuttingDown, actor.ErrClosed, actor.ErrStopped}, status: http.StatusServiceUnavailable, code: "shutting_down", message: "server is shutting down", retryAfter: true},
	codeQueueFull:        {is: []error{actor.ErrQueueFull}, status: http.StatusInsufficientStorage, code: "queue_full", message: "mailbox queue is full"},
}

// errorBodies are the JSON bodies of errorTable, built once: an error
// response allocates nothing for its body.
var errorBodies = func() (bodies [numCodes][]byte) {
	for c, row := range errorTable {
		b, err := json.Marshal(struct {
			Error   string `json:"error"`
			Message string `json:"message"`
		}{row.code, row.message})
		if err != nil {
			panic("BUG: error body: " + err.Error())
		}
		bodies[c] = b
	}
	return bodies
}()

// retryAfterError is implemented by errors that know when the client may
// try again (the rate limiter's); other rows with retryAfter send 1 second.
type retryAfterError interface {
	error
	RetryAfter() time.Duration
}

// Header values that never change. Each slice has len == cap, so a
// Header.Add elsewhere copies rather than writing into the shared array;
// nothing in this package mutates them.
var (
	hvJSON        = []string{"application/json"}
	hvOctetStream = []string{"application/octet-stream"}
	hvNoStore     = []string{"no-store"}
	hvOne         = []string{"1"}
	hvZero        = []string{"0"}
	hvClose       = []string{"close"}
)

// classify picks the table row for err. left is true when the request
// was cancelled because its client ended its side of the connection and
// err is only that cancellation: such a request is answered 400
// bad_request all the same — a client that half-closed still reads it,
// and net/http's implicit 200 must never stand for a request that did
// not complete (Z10) — but it is no error of the server's or of the
// request, so it is counted nowhere.
func classify(r *http.Request, err error) (c errorCode, left bool) {
	// Shutdown first: every request that shutdown interrupts answers 503,
	// whatever error the interruption surfaced as (R9.4).
	if errors.Is(context.Cause(r.Context()), ErrShuttingDown) {
		return codeShuttingDown, false
	}
	for c := range errorTable {
		for _, target := range errorTable[c].is {
			if errors.Is(err, target) {
				return errorCode(c), false
			}
		}
	}
	if r.Context().Err() != nil {
		return codeBadRequest, true
	}
	return codeInternal, false
}

// writeError answers err through errorTable: status, JSON body, the
// headers the row needs, the errors_total counter and a log line (debug
// for client errors, warn for server failures — never with ids). It
// writes whether or not the client is still there: every request gets its
// own status, and writing to a connection that is gone costs nothing but
// a failed write.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, rt routeID, err error) {
	c, left := classify(r, err)
	row := &errorTable[c]
	h := w.Header()
	h["Content-Type"] = hvJSON
	if row.retryAfter {
		h["Retry-After"] = hvOne
		var ra retryAfterError
		if errors.As(err, &ra) {
			h["Retry-After"] = []string{strconv.FormatInt(retryAfterSeconds(ra.RetryAfter()), 10)}
		}
	}
	if c == codeMessageTooLarge && r.ProtoMajor == 1 {
		// The rest of an oversized body is never read: close the
		// connection rather than let net/http drain it (R1.4). HTTP/2
		// resets the stream by itself, and there "Connection: close"
		// would shut down every other stream's connection too.
		h["Connection"] = hvClose
	}
	body := errorBodies[c]
	if le, ok := errors.AsType[*guard.LimitError](err); ok && c == codeRateLimited {
		// A 429 names the limit that was hit (R4.4).
		body = le.Body()
		kind := kindPost
		if le.Kind == guard.Get {
			kind = kindGet
		}
		if ctr := a.metrics.rateLimitHits[kind]; ctr != nil {
			ctr.Inc()
		}
	}
	// An explicit length: a mailbox answer is flushed before its handler
	// returns (answer.write), and without one it would go chunked.
	h["Content-Length"] = []string{strconv.Itoa(len(body))}
	w.WriteHeader(row.status)
	_, _ = w.Write(body)
	if left {
		if ce := a.log.Check(zap.DebugLevel, "client left"); ce != nil {
			ce.Write(zap.String("route", routeNames[rt]), zap.String("method", r.Method), zap.Error(err))
		}
		return
	}
	if ctr := a.metrics.errors[c]; ctr != nil {
		ctr.Inc()
	}
	switch {
	case row.status >= 500 && c != codeShuttingDown:
		// Server-side failures are worth an operator's attention. Ids stay
		// out of warn lines (Z6); engine errors carry none.
		a.log.Warn("request failed",
			zap.String("code", row.code), zap.String("route", routeNames[rt]),
			zap.String("method", r.Method), zap.Error(err))
	default:
		// Client errors and the expected 503s of a shutdown: one debug line.
		if ce := a.log.Check(zap.DebugLevel, "request refused"); ce != nil {
			ce.Write(zap.String("code", row.code), zap.String("route", routeNames[rt]),
				zap.String("method", r.Method), zap.Error(err))
		}
	}
}

// retryAfterSeconds rounds d up to whole seconds, at least 1 (R4.4).
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(s, 1)
}
