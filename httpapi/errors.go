package httpapi

import (
	"context"
	"errors"
	"net/http"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
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
// through errorTable to the catalogue's answer. errUnauthorized,
// errForbidden, errBlocked and errRateLimited are package guard's (R4, R5).
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

// errorTable maps the errors handlers return to the catalogue's answers
// (apierr). Rows are tried in order; the first whose error matches
// (errors.Is) wins. An error no row knows answers apierr.Internal.
var errorTable = []struct {
	code apierr.Code
	is   []error
}{
	{apierr.BadRecipientID, []error{actor.ErrBadID}},
	{apierr.EmptyMessage, []error{errEmptyMessage}},
	{apierr.BadWaitMS, []error{ErrBadWaitMS}},
	{apierr.BadRequest, []error{errBadBody}},
	{apierr.UnexpectedBody, []error{errUnexpectedBody}},
	{apierr.Unauthorized, []error{errUnauthorized}},
	{apierr.Forbidden, []error{errForbidden}},
	{apierr.Blocked, []error{errBlocked}},
	{apierr.NotFound, []error{errNotFound}},
	{apierr.MethodNotAllowed, []error{errMethodNotAllowed}},
	{apierr.MessageTooLarge, []error{errMessageTooLarge}},
	{apierr.RateLimited, []error{errRateLimited}},
	{apierr.Overloaded, []error{actor.ErrOverloaded}},
	{apierr.ShuttingDown, []error{ErrShuttingDown, actor.ErrClosed, actor.ErrStopped}},
	{apierr.QueueFull, []error{actor.ErrQueueFull}},
	{apierr.StoreUnavailable, []error{actor.ErrStoreUnavailable}},
}

// retryAfterError is implemented by errors that know when the client may
// try again (the rate limiter's); other answers with a Retry-After send
// the catalogue's.
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
	hvZero        = []string{"0"}
	hvClose       = []string{"close"}
)

// classify picks the catalogue's answer for err. left is true when the request
// was cancelled because its client ended its side of the connection and
// err is only that cancellation: such a request is answered 400
// bad_request all the same — a client that half-closed still reads it,
// and net/http's implicit 200 must never stand for a request that did
// not complete (Z10) — but it is no error of the server's or of the
// request, so it is counted nowhere.
func classify(r *http.Request, err error) (c apierr.Code, left bool) {
	// Shutdown first: every request that shutdown interrupts answers 503,
	// whatever error the interruption surfaced as (R9.4).
	if errors.Is(context.Cause(r.Context()), ErrShuttingDown) {
		return apierr.ShuttingDown, false
	}
	for _, row := range errorTable {
		for _, target := range row.is {
			if errors.Is(err, target) {
				return row.code, false
			}
		}
	}
	if r.Context().Err() != nil {
		return apierr.BadRequest, true
	}
	return apierr.Internal, false
}

// writeError answers err with the catalogue's answer (classify, then
// apierr.Write), the errors_total counter and a log line (debug for
// client errors, warn for server failures — never with ids). It writes
// whether or not the client is still there: every request gets its own
// status, and writing to a connection that is gone costs nothing but a
// failed write.
func (a *api) writeError(w http.ResponseWriter, r *http.Request, rt routeID, err error) {
	c, left := classify(r, err)
	row := c.Entry()
	if c == apierr.MessageTooLarge && r.ProtoMajor == 1 {
		// The rest of an oversized body is never read: close the
		// connection rather than let net/http drain it (R1.4). HTTP/2
		// resets the stream by itself, and there "Connection: close"
		// would shut down every other stream's connection too.
		w.Header()["Connection"] = hvClose
	}
	var body []byte
	var retryAfter time.Duration
	if ra, ok := errors.AsType[retryAfterError](err); ok {
		retryAfter = ra.RetryAfter()
	}
	if le, ok := errors.AsType[*guard.LimitError](err); ok && c == apierr.RateLimited {
		// A 429 names the limit that was hit (R4.4).
		body = le.Body()
		if ctr := a.metrics.rateLimitHits[le.Kind]; ctr != nil {
			ctr.Inc()
		}
	}
	apierr.Write(w, c, body, retryAfter)
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
	case row.Status >= 500 && c != apierr.ShuttingDown:
		// Server-side failures are worth an operator's attention. Ids stay
		// out of warn lines (Z6); engine errors carry none.
		a.log.Warn("request failed",
			zap.String("code", row.Error), zap.String("route", routeNames[rt]),
			zap.String("method", r.Method), zap.Error(err))
	default:
		// Client errors and the expected 503s of a shutdown: one debug line.
		if ce := a.log.Check(zap.DebugLevel, "request refused"); ce != nil {
			ce.Write(zap.String("code", row.Error), zap.String("route", routeNames[rt]),
				zap.String("method", r.Method), zap.Error(err))
		}
	}
}
