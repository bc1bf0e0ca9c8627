package supervisor

import (
	"context"
	"testing"
)

// BenchmarkPostReceive is the post→get path through the registry and the
// actor, spread over 1,000 mailboxes and run from parallel goroutines.
func BenchmarkPostReceive(b *testing.B) {
	s := New(testOptions())
	defer s.Close()
	body := make([]byte, 1024)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		got := make(answers, 1)
		n := 0
		for pb.Next() {
			to := id(n % 1000)
			n++
			if _, err := s.Post(ctx, to, body); err != nil {
				b.Fatal(err)
			}
			if _, err := s.receiveInto(ctx, to, 0, got); err != nil {
				b.Fatal(err)
			}
		}
	})
}
