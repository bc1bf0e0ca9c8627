package httpapi

import (
	"context"
	"sync/atomic"
)

// Pending counts the GETs being served on the mailbox routes, from before
// their receive can take a message until the answer is written or the
// message put back. http.Server.Close does not wait for handlers, so after
// it a failed write may still put a message back; shutdown waits for
// Pending to reach zero before it takes the supervisor's leftovers for the
// state file (Z12). Its methods are safe for concurrent use; a nil
// *Pending counts nothing.
type Pending struct {
	n atomic.Int64
	// waiting is set while Wait runs, so that only then does the last
	// answer's done send a wake-up (owned by Wait).
	waiting atomic.Bool
	zero    chan struct{} // buffered: a wake-up for Wait
}

// NewPending returns a Pending with nothing pending.
func NewPending() *Pending { return &Pending{zero: make(chan struct{}, 1)} }

func (p *Pending) add() {
	if p != nil {
		p.n.Add(1)
	}
}

func (p *Pending) done() {
	// Add and Load are sequentially consistent: either Wait sees the
	// count at zero, or this sees waiting set and wakes it.
	if p != nil && p.n.Add(-1) == 0 && p.waiting.Load() {
		select {
		case p.zero <- struct{}{}:
		default:
		}
	}
}

// Wait returns once nothing is pending, or with ctx's error and the count
// still pending. One Wait at a time.
func (p *Pending) Wait(ctx context.Context) (int64, error) {
	p.waiting.Store(true)
	defer p.waiting.Store(false)
	for {
		n := p.n.Load()
		if n == 0 {
			return 0, nil
		}
		select {
		case <-p.zero:
		case <-ctx.Done():
			return n, ctx.Err()
		}
	}
}
