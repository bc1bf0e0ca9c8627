// Package httpapi is the HTTP layer of zrc-rendezvous: it only turns
// requests into calls on the mailbox engine and the engine's replies into
// responses (SPEC "HTTP API"). It reaches the engine through Mailboxes,
// which the supervisor satisfies; it speaks the engine's vocabulary
// (package actor) and does not import the engine itself.
package httpapi

import (
	"context"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
)

// Mailboxes is what the HTTP layer needs of the mailbox engine.
type Mailboxes interface {
	Post(ctx context.Context, id actor.ID, body []byte) (actor.PostReply, error)
	// StartReceive starts a receive and returns at once; to is told how
	// it ended, once, on whichever goroutine ended it, unless the
	// Receipt's Cancel withdraws it first. After an error to is never
	// told. The engine owns the waiting: its timer, its pooling, and the
	// rule that a receive whose context has ended takes no message (Z2).
	StartReceive(ctx context.Context, id actor.ID, wait time.Duration, to actor.Receiver) (actor.Receipt, error)
	Requeue(id actor.ID, msg actor.Message) error
	// Acknowledge settles a message whose response reached the
	// connection: a shared store forgets its lease (Z13).
	Acknowledge(id actor.ID, msg actor.Message) error
	Snapshot() actor.Snapshot
	// Epoch names the lineage of the queued state (Z9), for every 200,
	// 202 and 204 of the mailbox routes and for /health. It may change
	// while the server runs (a shared store that lost its data).
	Epoch() string
}

// Options configure the handler. cmd builds them from conf.Config.
type Options struct {
	MaxMessageSize  int64         // bytes; larger bodies answer 413 (R1.4)
	LongPollDefault time.Duration // wait when wait_ms is absent (R2.2)
	LongPollMax     time.Duration // clamp for wait_ms (R2.2)
	// ServeMetrics serves GET /metrics on this handler; false when metrics
	// are off or served on metrics_listen through MetricsHandler.
	ServeMetrics bool
	Version      string    // reported by /health
	Started      time.Time // for /health's uptime_seconds; zero: when New ran
	// BodyReadTimeout bounds reading one POST body; zero: 30 s.
	BodyReadTimeout time.Duration
	// AnswerIdle is how long an idle answer goroutine waits for the next
	// answer before it ends (see answerLoop); zero: 2 s.
	AnswerIdle time.Duration
}

// Deps is everything New needs.
type Deps struct {
	Mailboxes Mailboxes
	Logger    *zap.Logger  // nil: no logs
	Metrics   *metrics.Set // nil: no metrics; New registers its series here, once per set
	// Conns counts the main listener's open connections for /health,
	// which reports them and answers 503 overloaded at the cap; nil: not
	// reported.
	Conns *ConnLimit
	// Guard applies the source lists, rate limits and authentication to
	// the mailbox routes (R4, R5); nil: none of them.
	Guard *guard.Guard
	// Pending counts the GETs being answered, for shutdown to wait on
	// (Z12); nil: not counted.
	Pending *Pending
	Options Options
}

// api holds what the handlers share. It is read-only after New, except for
// the pool and the metrics, which are safe for concurrent use.
type api struct {
	mb      Mailboxes
	conns   *ConnLimit   // nil: connections not counted
	pending *Pending     // nil: GETs not counted
	guard   *guard.Guard // nil: no limits, lists or authentication
	log     *zap.Logger
	opts    Options
	metrics apiMetrics
	// epoch is the X-Mailbox-Epoch header value of the engine's latest
	// epoch (epochHeader).
	epoch atomic.Pointer[[]string]
	// postAnswers and getAnswers hold *postAnswer and *getAnswer values:
	// a mailbox request's answer is written on an answer goroutine
	// (offstack.go); idle ones wait on answerers for the next.
	postAnswers, getAnswers sync.Pool
	answerers               chan answerWriter
}

// New returns the HTTP handler for the mailbox API, /health and (with
// Options.ServeMetrics) /metrics.
func New(d Deps) http.Handler {
	a := &api{mb: d.Mailboxes, conns: d.Conns, pending: d.Pending, guard: d.Guard, log: d.Logger, opts: d.Options}
	if a.log == nil {
		a.log = zap.NewNop()
	}
	if a.opts.Started.IsZero() {
		a.opts.Started = time.Now()
	}
	if a.opts.BodyReadTimeout <= 0 {
		a.opts.BodyReadTimeout = bodyReadTimeout
	}
	if a.opts.AnswerIdle <= 0 {
		a.opts.AnswerIdle = answerIdle
	}
	a.postAnswers.New = func() any { return &postAnswer{offStack: offStack{done: make(chan struct{}, 1)}} }
	a.getAnswers.New = func() any { return &getAnswer{offStack: offStack{done: make(chan struct{}, 1)}} }
	a.answerers = make(chan answerWriter)
	a.metrics = newAPIMetrics(d.Metrics)
	return a.routes(d.Metrics)
}
