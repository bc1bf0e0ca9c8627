package httpapi

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/polltest"
)

// healthBody is /health's JSON, decoded strictly.
type healthBody struct {
	Status           string `json:"status"`
	UptimeSeconds    int64  `json:"uptime_seconds"`
	Version          string `json:"version"`
	Mailboxes        int    `json:"mailboxes"`
	BusyMailboxes    int    `json:"busy_mailboxes"`
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
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, BusyMailboxes: 2, Messages: 2, QueuedBytes: 7}},
		{"just under 90% of memory", func(c *config) { c.sup.MemoryLimit = 100 }, []string{repeat(89)}, 200,
			healthBody{Status: "healthy", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 1, BusyMailboxes: 1, Messages: 1, QueuedBytes: 89}},
		{"90% of memory", func(c *config) { c.sup.MemoryLimit = 100 }, []string{repeat(89), "x"}, 503,
			healthBody{Status: "overloaded", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, BusyMailboxes: 2, Messages: 2, QueuedBytes: 90}},
		{"max mailboxes, all holding messages", func(c *config) { c.sup.MaxMailboxes = 2 }, []string{"a", "b"}, 503,
			healthBody{Status: "overloaded", UptimeSeconds: 90, Version: "1.2.3-test", Mailboxes: 2, BusyMailboxes: 2, Messages: 2, QueuedBytes: 2}},
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
			tt.want.OpenConnections = 1 // the test client's one kept-alive connection
			s.wantHealth(tt.status, tt.want)
		})
	}
}

// wantHealth checks /health's status, headers and every field; uptime
// may have moved on a little from want's.
func (s *testServer) wantHealth(status int, want healthBody) {
	s.t.Helper()
	r, got := s.health()
	if r.status != status {
		s.t.Errorf("status = %d; want %d", r.status, status)
	}
	retry := ""
	if status != 200 {
		retry = "1"
	}
	wantHeader(s.t, r.header, map[string]string{"Content-Type": "application/json", "Retry-After": retry})
	uptime := got.UptimeSeconds
	if got.UptimeSeconds >= want.UptimeSeconds && got.UptimeSeconds < want.UptimeSeconds+10 {
		got.UptimeSeconds = want.UptimeSeconds
	}
	if got != want {
		s.t.Errorf("body = %+v; want %+v", got, want)
	}
	// The body byte for byte: its fields in SPEC's order.
	version, _ := json.Marshal(want.Version)
	exact := fmt.Sprintf(`{"status":%q,"uptime_seconds":%d,"version":%s,"epoch":%q,"mailboxes":%d,"busy_mailboxes":%d,`+
		`"messages":%d,"queued_bytes":%d,"waiting_long_polls":%d,"open_connections":%d}`,
		want.Status, uptime, version, s.mb.Epoch(), want.Mailboxes, want.BusyMailboxes,
		want.Messages, want.QueuedBytes, want.WaitingLongPolls, want.OpenConnections)
	if string(r.body) != exact {
		s.t.Errorf("body\n%s\nwant\n%s", r.body, exact)
	}
}

// TestHealthAtMaxMailboxes (R6.5, Z5): at max_mailboxes /health is
// healthy while a mailbox is reclaimable (empty, no waiter), since a POST
// to a new id is still accepted, and overloaded only when every mailbox
// holds a message or a waiting GET.
func TestHealthAtMaxMailboxes(t *testing.T) {
	const max = 3
	fill := []struct {
		name string
		fill func(s *testServer, id string)
	}{
		{"emptied by a GET", func(s *testServer, id string) {
			wantAccepted(s.t, s.post(id, "x"), seq0, 1)
			wantMessage(s.t, s.get(id, "?wait_ms=0"), "x", seq0, 0)
		}},
		{"long-poll ended", func(s *testServer, id string) {
			wantNoContent(s.t, s.get(id, "?wait_ms=10"))
		}},
	}
	for _, tt := range fill {
		t.Run(tt.name, func(t *testing.T) {
			s := newTestServer(t, func(c *config) { c.sup.MaxMailboxes = max })
			for i := range max {
				tt.fill(s, rid(fmt.Sprint(i)))
			}
			s.wantHealth(200, healthBody{Status: "healthy", Version: "1.2.3-test", Mailboxes: max, OpenConnections: 1})
			wantAccepted(t, s.post(rid("new"), "room"), seq0, 1)
			s.wantHealth(200, healthBody{Status: "healthy", Version: "1.2.3-test", Mailboxes: max,
				BusyMailboxes: 1, Messages: 1, QueuedBytes: 4, OpenConnections: 1})
		})
	}
	t.Run("long-polls in all", func(t *testing.T) {
		s := newTestServer(t, func(c *config) { c.sup.MaxMailboxes = max })
		ctx, cancel := context.WithCancel(t.Context())
		var done []<-chan result
		for i := range max {
			done = append(done, s.goGet(ctx, rid(fmt.Sprint(i)), "?wait_ms=10000"))
		}
		s.waitParked(max)
		s.wantHealth(503, healthBody{Status: "overloaded", Version: "1.2.3-test", Mailboxes: max,
			BusyMailboxes: max, WaitingLongPolls: max, OpenConnections: 1 + max})
		// Z5: each new id is refused at once, without a scan of the
		// mailboxes for each.
		for i := range 20 {
			id := rid(fmt.Sprint("new", i))
			for _, r := range []result{s.post(id, "no room"), s.get(id, "?wait_ms=1000")} {
				wantError(t, r, http.StatusServiceUnavailable, "overloaded")
				wantHeader(t, r.header, map[string]string{"Retry-After": "1"})
				if want := `{"error":"overloaded","message":"server is at its mailbox or memory limit"}`; string(r.body) != want {
					t.Fatalf("body = %s; want %s", r.body, want)
				}
			}
		}
		if n := s.scrape()["zrc_rendezvous_reclaim_scans_total"]; n > 1 {
			t.Errorf("%v scans for 40 refused new ids; want at most 1", n)
		}
		cancel()
		for _, d := range done {
			receive(t, d)
		}
		polltest.Until(t, "the long-polls' mailboxes turn reclaimable", func() bool { return s.sup.Snapshot().Busy == 0 })
		if r, hb := s.health(); r.status != 200 || hb.Status != "healthy" || hb.Mailboxes != max {
			t.Errorf("health after the long-polls left = %d %+v; want 200 healthy with %d mailboxes", r.status, hb, max)
		}
	})
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
