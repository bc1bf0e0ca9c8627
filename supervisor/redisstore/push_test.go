package redisstore

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// node opens one node's store on rs.
func node(t *testing.T, rs *redistest.Server) *Store {
	t.Helper()
	return nodeOn(t, rs.URL(), "standalone")
}

// nodeOn is node on the Redis at url, served as mode (redis_mode).
func nodeOn(t *testing.T, url, mode string) *Store {
	t.Helper()
	s, err := New(Options{URL: url, Mode: mode, KeyPrefix: "zrc:", Timeout: time.Second, Lease: 10 * time.Second,
		TTL: time.Minute, MaxQueueLength: 100, RequireNoEviction: true, Recheck: time.Hour, Metrics: metrics.NewSet()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	deadline := time.Now().Add(5 * time.Second)
	for !s.Available() {
		if time.Now().After(deadline) {
			t.Fatal("the store did not answer")
		}
		time.Sleep(5 * time.Millisecond)
	}
	return s
}

// takes is how many take calls s made.
func takes(s *Store) string {
	var b bytes.Buffer
	s.opts.Metrics.WritePrometheus(&b)
	for _, line := range strings.Split(b.String(), "\n") {
		if n, ok := strings.CutPrefix(line, `zrc_rendezvous_store_call_seconds_count{op="take"} `); ok {
			return n
		}
	}
	return "none"
}

// waker counts wake-ups.
type waker chan struct{}

func (w waker) Wake() {
	select {
	case w <- struct{}{}:
	default:
	}
}

func (w waker) wait(t *testing.T) {
	t.Helper()
	select {
	case <-w:
	case <-time.After(5 * time.Second):
		t.Fatal("no wake-up")
	}
}

var box = actor.ID{0xab, 1}

func post(t *testing.T, q actor.Queue, body string) actor.Posted {
	t.Helper()
	p, err := q.Post(time.Now(), []byte(body), false)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func take(t *testing.T, q actor.Queue, want string) actor.Delivery {
	t.Helper()
	d, err := q.Take(time.Now())
	if err != nil || !d.OK || string(d.Message.Body) != want {
		t.Fatalf("take = %q ok=%v err=%v; want %q", d.Message.Body, d.OK, err, want)
	}
	return d
}

// waitOn watches q and takes from it, finding it empty, as a long-poll
// about to wait does: the take claims the mailbox for q's node.
func waitOn(t *testing.T, q actor.Queue, w waker) {
	t.Helper()
	watchOn(t, q, w)
	if d, err := q.Take(time.Now()); err != nil || d.OK {
		t.Fatalf("take = %+v, %v; want empty", d, err)
	}
}

// watchOn watches q and waits until the watch holds: Redis confirmed
// it and w was woken for the take.
func watchOn(t *testing.T, q actor.Queue, w waker) {
	t.Helper()
	if err := q.Watch(w); !errors.Is(err, actor.ErrWatchPending) {
		t.Fatalf("Watch = %v; want ErrWatchPending", err)
	}
	w.wait(t)
	if err := q.Watch(w); err != nil {
		t.Fatalf("Watch once confirmed = %v; want nil", err)
	}
}

func llen(t *testing.T, rs *redistest.Server) int {
	t.Helper()
	n, err := strconv.Atoi(rs.Do(t, "LLEN", "zrc:{"+box.String()+"}:q"))
	if err != nil {
		t.Fatal(err)
	}
	return n
}

// A take that finds the mailbox empty names its node; the next post on
// another node leases the message to it and publishes it there, so the
// waiting node hands it out without a take of its own.
func TestPostPushesToTheWaitingNode(t *testing.T) {
	rs := redistest.Start(t)
	a, b := node(t, rs), node(t, rs)
	qa, qb := a.Queue(box, nil), b.Queue(box, nil)
	w := make(waker, 1)
	waitOn(t, qb, w)
	if got, want := rs.Do(t, "GET", "zrc:{"+box.String()+"}:c"), b.node+":"+strconv.Itoa(connOf(box)); got != want {
		t.Fatalf("claim = %q; want node b's %q", got, want)
	}
	for i, body := range []string{"one", "two"} {
		p := post(t, qa, body)
		if p.QueueLen != 1 {
			t.Fatalf("post %q: QueueLen %d; want 1", body, p.QueueLen)
		}
		w.wait(t)
		before := takes(b)
		d := take(t, qb, body)
		if d.Message.Seq != p.Seq || d.QueueLen != 0 {
			t.Fatalf("pushed %+v; want seq %d, queue length 0", d, p.Seq)
		}
		if takes(b) != before || b.m.pushed.Get() != uint64(i+1) {
			t.Fatalf("the pushed message cost a take (pushed %d)", b.m.pushed.Get())
		}
		if err := b.Ack(box, d.Message); err != nil {
			t.Fatal(err)
		}
	}
	if n := llen(t, rs); n != 0 {
		t.Fatalf("queue holds %d; want 0 (each pushed message leased)", n)
	}
	// The queue is known empty after the push: the next long-poll parks
	// without asking Redis.
	before := takes(b)
	if d, err := qb.Take(time.Now()); err != nil || d.OK || takes(b) != before {
		t.Fatalf("take after the push = %+v, %v (asked Redis: %v); want empty without a call", d, err, takes(b) != before)
	}
}

// A node that died while it waited is not pushed to: the post finds no
// subscriber on its channel, leaves the message queued and forgets it.
func TestPostDoesNotPushToADeadNode(t *testing.T) {
	rs := redistest.Start(t)
	a, b, c := node(t, rs), node(t, rs), node(t, rs)
	qb := b.Queue(box, nil)
	waitOn(t, qb, make(waker, 1))
	b.Close()
	post(t, a.Queue(box, nil), "kept")
	if n := llen(t, rs); n != 1 {
		t.Fatalf("queue holds %d; want the message queued", n)
	}
	if got := rs.Do(t, "EXISTS", "zrc:{"+box.String()+"}:c"); got != "0" {
		t.Fatalf("claim still there (EXISTS = %s)", got)
	}
	take(t, c.Queue(box, nil), "kept")
}

// Messages go back in sequence order whatever order they are put back
// in, and a pushed message never overtakes one this node put back before
// the push arrived.
func TestPutBackKeepsOrder(t *testing.T) {
	rs := redistest.Start(t)
	a, b := node(t, rs), node(t, rs)
	qa := a.Queue(box, nil)
	qb := b.Queue(box, nil).(*queue)
	post(t, qa, "1")
	post(t, qa, "2")
	m1, m2 := take(t, qb, "1"), take(t, qb, "2")
	if err := qb.PutBack(m1.Message); err != nil {
		t.Fatal(err)
	}
	if err := qb.PutBack(m2.Message); err != nil {
		t.Fatal(err)
	}
	m1, m2 = take(t, qb, "1"), take(t, qb, "2")

	// m2 arrives as a push published before m1's put back reached Redis.
	if err := qb.PutBack(m1.Message); err != nil {
		t.Fatal(err)
	}
	qb.push(m2)
	take(t, qb, "1")
	take(t, qb, "2")
	if n := llen(t, rs); n != 0 {
		t.Fatalf("queue holds %d; want 0", n)
	}
}

// What was pushed to a node whose waiters have gone goes back to the
// queue, in order, for any node to take.
func TestIdleReturnsPushedMessages(t *testing.T) {
	rs := redistest.Start(t)
	a, b, c := node(t, rs), node(t, rs), node(t, rs)
	qa, qb := a.Queue(box, nil), b.Queue(box, nil)
	w := make(waker, 2)
	waitOn(t, qb, w)
	post(t, qa, "1")
	post(t, qa, "2")
	deadline := time.Now().Add(5 * time.Second)
	for b.m.pushed.Get() < 2 {
		if time.Now().After(deadline) {
			t.Fatalf("pushed %d; want 2", b.m.pushed.Get())
		}
		time.Sleep(time.Millisecond)
	}
	qb.Idle()
	qc := c.Queue(box, nil)
	take(t, qc, "1")
	take(t, qc, "2")
}
