package supervisor

import (
	"cmp"
	"container/heap"
	"context"
	"math"
	"slices"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// reaperWait bounds how long a request waits for the reaper, in its line
// and while it works: past it the request is answered 503 overloaded
// rather than held while the reaper is busy for others.
const reaperWait = time.Second

// reclaimRetry is how long a reclaim that found nothing is remembered: a
// stream of new ids at max_mailboxes is refused without a scan each until
// then, or until fewer mailboxes are busy than at the failure.
const reclaimRetry = time.Second

// reaper is the actor that sweeps mailboxes every EvictionInterval, stops
// idle ones, evicts under memory pressure and reclaims empty mailboxes when
// max_mailboxes is reached. Being one goroutine, it serialises all eviction:
// two posts under pressure never evict twice for the same bytes.
type reaper struct {
	s      *Supervisor
	memory chan memoryReq
	slots  chan chan error
	quit   chan struct{} // closed by stop
	done   chan struct{} // closed by run

	scans atomic.Uint64 // registry scans by reclaimIdle, for metrics

	// Owned by run.
	lastTTL uint64 // stats.EvictedTTL at the last sweep, for its log line
	// The last reclaim that found nothing: refuse without a scan until
	// failedUntil while at least failedBusy mailboxes are busy.
	failedUntil time.Time
	failedBusy  int64
}

type memoryReq struct {
	need  int64
	reply chan error
}

func newReaper(s *Supervisor) *reaper {
	return &reaper{
		s:      s,
		memory: make(chan memoryReq),
		slots:  make(chan chan error),
		quit:   make(chan struct{}),
		done:   make(chan struct{}),
	}
}

func startReaper(s *Supervisor) *reaper {
	r := newReaper(s)
	go r.run()
	return r
}

func (r *reaper) run() {
	defer close(r.done)
	tick := time.NewTicker(r.s.opts.EvictionInterval)
	defer tick.Stop()
	for {
		select {
		case <-tick.C:
			r.sweep()
		case req := <-r.memory:
			req.reply <- r.evictForMemory(req.need)
		case reply := <-r.slots:
			reply <- r.reclaimIdle()
		case <-r.quit:
			return
		}
	}
}

func (r *reaper) stop() {
	close(r.quit)
	<-r.done
}

// ask sends a request to the reaper and waits for its answer, for at most
// reaperWait in all: actor.ErrOverloaded past it. A request the reaper took and
// nobody waits for any more is still served; its reply channel has room.
func ask[T any](ctx context.Context, r *reaper, ch chan T, req T, reply chan error) error {
	deadline := time.NewTimer(reaperWait)
	defer deadline.Stop()
	select {
	case ch <- req:
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-r.quit:
		return actor.ErrClosed
	case <-deadline.C:
		return actor.ErrOverloaded
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return context.Cause(ctx)
	case <-deadline.C:
		return actor.ErrOverloaded
	}
}

// freeMemory asks the reaper to make room for need more bytes.
func (r *reaper) freeMemory(ctx context.Context, need int64) error {
	reply := make(chan error, 1)
	return ask(ctx, r, r.memory, memoryReq{need: need, reply: reply}, reply)
}

// reclaimSlots asks the reaper to stop idle empty mailboxes so that a new
// one fits under max_mailboxes (Z5).
func (r *reaper) reclaimSlots(ctx context.Context) error {
	reply := make(chan error, 1)
	return ask(ctx, r, r.slots, reply, reply)
}

// sweep expires messages everywhere, stops idle mailboxes and samples queue
// depths, then logs one aggregated line (R3.2, R3.3, R3.7).
func (r *reaper) sweep() {
	s := r.s
	start := time.Now()
	idleBefore := s.opts.Now().Add(-s.opts.IdleTimeout)
	var swept, expired, stopped int
	var expiredBytes int64
	for _, mb := range s.reg.all() {
		rep, err := mb.Sweep(idleBefore)
		if err != nil {
			continue // stopped meanwhile
		}
		swept++
		expired += rep.Expired
		expiredBytes += rep.ExpiredBytes
		if rep.Stopped {
			stopped++
			<-mb.Done()
		} else if s.queueDepth != nil {
			s.queueDepth.Update(float64(rep.QueueLen))
		}
	}
	if stopped > 0 && s.reapedIdle != nil {
		s.reapedIdle.Add(stopped)
	}
	// Messages found expired when a post or get touched their mailbox are
	// counted by the actors; report them with this sweep's.
	ttl := s.stats.EvictedTTL.Load()
	sinceLast := ttl - r.lastTTL
	r.lastTTL = ttl
	if sinceLast == 0 && stopped == 0 {
		return
	}
	r.s.log.Info("sweep",
		zap.Int("mailboxes", swept),
		zap.Uint64("evicted_ttl", sinceLast),
		zap.Int64("evicted_ttl_bytes_in_sweep", expiredBytes),
		zap.Int("reaped_idle", stopped),
		zap.Duration("took", time.Since(start)))
}

// evictForMemory evicts the oldest messages server-wide, oldest first
// across all mailboxes, until need more bytes fit under the limit (R3.6). A
// heap of mailboxes keyed by the arrival of their oldest message merges the
// per-mailbox queues in arrival order.
func (r *reaper) evictForMemory(need int64) error {
	s := r.s
	excess := func() int64 {
		return s.stats.QueuedBytes.Load() + s.reserved.Load() + need - s.opts.MemoryLimit
	}
	if excess() <= 0 {
		return nil
	}
	h := &headHeap{}
	for _, mb := range s.reg.all() {
		if at := mb.HeadArrival(); at != 0 {
			h.items = append(h.items, headItem{mb: mb, at: at})
		}
	}
	heap.Init(h)
	var evicted int
	var freed int64
	for h.Len() > 0 && excess() > 0 {
		oldest := heap.Pop(h).(headItem)
		notAfter := int64(math.MaxInt64)
		if h.Len() > 0 {
			notAfter = h.items[0].at
		}
		rep, err := oldest.mb.Evict(time.Unix(0, notAfter), excess())
		if err != nil {
			continue // stopped meanwhile: its messages left with it
		}
		evicted += rep.Evicted
		freed += rep.Bytes
		if at := oldest.mb.HeadArrival(); at != 0 {
			heap.Push(h, headItem{mb: oldest.mb, at: at})
		}
	}
	if evicted > 0 {
		s.log.Warn("memory pressure: evicted oldest messages",
			zap.Int("evicted_memory", evicted),
			zap.Int64("freed_bytes", freed),
			zap.Int64("memory_limit_bytes", s.opts.MemoryLimit))
	}
	if excess() > 0 {
		return actor.ErrOverloaded
	}
	return nil
}

// reclaimIdle stops the least recently active mailboxes that hold no
// message and no waiting long-poll (Z5). It reclaims a batch of 1% of
// max_mailboxes at once so that a stream of new mailboxes at the limit
// does not rescan the registry for every one.
//
// The count of busy mailboxes (actor.Stats.Busy) tells without a scan
// when none can be reclaimed, which is the case when long-polls hold
// every mailbox: then each new id costs two atomic loads, not a scan. A
// scan that finds nothing all the same (the mailboxes it picked turned
// busy meanwhile) is remembered for reclaimRetry.
func (r *reaper) reclaimIdle() error {
	s := r.s
	live := s.live.Load()
	if live < int64(s.opts.MaxMailboxes) {
		return nil // another reclaim made room already
	}
	busy := s.stats.Busy.Load()
	if busy >= live {
		return actor.ErrOverloaded
	}
	now := s.opts.Now()
	if now.Before(r.failedUntil) && busy >= r.failedBusy {
		return actor.ErrOverloaded
	}
	r.scans.Add(1)
	idle := slices.DeleteFunc(s.reg.all(), (*actor.Mailbox).Busy)
	slices.SortFunc(idle, func(a, b *actor.Mailbox) int {
		return cmp.Compare(a.LastActive(), b.LastActive())
	})
	want := max(1, s.opts.MaxMailboxes/100)
	// Candidates that turned busy since the scan cost an actor's round
	// trip each: try at most twice the batch.
	idle = idle[:min(len(idle), 2*want)]
	// Anything idle until now qualifies: emptiness and no live waiter are
	// what the actor checks.
	until := now.Add(time.Nanosecond)
	stopped := 0
	for _, mb := range idle {
		if stopped >= want {
			break
		}
		rep, err := mb.Sweep(until)
		if err == nil && rep.Stopped {
			<-mb.Done()
			stopped++
		}
	}
	if stopped == 0 {
		r.failedUntil, r.failedBusy = now.Add(reclaimRetry), busy
		return actor.ErrOverloaded
	}
	r.failedUntil = time.Time{}
	if s.reclaimed != nil {
		s.reclaimed.Add(stopped)
	}
	s.log.Debug("reclaimed idle mailboxes at max_mailboxes", zap.Int("reclaimed", stopped))
	return nil
}

type headItem struct {
	mb *actor.Mailbox
	at int64
}

// headHeap is a min-heap of mailboxes by the arrival of their oldest message.
type headHeap struct{ items []headItem }

func (h *headHeap) Len() int           { return len(h.items) }
func (h *headHeap) Less(i, j int) bool { return h.items[i].at < h.items[j].at }
func (h *headHeap) Swap(i, j int)      { h.items[i], h.items[j] = h.items[j], h.items[i] }
func (h *headHeap) Push(x any)         { h.items = append(h.items, x.(headItem)) }
func (h *headHeap) Pop() any {
	it := h.items[len(h.items)-1]
	h.items = h.items[:len(h.items)-1]
	return it
}
