package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// TestSoak runs the server in this process (run, as main does) for
// ZRC_SOAK (e.g. 60s; unset: skipped) under mixed load with small limits:
// posters and long-pollers over more ids than max_mailboxes, so mailboxes
// are reclaimed and reaped; bodies that pass memory_limit_mb, so the
// oldest messages are evicted; long-polls whose clients leave mid-wait;
// SIGHUP reloads and config file rewrites throughout. Then it drains every
// mailbox and checks that each accepted message (202) was delivered
// exactly once or counted as evicted by the server (Z2, R3.6), that the
// server logged no error, and that goroutines come back to their level
// before the load and, after shutdown, before the start.
//
// `task soak` runs it for minutes; CI runs it for 60 s under the race
// detector.
func TestSoak(t *testing.T) {
	spec := os.Getenv("ZRC_SOAK")
	if spec == "" {
		t.Skip("ZRC_SOAK unset (e.g. ZRC_SOAK=60s); task soak runs it")
	}
	length, err := time.ParseDuration(spec)
	if err != nil {
		t.Fatalf("ZRC_SOAK=%q: %v", spec, err)
	}

	// A SIGHUP must never kill the test process: this channel keeps it
	// caught before run starts listening for it, and after it stopped.
	hups := make(chan os.Signal, 1)
	signal.Notify(hups, syscall.SIGHUP)
	defer signal.Stop(hups)

	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "soak.toml")
	writeSoakConfig(t, cfgPath, 0)
	logs := &soakLog{ready: make(chan string, 1)}
	env := map[string]string{"GOGC": "100"} // no memory governor: it would outlive run
	args := []string{"--config", cfgPath, "--listen-addr", "127.0.0.1", "--listen-port", "0",
		"--max-mailboxes", "48", "--memory-limit-mb", "1", "--max-message-size", "16384",
		"--max-queue-length", "50", "--message-ttl-seconds", "30",
		"--idle-mailbox-timeout-seconds", "1", "--eviction-interval-seconds", "1",
		"--long-poll-max-ms", "2000", "--long-poll-default-ms", "1000", "--max-waiting-per-source", "1000000",
		"--shutdown-timeout-seconds", "5"}

	before := runtime.NumGoroutine()
	ctx, stop := context.WithCancel(context.Background())
	defer stop()
	runErr := make(chan error, 1)
	go func() { runErr <- run(ctx, args, func(k string) string { return env[k] }, io.Discard, logs) }()
	var base string
	select {
	case addr := <-logs.ready:
		base = "http://" + addr
	case err := <-runErr:
		t.Fatalf("run ended before ready: %v\n%s", err, logs.text())
	case <-time.After(10 * time.Second):
		t.Fatalf("not ready after 10s:\n%s", logs.text())
	}
	tr := &http.Transport{MaxIdleConnsPerHost: 64}
	client := &http.Client{Transport: tr}
	ledger := newSoakLedger()
	// Let run reach its signal loop and its idle goroutines start.
	time.Sleep(100 * time.Millisecond)
	idle := runtime.NumGoroutine()

	// 96 ids that carry messages (twice max_mailboxes) and 32 quiet ones
	// that only ever see long-polls whose clients leave.
	ids := make([]string, 96)
	quiet := make([]string, 32)
	for i := range ids {
		ids[i] = fmt.Sprintf("%064x", 0x5000+i)
	}
	for i := range quiet {
		quiet[i] = fmt.Sprintf("%064x", 0x9000+i)
	}

	var done atomic.Bool
	var wg sync.WaitGroup
	worker := func(pause time.Duration, f func(r *rand.Rand)) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
			for !done.Load() {
				f(r)
				time.Sleep(pause)
			}
		}()
	}
	var counts soakCounts
	for w := range 3 {
		n := 0
		worker(4*time.Millisecond, func(r *rand.Rand) {
			n++
			soakPost(t, client, base, ids[r.IntN(len(ids))], fmt.Sprintf("p%d-%d ", w, n), 64+r.IntN(12000), ledger, &counts)
		})
	}
	for range 4 {
		worker(time.Millisecond, func(r *rand.Rand) {
			soakGet(t, client, base, ids[r.IntN(len(ids))], r.IntN(1500), ledger, &counts)
		})
	}
	for range 2 {
		worker(10*time.Millisecond, func(r *rand.Rand) {
			if r.IntN(2) == 0 {
				soakLeave(t, base, ids[r.IntN(len(ids))], true, time.Duration(r.IntN(400))*time.Millisecond, ledger, &counts)
			} else {
				soakLeave(t, base, quiet[r.IntN(len(quiet))], false, time.Duration(r.IntN(400))*time.Millisecond, ledger, &counts)
			}
		})
	}
	reloads := 0
	for end := time.Now().Add(length); time.Now().Before(end); {
		time.Sleep(2 * time.Second)
		reloads++
		writeSoakConfig(t, cfgPath, reloads)
		if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
			t.Fatal(err)
		}
	}
	// No request is cut short: each worker finishes the one in flight.
	done.Store(true)
	wg.Wait()

	// Drain: whatever is still queued is delivered now.
	for _, id := range ids {
		for soakGet(t, client, base, id, 0, ledger, &counts) {
		}
	}
	m := soakMetrics(t, client, base)
	evicted := m[`zrc_rendezvous_messages_evicted_total{reason="ttl"}`] + m[`zrc_rendezvous_messages_evicted_total{reason="memory"}`]
	accepted, delivered, bad := ledger.result()
	t.Logf("%v: accepted %d, delivered %d, evicted %d (memory %d, ttl %d), lost %d, wrong deliveries %d; "+
		"refused posts %d, GETs that left %d (got a message anyway: %d), mailboxes reclaimed %d, reaped idle %d, SIGHUPs %d",
		length, accepted, delivered, evicted, m[`zrc_rendezvous_messages_evicted_total{reason="memory"}`],
		m[`zrc_rendezvous_messages_evicted_total{reason="ttl"}`], accepted-delivered-evicted, len(bad),
		counts.refused.Load(), counts.left.Load(), counts.leftGot.Load(),
		m[`zrc_rendezvous_mailboxes_reaped_total{reason="reclaimed"}`], m[`zrc_rendezvous_mailboxes_reaped_total{reason="idle"}`], reloads)
	if len(bad) != 0 || delivered+evicted != accepted {
		t.Errorf("lost %d, wrong deliveries %d (copies among them); want 0 and 0\n%s",
			accepted-delivered-evicted, len(bad), strings.Join(bad[:min(len(bad), 20)], "\n"))
	}
	if posted := m["zrc_rendezvous_messages_posted_total"]; posted != accepted {
		t.Errorf("server counted %d posts; the clients saw %d accepted", posted, accepted)
	}
	if m[`zrc_rendezvous_messages_evicted_total{reason="memory"}`] == 0 || counts.left.Load() == 0 ||
		m[`zrc_rendezvous_mailboxes_reaped_total{reason="reclaimed"}`]+m[`zrc_rendezvous_mailboxes_reaped_total{reason="idle"}`] == 0 {
		t.Errorf("the load missed a fault it is meant to cause: memory evictions, clients leaving, mailboxes reaped")
	}
	if resp, err := client.Get(base + "/health"); err != nil {
		t.Errorf("/health: %v", err)
	} else {
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		// Drained: whatever mailboxes are left are reclaimable (R6.5).
		if resp.StatusCode != 200 || !strings.Contains(string(b), `"busy_mailboxes":0,`) {
			t.Errorf("/health after the drain = %d %s; want 200 with no busy mailbox", resp.StatusCode, b)
		}
	}
	applied, errors := logs.result()
	if applied < reloads {
		t.Errorf("%d reloads applied for %d SIGHUPs; want every one", applied, reloads)
	}
	if len(errors) != 0 {
		t.Errorf("%d error lines in the server's log:\n%s", len(errors), strings.Join(errors, "\n"))
	}

	tr.CloseIdleConnections()
	soakGoroutines(t, "after the load, with the server idle", idle)
	stop()
	if err := <-runErr; err != nil {
		t.Fatalf("run: %v", err)
	}
	soakGoroutines(t, "after shutdown", before)
}

