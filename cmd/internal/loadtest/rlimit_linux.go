//go:build linux

package loadtest

import "syscall"

// raiseOpenFiles lifts the soft limit on open files to the hard limit
// (every long-poll holds a socket) and returns the limit now in force.
// Go already does this at start since 1.19; doing it here as well keeps
// the tool right under a runtime that does not, and reports the figure.
func raiseOpenFiles() (uint64, error) {
	var l syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
		return 0, err
	}
	if l.Cur < l.Max {
		l.Cur = l.Max
		if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
		if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &l); err != nil {
			return 0, err
		}
	}
	return l.Cur, nil
}
