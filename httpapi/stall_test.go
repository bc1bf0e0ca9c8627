package httpapi

import (
	"bytes"
	"io"
	"net"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"syscall"
	"testing"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// TestStalledPostsHoldLittle (R1.4): a POST that declares a 64 KiB body
// and sends none of it holds a small first buffer, not 64 KiB, for as long
// as its body may take. 1,000 such requests, their connections open and
// their handlers parked in the body's read, hold under 8 MiB of heap more
// than 1,000 that declare a 1-byte body: what the declared length costs.
// (Both hold net/http's own buffers, about 14 KiB a connection, which no
// handler can shed; the test logs the totals.)
func TestStalledPostsHoldLittle(t *testing.T) {
	if testing.Short() {
		t.Skip("opens 1,000 connections")
	}
	const (
		stalled  = 1000
		declared = 64 << 10
		budget   = 8 << 20
	)
	needFiles(t, 2*stalled+100) // both ends of each connection are in this process
	small := heldByStalledPosts(t, stalled, 1)
	large := heldByStalledPosts(t, stalled, declared)
	t.Logf("%d stalled POSTs hold %d KiB of heap declaring 1 byte, %d KiB declaring %d", stalled, small>>10, large>>10, declared)
	if extra := large - small; extra > budget {
		t.Errorf("declaring %d bytes costs %d stalled POSTs %d KiB more heap; want under %d KiB", declared, stalled, extra>>10, budget>>10)
	}
}

// heldByStalledPosts opens n connections to a fresh server, each sending
// a POST's headers with Content-Length: declared and no body, and returns
// the heap they hold once every handler waits for its body.
func heldByStalledPosts(t *testing.T, n, declared int) int64 {
	s := newTestServer(t, func(c *config) {
		c.api.MaxMessageSize = 64 << 10
		c.maxConns = 2 * n
	})
	// Warm up: the pools and lazily built state a first request creates.
	wantAccepted(t, s.post(rid("warm"), "warm-up"), seq0, 1)
	s.client.CloseIdleConnections()

	before := heapAlloc()
	conns := make([]net.Conn, n)
	head := "POST " + mailboxPath(rid("stalled")) + " HTTP/1.1\r\nHost: x\r\nContent-Length: " + strconv.Itoa(declared) + "\r\n\r\n"
	for i := range conns {
		conns[i] = s.dial()
		if _, err := io.WriteString(conns[i], head); err != nil {
			t.Fatal(err)
		}
	}
	polltest.Until(t, "every handler reads its body", func() bool { return goroutinesIn("httpapi.readGrowing") == n })
	held := heapAlloc() - before
	if got := s.sup.Snapshot().Messages; got != 1 {
		t.Errorf("%d messages queued; want only the warm-up's", got)
	}
	for _, c := range conns {
		c.Close()
	}
	polltest.Until(t, "every handler is done", func() bool { return goroutinesIn("httpapi.readGrowing") == 0 })
	return held
}

// needFiles raises the soft limit on open files to at least n, up to the
// hard limit, and skips the test when that is not enough.
func needFiles(t *testing.T, n uint64) {
	var lim syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil {
		t.Skipf("open-file limit unknown: %v", err)
	}
	if lim.Cur >= n {
		return
	}
	old := lim
	lim.Cur = min(n, lim.Max)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < n {
		t.Skipf("needs %d open files; the limit is %d (hard %d)", n, old.Cur, old.Max)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &old) })
}

// heapAlloc is the heap's live bytes after two collections (the second
// empties the sync.Pools' victim caches).
func heapAlloc() int64 {
	runtime.GC()
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return int64(ms.HeapAlloc)
}

// goroutinesIn counts the goroutines with fn on their stack.
func goroutinesIn(fn string) int {
	var buf bytes.Buffer
	if err := pprof.Lookup("goroutine").WriteTo(&buf, 1); err != nil {
		panic("BUG: goroutine profile: " + err.Error())
	}
	n := 0
	for _, record := range strings.Split(buf.String(), "\n\n") {
		if !strings.Contains(record, fn+"+") {
			continue
		}
		for _, line := range strings.Split(record, "\n") {
			if c, _, ok := strings.Cut(line, " @ "); ok {
				k, _ := strconv.Atoi(c)
				n += k
			}
		}
	}
	return n
}
