package httpapi

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/apierr"
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

// ConnSources names the source a connection counts against under
// max_connections_per_source; *guard.Guard is one. capped is false for a
// peer the per-source cap does not apply to.
type ConnSources interface {
	ConnSource(peer netip.Addr) (key [16]byte, capped bool)
}

// ConnLimitOptions configure NewConnLimit.
type ConnLimitOptions struct {
	Max     int          // open connections (max_connections); at least 1
	Logger  *zap.Logger  // nil: no logs
	Metrics *metrics.Set // nil: no metrics
	// Cap names the cap in the refusals' log line; "": "max_connections".
	Cap string
	// PerSource caps the open connections of one source
	// (max_connections_per_source), as Sources names them; 0 or a nil
	// Sources: no per-source cap.
	PerSource int
	Sources   ConnSources
}

// ConnLimit caps the open connections of a listener (max_connections),
// and those of one source (max_connections_per_source), so that a flood
// degrades the server instead of exhausting its file descriptors or
// memory, and one source cannot take every connection. A connection past
// a cap is not left waiting in the kernel's backlog, as
// netutil.LimitListener would: it is accepted, answered 503 `overloaded`
// with Retry-After, and closed. Near the global cap, a new connection
// first closes the connection idle the longest between requests (see
// ConnState), so that keep-alive connections nobody uses give way to new
// clients. /health reads Open and Max and reports 503 overloaded at the
// cap. Its methods are safe for concurrent use.
type ConnLimit struct {
	max int64
	// highWater is where closing idle connections begins: 90 % of max.
	highWater int64
	perSource int
	sources   ConnSources  // nil: no per-source cap
	open      atomic.Int64 // connections handed to the server and not yet closed
	rejecting atomic.Int64 // refusals being answered now
	global    capRefusal   // past max
	source    capRefusal   // past perSource
	// idleClosed counts the idle connections closed to make room.
	idleClosed *metrics.Counter
	// refusals counts the goroutines answering refusals; Close waits for
	// them. Each ends within rejectTimeout.
	refusals sync.WaitGroup

	mu sync.Mutex
	// bySource counts the open connections of each capped source; a
	// source with none has no entry. Guarded by mu.
	bySource map[[16]byte]int
	// idle is the sentinel of the list of idle connections, the one idle
	// the longest first. Guarded by mu.
	idle countedConn
}

// capRefusal is how one cap refuses: its answer, counter and log line.
type capRefusal struct {
	// response is the catalogue's answer (apierr.Refusal), whose
	// Retry-After of 5 seconds apierr's connRetryAfter explains.
	response []byte
	rejected *metrics.Counter // nil: no metrics
	log      *burstlog.Logger
}

// NewConnLimit returns a cap of o.Max open connections, and of o.PerSource
// per source.
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
		global: capRefusal{
			response: apierr.Refusal(apierr.ConnectionLimit),
			log:      burstlog.New(log, "connections refused: "+capName+" reached", rejectLogPeriod),
		},
		source: capRefusal{
			response: apierr.Refusal(apierr.SourceConnectionLimit),
			log:      burstlog.New(log, "connections refused: max_connections_per_source reached", rejectLogPeriod),
		},
		bySource: make(map[[16]byte]int),
	}
	l.highWater = l.max - l.max/10
	if o.PerSource > 0 && o.Sources != nil {
		l.perSource, l.sources = o.PerSource, o.Sources
	}
	l.idle.prev, l.idle.next = &l.idle, &l.idle
	if o.Metrics != nil {
		o.Metrics.NewGauge("zrc_rendezvous_open_connections", func() float64 { return float64(l.open.Load()) })
		o.Metrics.NewGauge("zrc_rendezvous_max_connections", func() float64 { return float64(l.max) })
		l.global.rejected = o.Metrics.NewCounter("zrc_rendezvous_rejected_connections_total")
		l.source.rejected = o.Metrics.NewCounter("zrc_rendezvous_rejected_connections_per_source_total")
		l.idleClosed = o.Metrics.NewCounter("zrc_rendezvous_idle_connections_closed_total")
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
	l.global.log.Close()
	l.source.log.Close()
}

