package httpapi

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/burstlog"
)

// Limits of the refusals at the connection cap. A refusal holds a file
// descriptor until the client has read the answer; rejectTimeout bounds
// how long, and maxRejecting how many at once, so that a flood past the
// cap costs a bounded number of descriptors. Past maxRejecting a new
// connection is closed unanswered.
const (
	rejectTimeout   = 2 * time.Second
	maxRejecting    = 64
	rejectDrainMax  = 64 << 10
	rejectLogPeriod = 10 * time.Second
	// rejectHeaderMax bounds the request read before a refusal is
	// answered: maxHeaderBytes and the request line, and some.
	rejectHeaderMax = maxHeaderBytes + 4<<10
)

// rejectRetryAfter is the Retry-After of a connection refused at the cap,
// in seconds. Connections free up as long-polls end, which takes seconds,
// not milliseconds.
const rejectRetryAfter = 5

// overloadedResponse answers a connection refused at the cap: the
// `overloaded` JSON error of the API (SPEC "HTTP API"), as a complete
// HTTP/1.1 response written straight on the connection, which is then
// closed.
var overloadedResponse = func() []byte {
	body := `{"error":"overloaded","message":"server is at its connection limit"}`
	return []byte("HTTP/1.1 503 Service Unavailable\r\n" +
		"Content-Type: application/json\r\n" +
		"Retry-After: " + strconv.Itoa(rejectRetryAfter) + "\r\n" +
		"Cache-Control: no-store\r\n" +
		"Connection: close\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"\r\n" + body)
}()

// ConnLimitOptions configure NewConnLimit.
type ConnLimitOptions struct {
	Max     int          // open connections (max_connections); at least 1
	Logger  *zap.Logger  // nil: no logs
	Metrics *metrics.Set // nil: no metrics
	// Cap names the cap in the refusals' log line; "": "max_connections".
	Cap string
}

// ConnLimit caps the open connections of a listener (max_connections), so
// that a flood degrades the server instead of exhausting its file
// descriptors or memory. A connection past the cap is not left waiting in
// the kernel's backlog, as netutil.LimitListener would: it is accepted,
// answered 503 `overloaded` with Retry-After, and closed. /health reads
// Open and Max and reports 503 overloaded at the cap. Its methods are safe
// for concurrent use.
type ConnLimit struct {
	max       int64
	open      atomic.Int64 // connections handed to the server and not yet closed
	rejecting atomic.Int64 // refusals being answered now
	rejected  *metrics.Counter
	log       *burstlog.Logger
	// refusals counts the goroutines answering refusals; Close waits for
	// them. Each ends within rejectTimeout.
	refusals sync.WaitGroup
}

// NewConnLimit returns a cap of o.Max open connections.
func NewConnLimit(o ConnLimitOptions) *ConnLimit {
	log := o.Logger
	if log == nil {
		log = zap.NewNop()
	}
	capName := o.Cap
	if capName == "" {
		capName = "max_connections"
	}
	l := &ConnLimit{
		max: int64(max(o.Max, 1)),
		log: burstlog.New(log, "connections refused: "+capName+" reached", rejectLogPeriod),
	}
	if o.Metrics != nil {
		o.Metrics.NewGauge("zrc_rendezvous_open_connections", func() float64 { return float64(l.open.Load()) })
		o.Metrics.NewGauge("zrc_rendezvous_max_connections", func() float64 { return float64(l.max) })
		l.rejected = o.Metrics.NewCounter("zrc_rendezvous_rejected_connections_total")
	}
	return l
}

// Open is the number of open connections.
func (l *ConnLimit) Open() int64 { return l.open.Load() }

// Max is the cap.
func (l *ConnLimit) Max() int64 { return l.max }

// Close waits for the refusals in progress, which end within
// rejectTimeout, and logs those not yet logged. Call it once the listener
// is closed.
func (l *ConnLimit) Close() {
	l.refusals.Wait()
	l.log.Close()
}

// Listener wraps ln, the raw TCP listener, so that every connection it
// accepts counts against the cap until it is closed. With TLS, tlsConf is
// the server's TLS configuration: a refused connection is answered after
// a handshake, over HTTP/1.1, which every HTTPS client speaks. The server
// then adds its own TLS layer on top of the wrapped listener (ServeTLS).
func (l *ConnLimit) Listener(ln net.Listener, tlsConf *tls.Config) net.Listener {
	cl := &limitListener{Listener: ln, l: l}
	if tlsConf != nil {
		cl.tlsConf = tlsConf.Clone()
		cl.tlsConf.NextProtos = []string{"http/1.1"}
	}
	return cl
}

type limitListener struct {
	net.Listener
	l       *ConnLimit
	tlsConf *tls.Config // nil: plain HTTP
}

// Accept returns the next connection under the cap; the ones past it are
// refused on their own goroutines and never reach the server.
func (ll *limitListener) Accept() (net.Conn, error) {
	l := ll.l
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		if l.open.Add(1) <= l.max {
			return &countedConn{Conn: c, l: l}, nil
		}
		l.open.Add(-1)
		if l.rejected != nil {
			l.rejected.Inc()
		}
		if l.rejecting.Add(1) > maxRejecting {
			l.rejecting.Add(-1)
			c.Close()
			l.log.Event("closed unanswered: too many refusals in progress")
			continue
		}
		l.log.Event("answered 503 overloaded")
		l.refusals.Add(1)
		go ll.reject(c)
	}
}

