package main

import (
	"context"
	"errors"
	"io"
	"os"

	"github.com/zrc-rendezvous/zrc-rendezvous/cmd/zrc-rendezvous/cli"
)

// dispatch runs the client-side subcommand that args[0] names (post, get,
// keygen, loadtest, help: package cli), and the server otherwise, so the
// server stays the default. The server takes no positional arguments, so
// a subcommand name cannot be mistaken for one of its flags' values.
func dispatch(ctx context.Context, args []string, getenv func(string) string, stdin io.Reader, stdout, stderr io.Writer) error {
	var cmd cli.Command
	if len(args) > 0 {
		cmd = cli.Commands[args[0]]
	}
	if cmd.Run == nil {
		return run(ctx, args, getenv, stdout, stderr)
	}
	f, isFile := stdout.(*os.File)
	err := cmd.Run(ctx, cli.Env{Stdin: stdin, Stdout: stdout, Stderr: stderr, Getenv: getenv,
		Terminal: isFile && cli.IsTerminal(f)}, args[1:])
	if e, ok := errors.AsType[*cli.ExitError](err); ok {
		return exitError{code: e.Code, err: e.Err}
	}
	return err
}
