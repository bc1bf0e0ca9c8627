package tlsreload

import (
	"log"
	"net/netip"
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
// TLS stack and every plain-HTTP request to the HTTPS port fails one; its
// HTTP/2 server writes one per connection that breaks the protocol (bytes
// after the preface that are not a SETTINGS frame, a frame too large, no
// SETTINGS in time), which any client can send at will. So those lines
// are counted and aggregated into at most one line per interval and kind
// (R8.6). Every other line net/http writes passes through at warn level,
// since net/http logs only problems. No line keeps a client address: the
// aggregated ones keep only the latest error text as an example, and
// every address in any line is replaced by "<address>".
type ErrorLog struct {
	handshakes *burstlog.Logger
	http2      *burstlog.Logger
	other      *zap.Logger
	failures   *metrics.Counter // nil without metrics
	h2Failures *metrics.Counter // nil without metrics
	std        *log.Logger
}

// NewErrorLog writes on l (net/http's own lines) and counts handshake
// failures in zrc_rendezvous_tls_handshake_errors_total and HTTP/2
// connection errors in zrc_rendezvous_http2_errors_total on set (nil: not
// counted). The series exist with or without TLS, so dashboards and
// alerts need no special case.
func NewErrorLog(l *zap.Logger, set *metrics.Set, interval time.Duration) *ErrorLog {
	e := &ErrorLog{
		handshakes: burstlog.New(l, "TLS handshakes failed", interval),
		http2:      burstlog.New(l, "HTTP/2 connections failed", interval),
		other:      l,
	}
	if set != nil {
		e.failures = set.NewCounter("zrc_rendezvous_tls_handshake_errors_total")
		e.h2Failures = set.NewCounter("zrc_rendezvous_http2_errors_total")
	}
	e.std = log.New(e, "", 0)
	return e
}

// Logger is the *log.Logger to give http.Server.ErrorLog.
func (e *ErrorLog) Logger() *log.Logger { return e.std }

// Write takes one line from log.Logger.
func (e *ErrorLog) Write(p []byte) (int, error) {
	line := strings.TrimSuffix(string(p), "\n")
	switch {
	case strings.HasPrefix(line, handshakePrefix):
		// The rest is "<addr>: <err>"; an IPv6 address holds colons but
		// no ": ", so the first ": " ends it.
		rest := line[len(handshakePrefix):]
		if _, why, found := strings.Cut(rest, ": "); found {
			rest = why
		}
		inc(e.failures)
		e.handshakes.Event(withoutAddrs(rest))
	case isHTTP2ConnError(line):
		inc(e.h2Failures)
		e.http2.Event(withoutAddrs(line))
	default:
		e.other.Warn(withoutAddrs(line))
	}
	return len(p), nil
}

// isHTTP2ConnError reports whether line is one of the lines net/http's
// HTTP/2 server writes about a connection its client broke: "http2: server
// connection error from <addr>: …", "http2: server: error reading preface
// from client <addr>: …", "timeout waiting for SETTINGS frames from <addr>"
// and the like. A panic in a handler ("http2: panic serving …") is not
// one: it is a bug, and passes through.
func isHTTP2ConnError(line string) bool {
	if strings.HasPrefix(line, "http2: panic serving ") {
		return false
	}
	return strings.HasPrefix(line, "http2: ") || strings.HasPrefix(line, "timeout waiting for ")
}

func inc(c *metrics.Counter) {
	if c != nil {
		c.Inc()
	}
}

// withoutAddrs replaces every IP address in s, with or without a port
// ("192.0.2.1:443", "[2001:db8::1]:443", "2001:db8::1"), by "<address>".
// An address is a maximal run of the characters addresses are written
// with, less trailing colons ("from 192.0.2.1:5000: EOF"), that parses as
// one; "->" between two (a net.OpError's "local->remote") ends a run.
func withoutAddrs(s string) string {
	var b strings.Builder
	start := -1 // the current run's first byte; -1: not in a run
	flush := func(end int) {
		run := s[start:end]
		addr := strings.TrimRight(run, ":")
		if isAddr(addr) {
			b.WriteString("<address>")
			b.WriteString(run[len(addr):])
		} else {
			b.WriteString(run)
		}
		start = -1
	}
	for i := 0; i < len(s); i++ {
		if isAddrByte(s[i]) {
			if start < 0 {
				start = i
			}
			continue
		}
		if start >= 0 {
			flush(i)
		}
		b.WriteByte(s[i])
	}
	if start >= 0 {
		flush(len(s))
	}
	return b.String()
}

func isAddrByte(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F' ||
		c == '.' || c == ':' || c == '[' || c == ']'
}

func isAddr(s string) bool {
	if _, err := netip.ParseAddrPort(s); err == nil {
		return true
	}
	_, err := netip.ParseAddr(strings.TrimSuffix(strings.TrimPrefix(s, "["), "]"))
	return err == nil
}

// Close logs the failures still pending.
func (e *ErrorLog) Close() {
	e.handshakes.Close()
	e.http2.Close()
}