// reject answers a connection past the cap and closes it, all within
// rejectTimeout.
func (ll *limitListener) reject(c net.Conn) {
	defer ll.l.refusals.Done()
	defer ll.l.rejecting.Add(-1)
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(rejectTimeout))
	conn := c
	if ll.tlsConf != nil {
		tc := tls.Server(c, ll.tlsConf)
		if tc.Handshake() != nil {
			return
		}
		conn = tc
	}
	// Answer only once the request's headers are in: a client that reads
	// an answer before it has sent its request may take it for a stale
	// connection's and fail instead (Go's http.Transport does).
	br := bufio.NewReaderSize(conn, 4<<10)
	if !skipHeaders(br) {
		return
	}
	if _, err := conn.Write(overloadedResponse); err != nil {
		return
	}
	// Half-close, then read what the client still sends (a body) until it
	// closes: closing a socket with unread data resets the connection, and
	// a reset can destroy the answer before the client has read it.
	if cw, ok := conn.(interface{ CloseWrite() error }); ok {
		_ = cw.CloseWrite()
	}
	_, _ = io.Copy(io.Discard, io.LimitReader(br, rejectDrainMax))
}

// skipHeaders reads a request line and headers up to the empty line that
// ends them, at most rejectHeaderMax bytes. It reports whether it found
// the end.
func skipHeaders(br *bufio.Reader) bool {
	lines := 0
	for n := 0; n < rejectHeaderMax; {
		line, err := br.ReadSlice('\n')
		n += len(line)
		switch {
		case err == bufio.ErrBufferFull:
			continue // the rest of a long line follows
		case err != nil:
			return false
		case len(line) <= 2 && strings.TrimRight(string(line), "\r\n") == "":
			// An empty line: the end of the headers, unless nothing came
			// before it (clients may send a stray CRLF between requests).
			if lines > 0 {
				return true
			}
		default:
			lines++
		}
	}
	return false
}

// countedConn gives its slot back when it is closed, once.
type countedConn struct {
	net.Conn
	l      *ConnLimit
	closed atomic.Bool
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		c.l.open.Add(-1)
	}
	return c.Conn.Close()
}

// CloseWrite passes through to the TCP connection: net/http half-closes a
// connection before it closes it after some errors, so that the client
// reads the answer instead of a reset.
func (c *countedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}