// writeSoakConfig writes the file the reloads read; n changes a live key
// (the POST rate, far above the load either way) so each reload applies
// something.
func writeSoakConfig(t *testing.T, path string, n int) {
	t.Helper()
	cfg := fmt.Sprintf("rate_limit_posts_per_minute = %d\nrate_limit_gets_per_minute = 100000000\n", 100000000+n%2)
	if err := os.WriteFile(path, []byte(cfg), 0o600); err != nil {
		t.Fatal(err)
	}
}

type soakCounts struct {
	refused, left, leftGot atomic.Int64
}

// soakLedger keeps every accepted message by mailbox and sequence, and
// every delivery.
type soakLedger struct {
	mu        sync.Mutex
	accepted  map[soakKey]soakBody
	delivered map[soakKey]soakBody
	bad       []string // deliveries that are copies or not well formed
}

type soakKey struct {
	id  string
	seq uint64
}

// soakBody is a body: tag (ending in a space) followed by 'x' up to size.
type soakBody struct {
	tag  string
	size int
}

func (b soakBody) String() string { return b.tag + strings.Repeat("x", b.size-len(b.tag)) }

func newSoakLedger() *soakLedger {
	return &soakLedger{accepted: map[soakKey]soakBody{}, delivered: map[soakKey]soakBody{}}
}

