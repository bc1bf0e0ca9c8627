package cli

import (
	"context"
	"crypto/ed25519"
	"fmt"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// get: zrc-rendezvous get [<id>] [--wait 30s] [--follow]
func get(ctx context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "get", "get [<id>] [flags]",
		"Takes the oldest message of mailbox <id>, waiting up to --wait for one, and writes its body to\n"+
			"standard output as is; sequence=… queue_length=… go to standard error. Exits 3 when no message\n"+
			"came in time. With --key-file the GET is signed (auth_mode signature) and <id> may be left out:\n"+
			"it is the key's own mailbox.")
	var srv server
	srv.register(fs, env)
	wait := fs.Duration("wait", 30*time.Second, "how long to wait for a message (0: answer at once; the server clamps to long_poll_max_ms)")
	follow := fs.Bool("follow", false, "keep polling and write every message until interrupted")
	keyFile := fs.String("key-file", "", "Ed25519 private key (keygen's output, or its hex) to sign GETs with")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if *wait < 0 {
		return usageError("get: --wait must not be negative")
	}
	var opts []client.Option
	var id string
	if *keyFile != "" {
		key, err := readKeyFile(*keyFile)
		if err != nil {
			return err
		}
		opts = append(opts, client.WithSigningKey(key))
		id = client.MailboxID(key.Public().(ed25519.PublicKey))
	}
	switch {
	case len(pos) == 1:
		id = pos[0]
	case len(pos) == 0 && id != "":
	default:
		fs.Usage()
		return usageError("get: want one <id> (or --key-file), got %d arguments", len(pos))
	}
	c := srv.client(opts...)
	for {
		m, ok, err := c.Get(ctx, id, *wait)
		switch {
		case err != nil && *follow && ctx.Err() != nil:
			return nil // interrupted: the normal end of --follow
		case err != nil:
			return err
		case !ok && *follow:
			continue
		case !ok:
			return &ExitError{Code: 3, Err: fmt.Errorf("get: no message within %v", *wait)}
		}
		if _, err := env.Stdout.Write(m.Body); err != nil {
			return err
		}
		fmt.Fprintf(env.Stderr, "sequence=%d queue_length=%d\n", m.Sequence, m.QueueLength)
		if !*follow {
			return nil
		}
	}
}
