package httpapi

import (
	"context"
	"log"
	"net"
	"net/http"
	"time"
)

// Server limits. Each bounds what one client can hold: a connection stuck
// in its headers, an idle keep-alive connection, a header block.
const (
	readHeaderTimeout = 10 * time.Second
	idleTimeout       = 120 * time.Second
	maxHeaderBytes    = 16 << 10
	// writeSlack is how long a response may take to write after the
	// longest long-poll has ended.
	writeSlack = 15 * time.Second
	// defaultMaxMessageSize stands in for ServerOptions.MaxMessageSize
	// when it is zero: max_message_size's default.
	defaultMaxMessageSize = 64 << 10
	// h2StreamsPerConn is how many streams' worth of upload one HTTP/2
	// connection may have buffered at once.
	h2StreamsPerConn = 4
	// h2MaxWindow is one byte under the 4 MiB net/http accepts as a
	// receive window.
	h2MaxWindow = 4<<20 - 1
)

// ServerOptions configure NewServer.
type ServerOptions struct {
	Addr        string
	LongPollMax time.Duration // the longest a GET may wait (long_poll_max_ms)
	// MaxMessageSize is max_message_size: it sizes HTTP/2's receive
	// windows (h2Windows); zero: 64 KiB.
	MaxMessageSize int64
	ErrorLog       *log.Logger // net/http's own errors; nil: the log package's default

	// The limits below default to the package's constants when zero;
	// tests set short ones to watch a slow client being cut off.
	ReadHeaderTimeout time.Duration // request line and headers, from the first byte; also the TLS handshake
	IdleTimeout       time.Duration // a keep-alive connection between requests
	WriteSlack        time.Duration // writing an answer after the longest long-poll
}

// NewServer wraps h in an http.Server with the project's timeouts. baseCtx
// becomes every request's root context: cmd cancels it with cause
// ErrShuttingDown when shutdown begins, which answers every parked
// long-poll 503 at once — http.Server.Shutdown alone would wait for them
// (R9.4).
func NewServer(h http.Handler, baseCtx context.Context, opts ServerOptions) *http.Server {
	if baseCtx == nil {
		baseCtx = context.Background()
	}
	orDefault := func(d, def time.Duration) time.Duration {
		if d > 0 {
			return d
		}
		return def
	}
	headerTimeout := orDefault(opts.ReadHeaderTimeout, readHeaderTimeout)
	writeTimeout := opts.LongPollMax + orDefault(opts.WriteSlack, writeSlack)
	stream, conn := h2Windows(opts.MaxMessageSize)
	return &http.Server{
		Addr:    opts.Addr,
		Handler: h,
		// A client dribbling its headers a byte at a time is cut off
		// ReadHeaderTimeout after its request began, however steadily it
		// dribbles: net/http sets one deadline for the whole header block.
		// It bounds the TLS handshake too.
		ReadHeaderTimeout: headerTimeout,
		// WriteTimeout runs from the end of the request headers, so it must
		// outlast the longest long-poll plus the time to write its answer,
		// or a GET parked for long_poll_max_ms would be cut off before its
		// 200 or 204.
		WriteTimeout: writeTimeout,
		// ReadTimeout runs from the start of the request and stays armed
		// while its handler runs: shorter than a long-poll, it would fail
		// net/http's background read and cancel the waiting GET as if its
		// client had left. So it covers a request's whole life — headers,
		// the longest wait, the answer — and only backstops what nothing
		// else bounds: net/http discarding an unread body before answering
		// where no endpoint.finish runs (ServeMux's redirect of an unclean
		// path, OPTIONS *, the metrics listener). POST bodies get their own,
		// shorter deadline (Options.BodyReadTimeout), as do bodies an
		// endpoint leaves unread (limitBodyDrain).
		ReadTimeout:    headerTimeout + writeTimeout,
		IdleTimeout:    orDefault(opts.IdleTimeout, idleTimeout),
		MaxHeaderBytes: maxHeaderBytes,
		ErrorLog:       opts.ErrorLog,
		BaseContext:    func(net.Listener) context.Context { return baseCtx },
		HTTP2: &http.HTTP2Config{
			MaxReceiveBufferPerStream:     stream,
			MaxReceiveBufferPerConnection: conn,
		},
	}
}

// h2Windows sizes HTTP/2's receive windows, which bound what a client can
// make the server buffer before a handler reads it: net/http's defaults
// (1 MiB a stream, 1 MiB a connection) let a request hold a megabyte no
// endpoint wants — a GET's body, which is refused (Z10), or the rest of a
// POST over max_message_size, which is never read (R1.4). A stream gets
// room for a whole message and the byte that proves a body too large, so
// that a POST's body arrives without waiting for a window update; a
// connection gets h2StreamsPerConn streams' worth, so that a few POSTs
// upload side by side at full speed while one connection never buffers
// more than that, however many streams it opens.
func h2Windows(maxMessageSize int64) (stream, conn int) {
	if maxMessageSize <= 0 {
		maxMessageSize = defaultMaxMessageSize
	}
	s := min(maxMessageSize+1, h2MaxWindow)
	// A connection's window is at least HTTP/2's initial 65,535 bytes.
	return int(s), int(max(min(h2StreamsPerConn*s, h2MaxWindow), 1<<16))
}
