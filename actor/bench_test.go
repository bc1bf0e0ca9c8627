package actor

import (
	"context"
	"testing"
	"time"
)

// benchMailbox starts a mailbox with a Recycler, as the supervisor's are.
func benchMailbox(b *testing.B) *Mailbox {
	mb := Start(ID{9}, &Options{MaxQueueLength: 100, TTL: time.Minute, Now: time.Now, Stats: &Stats{}, Recycler: &Recycler{}}, 0, nil)
	b.Cleanup(func() { mb.Stop() })
	return mb
}

// BenchmarkPostReceive is the engine's post→get path on one mailbox: two
// round trips through the actor's inbox.
func BenchmarkPostReceive(b *testing.B) {
	mb := benchMailbox(b)
	body := make([]byte, 1024)
	ctx := context.Background()
	got := make(answers, 1)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := mb.Post(body); err != nil {
			b.Fatal(err)
		}
		rc, err := mb.StartReceive(ctx, 0, got)
		if err != nil {
			b.Fatal(err)
		}
		if d, err := got.await(ctx, rc); err != nil || !d.OK {
			b.Fatal("no delivery")
		}
	}
}

// BenchmarkHandoff is a parked long-poll taking a post.
func BenchmarkHandoff(b *testing.B) {
	mb := benchMailbox(b)
	body := make([]byte, 1024)
	ctx := context.Background()
	got := make(answers, 1)
	b.ReportAllocs()
	for b.Loop() {
		rc, err := mb.StartReceive(ctx, time.Minute, got)
		if err != nil {
			b.Fatal(err)
		}
		if _, err := mb.Post(body); err != nil {
			b.Fatal(err)
		}
		if d, err := got.await(ctx, rc); err != nil || !d.OK {
			b.Fatal("no delivery")
		}
	}
}
