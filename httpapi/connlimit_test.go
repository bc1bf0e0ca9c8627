package httpapi

import (
	"bufio"
	"crypto/tls"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

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
	eventually(t, "a slot is free", func() bool { return s.conns.Open() == 1 })
	wantAccepted(t, s.post(rid("p"), "still here"), seq0, 0)
	wantMessage(t, receive(t, parked), "still here", seq0, 0)
	s.client.CloseIdleConnections()
	eventually(t, "every slot is free", func() bool { return s.conns.Open() == 0 })
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
	hold := s.dial()
	io.WriteString(hold, "GET /health HTTP/1.1\r\nHost: x\r\n\r\n")
	if _, err := http.ReadResponse(bufio.NewReader(hold), nil); err != nil {
		t.Fatal(err)
	}
	s.conns.rejecting.Add(maxRejecting)
	defer s.conns.rejecting.Add(-maxRejecting)
	c := s.dial()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	if b, err := io.ReadAll(c); len(b) != 0 || err != nil && !strings.Contains(err.Error(), "reset") {
		t.Fatalf("read %q, %v; want the connection closed unanswered", b, err)
	}
}

// TestConnLimitTLS: over TLS, a refused connection gets its 503 after the
// handshake, on HTTP/1.1 even when the client offers h2.
func TestConnLimitTLS(t *testing.T) {
	p := tlstest.Write(t, t.TempDir(), "a", time.Time{})
	cert, err := tls.LoadX509KeyPair(p.CertPath, p.KeyPath)
	if err != nil {
		t.Fatal(err)
	}
	conf := &tls.Config{Certificates: []tls.Certificate{cert}, MinVersion: tls.VersionTLS12}
	l := NewConnLimit(ConnLimitOptions{Max: 1, Metrics: metrics.NewSet()})
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.Proto) }),
		nil, ServerOptions{LongPollMax: time.Second})
	srv.TLSConfig = conf
	go srv.ServeTLS(l.Listener(raw, conf), "", "")
	t.Cleanup(func() { srv.Close() })

	client := func() *http.Client {
		return &http.Client{Transport: &http.Transport{
			TLSClientConfig:   &tls.Config{RootCAs: p.Pool()},
			ForceAttemptHTTP2: true,
		}}
	}
	url := "https://" + raw.Addr().String() + "/"
	resp, err := client().Get(url)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != "HTTP/2.0" {
		t.Fatalf("first connection spoke %q; want HTTP/2.0", b)
	}
	// The first client keeps its connection open: the next is refused.
	resp, err = client().Get(url)
	if err != nil {
		t.Fatalf("second connection: %v; want a 503 answer", err)
	}
	if resp.Proto != "HTTP/1.1" {
		t.Errorf("refusal spoke %s; want HTTP/1.1", resp.Proto)
	}
	wantOverloadedConn(t, resp)
}
