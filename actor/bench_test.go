package actor

import (
	"context"
	"testing"
	"time"
)

// BenchmarkPostReceive is the engine's post→get path on one mailbox: two
// round trips through the actor's inbox.
// benchMailbox starts a mailbox with a Recycler, as the supervisor's are.
func benchMailbox(b *testing.B) *Mailbox {
	mb := Start(ID{9}, &Options{MaxQueueLength: 100, TTL: time.Minute, Now: time.Now, Stats: &Stats{}, Recycler: &Recycler{}}, 0, nil)
	b.Cleanup(func() { mb.Stop() })
	return mb
}

func BenchmarkPostReceive(b *testing.B) {
	mb := benchMailbox(b)
	body := make([]byte, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mb.Post(body); err != nil {
			b.Fatal(err)
		}
		w, err := mb.Park(ctx, 0, nil)
		if err != nil {
			b.Fatal(err)
		}
		if err := w.Await(); err != nil || !w.Delivery().OK {
			b.Fatal("no delivery")
		}
		w.Release()
	}
}

// BenchmarkHandoff is a parked long-poll taking a post.
func BenchmarkHandoff(b *testing.B) {
	mb := benchMailbox(b)
	body := make([]byte, 1024)
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		w, err := mb.Park(ctx, time.Minute, nil)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := mb.Post(body); err != nil {
			b.Fatal(err)
		}
		if err := w.Await(); err != nil || !w.Delivery().OK {
			b.Fatal("no delivery")
		}
		w.Release()
	}
}
