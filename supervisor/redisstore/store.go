// Package redisstore keeps the mailboxes' queues in Redis, so that several
// nodes behind a load balancer serve the same mailboxes and a node can die
// without losing a queued message (SPEC "Redis store (Z13)").
//
// Each node keeps the actor design: one actor per mailbox holds this
// node's waiters and makes this node's calls on the mailbox's Queue, one
// at a time. A mailbox is one Redis list changed only by the scripts in
// lua/ (post, take, put back, acknowledge), so every change is atomic
// across nodes; a taken message is leased to the taking node until its
// response is written (acknowledge) or its lease runs out and it comes
// back to the head. All keys and the wake-up channel of a mailbox share
// the recipient id as hash tag, so a mailbox lives in one Cluster slot.
package redisstore

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"errors"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"github.com/redis/go-redis/v9"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// Options configure a Store. cmd builds them from conf.Config.
type Options struct {
	URL string // redis:// or rediss:// (redis_url)
	// Mode is "standalone" (or ""), "cluster" or "sentinel" (redis_mode).
	// With Cluster, URL names some of its masters (its host and any
	// ?addr=host:port); with Sentinel, the sentinels, and MasterName the
	// master they watch.
	Mode, MasterName  string
	KeyPrefix         string        // redis_key_prefix
	Timeout           time.Duration // one store call's deadline (redis_timeout_ms)
	Lease             time.Duration // redis_lease_ms
	TTL               time.Duration // message_ttl_seconds, on Redis' clock
	MaxQueueLength    int
	RequireNoEviction bool         // redis_require_noeviction
	WaitReplicas      int          // redis_wait_replicas
	Logger            *zap.Logger  // nil: no logs
	Metrics           *metrics.Set // nil: no metrics
	// Recheck is how often the mailboxes with waiters here look at their
	// queue whatever the wake-ups said (a backstop); zero: 5 s.
	Recheck time.Duration
}

// claimTTL bounds how long a take that found a mailbox empty names this
// node as the one to push its next message to, should the node never
// say it stopped waiting there (it died): posts meanwhile find nobody
// on its channel and forget it themselves.
const claimTTL = 2 * time.Minute

// poolSize bounds a node's Redis connections for store calls; pub/sub
// adds subConns.
const poolSize = 128

// bufferSize is each connection's read and write buffer.
const bufferSize = 4096

// ErrEvictingPolicy is what Fatal carries when Redis may evict keys, that
// is, drop queued messages (Z13).
var ErrEvictingPolicy = errors.New("redis maxmemory-policy must be noeviction")

// Store is the Redis store of one node. Its methods are safe for
// concurrent use.
type Store struct {
	opts Options
	log  *zap.Logger
	rdb  redis.UniversalClient
	// cluster is rdb with redis_mode = "cluster", else nil: wake-ups go
	// through sharded pub/sub on each master, and nothing is pushed
	// (hub.go).
	cluster *redis.ClusterClient
	// nodeOpts are the options of a connection to one Redis process,
	// for the hub's sharded pub/sub on each Cluster master.
	nodeOpts *redis.Options
	// publish is the command a script publishes a mailbox's wake-up
	// with: SPUBLISH in a Cluster, so that it reaches only the shard
	// that holds the mailbox.
	publish string
	hub     *hub
	// calls admits poolSize store calls into go-redis at a time (see
	// call).
	calls chan struct{}
	acks  *acker
	m     storeMetrics
	epoch atomic.Pointer[string]
	up    atomic.Bool

	ttlUS, leaseUS string // script arguments, formatted once
	maxLen         string

	// node names this process to the others. A mailbox's claim names the
	// node and the pub/sub connection its channel is on (claims, by
	// connection), and a post on another node pushes a message for a
	// waiter here on nodeChannels+claim, which that same connection
	// subscribes (hub.go): a push and the mailbox's wake-ups arrive in the
	// order Redis sent them.
	node, nodeChannels string
	claims             [subConns]string
	claimMS            string // how long a take's claim lasts (lua/take.lua)

	fatal     chan error
	cancel    context.CancelFunc
	done      chan struct{}
	closeOnce sync.Once
	closeErr  error
}

