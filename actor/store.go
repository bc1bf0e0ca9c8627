package actor

import (
	"errors"
	"time"
)

// ErrStoreUnavailable: a shared store did not answer within its deadline
// (Z13). Nothing was accepted or taken by the call that failed.
var ErrStoreUnavailable = errors.New("message store is unavailable")

// ErrWatchPending: Queue.Watch has asked the store for wake-ups, and the
// store wakes the actor once they hold; until then a take could miss a
// post that no wake-up would tell of.
var ErrWatchPending = errors.New("the watch holds once the store confirms it")

// Queue holds one mailbox's messages: in this process (the default; see
// Start) or in a store that several nodes share (StartShared; package
// supervisor/redisstore). Only the mailbox's actor calls it, one call at a
// time, so an implementation needs no locks for its own state; a call may
// wait on the network. Every method drops what the TTL expired before it
// looks at the head, so an expired message is never delivered (R3.1).
type Queue interface {
	// Post accepts body as the newest message: it refuses a full queue
	// (ErrQueueFull) and assigns the next sequence. With take set, a
	// waiter of this actor is ready, and the oldest message is taken for
	// it in the same step (Posted.Taken). A queue in this process hands
	// the message over without queueing it when it is the only one (its
	// QueueLen is then 0, R1); a shared one always passes it through the
	// queue, so QueueLen counts it (Z13).
	Post(now time.Time, body []byte, take bool) (Posted, error)
	// Take removes the oldest message; Delivery.OK is false when none is
	// queued. A shared store leases it to this node until it is
	// acknowledged (Store.Ack) or put back.
	Take(now time.Time) (Delivery, error)
	// PutBack returns a taken message to the head of the queue (Z2).
	PutBack(msg Message) error
	// Watch asks the store to call w.Wake whenever a message may have
	// arrived that another node posted. nil: that holds from the moment
	// Watch returns, so a take after it misses nothing that a wake-up
	// would not tell. ErrWatchPending: it holds once the store confirms
	// it, and the store calls w.Wake then; the caller parks its waiter
	// rather than take, and takes on that wake-up (so no actor waits on
	// the network for the confirmation). On another error the store keeps
	// trying to watch, and meanwhile wakes w now and then whatever was
	// posted. A queue in this process sees every post itself: it never
	// wakes anyone.
	Watch(w Waker) error
	// Unwatch ends a watch; wake is not called after it returns.
	Unwatch()
	// Idle says that no waiter of this actor waits after a wake-up: a
	// shared store returns what other nodes handed this node ahead of a
	// take to the queue.
	Idle()
	// Sweep drops expired messages held in this process.
	Sweep(now time.Time) (n int, bytes int64)
	// Evict drops the oldest messages held in this process that arrived
	// no later than notAfter until need bytes are freed (R3.6).
	Evict(notAfter time.Time, need int64) (n int, bytes int64)
	// Drain removes and returns the messages held in this process, oldest
	// first, for the state file; a shared store keeps its own.
	Drain() []Message
	// Held is how many messages this process holds and when the oldest
	// arrived (UnixNano, 0 when none), for the reaper and /health.
	Held() (n int, headArrival int64)
}

// Waker is woken by a shared store's watch; Wake must return at once.
// *Mailbox is one (an interface over the pointer, so a watch allocates
// nothing).
type Waker interface{ Wake() }

// Posted answers an accepted post.
type Posted struct {
	Seq      uint64
	QueueLen int
	// Taken is the message taken for a waiter when Post was asked to
	// take one (OK false: there was none to take).
	Taken Delivery
}

// memQueue is a Queue in this process: the ring buffer and the sequence
// counter of one mailbox, with the server-wide queue counters kept as it
// changes.
type memQueue struct {
	q       queue
	nextSeq uint64
	opts    *Options
}

func (mq *memQueue) Post(now time.Time, body []byte, take bool) (Posted, error) {
	mq.dropExpired(now)
	if mq.q.len() >= mq.opts.MaxQueueLength {
		return Posted{}, ErrQueueFull
	}
	msg := Message{Seq: mq.nextSeq, Body: body, Arrived: now}
	mq.nextSeq++
	if take && mq.q.len() == 0 {
		return Posted{Seq: msg.Seq, Taken: Delivery{Message: msg, OK: true}}, nil
	}
	mq.push(msg, false)
	p := Posted{Seq: msg.Seq, QueueLen: mq.q.len()}
	if take {
		p.Taken = mq.pop()
	}
	return p, nil
}

func (mq *memQueue) Take(now time.Time) (Delivery, error) {
	mq.dropExpired(now)
	if mq.q.len() == 0 {
		return Delivery{}, nil
	}
	return mq.pop(), nil
}

func (mq *memQueue) PutBack(msg Message) error {
	mq.push(msg, true)
	return nil
}

func (mq *memQueue) Watch(Waker) error { return nil }

func (mq *memQueue) Unwatch() {}

func (mq *memQueue) Idle() {}

func (mq *memQueue) Sweep(now time.Time) (int, int64) { return mq.dropExpired(now) }

func (mq *memQueue) Evict(notAfter time.Time, need int64) (n int, bytes int64) {
	for mq.q.len() > 0 && bytes < need && !mq.q.front().Arrived.After(notAfter) {
		n++
		bytes += int64(len(mq.pop().Message.Body))
	}
	mq.opts.Stats.EvictedMemory.Add(uint64(n))
	return n, bytes
}

func (mq *memQueue) Drain() []Message {
	msgs := make([]Message, 0, mq.q.len())
	for mq.q.len() > 0 {
		msgs = append(msgs, mq.pop().Message)
	}
	return msgs
}

func (mq *memQueue) Held() (int, int64) {
	if mq.q.len() == 0 {
		return 0, 0
	}
	return mq.q.len(), mq.q.front().Arrived.UnixNano()
}

// dropExpired removes messages older than the TTL from the head; arrival
// order makes the head the oldest (R3.1).
func (mq *memQueue) dropExpired(now time.Time) (n int, bytes int64) {
	for mq.q.len() > 0 && now.Sub(mq.q.front().Arrived) >= mq.opts.TTL {
		n++
		bytes += int64(len(mq.pop().Message.Body))
	}
	if n > 0 {
		mq.opts.Stats.EvictedTTL.Add(uint64(n))
	}
	return n, bytes
}

func (mq *memQueue) push(msg Message, front bool) {
	if front {
		mq.q.pushFront(msg)
	} else {
		mq.q.pushBack(msg)
	}
	mq.opts.Stats.QueuedMessages.Add(1)
	mq.opts.Stats.QueuedBytes.Add(int64(len(msg.Body)))
}

func (mq *memQueue) pop() Delivery {
	msg := mq.q.popFront()
	mq.opts.Stats.QueuedMessages.Add(-1)
	mq.opts.Stats.QueuedBytes.Add(-int64(len(msg.Body)))
	return Delivery{Message: msg, QueueLen: mq.q.len(), OK: true}
}