// ConnState is the http.Server's ConnState hook: it keeps the list of
// connections idle between requests (http.StateIdle, HTTP/1.1 keep-alive
// or HTTP/2 without a stream), from which the longest idle is closed when
// a new connection comes near the cap. Without it no connection is closed
// to make room.
func (l *ConnLimit) ConnState(c net.Conn, state http.ConnState) {
	if tc, ok := c.(*tls.Conn); ok {
		c = tc.NetConn()
	}
	cc, ok := c.(*countedConn)
	if !ok || cc.l != l {
		return
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unlinkLocked(cc)
	if state == http.StateIdle && !cc.closed.Load() {
		// At the back: the list stays ordered by when each went idle.
		cc.prev, cc.next = l.idle.prev, &l.idle
		l.idle.prev.next = cc
		l.idle.prev = cc
	}
}

// unlinkLocked takes c off the idle list, if it is on it.
func (l *ConnLimit) unlinkLocked(c *countedConn) {
	if c.next == nil {
		return
	}
	c.prev.next, c.next.prev = c.next, c.prev
	c.prev, c.next = nil, nil
}

// Listener wraps ln, the raw TCP listener, so that every connection it
// accepts counts against the caps until it is closed. With TLS, tlsConf
// is the server's TLS configuration: a refused connection is answered
// after a handshake, over HTTP/1.1, which every HTTPS client speaks. The
// server then adds its own TLS layer on top of the wrapped listener
// (ServeTLS).
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

// Accept returns the next connection under the caps; the ones past them
// are refused on their own goroutines and never reach the server.
func (ll *limitListener) Accept() (net.Conn, error) {
	l := ll.l
	for {
		c, err := ll.Listener.Accept()
		if err != nil {
			return nil, err
		}
		cc, refusal := l.admit(c)
		if cc != nil {
			return cc, nil
		}
		if refusal.rejected != nil {
			refusal.rejected.Inc()
		}
		if l.rejecting.Add(1) > maxRejecting {
			l.rejecting.Add(-1)
			c.Close()
			refusal.log.Event("closed unanswered: too many refusals in progress")
			continue
		}
		refusal.log.Event("answered 503 overloaded")
		l.refusals.Add(1)
		go ll.reject(c, refusal.response)
	}
}

// admit counts c against the caps, or returns the cap that refuses it: its
// source's first, so that a source at its cap closes no one's idle
// connection. From highWater on, the connection idle the longest is
// closed first; at the cap, that makes room for c.
func (l *ConnLimit) admit(c net.Conn) (*countedConn, *capRefusal) {
	cc := &countedConn{Conn: c, l: l}
	if l.sources != nil {
		var peer netip.Addr
		if a, ok := c.RemoteAddr().(*net.TCPAddr); ok {
			peer = a.AddrPort().Addr()
		}
		cc.src, cc.capped = l.sources.ConnSource(peer)
	}
	l.mu.Lock()
	if cc.capped && l.bySource[cc.src] >= l.perSource {
		l.mu.Unlock()
		return nil, &l.source
	}
	var victim *countedConn
	if l.open.Load() >= l.highWater && l.idle.next != &l.idle {
		victim = l.idle.next
		l.unlinkLocked(victim)
	}
	l.mu.Unlock()
	if victim != nil {
		// Its server goroutine, blocked reading the next request, fails
		// and ends; a client that sends one just now retries it on a new
		// connection, as after IdleTimeout.
		victim.Close()
		if l.idleClosed != nil {
			l.idleClosed.Inc()
		}
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.open.Load() >= l.max {
		return nil, &l.global
	}
	l.open.Add(1)
	if cc.capped {
		l.bySource[cc.src]++
	}
	return cc, nil
}

// reject answers a connection past a cap with response and closes it, all
// within rejectTimeout.
func (ll *limitListener) reject(c net.Conn, response []byte) {
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
	if _, err := conn.Write(response); err != nil {
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

// countedConn gives its slots back when it is closed, once.
type countedConn struct {
	net.Conn
	l      *ConnLimit
	src    [16]byte // its source, when capped
	capped bool     // it counts against its source's cap
	closed atomic.Bool
	// prev and next link it into l's idle list; nil when not on it.
	// Guarded by l.mu.
	prev, next *countedConn
}

func (c *countedConn) Close() error {
	if c.closed.CompareAndSwap(false, true) {
		l := c.l
		l.mu.Lock()
		l.unlinkLocked(c)
		if c.capped {
			if l.bySource[c.src]--; l.bySource[c.src] == 0 {
				delete(l.bySource, c.src)
			}
		}
		l.open.Add(-1)
		l.mu.Unlock()
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
