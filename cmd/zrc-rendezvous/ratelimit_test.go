package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/supervisor/redisstore/redistest"
)

// postStatus posts one message to box on s and returns the answer's
// status and headers.
func postStatus(t *testing.T, s *server, box int) (int, http.Header) {
	t.Helper()
	resp, err := http.Post(s.url+"/v1/mailbox/"+mailboxID(box), "application/octet-stream", strings.NewReader("m"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode, resp.Header
}

// One source spread over three nodes gets the budget of one: its bucket
// lives in Redis. When Redis stops answering, each node's own bucket
// decides, counted in a metric: neither every request refused nor every
// one let through.
func TestRedisSharedRateLimits(t *testing.T) {
	rs := redistest.Start(t)
	// 20 posts an hour: nothing refills while the test runs.
	limit := []string{"--rate-limit-posts-per-minute", "20", "--rate-limit-window-seconds", "3600"}
	nodes := []*server{startNode(t, rs, limit...), startNode(t, rs, limit...), startNode(t, rs, limit...)}
	counts := map[int]int{}
	for i := range 60 {
		code, h := postStatus(t, nodes[i%3], i%5)
		counts[code]++
		if code == http.StatusTooManyRequests && (h.Get("Retry-After") == "" || h.Get("RateLimit-Limit") != "20" || h.Get("RateLimit-Remaining") != "0") {
			t.Fatalf("429 headers %v; want Retry-After and RateLimit-Limit 20, RateLimit-Remaining 0", h)
		}
	}
	if counts[http.StatusAccepted] != 20 || counts[http.StatusTooManyRequests] != 40 {
		t.Fatalf("statuses %v over three nodes; want 20 accepted and 40 refused (one budget of 20)", counts)
	}

	// A node with the shared limits off counts alone.
	own := startNode(t, rs, append(limit, "--redis-shared-rate-limits=false")...)
	for i := range 20 {
		if code, _ := postStatus(t, own, i%5); code != http.StatusAccepted {
			t.Fatalf("post %d on a node with its own bucket: %d; want 202", i, code)
		}
	}

	rs.Stop()
	waitUntil(t, "the node to see Redis gone", func() bool { return health(t, nodes[0]).Status != "healthy" })
	counts = map[int]int{}
	for i := range 10 {
		code, _ := postStatus(t, nodes[0], i%5)
		counts[code]++
	}
	// Node 0's own bucket spent a token on each of its 20 requests above.
	if counts[http.StatusTooManyRequests] != 10 {
		t.Fatalf("statuses on node 0 with Redis down %v; want 10 refused by its own spent bucket", counts)
	}
	fresh := startNode(t, rs, limit...)
	counts = map[int]int{}
	for i := range 25 {
		code, _ := postStatus(t, fresh, i%5)
		counts[code]++
	}
	if counts[http.StatusServiceUnavailable] != 20 || counts[http.StatusTooManyRequests] != 5 {
		t.Fatalf("statuses on a new node with Redis down %v; want 20 admitted by its own bucket (then 503 store_unavailable) and 5 refused", counts)
	}
	for _, c := range []struct {
		s    *server
		want float64
	}{{nodes[0], 10}, {fresh, 25}, {nodes[1], 0}} {
		if n := metricValue(t, metricsText(t, c.s), "zrc_rendezvous_rate_limit_fallbacks_total"); n != c.want {
			t.Fatalf("fallbacks %v; want %v", n, c.want)
		}
	}
}

// waitUntil polls ok for up to 10 s.
func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
