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
	srv := NewServer(h, base, ServerOptions{Addr: "127.0.0.1:0", LongPollMax: 60 * time.Second, ErrorLog: errLog})
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
