package tlsreload

import (
	"log"
	"strings"
	"time"

	"github.com/VictoriaMetrics/metrics"
	"go.uber.org/zap"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/burstlog"
)

// handshakePrefix starts the line net/http writes to Server.ErrorLog for
// every failed TLS handshake: "http: TLS handshake error from <addr>: <err>".
const handshakePrefix = "http: TLS handshake error from "

// ErrorLog is an http.Server's ErrorLog. net/http writes one line per
// failed TLS handshake, and every port scanner, every client with an old
// TLS stack and every plain-HTTP request to the HTTPS port fails one: so
// those lines are counted and aggregated into at most one line per
// interval (R8.6). Every other line net/http writes passes through at warn
// level, since net/http logs only problems.
type ErrorLog struct {
	handshakes *burstlog.Logger
	other      *zap.Logger
	failures   *metrics.Counter // nil without metrics
	std        *log.Logger
}

// NewErrorLog writes on l (net/http's own lines) and counts handshake
// failures in zrc_rendezvous_tls_handshake_errors_total on set (nil: not
// counted). The series exists with or without TLS, so dashboards and
// alerts need no special case.
func NewErrorLog(l *zap.Logger, set *metrics.Set, interval time.Duration) *ErrorLog {
	e := &ErrorLog{
		handshakes: burstlog.New(l, "TLS handshakes failed", interval),
		other:      l,
	}
	if set != nil {
		e.failures = set.NewCounter("zrc_rendezvous_tls_handshake_errors_total")
	}
	e.std = log.New(e, "", 0)
	return e
}

// Logger is the *log.Logger to give http.Server.ErrorLog.
func (e *ErrorLog) Logger() *log.Logger { return e.std }

// Write takes one line from log.Logger. The handshake line's peer address
// is dropped: the aggregated line keeps only the latest error text as an
// example, and logs stay free of client addresses.
func (e *ErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	if rest, ok := strings.CutPrefix(line, handshakePrefix); ok {
		// rest is "<addr>: <err>"; an IPv6 address holds colons but no
		// ": ", so the first ": " ends it.
		if _, why, found := strings.Cut(rest, ": "); found {
			rest = why
		}
		if e.failures != nil {
			e.failures.Inc()
		}
		e.handshakes.Event(rest)
		return len(p), nil
	}
	e.other.Warn(line)
	return len(p), nil
}

// Close logs the handshake failures still pending.
func (e *ErrorLog) Close() { e.handshakes.Close() }
