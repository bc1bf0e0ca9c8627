package actor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"
)

const testTTL = 10 * time.Second

// startTest spawns a mailbox on the bubble's fake clock.
func startTest(t *testing.T, maxQueue int) (*Mailbox, *Stats) {
	t.Helper()
	st := &Stats{}
	mb := Start(ID{1}, &Options{
		MaxQueueLength: maxQueue,
		TTL:            testTTL,
		Now:            time.Now,
		Stats:          st,
	}, 1000, nil)
	t.Cleanup(func() { mb.Stop() })
	return mb, st
}

func mustPost(t *testing.T, mb *Mailbox, body string) PostReply {
	t.Helper()
	r, err := mb.Post([]byte(body))
	if err != nil {
		t.Fatalf("Post(%q): %v", body, err)
	}
	return r
}

func mustReceive(t *testing.T, mb *Mailbox, wait time.Duration) Delivery {
	t.Helper()
	d, err := mb.Receive(context.Background(), wait)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

func TestPostReceiveFIFO(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		for i, body := range []string{"a", "b", "c"} {
			r := mustPost(t, mb, body)
			if r.Seq != uint64(1000+i) || r.QueueLen != i+1 {
				t.Fatalf("post %q: got seq %d len %d; want %d %d", body, r.Seq, r.QueueLen, 1000+i, i+1)
			}
		}
		for i, want := range []string{"a", "b", "c"} {
			d := mustReceive(t, mb, 0)
			if !d.OK || string(d.Message.Body) != want || d.Message.Seq != uint64(1000+i) || d.QueueLen != 2-i {
				t.Fatalf("receive %d: got %+v; want %q seq %d len %d", i, d, want, 1000+i, 2-i)
			}
		}
		if d := mustReceive(t, mb, 0); d.OK {
			t.Fatalf("empty mailbox delivered %+v", d)
		}
		if got := st.QueuedMessages.Load(); got != 0 {
			t.Fatalf("QueuedMessages = %d; want 0", got)
		}
		if p, d := st.Posted.Load(), st.Delivered.Load(); p != 3 || d != 3 {
			t.Fatalf("posted %d delivered %d; want 3 3", p, d)
		}
	})
}

func TestLongPollHandoff(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		got := make(chan Delivery, 1)
		go func() { got <- mustReceive(t, mb, time.Minute) }()
		synctest.Wait()
		r := mustPost(t, mb, "hello")
		if r.QueueLen != 0 {
			t.Fatalf("post to a waiter: queue length %d; want 0", r.QueueLen)
		}
		d := <-got
		if !d.OK || string(d.Message.Body) != "hello" || d.Message.Seq != r.Seq {
			t.Fatalf("got %+v; want hello seq %d", d, r.Seq)
		}
		if st.QueuedBytes.Load() != 0 {
			t.Fatalf("handed-off message counted as queued")
		}
	})
}

// Z1: two waiters, one message: the first waiter gets it, the second keeps
// waiting until its own deadline.
func TestTwoWaitersOneMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		first := make(chan Delivery, 1)
		second := make(chan Delivery, 1)
		go func() { first <- mustReceive(t, mb, 30*time.Second) }()
		synctest.Wait()
		start := time.Now()
		go func() { second <- mustReceive(t, mb, 30*time.Second) }()
		synctest.Wait()
		mustPost(t, mb, "only")
		if d := <-first; string(d.Message.Body) != "only" {
			t.Fatalf("first waiter got %+v; want only", d)
		}
		d := <-second
		if d.OK {
			t.Fatalf("second waiter got %+v; want nothing", d)
		}
		if waited := time.Since(start); waited != 30*time.Second {
			t.Fatalf("second waiter returned after %v; want its full 30s", waited)
		}
	})
}

// Z2: a waiter whose context ended never takes a message.
func TestCancelledWaiterKeepsMessageQueued(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		ctx, cancel := context.WithCancel(context.Background())
		errc := make(chan error, 1)
		go func() {
			_, err := mb.Receive(ctx, time.Minute)
			errc <- err
		}()
		synctest.Wait()
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled receive: got %v; want context.Canceled", err)
		}
		if r := mustPost(t, mb, "kept"); r.QueueLen != 1 {
			t.Fatalf("post after cancelled waiter: queue length %d; want 1", r.QueueLen)
		}
		if d := mustReceive(t, mb, 0); string(d.Message.Body) != "kept" {
			t.Fatalf("got %+v; want kept", d)
		}
	})
}

