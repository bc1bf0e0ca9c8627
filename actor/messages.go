package actor

import (
	"errors"
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
	reply chan error
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
