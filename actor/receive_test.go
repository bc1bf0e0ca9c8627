package actor

import (
	"context"
	"time"
)

// Receive is Park and Await in one call, for the tests: it takes the
// oldest unexpired message. With wait > 0 and the queue
// empty it long-polls: it returns a message as soon as one is handed over,
// or OK=false when wait passes (R2.4, R2.5). It returns ctx's cause when the
// caller's context ends and ErrStopped when the actor stops meanwhile.
func (m *Mailbox) Receive(ctx context.Context, wait time.Duration) (Delivery, error) {
	w, err := m.Park(ctx, wait, nil)
	if err != nil {
		return Delivery{}, err
	}
	err = w.Await()
	return w.Delivery(), err
}
