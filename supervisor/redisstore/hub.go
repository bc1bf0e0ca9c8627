package redisstore

import (
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// subConns is how many pub/sub connections a node shares among all its
// watched mailboxes: never one per waiting GET (Z13). Two take a burst of
// new long-polls' subscriptions faster than one (10,000 waiting
// long-polls held 1 KiB less each). Each also carries the node's pushes
// for the mailboxes on it, so a push and the wake-ups after it arrive in
// the order Redis sent them, which lets a pushed message vouch for an
// empty queue (queue.popPushed).
const subConns = 2

// connOf is the index of the pub/sub connection id's channel is on.
func connOf(id actor.ID) int { return int(id[0]) % subConns }

// hub delivers another node's wake-ups to this node's actors: a mailbox
// is subscribed while its actor watches it, on one of a few shared
// pub/sub connections. Wake-ups can be lost (a reconnect, a subscription
// still on its way), so after a reconnect every watched mailbox looks
// again, and every Recheck each watched mailbox whose queue or leases are
// not empty is woken whatever the channel said.
type hub struct {
	s      *Store
	own    [subConns]string // this node's push channel on each connection
	conns  [subConns]*subConn
	shards *shards // in a Cluster, instead of conns (shards.go)
	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type subConn struct {
	ps *redis.PubSub
	// sharded: SSUBSCRIBE on one Cluster master, at addr; its client is
	// the connection's own, and stop ends its receive loop.
	sharded bool
	addr    string
	client  *redis.Client
	stop    context.CancelFunc
	mu      sync.Mutex
	subs    map[string]*watch // by channel; guarded by mu
}

// watch is one watched mailbox.
type watch struct {
	q    *queue
	wake actor.Waker
	// retake: once Redis confirms the subscription, wake the actor so that
	// it takes (a new watch, one moved to a Cluster slot's new master, or
	// one subscribed again after its master ended it). ended: a Cluster
	// master ended the subscription (its slot moved).
	retake, ended bool
}

func newHub(s *Store) *hub {
	h := &hub{s: s}
	h.ctx, h.cancel = context.WithCancel(context.Background())
	if s.cluster != nil {
		h.shards = newShards(h)
	} else {
		for i := range h.conns {
			// What other nodes push to this one for the mailboxes on this
			// connection. Until Redis confirms it they find no subscriber
			// and leave their messages queued.
			h.own[i] = s.nodeChannels + s.claims[i]
			c := &subConn{ps: s.rdb.Subscribe(h.ctx, h.own[i]), subs: make(map[string]*watch)}
			h.conns[i] = c
			h.wg.Add(1)
			go h.receive(h.ctx, c, h.own[i])
		}
	}
	h.wg.Add(1)
	go h.recheck(h.ctx)
	return h
}

// watch subscribes q's channel and returns actor.ErrWatchPending: the
// actor is woken once Redis confirms the subscription, so that its take
// comes after every post that no wake-up reaches. On a failure the
// watch stays: the pub/sub connection subscribes it again when it is
// back, and the recheck looks meanwhile.
func (h *hub) watch(q *queue, wake actor.Waker) error {
	if h.shards != nil {
		return h.shards.watch(q, wake)
	}
	c := h.conns[connOf(q.id)]
	if ok, err := c.rewatch(q.channel, wake); ok {
		return err
	}
	return c.add(q, wake)
}

// add keeps a new watch of q on c and subscribes its channel there;
// actor.ErrWatchPending: the actor is woken once Redis confirms it.
func (c *subConn) add(q *queue, wake actor.Waker) error {
	c.mu.Lock()
	c.subs[q.channel] = &watch{q: q, wake: wake, retake: true}
	c.mu.Unlock()
	ctx := q.s.callContext()
	var err error
	if c.sharded {
		err = c.ps.SSubscribe(ctx, q.channel)
	} else {
		err = c.ps.Subscribe(ctx, q.channel)
	}
	if err != nil {
		return err
	}
	return actor.ErrWatchPending
}

// rewatch gives channel's watch on c, if it has one (ok), the actor's
// waker of the moment; err is actor.ErrWatchPending while Redis has not
// confirmed the subscription.
func (c *subConn) rewatch(channel string, wake actor.Waker) (ok bool, err error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	w := c.subs[channel]
	if w == nil {
		return false, nil
	}
	w.wake = wake
	if w.retake {
		return true, actor.ErrWatchPending
	}
	return true, nil
}

// unwatch ends q's watch and reports whether there was one.
func (h *hub) unwatch(q *queue) bool {
	if h.shards != nil {
		return h.shards.unwatch(q)
	}
	c := h.conns[connOf(q.id)]
	c.mu.Lock()
	_, ok := c.subs[q.channel]
	delete(c.subs, q.channel)
	q.subscribed.Store(false)
	c.mu.Unlock()
	if ok {
		// On a failure the channel is still forgotten: a reconnect does
		// not subscribe it again.
		_ = c.ps.Unsubscribe(h.s.callContext(), q.channel)
	}
	return ok
}

func (h *hub) count() int {
	n := 0
	for _, c := range h.subConns() {
		c.mu.Lock()
		n += len(c.subs)
		c.mu.Unlock()
	}
	if h.shards != nil {
		n += h.shards.unplacedCount()
	}
	return n
}

// subConns lists the pub/sub connections.
func (h *hub) subConns() []*subConn {
	if h.shards != nil {
		return h.shards.conns()
	}
	return h.conns[:]
}

// receive serves one pub/sub connection: a confirmation wakes the actor
// of a watch that waits for it (retake), messages wake their actor. After a failure it waits (backing off) and
// reads again, which reconnects and subscribes every channel again; the
// first confirmation after that wakes every mailbox on the connection,
// since wake-ups may have been lost meanwhile. own is the node's push
// channel on it ("" for none).
func (h *hub) receive(ctx context.Context, c *subConn, own string) {
	defer h.wg.Done()
	lost := false
	backoff := minBackoff
	for {
		msg, err := c.ps.Receive(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return
			}
			if c.sharded {
				// A master that lost a slot (MOVED) or the connection
				// (a failover?): ask where the slots are now.
				h.shards.kick()
				if isRedisError(err) {
					continue
				}
			}
			if !lost {
				lost = true
				h.s.log.Warn("store pub/sub connection lost; waiting mailboxes will look again once it is back", zap.Error(err))
				c.each(func(w *watch) { w.q.subscribed.Store(false) })
			}
			if !sleep(ctx, backoff) {
				return
			}
			backoff = min(2*backoff, maxBackoff)
			continue
		}
		backoff = minBackoff
		switch m := msg.(type) {
		case *redis.Subscription:
			switch m.Kind {
			case "subscribe", "ssubscribe":
				c.mu.Lock()
				var again watched
				if w := c.subs[m.Channel]; w != nil {
					w.q.subscribed.Store(true)
					if w.retake {
						again = watched{w.q, w.wake}
					}
					w.retake, w.ended = false, false
				}
				c.mu.Unlock()
				if again.q != nil {
					again.nudge() // subscribed first, then take
				}
			case "sunsubscribe":
				// Redis ends a sharded subscription itself when the
				// channel's slot moved to another master.
				c.mu.Lock()
				w := c.subs[m.Channel]
				if w != nil {
					w.q.subscribed.Store(false)
					w.ended = true
				}
				c.mu.Unlock()
				if w != nil {
					h.shards.kick()
				}
			}
		case *redis.Message:
			if own != "" && m.Channel == own {
				h.pushed(m.Payload)
				break
			}
			c.mu.Lock()
			w := c.subs[m.Channel]
			var wake watched
			if w != nil {
				wake = watched{w.q, w.wake}
			}
			c.mu.Unlock()
			if w != nil {
				wake.nudge()
			}
		}
		if lost {
			lost = false
			h.s.m.reconnects.Inc()
			h.s.log.Info("store pub/sub connection regained")
			var all []watched
			c.each(func(w *watch) { all = append(all, watched{w.q, w.wake}) })
			for _, w := range all {
				w.nudge()
			}
		}
	}
}

// pushed hands a message another node's post leased to this node
// ("<hex id>,<queue length>,<entry>", lua/post.lua) to its mailbox's
// queue and wakes the actor; a mailbox no longer watched here gets it
// back at once.
func (h *hub) pushed(payload string) {
	hexID, rest, ok1 := strings.Cut(payload, ",")
	lenText, entry, ok2 := strings.Cut(rest, ",")
	id, err := actor.ParseID(hexID)
	n, err2 := strconv.Atoi(lenText)
	if !ok1 || !ok2 || err != nil || err2 != nil {
		return // not ours to read: its lease runs out and it comes back
	}
	d, err := delivery(entry, int64(n))
	if err != nil {
		return
	}
	c := h.conns[connOf(id)]
	c.mu.Lock()
	w := c.subs[h.s.key(hexID, "w")]
	var wake actor.Waker
	if w != nil {
		w.q.push(d)
		wake = w.wake
	}
	h.s.m.pushed.Inc()
	c.mu.Unlock()
	if w == nil {
		go func() { _ = h.s.newQueue(id).putBack(d.Message.Seq) }()
		return
	}
	wake.Wake()
}

// each calls f on every watch of the connection, under its lock.
func (c *subConn) each(f func(*watch)) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for _, w := range c.subs {
		f(w)
	}
}

