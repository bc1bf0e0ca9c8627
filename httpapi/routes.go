package httpapi

import (
	"net/http"
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
// ServeMux's own plain-text 404 and 405 never reach a client (Z8). The
// mailbox endpoints are in mailbox.go; they write their answers on an
// answer goroutine (offstack.go says why).
func (a *api) routes(set *metrics.Set) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("POST "+mailboxPrefix+"{id}", &postEndpoint{a.endpoint(routeMailbox, nil)})   // R1.1
	mux.Handle("GET "+mailboxPrefix+"{id}", &receiveEndpoint{a.endpoint(routeMailbox, nil)}) // R2.1
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
	return mux
}

// mailboxPrefix is the mailbox routes' path up to the recipient id.
const mailboxPrefix = "/v1/mailbox/"

// recipientID parses the {id} the mailbox routes matched.
func recipientID(r *http.Request) (actor.ID, error) { return actor.ParseID(r.PathValue("id")) }

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
