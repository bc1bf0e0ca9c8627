package actor

import (
	"context"
	"time"
)

// answers is a Receiver that keeps what it is told, for the tests.
type answers chan answer

type answer struct {
	d   Delivery
	err error
}

func (a answers) Received(d Delivery, err error) { a <- answer{d, err} }

// Receive takes the oldest unexpired message the way the HTTP layer does:
// StartReceive, then the answer, or Cancel once ctx ends first. With
// wait > 0 and the queue empty it long-polls: a message as soon as one is
// handed over, or OK=false when wait passes (R2.4, R2.5). It returns ctx's
// cause when the caller's context ends and ErrStopped when the actor stops
// meanwhile.
func (m *Mailbox) Receive(ctx context.Context, wait time.Duration) (Delivery, error) {
	got := make(answers, 1)
	rc, err := m.StartReceive(ctx, wait, got)
	if err != nil {
		return Delivery{}, err
	}
	return got.await(ctx, rc)
}

// await waits for the answer to the receive rc names, cancelling it when
// ctx ends first.
func (a answers) await(ctx context.Context, rc Receipt) (Delivery, error) {
	select {
	case r := <-a:
		return r.d, r.err
	case <-ctx.Done():
		if rc.Cancel() {
			return Delivery{}, context.Cause(ctx)
		}
		r := <-a // the answer was on its way
		return r.d, r.err
	}
}