// recheckBatch bounds one pipeline of the recheck.
const recheckBatch = 512

// recheck is the backstop: every Recheck it pings each pub/sub connection
// (a dead one is noticed and replaced) and wakes every watched mailbox
// whose queue or leases are not empty, in pipelines of a few hundred.
func (h *hub) recheck(ctx context.Context) {
	defer h.wg.Done()
	t := time.NewTicker(h.s.opts.Recheck)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		var ws []watched
		for _, c := range h.subConns() {
			pctx, cancel := context.WithTimeout(ctx, h.s.opts.Timeout)
			_ = c.ps.Ping(pctx)
			cancel()
			c.each(func(w *watch) { ws = append(ws, watched{w.q, w.wake}) })
		}
		if h.shards != nil {
			// Unplaced watches have no subscription: they look every time.
			for _, w := range h.shards.unplacedWatches() {
				w.nudge()
			}
			h.shards.kick()
		}
		for len(ws) > 0 {
			n := min(len(ws), recheckBatch)
			h.recheckBatch(ctx, ws[:n])
			ws = ws[n:]
		}
	}
}

// watched is a watch as read under its connection's lock.
type watched struct {
	q    *queue
	wake actor.Waker
}

// nudge tells the mailbox's queue that something may have changed (so
// that its next take asks Redis) and wakes its actor.
func (w watched) nudge() {
	w.q.wakes.Add(1)
	w.wake.Wake()
}

