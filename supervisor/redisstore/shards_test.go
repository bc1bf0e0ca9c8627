package redisstore

import (
	"errors"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// slotOf agrees with Redis' CLUSTER KEYSLOT, hash tags included.
func TestSlotOfMatchesRedis(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	for _, key := range []string{"", "foo", "a", "zrc:{" + "00ff" + "}:w", "{}x", "x{}{y}", "{a}{b}", "no}tag{", "{user1000}.following", "zrc:epoch"} {
		if got, want := slotOf(key), c.Slot(t, key); got != want {
			t.Errorf("slotOf(%q) = %d; CLUSTER KEYSLOT says %d", key, got, want)
		}
	}
	if got := slotOf("foo"); got != 12182 {
		t.Errorf("slotOf(foo) = %d; want 12182 (Redis' documentation)", got)
	}
}

// Each master holds a share of the queues: one that may evict keys
// refuses the start, whichever it is.
func TestClusterEvictingMasterRefused(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	if got := c.Masters[2].Do(t, "CONFIG", "SET", "maxmemory-policy", "allkeys-lru"); got != "OK" {
		t.Fatalf("CONFIG SET: %s", got)
	}
	_, err := New(Options{URL: c.URL(), Mode: "cluster", KeyPrefix: "zrc:", Timeout: time.Second, Lease: time.Second,
		TTL: time.Minute, MaxQueueLength: 10, RequireNoEviction: true})
	if !errors.Is(err, ErrEvictingPolicy) {
		t.Fatalf("New on a Cluster with an allkeys-lru master: %v; want ErrEvictingPolicy", err)
	}
}

// A watch made while no master answers is kept, placed once the Cluster
// is back, and takes again when Redis confirms its subscription; posts
// after that wake it as usual. (The recheck is an hour away here.)
func TestClusterWatchPlacedWhenMastersComeBack(t *testing.T) {
	c := redistest.StartCluster(t, 3)
	s, poster := nodeOn(t, c.URL(), "cluster"), nodeOn(t, c.URL(), "cluster")
	for _, m := range c.Masters {
		m.Stop()
	}
	w := make(waker, 1)
	q := s.Queue(box, nil)
	if err := q.Watch(w); err == nil {
		t.Fatal("Watch with every master stopped succeeded")
	}
	if got := s.hub.count(); got != 1 {
		t.Fatalf("%d watches kept; want 1", got)
	}
	for _, m := range c.Masters {
		m.Restart(t)
	}
	w.wait(t) // placed, confirmed: take again
	if !q.(*queue).subscribed.Load() {
		t.Fatal("woken before the subscription was confirmed")
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		if _, err := poster.Queue(box, nil).Post(time.Now(), []byte("x"), false); err == nil {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("post after the restart: %v", err)
		}
		time.Sleep(50 * time.Millisecond)
	}
	w.wait(t)
}
