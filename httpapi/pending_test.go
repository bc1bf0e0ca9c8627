package httpapi

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// heldRequeue is the real engine, except that a delivery is told to the
// endpoint only once the request has ended — the client leaves after the hand-off — and a
// put-back waits for the test's release.
type heldRequeue struct {
	Mailboxes
	taken, entered chan struct{}
	release        chan struct{}
}

type tellAfter struct {
	ctx   context.Context
	to    actor.Receiver
	taken chan struct{}
}

func (d tellAfter) Received(got actor.Delivery, err error) {
	d.taken <- struct{}{}
	go func() {
		<-d.ctx.Done()
		d.to.Received(got, err)
	}()
}

func (m *heldRequeue) StartReceive(ctx context.Context, id actor.ID, wait time.Duration, to actor.Receiver) (actor.Receipt, error) {
	return m.Mailboxes.StartReceive(ctx, id, wait, tellAfter{ctx, to, m.taken})
}

func (m *heldRequeue) Requeue(id actor.ID, msg actor.Message) error {
	m.entered <- struct{}{}
	<-m.release
	return m.Mailboxes.Requeue(id, msg)
}

// Z12: a message put back by an answer that failed during the shutdown
// drain, after the supervisor closed, is in the leftovers for the state
// file; Pending holds shutdown until that answer is over.
func TestPendingHoldsShutdownForPutBacks(t *testing.T) {
	held := &heldRequeue{taken: make(chan struct{}, 1), entered: make(chan struct{}), release: make(chan struct{})}
	pending := NewPending()
	s := newTestServer(t, func(c *config) {
		c.pending = pending
		c.wrap = func(mb Mailboxes) Mailboxes {
			held.Mailboxes = mb
			return held
		}
	})
	release := sync.OnceFunc(func() { close(held.release) })
	t.Cleanup(release) // before the server's: a failed test must not leave the answer blocked
	wantAccepted(t, s.post(rid("p"), "keep me"), seq0, 1)
	ctx, leave := context.WithCancel(context.Background())
	got := s.goGet(ctx, rid("p"), "?wait_ms=5000")
	<-held.taken
	leave() // the client goes: the answer finds its request over and puts the message back
	<-held.entered

	expired, cancel := context.WithCancel(context.Background())
	cancel()
	if n, err := pending.Wait(expired); n != 1 || !errors.Is(err, context.Canceled) {
		t.Fatalf("Wait with an answer putting a message back: %d, %v; want 1, context.Canceled", n, err)
	}
	s.sup.Close() // the shutdown's supervisor close, racing the put-back
	release()
	if n, err := pending.Wait(t.Context()); n != 0 || err != nil {
		t.Fatalf("Wait: %d, %v; want 0, nil", n, err)
	}
	left := s.sup.Leftovers()[idOf(t, rid("p"))]
	if len(left) != 1 || string(left[0].Body) != "keep me" || left[0].Seq != seq0 {
		t.Fatalf("leftovers %+v; want the message put back", left)
	}
	if r := <-got; r.err == nil {
		t.Fatalf("the client that left got %d", r.status)
	}
}

func idOf(t *testing.T, hex string) actor.ID {
	t.Helper()
	id, err := actor.ParseID(hex)
	if err != nil {
		t.Fatal(err)
	}
	return id
}
