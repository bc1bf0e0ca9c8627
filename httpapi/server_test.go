package httpapi

import (
	"context"
	"log"
	"net"
	"net/http"
	"testing"
	"time"
)

// TestNewServer: the timeouts and limits STYLE 15 asks for, and the base
// context that shutdown cancels.
func TestNewServer(t *testing.T) {
	type key struct{}
	base := context.WithValue(context.Background(), key{}, "base")
	errLog := log.New(nil, "", 0)
	h := http.NotFoundHandler()
	srv := NewServer(h, base, ServerOptions{Addr: "127.0.0.1:0", LongPollMax: 60 * time.Second, ErrorLog: errLog, MaxMessageSize: 65536})
	checks := []struct {
		name      string
		got, want any
	}{
		{"Addr", srv.Addr, "127.0.0.1:0"},
		{"ReadHeaderTimeout", srv.ReadHeaderTimeout, 10 * time.Second},
		{"ReadTimeout (outlasts headers, the longest long-poll and the answer)", srv.ReadTimeout, 85 * time.Second},
		{"WriteTimeout", srv.WriteTimeout, 75 * time.Second},
		{"IdleTimeout", srv.IdleTimeout, 120 * time.Second},
		{"MaxHeaderBytes", srv.MaxHeaderBytes, 16 << 10},
		{"ErrorLog", srv.ErrorLog, errLog},
		{"BaseContext", srv.BaseContext(&net.TCPListener{}).Value(key{}), "base"},
		// Z10, R1.4: a stream buffers one message and the byte that shows
		// it too large; a connection, four streams' worth.
		{"HTTP2.MaxReceiveBufferPerStream", srv.HTTP2.MaxReceiveBufferPerStream, 65537},
		{"HTTP2.MaxReceiveBufferPerConnection", srv.HTTP2.MaxReceiveBufferPerConnection, 4 * 65537},
	}
	for _, c := range checks {
		if c.got != c.want {
			t.Errorf("%s = %v; want %v", c.name, c.got, c.want)
		}
	}
	if srv.Handler == nil {
		t.Error("Handler not set")
	}
}

// TestH2Windows: HTTP/2's receive windows follow max_message_size, within
// what net/http accepts (at most 4 MiB, a connection at least 64 KiB).
func TestH2Windows(t *testing.T) {
	for _, tt := range []struct {
		max          int64
		stream, conn int
	}{
		{0, 65537, 4 * 65537}, // max_message_size's default
		{65536, 65537, 4 * 65537},
		{1024, 1025, 1 << 16},
		{1 << 20, 1<<20 + 1, 4<<20 - 1},
		{16 << 20, 4<<20 - 1, 4<<20 - 1},
	} {
		if stream, conn := h2Windows(tt.max); stream != tt.stream || conn != tt.conn {
			t.Errorf("h2Windows(%d) = %d, %d; want %d, %d", tt.max, stream, conn, tt.stream, tt.conn)
		}
	}
}
