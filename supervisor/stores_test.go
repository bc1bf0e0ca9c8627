package supervisor

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// The behaviour every store owes the engine, run against the memory store
// and the Redis store alike (SPEC R1–R3, Z2, Z13), on real clocks: Redis
// keeps its own, so the TTL cases wait a fraction of a second.

// storeKind starts engines over one kind of store.
type storeKind struct {
	name string
	// open starts an engine with opts over a fresh store; two engines
	// opened from one storeKind value share their store, as two nodes do.
	open func(t *testing.T, opts Options) *Supervisor
}

func storeKinds(t *testing.T) []storeKind {
	return []storeKind{
		{name: "memory", open: func(t *testing.T, opts Options) *Supervisor { return newTest(t, opts) }},
		{name: "redis", open: redisKind(t, "standalone")},
		{name: "redis-cluster", open: redisKind(t, "cluster")},
	}
}

// redisKind starts one redis-server (or, in mode "cluster", a Cluster of
// three masters) for the test; each engine opened from it is a node on
// that Redis.
func redisKind(t *testing.T, mode string) func(t *testing.T, opts Options) *Supervisor {
	var once sync.Once
	var url string
	return func(t *testing.T, opts Options) *Supervisor {
		once.Do(func() {
			if mode == "cluster" {
				url = redistest.StartCluster(t, 3).URL()
			} else {
				url = redistest.Start(t).URL()
			}
		})
		st, err := redisstore.New(redisstore.Options{
			URL: url, Mode: mode, KeyPrefix: "zrc:", Timeout: time.Second, Lease: opts.TTL,
			TTL: opts.TTL, MaxQueueLength: opts.MaxQueueLength, RequireNoEviction: true,
			Recheck: 200 * time.Millisecond,
		})
		if err != nil {
			t.Fatal(err)
		}
		opts.Store = st
		s := New(opts)
		t.Cleanup(func() { s.Close(); st.Close() })
		waitFor(t, "the store to answer", st.Available)
		return s
	}
}

func waitFor(t *testing.T, what string, ok func() bool) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); !ok(); time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
	}
}

func forEachStore(t *testing.T, test func(t *testing.T, k storeKind)) {
	for _, k := range storeKinds(t) {
		t.Run(k.name, func(t *testing.T) { test(t, k) })
	}
}

// deliver receives id's oldest message without waiting and acknowledges
// it, as the HTTP layer does once the response is written.
func deliver(t *testing.T, s *Supervisor, from actor.ID) actor.Delivery {
	t.Helper()
	d := receive(t, s, from)
	if d.OK {
		if err := s.Acknowledge(from, d.Message); err != nil {
			t.Fatalf("Acknowledge: %v", err)
		}
	}
	return d
}

// R1.7, R2.1, R2.8: oldest first, byte for byte, sequences rising, queue
// lengths counting down.
func TestStoresFIFOAndIntegrity(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := k.open(t, testOptions())
		const n = 50
		var bodies [][]byte
		var seqs []uint64
		for i := range n {
			// Commas, NULs and every byte value: the store must not read them.
			b := bytes.Repeat([]byte{byte(i), ',', 0, byte(255 - i)}, i+1)
			bodies = append(bodies, b)
			r, err := s.Post(context.Background(), id(1), b)
			if err != nil {
				t.Fatalf("post %d: %v", i, err)
			}
			if r.QueueLen != i+1 {
				t.Fatalf("post %d: queue length %d; want %d", i, r.QueueLen, i+1)
			}
			if i > 0 && r.Seq <= seqs[i-1] {
				t.Fatalf("post %d: sequence %d not above %d", i, r.Seq, seqs[i-1])
			}
			seqs = append(seqs, r.Seq)
		}
		for i := range n {
			d := deliver(t, s, id(1))
			if !d.OK || d.Message.Seq != seqs[i] || !bytes.Equal(d.Message.Body, bodies[i]) || d.QueueLen != n-1-i {
				t.Fatalf("receive %d: ok=%v seq=%d len=%d body %x; want seq %d len %d body %x",
					i, d.OK, d.Message.Seq, d.QueueLen, d.Message.Body, seqs[i], n-1-i, bodies[i])
			}
		}
		if d := deliver(t, s, id(1)); d.OK {
			t.Fatalf("receive after all: got seq %d; want none", d.Message.Seq)
		}
	})
}

