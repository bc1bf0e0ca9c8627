package httpapi

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/guard"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/tlsreload/tlstest"
)

// wantOverloadedConn checks the answer of a connection refused at the cap.
func wantOverloadedConn(t *testing.T, resp *http.Response) {
	t.Helper()
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("status %d (%s); want 503", resp.StatusCode, body)
	}
	wantHeader(t, resp.Header, map[string]string{
		"Content-Type": "application/json",
		"Retry-After":  "5",
	})
	if !resp.Close {
		t.Error("no Connection: close")
	}
	var e map[string]string
	if err := json.Unmarshal(body, &e); err != nil || e["error"] != "overloaded" || e["message"] == "" || len(e) != 2 {
		t.Fatalf("body %s; want {\"error\":\"overloaded\",\"message\":…}", body)
	}
}

// TestConnLimit: past max_connections a new connection is answered 503
// overloaded with Retry-After and closed, without reaching the server;
// /health reports the open connections and is 503 at the cap; the slots
// come back as connections close; metrics count it all.
func TestConnLimit(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := newTestServer(t, func(c *config) {
		c.maxConns = 2
		c.logger = zap.New(core)
	})

	// One kept-alive client connection, parked on a long-poll.
	parked := s.goGet(t.Context(), rid("p"), "?wait_ms=5000")
	s.waitParked(1)

	// The second connection: /health sees both, which is the cap.
	c2 := s.dial()
	io.WriteString(c2, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	br2 := bufio.NewReader(c2)
	resp, err := http.ReadResponse(br2, nil)
	if err != nil {
		t.Fatal(err)
	}
	var hb healthBody
	json.NewDecoder(resp.Body).Decode(&hb)
	resp.Body.Close()
	if resp.StatusCode != 503 || hb.Status != "overloaded" || hb.OpenConnections != 2 {
		t.Fatalf("/health at the cap: %d %+v; want 503 overloaded with 2 open connections", resp.StatusCode, hb)
	}
	// It parks a long-poll too: an idle connection would give way to the
	// next one (TestConnLimitClosesIdle).
	io.WriteString(c2, "GET "+mailboxPath(rid("q"))+"?wait_ms=5000 HTTP/1.1\r\nHost: x\r\n\r\n")
	s.waitParked(2)

	// A third connection is refused: raw, and through a real client that
	// writes its whole request first.
	c3 := s.dial()
	io.WriteString(c3, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err = http.ReadResponse(bufio.NewReader(c3), nil)
	if err != nil {
		t.Fatal(err)
	}
	wantOverloadedConn(t, resp)
	if n, err := c3.Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("after the refusal: read %d, %v; want EOF", n, err)
	}
	c3.Close() // the refusal ends when its client hangs up
	fresh := &http.Client{Transport: &http.Transport{}}
	resp, err = fresh.Post(s.url+mailboxPath(rid("p")), "", strings.NewReader(repeat(1000)))
	if err != nil {
		t.Fatalf("client past the cap: %v; want a 503 answer", err)
	}
	wantOverloadedConn(t, resp)

	// Read the set directly: a scrape would need a connection.
	var sb strings.Builder
	s.set.WritePrometheus(&sb)
	m := parseExposition(t, sb.String())
	if m["zrc_rendezvous_open_connections"] != 2 || m["zrc_rendezvous_max_connections"] != 2 ||
		m["zrc_rendezvous_rejected_connections_total"] != 2 {
		t.Errorf("metrics: open %v, max %v, rejected %v; want 2, 2, 2", m["zrc_rendezvous_open_connections"],
			m["zrc_rendezvous_max_connections"], m["zrc_rendezvous_rejected_connections_total"])
	}

	// Closing a connection frees its slot; the parked long-poll was never
	// disturbed.
	c2.Close()
	polltest.Until(t, "a slot is free", func() bool { return s.conns.Open() == 1 })
	wantAccepted(t, s.post(rid("p"), "still here"), seq0, 0)
	wantMessage(t, receive(t, parked), "still here", seq0, 0)
	s.client.CloseIdleConnections()
	polltest.Until(t, "every slot is free", func() bool { return s.conns.Open() == 0 })
	if r, hb := s.health(); r.status != 200 || hb.OpenConnections != 1 {
		t.Errorf("/health under the cap: %d %+v; want 200 with 1 open connection", r.status, hb)
	}

	s.conns.Close()
	var refused int64
	for _, e := range logs.FilterMessage("connections refused: max_connections reached").All() {
		refused += e.ContextMap()["count"].(int64)
	}
	if refused != 2 {
		t.Errorf("logged %d refusals; want 2", refused)
	}
}

// TestConnLimitRefusalsBounded: past maxRejecting refusals in progress, a
// connection is closed unanswered rather than holding a descriptor.
func TestConnLimitRefusalsBounded(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.maxConns = 1 })
	s.dial() // holds the one slot, before its first request
	polltest.Until(t, "the slot is taken", func() bool { return s.conns.Open() == 1 })
	s.conns.rejecting.Add(maxRejecting)
	defer s.conns.rejecting.Add(-maxRejecting)
	c := s.dial()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read %q, %v; want the connection closed unanswered", b, err)
	}
}

