package cli

import (
	"context"
	"fmt"
	"io"
	"os"
)

// maxPostBody bounds what post reads; the server's max_message_size is
// far lower (64 KiB by default) and answers 413 above it.
const maxPostBody = 64 << 20

// post: zrc-rendezvous post <id> [file|-]
func post(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "post", "post <id> [file|-] [flags]",
		"Posts the file, or standard input when it is - or absent, as one message to mailbox <id>\n"+
			"(64 hex characters). Prints sequence=… queue_length=… on standard error.")
	var srv server
	srv.register(fs, env)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return usageError("post: want <id> and at most one file, got %d arguments", len(pos))
	}
	in, name := env.Stdin, "standard input"
	if len(pos) == 2 && pos[1] != "-" {
		f, err := os.Open(pos[1])
		if err != nil {
			return err
		}
		defer f.Close()
		in, name = f, pos[1]
	}
	body, err := io.ReadAll(io.LimitReader(in, maxPostBody+1))
	if err != nil {
		return fmt.Errorf("post: reading %s: %w", name, err)
	}
	if len(body) > maxPostBody {
		return fmt.Errorf("post: %s holds more than %d bytes", name, maxPostBody)
	}
	res, err := srv.client().Post(ctx, pos[0], body)
	if err != nil {
		return err
	}
	fmt.Fprintf(env.Stderr, "sequence=%d queue_length=%d\n", res.Sequence, res.QueueLength)
	return nil
}