// A waiter whose context is done before the actor serves it is skipped
// even though the caller has not withdrawn yet.
func TestHandoffSkipsDoneContext(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		ctx, cancel := context.WithCancel(context.Background())
		got := make(answers, 1)
		if _, err := mb.StartReceive(ctx, time.Minute, got); err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cancel()
		if r := mustPost(t, mb, "x"); r.QueueLen != 1 {
			t.Fatalf("queue length %d; want 1: message went to a gone waiter", r.QueueLen)
		}
		select {
		case a := <-got:
			t.Fatalf("gone waiter got %+v", a)
		default:
		}
	})
}

func TestTTLNeverDeliversExpired(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		mustPost(t, mb, "old")
		time.Sleep(testTTL - time.Second)
		mustPost(t, mb, "young")
		time.Sleep(time.Second) // "old" is now exactly TTL old
		d := mustReceive(t, mb, 0)
		if string(d.Message.Body) != "young" || d.QueueLen != 0 {
			t.Fatalf("got %+v; want young with nothing left", d)
		}
		if got := st.EvictedTTL.Load(); got != 1 {
			t.Fatalf("EvictedTTL = %d; want 1", got)
		}
		if got := st.QueuedBytes.Load(); got != 0 {
			t.Fatalf("QueuedBytes = %d; want 0", got)
		}
	})
}

func TestQueueFull(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 2)
		mustPost(t, mb, "1")
		mustPost(t, mb, "2")
		if _, err := mb.Post([]byte("3")); !errors.Is(err, ErrQueueFull) {
			t.Fatalf("third post: got %v; want ErrQueueFull", err)
		}
		mustReceive(t, mb, 0)
		if r := mustPost(t, mb, "3"); r.QueueLen != 2 {
			t.Fatalf("post after a receive: len %d; want 2", r.QueueLen)
		}
	})
}

func TestRequeueGoesToHead(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		mustPost(t, mb, "first")
		mustPost(t, mb, "second")
		d := mustReceive(t, mb, 0)
		if err := mb.Requeue(d.Message); err != nil {
			t.Fatal(err)
		}
		again := mustReceive(t, mb, 0)
		if string(again.Message.Body) != "first" || again.Message.Seq != d.Message.Seq {
			t.Fatalf("after requeue got %+v; want first with seq %d", again, d.Message.Seq)
		}
		if st.Requeued.Load() != 1 {
			t.Fatalf("Requeued = %d; want 1", st.Requeued.Load())
		}
	})
}

func TestSweepStopsIdleMailbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		stopped := make(chan *Mailbox, 1)
		mb := Start(ID{2}, &Options{
			MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: &Stats{},
			OnStop: func(m *Mailbox) { stopped <- m },
		}, 0, nil)
		mustPost(t, mb, "x")
		time.Sleep(time.Hour)
		// Not empty: the expired message is swept, the activity is old,
		// so it stops in the same sweep.
		r, err := mb.Sweep(time.Now().Add(-time.Minute))
		if err != nil {
			t.Fatal(err)
		}
		if r.Expired != 1 || r.ExpiredBytes != 1 || !r.Stopped {
			t.Fatalf("sweep: got %+v; want 1 expired and stopped", r)
		}
		<-mb.Done()
		if got := <-stopped; got != mb {
			t.Fatalf("OnStop got another mailbox")
		}
		if _, err := mb.Post([]byte("late")); !errors.Is(err, ErrStopped) {
			t.Fatalf("post to stopped actor: got %v; want ErrStopped", err)
		}
	})
}

func TestSweepKeepsActiveOrWaitedMailbox(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		r, _ := mb.Sweep(time.Now().Add(-time.Minute))
		if r.Stopped {
			t.Fatalf("recently active mailbox stopped")
		}
		go mb.Receive(context.Background(), 2*time.Hour)
		synctest.Wait()
		time.Sleep(time.Hour)
		r, _ = mb.Sweep(time.Now())
		if r.Stopped {
			t.Fatalf("mailbox with a live waiter stopped")
		}
		if _, err := mb.Sweep(time.Time{}); err != nil {
			t.Fatal(err)
		}
		mustPost(t, mb, "wake") // let the waiter go
	})
}

