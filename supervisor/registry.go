package supervisor

import (
	"sync"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// shardCount spreads the registry over independent locks. Recipient ids are
// SHA-256 digests, so their first byte is uniform and a good shard key.
const shardCount = 64

// registry maps recipient ids to live mailbox actors. Lookups take a
// shard's read lock only; spawn and removal take its write lock briefly and
// never while waiting on an actor, so no request contends on a global lock.
type registry struct {
	shards [shardCount]shard
}

type shard struct {
	mu sync.RWMutex
	m  map[actor.ID]*actor.Mailbox // guarded by mu
}

func newRegistry() *registry {
	r := &registry{}
	for i := range r.shards {
		r.shards[i].m = make(map[actor.ID]*actor.Mailbox)
	}
	return r
}

func (r *registry) shard(id actor.ID) *shard { return &r.shards[id[0]%shardCount] }

func (r *registry) get(id actor.ID) *actor.Mailbox {
	sh := r.shard(id)
	sh.mu.RLock()
	mb := sh.m[id]
	sh.mu.RUnlock()
	return mb
}

// remove unregisters mb, unless a newer actor already holds its id.
func (r *registry) remove(mb *actor.Mailbox) bool {
	sh := r.shard(mb.ID())
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if sh.m[mb.ID()] != mb {
		return false
	}
	delete(sh.m, mb.ID())
	return true
}

// all returns a snapshot of the live actors, for sweeps and scans.
func (r *registry) all() []*actor.Mailbox {
	var out []*actor.Mailbox
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.RLock()
		for _, mb := range sh.m {
			out = append(out, mb)
		}
		sh.mu.RUnlock()
	}
	return out
}
