package supervisor

import (
	"context"
	"errors"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// Receive is StartReceive and Await in one call, for the tests: it takes
// the oldest message of id, long-polling up to wait. A GET
// that would not wait never creates a mailbox.
func (s *Supervisor) Receive(ctx context.Context, id actor.ID, wait time.Duration) (actor.Delivery, error) {
	w, err := s.StartReceive(ctx, id, wait, nil)
	if err != nil || w == nil {
		return actor.Delivery{}, err
	}
	err = w.Await()
	if errors.Is(err, actor.ErrStopped) {
		err = ErrClosed // only Close stops an actor with a live waiter
	}
	d := w.Delivery()
	w.Release()
	return d, err
}
