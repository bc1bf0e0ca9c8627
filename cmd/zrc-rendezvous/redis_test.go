package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// The Redis store (Z13) with real processes: several nodes on one
// redis-server that the test starts itself.

// startNode runs a server on rs with args after the store's flags.
func startNode(t *testing.T, rs *redistest.Server, args ...string) *server {
	t.Helper()
	return startRedisNode(t, rs.URL(), args...)
}

// startClusterNode runs a server on the Redis Cluster c.
func startClusterNode(t *testing.T, c *redistest.Cluster, args ...string) *server {
	t.Helper()
	return startRedisNode(t, c.URL(), append([]string{"--redis-mode", "cluster"}, args...)...)
}

func startRedisNode(t *testing.T, url string, args ...string) *server {
	t.Helper()
	return startServer(t, nil, append([]string{"--store", "redis", "--redis-url", url, "--redis-lease-ms", "1000"}, args...)...)
}

// mailboxID is the n-th test mailbox's 64-hex id.
func mailboxID(n int) string { return fmt.Sprintf("%064x", n+1) }

// Three nodes on one Redis: posters on A, long-pollers spread over B and
// C. Every message reaches exactly one GET, in its mailbox's order, and
// the queue cap holds under concurrent posts from all three nodes.
func TestRedisThreeNodes(t *testing.T) {
	rs := redistest.Start(t)
	checkThreeNodes(t, func() *server { return startNode(t, rs) })
}

// The same on a Redis Cluster of three masters: the 100 mailboxes spread
// over all three shards.
func TestRedisClusterThreeNodes(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	checkThreeNodes(t, func() *server { return startClusterNode(t, rc) })
}

func checkThreeNodes(t *testing.T, start func() *server) {
	a, b, c := start(), start(), start()
	const boxes, perBox = 100, 100
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()

	type got struct {
		box  int
		seq  uint64
		body string
	}
	received := make(chan got, boxes*perBox*2)
	var pollers sync.WaitGroup
	for box := range boxes {
		node := b
		if box%2 == 1 {
			node = c
		}
		pollers.Add(1)
		go func() {
			defer pollers.Done()
			cl := newClient(node.url)
			for n := 0; n < perBox; {
				msg, ok, err := cl.Get(ctx, mailboxID(box), 5*time.Second)
				if err != nil {
					t.Errorf("GET box %d: %v", box, err)
					return
				}
				if ok {
					received <- got{box, msg.Sequence, string(msg.Body)}
					n++
				}
			}
		}()
	}
	var posters sync.WaitGroup
	for box := range boxes {
		posters.Add(1)
		go func() {
			defer posters.Done()
			cl := newClient(a.url)
			for i := range perBox {
				if _, err := cl.Post(ctx, mailboxID(box), []byte(fmt.Sprintf("%d/%d", box, i))); err != nil {
					t.Errorf("POST box %d #%d: %v", box, i, err)
					return
				}
			}
		}()
	}
	posters.Wait()
	pollers.Wait()
	close(received)
	next := make([]int, boxes)
	last := make([]uint64, boxes)
	total := 0
	for g := range received {
		total++
		want := fmt.Sprintf("%d/%d", g.box, next[g.box])
		if g.body != want || g.seq <= last[g.box] {
			t.Fatalf("box %d: got %q seq %d after seq %d; want %q (lost, duplicated or out of order)", g.box, g.body, g.seq, last[g.box], want)
		}
		next[g.box]++
		last[g.box] = g.seq
	}
	if total != boxes*perBox {
		t.Fatalf("delivered %d; want %d", total, boxes*perBox)
	}
	// Nothing left over, on any node.
	if msg, ok, err := newClient(c.url).Get(ctx, mailboxID(0), 0); ok || err != nil {
		t.Fatalf("after the run: %q %v %v; want nothing", msg.Body, ok, err)
	}
	// A GET that does not wait, on a node that never saw the mailbox,
	// still gets what another node took in.
	if _, err := newClient(a.url).Post(ctx, mailboxID(boxes+1), []byte("elsewhere")); err != nil {
		t.Fatal(err)
	}
	if msg, ok, err := newClient(c.url).Get(ctx, mailboxID(boxes+1), 0); !ok || err != nil || string(msg.Body) != "elsewhere" {
		t.Fatalf("GET wait_ms=0 on another node: %q %v %v; want the message", msg.Body, ok, err)
	}

	// The cap (max_queue_length 100) across nodes: 300 concurrent posts
	// to one mailbox, 100 from each node, and exactly 100 accepted.
	var accepted sync.WaitGroup
	var mu sync.Mutex
	counts := map[int]int{}
	for _, node := range []*server{a, b, c} {
		for i := range 100 {
			accepted.Add(1)
			go func() {
				defer accepted.Done()
				_, err := newClient(node.url).Post(ctx, mailboxID(boxes), []byte(strconv.Itoa(i)))
				status := http.StatusAccepted
				var ce *client.Error
				if errors.As(err, &ce) {
					status = ce.Status
				} else if err != nil {
					t.Error(err)
				}
				mu.Lock()
				counts[status]++
				mu.Unlock()
			}()
		}
	}
	accepted.Wait()
	if counts[http.StatusAccepted] != 100 || counts[http.StatusInsufficientStorage] != 200 {
		t.Fatalf("concurrent posts over the cap: %v; want 100 × 202 and 200 × 507", counts)
	}
}

