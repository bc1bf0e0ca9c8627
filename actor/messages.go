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
	stopped  bool // the actor stopped: Await returns ErrStopped
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
// waiter is parked until a message arrives or the caller gives up.
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

// Waiter states. The actor moves waiting→served before it sends a delivery;
// the caller moves waiting→cancelled when it gives up. Whoever wins the
// compare-and-swap decides, so a message is handed to exactly one party.
const (
	waiting int32 = iota
	served
	cancelled
)

// Waiter is a receive in progress: Mailbox.Park hands it to the actor, and
// its Notifier learns when the answer is in, on the goroutine that ended
// the wait. The caller then takes the answer with Collect, or waits for it
// in Await. Splitting the two keeps the stack of a parked long-poll
// shallow: the HTTP handler waits right under its own frame, so that
// net/http's connection goroutine fits a 4 KiB stack while it waits
// (docs/performance.md).
//
// Its one notification comes from whichever party moved it out of
// waiting: the actor (a message, "none", or a stop, written to got first)
// or the deadline's timer (got left empty). A timer that runs a function,
// rather than a Delivery channel and a timer channel, spares every parked
// long-poll a timer channel, a wait record and the Delivery buffer
// (docs/performance.md).
type Waiter struct {
	ctx    context.Context
	state  atomic.Int32
	notify Notifier
	ready  readySignal // Await's Notifier, made on first use
	mb     *Mailbox
	cmd    getCmd      // the command that carries it, allocated with it
	timer  *time.Timer // runs expire; kept across reuses
	// timing is set while timer runs for a receive that waits.
	timing bool
	// late is set when the timer could not be stopped: its expire may
	// still run, so the Waiter is not reused.
	late bool
	got  Delivery // written before notify is told
}

// Notifier learns that a Waiter's answer is in. Notify is called once per
// Park, on the actor's goroutine or the deadline timer's, possibly before
// Park has returned, so it carries the Waiter and must return at once;
// whoever it wakes takes the answer with Collect.
type Notifier interface{ Notify(*Waiter) }

// readySignal is the Notifier Await waits on: a channel with a buffer of
// one.
type readySignal chan struct{}

func (c readySignal) Notify(*Waiter) { c <- struct{}{} }

// answer gives the waiter its delivery; the caller has moved it from
// waiting to served.
func (w *Waiter) answer(d Delivery) {
	w.got = d
	w.notify.Notify(w)
}

// expire is the deadline of a receive that waits, run by its timer: the
// answer is "no message" unless the actor or the caller got there first.
func (w *Waiter) expire() {
	if w.state.CompareAndSwap(waiting, cancelled) {
		w.notify.Notify(w)
	}
}

// gone reports whether the waiter can no longer take a message: its caller
// gave up or its client has left (Z2).
func (w *Waiter) gone() bool {
	return w.state.Load() != waiting || w.ctx.Err() != nil
}
