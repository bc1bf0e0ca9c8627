package supervisor

import (
	"context"
	"errors"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// wantBusy checks Snapshot's count of mailboxes that cannot be reclaimed.
func wantBusy(t *testing.T, s *Supervisor, mailboxes, busy int) {
	t.Helper()
	synctest.Wait()
	if got := s.Snapshot(); got.Mailboxes != mailboxes || got.Busy != busy {
		t.Fatalf("mailboxes %d, busy %d; want %d, %d", got.Mailboxes, got.Busy, mailboxes, busy)
	}
}

// park starts a long-poll on to that waits a minute; cancel withdraws it.
func park(t *testing.T, s *Supervisor, to actor.ID) (cancel func(), got <-chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		_, err := s.Receive(ctx, to, time.Minute)
		errc <- err
	}()
	synctest.Wait()
	return cancel, errc
}

// Z5, R6.5: a mailbox is busy while it holds a message or a waiting
// long-poll, and only then; an emptied mailbox or one whose long-poll
// ended is reclaimable at once.
func TestBusyCountsUnreclaimableMailboxes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		s := newTest(t, testOptions())
		post(t, s, id(1), "a")
		post(t, s, id(1), "b")
		wantBusy(t, s, 1, 1)
		receive(t, s, id(1))
		wantBusy(t, s, 1, 1)
		receive(t, s, id(1))
		wantBusy(t, s, 1, 0)

		// A long-poll that times out, one that is cancelled, one that
		// gets a message.
		s.Receive(context.Background(), id(2), time.Second)
		wantBusy(t, s, 2, 0)
		cancel, errc := park(t, s, id(3))
		wantBusy(t, s, 3, 1)
		cancel()
		if err := <-errc; !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled long-poll: %v", err)
		}
		wantBusy(t, s, 3, 0)
		_, errc = park(t, s, id(3))
		_, errc2 := park(t, s, id(3))
		wantBusy(t, s, 3, 1)
		post(t, s, id(3), "for the first waiter")
		<-errc
		wantBusy(t, s, 3, 1) // the second still waits
		post(t, s, id(3), "for the second")
		<-errc2
		wantBusy(t, s, 3, 0)

		// A message evicted for memory or expired leaves its mailbox
		// reclaimable too.
		post(t, s, id(4), "old")
		wantBusy(t, s, 4, 1)
		time.Sleep(331 * time.Second) // TTL and the sweep after it
		wantBusy(t, s, 4, 0)
	})
}

// Z5: when long-polls hold every mailbox, requests for new ids are refused
// 503 overloaded without a registry scan each; once a long-poll leaves, a
// new id is admitted again.
func TestReclaimWithEveryMailboxWaitedOn(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MaxMailboxes = 4
		s := newTest(t, opts)
		var cancels []func()
		for i := range 4 {
			cancel, _ := park(t, s, id(i))
			cancels = append(cancels, cancel)
		}
		wantBusy(t, s, 4, 4)
		for i := range 50 {
			if _, err := s.Post(context.Background(), id(100+i), []byte("x")); !errors.Is(err, actor.ErrOverloaded) {
				t.Fatalf("post %d to a new id: %v; want actor.ErrOverloaded", i, err)
			}
			if _, err := s.Receive(context.Background(), id(200+i), time.Minute); !errors.Is(err, actor.ErrOverloaded) {
				t.Fatalf("long-poll %d on a new id: %v; want actor.ErrOverloaded", i, err)
			}
		}
		if got := s.reaper.scans.Load(); got > 1 {
			t.Fatalf("%d registry scans for 100 refused new ids; want at most 1", got)
		}
		cancels[2]()
		wantBusy(t, s, 4, 3)
		post(t, s, id(300), "admitted")
		if s.reg.get(id(2)) != nil {
			t.Fatalf("the mailbox whose long-poll left was not the one reclaimed")
		}
		wantBusy(t, s, 4, 4)
		for _, c := range cancels {
			c()
		}
	})
}

// Z5: a reclaim whose scan finds nothing (here a mailbox that looks idle
// but was active later than the clock now says) is remembered: requests
// for new ids within reclaimRetry are refused without another scan, and
// the next one after it scans again.
func TestFailedReclaimIsRemembered(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var skew atomic.Int64
		opts := testOptions()
		opts.MaxMailboxes = 2
		opts.Now = func() time.Time { return time.Now().Add(time.Duration(skew.Load())) }
		s := newTest(t, opts)
		post(t, s, id(1), "x") // busy
		skew.Store(int64(time.Hour))
		s.Receive(context.Background(), id(2), time.Second) // empty, active an hour ahead
		skew.Store(0)
		wantBusy(t, s, 2, 1)
		for i := range 20 {
			if _, err := s.Post(context.Background(), id(100+i), []byte("x")); !errors.Is(err, actor.ErrOverloaded) {
				t.Fatalf("post %d to a new id: %v; want actor.ErrOverloaded", i, err)
			}
		}
		if got := s.reaper.scans.Load(); got != 1 {
			t.Fatalf("%d registry scans; want 1, then the failure remembered", got)
		}
		time.Sleep(reclaimRetry)
		if _, err := s.Post(context.Background(), id(200), []byte("x")); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("post after reclaimRetry: %v; want actor.ErrOverloaded", err)
		}
		if got := s.reaper.scans.Load(); got != 2 {
			t.Fatalf("%d registry scans; want 2 once reclaimRetry passed", got)
		}
	})
}

// R3.5, Z5: a request that needs the reaper waits for it at most
// reaperWait and is then refused with actor.ErrOverloaded, in line or while it
// works; here the reaper is stalled and takes nothing.
func TestReaperRequestsHaveADeadline(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		opts := testOptions()
		opts.MemoryLimit = 10
		opts.MaxMailboxes = 1
		s := newTest(t, opts)
		post(t, s, id(1), "0123456789")
		s.reaper.stop()
		s.reaper = newReaper(s) // one whose run loop never serves
		start := time.Now()
		if _, err := s.Post(context.Background(), id(1), []byte("more")); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("post waiting for memory: %v; want actor.ErrOverloaded", err)
		}
		if _, err := s.Receive(context.Background(), id(2), time.Minute); !errors.Is(err, actor.ErrOverloaded) {
			t.Fatalf("long-poll waiting for a mailbox: %v; want actor.ErrOverloaded", err)
		}
		if took := time.Since(start); took != 2*reaperWait {
			t.Fatalf("took %v; want %v, reaperWait each", took, 2*reaperWait)
		}
		close(s.reaper.done) // for Close's stop
	})
}

// Z5: new mailboxes arriving together at max_mailboxes each get one while
// an idle empty mailbox is left to reclaim, even when the slot the reaper
// freed for one of them is taken by another first.
func TestConcurrentNewMailboxesReclaim(t *testing.T) {
	const n = 50
	opts := testOptions()
	opts.MaxMailboxes = n
	s := newTest(t, opts)
	for i := range n {
		post(t, s, id(i), "x")
		receive(t, s, id(i))
	}
	errs := make(chan error, n)
	for i := range n {
		go func() {
			_, err := s.Post(context.Background(), id(n+i), []byte("x"))
			errs <- err
		}()
	}
	for range n {
		if err := <-errs; err != nil {
			t.Errorf("Post to a new mailbox with idle ones left: %v; want accepted", err)
		}
	}
	if got := s.Snapshot(); got.Mailboxes != n || got.Busy != n {
		t.Fatalf("mailboxes %d, busy %d; want %d, %d", got.Mailboxes, got.Busy, n, n)
	}
}
