package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
)

// health reports liveness and load (R6.1, R6.5, R6.6): 200 "healthy", or
// 503 "overloaded" when the engine says so (Snapshot.Overloaded: near the
// memory limit, or at the mailbox limit with no mailbox reclaimable) or
// at the connection cap (max_connections), which this package owns, or
// 503 "shutting_down" once shutdown has begun, so that a load balancer
// stops sending traffic before the listener closes. It reads counters
// only and asks no actor. Later middleware must leave it unauthenticated
// and unlimited.
func (a *api) health(w http.ResponseWriter, r *http.Request) error {
	snap := a.mb.Snapshot()
	var conns int64
	if a.conns != nil {
		conns = a.conns.Open()
	}
	// A 503 is the catalogue's overloaded or shutting_down: its code is
	// the status, with its HTTP status and Retry-After.
	status, code, retry := "healthy", http.StatusOK, []string(nil)
	unhealthy := func(c apierr.Code) {
		e := c.Entry()
		status, code, retry = e.Error, e.Status, c.RetryAfterHeader()
	}
	switch {
	case errors.Is(context.Cause(r.Context()), ErrShuttingDown):
		unhealthy(apierr.ShuttingDown)
	// This request's own connection counts, so open connections reach
	// the cap here exactly when the next connection would be refused.
	case snap.Overloaded || a.conns != nil && conns >= a.conns.Max():
		unhealthy(apierr.Overloaded)
	}

	epoch := a.mb.Epoch()
	b := make([]byte, 0, 192+len(a.versionJSON)+len(epoch))
	b = append(b, `{"status":"`...)
	b = append(b, status...)
	b = append(b, `","uptime_seconds":`...)
	b = strconv.AppendInt(b, int64(time.Since(a.opts.Started)/time.Second), 10)
	b = append(b, `,"version":`...)
	b = append(b, a.versionJSON...)
	// Z9; an epoch is URL-safe characters only: nothing to escape.
	b = append(b, `,"epoch":"`...)
	b = append(b, epoch...)
	b = append(b, '"')
	b = append(b, `,"mailboxes":`...)
	b = strconv.AppendInt(b, int64(snap.Mailboxes), 10)
	b = append(b, `,"busy_mailboxes":`...)
	b = strconv.AppendInt(b, int64(snap.Busy), 10)
	b = append(b, `,"messages":`...)
	b = strconv.AppendInt(b, snap.Messages, 10)
	b = append(b, `,"queued_bytes":`...)
	b = strconv.AppendInt(b, snap.QueuedBytes, 10)
	b = append(b, `,"waiting_long_polls":`...)
	b = strconv.AppendInt(b, snap.Waiting, 10)
	b = append(b, `,"open_connections":`...)
	b = strconv.AppendInt(b, conns, 10)
	b = append(b, '}')

	h := w.Header()
	h["Content-Type"] = hvJSON
	h["Cache-Control"] = hvNoStore
	if retry != nil {
		h["Retry-After"] = retry
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
	return nil
}
