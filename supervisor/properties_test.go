package supervisor

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"testing/synctest"
	"time"

	"github.com/leanovate/gopter"
	"github.com/leanovate/gopter/commands"
	"github.com/leanovate/gopter/gen"
	"github.com/leanovate/gopter/prop"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

const (
	propBoxes    = 3
	propCap      = 3
	propTTL      = 20 * time.Second
	propMaxSteps = 15 * time.Second
)

func propParameters(t *testing.T) *gopter.TestParameters {
	t.Helper()
	p := gopter.DefaultTestParameters()
	p.MinSuccessfulTests = 200
	t.Logf("gopter seed %d", p.Seed())
	return p
}

// The model: per mailbox, the bodies queued and when they arrived.
type modelMsg struct {
	body    string
	arrived time.Duration
}

type model struct {
	boxes   [propBoxes][]modelMsg
	elapsed time.Duration
	// Outcome of the last command, for its post-condition.
	accepted bool
	taken    string // "" when the model had nothing to deliver
}

func (m *model) clone() *model {
	c := *m
	for i := range c.boxes {
		c.boxes[i] = append([]modelMsg(nil), m.boxes[i]...)
	}
	return &c
}

// dropExpired mirrors R3.1: a message as old as the TTL is never delivered.
func (m *model) dropExpired(box int) {
	q := m.boxes[box]
	for len(q) > 0 && m.elapsed-q[0].arrived >= propTTL {
		q = q[1:]
	}
	m.boxes[box] = q
}

// sut wraps the supervisor with what post-conditions need to know about
// sequences.
type sut struct {
	s       *Supervisor
	lastSeq [propBoxes]uint64
	// parked returns once box's actor has parked the receive sent to it;
	// quiet, once everything the engine started has finished. In a bubble
	// both are synctest.Wait.
	parked func(box int)
	quiet  func()
	close  func()
}

type postResult struct {
	err        error
	increasing bool
}

type getResult struct {
	d          actor.Delivery
	increasing bool
}

type postCommand struct {
	box  int
	body string
}

func (c postCommand) Run(x commands.SystemUnderTest) commands.Result {
	u := x.(*sut)
	r, err := u.s.Post(context.Background(), id(c.box), []byte(c.body))
	res := postResult{err: err, increasing: true}
	if err == nil {
		res.increasing = r.Seq > u.lastSeq[c.box]
		u.lastSeq[c.box] = r.Seq
	}
	return res
}

func (c postCommand) NextState(st commands.State) commands.State {
	m := st.(*model).clone()
	m.dropExpired(c.box)
	m.accepted = len(m.boxes[c.box]) < propCap
	if m.accepted {
		m.boxes[c.box] = append(m.boxes[c.box], modelMsg{body: c.body, arrived: m.elapsed})
	}
	return m
}

func (postCommand) PreCondition(commands.State) bool { return true }

// Property 5: a full mailbox answers 507 (ErrQueueFull); sequences rise.
func (c postCommand) PostCondition(st commands.State, result commands.Result) *gopter.PropResult {
	m, r := st.(*model), result.(postResult)
	switch {
	case !r.increasing:
		return gopter.NewPropResult(false, "sequence did not increase")
	case m.accepted && r.err != nil:
		return gopter.NewPropResult(false, fmt.Sprintf("post refused: %v", r.err))
	case !m.accepted && !errors.Is(r.err, actor.ErrQueueFull):
		return gopter.NewPropResult(false, fmt.Sprintf("full mailbox answered %v; want ErrQueueFull", r.err))
	}
	return gopter.NewPropResult(true, "")
}

func (c postCommand) String() string { return fmt.Sprintf("Post(%d, %q)", c.box, c.body) }

type getCommand struct{ box int }

func (c getCommand) Run(x commands.SystemUnderTest) commands.Result {
	u := x.(*sut)
	d, err := u.s.Receive(context.Background(), id(c.box), 0)
	if err != nil {
		panic(err)
	}
	return getResult{d: d, increasing: !d.OK || d.Message.Seq <= u.lastSeq[c.box]}
}

func (c getCommand) NextState(st commands.State) commands.State {
	m := st.(*model).clone()
	m.dropExpired(c.box)
	m.taken = ""
	if q := m.boxes[c.box]; len(q) > 0 {
		m.taken = q[0].body
		m.boxes[c.box] = q[1:]
	}
	return m
}

