package redisstore

import (
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// A rate-limit bucket in Redis is one budget for every node: reservations
// take what is there, at most what is asked, and none when it is empty;
// it refills at its rate.
func TestReserveSharesOneBucket(t *testing.T) {
	rs := redistest.Start(t)
	a, b := node(t, rs), node(t, rs)
	checkReserveSharesOneBucket(t, a, b)
	rs.Stop()
	deadline := time.Now().Add(5 * time.Second)
	for a.Available() && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if _, _, err := a.Reserve("post:src", 1, 10, 1); err == nil {
		t.Fatal("Reserve with Redis stopped succeeded")
	}
}

// The same on a Redis Cluster: a bucket is one key in one slot.
func TestReserveSharesOneBucketInACluster(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	checkReserveSharesOneBucket(t, nodeOn(t, rc.URL(), "cluster"), nodeOn(t, rc.URL(), "cluster"))
}

func checkReserveSharesOneBucket(t *testing.T, a, b *Store) {
	t.Helper()
	for _, step := range []struct {
		s           *Store
		want, got   int
		left        float64
		perSecond   float64
		description string
	}{
		{a, 4, 4, 6, 0.001, "a reserves 4 of 10"},
		{b, 10, 6, 0, 0.001, "b gets the 6 left"},
		{a, 1, 0, 0, 0.001, "empty for a"},
		{b, 1, 0, 0, 0.001, "empty for b"},
	} {
		got, left, err := step.s.Reserve("post:src", step.perSecond, 10, step.want)
		if err != nil || got != step.got || left < step.left-0.01 || left > step.left+0.01 {
			t.Fatalf("%s: granted %d, %.3f left, %v; want %d, %.3f", step.description, got, left, err, step.got, step.left)
		}
	}
	// 1,000 tokens a second refill a bucket of 10 in 10 ms.
	time.Sleep(20 * time.Millisecond)
	if got, _, err := a.Reserve("get:src", 1000, 10, 10); err != nil || got != 10 {
		t.Fatalf("a fresh bucket: granted %d, %v; want 10", got, err)
	}
	time.Sleep(20 * time.Millisecond)
	if got, _, err := b.Reserve("get:src", 1000, 10, 10); err != nil || got != 10 {
		t.Fatalf("after refilling: granted %d, %v; want 10", got, err)
	}
}
