package loadtest

import (
	"math/bits"
	"sync/atomic"
	"time"
)

// Histogram counts durations in log-linear buckets, HDR style: values
// under 128 ns each have their own bucket, and every power of two above
// is split into 128 buckets, so a bucket is at most 1/128 (0.8 %) of its
// value wide. Record is lock-free and safe for concurrent use.
type Histogram struct {
	counts [numBuckets]atomic.Int64
	n      atomic.Int64
	sum    atomic.Int64 // ns
	max    atomic.Int64 // ns
}

const (
	subBits    = 7
	subBuckets = 1 << subBits // buckets per power of two
	// numBuckets covers every non-negative int64: the top value has 63
	// significant bits, a shift of 63-(subBits+1).
	numBuckets = subBuckets + (63-(subBits+1))*subBuckets + subBuckets
)

// bucketOf is the bucket of v nanoseconds.
func bucketOf(v int64) int {
	if v < subBuckets {
		return int(max(v, 0))
	}
	shift := bits.Len64(uint64(v)) - (subBits + 1)
	m := v >> shift // in [subBuckets, 2*subBuckets)
	return subBuckets + shift*subBuckets + int(m-subBuckets)
}

// bucketBounds is the smallest and the largest value of bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subBuckets {
		return int64(i), int64(i)
	}
	shift := (i - subBuckets) / subBuckets
	m := int64((i-subBuckets)%subBuckets + subBuckets)
	return m << shift, (m+1)<<shift - 1
}

// Record counts one duration.
func (h *Histogram) Record(d time.Duration) {
	v := int64(max(d, 0))
	h.counts[bucketOf(v)].Add(1)
	h.n.Add(1)
	h.sum.Add(v)
	for {
		m := h.max.Load()
		if v <= m || h.max.CompareAndSwap(m, v) {
			break
		}
	}
}

// Snapshot copies the counts.
func (h *Histogram) Snapshot() *Counts {
	c := &Counts{Buckets: make([]int64, numBuckets), Max: h.max.Load(), Sum: h.sum.Load()}
	for i := range h.counts {
		c.Buckets[i] = h.counts[i].Load()
		c.N += c.Buckets[i]
	}
	return c
}

// Counts is a copy of a Histogram's counts, to read quantiles from.
type Counts struct {
	Buckets []int64
	N       int64
	Sum     int64 // ns
	Max     int64 // ns; a bound for Quantile
}

// Sub returns c minus an earlier snapshot of the same histogram: what was
// recorded in between. Its Max is c's (an upper bound).
func (c *Counts) Sub(prev *Counts) *Counts {
	d := &Counts{Buckets: make([]int64, len(c.Buckets)), Max: c.Max, Sum: c.Sum - prev.Sum}
	for i := range c.Buckets {
		d.Buckets[i] = c.Buckets[i] - prev.Buckets[i]
		d.N += d.Buckets[i]
	}
	return d
}

// Quantile is the q-quantile (0 < q ≤ 1): the upper bound of the bucket
// holding it, so at most 0.8 % above the true value, and never above Max.
// 0 when nothing was recorded.
func (c *Counts) Quantile(q float64) time.Duration {
	if c.N == 0 {
		return 0
	}
	rank := int64(q*float64(c.N) + 0.5)
	rank = min(max(rank, 1), c.N)
	var seen int64
	for i, n := range c.Buckets {
		seen += n
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(hi, c.Max))
		}
	}
	return time.Duration(c.Max)
}

// Mean is the average, 0 when nothing was recorded.
func (c *Counts) Mean() time.Duration {
	if c.N == 0 {
		return 0
	}
	return time.Duration(c.Sum / c.N)
}

// Min is the lower bound of the lowest non-empty bucket.
func (c *Counts) Min() time.Duration {
	for i, n := range c.Buckets {
		if n > 0 {
			lo, _ := bucketBounds(i)
			return time.Duration(lo)
		}
	}
	return 0
}