func (getCommand) PreCondition(commands.State) bool { return true }

// Properties 1, 2, 3: the oldest unexpired message comes out, byte for byte.
func (c getCommand) PostCondition(st commands.State, result commands.Result) *gopter.PropResult {
	m, r := st.(*model), result.(getResult)
	got := ""
	if r.d.OK {
		got = string(r.d.Message.Body)
	}
	if got != m.taken {
		return gopter.NewPropResult(false, fmt.Sprintf("got %q; model says %q", got, m.taken))
	}
	if r.d.OK && r.d.QueueLen != len(m.boxes[c.box]) {
		return gopter.NewPropResult(false, fmt.Sprintf("queue length %d; model says %d", r.d.QueueLen, len(m.boxes[c.box])))
	}
	return gopter.NewPropResult(true, "")
}

func (c getCommand) String() string { return fmt.Sprintf("Get(%d)", c.box) }

// cancelCommand is a long-poll whose client leaves: before its receive
// reaches the actor (early: the actor must skip it, Z2, even with
// messages queued), or while it is parked on an empty mailbox. Either way
// it takes nothing and is withdrawn through its Receipt, as the HTTP
// layer withdraws it.
type cancelCommand struct {
	box   int
	early bool
}

type cancelResult struct {
	d       actor.Delivery
	err     error
	waiting int64 // parked long-polls once it is over
}

func (c cancelCommand) Run(x commands.SystemUnderTest) commands.Result {
	u := x.(*sut)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if c.early {
		cancel()
	}
	got := make(answers, 1)
	rc, err := u.s.StartReceive(ctx, id(c.box), time.Minute, got)
	var d actor.Delivery
	if err == nil {
		if !c.early {
			u.parked(c.box)
		}
		cancel()
		d, err = got.await(ctx, rc)
	}
	u.quiet()
	return cancelResult{d: d, err: err, waiting: u.s.Snapshot().Waiting}
}

func (c cancelCommand) NextState(st commands.State) commands.State {
	m := st.(*model).clone()
	m.dropExpired(c.box)
	return m
}

// A long-poll parks only on an empty mailbox: on a full one it would take
// a message before its client left.
func (c cancelCommand) PreCondition(st commands.State) bool {
	if c.early {
		return true
	}
	m := st.(*model).clone()
	m.dropExpired(c.box)
	return len(m.boxes[c.box]) == 0
}

func (c cancelCommand) PostCondition(_ commands.State, result commands.Result) *gopter.PropResult {
	r := result.(cancelResult)
	switch {
	case r.d.OK:
		return gopter.NewPropResult(false, fmt.Sprintf("a client that left was handed %q", r.d.Message.Body))
	case !errors.Is(r.err, context.Canceled):
		return gopter.NewPropResult(false, fmt.Sprintf("answered %v; want context.Canceled", r.err))
	case r.waiting != 0:
		return gopter.NewPropResult(false, fmt.Sprintf("%d long-polls still counted as waiting", r.waiting))
	}
	return gopter.NewPropResult(true, "")
}

func (c cancelCommand) String() string { return fmt.Sprintf("Cancel(%d, early=%v)", c.box, c.early) }

// reapCommand asks the reaper to reclaim idle empty mailboxes, as a new
// mailbox at max_mailboxes does (Z5): no message is lost, and sequences
// keep rising in a mailbox started afresh (R1.7).
type reapCommand struct{}

func (reapCommand) Run(x commands.SystemUnderTest) commands.Result {
	return x.(*sut).s.reaper.reclaimSlots(context.Background())
}

func (reapCommand) NextState(st commands.State) commands.State { return st }
func (reapCommand) PreCondition(commands.State) bool           { return true }

func (reapCommand) PostCondition(_ commands.State, result commands.Result) *gopter.PropResult {
	if err, _ := result.(error); err != nil && !errors.Is(err, actor.ErrOverloaded) {
		return gopter.NewPropResult(false, fmt.Sprintf("reclaim: %v", err))
	}
	return gopter.NewPropResult(true, "")
}

func (reapCommand) String() string { return "Reap" }

type advanceCommand time.Duration

