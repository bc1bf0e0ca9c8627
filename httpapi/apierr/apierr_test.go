package apierr

import (
	"net/http"
	"net/http/httptest"
	"testing"
	"time"
)

// TestRefusal: the connection cap's refusals are complete HTTP/1.1
// answers, byte for byte, with the catalogue's Retry-After of 5 seconds
// (connRetryAfter) against 1 for every other 503.
func TestRefusal(t *testing.T) {
	for _, tt := range []struct {
		c    Code
		want string
	}{
		{ConnectionLimit, "HTTP/1.1 503 Service Unavailable\r\n" +
			"Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 68\r\n" +
			"Content-Type: application/json\r\nRetry-After: 5\r\n\r\n" +
			`{"error":"overloaded","message":"server is at its connection limit"}`},
		{SourceConnectionLimit, "HTTP/1.1 503 Service Unavailable\r\n" +
			"Cache-Control: no-store\r\nConnection: close\r\nContent-Length: 77\r\n" +
			"Content-Type: application/json\r\nRetry-After: 5\r\n\r\n" +
			`{"error":"overloaded","message":"too many open connections from this source"}`},
	} {
		if got := string(Refusal(tt.c)); got != tt.want {
			t.Errorf("Refusal(%d) =\n%q\nwant\n%q", tt.c, got, tt.want)
		}
	}
}

// TestWrite: one answer's status, headers and body exactly; Retry-After
// is the catalogue's unless the answer brings its own, rounded up to
// whole seconds and at least 1 (R4.4), and only answers that have one
// send one.
func TestWrite(t *testing.T) {
	for _, tt := range []struct {
		name       string
		c          Code
		body       []byte
		retryAfter time.Duration
		status     int
		header     http.Header
		wantBody   string
	}{
		{"overloaded", Overloaded, nil, 0, 503,
			http.Header{"Content-Type": {"application/json"}, "Content-Length": {"75"}, "Retry-After": {"1"}},
			`{"error":"overloaded","message":"server is at its mailbox or memory limit"}`},
		{"queue full has no Retry-After", QueueFull, nil, time.Hour, 507,
			http.Header{"Content-Type": {"application/json"}, "Content-Length": {"56"}},
			`{"error":"queue_full","message":"mailbox queue is full"}`},
		{"429 with its own body and retry", RateLimited,
			LimitBody("slow down", Limit{Name: "post", Max: 3, WindowSeconds: 60}), 1001 * time.Millisecond, 429,
			http.Header{"Content-Type": {"application/json"}, "Content-Length": {"89"}, "Retry-After": {"2"}},
			`{"error":"rate_limited","message":"slow down","limit":"post","max":3,"window_seconds":60}`},
		{"429 without a window", RateLimited,
			LimitBody("too many", Limit{Name: "long_polls", Max: 2}), time.Millisecond, 429,
			http.Header{"Content-Type": {"application/json"}, "Content-Length": {"74"}, "Retry-After": {"1"}},
			`{"error":"rate_limited","message":"too many","limit":"long_polls","max":2}`},
	} {
		t.Run(tt.name, func(t *testing.T) {
			w := httptest.NewRecorder()
			Write(w, tt.c, tt.body, tt.retryAfter)
			if w.Code != tt.status || w.Body.String() != tt.wantBody {
				t.Errorf("got %d %s; want %d %s", w.Code, w.Body, tt.status, tt.wantBody)
			}
			if len(w.Header()) != len(tt.header) {
				t.Errorf("headers %v; want %v", w.Header(), tt.header)
			}
			for k, v := range tt.header {
				if got := w.Header().Get(k); got != v[0] {
					t.Errorf("%s: %q; want %q", k, got, v[0])
				}
			}
		})
	}
}

func TestCeilSeconds(t *testing.T) {
	for d, want := range map[time.Duration]int64{-time.Second: 0, 0: 0, 1: 1, time.Second: 1, time.Second + 1: 2} {
		if got := CeilSeconds(d); got != want {
			t.Errorf("CeilSeconds(%v) = %d; want %d", d, got, want)
		}
	}
}
