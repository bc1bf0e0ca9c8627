package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

func testOptions() Options {
	return Options{
		MaxQueueLength:   100,
		TTL:              300 * time.Second,
		IdleTimeout:      time.Hour,
		EvictionInterval: 30 * time.Second,
		MaxMailboxes:     10000,
		MemoryLimit:      64 << 20,
		Now:              time.Now,
	}
}

func newTest(t *testing.T, opts Options) *Supervisor {
	t.Helper()
	s := New(opts)
	t.Cleanup(func() { s.Close() })
	return s
}

func id(n int) actor.ID { return actor.ID{byte(n), byte(n >> 8), 0xaa} }

func post(t *testing.T, s *Supervisor, to actor.ID, body string) actor.PostReply {
	t.Helper()
	r, err := s.Post(context.Background(), to, []byte(body))
	if err != nil {
		t.Fatalf("Post(%q): %v", body, err)
	}
	return r
}

func receive(t *testing.T, s *Supervisor, from actor.ID) actor.Delivery {
	t.Helper()
	d, err := s.Receive(context.Background(), from, 0)
	if err != nil {
		t.Fatalf("Receive: %v", err)
	}
	return d
}

func TestFirstSequenceIsClockMicros(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTest(t, testOptions())
		want := uint64(time.Now().UnixMicro())
		if r := post(t, s, id(1), "a"); r.Seq != want {
			t.Fatalf("first seq %d; want clock micros %d", r.Seq, want)
		}
		if r := post(t, s, id(1), "b"); r.Seq != want+1 {
			t.Fatalf("second seq %d; want %d", r.Seq, want+1)
		}
	})
}

// R1.7, R3.3: an idle mailbox is reaped by the sweep, and sequences keep
// rising when it is created again.
func TestIdleReapingKeepsSequencesRising(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTest(t, testOptions())
		last := post(t, s, id(1), "a").Seq
		receive(t, s, id(1))
		if s.Snapshot().Mailboxes != 1 {
			t.Fatalf("mailboxes = %d; want 1", s.Snapshot().Mailboxes)
		}
		time.Sleep(time.Hour + 31*time.Second) // idle timeout plus a sweep
		synctest.Wait()
		if got := s.Snapshot().Mailboxes; got != 0 {
			t.Fatalf("mailboxes after idle timeout = %d; want 0", got)
		}
		if got := s.reapedIdle; got != nil {
			t.Fatalf("no metrics set, yet a counter exists")
		}
		if r := post(t, s, id(1), "b"); r.Seq <= last {
			t.Fatalf("seq after re-creation %d; want > %d", r.Seq, last)
		}
	})
}

func TestWaitZeroOnMissingMailboxCreatesNothing(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTest(t, testOptions())
		if d := receive(t, s, id(9)); d.OK {
			t.Fatalf("got %+v from a missing mailbox", d)
		}
		if got := s.Snapshot().Mailboxes; got != 0 {
			t.Fatalf("mailboxes = %d; want 0", got)
		}
	})
}

// R3.5, R3.6: a post that would pass the memory limit evicts the oldest
// messages server-wide first, oldest first across mailboxes.
func TestMemoryEvictionOldestFirstAcrossMailboxes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MemoryLimit = 30
		s := newTest(t, opts)
		post(t, s, id(1), "1111111111") // oldest
		time.Sleep(time.Second)
		post(t, s, id(2), "2222222222")
		time.Sleep(time.Second)
		post(t, s, id(1), "3333333333")
		time.Sleep(time.Second)
		post(t, s, id(3), "4444444444444444444") // needs 19: evicts 1111 and 2222
		if got := s.Stats().EvictedMemory.Load(); got != 2 {
			t.Fatalf("EvictedMemory = %d; want 2", got)
		}
		if got := s.Snapshot().QueuedBytes; got != 29 {
			t.Fatalf("QueuedBytes = %d; want 29", got)
		}
		if d := receive(t, s, id(1)); string(d.Message.Body) != "3333333333" {
			t.Fatalf("mailbox 1 kept %q; want the newer 3333333333", d.Message.Body)
		}
		if d := receive(t, s, id(2)); d.OK {
			t.Fatalf("mailbox 2 kept %q; want it evicted", d.Message.Body)
		}
	})
}

