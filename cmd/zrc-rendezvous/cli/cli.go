// Package cli holds the client-side subcommands of the zrc-rendezvous
// binary — post, get, keygen and loadtest — so that an operator can try a
// deployment with nothing else installed. The server stays the default:
// cmd/zrc-rendezvous runs a subcommand only when its first argument names
// one.
package cli

import (
	"context"
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"slices"
	"strings"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// Env is what a subcommand runs with, injected so tests run subcommands
// in-process.
type Env struct {
	Stdin          io.Reader
	Stdout, Stderr io.Writer
	Getenv         func(string) string
	// Terminal reports whether Stdout is a terminal: loadtest shows its
	// progress line only then.
	Terminal bool
}

// Command is one subcommand.
type Command struct {
	Summary string
	Run     func(ctx context.Context, env Env, args []string) error
}

// Commands are the subcommands by name.
var Commands = map[string]Command{
	"post":     {"post a message: post <id> [file|-]", helpOK(post)},
	"get":      {"take a message, waiting for one: get [<id>] [--wait 30s] [--follow]", helpOK(get)},
	"keygen":   {"make an Ed25519 key pair and its recipient id", helpOK(keygen)},
	"loadtest": {"drive a server with long-polls and posts, verify every delivery, report", helpOK(loadTest)},
}

func init() {
	// help lists Commands, so it joins them here rather than in the literal.
	Commands["help"] = Command{"list the subcommands", help}
}

// ExitError asks for a particular exit status: 2 for a usage error, 3 for
// a get that found no message.
type ExitError struct {
	Code int
	Err  error
}

func (e *ExitError) Error() string { return e.Err.Error() }
func (e *ExitError) Unwrap() error { return e.Err }

func usageError(format string, a ...any) error {
	return &ExitError{Code: 2, Err: fmt.Errorf(format, a...)}
}

// IsTerminal reports whether f is a terminal (a character device).
func IsTerminal(f *os.File) bool {
	fi, err := f.Stat()
	return err == nil && fi.Mode()&os.ModeCharDevice != 0
}

func help(_ context.Context, env Env, _ []string) error {
	fmt.Fprintln(env.Stdout, "usage: zrc-rendezvous [server flags]          run the server (--help lists its flags)")
	fmt.Fprintln(env.Stdout, "       zrc-rendezvous <subcommand> [args]     a client-side tool:")
	names := make([]string, 0, len(Commands))
	for n := range Commands {
		names = append(names, n)
	}
	slices.Sort(names)
	for _, n := range names {
		fmt.Fprintf(env.Stdout, "  %-9s %s\n", n, Commands[n].Summary)
	}
	fmt.Fprintln(env.Stdout, "Each subcommand takes -h. The server URL defaults to $ZRC_URL, else http://127.0.0.1:8080.")
	return nil
}

// helpOK makes -h, which has printed the usage, a success.
func helpOK(run func(context.Context, Env, []string) error) func(context.Context, Env, []string) error {
	return func(ctx context.Context, env Env, args []string) error {
		if err := run(ctx, env, args); !errors.Is(err, flag.ErrHelp) {
			return err
		}
		return nil
	}
}

// newFlagSet makes a subcommand's flag set; usage and errors go to
// stderr.
func newFlagSet(env Env, name, synopsis, about string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(env.Stderr)
	fs.Usage = func() {
		fmt.Fprintf(env.Stderr, "usage: zrc-rendezvous %s\n%s\n\nflags:\n", synopsis, about)
		fs.PrintDefaults()
	}
	return fs
}

// parse parses flags wherever they stand among the positional arguments
// ("get <id> --wait 5s" and "get --wait 5s <id>" alike); everything after
// "--" is positional. -h returns flag.ErrHelp, which helpOK turns into
// success; any other flag error is a usage error.
func parse(fs *flag.FlagSet, args []string) (positional []string, err error) {
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				return nil, err
			}
			return nil, &ExitError{Code: 2, Err: err}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return positional, nil
		}
		if used := len(args) - len(rest); used > 0 && args[used-1] == "--" {
			return append(positional, rest...), nil
		}
		positional = append(positional, rest[0])
		args = rest[1:]
	}
}

// server holds the flags every client subcommand shares.
type server struct {
	url, token string
	insecure   bool
}

func (s *server) register(fs *flag.FlagSet, env Env) {
	def := env.Getenv("ZRC_URL")
	if def == "" {
		def = "http://127.0.0.1:8080"
	}
	fs.StringVar(&s.url, "url", def, "server base URL ($ZRC_URL)")
	fs.StringVar(&s.token, "token", env.Getenv("ZRC_TOKEN"),
		"Bearer token for auth_mode server_wide or per_mailbox ($ZRC_TOKEN; the environment keeps it out of ps)")
	fs.BoolVar(&s.insecure, "insecure", false, "skip TLS certificate verification (a self-signed test certificate)")
}

// client builds the Go client for the shared flags.
func (s *server) client(opts ...client.Option) *client.Client {
	if s.token != "" {
		opts = append(opts, client.WithToken(s.token))
	}
	if s.insecure {
		t := client.NewTransport()
		t.TLSClientConfig = &tls.Config{InsecureSkipVerify: true}
		opts = append(opts, client.WithHTTPClient(&http.Client{Transport: t}))
	}
	return client.New(strings.TrimSpace(s.url), opts...)
}