// tlsLimited serves the request's protocol over TLS behind a ConnLimit
// of max connections; idle makes it track idle connections (ConnState).
func tlsLimited(t *testing.T, max int, idle bool) (l *ConnLimit, url string, client func() *http.Client) {
	t.Helper()
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	cert, err := tls.LoadX509KeyPair(p.CertPath, p.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	l = NewConnLimit(ConnLimitOptions{Max: max, Metrics: metrics.NewSet()})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		nil, ServerOptions{LongPollMax: time.Second})
	srv.TLSConfig = conf
	if idle {
		srv.ConnState = l.ConnState
	}
	go srv.ServeTLS(l.Listener(raw, conf), "", "")
	t.Cleanup(func() { srv.Close() })
	client = func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.Pool()},
			ForceAttemptHTTP2: true,
		}}
	}
	return l, "https://" + raw.Addr().String() + "/", client
}

// getProto fetches url and returns the protocol the server saw.
func getProto(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestConnLimitTLS: over TLS, a refused connection gets its 503 after the
// handshake, on HTTP/1.1 even when the client offers h2.
func TestConnLimitTLS(t *testing.T) {
	_, url, client := tlsLimited(t, 1, false)
	if p := getProto(t, client(), url); p != "HTTP/2.0" {
		t.Fatalf("first connection spoke %q; want HTTP/2.0", p)
	}
	// The first client keeps its connection open: the next is refused.
	resp, err := client().Get(url)
	if err != nil {
		t.Fatalf("second connection: %v; want a 503 answer", err)
	}
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("refusal spoke %s; want HTTP/1.1", resp.Proto)
	}
	wantOverloadedConn(t, resp)
}

// TestConnLimitClosesIdleHTTP2: an HTTP/2 connection without a stream is
// idle too, and gives way at the cap.
func TestConnLimitClosesIdleHTTP2(t *testing.T) {
	l, url, client := tlsLimited(t, 1, true)
	if p := getProto(t, client(), url); p != "HTTP/2.0" {
		t.Fatalf("first connection spoke %q; want HTTP/2.0", p)
	}
	waitIdle(t, l, 1)
	if p := getProto(t, client(), url); p != "HTTP/2.0" {
		t.Fatalf("second connection spoke %q; want HTTP/2.0, served", p)
	}
}

// dialFrom opens a connection to addr from the loopback address local
// (Linux routes all of 127/8 to lo, so 127.0.0.2 is a second source).
func dialFrom(t *testing.T, local, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(local)}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// roundTrip sends a GET / on c and reads its answer in full.
func roundTrip(t *testing.T, c net.Conn, br *bufio.Reader) (int, string) {
	t.Helper()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// metricsOf reads set directly: a scrape would need a connection.
func metricsOf(t *testing.T, set *metrics.Set) map[string]float64 {
	t.Helper()
	var sb strings.Builder
	set.WritePrometheus(&sb)
	return parseExposition(t, sb.String())
}

// TestConnLimitPerSource: past max_connections_per_source, one more
// connection from that source is answered 503 overloaded and closed,
// while another source still gets in; a trusted proxy is not capped.
func TestConnLimitPerSource(t *testing.T) {
	o := guardOptions()
	g, err := guard.New(o)
	if err != nil {
		t.Fatal(err)
	}
	core, logs := observer.New(zap.DebugLevel)
	set := metrics.NewSet()
	l := NewConnLimit(ConnLimitOptions{Max: 10, PerSource: 2, Sources: g, Metrics: set, Logger: zap.New(core)})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }),
		nil, ServerOptions{LongPollMax: time.Second})
	srv.ConnState = l.ConnState
	go srv.Serve(l.Listener(raw, nil))
	t.Cleanup(func() { srv.Close() })
	addr := raw.Addr().String()

	// Two kept-alive connections from 127.0.0.1, idle after a request.
	var first net.Conn
	for i := range 2 {
		c := dialFrom(t, "127.0.0.1", addr)
		if st, body := roundTrip(t, c, bufio.NewReader(c)); st != 200 || body != "ok" {
			t.Fatalf("connection %d: %d %q; want 200 ok", i+1, st, body)
		}
		if first == nil {
			first = c
		}
	}
	// A third from the same source is refused; one from 127.0.0.2 is not.
	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	if want := `{"error":"overloaded","message":"too many open connections from this source"}`; resp.StatusCode != 503 || string(body) != want {
		t.Fatalf("third connection of a source: %d %s; want 503 %s", resp.StatusCode, body, want)
	}
	wantHeader(t, resp.Header, map[string]string{"Content-Type": "application/json", "Retry-After": "5"})
	if !resp.Close {
		t.Error("no Connection: close")
	}
	c.Close() // the refusal ends when its client hangs up
	other := dialFrom(t, "127.0.0.2", addr)
	if st, body := roundTrip(t, other, bufio.NewReader(other)); st != 200 || body != "ok" {
		t.Fatalf("another source at the first one's cap: %d %q; want 200 ok", st, body)
	}
	m := metricsOf(t, set)
	if m["zrc_rendezvous_rejected_connections_per_source_total"] != 1 || m["zrc_rendezvous_rejected_connections_total"] != 0 ||
		m["zrc_rendezvous_idle_connections_closed_total"] != 0 {
		t.Errorf("metrics: per source %v, global %v, idle closed %v; want 1, 0, 0", m["zrc_rendezvous_rejected_connections_per_source_total"],
			m["zrc_rendezvous_rejected_connections_total"], m["zrc_rendezvous_idle_connections_closed_total"])
	}

	// A closed connection gives its source's slot back.
	first.Close()
	polltest.Until(t, "the slot is back", func() bool { return l.Open() == 2 })
	again := dialFrom(t, "127.0.0.1", addr)
	if st, _ := roundTrip(t, again, bufio.NewReader(again)); st != 200 {
		t.Fatalf("after a close: %d; want 200", st)
	}

	// Once 127.0.0.1 is a trusted proxy (a reload), its connections carry
	// clients of their own and are not capped.
	o.TrustedProxies = []string{"127.0.0.1"}
	commit, err := g.Prepare(o)
	if err != nil {
		t.Fatal(err)
	}
	commit()
	for range 3 {
		c := dialFrom(t, "127.0.0.1", addr)
		if st, _ := roundTrip(t, c, bufio.NewReader(c)); st != 200 {
			t.Fatalf("a trusted proxy's connection: %d; want 200", st)
		}
	}

	l.Close()
	lines := logs.FilterMessage("connections refused: max_connections_per_source reached").All()
	if len(lines) != 1 || lines[0].ContextMap()["count"] != int64(1) {
		t.Errorf("refusal log lines %+v; want one counting 1", lines)
	}
	for _, e := range logs.All() {
		if strings.Contains(fmt.Sprint(e.Message, e.ContextMap()), "127.0.0") {
			t.Errorf("log line %q %v carries a client address", e.Message, e.ContextMap())
		}
	}
}