func TestMemoryLimitWithNothingToEvict(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MemoryLimit = 4
		s := newTest(t, opts)
		if _, err := s.Post(context.Background(), id(1), []byte("12345")); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("got %v; want actor.ErrOverloaded", err)
		}
	})
}

// Z5: at max_mailboxes an empty mailbox without waiters is reclaimed, the
// least recently active first; when none is reclaimable the answer is
// actor.ErrOverloaded.
func TestMaxMailboxesReclaimsIdleEmpty(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MaxMailboxes = 3
		s := newTest(t, opts)
		post(t, s, id(1), "x")
		receive(t, s, id(1)) // 1 is empty now, active at t0
		time.Sleep(time.Second)
		post(t, s, id(2), "x")
		receive(t, s, id(2)) // 2 is empty, more recent
		time.Sleep(time.Second)
		post(t, s, id(3), "x") // 3 holds a message
		post(t, s, id(4), "x") // reclaims 1
		if s.reg.get(id(1)) != nil || s.reg.get(id(2)) == nil {
			t.Fatalf("wrong mailbox reclaimed: want 1 gone and 2 kept")
		}
		post(t, s, id(5), "x") // reclaims 2
		if _, err := s.Post(context.Background(), id(6), []byte("x")); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("all mailboxes hold messages: got %v; want actor.ErrOverloaded", err)
		}
		if got := s.Snapshot().Mailboxes; got != 3 {
			t.Fatalf("mailboxes = %d; want 3", got)
		}
	})
}

func TestMaxMailboxesKeepsMailboxWithWaiter(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MaxMailboxes = 1
		s := newTest(t, opts)
		got := make(chan actor.Delivery, 1)
		go func() {
			d, _ := s.Receive(context.Background(), id(1), time.Minute)
			got <- d
		}()
		synctest.Wait()
		if _, err := s.Post(context.Background(), id(2), []byte("x")); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("got %v; want actor.ErrOverloaded: the only mailbox has a waiter", err)
		}
		post(t, s, id(1), "for the waiter")
		if d := <-got; string(d.Message.Body) != "for the waiter" {
			t.Fatalf("waiter got %+v", d)
		}
	})
}

// A post racing the reaper stopping the same actor is never lost: it is
// either taken by the old actor or retried against a fresh one. This
// reaper stops the actor again the instant it is idle, far more often than
// any real sweep, so a post can lose the race on every retry: it is then
// refused with actor.ErrOverloaded (503, the client retries), never accepted and
// dropped.
func TestPostRacingReaperIsNeverLost(t *testing.T) {
	s := newTest(t, testOptions())
	const posts = 2000
	var wg sync.WaitGroup
	stop := make(chan struct{})
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			select {
			case <-stop:
				return
			default:
			}
			// Stop whatever actor holds the id right now, as a sweep
			// of an idle mailbox would.
			if mb := s.reg.get(id(1)); mb != nil {
				mb.Sweep(time.Now().Add(time.Hour))
			}
		}
	}()
	delivered, accepted := 0, 0
	for i := range posts {
		_, err := s.Post(context.Background(), id(1), []byte(fmt.Sprint(i)))
		switch {
		case err == nil:
			accepted++
		case !errors.Is(err, actor.ErrOverloaded):
			t.Fatalf("post %d: %v", i, err)
		}
		if i%2 == 1 {
			for range 2 {
				if d := receive(t, s, id(1)); d.OK {
					delivered++
				}
			}
		}
	}
	close(stop)
	wg.Wait()
	for {
		d := receive(t, s, id(1))
		if !d.OK {
			break
		}
		delivered++
	}
	if delivered != accepted {
		t.Fatalf("delivered %d of %d accepted posts", delivered, accepted)
	}
	if accepted < posts*9/10 {
		t.Fatalf("only %d of %d posts accepted: retries against fresh actors are not working", accepted, posts)
	}
}