func TestEvictOldestFirstUpToBound(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		mustPost(t, mb, "aaaa")
		time.Sleep(time.Second)
		mustPost(t, mb, "bbbb")
		bound := time.Now()
		time.Sleep(time.Second)
		mustPost(t, mb, "cccc")
		r, err := mb.Evict(bound, 100)
		if err != nil {
			t.Fatal(err)
		}
		if r.Evicted != 2 || r.Bytes != 8 {
			t.Fatalf("evict: got %+v; want the 2 messages up to the bound", r)
		}
		if d := mustReceive(t, mb, 0); string(d.Message.Body) != "cccc" {
			t.Fatalf("left %+v; want cccc", d)
		}
		if st.EvictedMemory.Load() != 2 {
			t.Fatalf("EvictedMemory = %d; want 2", st.EvictedMemory.Load())
		}
	})
}

func TestEvictStopsWhenEnoughFreed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		for _, b := range []string{"aaaa", "bbbb", "cccc"} {
			mustPost(t, mb, b)
		}
		r, _ := mb.Evict(time.Now(), 5)
		if r.Evicted != 2 {
			t.Fatalf("evicted %d; want 2 to free 5 bytes", r.Evicted)
		}
	})
}

func TestStopReturnsQueueAndWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := Start(ID{3}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: &Stats{}}, 0, nil)
		errc := make(chan error, 1)
		go func() {
			_, err := mb.Receive(context.Background(), time.Minute)
			errc <- err
		}()
		synctest.Wait()
		msgs := mb.Stop()
		if len(msgs) != 0 {
			t.Fatalf("Stop returned %d messages; want 0", len(msgs))
		}
		if err := <-errc; !errors.Is(err, ErrStopped) {
			t.Fatalf("parked waiter: got %v; want ErrStopped", err)
		}
		if mb.Stop() != nil {
			t.Fatalf("second Stop returned messages")
		}
	})
}

func TestStopHandsBackMessages(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &Stats{}
		mb := Start(ID{4}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: st}, 0, nil)
		mustPost(t, mb, "a")
		mustPost(t, mb, "b")
		msgs := mb.Stop()
		if len(msgs) != 2 || string(msgs[0].Body) != "a" || string(msgs[1].Body) != "b" {
			t.Fatalf("Stop returned %+v; want a, b", msgs)
		}
		if st.QueuedMessages.Load() != 0 || st.QueuedBytes.Load() != 0 {
			t.Fatalf("stopped mailbox still counted as queued")
		}
	})
}

func TestRestoredMessagesComeFirst(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		st := &Stats{}
		mb := Start(ID{5}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: st},
			50, []Message{{Seq: 7, Body: []byte("old"), Arrived: time.Now()}})
		defer mb.Stop()
		if st.QueuedBytes.Load() != 3 {
			t.Fatalf("restored bytes not counted")
		}
		mustPost(t, mb, "new")
		for _, want := range []struct {
			body string
			seq  uint64
		}{{"old", 7}, {"new", 50}} {
			d := mustReceive(t, mb, 0)
			if string(d.Message.Body) != want.body || d.Message.Seq != want.seq {
				t.Fatalf("got %+v; want %s seq %d", d, want.body, want.seq)
			}
		}
	})
}

// Many abandoned long-polls on one mailbox do not pile up in the actor.
func TestAbandonedWaitersArePruned(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		for range 100 {
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan struct{})
			go func() { mb.Receive(ctx, time.Minute); close(done) }()
			synctest.Wait()
			cancel()
			<-done
		}
		if n := mb.Waiters(); n > 16 {
			t.Fatalf("%d parked waiters after 100 abandoned polls; want pruning", n)
		}
	})
}

