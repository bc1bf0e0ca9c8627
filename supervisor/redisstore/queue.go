package redisstore

import (
	"errors"
	"strconv"
	"strings"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// queue is one mailbox's Queue on this node. Its actor calls it one call
// at a time; the store's scripts make each call atomic across nodes.
type queue struct {
	s       *Store
	id      actor.ID
	keys    [4]string // the list, the sequence, the leases, the leased entries (lua/common.lua)
	channel string
	stats   *actor.Stats // nil: TTL drops not counted (Ack's)
}

func (s *Store) newQueue(id actor.ID) *queue {
	h := id.String()
	return &queue{s: s, id: id, channel: s.key(h, "w"),
		keys: [4]string{s.key(h, "q"), s.key(h, "s"), s.key(h, "l"), s.key(h, "m")}}
}

func (q *queue) Post(_ time.Time, body []byte, take bool) (actor.Posted, error) {
	flag := "0"
	if take {
		flag = "1"
	}
	res, err := q.s.call(opPost, postScript, q.keys[:], body, q.s.maxLen, q.s.ttlUS, q.s.leaseUS, flag, q.channel)
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
	return p, nil
}

func (q *queue) Take(time.Time) (actor.Delivery, error) {
	res, err := q.s.call(opTake, takeScript, q.keys[:], q.s.ttlUS, q.s.leaseUS)
	if err != nil {
		return actor.Delivery{}, err
	}
	r, err := reply(res, 4)
	if err != nil {
		return actor.Delivery{}, err
	}
	q.counts(r[2], r[3])
	return delivery(r[0], r[1])
}

func (q *queue) PutBack(msg actor.Message) error {
	_, err := q.s.call(opPutBack, putBackScript, q.keys[:], msg.Seq, q.s.ttlUS, q.channel)
	return err
}

func (q *queue) Watch(w actor.Waker) error { return q.s.hub.watch(q, w) }

func (q *queue) Unwatch() { q.s.hub.unwatch(q) }

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
