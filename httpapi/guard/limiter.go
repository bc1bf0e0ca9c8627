package guard

import (
	"math"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// numShards splits the source table so that requests from different
// sources rarely wait on one lock.
const numShards = 16

// fullSweepEvery bounds how often a new source at rate_limit_max_sources
// makes the limiter scan every shard for idle buckets: a flood of new
// sources must not turn each refused request into a full scan.
const fullSweepEvery = time.Second

// limiter holds the token buckets of every tracked source (R4.1–R4.3,
// R4.7). Its memory is bounded: a bucket untouched for one window is full
// again, so dropping it loses nothing, and at most maxSources buckets are
// kept; a new source beyond that is refused rather than tracked.
type limiter struct {
	shards [numShards]shard
	// count is the number of buckets in all shards; changed under the
	// owning shard's lock, read without one.
	count atomic.Int64
	// nextFullSweep is when a new source at the cap may next make the
	// limiter sweep every shard (unix ns).
	nextFullSweep atomic.Int64
	// nextIdle is when the least recently used bucket the last full sweep
	// kept becomes idle (unix ns): the Retry-After of a source refused at
	// the cap.
	nextIdle atomic.Int64
}

// shard is one part of the source table.
type shard struct {
	mu sync.Mutex
	m  map[sourceKey]*bucket // guarded by mu
	// nextSweep is when this shard next drops its idle buckets (unix ns);
	// guarded by mu.
	nextSweep int64
	_         [40]byte // keeps neighbouring shards' locks off one cache line
}

// bucket is one source's state: a token bucket per kind and its
// concurrent long-polls.
type bucket struct {
	// lim, gen and last are guarded by the shard's mu. lim[k] is nil
	// until the source first makes a request of kind k.
	lim [NumKinds]*rate.Limiter
	gen uint64 // the state generation whose numbers lim carries
	// last is when the source last made a request (unix ns).
	last int64
	// reserved are tokens of the shared bucket of each kind this node
	// reserved and has not spent; sharedTokens what the shared bucket held
	// after the reservation; reserving the reservation on its way
	// (shared.go). Guarded by the shard's mu.
	reserved     [NumKinds]int32
	sharedTokens [NumKinds]float64
	reserving    [NumKinds]*reservation
	// waiting counts the source's long-polls that have not been answered
	// yet. Ticket.Wait raises it right after take stamped last, and a
	// sweep drops only buckets idle for a whole window with nothing
	// waiting, so a bucket a request is about to wait on stays.
	waiting atomic.Int32
}

// idleLocked reports whether b can be dropped: no long-poll waits and one
// window has passed since its last request, so every bucket is full.
func (b *bucket) idleLocked(now int64, window time.Duration) bool {
	return b.waiting.Load() == 0 && now-b.last >= int64(window)
}

// take spends one token of kind k for key at now. It returns the bucket
// (nil when the source is refused at the cap), whether a token was there,
// and the tokens left afterwards (or, when refused, the tokens there were).
func (l *limiter) take(st *state, key sourceKey, k Kind, now time.Time) (b *bucket, ok bool, tokens float64) {
	ns := now.UnixNano()
	// Indexed here rather than through shard(), which grows this frame by
	// 16 bytes: take runs under every parked GET's stack.
	sh := &l.shards[key.shard()]
	sh.mu.Lock()
	if ns >= sh.nextSweep {
		l.sweepLocked(sh, ns, st.window)
		sh.nextSweep = ns + int64(st.window)/2
	}
	b = sh.m[key]
	if b == nil {
		if b = l.addLocked(sh, st, key, ns); b == nil {
			sh.mu.Unlock()
			return nil, false, 0
		}
	}
	if b.gen != st.gen {
		// A reload changed the numbers: carry the buckets over to them,
		// keeping their tokens (capped at the new burst).
		for kk, lim := range b.lim {
			if lim != nil {
				lim.SetLimitAt(now, st.limit[kk])
				lim.SetBurstAt(now, st.burst[kk])
			}
		}
		b.gen = st.gen
	}
	lim := b.lim[k]
	if lim == nil {
		lim = rate.NewLimiter(st.limit[k], st.burst[k]) // full
		b.lim[k] = lim
	}
	b.last = max(b.last, ns)
	ok = lim.AllowN(now, 1)
	tokens = lim.TokensAt(now)
	sh.mu.Unlock()
	return b, ok, tokens
}

// shard is the part of the table that holds key.
func (l *limiter) shard(key sourceKey) *shard { return &l.shards[key.shard()] }

// addLocked tracks a new source, or returns nil when the table is at
// maxSources even after dropping idle buckets. The caller holds sh.mu;
// addLocked may release and retake it.
func (l *limiter) addLocked(sh *shard, st *state, key sourceKey, now int64) *bucket {
	// Counting first and backing out keeps the cap exact under
	// concurrent new sources.
	if l.count.Add(1) > int64(st.maxSources) {
		l.count.Add(-1)
		sh.mu.Unlock()
		l.fullSweep(st, now)
		sh.mu.Lock()
		if b := sh.m[key]; b != nil {
			return b // another request of this source added it meanwhile
		}
		if l.count.Add(1) > int64(st.maxSources) {
			l.count.Add(-1)
			return nil
		}
	}
	if sh.m == nil {
		sh.m = make(map[sourceKey]*bucket)
	}
	b := &bucket{gen: st.gen}
	sh.m[key] = b
	return b
}

// sweepLocked drops the shard's idle buckets. The caller holds sh.mu.
func (l *limiter) sweepLocked(sh *shard, now int64, window time.Duration) (oldest int64) {
	oldest = math.MaxInt64
	for k, b := range sh.m {
		if b.idleLocked(now, window) {
			delete(sh.m, k)
			l.count.Add(-1)
			continue
		}
		oldest = min(oldest, b.last)
	}
	return oldest
}

// fullSweep drops idle buckets in every shard, at most once per
// fullSweepEvery. It runs without any shard lock held.
func (l *limiter) fullSweep(st *state, now int64) {
	next := l.nextFullSweep.Load()
	if now < next || !l.nextFullSweep.CompareAndSwap(next, now+int64(fullSweepEvery)) {
		return
	}
	oldest := int64(math.MaxInt64)
	for i := range l.shards {
		sh := &l.shards[i]
		sh.mu.Lock()
		oldest = min(oldest, l.sweepLocked(sh, now, st.window))
		sh.mu.Unlock()
	}
	if oldest == math.MaxInt64 {
		oldest = now
	}
	l.nextIdle.Store(oldest + int64(st.window))
}

// retryAtCap is how long a source refused at the cap should wait: until
// the least recently used tracked bucket goes idle, at least a second.
func (l *limiter) retryAtCap(now time.Time) time.Duration {
	return max(time.Duration(l.nextIdle.Load()-now.UnixNano()), time.Second)
}

// tracked is the number of sources the limiter holds a bucket for.
func (l *limiter) tracked() int { return int(l.count.Load()) }
