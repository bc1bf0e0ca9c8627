package redistest

import (
	"os"
	"strconv"
	"testing"
)

func TestStartStopRestart(t *testing.T) {
	s := Start(t, "--appendonly", "yes", "--appendfsync", "always")
	if got := s.Do(t, "PING"); got != "PONG" {
		t.Fatalf("PING: %q", got)
	}
	if got := s.Do(t, "SET", "k", "a value"); got != "OK" {
		t.Fatalf("SET: %q", got)
	}
	pid := s.PID()
	s.Restart(t)
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Fatalf("the first process %d is still there after Restart", pid)
	}
	if got := s.Do(t, "GET", "k"); got != "a value" {
		t.Fatalf("GET after a restart with the AOF on: %q; want \"a value\"", got)
	}
	if got := s.Do(t, "GET", "missing"); got != "(nil)" {
		t.Fatalf("GET of a missing key: %q", got)
	}
	if got := s.Do(t, "INCR", "n"); got != "1" {
		t.Fatalf("INCR: %q", got)
	}
	pid = s.PID()
	s.Kill()
	if _, err := os.Stat("/proc/" + strconv.Itoa(pid)); !os.IsNotExist(err) {
		t.Fatalf("process %d is still there after Kill", pid)
	}
	if s.PID() != 0 {
		t.Fatal("PID after Kill; want 0")
	}
	s.Stop() // stopping a stopped server does nothing
}

func TestWithoutPersistenceRestartIsEmpty(t *testing.T) {
	s := Start(t)
	s.Do(t, "SET", "k", "v")
	s.Restart(t)
	if got := s.Do(t, "GET", "k"); got != "(nil)" {
		t.Fatalf("GET after a restart without persistence: %q; want (nil)", got)
	}
}
