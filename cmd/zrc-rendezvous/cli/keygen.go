package cli

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"strings"

	"github.com/zrc-rendezvous/zrc-rendezvous/httpapi/client"
)

// keygen: zrc-rendezvous keygen [--out FILE]
func keygen(_ context.Context, env Env, args []string) error {
	fs := newFlagSet(env, "keygen", "keygen [--out FILE]",
		"Makes an Ed25519 key pair and prints, as hex, the private key (64 bytes: seed and public key),\n"+
			"the public key and its recipient id (SHA-256 of the public key), one \"name value\" line each.\n"+
			"get --key-file reads this output back.")
	out := fs.String("out", "", "write the three lines to FILE (created with mode 0600, never overwritten) and print only the public ones")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		return usageError("keygen: takes no arguments")
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	private := fmt.Sprintf("private_key  %x\n", []byte(key))
	public := fmt.Sprintf("public_key   %x\nrecipient_id %s\n", []byte(pub), client.MailboxID(pub))
	if *out == "" {
		_, err := fmt.Fprint(env.Stdout, private+public)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := f.WriteString(private + public); err != nil {
		f.Close()
		return err
	}
	if err := f.Close(); err != nil {
		return err
	}
	_, err = fmt.Fprint(env.Stdout, public)
	return err
}

// readKeyFile reads a private key: keygen's output (the private_key line)
// or a file holding only the hex of the 32-byte seed or the 64-byte key.
func readKeyFile(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	key, err := parseKey(b)
	if err != nil {
		return nil, fmt.Errorf("key file %s: %w", path, err)
	}
	return key, nil
}

func parseKey(b []byte) (ed25519.PrivateKey, error) {
	var hexKey string
	for line := range strings.SplitSeq(string(b), "\n") {
		f := strings.Fields(line)
		switch {
		case len(f) == 2 && f[0] == "private_key":
			hexKey = f[1]
		case len(f) == 1 && hexKey == "":
			hexKey = f[0]
		}
	}
	raw, err := hex.DecodeString(hexKey)
	if err != nil || hexKey == "" {
		return nil, errors.New("no private key: want keygen's output or the hex of a 32-byte seed or 64-byte key")
	}
	switch len(raw) {
	case ed25519.SeedSize:
		return ed25519.NewKeyFromSeed(raw), nil
	case ed25519.PrivateKeySize:
		key := ed25519.NewKeyFromSeed(raw[:ed25519.SeedSize])
		if !bytes.Equal(key, raw) {
			return nil, errors.New("the 64-byte key's public half does not match its seed")
		}
		return key, nil
	}
	return nil, fmt.Errorf("the private key is %d bytes; want 32 (seed) or 64", len(raw))
}
