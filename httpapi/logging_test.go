package httpapi

import (
	"context"
	"fmt"
	"strings"
	"testing"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
	"go.uber.org/zap/zaptest/observer"
)

// TestLogs (Z6): no log line carries a message body or a full recipient
// id; ids appear shortened and only at debug; at most one line per
// request; server-side failures are warnings.
func TestLogs(t *testing.T) {
	core, logs := observer.New(zap.DebugLevel)
	s := newTestServer(t, func(c *config) {
		c.logger = zap.New(core)
		c.sup.MaxQueueLength = 1
	})
	id := rid("logged")
	const body = "SECRET-BODY-d41d8cd9"
	auth := map[string][]string{"Authorization": {"Bearer " + body}}
	for _, r := range []req{
		{method: "POST", path: mailboxPath(id), body: []byte(body)},
		{method: "POST", path: mailboxPath(strings.ToUpper(id)), body: []byte(body)}, // 507: a warning
		{method: "GET", path: mailboxPath(id) + "?wait_ms=0"},
		{method: "GET", path: mailboxPath(id) + "?wait_ms=0"},
		{method: "GET", path: mailboxPath(id) + "?wait_ms=x"},
		{method: "POST", path: mailboxPath("bad"), body: []byte(body)},
		{method: "GET", path: "/nope?token=" + body},
		{method: "POST", path: mailboxPath(id), body: []byte(body), header: auth},
	} {
		s.do(r)
	}
	requests := 8
	// And a client that leaves while parked, on an empty mailbox.
	idle := rid("logged, idle")
	ctx, cancel := context.WithCancel(context.Background())
	gone := s.goGet(ctx, idle, "?wait_ms=5000")
	s.waitParked(1)
	cancel()
	receive(t, gone)
	s.waitParked(0)
	requests++

	entries := logs.All()
	if len(entries) > requests {
		t.Errorf("%d log lines for %d requests; want at most one each", len(entries), requests)
	}
	var sawShort, sawWarn bool
	for _, e := range entries {
		enc := zapcore.NewMapObjectEncoder()
		for _, f := range e.Context {
			f.AddTo(enc)
		}
		text := e.Message + " " + fmt.Sprint(enc.Fields)
		for _, secret := range []string{body, id, strings.ToUpper(id), id[:16], idle, idle[:16]} {
			if strings.Contains(text, secret) {
				t.Errorf("%s line %q carries %q", e.Level, text, secret)
			}
		}
		if strings.Contains(text, id[:8]) {
			sawShort = true
			if e.Level != zap.DebugLevel {
				t.Errorf("%s line %q carries a recipient id; only debug may", e.Level, text)
			}
		}
		if e.Level >= zap.WarnLevel {
			sawWarn = true
			if enc.Fields["code"] != "queue_full" {
				t.Errorf("unexpected warning %q", text)
			}
		}
	}
	if !sawShort || !sawWarn {
		t.Errorf("saw short id %v, warning %v; want both", sawShort, sawWarn)
	}
}
