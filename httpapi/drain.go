package httpapi

import (
	"errors"
	"net/http"
	"os"
	"time"
)

// limitBodyDrain bounds the wait for a request body that the handler left
// unread — a POST refused before its body was read (413 from
// Content-Length alone, 400, 401, 429), a body sent to a route that takes
// none (404, 405, a GET). Before net/http answers or reuses the
// connection, it reads up to 256 KiB of such a body, with no deadline of
// its own; a client that declared a body and never sent it would hold the
// connection for ever. The drain gets BodyReadTimeout from the moment the
// handler finished, after which the read fails and net/http closes the
// connection. A body read that already hit its deadline keeps it: the
// drain then fails at once.
//
// It runs after the handler, in endpoint.finish, not in a middleware: a
// wrapper's frame would sit under every parked long-poll and keep its
// stack from shrinking (see receiveEndpoint).
func (a *api) limitBodyDrain(w http.ResponseWriter, err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return
	}
	// An error means the writer cannot set deadlines (a recorder in tests).
	_ = http.NewResponseController(w).SetReadDeadline(time.Now().Add(a.opts.BodyReadTimeout))
}
