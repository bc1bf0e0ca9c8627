package httpapi

import (
	"bytes"
	"encoding/json"
	"net/http"
	"testing"
	"time"
)

// healthBody is /health's JSON, decoded strictly.
type healthBody struct {
	Status           string `json:"status"`
	UptimeSeconds    int64  `json:"uptime_seconds"`
	Version          string `json:"version"`
	Mailboxes        int    `json:"mailboxes"`
	Messages         int64  `json:"messages"`
	QueuedBytes      int64  `json:"queued_bytes"`
	WaitingLongPolls int64  `json:"waiting_long_polls"`
	OpenConnections  int64  `json:"open_connections"`
	Epoch            string `json:"epoch"` // health checks it and clears it
}

func (s *testServer) health() (result, healthBody) {
	s.t.Helper()
	r := s.do(req{method: "GET", path: "/health"})
	var hb healthBody
	dec := json.NewDecoder(bytes.NewReader(r.body))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&hb); err != nil {
		s.t.Fatalf("health body %q: %v", r.body, err)
	}
	// Z9: every body reports the engine's epoch; callers compare the rest.
	if want := s.mb.Epoch(); hb.Epoch != want {
		s.t.Errorf("health epoch %q; want %q", hb.Epoch, want)
	}
	hb.Epoch = ""
	return r, hb
}

// TestHealth (R6.1, R6.5): status, code and every field, healthy and
// overloaded by queued bytes (at 90% of the memory limit) or mailboxes.
func TestHealth(t *testing.T) {
	tests := []struct {
		name   string
		mod    func(*config)
		posts  []string // one mailbox per post
		status int
		want   healthBody
	}{
		{"fresh", nil, nil, 200,
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "1.2.3-test"}},
		{"counts", nil, []string{"abc", "defg"}, 200,
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, Messages: 2, QueuedBytes: 7}},
		{"just under 90% of memory", func(c *config) { c.api.MemoryLimit = 100 }, []string{repeat(89)}, 200,
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 1, Messages: 1, QueuedBytes: 89}},
		{"90% of memory", func(c *config) { c.api.MemoryLimit = 100 }, []string{repeat(89), "x"}, 503,
			healthBody{Status: "overloaded", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, Messages: 2, QueuedBytes: 90}},
		{"max mailboxes", func(c *config) { c.api.MaxMailboxes = 2 }, []string{"a", "b"}, 503,
			healthBody{Status: "overloaded", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, Messages: 2, QueuedBytes: 2}},
		{"version escaped", func(c *config) { c.api.Version = "v\"1\"\n<é>" }, nil, 200,
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "v\"1\"\n<é>"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, func(c *config) {
				c.api.Started = time.Now().Add(-90 * time.Second)
				if tt.mod != nil {
					tt.mod(c)
				}
			})
			for i, body := range tt.posts {
				wantAccepted(t, s.post(rid(string(rune('a'+i))), body), seq0, 1)
			}
			r, got := s.health()
			if r.status != tt.status {
				t.Errorf("status = %d; want %d", r.status, tt.status)
			}
			retry := ""
			if tt.status != 200 {
				retry = "1"
			}
			wantHeader(t, r.header, map[string]string{"Content-Type": "application/json", "Retry-After": retry})
			if got.UptimeSeconds >= 90 && got.UptimeSeconds < 100 {
				got.UptimeSeconds = 90 // the clock moved on a little
			}
			tt.want.OpenConnections = 1 // the test client's one kept-alive connection
			if got != tt.want {
				t.Errorf("body = %+v; want %+v", got, tt.want)
			}
		})
	}
}

// TestHealthWaiting: parked long-polls are reported.
func TestHealthWaiting(t *testing.T) {
	s := newTestServer(t)
	done := s.goGet(t.Context(), rid("w"), "?wait_ms=5000")
	s.waitParked(1)
	if _, hb := s.health(); hb.WaitingLongPolls != 1 || hb.Mailboxes != 1 {
		t.Errorf("health = %+v; want 1 waiting long-poll in 1 mailbox", hb)
	}
	// Waiting counts a GET just before its actor parks it, so the post
	// may still find the queue empty of waiters: any 202 will do.
	if r := s.post(rid("w"), "go"); r.status != http.StatusAccepted {
		t.Fatalf("POST = %d %s", r.status, r.body)
	}
	wantMessage(t, receive(t, done), "go", seq0, 0)
}

// TestHealthHead: HEAD /health answers like GET, without a body.
func TestHealthHead(t *testing.T) {
	s := newTestServer(t)
	r := s.do(req{method: http.MethodHead, path: "/health"})
	if r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD /health = %d %q; want 200, no body", r.status, r.body)
	}
}