func TestQueueWrapAndGrow(t *testing.T) {
	var q queue
	next := 0
	want := 0
	for round := range 50 {
		for range round % 7 {
			q.pushBack(Message{Seq: uint64(next)})
			next++
		}
		for range round % 5 {
			if q.len() == 0 {
				break
			}
			if got := q.popFront().Seq; got != uint64(want) {
				t.Fatalf("popped %d; want %d", got, want)
			}
			want++
		}
	}
	if q.len() != next-want {
		t.Fatalf("len %d; want %d", q.len(), next-want)
	}
	q.pushFront(Message{Seq: 999})
	if q.front().Seq != 999 {
		t.Fatalf("pushFront not at head")
	}
}

// A waiter whose caller gave up may still sit in the actor's list, so the
// Recycler never hands it out again; a served one is reused safely.
func TestRecyclerNeverReusesCancelledWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := Start(ID{6}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: &Stats{}, Recycler: &Recycler{}}, 0, nil)
		defer mb.Stop()
		ctx, cancel := context.WithCancel(context.Background())
		got := make(answers, 1)
		rc, err := mb.StartReceive(ctx, time.Minute, got)
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		cancel()
		if _, err := got.await(ctx, rc); !errors.Is(err, context.Canceled) {
			t.Fatalf("receive: %v; want context.Canceled", err)
		}
		neverHandedOutAgain(t, mb, rc.w)
	})
}

// neverHandedOutAgain serves a hundred receives on mb, each taking a
// waiter from its Recycler, and fails if one of them is w.
func neverHandedOutAgain(t *testing.T, mb *Mailbox, w *Waiter) {
	t.Helper()
	got := make(answers, 1)
	for i := range 100 {
		mustPost(t, mb, "y")
		rc, err := mb.StartReceive(context.Background(), time.Minute, got)
		if err != nil {
			t.Fatal(err)
		}
		if rc.w == w {
			t.Fatalf("round %d: the waiter was handed out again", i)
		}
		if d, err := got.await(context.Background(), rc); err != nil || string(d.Message.Body) != "y" {
			t.Fatalf("round %d: got %+v, %v", i, d, err)
		}
	}
}

// A waiter served in the instant its deadline passed may still have its
// timer's expire to run, so the Recycler never hands it out again: a late
// expire must not touch the receive it would serve next.
func TestRecyclerNeverReusesWaiterWithLateTimer(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := Start(ID{7}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: &Stats{}, Recycler: &Recycler{}}, 0, nil)
		defer mb.Stop()
		rc, err := mb.StartReceive(context.Background(), time.Minute, make(answers, 1))
		if err != nil {
			t.Fatal(err)
		}
		synctest.Wait()
		// The actor claims it as served (answer's first step) ...
		w := rc.w
		if !w.claim(served) {
			t.Fatal("claim of a waiting receive lost")
		}
		time.Sleep(time.Minute)
		synctest.Wait() // ... and the deadline passes before it stops the timer
		w.answer(Delivery{}, nil)
		if !w.late {
			t.Fatal("the timer was stopped; want it late")
		}
		neverHandedOutAgain(t, mb, w)
	})
}

// A Receipt names one receive: once its Waiter is served and reused, the
// old Receipt's Cancel neither wins nor withdraws the receive now using
// the Waiter.
func TestStaleReceiptCancelsNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb := Start(ID{8}, &Options{MaxQueueLength: 10, TTL: testTTL, Now: time.Now, Stats: &Stats{}, Recycler: &Recycler{}}, 0, nil)
		defer mb.Stop()
		got := make(answers, 1)
		mustPost(t, mb, "a")
		old, err := mb.StartReceive(context.Background(), 0, got)
		if err != nil {
			t.Fatal(err)
		}
		if d, err := got.await(context.Background(), old); err != nil || string(d.Message.Body) != "a" {
			t.Fatalf("first receive: %+v, %v", d, err)
		}
		rc, err := mb.StartReceive(context.Background(), time.Minute, got)
		if err != nil {
			t.Fatal(err)
		}
		if rc.w != old.w {
			t.Skip("the pool did not hand the Waiter back; nothing to check")
		}
		if old.Cancel() {
			t.Fatal("a stale Receipt cancelled the receive now using its Waiter")
		}
		mustPost(t, mb, "b")
		if d, err := got.await(context.Background(), rc); err != nil || string(d.Message.Body) != "b" {
			t.Fatalf("second receive: %+v, %v; want b", d, err)
		}
	})
}

