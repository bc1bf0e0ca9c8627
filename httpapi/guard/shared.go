package guard

import (
	"encoding/hex"
	"time"

	"go.uber.org/zap"
)

// SharedBuckets keeps token buckets where every node sees them (the Redis
// store), so that a source spread over several nodes gets the budget of
// one.
type SharedBuckets interface {
	// Reserve takes up to want tokens, at least one, from the bucket
	// named key, which refills perSecond tokens a second up to burst.
	// granted is 0 when it had none; tokens is what it holds afterwards
	// (when refused, what it holds). An error: the store did not answer.
	Reserve(key string, perSecond float64, burst, want int) (granted int, tokens float64, err error)
}

// reserveShare is the share of a bucket a node reserves from the shared
// store at a time and then spends locally: one call per fifth of a
// bucket rather than per request (with one call per request, a source
// near its limit cost 28 % more CPU per message; docs/performance.md).
// Across n nodes a source may so be refused by one while up to (n-1)/5
// of its bucket sits reserved on the others; it never gets more than its
// budget.
const reserveShare = 5

// fallbackLogEvery bounds the "shared rate limits unavailable" warnings.
const fallbackLogEvery = time.Minute

// shared applies the shared bucket of kind k to a request the local
// bucket b has already counted (localOK, localTokens): the request spends
// a token this node reserved earlier, or reserves more. One reservation
// per bucket and kind is on its way at a time; requests that arrive
// meanwhile wait for it rather than each asking Redis (10,000 long-polls
// arriving at once would otherwise make 10,000 calls). When the store
// does not answer, the local bucket decides (counted and logged).
//
// Admit's frame bounds every handler goroutine's stack (a few bytes more
// and 1,000 parked long-polls hold megabytes more): keep the arguments few.
func (g *Guard) shared(st *state, b *bucket, src sourceKey, k Kind, localOK bool, localTokens float64) (bool, float64) {
	sh := g.lim.shard(src)
	for {
		sh.mu.Lock()
		if b.reserved[k] > 0 {
			b.reserved[k]--
			tokens := b.sharedTokens[k] + float64(b.reserved[k])
			sh.mu.Unlock()
			return true, tokens
		}
		f := b.reserving[k]
		if f == nil {
			f = &reservation{done: make(chan struct{})}
			b.reserving[k] = f
			sh.mu.Unlock()
			g.reserve(st, b, sh, src, k, f)
		} else {
			sh.mu.Unlock()
			<-f.done
		}
		switch {
		case f.err != nil:
			g.sharedFailed(f.err)
			return localOK, localTokens
		case f.granted == 0:
			return false, f.tokens
		}
		// spend from what was reserved, or reserve again
	}
}

// reserve asks the shared store for a share of the bucket, adds what it
// grants to b and tells the requests waiting on f.
func (g *Guard) reserve(st *state, b *bucket, sh *shard, src sourceKey, k Kind, f *reservation) {
	want := max(1, st.burst[k]/reserveShare)
	f.granted, f.tokens, f.err = g.sharedBuckets.Reserve(kindNames[k]+":"+hex.EncodeToString(src[:]), float64(st.limit[k]), st.burst[k], want)
	sh.mu.Lock()
	b.reserving[k] = nil
	if f.err == nil && f.granted > 0 {
		b.reserved[k] += int32(f.granted)
		b.sharedTokens[k] = f.tokens
	}
	sh.mu.Unlock()
	close(f.done)
}

// reservation is one call to the shared store on its way; its fields are
// written before done is closed.
type reservation struct {
	done    chan struct{}
	granted int
	tokens  float64
	err     error
}

// sharedFailed counts a request the local bucket decided because the
// shared store did not answer, and warns at most once a minute.
func (g *Guard) sharedFailed(err error) {
	if g.onFallback != nil {
		g.onFallback()
	}
	now := g.now()
	last := g.fallbackWarned.Load()
	if now.UnixNano()-last < int64(fallbackLogEvery) || !g.fallbackWarned.CompareAndSwap(last, now.UnixNano()) {
		return
	}
	g.log.Warn("shared rate limits unavailable; this node's own buckets decide until the store answers", zap.Error(err))
}