func (l *soakLedger) accept(k soakKey, b soakBody) {
	l.mu.Lock()
	l.accepted[k] = b
	l.mu.Unlock()
}

// deliver records a delivery. Its 202 may still be on the way to the
// poster, so the body is compared with the accepted one at the end.
func (l *soakLedger) deliver(k soakKey, body []byte) {
	tag, _, _ := strings.Cut(string(body), " ")
	b := soakBody{tag: tag + " ", size: len(body)}
	l.mu.Lock()
	defer l.mu.Unlock()
	if _, dup := l.delivered[k]; dup {
		l.bad = append(l.bad, fmt.Sprintf("%s/%d delivered twice", k.id[56:], k.seq))
	}
	if b.size < len(b.tag) || string(body) != b.String() {
		l.bad = append(l.bad, fmt.Sprintf("%s/%d delivered a body not sent: %q…", k.id[56:], k.seq, body[:min(len(body), 24)]))
	}
	l.delivered[k] = b
}

// result counts the accepted and delivered messages and the deliveries
// that are wrong: copies, bodies not sent, or never accepted.
func (l *soakLedger) result() (accepted, delivered int64, bad []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	bad = l.bad
	for k, got := range l.delivered {
		if want, ok := l.accepted[k]; !ok {
			bad = append(bad, fmt.Sprintf("%s/%d delivered, never accepted", k.id[56:], k.seq))
		} else if got != want {
			bad = append(bad, fmt.Sprintf("%s/%d delivered %+v; accepted %+v", k.id[56:], k.seq, got, want))
		}
	}
	return int64(len(l.accepted)), int64(len(l.delivered)), bad
}

