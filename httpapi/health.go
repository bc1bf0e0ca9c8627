package httpapi

import (
	"context"
	"errors"
	"net/http"
	"strconv"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// health reports liveness and load (R6.1, R6.5, R6.6): 200 "healthy", or
// 503 "overloaded" near the memory limit, at the mailbox limit with no
// mailbox reclaimable, or at the connection
// cap (max_connections), or 503 "shutting_down" once shutdown has begun,
// so that a load balancer stops sending traffic before the listener
// closes. It reads counters only and asks no actor. Later middleware must leave it unauthenticated and
// unlimited.
func (a *api) health(w http.ResponseWriter, r *http.Request) error {
	snap := a.mb.Snapshot()
	var conns int64
	if a.conns != nil {
		conns = a.conns.Open()
	}
	status, code := "healthy", http.StatusOK
	switch {
	case errors.Is(context.Cause(r.Context()), ErrShuttingDown):
		status, code = "shutting_down", http.StatusServiceUnavailable
	// This request's own connection counts, so open connections reach
	// the cap here exactly when the next connection would be refused.
	case a.overloaded(snap) || a.conns != nil && conns >= a.conns.Max():
		status, code = "overloaded", http.StatusServiceUnavailable
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
	if code != http.StatusOK {
		h["Retry-After"] = hvOne
	}
	w.WriteHeader(code)
	_, _ = w.Write(b)
	return nil
}

// overloaded reports whether queued bytes are at or above 90% of the
// memory limit or max_mailboxes mailboxes are alive and none of them can be
// reclaimed (R6.5): an empty mailbox without a waiter makes room for a new
// one at once (Z5), so it leaves the server healthy. A zero limit is not
// checked.
func (a *api) overloaded(s actor.Snapshot) bool {
	o := &a.opts
	if o.MemoryLimit > 0 && s.QueuedBytes*10 >= o.MemoryLimit*9 {
		return true
	}
	return o.MaxMailboxes > 0 && s.Mailboxes >= o.MaxMailboxes && s.Busy >= o.MaxMailboxes
}
