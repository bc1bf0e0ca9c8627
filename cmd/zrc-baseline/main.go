// Command zrc-baseline is a deliberately minimal server for the mailbox API,
// used only as the yardstick in benchmarks and load tests (docs/performance.md):
// one mutex, a map of slice queues, channel waiters — no limits, no metrics,
// no logging, no actors. It is never part of the product binary.
package main

import (
	"flag"
	"io"
	"log"
	"net/http"
	"strconv"
	"sync"
	"time"
)

type message struct {
	seq  uint64
	body []byte
}

type mailbox struct {
	queue   []message
	waiters []chan message
	seq     uint64
}

type server struct {
	mu    sync.Mutex
	boxes map[string]*mailbox
}

func (s *server) box(id string) *mailbox {
	b := s.boxes[id]
	if b == nil {
		b = &mailbox{seq: uint64(time.Now().UnixMicro())}
		s.boxes[id] = b
	}
	return b
}

func (s *server) post(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(http.MaxBytesReader(w, r.Body, 65536))
	if err != nil || len(body) == 0 {
		http.Error(w, "bad body", http.StatusBadRequest)
		return
	}
	s.mu.Lock()
	b := s.box(r.PathValue("id"))
	m := message{seq: b.seq, body: body}
	b.seq++
	handed := false
	for len(b.waiters) > 0 && !handed {
		ch := b.waiters[0]
		b.waiters = b.waiters[1:]
		select {
		case ch <- m:
			handed = true
		default: // that waiter has left
		}
	}
	if !handed {
		b.queue = append(b.queue, m)
	}
	n := len(b.queue)
	s.mu.Unlock()
	w.Header().Set("X-Message-Sequence", strconv.FormatUint(m.seq, 10))
	w.Header().Set("X-Queue-Length", strconv.Itoa(n))
	w.WriteHeader(http.StatusAccepted)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	wait := 30 * time.Second
	if v := r.URL.Query().Get("wait_ms"); v != "" {
		ms, _ := strconv.Atoi(v)
		wait = time.Duration(ms) * time.Millisecond
	}
	s.mu.Lock()
	b := s.box(r.PathValue("id"))
	if len(b.queue) > 0 {
		m := b.queue[0]
		b.queue = b.queue[1:]
		s.mu.Unlock()
		write(w, m)
		return
	}
	ch := make(chan message, 1)
	b.waiters = append(b.waiters, ch)
	s.mu.Unlock()
	t := time.NewTimer(wait)
	defer t.Stop()
	select {
	case m := <-ch:
		write(w, m)
	case <-t.C:
		w.WriteHeader(http.StatusNoContent)
	case <-r.Context().Done():
	}
}

func write(w http.ResponseWriter, m message) {
	w.Header().Set("Content-Type", "application/octet-stream")
	w.Header().Set("X-Message-Sequence", strconv.FormatUint(m.seq, 10))
	w.Write(m.body)
}

func main() {
	addr := flag.String("listen", "127.0.0.1:8081", "listen address")
	flag.Parse()
	s := &server{boxes: make(map[string]*mailbox)}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/mailbox/{id}", s.post)
	mux.HandleFunc("GET /v1/mailbox/{id}", s.get)
	mux.HandleFunc("GET /health", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok")) })
	log.Fatal(http.ListenAndServe(*addr, mux))
}