// New returns a node's store and starts its keeper, which connects in the
// background: a node must start before its Redis does (Z13). Until Redis
// answers, Available is false and every call fails with
// actor.ErrStoreUnavailable.
func New(opts Options) (*Store, error) {
	rdb, nodeOpts, err := newClient(opts)
	if err != nil {
		return nil, err
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	if opts.Recheck <= 0 {
		opts.Recheck = 5 * time.Second
	}
	// go-redis' own lines (a failed dial, a reconnect) become the store
	// logger's debug lines: structured, and its errors are ours to report.
	redis.SetLogger(clientLog{opts.Logger})
	s := &Store{
		opts:     opts,
		log:      opts.Logger,
		rdb:      rdb,
		calls:    make(chan struct{}, poolSize),
		nodeOpts: nodeOpts,
		publish:  "PUBLISH",
		ttlUS:    fmt.Sprint(opts.TTL.Microseconds()),
		leaseUS:  fmt.Sprint(opts.Lease.Microseconds()),
		maxLen:   fmt.Sprint(opts.MaxQueueLength),
		node:     rand.Text(),
		claimMS:  fmt.Sprint(claimTTL.Milliseconds()),
		fatal:    make(chan error, 1),
		done:     make(chan struct{}),
	}
	if c, ok := rdb.(*redis.ClusterClient); ok {
		s.cluster, s.publish = c, "SPUBLISH"
	}
	s.nodeChannels = opts.KeyPrefix + "node:"
	for i := range s.claims {
		s.claims[i] = s.node + ":" + strconv.Itoa(i)
	}
	empty := ""
	s.epoch.Store(&empty)
	s.m = newStoreMetrics(opts.Metrics)
	s.hub = newHub(s)
	s.acks = newAcker(s)
	if opts.Metrics != nil {
		opts.Metrics.NewGauge("zrc_rendezvous_store_subscriptions", func() float64 { return float64(s.hub.count()) })
		opts.Metrics.NewGauge("zrc_rendezvous_store_up", func() float64 {
			if s.up.Load() {
				return 1
			}
			return 0
		})
	}
	// One look before the node starts serving: a Redis that answers and
	// may evict keys refuses the start at once. One that does not answer
	// yet is the keeper's to wait for.
	checked := false
	if err := s.check(context.Background(), &checked); errors.Is(err, ErrEvictingPolicy) {
		s.hub.close()
		s.acks.close()
		s.rdb.Close()
		return nil, err
	} else if err == nil {
		s.up.Store(true)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s.cancel = cancel
	go s.keep(ctx, checked)
	return s, nil
}

// Fatal delivers the one error that must stop the node: Redis may evict
// queued messages (maxmemory-policy) while redis_require_noeviction is on.
func (s *Store) Fatal() <-chan error { return s.fatal }

// Available reports whether Redis answered the keeper's last check (one
// a second): /health's store_unavailable. A single failed call does not
// change it: a burst can outwait the pool while Redis is fine.
func (s *Store) Available() bool { return s.up.Load() }

// Epoch is the lineage of the queued state kept in Redis (Z9): the same
// on every node, new when Redis lost its data; "" until Redis first
// answered.
func (s *Store) Epoch() string { return *s.epoch.Load() }

// Close stops the keeper and the wake-ups and closes the connections;
// it may be called more than once.
func (s *Store) Close() error {
	s.closeOnce.Do(func() {
		s.cancel()
		<-s.done
		s.hub.close()
		s.acks.close()
		s.closeErr = s.rdb.Close()
	})
	return s.closeErr
}

// Queue is the queue of id's mailbox, for its actor on this node; it
// counts what the scripts drop for the TTL in stats.
func (s *Store) Queue(id actor.ID, stats *actor.Stats) actor.Queue {
	q := s.newQueue(id)
	q.stats = stats
	return q
}

// Ack forgets the lease of a message whose response was written. It
// returns at once: the acker sends acknowledgements in pipelines (see
// acker.go). One that fails leaves the lease to run out: the message is
// delivered again, and counted.
func (s *Store) Ack(id actor.ID, msg actor.Message) error {
	s.acks.add(id, msg.Seq)
	return nil
}

// Reserve takes up to want tokens from the rate-limit bucket named key,
// shared by every node on this Redis (httpapi/guard's SharedBuckets); it
// fails at once while the keeper finds Redis away. The call runs on a
// goroutine of its own: the caller is a request's handler, whose stack
// stays small for as long as it waits as a long-poll, and a Redis call
// goes deep (with it on the handler, 10,000 waiting long-polls held 2.5
// KiB more each).
func (s *Store) Reserve(key string, perSecond float64, burst, want int) (granted int, tokens float64, err error) {
	if !s.up.Load() {
		return 0, 0, actor.ErrStoreUnavailable
	}
	type result struct {
		granted int
		tokens  float64
		err     error
	}
	done := make(chan result, 1)
	go func() {
		var r result
		r.granted, r.tokens, r.err = s.reserve(key, perSecond, burst, want)
		done <- r
	}()
	r := <-done
	return r.granted, r.tokens, r.err
}

func (s *Store) reserve(key string, perSecond float64, burst, want int) (int, float64, error) {
	k := s.opts.KeyPrefix + "rl:{" + key + "}"
	res, err := s.call(opRateLimit, rateScript, []string{k}, strconv.FormatFloat(1e6/perSecond, 'f', 3, 64), burst, want)
	if err != nil {
		return 0, 0, err
	}
	r, err := reply(res, 2)
	if err != nil {
		return 0, 0, err
	}
	n, _ := r[0].(int64)
	text, _ := r[1].(string)
	tokens, err := strconv.ParseFloat(text, 64)
	if err != nil {
		return 0, 0, errReply
	}
	return int(n), tokens, nil
}

// key is the name of one of a mailbox's keys or its channel.
func (s *Store) key(hexID, suffix string) string {
	return s.opts.KeyPrefix + "{" + hexID + "}:" + suffix
}

// call runs script with a deadline of Timeout, timing it and counting its
// failure, and turns Redis' failures into the engine's errors.
func (s *Store) call(op op, script *redis.Script, keys []string, args ...any) (any, error) {
	start := time.Now()
	at := start.Add(s.opts.Timeout)
	// A burst of new long-polls starts thousands of actors at once. Those
	// beyond poolSize wait here, in a shallow frame, rather than deep in
	// go-redis for a pooled connection: a goroutine waiting there has
	// grown its stack, and the heap those stacks took stayed behind, idle,
	// after the burst (docs/performance.md).
	if err := s.enter(at); err != nil {
		s.m.observe(op, time.Since(start), err)
		return nil, s.failed(op, err)
	}
	defer func() { <-s.calls }()
	ctx := deadline{context.Background(), at}
	var res any
	var err error
	if op == opPost && s.opts.WaitReplicas > 0 {
		res, err = s.postAndWait(ctx, script, keys, args)
	} else {
		res, err = script.Run(ctx, s.rdb, keys, args...).Result()
	}
	s.m.observe(op, time.Since(start), err)
	if err != nil {
		return nil, s.failed(op, err)
	}
	return res, nil
}

// enter takes one of the calls' places, waiting until at at most; the
// timer is only made when every place is taken.
func (s *Store) enter(at time.Time) error {
	select {
	case s.calls <- struct{}{}:
		return nil
	default:
	}
	t := time.NewTimer(time.Until(at))
	defer t.Stop()
	select {
	case s.calls <- struct{}{}:
		return nil
	case <-t.C:
		return redis.ErrPoolTimeout
	}
}

// deadline is a context that carries a deadline and nothing to wait on:
// go-redis sets each connection's read and write deadlines from it, and
// waits for a pooled connection at most PoolTimeout (which is Timeout)
// rather than on Done. Unlike context.WithTimeout it needs no timer and
// no channel, which every store call made and dropped: on a burst of new
// long-polls that garbage was a good part of what the node's memory grew
// by.
type deadline struct {
	context.Context
	at time.Time
}

func (d deadline) Deadline() (time.Time, bool) { return d.at, true }

func (d deadline) Err() error {
	if !time.Now().Before(d.at) {
		return context.DeadlineExceeded
	}
	return nil
}

// callContext bounds one store call by Timeout from now.
func (s *Store) callContext() context.Context {
	return deadline{context.Background(), time.Now().Add(s.opts.Timeout)}
}

// postAndWait runs the post script and WAIT on one connection to the
// mailbox's master, so that the answer comes only once WaitReplicas
// replicas hold the message.
func (s *Store) postAndWait(ctx context.Context, script *redis.Script, keys []string, args []any) (any, error) {
	var master *redis.Client
	if s.cluster != nil {
		var err error
		if master, err = s.cluster.MasterForKey(ctx, keys[0]); err != nil {
			return nil, err
		}
	} else {
		master = s.rdb.(*redis.Client)
	}
	conn := master.Conn()
	defer conn.Close()
	res, err := script.Run(ctx, conn, keys, args...).Result()
	if err != nil {
		return nil, err
	}
	wait := s.opts.Timeout / 2 // the rest of the deadline is for the round trips
	n, err := conn.Wait(ctx, s.opts.WaitReplicas, wait).Result()
	if err != nil {
		return nil, err
	}
	if n < int64(s.opts.WaitReplicas) {
		return nil, fmt.Errorf("%d of %d replicas confirmed the post within %v", n, s.opts.WaitReplicas, wait)
	}
	return res, nil
}

// failed maps err: a Redis out of memory under noeviction refuses the
// post as overloaded (Z13); anything else is the store being unavailable.
func (s *Store) failed(op op, err error) error {
	if strings.HasPrefix(err.Error(), "OOM ") {
		return fmt.Errorf("%w: redis is at its maxmemory", actor.ErrOverloaded)
	}
	// Whether Redis is away is the keeper's to say: a call can also fail
	// for a burst that outwaits the pool.
	if ce := s.log.Check(zap.DebugLevel, "store call failed"); ce != nil {
		ce.Write(zap.String("op", op.String()), zap.Error(err))
	}
	return fmt.Errorf("%w: %s: %v", actor.ErrStoreUnavailable, op, err)
}

// clientLog hands go-redis' log lines to zap at debug level.
type clientLog struct{ log *zap.Logger }

func (l clientLog) Printf(_ context.Context, format string, v ...any) {
	if ce := l.log.Check(zap.DebugLevel, "redis client"); ce != nil {
		ce.Write(zap.String("detail", fmt.Sprintf(format, v...)))
	}
}

// newClient connects to a standalone Redis, to a Cluster, or through
// Sentinel to the master it names (go-redis' failover client follows a
// failover). It also returns the options of a connection to one of the
// Cluster's processes (nil in the other modes).
func newClient(opts Options) (redis.UniversalClient, *redis.Options, error) {
	// The URL may hold a password: its parsers' messages are not passed on.
	bad := errors.New("redis_url: not a valid redis:// or rediss:// URL")
	base := &redis.Options{}
	tune(base, opts.Timeout)
	switch opts.Mode {
	case "cluster":
		co, err := redis.ParseClusterURL(opts.URL)
		if err != nil {
			return nil, nil, bad
		}
		co.DialTimeout, co.ReadTimeout, co.WriteTimeout, co.PoolTimeout = base.DialTimeout, base.ReadTimeout, base.WriteTimeout, base.PoolTimeout
		co.ContextTimeoutEnabled, co.PoolSize = base.ContextTimeoutEnabled, base.PoolSize
		co.ReadBufferSize, co.WriteBufferSize = base.ReadBufferSize, base.WriteBufferSize
		co.MaxRetries, co.DialerRetries, co.Protocol, co.DisableIdentity = base.MaxRetries, base.DialerRetries, base.Protocol, base.DisableIdentity
		// A slot that moved answers MOVED: follow it (the default), but
		// within the call's deadline.
		co.MaxRedirects = 3
		if co.TLSConfig != nil {
			co.TLSConfig.MinVersion = tls.VersionTLS12
		}
		node := *base
		node.Username, node.Password, node.TLSConfig = co.Username, co.Password, co.TLSConfig
		// The hub's clients for each master only make its pub/sub connection.
		node.PoolSize = 1
		return redis.NewClusterClient(co), &node, nil
	case "sentinel":
	default:
		ro, err := redis.ParseURL(opts.URL)
		if err != nil {
			return nil, nil, bad
		}
		tune(ro, opts.Timeout)
		return redis.NewClient(ro), nil, nil
	}
	u, err := url.Parse(opts.URL)
	if err != nil || (u.Scheme != "redis" && u.Scheme != "rediss") || u.Host == "" {
		return nil, nil, bad
	}
	db := 0
	if p := strings.Trim(u.Path, "/"); p != "" {
		if db, err = strconv.Atoi(p); err != nil {
			return nil, nil, bad
		}
	}
	fo := &redis.FailoverOptions{
		MasterName: opts.MasterName, SentinelAddrs: append([]string{u.Host}, u.Query()["addr"]...), DB: db,
		DialTimeout: base.DialTimeout, ReadTimeout: base.ReadTimeout, WriteTimeout: base.WriteTimeout, PoolTimeout: base.PoolTimeout,
		ContextTimeoutEnabled: base.ContextTimeoutEnabled, PoolSize: base.PoolSize, ReadBufferSize: base.ReadBufferSize,
		WriteBufferSize: base.WriteBufferSize, MaxRetries: base.MaxRetries, DialerRetries: base.DialerRetries,
		Protocol: base.Protocol, DisableIdentity: base.DisableIdentity,
	}
	if u.User != nil {
		// The credentials are the data nodes' (the sentinels' own
		// authentication is not supported).
		fo.Username = u.User.Username()
		fo.Password, _ = u.User.Password()
	}
	if u.Scheme == "rediss" {
		fo.TLSConfig = &tls.Config{ServerName: u.Hostname(), MinVersion: tls.VersionTLS12}
	}
	return redis.NewFailoverClient(fo), nil, nil
}

// tune sets what every connection to Redis shares.
func tune(ro *redis.Options, timeout time.Duration) {
	// A call's deadline bounds each step of it; go-redis retries nothing,
	// so a failing call ends within Timeout (503 store_unavailable).
	ro.DialTimeout, ro.ReadTimeout, ro.WriteTimeout, ro.PoolTimeout = timeout, timeout, timeout, timeout
	ro.ContextTimeoutEnabled = true
	// The pool is the node's only queue for store calls: a burst of new
	// long-polls (a subscription and a take each) waits in it, and a call
	// that waits past redis_timeout_ms fails. With go-redis' default of
	// 10 per CPU, 45 % of a burst of 12,500 new long-polls a second on 2
	// CPUs got 503; poolSize connections refused none in three runs.
	ro.PoolSize = poolSize
	// Replies are at most one message: small buffers keep an idle pool of
	// poolSize connections from costing megabytes (go-redis' default is
	// 32 KiB each way).
	ro.ReadBufferSize, ro.WriteBufferSize = bufferSize, bufferSize
	ro.MaxRetries = -1
	ro.DialerRetries = 1 // a refused dial fails the call at once, not after 5 attempts
	ro.Protocol = 2      // pub/sub as plain replies, no client-side push machinery
	ro.DisableIdentity = true
}
