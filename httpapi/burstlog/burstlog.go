// Package burstlog turns a burst of like events — failed TLS handshakes
// from a scanner, connections refused at the connection cap — into at most
// one log line per interval carrying a count, so that a flood can neither
// fill the disk nor hide every other line (R8.6).
package burstlog

import (
	"sync"
	"time"

	"go.uber.org/zap"
)

// Logger aggregates events into log lines. The first event after a quiet
// interval is logged at once, so a lone failure is seen when it happens;
// the events that follow within the interval are counted and logged
// together when it ends. No event goes uncounted: Close logs what is
// still pending.
type Logger struct {
	log      *zap.Logger
	msg      string
	interval time.Duration

	mu sync.Mutex
	// Guarded by mu.
	count   int64       // events since the last line
	example string      // the latest event's detail
	last    time.Time   // when the last line was written
	flush   *time.Timer // pending end-of-interval line; nil when none
	closed  bool
}

// New returns a Logger that writes msg at warn level on log, at most once
// per interval.
func New(log *zap.Logger, msg string, interval time.Duration) *Logger {
	return &Logger{log: log, msg: msg, interval: interval}
}

// Event records one event. detail is a short description of it (an error
// text); the line reports the latest one as "example". It never blocks on
// anything but the Logger's own lock.
func (l *Logger) Event(detail string) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.count++
	l.example = detail
	if l.flush != nil || l.closed {
		return // a line is already due at the end of this interval
	}
	now := time.Now()
	if wait := l.last.Add(l.interval).Sub(now); wait > 0 {
		l.flush = time.AfterFunc(wait, l.onTimer)
		return
	}
	l.writeLocked(now)
}

func (l *Logger) onTimer() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.flush = nil
	if !l.closed {
		l.writeLocked(time.Now())
	}
}

// writeLocked logs the pending count, if any; l.mu is held.
func (l *Logger) writeLocked(now time.Time) {
	if l.count == 0 {
		return
	}
	l.log.Warn(l.msg, zap.Int64("count", l.count), zap.String("example", l.example),
		zap.Duration("interval", l.interval))
	l.count, l.example, l.last = 0, "", now
}

// Close logs the events still pending and stops the timer. Events after
// Close are counted but never logged.
func (l *Logger) Close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.flush != nil {
		l.flush.Stop()
		l.flush = nil
	}
	if !l.closed {
		l.writeLocked(time.Now())
		l.closed = true
	}
}