// waitIdle waits until n connections are on l's idle list.
func waitIdle(t *testing.T, l *ConnLimit, n int) {
	t.Helper()
	polltest.Until(t, fmt.Sprintf("%d idle connections", n), func() bool {
		l.mu.Lock()
		defer l.mu.Unlock()
		k := 0
		for c := l.idle.next; c != &l.idle; c = c.next {
			k++
		}
		return k == n
	})
}

// TestConnLimitClosesIdle: at max_connections a new connection closes the
// keep-alive connection idle the longest instead of being refused; a
// connection in use is never closed.
func TestConnLimitClosesIdle(t *testing.T) {
	s := newTestServer(t, func(c *config) { c.maxConns = 3 })
	parked := s.goGet(t.Context(), rid("p"), "?wait_ms=5000")
	s.waitParked(1)
	addr := strings.TrimPrefix(s.url, "http://")
	var idle [2]net.Conn
	for i := range idle {
		idle[i] = dialFrom(t, "127.0.0.1", addr)
		io.WriteString(idle[i], "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
		if _, err := http.ReadResponse(bufio.NewReader(idle[i]), nil); err != nil {
			t.Fatal(err)
		}
		waitIdle(t, s.conns, i+1)
	}
	// At the cap: the oldest idle connection gives way.
	c := dialFrom(t, "127.0.0.1", addr)
	io.WriteString(c, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("Retry-After") != "1" {
		// At the cap /health itself says overloaded (its Retry-After is
		// 1, not the refusal's 5): the connection was admitted.
		t.Fatalf("new connection at the cap: %d, Retry-After %q; want /health's own 503", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	idle[0].SetReadDeadline(time.Now().Add(10 * time.Second))
	if n, err := idle[0].Read(make([]byte, 1)); err != io.EOF {
		t.Fatalf("oldest idle connection: read %d, %v; want EOF", n, err)
	}
	io.WriteString(idle[1], "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(idle[1]), nil); err != nil {
		t.Fatalf("the younger idle connection: %v; want it still open", err)
	}
	m := metricsOf(t, s.set)
	if m["zrc_rendezvous_idle_connections_closed_total"] != 1 || m["zrc_rendezvous_rejected_connections_total"] != 0 {
		t.Errorf("metrics: idle closed %v, rejected %v; want 1, 0", m["zrc_rendezvous_idle_connections_closed_total"],
			m["zrc_rendezvous_rejected_connections_total"])
	}
	// The parked long-poll was never disturbed.
	wantAccepted(t, s.post(rid("p"), "still here"), seq0, 0)
	wantMessage(t, receive(t, parked), "still here", seq0, 0)
}
