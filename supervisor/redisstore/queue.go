package redisstore

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// queue is one mailbox's Queue on this node. Its actor calls it one call
// at a time; the store's scripts make each call atomic across nodes.
type queue struct {
	s       *Store
	id      actor.ID
	keys    [5]string // the list, the sequence, the leases, the leased entries, the claim (lua/common.lua)
	channel string
	stats   *actor.Stats // nil: TTL drops not counted

	// claimed: the actor watches, so a take that finds the queue empty
	// names this node as the one whose waiters wait here, and posts on
	// other nodes push the next message to it (lua/post.lua). The hub
	// adds what they push to pushed; the actor's goroutine owns claimed.
	claimed bool
	mu      sync.Mutex
	pushed  []pushedEntry // guarded by mu; oldest first
	// returned is the oldest sequence this node put back since its last
	// take (0: none). A pushed message newer than it was published before
	// the put back reached Redis: delivering it would overtake the one
	// put back, so it goes back too.
	returned uint64

	// A long-poll that finds its mailbox empty parks without asking Redis
	// when nothing can have arrived since the last call that left the
	// queue empty: the mailbox was subscribed then (every later post
	// publishes a wake-up) and no wake-up has come since. The hub sets
	// subscribed and counts wakes (before it wakes the actor); the
	// actor's goroutine owns empty and emptyAt.
	subscribed atomic.Bool
	wakes      atomic.Uint64
	empty      bool
	emptyAt    uint64 // wakes when the queue was seen empty
}

func (s *Store) newQueue(id actor.ID) *queue {
	q := &queue{s: s, id: id}
	q.keys, q.channel = s.mailboxKeys(id)
	return q
}

// keySuffixes name a mailbox's keys in lua/common.lua's order, then its
// wake-up channel.
const keySuffixes = "qslmcw"

// mailboxKeys names id's keys and its wake-up channel
// ("<prefix>{<hex id>}:<suffix>"), all cut from one string: a mailbox's
// names cost one allocation, which the acker makes for every message.
func (s *Store) mailboxKeys(id actor.ID) (keys [5]string, channel string) {
	const digits = "0123456789abcdef"
	prefix := s.opts.KeyPrefix
	one := len(prefix) + 2*actor.IDLen + 4
	var b strings.Builder
	b.Grow(len(keySuffixes) * one)
	for i := range len(keySuffixes) {
		b.WriteString(prefix)
		b.WriteByte('{')
		for _, c := range id {
			b.WriteByte(digits[c>>4])
			b.WriteByte(digits[c&15])
		}
		b.WriteString("}:")
		b.WriteByte(keySuffixes[i])
	}
	all := b.String()
	for i := range keys {
		keys[i] = all[i*one : (i+1)*one]
	}
	return keys, all[len(keys)*one:]
}

// hexID is the id in hex, the hash tag of its keys: read out of the
// list's key rather than kept or formatted again.
func (q *queue) hexID() string {
	from := len(q.s.opts.KeyPrefix) + 1
	return q.keys[0][from : from+2*actor.IDLen]
}

// claim is what this node's claim on the mailbox says: the node and the
// pub/sub connection the mailbox's channel is on.
func (q *queue) claim() string { return q.s.claims[connOf(q.id)] }

// pushedEntry is a message another node's post leased to this node.
type pushedEntry struct {
	d     actor.Delivery
	at    time.Time // when it arrived here
	wakes uint64    // the queue's wakes counting this push
}

func (q *queue) Post(_ time.Time, body []byte, take bool) (actor.Posted, error) {
	flag := "0"
	if take {
		flag = "1"
	}
	seen := q.seeing()
	res, err := q.s.call(opPost, postScript, q.keys[:], body, q.s.maxLen, q.s.ttlUS, q.s.leaseUS, flag, q.channel,
		q.claim(), q.s.nodeChannels, q.hexID(), q.s.publish)
	if err != nil {
		return actor.Posted{}, err
	}
	r, err := reply(res, 6)
	if err != nil {
		return actor.Posted{}, err
	}
	q.counts(r[2], r[3])
	seq, _ := r[0].(int64)
	n, _ := r[1].(int64)
	if seq < 0 {
		return actor.Posted{}, actor.ErrQueueFull
	}
	p := actor.Posted{Seq: uint64(seq), QueueLen: int(n)}
	if p.Taken, err = delivery(r[4], r[5]); err != nil {
		return actor.Posted{}, err
	}
	q.saw(seen, take && p.Taken.QueueLen == 0)
	return p, nil
}

func (q *queue) Take(time.Time) (actor.Delivery, error) {
	if d, ok := q.popPushed(); ok {
		return d, nil
	}
	if q.empty && q.emptyAt == q.wakes.Load() && q.subscribed.Load() {
		return actor.Delivery{}, nil
	}
	seen := q.seeing()
	claim := ""
	if q.claimed {
		claim = q.claim()
	}
	res, err := q.s.call(opTake, takeScript, q.keys[:], q.s.ttlUS, q.s.leaseUS, claim, q.s.claimMS)
	if err != nil {
		q.empty = false
		return actor.Delivery{}, err
	}
	q.returned = 0 // the take came after every put back, so from the head
	r, err := reply(res, 4)
	if err != nil {
		q.empty = false
		return actor.Delivery{}, err
	}
	q.counts(r[2], r[3])
	d, err := delivery(r[0], r[1])
	q.saw(seen, err == nil && d.QueueLen == 0)
	return d, err
}

