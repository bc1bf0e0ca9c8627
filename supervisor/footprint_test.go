//go:build !race

// Memory footprints are measured without the race detector, which enlarges
// every goroutine stack and allocation; .ci/run runs them in a plain pass.

package supervisor

import (
	"context"
	"runtime"
	"testing"
	"time"
)

// memInUse is heap and goroutine stacks after a full collection.
func memInUse() (heap, stack uint64) {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc, ms.StackInuse
}

// An idle mailbox actor — spawned, used once, left empty — costs under
// 4 KiB of heap and stack together (issue budget, docs/performance.md),
// and holds no goroutine: it hibernates until its next command.
func TestIdleMailboxFootprint(t *testing.T) {
	const n = 10000
	s := New(testOptions())
	defer s.Close()
	heap0, stack0 := memInUse()
	goroutines := runtime.NumGoroutine()
	for i := range n {
		if _, err := s.Post(context.Background(), id(i), []byte("x")); err != nil {
			t.Fatal(err)
		}
		if d, _ := s.Receive(context.Background(), id(i), 0); !d.OK {
			t.Fatal("message not delivered")
		}
	}
	heap1, stack1 := memInUse()
	perHeap, perStack := float64(heap1-heap0)/n, float64(stack1-stack0)/n
	per := perHeap + perStack
	perG := float64(runtime.NumGoroutine()-goroutines) / n
	t.Logf("idle mailbox: %.0f bytes heap + %.0f bytes stack, %.2f goroutines each", perHeap, perStack, perG)
	if per >= 4096 {
		t.Fatalf("idle mailbox costs %.0f bytes; budget is under 4 KiB", per)
	}
	if perG != 0 {
		t.Fatalf("%.2f goroutines per idle mailbox; want 0 (hibernating)", perG)
	}
}

// A waiting long-poll costs the engine its Waiter and timer, and the
// receive its Receiver and the records of its caller's two-way select (in
// the HTTP layer, the pooled getAnswer and the handler's select): the
// goroutine that waits is the HTTP handler's own, and the actor's
// goroutine does not wait with it, so only heap counts.
func TestWaitingLongPollFootprint(t *testing.T) {
	const n = 5000
	s := New(testOptions())
	defer s.Close()
	for i := range n { // mailboxes first: measure only the waiting
		s.Post(context.Background(), id(i), []byte("x"))
		s.Receive(context.Background(), id(i), 0)
	}
	heap0, _ := memInUse()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{}, n)
	for i := range n {
		go func() {
			s.Receive(ctx, id(i), time.Minute)
			done <- struct{}{}
		}()
	}
	for s.Snapshot().Waiting != n {
		time.Sleep(time.Millisecond)
	}
	heap1, _ := memInUse()
	// This counts each test goroutine's own descriptor and closure (about
	// 500 bytes) that an HTTP handler has anyway: it errs on the safe side.
	// Measured: 1,158 bytes in all, the Receiver here being a channel of
	// answers (1,142 when the Waiter kept the Delivery and a ready channel
	// of its own). With a Delivery channel and a timer channel (a
	// three-way select) it was 1,438.
	per := float64(heap1-heap0) / n
	cancel()
	for range n {
		<-done
	}
	t.Logf("waiting long-poll in the engine: %.0f bytes of heap each", per)
	if per >= 1280 {
		t.Fatalf("a waiting long-poll costs %.0f bytes of heap in the engine; want under 1.25 KiB", per)
	}
}
