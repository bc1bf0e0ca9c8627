package redisstore

import (
	"context"
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
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

type subConn struct {
	ps   *redis.PubSub
	mu   sync.Mutex
	subs map[string]*watch // by channel; guarded by mu
}

// watch is one watched mailbox.
type watch struct {
	q    *queue
	wake actor.Waker
	// confirmed is closed when Redis confirms the subscription.
	confirmed   chan struct{}
	isConfirmed bool
}

func newHub(s *Store) *hub {
	h := &hub{s: s}
	ctx, cancel := context.WithCancel(context.Background())
	h.cancel = cancel
	for i := range h.conns {
		// What other nodes push to this one for the mailboxes on this
		// connection. Until Redis confirms it they find no subscriber and
		// leave their messages queued.
		h.own[i] = s.nodeChannels + s.claims[i]
		c := &subConn{ps: s.rdb.Subscribe(ctx, h.own[i]), subs: make(map[string]*watch)}
		h.conns[i] = c
		h.wg.Add(1)
		go h.receive(ctx, c, h.own[i])
	}
	h.wg.Add(1)
	go h.recheck(ctx)
	return h
}

func (h *hub) conn(q *queue) *subConn { return h.conns[connOf(q.id)] }

// watch subscribes q's channel and waits for Redis to confirm it, so
// that every post after it is published to this node. On a failure the
// watch stays: the pub/sub connection subscribes it again when it is
// back, and the recheck looks meanwhile.
func (h *hub) watch(q *queue, wake actor.Waker) error {
	c := h.conn(q)
	c.mu.Lock()
	if w := c.subs[q.channel]; w != nil {
		w.wake = wake
		c.mu.Unlock()
		return nil
	}
	w := &watch{q: q, wake: wake, confirmed: make(chan struct{})}
	c.subs[q.channel] = w
	c.mu.Unlock()
	ctx, cancel := context.WithTimeout(context.Background(), h.s.opts.Timeout)
	defer cancel()
	err := c.ps.Subscribe(ctx, q.channel)
	if err == nil {
		select {
		case <-w.confirmed:
		case <-ctx.Done():
			err = ctx.Err()
		}
	}
	return err
}

// unwatch ends q's watch and reports whether there was one.
func (h *hub) unwatch(q *queue) bool {
	c := h.conn(q)
	c.mu.Lock()
	_, ok := c.subs[q.channel]
	delete(c.subs, q.channel)
	q.subscribed.Store(false)
	c.mu.Unlock()
	if ok {
		ctx, cancel := context.WithTimeout(context.Background(), h.s.opts.Timeout)
		defer cancel()
		// On a failure the channel is still forgotten: a reconnect does
		// not subscribe it again.
		_ = c.ps.Unsubscribe(ctx, q.channel)
	}
	return ok
}

func (h *hub) count() int {
	n := 0
	for _, c := range h.conns {
		c.mu.Lock()
		n += len(c.subs)
		c.mu.Unlock()
	}
	return n
}

// receive serves one pub/sub connection: confirmations release watch,
// messages wake their actor. After a failure it waits (backing off) and
// reads again, which reconnects and subscribes every channel again; the
// first confirmation after that wakes every mailbox on the connection,
// since wake-ups may have been lost meanwhile.
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
			if m.Kind == "subscribe" {
				c.mu.Lock()
				if w := c.subs[m.Channel]; w != nil {
					w.q.subscribed.Store(true)
					if !w.isConfirmed {
						w.isConfirmed = true
						close(w.confirmed)
					}
				}
				c.mu.Unlock()
			}
		case *redis.Message:
			if m.Channel == own {
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
		for _, c := range h.conns {
			pctx, cancel := context.WithTimeout(ctx, h.s.opts.Timeout)
			_ = c.ps.Ping(pctx)
			cancel()
			c.each(func(w *watch) { ws = append(ws, watched{w.q, w.wake}) })
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
	if _, err := pipe.Exec(ctx); err != nil {
		return // Redis is away: the keeper reports it, and the next round looks again
	}
	for i, w := range ws {
		if lens[i].Val() > 0 || leases[i].Val() > 0 {
			w.nudge()
		}
	}
}

func (h *hub) close() {
	h.cancel()
	for _, c := range h.conns {
		_ = c.ps.Close()
	}
	h.wg.Wait()
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
