package redisstore

import (
	"context"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// ackBatch bounds one pipeline of acknowledgements.
const ackBatch = 128

// ackLinger is how long the acker waits after the first acknowledgement
// of a pipeline for others to join it: at 1,000 deliveries a second on a
// node, five per round trip instead of about one, which saved 5 % of the
// CPU per delivered message (nodes and Redis) on one node and on three.
// A lease outlasts it many times over.
const ackLinger = 5 * time.Millisecond

// acker sends acknowledgements in pipelines: one goroutine takes what has
// queued up within ackLinger of the first, and while the last pipeline was
// on its way, so that a round trip carries many.
// An acknowledgement only shortens a lease, so a late or lost one costs
// a redelivery, never a message.
type acker struct {
	s    *Store
	mu   sync.RWMutex // held to send on in, and to close it
	shut bool         // guarded by mu
	in   chan ack
	done chan struct{}
}

type ack struct {
	id  actor.ID
	seq uint64
}

func newAcker(s *Store) *acker {
	a := &acker{s: s, in: make(chan ack, 4096), done: make(chan struct{})}
	go a.run()
	return a
}

// add queues an acknowledgement; when the queue is full (Redis slow or
// away) it is sent on the caller's goroutine instead.
func (a *acker) add(id actor.ID, seq uint64) {
	a.mu.RLock()
	queued := false
	if !a.shut {
		select {
		case a.in <- ack{id, seq}:
			queued = true
		default:
		}
	}
	a.mu.RUnlock()
	if !queued {
		a.send([]ack{{id, seq}})
	}
}

func (a *acker) run() {
	defer close(a.done)
	batch := make([]ack, 0, ackBatch)
	for first := range a.in {
		batch = append(batch[:0], first)
		time.Sleep(ackLinger)
	more:
		for len(batch) < ackBatch {
			select {
			case x, ok := <-a.in:
				if !ok {
					break more
				}
				batch = append(batch, x)
			default:
				break more
			}
		}
		a.send(batch)
	}
}

// send runs the acknowledge script for each, in one pipeline.
func (a *acker) send(batch []ack) {
	s := a.s
	ctx, cancel := context.WithTimeout(context.Background(), s.opts.Timeout)
	defer cancel()
	start := time.Now()
	exec := func() ([]redis.Cmder, error) {
		pipe := s.rdb.Pipeline()
		for _, x := range batch {
			keys, _ := s.mailboxKeys(x.id)
			ackScript.EvalSha(ctx, pipe, keys[:], strconv.FormatUint(x.seq, 10))
		}
		return pipe.Exec(ctx)
	}
	cmds, err := exec()
	if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
		// Redis restarted and lost its scripts: load it, then once more.
		if err = ackScript.Load(ctx, s.rdb).Err(); err == nil {
			cmds, err = exec()
		}
	}
	d := time.Since(start) / time.Duration(len(batch))
	for i := range batch {
		var cerr error
		if i < len(cmds) {
			cerr = cmds[i].Err()
		} else {
			cerr = err
		}
		s.m.observe(opAck, d, cerr)
	}
	if err != nil {
		if ce := s.log.Check(zap.DebugLevel, "acknowledgements failed; their messages come back after the lease"); ce != nil {
			ce.Write(zap.Int("messages", len(batch)), zap.Error(err))
		}
	}
}

// close sends what is queued and stops.
func (a *acker) close() {
	a.mu.Lock()
	a.shut = true
	close(a.in)
	a.mu.Unlock()
	<-a.done
}
