// Package actor implements the mailbox actor: one goroutine per mailbox that
// alone owns its queue and its parked long-poll waiters, and serves post /
// get / requeue / sweep / evict / stop commands arriving on its inbox.
//
// The goroutine runs while commands are in flight and hibernates in
// between: when its inbox has no sender left it returns, and the next
// sender starts it again. The actor's state stays in its Mailbox, and at
// most one goroutine serves a mailbox at any time, so the state is still
// owned by exactly one goroutine at a time. A parked long-poll needs no
// goroutine on the actor's side (its Waiter sits in the actor's list and
// a timer that runs a function ends its wait), so an idle mailbox or one
// with a waiting long-poll costs its struct, not a 2 KiB stack and a
// goroutine descriptor: that is what brings a waiting long-poll within 15 % of the
// bare net/http baseline's memory (docs/architecture.md,
// docs/performance.md).
//
// A receive is the engine's from start to answer: StartReceive parks it,
// and whichever party ends the wait — the actor with a message, "none" or
// its stop, the deadline's timer with "none" — tells the caller's
// Receiver, once; the caller's Receipt withdraws it instead when its
// client leaves. Timers, pooling and the order of the Waiter's release are
// inside this package (docs/architecture.md, "The receive lifecycle").
package actor

import (
	"context"
	"errors"
	"math"
	"sync"
	"sync/atomic"
	"time"
)

// Stats are server-wide counters that every mailbox updates; metrics and
// /health read them without asking any actor.
type Stats struct {
	Posted, Delivered, Requeued atomic.Uint64
	EvictedTTL, EvictedMemory   atomic.Uint64
	QueuedMessages, QueuedBytes atomic.Int64
	Waiting                     atomic.Int64 // long-polls parked now
	// Busy counts the mailboxes that cannot be reclaimed (Z5): those
	// holding a message or a waiting long-poll. /health and the reclaim at
	// max_mailboxes read it instead of asking every actor.
	Busy atomic.Int64
}

// Options configure mailbox actors; the mailboxes of one owner share one
// (a pointer in each, not a copy: it is the bulk of an idle mailbox).
type Options struct {
	MaxQueueLength int
	TTL            time.Duration
	Now            func() time.Time
	Stats          *Stats
	// Recycler, shared by the mailboxes of one owner, reuses hot-path
	// commands; nil allocates afresh.
	Recycler *Recycler
	// OnStop runs on the actor's goroutine just before Done closes; the
	// supervisor unregisters the mailbox there, so that nobody finds a
	// stopped actor once Done is closed.
	OnStop func(*Mailbox)
}

// Mailbox is the handle to one mailbox actor. Its methods may be called from
// any goroutine; each turns into a command on the inbox.
type Mailbox struct {
	id    ID
	opts  *Options
	inbox chan command  // unbuffered: a command is either taken by run or refused through done
	done  chan struct{} // closed by run when the actor stops

	// life is the actor's runState and, above it, the number of senders
	// committed to the inbox and not yet served, in one word, so that one
	// compare-and-swap decides between "hibernate" and "serve the next
	// sender" (see send and run).
	life atomic.Uint64

	// Published by run after every command, read lock-free by the reaper
	// and the supervisor to pick eviction and reclaim candidates.
	queueLen    atomic.Int32
	headArrival atomic.Int64 // UnixNano of the oldest queued message; 0 when empty
	lastActive  atomic.Int64 // UnixNano of the last post, get or requeue
	waiters     atomic.Int32 // parked waiters, some possibly gone
	// busy is holdsMessages while the queue is not empty (set by the
	// actor in enqueued and dequeued, before it answers), plus
	// busyPerWaiter for each long-poll from StartReceive until it is
	// answered or cancelled; Stats.Busy counts the mailboxes where it is not 0.
	busy atomic.Int32
	// wakePending is set by Wake until the actor serves the wake-up.
	wakePending atomic.Bool

	// Owned by run.
	q        Queue     // where the messages live: &mem, or a shared store's
	mem      memQueue  // the queue of a mailbox held in this process
	parked   []*Waiter // oldest first; some may be gone, pruned lazily
	pruneAt  int       // prune gone waiters when len(waiters) reaches this
	stopping bool
}