// A wait that passes answers "no message" and leaves the waiter out of
// the running: the next message stays queued rather than going to it.
func TestDeadlineAnswersNoneAndKeepsNextMessage(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		got := make(answers, 1)
		rc, err := mb.StartReceive(context.Background(), time.Second, got)
		if err != nil {
			t.Fatal(err)
		}
		if st.Waiting.Load() != 1 {
			t.Fatalf("Waiting = %d while parked; want 1", st.Waiting.Load())
		}
		time.Sleep(time.Second)
		d, err := got.await(context.Background(), rc)
		if err != nil {
			t.Fatalf("receive: %v; want nil", err)
		}
		if d.OK || d.Message.Body != nil {
			t.Fatalf("Delivery = %+v; want none", d)
		}
		if st.Waiting.Load() != 0 {
			t.Fatalf("Waiting = %d after the deadline; want 0", st.Waiting.Load())
		}
		if r := mustPost(t, mb, "x"); r.QueueLen != 1 {
			t.Fatalf("queue length %d after the post; want 1: the message went to an expired waiter", r.QueueLen)
		}
	})
}

// A long-poll counts as waiting once the actor has taken its command, so
// that whoever sees the count and then posts is served after the receive:
// the post goes to that waiter, not to the queue.
func TestWaitingCountedOnceTheActorHasTheReceive(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		busy := make(answers) // unbuffered: telling it holds the actor's goroutine
		if _, err := mb.StartReceive(context.Background(), time.Minute, busy); err != nil {
			t.Fatal(err)
		}
		go mb.Post([]byte("a"))
		synctest.Wait() // the actor is telling busy

		got := make(answers, 1)
		started := make(chan Receipt, 1)
		go func() {
			rc, err := mb.StartReceive(context.Background(), time.Minute, got)
			if err != nil {
				t.Error(err)
			}
			started <- rc
		}()
		synctest.Wait() // the receive's command waits for the actor
		if n := st.Waiting.Load(); n != 0 {
			t.Errorf("Waiting = %d before the actor took the receive; want 0", n)
		}
		if a := <-busy; string(a.d.Message.Body) != "a" {
			t.Fatalf("first waiter got %+v; want a", a)
		}
		rc := <-started
		if n := st.Waiting.Load(); n != 1 {
			t.Fatalf("Waiting = %d once the actor took the receive; want 1", n)
		}
		if r := mustPost(t, mb, "b"); r.QueueLen != 0 {
			t.Fatalf("queue length %d; want 0: the post overtook the counted receive", r.QueueLen)
		}
		if d, err := got.await(context.Background(), rc); err != nil || string(d.Message.Body) != "b" {
			t.Fatalf("second waiter got %+v, %v; want b", d, err)
		}
	})
}

// The actor's goroutine runs only while commands are in flight: it is gone
// once a command is answered, and the next command starts it again on the
// state it left. A parked waiter keeps no goroutine on the actor's side.
func TestActorHibernatesBetweenCommands(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, _ := startTest(t, 10)
		hibernating := func(after string) {
			t.Helper()
			synctest.Wait()
			if l := mb.life.Load(); l != uint64(hibernating) {
				t.Fatalf("after %s: state %d, senders %d; want a hibernating actor", after, l&stateMask, l>>stateBits)
			}
		}
		hibernating("start")
		mustPost(t, mb, "a")
		hibernating("a post")
		if d := mustReceive(t, mb, time.Minute); string(d.Message.Body) != "a" {
			t.Fatalf("got %+v; want a", d)
		}
		hibernating("a get")
		got := make(answers, 1)
		rc, err := mb.StartReceive(context.Background(), time.Minute, got) // nothing queued: parks
		if err != nil {
			t.Fatal(err)
		}
		hibernating("a get parked")
		if r := mustPost(t, mb, "b"); r.QueueLen != 0 {
			t.Fatalf("post to a parked waiter queued it (length %d)", r.QueueLen)
		}
		if d, err := got.await(context.Background(), rc); err != nil || string(d.Message.Body) != "b" {
			t.Fatalf("parked waiter got %+v, %v; want b", d, err)
		}
		hibernating("the hand-off")
		mb.Stop()
		if s := mb.state(); s != stopped {
			t.Fatalf("after Stop: state %d; want stopped", s)
		}
		if _, err := mb.Post([]byte("c")); !errors.Is(err, ErrStopped) {
			t.Fatalf("post to a stopped actor: %v; want ErrStopped", err)
		}
	})
}