func (h *hub) recheckBatch(ctx context.Context, ws []watched) {
	ctx, cancel := context.WithTimeout(ctx, h.s.opts.Timeout)
	defer cancel()
	pipe := h.s.rdb.Pipeline()
	lens := make([]*redis.IntCmd, len(ws))
	leases := make([]*redis.IntCmd, len(ws))
	for i, w := range ws {
		lens[i] = pipe.LLen(ctx, w.q.keys[0])
		leases[i] = pipe.ZCard(ctx, w.q.keys[2])
	}
	// A failed call (Redis away, or one Cluster master) wakes nobody:
	// the next round looks again.
	_, _ = pipe.Exec(ctx)
	for i, w := range ws {
		if lens[i].Err() == nil && leases[i].Err() == nil && (lens[i].Val() > 0 || leases[i].Val() > 0) {
			w.nudge()
		}
	}
}

func (h *hub) close() {
	h.cancel()
	for _, c := range h.subConns() {
		c.close()
	}
	h.wg.Wait()
}

func (c *subConn) close() {
	if c.stop != nil {
		c.stop()
	}
	_ = c.ps.Close()
	if c.client != nil {
		_ = c.client.Close()
	}
}

// isRedisError tells an error Redis answered from a failed connection.
func isRedisError(err error) bool {
	var re redis.Error
	return errors.As(err, &re)
}

const (
	minBackoff = 100 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// sleep waits d unless ctx ends first, and reports whether it waited.
func sleep(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
		return false
	case <-t.C:
		return true
	}
}