// A node killed (SIGKILL) while it holds taken messages loses none: each
// comes back after its lease and is delivered by another node, counted
// as a redelivery.
func TestRedisNodeKilledHoldingMessages(t *testing.T) {
	rs := redistest.Start(t)
	const size = 8 << 20 // past what the kernel buffers on loopback
	args := []string{"--max-message-size", strconv.Itoa(size), "--memory-limit-mb", "256"}
	dying, survivor := startNode(t, rs, args...), startNode(t, rs, args...)
	const boxes = 3

	// Long-polls on the dying node whose clients never read: the node
	// takes each message and then blocks writing it, before it can
	// acknowledge.
	host := strings.TrimPrefix(dying.url, "http://")
	for box := range boxes {
		d := net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
			var err error
			rc.Control(func(fd uintptr) { err = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
			return err
		}}
		conn, err := d.Dial("tcp", host)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { conn.Close() })
		fmt.Fprintf(conn, "GET /v1/mailbox/%s?wait_ms=30000 HTTP/1.1\r\nHost: x\r\n\r\n", mailboxID(box))
	}
	polltest.Until(t, "the long-polls to park on the dying node", func() bool {
		h, _ := newClient(dying.url).Health(context.Background())
		return h.WaitingLongPolls == boxes
	})

	ctx := context.Background()
	bodies := make([][]byte, boxes)
	seqs := make([]uint64, boxes)
	post := newClient(survivor.url, client.WithMaxMessageSize(size))
	for box := range boxes {
		bodies[box] = bytes.Repeat([]byte{byte('a' + box)}, size)
		r, err := post.Post(ctx, mailboxID(box), bodies[box])
		if err != nil {
			t.Fatal(err)
		}
		seqs[box] = r.Sequence
		// And one small message behind it, which must stay behind it.
		if _, err := post.Post(ctx, mailboxID(box), []byte("after")); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Until(t, "the dying node to take every big message", func() bool {
		for box := range boxes {
			if rs.Do(t, "ZCARD", "zrc:{"+mailboxID(box)+"}:l") != "1" {
				return false
			}
		}
		return true
	})
	if err := dying.cmd.Process.Kill(); err != nil {
		t.Fatal(err)
	}
	<-dying.done
	// Until its lease runs out a taken message is invisible, and the one
	// behind it may be delivered first: the GETs come after the leases.
	const due = `local t = redis.call('TIME')
return redis.call('ZCOUNT', KEYS[1], '-inf', t[1] * 1000000 + t[2])`
	polltest.Until(t, "the dead node's leases to run out", func() bool {
		for box := range boxes {
			if rs.Do(t, "EVAL", due, "1", "zrc:{"+mailboxID(box)+"}:l") != "1" {
				return false
			}
		}
		return true
	})

	get := newClient(survivor.url, client.WithMaxMessageSize(size))
	for box := range boxes {
		msg, ok, err := get.Get(ctx, mailboxID(box), 10*time.Second)
		if err != nil || !ok || msg.Sequence != seqs[box] || !bytes.Equal(msg.Body, bodies[box]) {
			t.Fatalf("box %d after the kill: ok=%v err=%v seq %d len %d; want seq %d, the %d-byte message", box, ok, err, msg.Sequence, len(msg.Body), seqs[box], size)
		}
		msg, ok, err = get.Get(ctx, mailboxID(box), time.Second)
		if err != nil || !ok || string(msg.Body) != "after" {
			t.Fatalf("box %d, the message behind: %q ok=%v err=%v; want \"after\"", box, msg.Body, ok, err)
		}
	}
	if n := metricValue(t, metricsText(t, survivor), "zrc_rendezvous_store_lease_redeliveries_total"); n != boxes {
		t.Fatalf("lease redeliveries counted: %v; want %d", n, boxes)
	}
}

