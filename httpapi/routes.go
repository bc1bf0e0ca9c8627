package httpapi

import (
	"context"
	"net/http"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

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

// A connection's goroutine keeps the largest stack it has grown to: the
// runtime halves a parked goroutine's stack only while under a quarter of
// it is in use, and net/http's own frames under a handler already take
// about 1.3 KiB. net/http's response header writer alone has a 2.8 KiB
// frame, so any connection that has answered a request the usual way
// waits for its next one — a long-poll, perhaps — on 8 KiB. The mailbox
// routes therefore write their answers on an answer goroutine (answerLoop,
// kept for reuse at 8 KiB), and a long-poll's connection waits on 4 KiB
// whatever it served before (docs/performance.md has the numbers).

// postEndpoint serves POST /v1/mailbox/{id}: the message is accepted on
// the connection's goroutine, so that its delivery to a waiting GET takes
// no extra hand-off, and the answer is written off it.
type postEndpoint struct{ *endpoint }

func (e *postEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rep, id, n, err := e.a.acceptPost(w, r)
	an := e.newAnswer(w, r, start)
	an.rep, an.id, an.n, an.err = rep, id, n, err
	an.writeOffStack()
}

// receiveEndpoint serves GET /v1/mailbox/{id}. A long-poll parks the
// connection's goroutine, so this ServeHTTP is the frame the wait happens
// under, with nothing between it and its select but small frames: the
// checks live in a function that has returned before the wait (creating
// the mailbox is the deepest point before it, and stays under 4 KiB), and
// the answer is written off the connection's goroutine.
//
// The answer is the receive's Notifier: the actor (or the deadline) hands
// it straight to an answer goroutine, so that a delivery is written
// without first waking this goroutine, which waits for the answer to be
// written and only then returns.
type receiveEndpoint struct{ *endpoint }

func (e *receiveEndpoint) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	// The answer is taken first: across the wait this frame holds it
	// rather than what it carries.
	an := e.newAnswer(w, r, time.Now())
	rc, id, wait, err := e.a.checkReceive(w, r)
	an.get, an.rc, an.id = true, rc, id
	var wt *actor.Waiter
	if err == nil {
		// Counted from before the receive can take a message until its
		// answer is written or the message put back (Pending).
		e.a.pending.add()
		if wt, err = e.a.mb.StartReceive(r.Context(), id, wait, an); wt == nil {
			e.a.pending.done()
		}
	}
	if wt == nil {
		an.err = err
		an.writeOffStack()
		return
	}
	// From here on, rc is the answer goroutine's: Notify may have run
	// already. wt stays this goroutine's: it is released only here, after
	// the answer, because a Cancel on a Waiter already back in the pool
	// could withdraw another request's receive.
	select {
	case <-an.done:
	case <-r.Context().Done():
		if wt.Cancel() {
			rc.wt, an.err = wt, context.Cause(r.Context())
			an.dispatch()
		}
		<-an.done
	}
	e.a.pending.done()
	wt.Release()
	an.recycle()
}

// answer carries a mailbox request from its connection's goroutine to the
// goroutine that writes its answer; api.answers keeps them, with their
// done channels, for reuse.
type answer struct {
	e     *endpoint
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	get   bool        // a GET whose wait is over: answer rc and err; else a POST
	rc    *pendingGet // a GET's outcome, for answerReceive
	rep   actor.PostReply
	n     int      // a POST's body length, for its log line
	id    actor.ID // the recipient
	err   error
	panic any           // what write recovered, to panic with again
	done  chan struct{} // buffered: write's last act, in its deferred func
}

// newAnswer takes an answer from the pool for a request to e that started
// at start.
func (e *endpoint) newAnswer(w http.ResponseWriter, r *http.Request, start time.Time) *answer {
	an := e.a.answers.Get().(*answer)
	an.e, an.w, an.r, an.start = e, w, r, start
	return an
}

// writeOffStack has an answer goroutine run write, waits for it and
// returns an to the pool.
func (an *answer) writeOffStack() {
	an.dispatch()
	<-an.done
	an.recycle()
}

// Notify hands a GET's answer, whose wait on wt is over, to an answer
// goroutine (actor.Notifier): it runs on the actor's goroutine or the
// deadline's.
func (an *answer) Notify(wt *actor.Waiter) {
	an.rc.wt = wt
	an.dispatch()
}

// dispatch has an answer goroutine run write: an idle one, or a new one.
func (an *answer) dispatch() {
	select {
	case an.e.a.answerers <- an:
	default:
		go an.e.a.answerLoop(an)
	}
}

// recycle returns an, once written, to the pool. A panic in write is
// raised again here, on the connection's goroutine, where net/http
// recovers it as it would any handler's: on write's own goroutine it would
// end the process.
func (an *answer) recycle() {
	a, p := an.e.a, an.panic
	*an = answer{done: an.done}
	a.answers.Put(an)
	if p != nil {
		panic(p)
	}
}

// answerIdle is Options.AnswerIdle's default.
const answerIdle = 2 * time.Second

// answerLoop is an answer goroutine: it writes an, then the answers
// handed to it while idle, until none has come for Options.AnswerIdle.
// Kept for reuse, it keeps the 8 KiB stack net/http's header writer
// needs; a goroutine per answer grew to it every time (2.5 % of the
// server's CPU under load).
func (a *api) answerLoop(an *answer) {
	idle := time.NewTimer(a.opts.AnswerIdle)
	defer idle.Stop()
	for {
		an.write()
		idle.Reset(a.opts.AnswerIdle)
		select {
		case an = <-a.answerers:
		case <-idle.C:
			return
		}
	}
}

// write answers the POST or the GET — every outcome writes its own
// status, a client that has left too (Z10) — and puts the answer on the
// connection before the handler returns, so that net/http writes nothing
// more on the connection's goroutine. The answer to a request whose
// context is done (a client that has left, a shutdown's 503) is not
// flushed here but left to net/http.
func (an *answer) write() {
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				// net/http's log line will show the connection's stack;
				// this one shows where the panic happened.
				an.e.a.log.Error("panic serving a mailbox request", zap.Any("panic", p), zap.StackSkip("stack", 1))
			}
			an.panic = p
		}
		an.done <- struct{}{}
	}()
	e, w, r := an.e, an.w, an.r
	var err error
	if an.get {
		err = e.a.answerReceive(w, r, an.rc, an.id, an.err)
	} else {
		err = e.a.answerPost(w, an.rep, an.id, an.n, an.err)
	}
	e.finish(w, r, an.start, err)
	if r.Context().Err() == nil {
		_ = http.NewResponseController(w).Flush()
	}
}

// methodNotAllowed answers 405 with allow as the Allow header.
func methodNotAllowed(allow []string) handlerFunc {
	return func(w http.ResponseWriter, _ *http.Request) error {
		w.Header()["Allow"] = allow
		return errMethodNotAllowed
	}
}