func TestCloseReturnsQueuedAndWakesWaiters(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(testOptions())
		post(t, s, id(1), "a")
		post(t, s, id(1), "b")
		errc := make(chan error, 1)
		go func() {
			_, err := s.Receive(context.Background(), id(2), time.Minute)
			errc <- err
		}()
		synctest.Wait()
		s.Close()
		if err := <-errc; !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("parked waiter: got %v; want actor.ErrClosed", err)
		}
		if left := s.Leftovers(); len(left) != 1 || len(left[id(1)]) != 2 || string(left[id(1)][0].Body) != "a" {
			t.Fatalf("Leftovers returned %+v; want a, b", left)
		}
		if _, err := s.Post(context.Background(), id(1), []byte("late")); !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("post after close: got %v; want actor.ErrClosed", err)
		}
	})
}

// Z12: a message put back after Close — an answer whose write failed
// during the shutdown drain — joins the leftovers for the state file, at
// the head of its mailbox; after Leftovers a put-back is refused.
func TestRequeueAfterCloseJoinsLeftovers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := New(testOptions())
		post(t, s, id(1), "a")
		post(t, s, id(1), "b")
		taken := receive(t, s, id(1)).Message
		other := actor.Message{Seq: 7, Body: []byte("other"), Arrived: time.Now()}
		s.Close()
		if err := s.Requeue(id(1), taken); err != nil {
			t.Fatalf("Requeue after Close: %v; want nil", err)
		}
		if err := s.Requeue(id(2), other); err != nil {
			t.Fatalf("Requeue after Close to a mailbox that is gone: %v; want nil", err)
		}
		left := s.Leftovers()
		var got []string
		for _, n := range []int{1, 2} {
			for _, m := range left[id(n)] {
				got = append(got, fmt.Sprint(n, ":", string(m.Body)))
			}
		}
		if want := []string{"1:a", "1:b", "2:other"}; fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("Leftovers: %v; want %v", got, want)
		}
		if err := s.Requeue(id(1), taken); !errors.Is(err, actor.ErrClosed) {
			t.Fatalf("Requeue after Leftovers: %v; want actor.ErrClosed", err)
		}
	})
}

// Z12: put-backs racing Close are neither lost nor refused, whether they
// reach their actor before it stops or come after.
func TestRequeueRacingCloseIsKept(t *testing.T) {
	s := New(testOptions())
	const n = 200
	for i := range n {
		post(t, s, id(i), "queued")
	}
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for i := range n {
		wg.Go(func() {
			errs <- s.Requeue(id(i), actor.Message{Seq: 1, Body: []byte("back"), Arrived: time.Now()})
		})
	}
	s.Close()
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatalf("Requeue racing Close: %v; want nil", err)
		}
	}
	left := s.Leftovers()
	for i := range n {
		if msgs := left[id(i)]; len(msgs) != 2 || string(msgs[0].Body) != "back" || string(msgs[1].Body) != "queued" {
			t.Fatalf("mailbox %d left %+v; want back, queued", i, msgs)
		}
	}
}

// Z9: a start without earlier state gets a new epoch, a restore keeps
// the one it was given.
func TestEpoch(t *testing.T) {
	a, b := newTest(t, testOptions()), newTest(t, testOptions())
	if len(a.Epoch()) != 26 || a.Epoch() == b.Epoch() {
		t.Fatalf("epochs %q and %q; want two different 26-character ones", a.Epoch(), b.Epoch())
	}
	opts := testOptions()
	opts.Epoch = "kept-epoch-0123456789"
	if got := newTest(t, opts).Epoch(); got != opts.Epoch {
		t.Fatalf("Epoch() = %q; want %q", got, opts.Epoch)
	}
}