func (c advanceCommand) Run(commands.SystemUnderTest) commands.Result {
	time.Sleep(time.Duration(c))
	synctest.Wait() // let sweeps that fell due finish
	return nil
}

func (c advanceCommand) NextState(st commands.State) commands.State {
	m := st.(*model).clone()
	m.elapsed += time.Duration(c)
	return m
}

func (advanceCommand) PreCondition(commands.State) bool { return true }
func (advanceCommand) PostCondition(commands.State, commands.Result) *gopter.PropResult {
	return gopter.NewPropResult(true, "")
}
func (c advanceCommand) String() string { return fmt.Sprintf("Advance(%v)", time.Duration(c)) }

// TestMailboxModel checks properties 1 (FIFO), 2 (integrity), 3 (TTL) and 5
// (queue cap) against a model, with sweeps and idle reaping running,
// reclaims asked for, and long-polls whose clients leave. Receives go
// through StartReceive and its Receipt, the path the HTTP layer takes.
func TestMailboxModel(t *testing.T) {
	params := propParameters(t) // outside the bubble, whose clock is fixed
	synctest.Test(t, func(t *testing.T) {
		checkMailboxModel(t, params, true, func() *sut {
			opts := modelOptions()
			opts.IdleTimeout = 25 * time.Second
			opts.EvictionInterval = 7 * time.Second
			s := New(opts)
			return &sut{s: s, parked: func(int) { synctest.Wait() }, quiet: synctest.Wait, close: s.Close}
		})
	})
}

// TestMailboxModelRedis checks the same properties against the Redis
// store: each run on keys of its own, on one redis-server and on a
// Cluster of three masters. Redis keeps its own clock, so the model's
// clock stands still (no Advance; the TTL is far away).
func TestMailboxModelRedis(t *testing.T) {
	t.Run("standalone", func(t *testing.T) { checkMailboxModelRedis(t, "standalone", redistest.Start(t).URL()) })
	t.Run("cluster", func(t *testing.T) { checkMailboxModelRedis(t, "cluster", redistest.StartCluster(t, 3).URL()) })
}

func checkMailboxModelRedis(t *testing.T, mode, url string) {
	params := propParameters(t)
	params.MinSuccessfulTests = 100
	runs := 0
	checkMailboxModel(t, params, false, func() *sut {
		runs++
		opts := modelOptions()
		store, err := redisstore.New(redisstore.Options{
			URL: url, Mode: mode, KeyPrefix: fmt.Sprintf("run%d:", runs), Timeout: time.Second, Lease: time.Minute,
			TTL: opts.TTL, MaxQueueLength: opts.MaxQueueLength, RequireNoEviction: true,
		})
		if err != nil {
			panic(err)
		}
		opts.Store = store
		s := New(opts)
		// A withdrawn receive is over when Cancel returns: nothing to wait for.
		u := &sut{s: s, quiet: func() {}, close: func() { s.Close(); store.Close() }}
		u.parked = func(box int) {
			for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(time.Millisecond) {
				if mb := s.reg.get(id(box)); mb != nil && mb.Waiters() > 0 {
					return
				}
			}
			panic(fmt.Sprintf("box %d: the receive never parked", box))
		}
		return u
	})
}

func modelOptions() Options {
	opts := testOptions()
	opts.MaxQueueLength = propCap
	opts.TTL = propTTL
	return opts
}

