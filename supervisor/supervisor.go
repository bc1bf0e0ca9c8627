// Package supervisor owns the registry of mailbox actors: it spawns an actor
// on a mailbox's first use, routes posts and long-polls to it, and runs the
// reaper actor that sweeps expired messages, stops idle actors and evicts
// under memory pressure.
package supervisor

import (
	"cmp"
	"context"
	"crypto/rand"
	"errors"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// retries bounds how often a request looks a mailbox up again after its
// actor stopped underneath it (reaped or reclaimed between lookup and send).
const retries = 3

// Options configure a Supervisor. cmd builds them from conf.Config.
type Options struct {
	MaxQueueLength   int
	TTL              time.Duration
	IdleTimeout      time.Duration
	EvictionInterval time.Duration
	MaxMailboxes     int
	MemoryLimit      int64 // bytes of queued message bodies, all mailboxes
	// Now is the clock for arrival times, idleness and sequences; nil is
	// the wall clock at start plus monotonic time since, so it never steps
	// back (R1.7).
	Now     func() time.Time
	Logger  *zap.Logger  // nil: no logs
	Metrics *metrics.Set // nil: no metrics
	// Restore is queued messages read from the state file, oldest first
	// per mailbox.
	Restore map[actor.ID][]actor.Message
	// Epoch names the lineage of the queued state (Z9): the one kept with
	// Restore in the state file; "": a new one, for a start without
	// earlier state.
	Epoch string
	// Store keeps the queues in a store that several nodes share (Z13);
	// nil: this process keeps them. With a Store, Restore and Epoch are
	// unused: the store has both.
	Store Store
}

// Store is a queue store shared by several nodes (package
// supervisor/redisstore). Each node keeps one actor per mailbox for its
// own waiters, and the actor serialises this node's calls on the
// mailbox's Queue.
type Store interface {
	// Queue is the queue of id's mailbox, for a new actor; it counts the
	// messages it drops for the TTL in stats.
	Queue(id actor.ID, stats *actor.Stats) actor.Queue
	// Ack settles a message whose response was written: the store no
	// longer gives it back to the queue.
	Ack(id actor.ID, msg actor.Message) error
	// Epoch is the store's lineage (Z9), the same on every node.
	Epoch() string
	// Available reports whether the store answers.
	Available() bool
}

// Supervisor routes requests to mailbox actors. Its methods are safe for
// concurrent use.
type Supervisor struct {
	opts  Options
	log   *zap.Logger
	reg   *registry
	stats actor.Stats

	live     atomic.Int64 // registered actors
	reserved atomic.Int64 // body bytes of posts in flight (R3.5)
	closing  atomic.Bool

	reaper    *reaper
	closed    sync.Once
	actorOpts actor.Options // shared by all of this supervisor's actors

	// leftMu guards left and sealed. Close fills left with the messages
	// its actors still held, Requeue adds those put back once closing
	// (Z12: a response write that fails during the shutdown drain), and
	// Leftovers takes them all and seals it.
	leftMu sync.Mutex
	left   map[actor.ID][]actor.Message
	sealed bool

	// Set once by registerMetrics before the reaper's first sweep; nil
	// without metrics.
	queueDepth *metrics.PrometheusHistogram
	reapedIdle *metrics.Counter
	reclaimed  *metrics.Counter
}

// New starts a supervisor and its reaper.
func New(opts Options) *Supervisor {
	if opts.Now == nil {
		start := time.Now()
		opts.Now = func() time.Time { return start.Add(time.Since(start)) }
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Epoch == "" && opts.Store == nil {
		opts.Epoch = NewEpoch()
	}
	s := &Supervisor{opts: opts, log: opts.Logger, reg: newRegistry(), left: make(map[actor.ID][]actor.Message)}
	s.actorOpts = actor.Options{
		MaxQueueLength: opts.MaxQueueLength,
		TTL:            opts.TTL,
		Now:            opts.Now,
		Stats:          &s.stats,
		Recycler:       &actor.Recycler{},
		OnStop: func(mb *actor.Mailbox) {
			if s.reg.remove(mb) {
				s.live.Add(-1)
			}
		},
	}
	for id, msgs := range opts.Restore {
		s.restore(id, msgs)
	}
	s.opts.Restore = nil
	if opts.Metrics != nil {
		s.registerMetrics(opts.Metrics)
	}
	s.reaper = startReaper(s)
	return s
}

// NewEpoch returns a new epoch (Z9): 26 URL-safe characters carrying 128
// random bits, so no two starts without earlier state share one.
func NewEpoch() string { return rand.Text() }

// Epoch names the lineage of the queued state (Z9): the same as long as no
// queued message can have been lost, new on a start without earlier state.
// It never changes while the supervisor runs.
func (s *Supervisor) Epoch() string {
	if s.opts.Store != nil {
		return s.opts.Store.Epoch()
	}
	return s.opts.Epoch
}

// Acknowledge settles a message whose response was written (Z13): a
// shared store forgets its lease; in this process it is already gone.
func (s *Supervisor) Acknowledge(id actor.ID, msg actor.Message) error {
	if s.opts.Store == nil {
		return nil
	}
	return s.opts.Store.Ack(id, msg)
}

// Stats are the server-wide message counters.
func (s *Supervisor) Stats() *actor.Stats { return &s.stats }

// Snapshot reads the live counters without asking any actor, and gives
// the supervisor's verdict on its limits (actor.Snapshot.Overloaded).
func (s *Supervisor) Snapshot() actor.Snapshot {
	snap := actor.Snapshot{
		Mailboxes:   int(s.live.Load()),
		Busy:        int(max(0, s.stats.Busy.Load())), // a moment's race may take it below 0
		Messages:    s.stats.QueuedMessages.Load(),
		QueuedBytes: s.stats.QueuedBytes.Load(),
		Waiting:     s.stats.Waiting.Load(),
	}
	o := &s.opts
	snap.StoreUnavailable = o.Store != nil && !o.Store.Available()
	snap.Overloaded = o.MemoryLimit > 0 && snap.QueuedBytes*10 >= o.MemoryLimit*9 ||
		o.MaxMailboxes > 0 && snap.Mailboxes >= o.MaxMailboxes && snap.Busy >= o.MaxMailboxes
	return snap
}

// Post queues body for id, evicting the oldest messages server-wide first
// when the global memory limit would be passed (R3.6).
func (s *Supervisor) Post(ctx context.Context, id actor.ID, body []byte) (actor.PostReply, error) {
	size := int64(len(body))
	if err := s.reserve(ctx, size); err != nil {
		return actor.PostReply{}, err
	}
	defer s.reserved.Add(-size)
	for range retries {
		mb, err := s.mailbox(ctx, id, true)
		if err != nil {
			return actor.PostReply{}, err
		}
		r, err := mb.Post(body)
		if errors.Is(err, actor.ErrStopped) {
			continue // reaped between lookup and send: a fresh actor takes it
		}
		return r, err
	}
	return actor.PostReply{}, actor.ErrOverloaded
}

// StartReceive starts a receive of id's oldest message, long-polling up
// to wait, and returns at once (actor.Mailbox.StartReceive): to is told
// the answer once, unless the Receipt's Cancel withdraws the receive
// first. With the memory store a receive that would not wait never
// creates a mailbox: with none there, to is told "no message" before
// StartReceive returns. A shared store may hold messages other nodes
// took in, so there it starts the actor that asks. An error
// means to is never told; an answer's actor.ErrStopped means the
// supervisor closed.
func (s *Supervisor) StartReceive(ctx context.Context, id actor.ID, wait time.Duration, to actor.Receiver) (actor.Receipt, error) {
	for range retries {
		mb, err := s.mailbox(ctx, id, wait > 0 || s.opts.Store != nil)
		if err != nil {
			return actor.Receipt{}, err
		}
		if mb == nil {
			nothingToGet(to)
			return actor.Receipt{}, nil
		}
		rc, err := mb.StartReceive(ctx, wait, to)
		if errors.Is(err, actor.ErrStopped) {
			if s.closing.Load() {
				return actor.Receipt{}, actor.ErrClosed
			}
			continue // reaped between lookup and send: a fresh actor takes it
		}
		return rc, err
	}
	return actor.Receipt{}, actor.ErrOverloaded
}

// nothingToGet answers a receive of a mailbox that does not exist. It
// is a function of its own so that its Delivery is not in the frame of
// StartReceive, which is under every long-poll's wait.
//
//go:noinline
func nothingToGet(to actor.Receiver) { to.Received(actor.Delivery{}, nil) }

// Requeue puts back a message whose response could not be written (Z2). It
// may pass the mailbox and memory limits by the messages in flight, because
// losing an accepted message is worse. Once Close has begun the message
// joins the leftovers for the state file (Z12); only after Leftovers is it
// refused with actor.ErrClosed.
func (s *Supervisor) Requeue(id actor.ID, msg actor.Message) error {
	for range retries {
		mb, err := s.spawn(context.Background(), id, true)
		if errors.Is(err, actor.ErrClosed) {
			return s.keep(id, msg)
		}
		if err != nil {
			return err
		}
		err = mb.Requeue(msg)
		if !errors.Is(err, actor.ErrStopped) {
			return err
		}
		if s.closing.Load() {
			return s.keep(id, msg)
		}
	}
	return actor.ErrOverloaded
}

// keep holds a message put back during or after Close: a shared store
// takes it back itself; otherwise it joins the leftovers for the state
// file, or is refused with actor.ErrClosed once Leftovers took them.
func (s *Supervisor) keep(id actor.ID, msg actor.Message) error {
	if s.opts.Store != nil {
		return s.opts.Store.Queue(id, &s.stats).PutBack(msg)
	}
	return s.keepLeft(id, msg)
}

// keepLeft adds a message put back during or after Close to the
// leftovers, or refuses it with actor.ErrClosed once Leftovers has taken
// them.
func (s *Supervisor) keepLeft(id actor.ID, msg actor.Message) error {
	s.leftMu.Lock()
	defer s.leftMu.Unlock()
	if s.sealed {
		return actor.ErrClosed
	}
	s.left[id] = append(s.left[id], msg)
	return nil
}

// mailbox returns id's actor, spawning it when create is set. Without
// create, a missing mailbox is (nil, nil).
func (s *Supervisor) mailbox(ctx context.Context, id actor.ID, create bool) (*actor.Mailbox, error) {
	if mb := s.reg.get(id); mb != nil {
		return mb, nil
	}
	if !create {
		return nil, nil
	}
	return s.spawn(ctx, id, false)
}

// spawn registers a new actor for id unless one exists. At max_mailboxes it
// asks the reaper to reclaim idle empty mailboxes first (Z5); force skips
// the limit. A slot the reaper freed may be taken by another new mailbox
// before this one: then it asks again, for as long as the reaper finds
// something to reclaim, within reaperWait in all — only when none is
// reclaimable is the answer ErrOverloaded.
func (s *Supervisor) spawn(ctx context.Context, id actor.ID, force bool) (*actor.Mailbox, error) {
	var deadline time.Time
	for attempt := 0; ; attempt++ {
		sh := s.reg.shard(id)
		sh.mu.Lock()
		if mb := sh.m[id]; mb != nil {
			sh.mu.Unlock()
			return mb, nil
		}
		if s.closing.Load() {
			sh.mu.Unlock()
			return nil, actor.ErrClosed
		}
		if force || s.acquireSlot() {
			if force {
				s.live.Add(1)
			}
			mb := s.start(id, nil)
			sh.m[id] = mb
			sh.mu.Unlock()
			return mb, nil
		}
		sh.mu.Unlock()
		if attempt == 0 {
			deadline = time.Now().Add(reaperWait)
		} else if time.Now().After(deadline) {
			return nil, actor.ErrOverloaded
		}
		// Never ask the reaper while holding a shard lock: it stops
		// actors, and a stopping actor takes its shard's lock.
		if err := s.reaper.reclaimSlots(ctx); err != nil {
			return nil, err
		}
	}
}

// acquireSlot counts a new actor against MaxMailboxes.
func (s *Supervisor) acquireSlot() bool {
	for {
		n := s.live.Load()
		if n >= int64(s.opts.MaxMailboxes) {
			return false
		}
		if s.live.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// start spawns an actor; the caller has counted it in live and registers it.
func (s *Supervisor) start(id actor.ID, restore []actor.Message) *actor.Mailbox {
	if s.opts.Store != nil {
		return actor.StartShared(id, &s.actorOpts, s.opts.Store.Queue(id, &s.stats))
	}
	// R1.7: a new mailbox starts at the clock in microseconds, so sequences
	// keep rising across reaping without remembering reaped mailboxes.
	first := uint64(s.opts.Now().UnixMicro())
	if n := len(restore); n > 0 && restore[n-1].Seq >= first {
		first = restore[n-1].Seq + 1
	}
	return actor.Start(id, &s.actorOpts, first, restore)
}

func (s *Supervisor) restore(id actor.ID, msgs []actor.Message) {
	sh := s.reg.shard(id)
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[id] != nil || len(msgs) == 0 {
		return
	}
	s.live.Add(1)
	sh.m[id] = s.start(id, msgs)
}

// reserve counts size against the memory limit, asking the reaper to evict
// the oldest messages server-wide when it does not fit (R3.5, R3.6).
func (s *Supervisor) reserve(ctx context.Context, size int64) error {
	for range retries {
		if s.tryReserve(size) {
			return nil
		}
		if err := s.reaper.freeMemory(ctx, size); err != nil {
			return err
		}
	}
	return actor.ErrOverloaded
}

func (s *Supervisor) tryReserve(size int64) bool {
	r := s.reserved.Add(size)
	if s.stats.QueuedBytes.Load()+r > s.opts.MemoryLimit {
		s.reserved.Add(-size)
		return false
	}
	return true
}

// Close stops the reaper and every actor and keeps the messages they still
// held, for Leftovers. Parked long-polls are answered actor.ErrStopped.
// Close waits until every actor has stopped (its Done is closed).
func (s *Supervisor) Close() {
	s.closed.Do(func() {
		s.closing.Store(true)
		s.reaper.stop()
		// spawn checks closing under its shard lock, so once a pass finds
		// the registry empty no actor can appear any more.
		for mbs := s.reg.all(); len(mbs) > 0; mbs = s.reg.all() {
			for _, mb := range mbs {
				if msgs := mb.Stop(); len(msgs) > 0 {
					s.leftMu.Lock()
					s.left[mb.ID()] = append(s.left[mb.ID()], msgs...)
					s.leftMu.Unlock()
				}
			}
		}
	})
}

// Leftovers closes the supervisor if it is not closed yet and returns the
// messages still queued, oldest first per mailbox, for the state file:
// what the actors held and what Requeue put back since Close began. Call
// it once every answer that might put a message back has finished; a
// Requeue after it is refused with actor.ErrClosed.
func (s *Supervisor) Leftovers() map[actor.ID][]actor.Message {
	s.Close()
	s.leftMu.Lock()
	defer s.leftMu.Unlock()
	s.sealed = true
	left := s.left
	s.left = nil
	for _, msgs := range left {
		// A message put back after its actor stopped is older than what
		// the actor held; sequences rise within a mailbox (R1.7).
		slices.SortFunc(msgs, func(a, b actor.Message) int { return cmp.Compare(a.Seq, b.Seq) })
	}
	return left
}
