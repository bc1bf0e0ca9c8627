package loadtest

import (
	"sync"
	"sync/atomic"
)

// tracker holds two bits per message id — accepted (the POST got 202) and
// delivered (a GET returned it intact) — in chunks allocated as ids grow,
// so that verifying a million messages costs 256 KiB, not a map. A
// delivery can be seen before its POST's 202 (a waiting GET takes the
// message at once), so the bits are set in either order and outstanding
// counts the accepted messages not delivered yet, exactly.
type tracker struct {
	mu          sync.Mutex // guards growing chunks
	chunks      atomic.Pointer[[]*chunk]
	outstanding atomic.Int64
}

const (
	chunkIDs   = 1 << 16 // message ids per chunk
	chunkWords = chunkIDs * 2 / 64
	bitAcc     = 1 // accepted
	bitDel     = 2 // delivered
)

type chunk [chunkWords]atomic.Uint64

func newTracker() *tracker {
	t := &tracker{}
	t.chunks.Store(&[]*chunk{})
	return t
}

// word returns the word holding id's two bits and their shift.
func (t *tracker) word(id uint64) (*atomic.Uint64, uint) {
	ci := int(id / chunkIDs)
	cs := *t.chunks.Load()
	if ci >= len(cs) {
		t.mu.Lock()
		cs = *t.chunks.Load()
		if ci >= len(cs) {
			grown := make([]*chunk, ci+1)
			copy(grown, cs)
			for i := len(cs); i <= ci; i++ {
				grown[i] = new(chunk)
			}
			t.chunks.Store(&grown)
			cs = grown
		}
		t.mu.Unlock()
	}
	off := id % chunkIDs * 2
	return &cs[ci][off/64], uint(off % 64)
}

// set sets bit for id and returns both bits as they were before.
func (t *tracker) set(id uint64, bit uint64) uint64 {
	w, shift := t.word(id)
	return w.Or(bit<<shift) >> shift & 3
}

// accepted marks id's POST as answered 202.
func (t *tracker) accepted(id uint64) {
	if old := t.set(id, bitAcc); old&bitDel == 0 {
		t.outstanding.Add(1)
	}
}

// delivered marks id as delivered; false if it already was (a duplicate).
func (t *tracker) delivered(id uint64) bool {
	old := t.set(id, bitDel)
	if old&bitDel != 0 {
		return false
	}
	if old&bitAcc != 0 {
		t.outstanding.Add(-1)
	}
	return true
}

// tally counts, over ids below n: accepted and delivered, accepted and
// never delivered, delivered without a 202 (its POST failed in transit
// after the server queued it).
func (t *tracker) tally(n uint64) (both, undelivered, unconfirmed int64) {
	for id := range n {
		w, shift := t.word(id)
		switch w.Load() >> shift & 3 {
		case bitAcc | bitDel:
			both++
		case bitAcc:
			undelivered++
		case bitDel:
			unconfirmed++
		}
	}
	return both, undelivered, unconfirmed
}