// checkMailboxModel runs the model's commands against the engines newSUT
// makes; withClock adds the commands that move the clock.
func checkMailboxModel(t *testing.T, params *gopter.TestParameters, withClock bool, newSUT func() *sut) {
	genBox := gen.IntRange(0, propBoxes-1)
	cmds := &commands.ProtoCommands{
		NewSystemUnderTestFunc:     func(commands.State) commands.SystemUnderTest { return newSUT() },
		DestroySystemUnderTestFunc: func(x commands.SystemUnderTest) { x.(*sut).close() },
		InitialStateGen:            gen.Const(&model{}),
		GenCommandFunc: func(commands.State) gopter.Gen {
			gens := []gen.WeightedGen{
				{Weight: 4, Gen: gopter.CombineGens(genBox, gen.AlphaString()).Map(func(v []any) commands.Command {
					return postCommand{box: v[0].(int), body: "m" + v[1].(string)}
				})},
				{Weight: 4, Gen: genBox.Map(func(b int) commands.Command { return getCommand{box: b} })},
				{Weight: 1, Gen: gopter.CombineGens(genBox, gen.Bool()).Map(func(v []any) commands.Command {
					return cancelCommand{box: v[0].(int), early: v[1].(bool)}
				})},
				{Weight: 1, Gen: gen.Const(commands.Command(reapCommand{}))},
			}
			if withClock {
				// Whole seconds, so that messages land exactly on the
				// TTL boundary now and then.
				gens = append(gens, gen.WeightedGen{Weight: 1, Gen: gen.Int64Range(0, int64(propMaxSteps/time.Second)).Map(func(d int64) commands.Command {
					return advanceCommand(time.Duration(d) * time.Second)
				})})
			}
			return gen.Weighted(gens)
		},
	}
	properties := gopter.NewProperties(params)
	properties.Property("mailboxes behave like the model", commands.Prop(cmds))
	properties.TestingRun(t)
}

// op is one step of a random interleaving for property 6.
type op struct {
	kind int // 0 post, 1 park a waiter, 2 cancel a waiter, 3 get, 4 advance, 5 cancel racing a post, 6 reclaim
	box  int
	n    int
}

func (o op) String() string {
	return fmt.Sprintf("%s(%d,%d)", [...]string{"post", "park", "cancel", "get", "advance", "cancel+post", "reclaim"}[o.kind], o.box, o.n)
}

// TestExactlyOnceHandoff checks property 6: with any interleaving of posts,
// long-poll waiters and waiters whose clients leave, every accepted message
// is delivered exactly once to a connected client, or evicted with a counted
// reason, or still queued at the end — never lost, never duplicated.
func TestExactlyOnceHandoff(t *testing.T) {
	genOp := gopter.CombineGens(gen.IntRange(0, 6), gen.IntRange(0, propBoxes-1), gen.IntRange(0, 40)).
		Map(func(v []any) op { return op{kind: v[0].(int), box: v[1].(int), n: v[2].(int)} })
	properties := gopter.NewProperties(propParameters(t))
	properties.Property("every accepted message is delivered once or evicted", prop.ForAll(
		func(ops []op) string {
			var verdict string
			synctest.Test(t, func(t *testing.T) { verdict = runInterleaving(ops) })
			return verdict
		},
		gen.SliceOf(genOp),
	))
	properties.TestingRun(t)
}

// runInterleaving plays ops against a fresh supervisor and returns "" when
// the accounting holds, or what went wrong.
func runInterleaving(ops []op) string {
	opts := testOptions()
	opts.MaxQueueLength = 4
	opts.TTL = propTTL
	opts.MemoryLimit = 60 // bodies are 10 bytes: memory evictions happen
	opts.EvictionInterval = 5 * time.Second
	opts.IdleTimeout = 10 * time.Second
	s := New(opts)

	var mu sync.Mutex
	delivered := map[string]int{}
	deliver := func(d actor.Delivery) {
		mu.Lock()
		delivered[string(d.Message.Body)]++
		mu.Unlock()
	}
	accepted := map[string]bool{}
	var cancels []context.CancelFunc
	var wg sync.WaitGroup
	post := func(i, box int) {
		body := fmt.Sprintf("msg-%06d", i)
		if _, err := s.Post(context.Background(), id(box), []byte(body)); err == nil {
			accepted[body] = true
		}
	}
	for i, o := range ops {
		switch o.kind {
		case 0:
			post(i, o.box)
		case 1:
			ctx, cancel := context.WithCancel(context.Background())
			cancels = append(cancels, cancel)
			wg.Add(1)
			go func() {
				defer wg.Done()
				d, err := s.Receive(ctx, id(o.box), time.Duration(o.n+1)*time.Second)
				if err != nil || !d.OK {
					return
				}
				if ctx.Err() != nil {
					// The client left after the hand-off: put it back, as
					// the HTTP layer does when its write fails (Z2).
					s.Requeue(id(o.box), d.Message)
					return
				}
				deliver(d)
			}()
		case 2:
			if len(cancels) > 0 {
				cancels[o.n%len(cancels)]()
			}
		case 3:
			if d, err := s.Receive(context.Background(), id(o.box), 0); err == nil && d.OK {
				deliver(d)
			}
		case 4:
			time.Sleep(time.Duration(o.n) * time.Second / 4)
		case 5:
			// A client leaving while its message is being handed over:
			// the hand-off may win, and then the message must come back.
			if len(cancels) > 0 {
				go cancels[o.n%len(cancels)]()
			}
			post(i, o.box)
		case 6:
			s.reaper.reclaimSlots(context.Background())
		}
		synctest.Wait()
	}
	for _, c := range cancels {
		c()
	}
	wg.Wait()
	left := s.Leftovers()
	st := s.Stats()
	remaining := 0
	for _, msgs := range left {
		for _, m := range msgs {
			remaining++
			if delivered[string(m.Body)] > 0 {
				return fmt.Sprintf("%s both delivered and still queued", m.Body)
			}
		}
	}
	total := 0
	for body, n := range delivered {
		if n != 1 {
			return fmt.Sprintf("%s delivered %d times", body, n)
		}
		if !accepted[body] {
			return fmt.Sprintf("%s delivered but never accepted", body)
		}
		total++
	}
	evicted := int(st.EvictedTTL.Load() + st.EvictedMemory.Load())
	if len(accepted) != total+evicted+remaining {
		return fmt.Sprintf("accepted %d != delivered %d + evicted %d + remaining %d",
			len(accepted), total, evicted, remaining)
	}
	return ""
}