// seeing is what a call about to go to Redis can vouch for once it
// answers: the wake-ups counted before it, if the mailbox is subscribed
// (else ^0, which vouches for nothing).
func (q *queue) seeing() uint64 {
	w := q.wakes.Load()
	if !q.subscribed.Load() {
		return ^uint64(0)
	}
	return w
}

// saw records what a call that left the queue empty (or not) vouches for.
func (q *queue) saw(seen uint64, empty bool) {
	q.empty = empty && seen != ^uint64(0)
	q.emptyAt = seen
}

func (q *queue) PutBack(msg actor.Message) error {
	// Pushed messages are newer: they go back first, so that msg ends up
	// ahead of them.
	q.returnPushed()
	return q.putBack(msg.Seq)
}

func (q *queue) putBack(seq uint64) error {
	q.empty = false
	if q.returned == 0 || seq < q.returned {
		q.returned = seq
	}
	_, err := q.s.call(opPutBack, putBackScript, q.keys[:], seq, q.s.ttlUS, q.channel, q.claim(), q.s.publish)
	return err
}

func (q *queue) Watch(w actor.Waker) error {
	// A Cluster gets no pushes: a node's push channel is classic pub/sub,
	// which a Cluster broadcasts to every shard.
	q.claimed = q.s.cluster == nil
	return q.s.hub.watch(q, w)
}

func (q *queue) Unwatch() {
	if q.s.hub.unwatch(q) && q.claimed {
		q.claimed = false
		_, _ = q.s.call(opUnclaim, unclaimScript, q.keys[:], q.claim())
	}
	q.returnPushed()
}

// Idle returns what other nodes pushed here for waiters that have gone.
func (q *queue) Idle() { q.returnPushed() }

// push keeps a message another node's post leased to this node for the
// next take. The hub calls it under its connection's lock, so that a
// concurrent Unwatch sees it.
func (q *queue) push(d actor.Delivery) {
	q.mu.Lock()
	q.pushed = append(q.pushed, pushedEntry{d, time.Now(), q.wakes.Add(1)})
	q.mu.Unlock()
}

// popPushed returns the oldest pushed message whose lease has at least
// half its time left, unless it would overtake one put back; the others
// go back to the queue (a lease that ran out may have been delivered
// elsewhere already). The last one pushed when the queue was left empty
// vouches for an empty queue, like a take:
// every later post pushes here too or publishes a wake-up, and both
// arrive after it (on the mailbox's pub/sub connection).
func (q *queue) popPushed() (actor.Delivery, bool) {
	for {
		q.mu.Lock()
		if len(q.pushed) == 0 {
			q.mu.Unlock()
			return actor.Delivery{}, false
		}
		e := q.pushed[0]
		q.pushed[0] = pushedEntry{}
		q.pushed = q.pushed[1:]
		n := len(q.pushed)
		q.mu.Unlock()
		seq := e.d.Message.Seq
		if time.Since(e.at) < q.s.opts.Lease/2 && (q.returned == 0 || seq <= q.returned) {
			// Pushed after the put backs reached Redis, from the head.
			q.returned = 0
			q.empty = n == 0 && e.d.QueueLen == 0 && q.subscribed.Load()
			q.emptyAt = e.wakes
			e.d.QueueLen = max(e.d.QueueLen, n)
			return e.d, true
		}
		_ = q.putBack(seq)
	}
}

// returnPushed puts every pushed message back, the newest first, so that
// they keep their order at the head.
func (q *queue) returnPushed() {
	q.mu.Lock()
	back := q.pushed
	q.pushed = nil
	q.mu.Unlock()
	for i := len(back) - 1; i >= 0; i-- {
		_ = q.putBack(back[i].d.Message.Seq)
	}
}

// Sweep, Evict, Drain and Held: this node holds no queued message (TTL
// and idle expiry happen in Redis; memory is bounded by its maxmemory).
func (q *queue) Sweep(time.Time) (int, int64)        { return 0, 0 }
func (q *queue) Evict(time.Time, int64) (int, int64) { return 0, 0 }
func (q *queue) Drain() []actor.Message              { return nil }
func (q *queue) Held() (int, int64)                  { return 0, 0 }

// counts adds what a script dropped for the TTL and brought back from
// expired leases.
func (q *queue) counts(expired, back any) {
	if n, _ := expired.(int64); n > 0 && q.stats != nil {
		q.stats.EvictedTTL.Add(uint64(n))
	}
	if n, _ := back.(int64); n > 0 {
		q.s.m.redelivered.Add(int(n))
	}
}

var errReply = errors.New("unexpected reply from a store script")

func reply(res any, n int) ([]any, error) {
	r, ok := res.([]any)
	if !ok || len(r) != n {
		return nil, errReply
	}
	return r, nil
}

// delivery decodes a taken entry, "<sequence>,<arrival µs>,<body>"; a nil
// entry is no message.
func delivery(entry, left any) (actor.Delivery, error) {
	if entry == nil {
		return actor.Delivery{}, nil
	}
	e, ok := entry.(string)
	n, _ := left.(int64)
	if !ok {
		return actor.Delivery{}, errReply
	}
	seqText, rest, ok1 := strings.Cut(e, ",")
	arrivedText, body, ok2 := strings.Cut(rest, ",")
	seq, err1 := strconv.ParseUint(seqText, 10, 64)
	arrived, err2 := strconv.ParseInt(arrivedText, 10, 64)
	if !ok1 || !ok2 || err1 != nil || err2 != nil {
		return actor.Delivery{}, errReply
	}
	return actor.Delivery{
		Message:  actor.Message{Seq: seq, Body: []byte(body), Arrived: time.UnixMicro(arrived)},
		QueueLen: int(n),
		OK:       true,
	}, nil
}
