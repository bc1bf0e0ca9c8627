package actor

import (
	"context"
	"errors"
	"sync/atomic"
	"time"
)

// Errors a mailbox answers with.
var (
	// ErrQueueFull: the mailbox already holds MaxQueueLength messages (R1.6).
	ErrQueueFull = errors.New("mailbox queue is full")
	// ErrStopped: the actor has stopped; the caller looks the mailbox up
	// again, which spawns a fresh actor (a post never vanishes into a
	// stopping actor).
	ErrStopped = errors.New("mailbox actor has stopped")
)

// Message is one accepted envelope.
type Message struct {
	Seq     uint64
	Body    []byte
	Arrived time.Time // for TTL (R1.8)
}

// Delivery answers a receive. OK is false when no message came.
type Delivery struct {
	Message  Message
	QueueLen int // messages still queued after this one (R2.8)
	OK       bool
}

// PostReply answers an accepted post.
type PostReply struct {
	Seq      uint64
	QueueLen int // queued right after the post; 0 when a waiter took it at once
}

// SweepReply reports what one sweep did to one mailbox.
type SweepReply struct {
	Expired      int   // messages dropped for TTL
	ExpiredBytes int64 // their bytes
	QueueLen     int   // after the sweep
	Stopped      bool  // the mailbox was idle and has stopped
}

// EvictReply reports a memory eviction.
type EvictReply struct {
	Evicted int
	Bytes   int64
}

// Commands. Each carries a reply channel with a buffer of one, so the actor
// never blocks on a caller; a command the actor has received is always
// answered.
type command interface{ handle(m *Mailbox) }

type postCmd struct {
	body  []byte
	reply chan postResult
}

type postResult struct {
	r   PostReply
	err error
}

// getCmd asks for the oldest message; with wait set and none queued, the
// waiter is parked until a message arrives, the deadline passes or the
// caller gives up.
type getCmd struct {
	w    *Waiter
	wait bool
}

type requeueCmd struct {
	msg   Message
	reply chan struct{}
}

type sweepCmd struct {
	idleBefore time.Time // stop if idle since before this; zero: never stop
	reply      chan SweepReply
}

type evictCmd struct {
	notAfter time.Time // evict only messages that arrived at or before this
	need     int64     // stop once this many bytes are freed
	reply    chan EvictReply
}

type stopCmd struct {
	reply chan []Message
}

// phase is where one receive stands. A Waiter leaves waiting once, by a
// compare-and-swap, and whoever wins it answers: the actor (served: a
// message, "none", or the stop), the deadline's timer (expired: "none"),
// or the caller's Receipt.Cancel (cancelled: nobody is told). So a message
// is handed to exactly one party.
type phase uint64

const (
	waiting   phase = iota // parked or on its way to the actor
	served                 // the actor answered; it is done with the Waiter
	expired                // the deadline answered "none"; the actor may still list it
	cancelled              // the caller withdrew it; the actor may still list it

	phaseBits     = 2
	phaseMask     = 1<<phaseBits - 1
	oneGeneration = 1 << phaseBits
)

// Waiter is one receive in progress: StartReceive hands it to the actor
// in a getCmd, and the party that ends the wait tells its Receiver. No
// goroutine waits on the engine's side, and the Receiver decides where
// the answer is written: that keeps the stack of a parked long-poll
// shallow (docs/architecture.md, docs/performance.md). A timer that runs
// a function, rather than a timer channel, spares every parked long-poll
// a channel and a wait record.
//
// Served Waiters are reused (Recycler); the generation in state tells a
// stale Receipt from the receive it names.
type Waiter struct {
	// state is the receive's generation and, in its low bits, its phase.
	// StartReceive stores a new generation before the command goes out;
	// then the actor, the timer and Receipt.Cancel race to move it out of
	// waiting by compare-and-swap (claim, Receipt.Cancel).
	state atomic.Uint64

	// Written by StartReceive before the command goes to the actor, then
	// only read (by the actor, the timer's goroutine and the canceller)
	// until recycle clears them.
	ctx context.Context
	mb  *Mailbox
	to  Receiver
	cmd getCmd // the command that carries it, allocated with it

	// timer is made by the first StartReceive that waits and kept across
	// reuses; its function is expire.
	timer *time.Timer

	// timing is set by StartReceive while timer runs for a receive that
	// waits; late is set when the timer could not be stopped (its expire
	// may still run, so the Waiter is not reused). After StartReceive
	// both belong to the party that moved state out of waiting, which
	// runs finish.
	timing bool
	late   bool
}

// Receiver is told how a receive ended: a message (Delivery.OK), none
// (the wait passed, or nothing was queued for a receive that does not
// wait), or an error (ErrStopped when the actor stopped). Received is
// called once per receive unless Receipt.Cancel withdrew it, on the
// goroutine that ended the wait: the actor's, the deadline timer's, or
// the caller's own before StartReceive returns. It must return at once:
// the actor serves nothing else meanwhile.
type Receiver interface {
	Received(d Delivery, err error)
}

// claim moves the Waiter from waiting to p, and reports whether it did.
func (w *Waiter) claim(p phase) bool {
	old := w.state.Load()
	return phase(old&phaseMask) == waiting && w.state.CompareAndSwap(old, old|uint64(p))
}

// answer tells the Receiver of a waiter the actor has claimed, and gives
// the Waiter back for reuse: it runs on the actor's goroutine.
func (w *Waiter) answer(d Delivery, err error) {
	w.finish()
	w.to.Received(d, err)
	w.recycle()
}

// expire is the deadline of a receive that waits, run by its timer: the
// answer is "no message" unless the actor or the caller got there first.
func (w *Waiter) expire() {
	if w.claim(expired) {
		w.finish()
		w.to.Received(Delivery{}, nil)
	}
}

// gone reports whether the waiter can no longer take a message: it was
// answered or withdrawn, or its client has left (Z2).
func (w *Waiter) gone() bool {
	return phase(w.state.Load()&phaseMask) != waiting || w.ctx.Err() != nil
}