// runState is what serves an actor: nobody (it hibernates), a goroutine
// running its commands, or nobody ever again. Mailbox.life holds it in its
// low bits.
type runState uint64

const (
	hibernating runState = iota // no goroutine; the next sender starts one
	running                     // a goroutine serves the inbox
	stopped                     // run has returned for good; senders get ErrStopped

	stateBits = 2
	stateMask = 1<<stateBits - 1
	oneSender = 1 << stateBits // one sender counted in Mailbox.life
)

// state is the actor's runState.
func (m *Mailbox) state() runState { return runState(m.life.Load() & stateMask) }

// Start makes the actor of a mailbox whose messages this process holds;
// its goroutine starts with the first command. firstSeq is the sequence
// of the first message posted here (R1.7); restore holds messages carried
// over from a state file, oldest first, with sequences below firstSeq.
func Start(id ID, opts *Options, firstSeq uint64, restore []Message) *Mailbox {
	m := newMailbox(id, opts)
	m.mem = memQueue{nextSeq: firstSeq, opts: opts}
	m.q = &m.mem
	for _, msg := range restore {
		m.mem.push(msg, false)
	}
	m.held()
	m.publish()
	return m
}

// StartShared makes the actor of a mailbox whose messages live in q, a
// store shared with other nodes (Z13): the actor keeps this node's
// waiters and serialises this node's calls on q.
func StartShared(id ID, opts *Options, q Queue) *Mailbox {
	m := newMailbox(id, opts)
	m.q = q
	m.publish()
	return m
}

func newMailbox(id ID, opts *Options) *Mailbox {
	m := &Mailbox{id: id, opts: opts, inbox: make(chan command), done: make(chan struct{}), pruneAt: 8}
	m.lastActive.Store(opts.Now().UnixNano())
	return m
}

// ID is the mailbox's recipient id.
func (m *Mailbox) ID() ID { return m.id }

// Done is closed once the actor has stopped and left the registry.
func (m *Mailbox) Done() <-chan struct{} { return m.done }

// QueueLen, HeadArrival and LastActive are the actor's last published state.
func (m *Mailbox) QueueLen() int { return int(m.queueLen.Load()) }

// HeadArrival is when the oldest queued message arrived, in UnixNano; 0 when empty.
func (m *Mailbox) HeadArrival() int64 { return m.headArrival.Load() }

// Waiters is the number of parked long-polls, counting some that may have
// given up since; only the actor knows exactly.
func (m *Mailbox) Waiters() int { return int(m.waiters.Load()) }

// LastActive is the time of the last post, get or requeue, in UnixNano.
func (m *Mailbox) LastActive() int64 { return m.lastActive.Load() }

// Busy reports whether the mailbox holds a message or a waiting long-poll,
// that is, whether it cannot be reclaimed (Z5).
func (m *Mailbox) Busy() bool { return m.busy.Load() != 0 }

// The parts of Mailbox.busy.
const (
	holdsMessages = 1
	busyPerWaiter = 2
)

// addBusy changes busy by d and counts the mailbox in Stats.Busy when it
// turns busy or idle. Each change is one atomic step, so the transitions
// of one mailbox alternate and Stats.Busy settles at the exact count.
func (m *Mailbox) addBusy(d int32) {
	n := m.busy.Add(d)
	switch {
	case n-d == 0:
		m.opts.Stats.Busy.Add(1)
	case n == 0:
		m.opts.Stats.Busy.Add(-1)
	}
}

// held records whether this process holds a message of the mailbox,
// before the command that changed it answers; only the actor's goroutine
// calls it, so its own bit is read without a race.
func (m *Mailbox) held() {
	n, _ := m.q.Held()
	if yes, had := n > 0, m.busy.Load()&holdsMessages != 0; had != yes {
		if yes {
			m.addBusy(holdsMessages)
		} else {
			m.addBusy(-holdsMessages)
		}
	}
}