// A thousand mailboxes each with a waiting long-poll take 10,000 messages
// from 16 posters; all arrive exactly once, and once the idle mailboxes are
// reaped no goroutine is left behind.
func TestThousandWaitingMailboxes(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		const (
			boxes   = 1000
			perBox  = 10
			posters = 16
		)
		baseline, _ := bubbleGoroutines()
		s := New(testOptions())
		var mu sync.Mutex
		got := make(map[string]int, boxes*perBox)
		var consumers sync.WaitGroup
		for b := range boxes {
			consumers.Add(1)
			go func() {
				defer consumers.Done()
				for n := 0; n < perBox; {
					d, err := s.Receive(context.Background(), id(b), time.Minute)
					if err != nil {
						t.Errorf("receive: %v", err)
						return
					}
					if d.OK {
						mu.Lock()
						got[string(d.Message.Body)]++
						mu.Unlock()
						n++
					}
				}
			}()
		}
		synctest.Wait()
		if w := s.Snapshot().Waiting; w != boxes {
			t.Fatalf("waiting long-polls = %d; want %d", w, boxes)
		}
		var posting sync.WaitGroup
		for p := range posters {
			posting.Add(1)
			go func() {
				defer posting.Done()
				for i := p; i < boxes*perBox; i += posters {
					body := fmt.Sprintf("%d/%d", i%boxes, i)
					if _, err := s.Post(context.Background(), id(i%boxes), []byte(body)); err != nil {
						t.Errorf("post %s: %v", body, err)
					}
				}
			}()
		}
		posting.Wait()
		consumers.Wait()
		if len(got) != boxes*perBox {
			t.Fatalf("delivered %d distinct messages; want %d", len(got), boxes*perBox)
		}
		for body, n := range got {
			if n != 1 {
				t.Fatalf("%s delivered %d times", body, n)
			}
		}
		time.Sleep(time.Hour + time.Minute) // idle timeout plus sweeps
		synctest.Wait()
		if n := s.Snapshot().Mailboxes; n != 0 {
			t.Fatalf("%d mailboxes left after the idle timeout", n)
		}
		s.Close()
		synctest.Wait()
		if n, dump := bubbleGoroutines(); n > baseline {
			t.Fatalf("goroutines: %d in the test's bubble after reaping; want %d as at the start\n%s", n, baseline, dump)
		}
	})
}

// bubbleGoroutines counts the live goroutines of synctest bubbles, from a
// dump of all goroutines (which leaves out those that are exiting, unlike
// runtime.NumGoroutine: an actor's goroutine that has just closed its done
// channel may still count there for an instant).
func bubbleGoroutines() (int, string) {
	buf := make([]byte, 1<<20)
	dump := string(buf[:runtime.Stack(buf, true)])
	return strings.Count(dump, "synctest bubble "), dump
}
