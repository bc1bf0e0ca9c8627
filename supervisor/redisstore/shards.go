package redisstore

import (
	"context"
	"errors"
	"sort"
	"strings"
	"sync"

	"github.com/redis/go-redis/v9"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// shards holds a Cluster node's wake-up subscriptions: sharded pub/sub
// (SSUBSCRIBE) on one connection per master that serves a watched
// mailbox's slot, so that a wake-up (SPUBLISH) travels only within the
// shard that holds the mailbox. Where each slot is served comes from
// CLUSTER SLOTS. When a slot moves (its master ends the subscriptions
// with sunsubscribe, or answers MOVED) or a master fails over, the
// watches follow the slot to its new master and take again once Redis
// confirms the new subscription: a post in between is never stranded.
type shards struct {
	h *hub
	// mu guards what follows. Subscription requests are written while
	// holding it, so that a watch placed, moved and dropped reaches Redis
	// in that order.
	mu       sync.Mutex
	ranges   []slotRange         // who serves which slots; nil until known
	masters  map[string]*subConn // by address
	placed   map[string]*subConn // a watched channel's connection
	unplaced map[string]*watch   // watched while its slot's master was unknown
	kicks    chan struct{}
}

// slotRange is a run of slots one master serves.
type slotRange struct {
	start, end int
	addr       string
}

var errNoMaster = errors.New("no Redis Cluster master is known to serve the mailbox's slot")

func newShards(h *hub) *shards {
	sh := &shards{
		h:        h,
		masters:  make(map[string]*subConn),
		placed:   make(map[string]*subConn),
		unplaced: make(map[string]*watch),
		kicks:    make(chan struct{}, 1),
	}
	h.wg.Add(1)
	go sh.run()
	return sh
}

// kick asks for the watches to be placed again: a slot may have moved.
func (sh *shards) kick() {
	select {
	case sh.kicks <- struct{}{}:
	default:
	}
}

// run places the watches again on every kick, and again with backoff
// while some are out of place (a master is down and not yet replaced,
// or the slots read were older than a move).
func (sh *shards) run() {
	defer sh.h.wg.Done()
	ctx := sh.h.ctx
	for {
		select {
		case <-ctx.Done():
			return
		case <-sh.kicks:
		}
		for backoff := minBackoff; !sh.place(ctx); backoff = min(2*backoff, maxBackoff) {
			if !sleep(ctx, backoff) {
				return
			}
		}
	}
}

// watch places q's watch on the connection to its slot's master and
// subscribes it there (actor.ErrWatchPending: the actor is woken once
// Redis confirms it, as on one Redis). With no master known it keeps the
// watch unplaced (the recheck wakes it meanwhile) and fails.
func (sh *shards) watch(q *queue, wake actor.Waker) error {
	sh.mu.Lock()
	known := sh.ranges != nil
	sh.mu.Unlock()
	if !known {
		sh.place(context.Background()) // the first watch: learn the slots
	}
	ch := q.channel
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if c := sh.placed[ch]; c != nil {
		_, err := c.rewatch(ch, wake)
		return err
	}
	if w := sh.unplaced[ch]; w != nil {
		w.wake = wake
		return errNoMaster
	}
	addr := sh.owner(slotOf(ch))
	if addr == "" {
		sh.unplaced[ch] = &watch{q: q, wake: wake, retake: true}
		sh.kick()
		return errNoMaster
	}
	c := sh.master(addr)
	sh.placed[ch] = c
	return c.add(q, wake)
}

// unwatch ends q's watch and reports whether there was one.
func (sh *shards) unwatch(q *queue) bool {
	ch := q.channel
	sh.mu.Lock()
	if _, ok := sh.unplaced[ch]; ok {
		delete(sh.unplaced, ch)
		q.subscribed.Store(false)
		sh.mu.Unlock()
		return true
	}
	c := sh.placed[ch]
	if c == nil {
		sh.mu.Unlock()
		return false
	}
	delete(sh.placed, ch)
	c.mu.Lock()
	delete(c.subs, ch)
	q.subscribed.Store(false)
	c.mu.Unlock()
	sh.mu.Unlock()
	// Outside the lock: the watch is gone, so no move races this.
	_ = c.ps.SUnsubscribe(sh.h.s.callContext(), ch)
	return true
}

// place reads where the slots are served and moves every watch whose
// slot's master changed to the new one; it subscribes again, where they
// are, the watches whose subscription Redis ended, and closes the
// connections to processes that no longer serve a slot. It reports
// whether every watch is where it belongs.
func (sh *shards) place(ctx context.Context) bool {
	ranges, err := sh.slots(ctx)
	if err != nil {
		return false
	}
	ctx, cancel := context.WithTimeout(ctx, sh.h.s.opts.Timeout)
	defer cancel()
	sh.mu.Lock()
	defer sh.mu.Unlock()
	sh.ranges = ranges
	settled := true
	for ch, c := range sh.placed {
		addr := sh.owner(slotOf(ch))
		c.mu.Lock()
		w := c.subs[ch]
		ended := w.ended
		c.mu.Unlock()
		switch {
		case addr == "":
			c.mu.Lock()
			delete(c.subs, ch)
			c.mu.Unlock()
			delete(sh.placed, ch)
			w.q.subscribed.Store(false)
			sh.unplaced[ch] = w
			settled = false
		case addr != c.addr:
			sh.move(ctx, w, c, sh.master(addr))
		case ended:
			// Redis ended it, yet this master still serves the slot as far
			// as the slots read say: ask again (a MOVED reply sends us on).
			c.mu.Lock()
			w.retake = true
			c.mu.Unlock()
			settled = false
			sh.h.s.m.moved.Inc()
			_ = c.ps.SSubscribe(ctx, ch)
		}
	}
	for ch, w := range sh.unplaced {
		if addr := sh.owner(slotOf(ch)); addr != "" {
			delete(sh.unplaced, ch)
			sh.move(ctx, w, nil, sh.master(addr))
		} else {
			settled = false
		}
	}
	for addr, c := range sh.masters {
		if !sh.serves(addr) {
			delete(sh.masters, addr)
			c.close()
		}
	}
	return settled
}

// move subscribes w on to, after from (nil for none) if from's process
// still serves slots. Called with sh.mu held.
func (sh *shards) move(ctx context.Context, w *watch, from, to *subConn) {
	ch := w.q.channel
	w.q.subscribed.Store(false)
	if from != nil {
		from.mu.Lock()
		delete(from.subs, ch)
		from.mu.Unlock()
		if sh.serves(from.addr) {
			_ = from.ps.SUnsubscribe(ctx, ch)
		}
	}
	to.mu.Lock()
	to.subs[ch] = w
	w.retake = true // take again once confirmed: posts meanwhile woke nobody
	w.ended = false
	to.mu.Unlock()
	sh.placed[ch] = to
	sh.h.s.m.moved.Inc()
	_ = to.ps.SSubscribe(ctx, ch)
}

// slots asks the Cluster (up to three of its processes, as the client
// picks them) which master serves which slots.
func (sh *shards) slots(ctx context.Context) ([]slotRange, error) {
	var err error
	for range 3 {
		cctx, cancel := context.WithTimeout(ctx, sh.h.s.opts.Timeout)
		var res []redis.ClusterSlot
		res, err = sh.h.s.rdb.ClusterSlots(cctx).Result()
		cancel()
		if err != nil {
			continue
		}
		ranges := make([]slotRange, 0, len(res))
		for _, r := range res {
			if len(r.Nodes) > 0 {
				ranges = append(ranges, slotRange{r.Start, r.End, r.Nodes[0].Addr})
			}
		}
		sort.Slice(ranges, func(i, j int) bool { return ranges[i].start < ranges[j].start })
		return ranges, nil
	}
	return nil, err
}

// owner is the address of slot's master, "" when none is known. Called
// with sh.mu held.
func (sh *shards) owner(slot int) string {
	i := sort.Search(len(sh.ranges), func(i int) bool { return sh.ranges[i].end >= slot })
	if i < len(sh.ranges) && sh.ranges[i].start <= slot {
		return sh.ranges[i].addr
	}
	return ""
}

// serves reports whether addr serves a slot. Called with sh.mu held.
func (sh *shards) serves(addr string) bool {
	for _, r := range sh.ranges {
		if r.addr == addr {
			return true
		}
	}
	return false
}

// master is the pub/sub connection to the master at addr, opened on
// first use. Called with sh.mu held.
func (sh *shards) master(addr string) *subConn {
	if c := sh.masters[addr]; c != nil {
		return c
	}
	o := *sh.h.s.nodeOpts
	o.Addr = addr
	client := redis.NewClient(&o)
	ctx, stop := context.WithCancel(sh.h.ctx)
	c := &subConn{ps: client.SSubscribe(ctx), sharded: true, addr: addr, client: client, stop: stop, subs: make(map[string]*watch)}
	sh.masters[addr] = c
	sh.h.wg.Add(1)
	go sh.h.receive(ctx, c, "")
	return c
}

// conns lists the open connections.
func (sh *shards) conns() []*subConn {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	cs := make([]*subConn, 0, len(sh.masters))
	for _, c := range sh.masters {
		cs = append(cs, c)
	}
	return cs
}

func (sh *shards) unplacedCount() int {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return len(sh.unplaced)
}

func (sh *shards) unplacedWatches() []watched {
	sh.mu.Lock()
	defer sh.mu.Unlock()
	ws := make([]watched, 0, len(sh.unplaced))
	for _, w := range sh.unplaced {
		ws = append(ws, watched{w.q, w.wake})
	}
	return ws
}

// slotOf is the Cluster slot of key: CRC16 (XMODEM) of its hash tag (the
// part between the first { and the } after it, when not empty) or of
// the whole key, modulo 16,384.
func slotOf(key string) int {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			key = key[i+1 : i+1+j]
		}
	}
	var crc uint16
	for i := 0; i < len(key); i++ {
		crc ^= uint16(key[i]) << 8
		for range 8 {
			if crc&0x8000 != 0 {
				crc = crc<<1 ^ 0x1021
			} else {
				crc <<= 1
			}
		}
	}
	return int(crc) % 16384
}