// run serves cmd, then the inbox while senders are pending, then
// hibernates. A sender counts itself in life before it starts the
// goroutine or sends, and run hibernates only by a compare-and-swap that
// finds no sender counted: so the goroutine never waits on an inbox that
// nobody will send to, and a sender never sends to an inbox that nobody
// will read. Go's atomics are sequentially consistent; they also order one
// goroutine's writes to the actor's state before the next one's reads.
func (m *Mailbox) run(cmd command) {
	for {
		m.life.Add(^uint64(oneSender - 1)) // this command's sender is served
		cmd.handle(m)
		m.publish()
		if m.stopping {
			break
		}
		if m.life.CompareAndSwap(uint64(running), uint64(hibernating)) {
			return
		}
		cmd = <-m.inbox // a sender is counted: it is on its way
	}
	if m.opts.OnStop != nil {
		m.opts.OnStop(m)
	}
	for {
		// Senders still counted find done closed.
		old := m.life.Load()
		if m.life.CompareAndSwap(old, old&^stateMask|uint64(stopped)) {
			break
		}
	}
	close(m.done)
}

// send hands cmd to the actor: to a new goroutine if the actor hibernates
// (so the sender never waits for it to be scheduled), else through the
// inbox; it returns ErrStopped once the actor has stopped. It needs no
// context: a running actor serves every pending sender after a few
// commands' work, and each command's work is bounded.
func (m *Mailbox) send(cmd command) error {
	for {
		old := m.life.Load()
		if runState(old&stateMask) == hibernating {
			if m.life.CompareAndSwap(old, uint64(running)|oneSender) {
				go m.run(cmd)
				return nil
			}
			continue
		}
		if m.life.CompareAndSwap(old, old+oneSender) {
			break
		}
	}
	select {
	case m.inbox <- cmd:
		return nil
	case <-m.done:
		return ErrStopped
	}
}

// Post queues body, or hands it straight to the oldest live waiter.
func (m *Mailbox) Post(body []byte) (PostReply, error) {
	cmd := m.opts.Recycler.postCmd()
	cmd.body = body
	err := m.send(cmd)
	var res postResult
	if err == nil {
		res = <-cmd.reply
	} else {
		res.err = err
	}
	// The actor is done with cmd once it has answered, or if it never took it.
	cmd.body = nil
	if m.opts.Recycler != nil {
		m.opts.Recycler.postCmds.Put(cmd)
	}
	return res.r, res.err
}

// Recycler keeps the commands of the two hot paths, with their reply
// channels and timers, for reuse across the mailboxes that share it: each
// post→get pair used to allocate six objects here, a measurable share of
// the garbage that sets the collector's pace under load
// (docs/performance.md). A supervisor owns one; a nil Recycler allocates
// afresh. (Per owner rather than global: channels made inside a
// testing/synctest bubble must not leak into another.)
type Recycler struct {
	postCmds, waiters sync.Pool
}

func (r *Recycler) postCmd() *postCmd {
	if r != nil {
		if c, ok := r.postCmds.Get().(*postCmd); ok {
			return c
		}
	}
	return &postCmd{reply: make(chan postResult, 1)}
}

