package main

import (
	"bytes"
	"context"
	"errors"
	"os/exec"
	"strings"
	"testing"
)

// The first argument picks a client-side subcommand; anything else is the
// server's, which stays the default.
func TestDispatch(t *testing.T) {
	ctx := context.Background()
	getenv := func(string) string { return "" }
	var out, errOut bytes.Buffer
	if err := dispatch(ctx, []string{"keygen"}, getenv, strings.NewReader(""), &out, &errOut); err != nil ||
		!strings.Contains(out.String(), "recipient_id ") {
		t.Fatalf("keygen: %v, %q", err, out.String())
	}
	out.Reset()
	if err := dispatch(ctx, []string{"--version"}, getenv, nil, &out, &errOut); err != nil || !strings.HasPrefix(out.String(), "zrc-rendezvous ") {
		t.Fatalf("--version through dispatch: %v, %q; want the server's version line", err, out.String())
	}
	err := dispatch(ctx, []string{"get"}, getenv, nil, &out, &errOut)
	if e, ok := errors.AsType[exitError](err); !ok || e.code != 2 {
		t.Fatalf("get without an id: %v; want exit status 2", err)
	}
}

// The built binary runs a subcommand and exits with its status.
func TestProcessSubcommand(t *testing.T) {
	out, err := exec.Command(binary, "keygen").Output()
	if err != nil || !strings.Contains(string(out), "private_key ") {
		t.Fatalf("zrc-rendezvous keygen: %v, %q", err, out)
	}
	s := startServer(t, nil)
	cmd := exec.Command(binary, "get", strings.Repeat("ab", 32), "--wait", "0", "--url", s.url)
	err = cmd.Run()
	if ee, ok := errors.AsType[*exec.ExitError](err); !ok || ee.ExitCode() != 3 {
		t.Fatalf("get on an empty mailbox: %v; want exit status 3", err)
	}
}
