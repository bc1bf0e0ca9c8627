package conf

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// env returns a getenv over m.
func env(m map[string]string) func(string) string {
	return func(name string) string { return m[name] }
}

// writeConfig writes body as a TOML file in a fresh temp dir and returns
// its path.
func writeConfig(t testing.TB, body string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "zrc.toml")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// mustParse parses and fails the test on any problem.
func mustParse(t *testing.T, args []string, getenv func(string) string) *Result {
	t.Helper()
	res, err := Parse(args, getenv)
	if err != nil {
		t.Fatalf("Parse(%q) error:\n%v", args, err)
	}
	return res
}

// problems returns the problems of an error Parse returned, failing the
// test when it is not an *Error.
func problems(t *testing.T, err error) []Problem {
	t.Helper()
	if err == nil {
		t.Fatal("got no error; want problems")
	}
	var ce *Error
	if !errors.As(err, &ce) {
		t.Fatalf("got error %T %v; want *conf.Error", err, err)
	}
	return ce.Problems
}

// wantProblem is a problem expected with its exact key and source and a
// substring of its message.
type wantProblem struct {
	key, source, msg string
}

func (w wantProblem) matches(p Problem) bool {
	return p.Key == w.key && p.Source == w.source && strings.Contains(p.Message, w.msg)
}

// hasProblem fails the test unless one of probs matches want.
func hasProblem(t *testing.T, probs []Problem, want wantProblem) {
	t.Helper()
	for _, p := range probs {
		if want.matches(p) {
			return
		}
	}
	t.Errorf("got problems:\n%s\nwant one with key %q, source %q, message containing %q",
		(&Error{Problems: probs}).Error(), want.key, want.source, want.msg)
}