// R3.1: an expired message is never delivered; the TTL runs on the
// store's clock.
func TestStoresTTL(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		opts := testOptions()
		opts.TTL = 300 * time.Millisecond
		s := k.open(t, opts)
		post(t, s, id(1), "old")
		time.Sleep(opts.TTL + 50*time.Millisecond)
		r := post(t, s, id(1), "new")
		if r.QueueLen != 1 {
			t.Fatalf("queue length after the expired one: %d; want 1", r.QueueLen)
		}
		if d := deliver(t, s, id(1)); !d.OK || string(d.Message.Body) != "new" {
			t.Fatalf("got %q ok=%v; want \"new\"", d.Message.Body, d.OK)
		}
		// Redis drops a queue whose newest message expired as a key of
		// its own (key expiry), which nobody counts.
		if n := s.Stats().EvictedTTL.Load(); k.name == "memory" && n != 1 {
			t.Fatalf("evicted for TTL: %d; want 1", n)
		}
	})
}

// R1.6: the cap holds, and a message taken makes room.
func TestStoresQueueCap(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		opts := testOptions()
		opts.MaxQueueLength = 3
		s := k.open(t, opts)
		for i := range 3 {
			post(t, s, id(1), fmt.Sprint(i))
		}
		if _, err := s.Post(context.Background(), id(1), []byte("x")); !errors.Is(err, actor.ErrQueueFull) {
			t.Fatalf("fourth post: %v; want ErrQueueFull", err)
		}
		deliver(t, s, id(1))
		post(t, s, id(1), "3")
	})
}

// Z2: a waiter that left takes nothing, a message whose write failed goes
// back to the head, and each message reaches exactly one receive.
func TestStoresExactlyOnceWithDisconnects(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		s := k.open(t, testOptions())
		// A long-poll whose client leaves before any post.
		gone, leave := context.WithCancel(context.Background())
		left := make(chan error, 1)
		go func() { _, err := s.Receive(gone, id(1), time.Minute); left <- err }()
		waitFor(t, "the waiter to park", func() bool { return s.Snapshot().Waiting == 1 })
		leave()
		if err := <-left; !errors.Is(err, context.Canceled) {
			t.Fatalf("left waiter: %v; want context.Canceled", err)
		}
		// Live long-polls, then posts: each message to exactly one.
		const n = 5
		got := make(chan actor.Delivery, n)
		for range n {
			go func() {
				d, err := s.Receive(context.Background(), id(1), time.Minute)
				if err != nil {
					t.Errorf("receive: %v", err)
				}
				got <- d
			}()
		}
		waitFor(t, "the waiters to park", func() bool { return s.Snapshot().Waiting == n })
		for i := range n {
			post(t, s, id(1), fmt.Sprint(i))
		}
		seen := map[string]bool{}
		for range n {
			d := <-got
			if !d.OK || seen[string(d.Message.Body)] {
				t.Fatalf("delivery %q ok=%v: a message twice or none", d.Message.Body, d.OK)
			}
			seen[string(d.Message.Body)] = true
			if err := s.Acknowledge(id(1), d.Message); err != nil {
				t.Fatal(err)
			}
		}
		// A write that failed puts the message back at the head.
		post(t, s, id(1), "a")
		post(t, s, id(1), "b")
		d := receive(t, s, id(1))
		if err := s.Requeue(id(1), d.Message); err != nil {
			t.Fatal(err)
		}
		for _, want := range []string{"a", "b"} {
			if d := deliver(t, s, id(1)); string(d.Message.Body) != want {
				t.Fatalf("after the put-back: %q; want %q", d.Message.Body, want)
			}
		}
	})
}

// R1.7, Z13: sequences keep rising after the mailbox expired and its
// actor was reaped.
func TestStoresSequencesRiseAcrossIdleExpiry(t *testing.T) {
	forEachStore(t, func(t *testing.T, k storeKind) {
		opts := testOptions()
		opts.TTL = 200 * time.Millisecond
		opts.IdleTimeout = 100 * time.Millisecond
		opts.EvictionInterval = 50 * time.Millisecond
		s := k.open(t, opts)
		last := post(t, s, id(1), "a").Seq
		deliver(t, s, id(1))
		waitFor(t, "the idle mailbox to be reaped", func() bool { return s.Snapshot().Mailboxes == 0 })
		time.Sleep(opts.TTL) // and, in Redis, its keys to expire
		if r := post(t, s, id(1), "b"); r.Seq <= last {
			t.Fatalf("sequence after idle expiry %d; want above %d", r.Seq, last)
		}
	})
}
