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

// Errors the supervisor answers with besides the actor's own.
var (
	// ErrOverloaded: a new mailbox or more queue memory is needed and none
	// can be reclaimed (Z5, R3.5).
	ErrOverloaded = errors.New("server is at its mailbox or memory limit")
	// ErrClosed: the supervisor is shutting down.
	ErrClosed = errors.New("supervisor is closed")
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
	if opts.Epoch == "" {
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
func (s *Supervisor) Epoch() string { return s.opts.Epoch }

// Stats are the server-wide message counters.
func (s *Supervisor) Stats() *actor.Stats { return &s.stats }

// Snapshot is what /health reports.
type Snapshot struct {
	Mailboxes int
	// Busy is how many of them cannot be reclaimed: they hold a message
	// or a waiting long-poll (Z5).
	Busy        int
	Messages    int64
	QueuedBytes int64
	Waiting     int64
	// Overloaded is the supervisor's verdict on its limits (R6.5), which
	// /health reports: queued bytes at or above 90 % of MemoryLimit, or
	// MaxMailboxes mailboxes alive and every one of them busy, so that
	// none can be reclaimed for a new id. An empty mailbox without a
	// waiter makes room for a new one at once (Z5), so it leaves the
	// server healthy. A zero limit is not checked.
	Overloaded bool
}

// Snapshot reads the live counters without asking any actor.
func (s *Supervisor) Snapshot() Snapshot {
	snap := Snapshot{
		Mailboxes:   int(s.live.Load()),
		Busy:        int(max(0, s.stats.Busy.Load())), // a moment's race may take it below 0
		Messages:    s.stats.QueuedMessages.Load(),
		QueuedBytes: s.stats.QueuedBytes.Load(),
		Waiting:     s.stats.Waiting.Load(),
	}
	o := &s.opts
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
	return actor.PostReply{}, ErrOverloaded
}

// StartReceive parks a receive on id's actor and returns its Waiter, whose
// answer n learns of (actor.Mailbox.Park; nil: the caller waits in Await);
// a nil Waiter with a nil error means the mailbox does not exist and the
// caller would not wait: nothing to get. Collect's ErrStopped means the
// supervisor closed.
func (s *Supervisor) StartReceive(ctx context.Context, id actor.ID, wait time.Duration, n actor.Notifier) (*actor.Waiter, error) {
	for range retries {
		mb, err := s.mailbox(ctx, id, wait > 0)
		if err != nil || mb == nil {
			return nil, err
		}
		w, err := mb.Park(ctx, wait, n)
		if errors.Is(err, actor.ErrStopped) {
			if s.closing.Load() {
				return nil, ErrClosed
			}
			continue // reaped between lookup and send: a fresh actor takes it
		}
		return w, err
	}
	return nil, ErrOverloaded
}

// Requeue puts back a message whose response could not be written (Z2). It
// may pass the mailbox and memory limits by the messages in flight, because
// losing an accepted message is worse. Once Close has begun the message
// joins the leftovers for the state file (Z12); only after Leftovers is it
// refused with ErrClosed.
func (s *Supervisor) Requeue(id actor.ID, msg actor.Message) error {
	for range retries {
		mb, err := s.spawn(context.Background(), id, true)
		if errors.Is(err, ErrClosed) {
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
	return ErrOverloaded
}

// keep adds a message put back during or after Close to the leftovers, or
// refuses it with ErrClosed once Leftovers has taken them.
func (s *Supervisor) keep(id actor.ID, msg actor.Message) error {
	s.leftMu.Lock()
	defer s.leftMu.Unlock()
	if s.sealed {
		return ErrClosed
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
			return nil, ErrClosed
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
			return nil, ErrOverloaded
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
	return ErrOverloaded
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
// held, for Leftovers. Parked long-polls see actor.ErrStopped from Await.
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
// Requeue after it is refused with ErrClosed.
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