func soakPost(t *testing.T, c *http.Client, base, id, tag string, size int, l *soakLedger, n *soakCounts) {
	b := soakBody{tag: tag, size: size}
	resp, err := c.Post(base+"/v1/mailbox/"+id, "application/octet-stream", strings.NewReader(b.String()))
	if err != nil {
		t.Errorf("POST: %v", err)
		return
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	switch resp.StatusCode {
	case http.StatusAccepted:
		seq, err := strconv.ParseUint(resp.Header.Get("X-Message-Sequence"), 10, 64)
		if err != nil {
			t.Errorf("202 without a sequence: %v", err)
			return
		}
		l.accept(soakKey{id, seq}, b)
	case http.StatusServiceUnavailable, http.StatusInsufficientStorage:
		n.refused.Add(1) // at max_mailboxes or the memory limit; a full queue
	default:
		t.Errorf("POST = %d", resp.StatusCode)
	}
}

// soakGet long-polls id for wait ms and reports whether it got a message.
func soakGet(t *testing.T, c *http.Client, base, id string, wait int, l *soakLedger, n *soakCounts) bool {
	resp, err := c.Get(fmt.Sprintf("%s/v1/mailbox/%s?wait_ms=%d", base, id, wait))
	if err != nil {
		t.Errorf("GET: %v", err)
		return false
	}
	return soakAnswer(t, resp, id, false, l, n)
}

// soakAnswer records what a GET got and reports whether it was a message.
// A GET whose client left may get anything but a message that is not
// counted.
func soakAnswer(t *testing.T, resp *http.Response, id string, left bool, l *soakLedger, n *soakCounts) bool {
	body, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	switch {
	case err != nil && left:
		return false
	case err != nil:
		t.Errorf("GET body: %v", err)
		return false
	case left && resp.StatusCode != http.StatusOK:
		return false
	}
	switch resp.StatusCode {
	case http.StatusOK:
		seq, err := strconv.ParseUint(resp.Header.Get("X-Message-Sequence"), 10, 64)
		if err != nil {
			t.Errorf("200 without a sequence: %v; header %v, body %q", err, resp.Header, body)
			return false
		}
		l.deliver(soakKey{id, seq}, body)
		return true
	case http.StatusNoContent:
	case http.StatusServiceUnavailable:
		n.refused.Add(1) // a new mailbox at max_mailboxes
	default:
		t.Errorf("GET = %d %s", resp.StatusCode, body)
	}
	return false
}

// soakLeave starts a long-poll and leaves after wait. A client that only
// half-closes still reads what the server sends: a message handed over as
// it left is then counted as delivered, so the ledger stays exact. One
// that closes outright waits on a quiet id, where no message can go astray.
func soakLeave(t *testing.T, base, id string, half bool, wait time.Duration, l *soakLedger, n *soakCounts) {
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		t.Errorf("dial: %v", err)
		return
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET /v1/mailbox/%s?wait_ms=2000 HTTP/1.1\r\nHost: soak\r\n\r\n", id)
	time.Sleep(wait)
	n.left.Add(1)
	if !half {
		return
	}
	conn.(*net.TCPConn).CloseWrite()
	conn.SetReadDeadline(time.Now().Add(10 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		return // the server saw the client leave and closed: nothing handed over
	}
	if soakAnswer(t, resp, id, true, l, n) {
		n.leftGot.Add(1)
	}
}

// soakMetrics scrapes /metrics into series → value.
func soakMetrics(t *testing.T, c *http.Client, base string) map[string]int64 {
	t.Helper()
	resp, err := c.Get(base + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	m := map[string]int64{}
	sc := bufio.NewScanner(resp.Body)
	for sc.Scan() {
		name, value, ok := strings.Cut(sc.Text(), " ")
		if !ok || strings.HasPrefix(name, "#") {
			continue
		}
		if v, err := strconv.ParseFloat(value, 64); err == nil {
			m[name] = int64(v)
		}
	}
	return m
}

// soakGoroutines waits up to 15 s for the goroutines to come down to want,
// and dumps them if they do not.
func soakGoroutines(t *testing.T, when string, want int) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for runtime.NumGoroutine() > want {
		if time.Now().After(deadline) {
			var b strings.Builder
			pprof.Lookup("goroutine").WriteTo(&b, 1)
			t.Fatalf("%s: %d goroutines; want at most %d\n%s", when, runtime.NumGoroutine(), want, b.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// soakLog is run's stderr: it passes on the address of the "ready" line,
// counts applied reloads and keeps the first lines and every error line.
type soakLog struct {
	mu      sync.Mutex
	first   []string
	errors  []string
	reloads int
	ready   chan string
}

func (l *soakLog) Write(p []byte) (int, error) {
	line := strings.TrimSpace(string(p))
	var ev struct{ Level, Msg, Addr string }
	json.Unmarshal(p, &ev)
	if ev.Msg == "ready" {
		l.ready <- ev.Addr
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.first) < 200 {
		l.first = append(l.first, line)
	}
	if ev.Level == "error" {
		l.errors = append(l.errors, line)
	}
	if ev.Msg == "reloaded config" {
		l.reloads++
	}
	return len(p), nil
}

func (l *soakLog) text() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return strings.Join(l.first, "\n")
}

// result is the number of applied reloads and the error lines.
func (l *soakLog) result() (reloads int, errors []string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.reloads, l.errors
}
