package actor

import "errors"

// What an engine over many mailboxes (the supervisor) answers with besides
// a mailbox's own answers. They live here, with the mailbox's types, so
// that the HTTP layer depends on the engine's vocabulary and not on the
// engine.

// Errors an engine answers with besides ErrQueueFull and ErrStopped.
var (
	// ErrOverloaded: a new mailbox or more queue memory is needed and none
	// can be reclaimed (Z5, R3.5).
	ErrOverloaded = errors.New("server is at its mailbox or memory limit")
	// ErrClosed: the engine is shutting down.
	ErrClosed = errors.New("supervisor is closed")
)

// Snapshot is the engine's live counters, which /health reports.
type Snapshot struct {
	Mailboxes int
	// Busy is how many of them cannot be reclaimed: they hold a message
	// or a waiting long-poll (Z5).
	Busy        int
	Messages    int64
	QueuedBytes int64
	Waiting     int64
	// Overloaded is the engine's verdict on its limits (R6.5), which
	// /health reports: queued bytes at or above 90 % of the memory limit,
	// or max_mailboxes mailboxes alive and every one of them busy, so
	// that none can be reclaimed for a new id. An empty mailbox without a
	// waiter makes room for a new one at once (Z5), so it leaves the
	// server healthy. A zero limit is not checked.
	Overloaded bool
	// StoreUnavailable: the shared store does not answer (Z13).
	StoreUnavailable bool
}
