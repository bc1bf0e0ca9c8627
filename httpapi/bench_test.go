package httpapi

import (
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/VictoriaMetrics/metrics"
)

// BenchmarkPostGet is one POST and one GET over loopback HTTP against the
// real engine; allocations count client and server, both in this process.
func BenchmarkPostGet(b *testing.B) {
	s := newTestServer(b)
	id := rid("bench")
	url := s.url + mailboxPath(id)
	payload := bytes.Repeat([]byte("e"), 256)
	body := bytes.NewReader(payload)
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		resp, err := s.client.Post(url, "", body)
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusAccepted {
			b.Fatalf("POST = %d", resp.StatusCode)
		}
		resp, err = s.client.Get(url + "?wait_ms=0")
		if err != nil {
			b.Fatal(err)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			b.Fatalf("GET = %d", resp.StatusCode)
		}
	}
}

// benchWriter is a ResponseWriter that can be reused, so that
// BenchmarkHandlerPostGet/reused counts the handler's allocations alone.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }
func (w *benchWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *benchWriter) Flush()                      {}

// WriteString and SetReadDeadline exist on net/http's own writer too.
func (w *benchWriter) WriteString(s string) (int, error) { return len(s), nil }
func (w *benchWriter) SetReadDeadline(time.Time) error   { return nil }

// BenchmarkHandlerPostGet is one POST and one GET through the handler
// without a network: "recorder" builds requests and recorders per
// iteration as a test would; "reused" reuses them to show what the
// handler and engine themselves allocate.
func BenchmarkHandlerPostGet(b *testing.B) {
	s := newTestServer(b)
	h := New(Deps{Mailboxes: s.sup, Metrics: metrics.NewSet(), Options: defaultConfig().api})
	id := rid("bench")
	payload := bytes.Repeat([]byte("e"), 256)

	b.Run("recorder", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			w := httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("POST", mailboxPath(id), bytes.NewReader(payload)))
			if w.Code != http.StatusAccepted {
				b.Fatalf("POST = %d", w.Code)
			}
			w = httptest.NewRecorder()
			h.ServeHTTP(w, httptest.NewRequest("GET", mailboxPath(id)+"?wait_ms=0", nil))
			if w.Code != http.StatusOK {
				b.Fatalf("GET = %d", w.Code)
			}
		}
	})

	b.Run("reused", func(b *testing.B) { benchReusedPostGet(b, h, id, payload) })
}

// benchReusedPostGet runs one POST and one GET of id through h per
// iteration, reusing the requests and the writer, so that only the
// handler's and the engine's allocations count.
func benchReusedPostGet(b *testing.B, h http.Handler, id string, payload []byte) {
	body := bytes.NewReader(payload)
	post := httptest.NewRequest("POST", mailboxPath(id), nil)
	post.Body, post.ContentLength = io.NopCloser(body), int64(len(payload))
	get := httptest.NewRequest("GET", mailboxPath(id)+"?wait_ms=0", nil)
	w := &benchWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		body.Reset(payload)
		clear(w.h)
		h.ServeHTTP(w, post)
		if w.code != http.StatusAccepted {
			b.Fatalf("POST = %d", w.code)
		}
		clear(w.h)
		h.ServeHTTP(w, get)
		if w.code != http.StatusOK {
			b.Fatalf("GET = %d", w.code)
		}
	}
}