func (r *Recycler) waiter() *Waiter {
	if r != nil {
		if w, ok := r.waiters.Get().(*Waiter); ok {
			return w
		}
	}
	return new(Waiter)
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

// StartReceive asks for the oldest message and returns at once. to is
// told the answer once, on the goroutine that ended the wait (see
// Receiver), unless the returned Receipt's Cancel withdraws the receive
// first. The only error is ErrStopped, and then to is never told. ctx is
// the caller's: a receive whose context has ended is never handed a
// message (Z2); its caller cancels it.
//
// Everything the actor and the deadline read is set before the command
// goes to the actor: from then on the answer may come at any moment.
func (m *Mailbox) StartReceive(ctx context.Context, wait time.Duration, to Receiver) (Receipt, error) {
	w := m.opts.Recycler.waiter()
	w.ctx, w.mb, w.to = ctx, m, to
	gen := w.state.Load()&^phaseMask + oneGeneration // phase waiting
	w.state.Store(gen)
	w.cmd = getCmd{w: w, wait: wait > 0}
	if wait > 0 {
		w.timing = true
		m.addBusy(busyPerWaiter)
		if w.timer == nil {
			// Made idle, so that w.timer is set before it can fire.
			w.timer = time.AfterFunc(math.MaxInt64, w.expire)
		}
		w.timer.Reset(wait)
	}
	rc := Receipt{w: w, gen: gen}
	err := m.send(&w.cmd)
	if wait > 0 {
		// Counted once the actor has taken the command, so that a command
		// sent after the count is seen is served after this one. finish
		// may have run already: the count dips for that moment.
		m.opts.Stats.Waiting.Add(1)
	}
	if err != nil {
		if !rc.Cancel() {
			// The deadline came first and its "no message" is on its
			// way to to: that is the answer.
			return rc, nil
		}
		w.state.Store(gen | uint64(served)) // the actor never saw it: reusable
		w.recycle()
		return Receipt{}, err
	}
	return rc, nil
}

// Receipt names one receive to the caller of StartReceive, so that it can
// withdraw it. It stays harmless after the receive has ended: the Waiter,
// once reused, carries another generation.
type Receipt struct {
	w   *Waiter
	gen uint64 // the Waiter's state word while this receive waits
}

// Cancel withdraws a receive whose answer has not come, and reports
// whether it did: then its Receiver is never told. False means the answer
// has been or is being given to the Receiver (or there was no receive).
func (r Receipt) Cancel() bool {
	if r.w == nil || !r.w.state.CompareAndSwap(r.gen, r.gen|uint64(cancelled)) {
		return false
	}
	r.w.finish()
	return true
}

// finish releases what a waiting receive held; whoever moved the Waiter
// out of waiting runs it, once.
func (w *Waiter) finish() {
	if w.timing {
		w.late = !w.timer.Stop()
		w.timing = false
		w.mb.opts.Stats.Waiting.Add(-1)
		w.mb.addBusy(-busyPerWaiter)
	}
}

// recycle gives a served Waiter back for reuse. Only a waiter the actor
// served is reused: the actor is done with it once it has answered. A
// waiter its caller cancelled may still sit in the actor's list until the
// next prune, and one whose timer fired as it was served may still run
// expire, so those are left to the garbage collector.
func (w *Waiter) recycle() {
	if phase(w.state.Load()&phaseMask) != served || w.late || w.mb.opts.Recycler == nil {
		return
	}
	r := w.mb.opts.Recycler
	w.ctx, w.mb, w.to, w.cmd = nil, nil, nil, getCmd{}
	r.waiters.Put(w)
}

// Requeue puts a message whose delivery failed back at the head of the queue
// (Z2), or hands it to a live waiter.
func (m *Mailbox) Requeue(msg Message) error {
	cmd := &requeueCmd{msg: msg, reply: make(chan error, 1)}
	if err := m.send(cmd); err != nil {
		return err
	}
	return <-cmd.reply
}

// Sweep drops expired messages (R3.1, R3.2) and stops the actor when it
// holds no message and no live waiter and has been idle since before
// idleBefore (R3.3). A zero idleBefore never stops it.
func (m *Mailbox) Sweep(idleBefore time.Time) (SweepReply, error) {
	cmd := &sweepCmd{idleBefore: idleBefore, reply: make(chan SweepReply, 1)}
	if err := m.send(cmd); err != nil {
		return SweepReply{}, err
	}
	return <-cmd.reply, nil
}

// Evict drops the oldest messages that arrived no later than notAfter until
// need bytes are freed (R3.6).
func (m *Mailbox) Evict(notAfter time.Time, need int64) (EvictReply, error) {
	cmd := &evictCmd{notAfter: notAfter, need: need, reply: make(chan EvictReply, 1)}
	if err := m.send(cmd); err != nil {
		return EvictReply{}, err
	}
	return <-cmd.reply, nil
}

// Stop stops the actor whatever it holds and returns its queued messages,
// oldest first, for the state file. Parked waiters see ErrStopped. Stop on
// a stopped actor returns nil.
func (m *Mailbox) Stop() []Message {
	cmd := &stopCmd{reply: make(chan []Message, 1)}
	if m.send(cmd) != nil {
		return nil
	}
	msgs := <-cmd.reply
	<-m.done
	return msgs
}

// The handlers below run on the actor's goroutine.

func (c *postCmd) handle(m *Mailbox) {
	now := m.opts.Now()
	m.touch(now)
	p, err := m.q.Post(now, c.body, m.hasLiveWaiter())
	m.held()
	if err != nil {
		c.reply <- postResult{err: err}
		return
	}
	m.opts.Stats.Posted.Add(1)
	// The POST is answered first: whoever the waiter's Receiver wakes to
	// write the delivery is then what this processor runs next, rather
	// than the POST's goroutine (docs/architecture.md).
	c.reply <- postResult{r: PostReply{Seq: p.Seq, QueueLen: p.QueueLen}}
	if p.Taken.OK {
		m.handOut(p.Taken)
	}
}

func (c *getCmd) handle(m *Mailbox) {
	now := m.opts.Now()
	m.touch(now)
	w := c.w
	if w.ctx.Err() != nil {
		return // the caller has gone and cancels: nothing leaves the queue (Z2)
	}
	if c.wait && m.hasLiveWaiter() {
		m.park(w) // older waiters here are served first
		return
	}
	if c.wait {
		// Watch before the take, so that a message posted elsewhere
		// after the take wakes this actor: one take for a new long-poll.
		// A failed watch is retried by the store (see Queue.Watch).
		if errors.Is(m.q.Watch(m), ErrWatchPending) {
			m.park(w) // the store wakes this actor once the watch holds: its oldest waiter takes then
			return
		}
	}
	d, err := m.q.Take(now)
	m.held()
	if err == nil && !d.OK && c.wait {
		m.park(w)
		return
	}
	if !w.claim(served) {
		// The deadline or the caller came first: the message goes back.
		if d.OK {
			m.putBack(d.Message)
		}
		return
	}
	if d.OK {
		m.deliver(w, d)
		return
	}
	w.answer(Delivery{}, err)
}

func (c *requeueCmd) handle(m *Mailbox) {
	m.touch(m.opts.Now())
	m.opts.Stats.Requeued.Add(1)
	err := m.q.PutBack(c.msg)
	m.held()
	c.reply <- err
	if err == nil {
		m.serveParked()
	}
}

// wakeCmd tells the actor that a message may have arrived in a shared
// store; its oldest live waiters take what there is.
type wakeCmd struct{}

func (wakeCmd) handle(m *Mailbox) {
	m.wakePending.Store(false)
	m.serveParked()
	if !m.hasLiveWaiter() {
		m.q.Idle()
	}
}

func (c *sweepCmd) handle(m *Mailbox) {
	n, bytes := m.q.Sweep(m.opts.Now())
	m.held()
	r := SweepReply{Expired: n, ExpiredBytes: bytes}
	m.pruneWaiters()
	if len(m.parked) == 0 {
		m.q.Unwatch() // nobody here waits for another node's posts
	}
	held, _ := m.q.Held()
	if !c.idleBefore.IsZero() && held == 0 && len(m.parked) == 0 &&
		m.lastActive.Load() < c.idleBefore.UnixNano() {
		m.stopping = true
		r.Stopped = true
	}
	r.QueueLen = held
	c.reply <- r
}

func (c *evictCmd) handle(m *Mailbox) {
	n, bytes := m.q.Evict(c.notAfter, c.need)
	m.held()
	c.reply <- EvictReply{Evicted: n, Bytes: bytes}
}

func (c *stopCmd) handle(m *Mailbox) {
	msgs := m.q.Drain()
	m.held()
	m.q.Unwatch()
	// Parked waiters learn of the stop from their answer.
	for _, w := range m.parked {
		if w.claim(served) {
			w.answer(Delivery{}, ErrStopped)
		}
	}
	m.parked = nil
	m.stopping = true
	c.reply <- msgs
}

// Wake asks the actor to let its oldest live waiters take what the store
// holds: a shared store's watch calls it when another node posted. It
// returns at once; wake-ups that come while one is pending are one.
func (m *Mailbox) Wake() {
	if m.wakePending.CompareAndSwap(false, true) {
		go m.send(wakeCmd{}) // a stopped actor has no waiter to wake: its error says so
	}
}

// serveParked takes messages for the oldest live waiters for as long as
// the store has some; a shared store's failure leaves them waiting (its
// watch or the next wake-up tries again).
func (m *Mailbox) serveParked() {
	now := m.opts.Now()
	for m.hasLiveWaiter() {
		d, err := m.q.Take(now)
		m.held()
		if err != nil || !d.OK {
			return
		}
		m.handOut(d)
		if d.QueueLen == 0 {
			return
		}
	}
}

// handOut gives a taken message to the oldest live waiter, or puts it
// back when every waiter has gone meanwhile.
func (m *Mailbox) handOut(d Delivery) {
	if w := m.liveWaiter(); w != nil {
		m.deliver(w, d)
		return
	}
	m.putBack(d.Message)
}

// putBack returns a message taken for a waiter that has gone; a shared
// store that cannot take it now gets it back when its lease runs out.
func (m *Mailbox) putBack(msg Message) {
	if m.q.PutBack(msg) == nil {
		m.held()
	}
}

// deliver answers w, which the actor has moved to served, with d.
func (m *Mailbox) deliver(w *Waiter, d Delivery) {
	m.opts.Stats.Delivered.Add(1)
	w.answer(d, nil)
}

// park lists w, which waits for a message.
func (m *Mailbox) park(w *Waiter) {
	if len(m.parked) >= m.pruneAt {
		m.pruneWaiters()
	}
	m.parked = append(m.parked, w)
}

// hasLiveWaiter drops gone waiters from the head of the list and reports
// whether one that can take a message is left.
func (m *Mailbox) hasLiveWaiter() bool {
	for len(m.parked) > 0 {
		if !m.parked[0].gone() {
			return true
		}
		m.parked[0] = nil
		m.parked = m.parked[1:]
	}
	return false
}

// liveWaiter takes the oldest live waiter out of the list and moves it to
// served, skipping those that are gone; nil when none is left.
func (m *Mailbox) liveWaiter() *Waiter {
	for len(m.parked) > 0 {
		w := m.parked[0]
		m.parked[0] = nil
		m.parked = m.parked[1:]
		if w.ctx.Err() != nil || !w.claim(served) {
			continue
		}
		return w
	}
	return nil
}

// pruneWaiters drops waiters whose callers gave up; run calls it before
// the list would grow, so abandoned long-polls cannot pile up.
func (m *Mailbox) pruneWaiters() {
	live := m.parked[:0]
	for _, w := range m.parked {
		if !w.gone() {
			live = append(live, w)
		}
	}
	clear(m.parked[len(live):])
	m.parked = live
	m.pruneAt = max(8, 2*len(live))
}

func (m *Mailbox) touch(now time.Time) { m.lastActive.Store(now.UnixNano()) }

// publish exposes the state the reaper and supervisor pick candidates by.
func (m *Mailbox) publish() {
	n, head := m.q.Held()
	m.queueLen.Store(int32(n))
	m.headArrival.Store(head)
	m.waiters.Store(int32(len(m.parked)))
}