// Many senders racing the actor's going to sleep and waking: every post is
// answered once and every message is received once, in each sender's
// order. Run with -race: the handshake must also order the state's writes
// from one goroutine of the actor to the next.
func TestHibernationRacesLoseNothing(t *testing.T) {
	const senders, each = 8, 500
	mb := Start(ID{2}, &Options{MaxQueueLength: senders * each, TTL: time.Hour, Now: time.Now, Stats: &Stats{}}, 1, nil)
	defer mb.Stop()
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				if _, err := mb.Post([]byte(fmt.Sprintf("%d/%d", s, i))); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	next := make([]int, senders)
	for n := 0; n < senders*each; n++ {
		d, err := mb.Receive(context.Background(), time.Minute)
		if err != nil || !d.OK {
			t.Fatalf("receive %d: %+v, %v", n, d, err)
		}
		var s, i int
		fmt.Sscanf(string(d.Message.Body), "%d/%d", &s, &i)
		if i != next[s] {
			t.Fatalf("sender %d: got message %d; want %d", s, i, next[s])
		}
		next[s]++
	}
	wg.Wait()
	if d, _ := mb.Receive(context.Background(), 0); d.OK {
		t.Fatalf("left over: %q", d.Message.Body)
	}
}

// A Receiver is told once, whichever way the wait ends — a message
// already queued, a hand-off, the deadline, a stop — and never for a
// receive its caller cancelled.
func TestReceiverToldOnce(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		mb, st := startTest(t, 10)
		got := make(answers, 4)
		told := func(what string) answer {
			t.Helper()
			synctest.Wait()
			if len(got) != 1 {
				t.Fatalf("%s: told %d times; want once", what, len(got))
			}
			return <-got
		}
		start := func(wait time.Duration) Receipt {
			t.Helper()
			rc, err := mb.StartReceive(context.Background(), wait, got)
			if err != nil {
				t.Fatal(err)
			}
			return rc
		}

		mustPost(t, mb, "queued")
		start(0)
		if a := told("queued message"); a.err != nil || string(a.d.Message.Body) != "queued" {
			t.Fatalf("got %+v; want the queued message", a)
		}

		rc := start(time.Minute)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("told before anything came")
		}
		if r := mustPost(t, mb, "handed"); r.QueueLen != 0 {
			t.Fatalf("post queued it (length %d); want it handed to the waiter", r.QueueLen)
		}
		a := told("hand-off")
		if rc.Cancel() {
			t.Fatal("Cancel after the hand-off won; want false")
		}
		if a.err != nil || string(a.d.Message.Body) != "handed" {
			t.Fatalf("got %+v; want the handed message", a)
		}
		if st.Waiting.Load() != 0 {
			t.Fatalf("Waiting = %d after the answer; want 0", st.Waiting.Load())
		}

		start(time.Second)
		time.Sleep(time.Second)
		if a := told("deadline"); a.err != nil || a.d.OK {
			t.Fatalf("got %+v; want no message", a)
		}

		rc = start(time.Minute)
		if !rc.Cancel() {
			t.Fatal("Cancel of a waiting receive lost")
		}
		if r := mustPost(t, mb, "kept"); r.QueueLen != 1 {
			t.Fatalf("queue length %d; want 1: the message went to a cancelled receive", r.QueueLen)
		}
		time.Sleep(2 * time.Minute)
		synctest.Wait()
		if len(got) != 0 {
			t.Fatal("a cancelled receive's Receiver was told")
		}
		if st.Waiting.Load() != 0 {
			t.Fatalf("Waiting = %d after Cancel; want 0", st.Waiting.Load())
		}

		mustReceive(t, mb, 0) // takes "kept"
		start(time.Minute)
		mb.Stop()
		if a := told("stop"); !errors.Is(a.err, ErrStopped) {
			t.Fatalf("answer after Stop: %+v; want ErrStopped", a)
		}
	})
}
