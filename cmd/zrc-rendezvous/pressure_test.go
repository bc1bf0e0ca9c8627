package main

import (
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// Limits under hostile load, against the real process: more ids than
// max_mailboxes, more bytes than memory_limit_mb, and ten thousand
// long-polls whose clients leave at once.

// overloadedBody is the answer to a request that needs a mailbox or queue
// memory the server cannot find.
const overloadedBody = `{"error":"overloaded","message":"server is at its mailbox or memory limit"}`

// idN is the nth of a run of distinct mailbox ids.
func idN(n int) string { return fmt.Sprintf("%064x", n+1) }

// wantHealth checks /health's exact status and its "status" field.
func wantHealth(t *testing.T, s *server, code int, status string) {
	t.Helper()
	got, body := fetch(t, http.DefaultClient, s.url+"/health")
	if got != code || !strings.Contains(body, `"status":"`+status+`"`) {
		t.Fatalf("/health: %d %s; want %d with \"status\":%q", got, body, code, status)
	}
}

// TestProcessManyIDsAtMaxMailboxes (Z5, R6.5): thousands of distinct ids
// pass through 100 mailboxes, each emptied before the next, so each is
// reclaimable: every POST is accepted, every message delivered, /health
// healthy throughout. With all 100 busy — half holding a queued message,
// half a waiting long-poll (a mailbox that holds a message cannot also hold
// a waiter) — every request that needs a new mailbox is refused 503
// overloaded with Retry-After, /health says overloaded, and nothing queued
// or waiting is lost: the waiters are served what is posted next and the
// queued messages are delivered.
func TestProcessManyIDsAtMaxMailboxes(t *testing.T) {
	const maxMailboxes, distinct = 100, 2000
	s := startServer(t, nil, "--max-mailboxes", strconv.Itoa(maxMailboxes))
	for i := range distinct {
		body := fmt.Sprintf("message %d", i)
		postMessage(t, s.url, idN(i), body)
		if status, got := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+idN(i)+"?wait_ms=0"); status != http.StatusOK || got != body {
			t.Fatalf("GET id %d: %d %q; want 200 %q", i, status, got, body)
		}
		if i%500 == 499 {
			wantHealth(t, s, http.StatusOK, "healthy")
		}
	}
	if n := metricValue(t, metricsText(t, s), "zrc_rendezvous_active_mailboxes"); n > maxMailboxes {
		t.Fatalf("%v live mailboxes; want at most %d", n, maxMailboxes)
	}

	// All busy: ids distinct.. hold a message, the next half a waiter.
	const half = maxMailboxes / 2
	queued := func(i int) string { return idN(distinct + i) }
	waiting := func(i int) string { return idN(distinct + half + i) }
	for i := range half {
		postMessage(t, s.url, queued(i), fmt.Sprintf("queued %d", i))
	}
	type answer struct {
		status int
		body   string
	}
	answers := make([]chan answer, half)
	waiters := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: half}}
	for i := range half {
		answers[i] = make(chan answer, 1)
		go func() {
			resp, err := waiters.Get(s.url + "/v1/mailbox/" + waiting(i) + "?wait_ms=60000")
			if err != nil {
				answers[i] <- answer{-1, err.Error()}
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			answers[i] <- answer{resp.StatusCode, string(b)}
		}()
	}
	// The waiters arrive together, each needing a slot an idle mailbox of
	// the first part gives up: none may be refused while one is left.
	polltest.Until(t, "50 long-polls waiting", func() bool {
		for i := range half {
			select {
			case a := <-answers[i]:
				t.Fatalf("waiter %d answered before any message: %d %s", i, a.status, a.body)
			default:
			}
		}
		return metricValue(t, metricsText(t, s), "zrc_rendezvous_waiting_long_polls") == half
	})
	wantHealth(t, s, http.StatusServiceUnavailable, "overloaded")

	// A thousand requests for new ids, POSTs and waiting GETs, 8 at a time.
	const refused = 1000
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 8}}
	var wg sync.WaitGroup
	errs := make(chan string, refused)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < refused; i += 8 {
				url := s.url + "/v1/mailbox/" + idN(10*distinct+i)
				var resp *http.Response
				var err error
				if i%2 == 0 {
					resp, err = client.Post(url, "", strings.NewReader("refused"))
				} else {
					resp, err = client.Get(url + "?wait_ms=1000")
				}
				if err != nil {
					errs <- err.Error()
					continue
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusServiceUnavailable || string(b) != overloadedBody || resp.Header.Get("Retry-After") != "1" {
					errs <- fmt.Sprintf("request %d: %d Retry-After %q %s; want 503 Retry-After 1 %s",
						i, resp.StatusCode, resp.Header.Get("Retry-After"), b, overloadedBody)
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	for e := range errs {
		t.Error(e)
	}
	if t.Failed() {
		t.FailNow()
	}
	if n := metricValue(t, metricsText(t, s), `zrc_rendezvous_errors_total{code="overloaded"}`); n != refused {
		t.Errorf("errors_total{code=\"overloaded\"} = %v; want %d", n, refused)
	}
	wantHealth(t, s, http.StatusServiceUnavailable, "overloaded")

	// Release: the waiters get what is posted to them, the queued messages
	// are delivered, nothing refused was queued, and new ids are served.
	for i := range half {
		postMessage(t, s.url, waiting(i), fmt.Sprintf("wake %d", i))
	}
	for i := range half {
		want := answer{http.StatusOK, fmt.Sprintf("wake %d", i)}
		select {
		case got := <-answers[i]:
			if got != want {
				t.Fatalf("waiter %d: %d %q; want %d %q", i, got.status, got.body, want.status, want.body)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("waiter %d not answered 10 s after its message", i)
		}
		wantDelivered(t, s.url, queued(i), fmt.Sprintf("queued %d", i))
	}
	for i := 0; i < refused; i += 2 {
		if status, got := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+idN(10*distinct+i)+"?wait_ms=0"); status != http.StatusNoContent {
			t.Fatalf("GET a refused POST's id: %d %q; want 204", status, got)
		}
	}
	wantHealth(t, s, http.StatusOK, "healthy")
	postMessage(t, s.url, hostileID, "after")
	wantDelivered(t, s.url, hostileID, "after")
}

// TestProcessMemoryPressureEvictsOldest (R3.5, R3.6): bodies three times
// memory_limit_mb, posted in a known order across five mailboxes, are all
// accepted; what survives is exactly the newest messages server-wide that
// fit the limit — a suffix of the posting order, each mailbox's in FIFO
// order, byte for byte — and every message missing is counted evicted for
// memory.
func TestProcessMemoryPressureEvictsOldest(t *testing.T) {
	const limit, maxSize, mailboxes = 1 << 20, 65536, 5
	s := startServer(t, nil, "--memory-limit-mb", "1", "--max-message-size", strconv.Itoa(maxSize))
	type message struct {
		id   string
		body string
	}
	rng := rand.New(rand.NewPCG(7, 11))
	var posted []message
	for total := 0; total < 3*limit; {
		b := make([]byte, 1000+rng.IntN(maxSize-1000+1))
		for i := range b {
			b[i] = byte(rng.Uint32())
		}
		m := message{idN(len(posted) % mailboxes), string(b)}
		postMessage(t, s.url, m.id, m.body)
		posted = append(posted, m)
		total += len(b)
	}
	got := map[string][]string{}
	delivered := 0
	for m := range mailboxes {
		for {
			status, body := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+idN(m)+"?wait_ms=0")
			if status == http.StatusNoContent {
				break
			}
			if status != http.StatusOK {
				t.Fatalf("GET mailbox %d: %d %q; want 200 or 204", m, status, body)
			}
			got[idN(m)] = append(got[idN(m)], body)
			delivered++
		}
	}
	// The survivors must be posted[evicted:], mailbox by mailbox in order.
	evicted := len(posted) - delivered
	want := map[string][]string{}
	kept := 0
	for _, m := range posted[evicted:] {
		want[m.id] = append(want[m.id], m.body)
		kept += len(m.body)
	}
	for m := range mailboxes {
		id := idN(m)
		if len(got[id]) != len(want[id]) {
			t.Fatalf("mailbox %d delivered %d messages; the newest %d posted server-wide leave it %d",
				m, len(got[id]), delivered, len(want[id]))
		}
		for i := range want[id] {
			if got[id][i] != want[id][i] {
				t.Fatalf("mailbox %d, message %d of %d: not the body of the newest messages server-wide, in order", m, i+1, len(want[id]))
			}
		}
	}
	// No more evicted than the limit needed.
	if kept > limit || evicted == 0 || kept+len(posted[evicted-1].body) <= limit {
		t.Fatalf("%d of %d messages kept, %d bytes; want the most that fit %d bytes", delivered, len(posted), kept, limit)
	}
	if n := metricValue(t, metricsText(t, s), `zrc_rendezvous_messages_evicted_total{reason="memory"}`); n != float64(evicted) {
		t.Fatalf("messages_evicted_total{reason=\"memory\"} = %v; want %d, the messages missing", n, evicted)
	}
	t.Logf("%d messages of %d posted (%d bytes queued at the end) survived, %d evicted", delivered, len(posted), kept, evicted)
}

// TestProcessLongPollStormVanishes (Z2, R10): ten thousand long-polls on
// raw connections, whose clients all close at once, leave nothing behind:
// the waiting count returns to zero, goroutines to their level before,
// and the live heap too; a message posted before the storm and one after
// are both delivered.
//
// The storm comes twice, and the heap after the second is held to its
// level after the first: the Go runtime keeps the descriptor of every
// goroutine it ever ran (about 0.5 KiB each, never freed), so the first
// storm's 20,000 goroutines leave about 10 MiB that the second reuses.
// The heap is go_memstats_heap_alloc_bytes read after a sweep, which drops
// a mailbox's waiters whose clients left, and two garbage collections
// (traffic on another mailbox brings them on): the live heap plus what the
// traffic allocated since. Resident memory is not checked: the runtime
// hands freed pages back to the system only gradually (the background
// scavenger), and go_memstats_heap_inuse_bytes carries up to the governor's
// 8 MiB of garbage between collections.
func TestProcessLongPollStormVanishes(t *testing.T) {
	const polls, mailboxes = 10000, 100
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Fatal(err)
	}
	// The test holds polls descriptors and the server, which inherits the
	// limit, as many again; each raises its soft limit to the hard one.
	if lim.Max < polls+1000 {
		t.Skipf("RLIMIT_NOFILE hard limit %d; need %d for %d connections (raise it with ulimit -Hn)", lim.Max, polls+1000, polls)
	}
	if lim.Cur < lim.Max {
		lim.Cur = lim.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
			t.Fatal(err)
		}
	}
	// A mailbox drops the waiters whose clients left when it next parks
	// one or at the next sweep: the sweep comes every second here.
	s := startServer(t, nil, "--max-connections", strconv.Itoa(polls+100), "--eviction-interval-seconds", "1")
	addr := strings.TrimPrefix(s.url, "http://")

	// The mailboxes exist before the baseline, as they do after the storm.
	for m := range mailboxes {
		postMessage(t, s.url, idN(m), "warm")
		wantDelivered(t, s.url, idN(m), "warm")
	}
	postMessage(t, s.url, hostileID, "before")
	goroutines := metricValue(t, metricsText(t, s), "go_goroutines")
	const goroutineMargin = 20

	storm := func() {
		t.Helper()
		conns := make([]net.Conn, polls)
		defer func() {
			for _, c := range conns {
				if c != nil {
					c.Close()
				}
			}
		}()
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan error, 32)
		for w := range 32 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < polls; i += 32 {
					c, err := net.Dial("tcp", addr)
					if err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
					conns[i] = c
					if _, err := fmt.Fprintf(c, "GET /v1/mailbox/%s?wait_ms=60000 HTTP/1.1\r\nHost: x\r\n\r\n", idN(i%mailboxes)); err != nil {
						errs <- fmt.Errorf("connection %d: %w", i, err)
						return
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Fatal(err)
		}
		sent := time.Since(start)
		polltest.Until(t, "every long-poll of the storm waiting", func() bool {
			return metricValue(t, metricsText(t, s), "zrc_rendezvous_waiting_long_polls") == polls
		})
		t.Logf("%d long-polls sent in %v, all waiting %v after the first connected",
			polls, sent.Round(time.Millisecond), time.Since(start).Round(time.Millisecond))
		for i, c := range conns {
			c.Close()
			conns[i] = nil
		}
		closed := time.Now()
		polltest.Until(t, "the storm's waiters gone", func() bool {
			m := metricsText(t, s)
			return metricValue(t, m, "zrc_rendezvous_waiting_long_polls") == 0 &&
				metricValue(t, m, "go_goroutines") <= goroutines+goroutineMargin
		})
		t.Logf("none waiting and goroutines back within %d of %v, %v after the clients closed",
			goroutineMargin, goroutines, time.Since(closed).Round(time.Millisecond))
	}
	storm()
	heap := liveHeap(t, s, mailboxes)
	storm()
	// Two scrapes' and the traffic's allocations either side.
	const heapMargin = 2 << 20
	if got := liveHeap(t, s, mailboxes); got > heap+heapMargin {
		t.Fatalf("live heap %.1f MiB after the second storm; want at most %.1f MiB, its level after the first plus %d MiB",
			got/(1<<20), (heap+heapMargin)/(1<<20), heapMargin>>20)
	} else {
		t.Logf("live heap %.1f MiB after the first storm, %.1f MiB after the second", heap/(1<<20), got/(1<<20))
	}
	postMessage(t, s.url, hostileID, "after")
	for _, want := range []string{"before", "after"} {
		if status, got := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+hostileID+"?wait_ms=0"); status != http.StatusOK || got != want {
			t.Fatalf("GET: %d %q; want 200 %q", status, got, want)
		}
	}
	if status, got := fetch(t, http.DefaultClient, s.url+"/v1/mailbox/"+hostileID+"?wait_ms=0"); status != http.StatusNoContent {
		t.Fatalf("GET: %d %q; want 204", status, got)
	}
}

// liveHeap waits for two whole sweeps of the server's mailboxes (at least
// `mailboxes` of them) to have started, drives two garbage collections
// after them, and returns go_memstats_heap_alloc_bytes as it was then.
func liveHeap(t *testing.T, s *server, mailboxes int) float64 {
	t.Helper()
	const swept = "zrc_rendezvous_queue_depth_count"
	from := metricValue(t, metricsText(t, s), swept)
	polltest.Until(t, "two sweeps of every mailbox", func() bool { return metricValue(t, metricsText(t, s), swept) >= from+float64(2*(mailboxes+2)) })
	client := &http.Client{}
	gcs := metricValue(t, metricsText(t, s), "go_gc_duration_seconds_count")
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); stir(s, client) {
		m := metricsText(t, s)
		if metricValue(t, m, "go_gc_duration_seconds_count") >= gcs+2 {
			return metricValue(t, m, "go_memstats_heap_alloc_bytes")
		}
	}
	t.Fatal("no two garbage collections within 20 s of traffic")
	return 0
}
