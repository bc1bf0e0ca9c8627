package httpapi

import (
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// routeID labels a route in the latency histogram; the set is fixed so
// every series exists from the start (no per-mailbox labels, ever).
type routeID uint8

const (
	routeMailbox routeID = iota
	routeHealth
	routeMetrics
	routeOther
	numRoutes
)

var routeNames = [numRoutes]string{"mailbox", "health", "metrics", "other"}

// methodID labels a method in the latency histogram.
type methodID uint8

const (
	methodGET methodID = iota
	methodPOST
	methodOther
	numMethods
)

var methodNames = [numMethods]string{"GET", "POST", "other"}

func methodOf(m string) methodID {
	switch m {
	case http.MethodGet:
		return methodGET
	case http.MethodPost:
		return methodPOST
	}
	return methodOther
}

// Allow header values for the 405 answers.
var (
	allowMailbox = []string{"GET, POST"}
	allowGetHead = []string{"GET, HEAD"}
)

// routes lists every endpoint. Each known path also gets a method-less
// pattern answering 405 with its Allow header, and "/" answers 404, so
// ServeMux's own plain-text 404 and 405 never reach a client (Z8).
func (a *api) routes(set *metrics.Set) http.Handler {
	mux := http.NewServeMux()
	rt := &router{
		mux:     mux,
		post:    &postEndpoint{a.endpoint(routeMailbox, nil)},
		receive: &receiveEndpoint{a.endpoint(routeMailbox, nil)},
	}
	mux.Handle("POST "+mailboxPrefix+"{id}", rt.post)   // R1.1
	mux.Handle("GET "+mailboxPrefix+"{id}", rt.receive) // R2.1
	// Z7: ServeMux lets a GET pattern answer HEAD, and a HEAD must never
	// consume a message, so HEAD gets its own 405 pattern.
	mux.Handle("HEAD "+mailboxPrefix+"{id}", a.endpoint(routeMailbox, methodNotAllowed(allowMailbox)))
	mux.Handle(mailboxPrefix+"{id}", a.endpoint(routeMailbox, methodNotAllowed(allowMailbox)))

	// HEAD /health is harmless (net/http drops the body) and handy for
	// probes, so it stays with the GET pattern.
	mux.Handle("GET /health", a.endpoint(routeHealth, a.health)) // R6.1
	mux.Handle("/health", a.endpoint(routeHealth, methodNotAllowed(allowGetHead)))

	if a.opts.ServeMetrics {
		mh := MetricsHandler(set)
		mux.Handle("GET /metrics", a.endpoint(routeMetrics, func(w http.ResponseWriter, r *http.Request) error {
			mh.ServeHTTP(w, r)
			return nil
		})) // R6.2
		mux.Handle("/metrics", a.endpoint(routeMetrics, methodNotAllowed(allowGetHead)))
	}

	mux.Handle("/", a.endpoint(routeOther, func(http.ResponseWriter, *http.Request) error {
		return errNotFound
	}))
	return rt
}

// mailboxPrefix is the mailbox routes' path up to the recipient id.
const mailboxPrefix = "/v1/mailbox/"

// router sends a GET or POST whose path is the mailbox prefix and a
// recipient id's 64 characters, written plainly, straight to its endpoint,
// and every other request through mux. ServeMux would route the same
// requests to the same endpoints (TestRouterAgreesWithServeMux); skipping
// its pattern matching saves each mailbox request the path's unescaping,
// and under every parked long-poll router's frame (72 B) stands in for
// ServeMux's (88 B).
type router struct {
	mux     *http.ServeMux
	post    *postEndpoint
	receive *receiveEndpoint
}

func (rt *router) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if id, ok := strings.CutPrefix(r.URL.Path, mailboxPrefix); ok && len(id) == 2*actor.IDLen &&
		r.URL.RawPath == "" && strings.IndexByte(id, '/') < 0 {
		switch r.Method {
		case http.MethodPost:
			rt.post.ServeHTTP(w, r)
			return
		case http.MethodGet:
			rt.receive.ServeHTTP(w, r)
			return
		}
	}
	rt.mux.ServeHTTP(w, r)
}

// recipientSegment is the path segment after the mailbox prefix: the
// {id} ServeMux matched, or the one router checked.
func recipientSegment(r *http.Request) string {
	return strings.TrimPrefix(r.URL.Path, mailboxPrefix)
}

// handlerFunc is a handler that reports failure as an error for writeError
// instead of writing it itself.
type handlerFunc func(w http.ResponseWriter, r *http.Request) error

// endpoint adapts a handlerFunc: it answers errors through writeError and
// records the request's latency.
type endpoint struct {
	a       *api
	route   routeID
	fn      handlerFunc
	latency *[numMethods]*metrics.PrometheusHistogram // this route's row; entries nil without metrics
}

func (a *api) endpoint(rt routeID, fn handlerFunc) *endpoint {
	return &endpoint{a: a, route: rt, fn: fn, latency: &a.metrics.latency[rt]}
}

// ServeHTTP runs the handler, answers its error if any, and times the
// request under its route and method.
func (e *endpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	e.finish(w, r, start, e.fn(w, r))
}

// finish answers err, if any, and records the request's latency.
func (e *endpoint) finish(w http.ResponseWriter, r *http.Request, start time.Time, err error) {
	if r.ContentLength != 0 {
		e.a.limitBodyDrain(w, err)
	}
	if err != nil {
		e.a.writeError(w, r, e.route, err)
	}
	if h := e.latency[methodOf(r.Method)]; h != nil {
		h.UpdateDuration(start)
	}
}

// methodNotAllowed answers 405 with allow as the Allow header.
func methodNotAllowed(allow []string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) error {
		w.Header()["Allow"] = allow
		return errMethodNotAllowed
	}
}
