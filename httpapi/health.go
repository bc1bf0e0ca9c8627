package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
)

// healthReport is /health's JSON body, in the order operators read it.
type healthReport struct {
	Status        string `json:"status"`
	UptimeSeconds int64  `json:"uptime_seconds"`
	Version       string `json:"version"`
	Epoch         string `json:"epoch"`
	Mailboxes     int    `json:"mailboxes"`
	Busy          int    `json:"busy_mailboxes"`
	Messages      int64  `json:"messages"`
	QueuedBytes   int64  `json:"queued_bytes"`
	Waiting       int64  `json:"waiting_long_polls"`
	Connections   int64  `json:"open_connections"`
}

// health reports liveness and load (R6.1, R6.5, R6.6): 200 "healthy", or
// 503 "overloaded" when the engine says so (Snapshot.Overloaded: near the
// memory limit, or at the mailbox limit with no mailbox reclaimable) or
// at the connection cap (max_connections), which this package owns, 503
// "store_unavailable" when the shared store does not answer (Z13), or
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
	case snap.StoreUnavailable:
		unhealthy(apierr.StoreUnavailable)
	case snap.Overloaded || a.conns != nil && conns >= a.conns.Max():
		unhealthy(apierr.Overloaded)
	}

	b, err := json.Marshal(healthReport{
		Status:        status,
		UptimeSeconds: int64(time.Since(a.opts.Started) / time.Second),
		Version:       a.opts.Version,
		Epoch:         a.mb.Epoch(), // Z9
		Mailboxes:     snap.Mailboxes,
		Busy:          snap.Busy,
		Messages:      snap.Messages,
		QueuedBytes:   snap.QueuedBytes,
		Waiting:       snap.Waiting,
		Connections:   conns,
	})
	if err != nil {
		return err
	}

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
