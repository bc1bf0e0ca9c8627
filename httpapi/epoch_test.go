package httpapi

import (
	"net/http"
	"sync/atomic"
	"testing"
)

// Z9: every 202, 200 and 204 of the mailbox routes carries the engine's
// epoch, and /health reports the same; errors do not carry it.
func TestEpochHeader(t *testing.T) {
	s := newTestServer(t)
	epoch := s.sup.Epoch()
	if len(epoch) < 16 || len(epoch) > 64 {
		t.Fatalf("epoch %q; want 16 to 64 characters", epoch)
	}
	cases := []struct {
		name   string
		do     func() result
		status int
		want   string
	}{
		{"POST 202", func() result { return s.post(rid("e"), "hi") }, http.StatusAccepted, epoch},
		{"GET 200", func() result { return s.get(rid("e"), "?wait_ms=0") }, http.StatusOK, epoch},
		{"GET 204, empty mailbox", func() result { return s.get(rid("e"), "?wait_ms=0") }, http.StatusNoContent, epoch},
		{"GET 204, no mailbox", func() result { return s.get(rid("none"), "?wait_ms=0") }, http.StatusNoContent, epoch},
		{"GET 204 after a wait", func() result { return s.get(rid("e"), "?wait_ms=1") }, http.StatusNoContent, epoch},
		{"POST 400", func() result { return s.post("nothex", "hi") }, http.StatusBadRequest, ""},
		{"GET 400", func() result { return s.get(rid("e"), "?wait_ms=x") }, http.StatusBadRequest, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := c.do()
			if r.status != c.status {
				t.Fatalf("status %d (body %q); want %d", r.status, r.body, c.status)
			}
			wantHeader(t, r.header, map[string]string{"X-Mailbox-Epoch": c.want})
		})
	}
	s.health() // checks /health's epoch against the engine's
}

// switchingEpoch is the real engine with an epoch the test changes, as a
// shared store that lost its data would.
type switchingEpoch struct {
	Mailboxes
	epoch atomic.Pointer[string]
}

func (m *switchingEpoch) Epoch() string { return *m.epoch.Load() }

// Z9: a new epoch from the engine shows on the next answer.
func TestEpochHeaderFollowsTheEngine(t *testing.T) {
	var sw *switchingEpoch
	s := newTestServer(t, func(c *config) {
		c.wrap = func(mb Mailboxes) Mailboxes {
			sw = &switchingEpoch{Mailboxes: mb}
			first := "first-epoch-0123456789"
			sw.epoch.Store(&first)
			return sw
		}
	})
	for _, want := range []string{"first-epoch-0123456789", "second-epoch-012345678"} {
		sw.epoch.Store(&want)
		for range 2 {
			wantHeader(t, s.post(rid("e"), "hi").header, map[string]string{"X-Mailbox-Epoch": want})
			wantHeader(t, s.get(rid("e"), "?wait_ms=0").header, map[string]string{"X-Mailbox-Epoch": want})
		}
		s.health() // checks /health's epoch against the engine's
	}
}
