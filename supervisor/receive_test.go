package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// answers is a Receiver that keeps what it is told, for the tests.
type answers chan answer

type answer struct {
	d   actor.Delivery
	err error
}

func (a answers) Received(d actor.Delivery, err error) { a <- answer{d, err} }

// Receive takes the oldest message of id the way the HTTP layer does:
// StartReceive, then the answer, or Cancel once ctx ends first. It
// long-polls up to wait; a receive that would not wait never creates a
// mailbox. A close answers actor.ErrClosed.
func (s *Supervisor) Receive(ctx context.Context, id actor.ID, wait time.Duration) (actor.Delivery, error) {
	return s.receiveInto(ctx, id, wait, make(answers, 1))
}

// receiveInto is Receive telling got, which the caller may reuse.
func (s *Supervisor) receiveInto(ctx context.Context, id actor.ID, wait time.Duration, got answers) (actor.Delivery, error) {
	rc, err := s.StartReceive(ctx, id, wait, got)
	if err != nil {
		return actor.Delivery{}, err
	}
	return got.await(ctx, rc)
}

// await waits for the answer to the receive rc names, withdrawing it
// when ctx ends first.
func (got answers) await(ctx context.Context, rc actor.Receipt) (actor.Delivery, error) {
	var a answer
	select {
	case a = <-got:
	case <-ctx.Done():
		if rc.Cancel() {
			return actor.Delivery{}, context.Cause(ctx)
		}
		a = <-got // the answer was on its way
	}
	if errors.Is(a.err, actor.ErrStopped) {
		a.err = actor.ErrClosed // only Close stops an actor with a live waiter
	}
	return a.d, a.err
}