func TestRestoreKeepsSequencesAndOrder(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		future := uint64(time.Now().Add(time.Hour).UnixMicro())
		opts.Restore = map[actor.ID][]actor.Message{
			id(1): {{Seq: future, Body: []byte("kept"), Arrived: time.Now()}},
		}
		s := newTest(t, opts)
		if r := post(t, s, id(1), "new"); r.Seq != future+1 {
			t.Fatalf("seq after restore %d; want %d", r.Seq, future+1)
		}
		if d := receive(t, s, id(1)); string(d.Message.Body) != "kept" {
			t.Fatalf("got %q; want the restored message first", d.Message.Body)
		}
	})
}

func TestRequeueAfterMailboxReclaimed(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTest(t, testOptions())
		post(t, s, id(1), "x")
		d := receive(t, s, id(1))
		s.reg.get(id(1)).Sweep(time.Now().Add(time.Hour))
		synctest.Wait()
		if err := s.Requeue(id(1), d.Message); err != nil {
			t.Fatal(err)
		}
		again := receive(t, s, id(1))
		if again.Message.Seq != d.Message.Seq {
			t.Fatalf("got seq %d; want the requeued %d", again.Message.Seq, d.Message.Seq)
		}
	})
}

func TestSweepExpiresThenReapsAndCounts(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.Metrics = metrics.NewSet()
		s := newTest(t, opts)
		post(t, s, id(1), "x")
		s.Receive(context.Background(), id(2), time.Millisecond) // an empty mailbox
		time.Sleep(time.Hour + 30*time.Second)
		synctest.Wait()
		// Mailbox 2 was always empty; mailbox 1's message expired in the
		// sweep after 300 s, and then it was as idle as mailbox 2.
		if got := s.reapedIdle.Get(); got != 2 {
			t.Fatalf("reaped idle = %d; want 2", got)
		}
		if got := s.Snapshot().Mailboxes; got != 0 {
			t.Fatalf("mailboxes = %d; want 0", got)
		}
		if got := s.Stats().EvictedTTL.Load(); got != 1 {
			t.Fatalf("EvictedTTL = %d; want 1", got)
		}
	})
}

// TestSnapshotOverloaded (R6.5, Z5): the supervisor's verdict that /health
// reports — at 90 % of the memory limit, or with max_mailboxes mailboxes
// alive and every one busy; an empty mailbox without a waiter can be
// reclaimed, so it leaves the server healthy.
func TestSnapshotOverloaded(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MemoryLimit = 100
		s := newTest(t, opts)
		post(t, s, id(1), string(make([]byte, 89)))
		if got := s.Snapshot(); got != (actor.Snapshot{Mailboxes: 1, Busy: 1, Messages: 1, QueuedBytes: 89}) {
			t.Errorf("89 of 100 bytes: %+v; want not overloaded", got)
		}
		post(t, s, id(1), "x")
		if got := s.Snapshot(); got != (actor.Snapshot{Mailboxes: 1, Busy: 1, Messages: 2, QueuedBytes: 90, Overloaded: true}) {
			t.Errorf("90 of 100 bytes: %+v; want overloaded", got)
		}
	})
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MaxMailboxes = 2
		s := newTest(t, opts)
		post(t, s, id(1), "a")
		post(t, s, id(2), "b")
		if got := s.Snapshot(); got != (actor.Snapshot{Mailboxes: 2, Busy: 2, Messages: 2, QueuedBytes: 2, Overloaded: true}) {
			t.Errorf("2 of 2 mailboxes busy: %+v; want overloaded", got)
		}
		receive(t, s, id(2))
		synctest.Wait()
		if got := s.Snapshot(); got != (actor.Snapshot{Mailboxes: 2, Busy: 1, Messages: 1, QueuedBytes: 1}) {
			t.Errorf("2 of 2 mailboxes, one reclaimable: %+v; want not overloaded", got)
		}
	})
}
