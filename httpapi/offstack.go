package httpapi

import (
	"net/http"
	"sync"
	"time"

	"go.uber.org/zap"
)

// The stack rule. A connection's goroutine keeps the largest stack it has
// grown to: the runtime halves a parked goroutine's stack only while under
// a quarter of it is in use, and net/http's own frames under a handler
// already take about 1.3 KiB. net/http's response header writer alone has
// a 2.8 KiB frame, so a connection that has answered a request the usual
// way would wait for its next one — a long-poll, perhaps — on 8 KiB. So
// the mailbox routes write their answers on an answer goroutine
// (writeOffStack), and nothing on a GET's path up to its wait may be deep
// (the checks return before the wait; creating a mailbox is the deepest
// point): a parked long-poll's connection then waits on 4 KiB, whatever it
// served before. TestProcessParkedStackFootprint and
// TestProcessStackFootprintAfterAnswers (cmd/zrc-rendezvous) guard it;
// docs/performance.md has the numbers.
//
// This is the one exception to "only the handler's goroutine writes to its
// ResponseWriter": the handler hands its writer to an answer goroutine and
// returns only once that goroutine is done with it (offStack.done), so the
// writes still happen inside ServeHTTP, one goroutine at a time, with the
// channel ordering them.

// answerWriter is a mailbox answer that an answer goroutine writes:
// postAnswer or getAnswer.
type answerWriter interface {
	// answer writes the response, or returns the error for
	// endpoint.finish to write.
	answer() error
	stack() *offStack
}

// offStack is what every off-stack answer carries: the request and the
// signal back to its handler.
type offStack struct {
	e     *endpoint
	w     http.ResponseWriter
	r     *http.Request
	start time.Time
	panic any           // what write recovered, to panic with again on the handler's goroutine
	done  chan struct{} // buffered: write's last act
}

func (o *offStack) stack() *offStack { return o }

// writeOffStack has an answer goroutine write an — an idle one, or a new
// one — and returns at once; the handler waits on an's done channel and
// then gives an back with recycle. It may run on any goroutine: a GET's
// answer starts from the actor's or the deadline's (getAnswer.Received).
func writeOffStack(an answerWriter) {
	a := an.stack().e.a
	select {
	case a.answerers <- an:
	default:
		go a.answerLoop(an)
	}
}

// recycle returns an answer, once written, to its pool. A panic in its
// write is raised again here, on the connection's goroutine, where
// net/http recovers it as it would any handler's: on the answer
// goroutine it would end the process.
func recycle[T any, P interface {
	*T
	answerWriter
}](pool *sync.Pool, an P) {
	o := an.stack()
	p, done := o.panic, o.done
	var zero T
	*an = zero
	an.stack().done = done
	pool.Put(an)
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
func (a *api) answerLoop(an answerWriter) {
	idle := time.NewTimer(a.opts.AnswerIdle)
	defer idle.Stop()
	for {
		write(an)
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
func write(an answerWriter) {
	o := an.stack()
	defer func() {
		if p := recover(); p != nil {
			if p != http.ErrAbortHandler {
				// net/http's log line will show the connection's stack;
				// this one shows where the panic happened.
				o.e.a.log.Error("panic serving a mailbox request", zap.Any("panic", p), zap.StackSkip("stack", 1))
			}
			o.panic = p
		}
		o.done <- struct{}{}
	}()
	o.e.finish(o.w, o.r, o.start, an.answer())
	if o.r.Context().Err() == nil {
		_ = http.NewResponseController(o.w).Flush()
	}
}