// Redis restarted mid-run: 503 store_unavailable while it is away, with
// no goroutine growth; recovery within seconds; nothing accepted lost
// (AOF on); a GET waiting across the restart is served after it.
func TestRedisRestartWithPersistence(t *testing.T) {
	rs := redistest.Start(t, "--appendonly", "yes", "--appendfsync", "always")
	node := startNode(t, rs)
	ctx := context.Background()
	cl := newClient(node.url)
	const n = 20
	for i := range n {
		if _, err := cl.Post(ctx, mailboxID(0), []byte(strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	epoch := health(t, node).Epoch
	waiting := make(chan client.Message, 1)
	go func() {
		msg, ok, err := cl.Get(ctx, mailboxID(1), 30*time.Second)
		if err != nil || !ok {
			t.Errorf("the GET waiting across the restart: ok=%v err=%v", ok, err)
		}
		waiting <- msg
	}()
	// Parked: its mailbox is subscribed, and the take after the
	// subscription (a moment later) found nothing.
	polltest.Until(t, "the GET to wait", func() bool {
		return metricValue(t, metricsText(t, node), "zrc_rendezvous_store_subscriptions") == 1
	})
	time.Sleep(50 * time.Millisecond)

	rs.Stop()
	polltest.Until(t, "/health to say store_unavailable", func() bool { return health(t, node).Status == "store_unavailable" })
	before := metricValue(t, metricsText(t, node), "go_goroutines")
	for range 200 {
		_, err := cl.Post(ctx, mailboxID(2), []byte("x"))
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.Code != "store_unavailable" || ce.RetryAfter != time.Second {
			t.Fatalf("POST while Redis is away: %v; want 503 store_unavailable, Retry-After 1", err)
		}
	}
	if after := metricValue(t, metricsText(t, node), "go_goroutines"); after > before+5 {
		t.Fatalf("goroutines grew from %v to %v while Redis was away", before, after)
	}

	rs.Restart(t)
	polltest.Until(t, "/health to recover", func() bool { return health(t, node).Status == "healthy" })
	if _, err := cl.Post(ctx, mailboxID(1), []byte("after the restart")); err != nil {
		t.Fatal(err)
	}
	if msg := <-waiting; string(msg.Body) != "after the restart" {
		t.Fatalf("the waiting GET got %q", msg.Body)
	}
	for i := range n {
		msg, ok, err := cl.Get(ctx, mailboxID(0), 0)
		if err != nil || !ok || string(msg.Body) != strconv.Itoa(i) {
			t.Fatalf("message %d after the restart: %q ok=%v err=%v", i, msg.Body, ok, err)
		}
	}
	if e := health(t, node).Epoch; e != epoch {
		t.Fatalf("epoch %q after a restart that kept the data; want %q", e, epoch)
	}
}

// Without persistence a restarted Redis has lost its data: the epoch
// changes, and sequences still rise.
func TestRedisRestartWithoutPersistence(t *testing.T) {
	rs := redistest.Start(t)
	node := startNode(t, rs)
	ctx := context.Background()
	cl := newClient(node.url)
	r, err := cl.Post(ctx, mailboxID(0), []byte("lost"))
	if err != nil {
		t.Fatal(err)
	}
	epoch := health(t, node).Epoch
	rs.Restart(t)
	polltest.Until(t, "a new epoch", func() bool { e := health(t, node).Epoch; return e != "" && e != epoch })
	r2, err := cl.Post(ctx, mailboxID(0), []byte("new"))
	if err != nil {
		t.Fatal(err)
	}
	if r2.Sequence <= r.Sequence {
		t.Fatalf("sequence %d after Redis lost its data; want above %d", r2.Sequence, r.Sequence)
	}
}

// A node starts before its Redis: /health says store_unavailable until
// Redis answers, then it serves.
func TestRedisNodeStartsBeforeRedis(t *testing.T) {
	rs := redistest.Start(t)
	rs.Stop()
	node := startNode(t, rs)
	if h := health(t, node); h.Status != "store_unavailable" {
		t.Fatalf("/health before Redis: %q; want store_unavailable", h.Status)
	}
	rs.Restart(t)
	polltest.Until(t, "the node to reach Redis", func() bool { return health(t, node).Status == "healthy" })
	if _, err := newClient(node.url).Post(context.Background(), mailboxID(0), []byte("x")); err != nil {
		t.Fatal(err)
	}
}

// A Redis that may evict keys (drop queued messages) is refused: exit 2
// naming the policy, unless redis_require_noeviction is off.
func TestRedisEvictingPolicyRefused(t *testing.T) {
	rs := redistest.Start(t, "--maxmemory-policy", "allkeys-lru")
	out, code := runBinary(t, "--store", "redis", "--redis-url", rs.URL(), "--listen-port", "0")
	if code != 2 || !strings.Contains(out, `allkeys-lru`) || !strings.Contains(out, "noeviction") {
		t.Fatalf("exit %d, output:\n%s\nwant exit 2 naming allkeys-lru and noeviction", code, out)
	}
	node := startNode(t, rs, "--redis-require-noeviction=false")
	if !strings.Contains(node.log(), "allkeys-lru") {
		t.Fatalf("no warning naming the policy:\n%s", node.log())
	}
}

// newClient makes requests once: these tests count every answer.
func newClient(url string, opts ...client.Option) *client.Client {
	return client.New(url, append([]client.Option{client.WithRetry(client.NoRetry)}, opts...)...)
}

func health(t *testing.T, s *server) client.Health {
	t.Helper()
	h, _ := newClient(s.url).Health(context.Background())
	return h
}

// runBinary runs the server with args to its end and returns its output
// and exit status.
func runBinary(t *testing.T, args ...string) (string, int) {
	t.Helper()
	out, err := exec.Command(binary, args...).CombinedOutput()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return string(out), 0
	case errors.As(err, &ee):
		return string(out), ee.ExitCode()
	}
	t.Fatal(err)
	return "", -1
}

// A node's Redis connections are bounded whatever the number of waiting
// GETs: the pool and the pub/sub connections, never one per long-poll.
func TestRedisConnectionsBoundedByWaitingGETs(t *testing.T) {
	rs := redistest.Start(t)
	node := startNode(t, rs, "--max-connections", "5000")
	baseClients := redisClients(t, rs)
	cancel := parkPolls(t, node, 1000)
	defer cancel()
	// The pool's cap is 128, plus 2 pub/sub connections; this test's own
	// connection is counted too.
	if n, limit := redisClients(t, rs), 128+2+1; n > limit {
		t.Fatalf("%d Redis connections with 1,000 waiting GETs (%d before); want at most %d", n, baseClients, limit)
	}
	if subs := metricValue(t, metricsText(t, node), "zrc_rendezvous_store_subscriptions"); subs != 1000 {
		t.Fatalf("subscriptions %v; want 1000 (one per mailbox with a waiter)", subs)
	}
}

// redisClients counts the connections Redis holds (CLIENT LIST), this
// one included.
// On a Cluster: to each master, the pool (capped at 128) and one sharded
// pub/sub connection carrying all of that master's waiting mailboxes.
func TestRedisClusterConnectionsBoundedByWaitingGETs(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	node := startClusterNode(t, rc, "--max-connections", "5000")
	cancel := parkPolls(t, node, 1000)
	defer cancel()
	for _, m := range rc.Masters {
		list := m.Do(t, "CLIENT", "LIST")
		// This test's own connection is counted too.
		if n, limit := strings.Count(list, "\n"), 128+1+1; n > limit {
			t.Fatalf("%d connections to master %s with 1,000 waiting GETs; want at most %d", n, m.Addr(), limit)
		}
		t.Logf("master %s: %d connections", m.Addr(), strings.Count(list, "\n")-1)
		if n := strings.Count(list, " ssub=") - strings.Count(list, " ssub=0 "); n != 1 {
			t.Fatalf("%d sharded pub/sub connections to master %s; want 1:\n%s", n, m.Addr(), list)
		}
	}
	if subs := metricValue(t, metricsText(t, node), "zrc_rendezvous_store_subscriptions"); subs != 1000 {
		t.Fatalf("subscriptions %v; want 1000 (one per mailbox with a waiter)", subs)
	}
}

func redisClients(t *testing.T, rs *redistest.Server) int {
	return strings.Count(rs.Do(t, "CLIENT", "LIST"), "\n")
}

// TestMeasureRedisFootprint is the measurement behind docs/performance.md's
// resident memory per waiting long-poll on a Redis node against the
// memory store (not a pass/fail test). Run it with
//
//	ZRC_MEASURE=1 go test -run TestMeasureRedisFootprint -v ./cmd/zrc-rendezvous/
func TestMeasureRedisFootprint(t *testing.T) {
	if os.Getenv("ZRC_MEASURE") == "" {
		t.Skip("set ZRC_MEASURE=1")
	}
	const rounds, n = 3, 10000
	rs := redistest.Start(t)
	per := map[bool][]float64{}
	for range rounds {
		for _, redis := range []bool{false, true} {
			args := []string{"--max-connections", "30000", "--max-mailboxes", "30000"}
			if redis {
				args = append(args, "--store", "redis", "--redis-url", rs.URL())
			}
			s := startServer(t, []string{"GOGC=", "GOMEMLIMIT="}, args...)
			metricsText(t, s)
			before, err := residentBytes(s.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			cancel := parkPolls(t, s, n)
			after, err := residentBytes(s.cmd.Process.Pid)
			if err != nil {
				t.Fatal(err)
			}
			per[redis] = append(per[redis], float64(after-before)/n)
			cancel()
			s.cmd.Process.Kill()
			s.cmd.Wait()
		}
	}
	median := func(v []float64) float64 { sort.Float64s(v); return v[len(v)/2] }
	m, r := median(per[false]), median(per[true])
	t.Logf("waiting long-polls, %d: memory store %.2f KiB, Redis store %.2f KiB each (rounds %v / %v): ratio %.2f",
		n, m/1024, r/1024, per[false], per[true], r/m)
}

// The Redis password never appears in logs, at any level, nor in
// --check-config's output, even when Redis refuses it.
func TestRedisPasswordNeverShown(t *testing.T) {
	const password = "pw-4c6f6e67-s3cret"
	rs := redistest.Start(t, "--requirepass", password)
	url := strings.Replace(rs.URL(), "redis://", "redis://:"+password+"@", 1)
	node := startServer(t, nil, "--store", "redis", "--redis-url", url, "--log-level", "debug")
	if _, err := newClient(node.url).Post(context.Background(), mailboxID(0), []byte("x")); err != nil {
		t.Fatal(err)
	}
	wrong := strings.Replace(rs.URL(), "redis://", "redis://:"+password+"-wrong@", 1)
	refused := startServer(t, nil, "--store", "redis", "--redis-url", wrong, "--log-level", "debug")
	if h := health(t, refused); h.Status != "store_unavailable" {
		t.Fatalf("/health with a wrong password: %q; want store_unavailable", h.Status)
	}
	out, code := runBinary(t, "--check-config", "--store", "redis", "--redis-url", url)
	if code != 0 {
		t.Fatalf("--check-config: exit %d\n%s", code, out)
	}
	node.stop(t)
	refused.stop(t)
	for what, text := range map[string]string{"the node's log": node.log(), "the refused node's log": refused.log(), "--check-config": out} {
		if strings.Contains(text, password) {
			t.Fatalf("%s shows the Redis password:\n%s", what, text)
		}
	}
	if !strings.Contains(out, "redis_url = 'redis://:<redacted>@") {
		t.Fatalf("--check-config does not show the redacted URL:\n%s", out)
	}
}

// redis_wait_replicas: a POST answers 202 only once WAIT confirms that
// many replicas hold it, else 503 store_unavailable.
func TestRedisWaitReplicas(t *testing.T) {
	primary := redistest.Start(t)
	replica := redistest.Start(t, "--replicaof", "127.0.0.1", strings.TrimPrefix(primary.Addr(), "127.0.0.1:"))
	polltest.Until(t, "the replica to be in sync", func() bool {
		return strings.Contains(replica.Do(t, "INFO", "replication"), "master_link_status:up")
	})
	node := startNode(t, primary, "--redis-wait-replicas", "1", "--redis-timeout-ms", "500")
	cl := newClient(node.url)
	ctx := context.Background()
	r, err := cl.Post(ctx, mailboxID(0), []byte("held by a replica"))
	if err != nil {
		t.Fatalf("POST with the replica up: %v", err)
	}
	if got := replica.Do(t, "LLEN", "zrc:{"+mailboxID(0)+"}:q"); got != "1" {
		t.Fatalf("the replica holds %s messages after the 202; want 1", got)
	}
	replica.Stop()
	_, err = cl.Post(ctx, mailboxID(0), []byte("not held"))
	var ce *client.Error
	if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.Code != "store_unavailable" {
		t.Fatalf("POST without the replica: %v; want 503 store_unavailable", err)
	}
	if msg, ok, err := cl.Get(ctx, mailboxID(0), 0); err != nil || !ok || msg.Sequence != r.Sequence {
		t.Fatalf("GET: seq %d ok=%v err=%v; want the first message, %d", msg.Sequence, ok, err, r.Sequence)
	}
}

// redis_mode = "sentinel": a master, replicas and three sentinels. The
// master is killed; the node answers 503 store_unavailable meanwhile,
// serves again by itself once a sentinel promoted a replica, and
// delivers every message posted after the failover. Redis replicates
// asynchronously, so messages acknowledged just before the failover may
// be lost: the test reports how many. With redis_wait_replicas = 1 (and
// a second replica, so that the new master has one to wait for) none is.
func TestRedisSentinelFailover(t *testing.T) {
	t.Run("asynchronous", func(t *testing.T) { sentinelFailover(t, 1, 0) })
	t.Run("wait for a replica", func(t *testing.T) { sentinelFailover(t, 2, 1) })
}

func sentinelFailover(t *testing.T, replicas, waitReplicas int) {
	master := redistest.Start(t)
	for range replicas {
		replica := redistest.Start(t, "--replicaof", "127.0.0.1", strings.TrimPrefix(master.Addr(), "127.0.0.1:"))
		polltest.Until(t, "the replica to be in sync", func() bool {
			return strings.Contains(replica.Do(t, "INFO", "replication"), "master_link_status:up")
		})
	}
	var sentinels []*redistest.Server
	for range 3 {
		sentinels = append(sentinels, redistest.StartSentinel(t, "zrcmaster", master.Addr(), 2))
	}
	url := "redis://" + sentinels[0].Addr() + "/0?addr=" + sentinels[1].Addr() + "&addr=" + sentinels[2].Addr()
	node := startServer(t, nil, "--store", "redis", "--redis-mode", "sentinel", "--redis-master-name", "zrcmaster",
		"--redis-url", url, "--redis-lease-ms", "1000", "--redis-wait-replicas", strconv.Itoa(waitReplicas))
	cl := newClient(node.url)
	ctx := context.Background()
	const n = 20
	for i := range n {
		if _, err := cl.Post(ctx, mailboxID(0), []byte("before "+strconv.Itoa(i))); err != nil {
			t.Fatalf("POST before the failover: %v", err)
		}
	}
	goroutines := metricValue(t, metricsText(t, node), "go_goroutines")

	master.Kill()
	refused := postThroughFailover(t, cl, mailboxID(1), "probe")
	t.Logf("%d POSTs answered 503 store_unavailable during the failover", refused)
	for i := range n {
		if _, err := cl.Post(ctx, mailboxID(0), []byte("after "+strconv.Itoa(i))); err != nil {
			t.Fatalf("POST after the failover: %v", err)
		}
	}
	before, after := 0, 0
	for {
		msg, ok, err := cl.Get(ctx, mailboxID(0), 0)
		if err != nil {
			t.Fatal(err)
		}
		if !ok {
			break
		}
		if body := string(msg.Body); strings.HasPrefix(body, "after ") {
			if want := "after " + strconv.Itoa(after); body != want {
				t.Fatalf("got %q; want %q", body, want)
			}
			after++
		} else {
			before++
		}
	}
	if after != n {
		t.Fatalf("%d of the %d messages posted after the failover delivered", after, n)
	}
	t.Logf("acknowledged before the failover: %d of %d delivered after it, %d lost", before, n, n-before)
	if waitReplicas > 0 && before != n {
		t.Fatalf("%d acknowledged messages lost with redis_wait_replicas = %d", n-before, waitReplicas)
	}
	if g := metricValue(t, metricsText(t, node), "go_goroutines"); g > goroutines+10 {
		t.Fatalf("goroutines grew from %v to %v across the failover", goroutines, g)
	}
}

// A mailbox's slot moves to another Cluster master while a GET waits on
// it: the node follows the slot (its sharded subscription moves to the
// new master) and the waiting GET gets the message posted after the move.
func TestRedisClusterSlotMoveWhileWaiting(t *testing.T) {
	rc := redistest.StartCluster(t, 3)
	a, b := startClusterNode(t, rc), startClusterNode(t, rc)
	box := mailboxID(7)
	channel := "zrc:{" + box + "}:w"
	slot := rc.Slot(t, channel)
	from := rc.SlotOwner(t, slot)
	to := rc.Masters[0]
	if to == from {
		to = rc.Masters[1]
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// One message through first, so that the slot has the mailbox's keys
	// to migrate.
	if _, err := newClient(a.url).Post(ctx, box, []byte("before")); err != nil {
		t.Fatal(err)
	}
	if msg, ok, err := newClient(b.url).Get(ctx, box, 0); !ok || err != nil || string(msg.Body) != "before" {
		t.Fatalf("GET before the move: %q %v %v", msg.Body, ok, err)
	}
	got := startGET(ctx, b, box, 20*time.Second)
	waitUntil(t, "node B to subscribe on the slot's master", func() bool { return shardSubscribers(t, from, channel) == 1 })

	rc.MoveSlot(t, slot, to)
	waitUntil(t, "node B to subscribe on the slot's new master", func() bool { return shardSubscribers(t, to, channel) == 1 })
	if n := shardSubscribers(t, from, channel); n != 0 {
		t.Fatalf("%d subscribers left on the slot's old master; want 0", n)
	}
	// One move, or more when the slots first read were older than it.
	if n := metricValue(t, metricsText(t, b), "zrc_rendezvous_store_subscriptions_moved_total"); n < 1 {
		t.Fatalf("zrc_rendezvous_store_subscriptions_moved_total %v; want at least 1", n)
	}
	select {
	case r := <-got:
		t.Fatalf("the waiting GET ended before the post: %+v", r)
	default:
	}
	posted := time.Now()
	if _, err := newClient(a.url).Post(ctx, box, []byte("after")); err != nil {
		t.Fatal(err)
	}
	r := <-got
	if r.err != nil || !r.ok || r.body != "after" {
		t.Fatalf("the waiting GET: %+v; want the message posted after the move", r)
	}
	// The wake-up came through the new master, not the 5 s backstop.
	if d := time.Since(posted); d > 2*time.Second {
		t.Fatalf("delivered %v after the post; want well under the recheck interval", d)
	}
}

// postThroughFailover posts body to box every 100 ms until it is
// accepted, within 60 s, and returns how many POSTs were refused before:
// each must be 503 store_unavailable.
func postThroughFailover(t *testing.T, cl *client.Client, box, body string) int {
	t.Helper()
	refused := 0
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(100 * time.Millisecond) {
		_, err := cl.Post(context.Background(), box, []byte(body))
		if err == nil {
			return refused
		}
		var ce *client.Error
		if !errors.As(err, &ce) || ce.Status != http.StatusServiceUnavailable || ce.Code != "store_unavailable" {
			t.Fatalf("POST during the failover: %v; want 503 store_unavailable", err)
		}
		refused++
		if time.Now().After(deadline) {
			t.Fatalf("no POST accepted within 60 s of the master's death (%d refused)", refused)
		}
	}
}

// getResult is what one GET answered.
type getResult struct {
	body string
	ok   bool
	err  error
}

// startGET sends a GET waiting up to wait to node in the background; its
// answer comes on the channel.
func startGET(ctx context.Context, node *server, box string, wait time.Duration) <-chan getResult {
	got := make(chan getResult, 1)
	go func() {
		msg, ok, err := newClient(node.url).Get(ctx, box, wait)
		got <- getResult{string(msg.Body), ok, err}
	}()
	return got
}

// shardSubscribers is how many clients of m subscribe channel (sharded).
func shardSubscribers(t *testing.T, m *redistest.Server, channel string) int {
	t.Helper()
	r := strings.Split(m.Do(t, "PUBSUB", "SHARDNUMSUB", channel), "\n")
	n, err := strconv.Atoi(r[len(r)-1])
	if err != nil {
		t.Fatalf("PUBSUB SHARDNUMSUB on %s: %q", m.Addr(), r)
	}
	return n
}

// A Cluster master dies while a GET waits on one of its mailboxes: its
// replica takes over, the node's sharded subscription follows it, and the
// waiting GET gets the message posted after the failover. Meanwhile the
// mailbox's POSTs answer 503 store_unavailable, and nothing crashes.
func TestRedisClusterFailoverWhileWaiting(t *testing.T) {
	rc := redistest.StartClusterWithReplicas(t, 3)
	a, b := startClusterNode(t, rc), startClusterNode(t, rc)
	box := mailboxID(3)
	channel := "zrc:{" + box + "}:w"
	slot := rc.Slot(t, channel)
	master := rc.SlotOwner(t, slot)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	got := startGET(ctx, b, box, 60*time.Second)
	waitUntil(t, "node B to subscribe on the slot's master", func() bool { return shardSubscribers(t, master, channel) == 1 })
	goroutines := metricValue(t, metricsText(t, b), "go_goroutines")

	master.Kill()
	refused := postThroughFailover(t, newClient(a.url), box, "after the failover")
	t.Logf("%d POSTs answered 503 store_unavailable during the failover", refused)
	r := <-got
	if r.err != nil || !r.ok || r.body != "after the failover" {
		t.Fatalf("the waiting GET: %+v; want the message posted after the failover", r)
	}
	promoted := rc.SlotOwner(t, slot)
	if promoted == master {
		t.Fatal("the dead master still owns the slot")
	}
	// The watch stays until the reaper's next sweep: on the new master.
	if n := shardSubscribers(t, promoted, channel); n != 1 {
		t.Fatalf("%d subscribers on the promoted master; want node B's", n)
	}
	for _, node := range []*server{a, b} {
		waitUntil(t, "the node's /health to say healthy again", func() bool { return health(t, node).Status == "healthy" })
	}
	if g := metricValue(t, metricsText(t, b), "go_goroutines"); g > goroutines+10 {
		t.Fatalf("goroutines grew from %v to %v across the failover", goroutines, g)
	}
}
