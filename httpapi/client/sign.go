// Package client is the client side of zrc-rendezvous' wire protocol: a Go
// client for post, long-poll get and health (client.go, retry.go), and
// what a client needs to prove it owns a mailbox under auth_mode =
// "signature" (SPEC Z4, this file); docs/auth.md describes the scheme and
// docs/signature-test-vectors.json gives vectors for other languages.
package client

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"net/http"
	"strconv"
	"time"
)

// Header names of a signed GET (Z4).
const (
	HeaderKey       = "X-Mailbox-Key"
	HeaderTimestamp = "X-Mailbox-Timestamp"
	HeaderNonce     = "X-Mailbox-Nonce"
	HeaderSignature = "X-Mailbox-Signature"
)

// signedPrefix starts every signed string; the version lets a later scheme
// never verify under this one.
const signedPrefix = "zrc-rendezvous-v1\nGET\n/v1/mailbox/"

// NonceSize is the size of the nonces NewNonce makes: 16 bytes, 32 hex
// characters (the server takes 16 to 64).
const NonceSize = 16

// SignedString is what a GET's signature covers (Z4):
//
//	zrc-rendezvous-v1\nGET\n/v1/mailbox/<rid>\n<timestamp>\n<nonce>
//
// rid is the recipient id in lower-case hex; timestamp and nonce are the
// X-Mailbox-Timestamp and X-Mailbox-Nonce header values exactly as sent.
// The query string is not signed.
func SignedString(rid, timestamp, nonce string) []byte {
	b := make([]byte, 0, len(signedPrefix)+len(rid)+len(timestamp)+len(nonce)+2)
	b = append(b, signedPrefix...)
	b = append(b, rid...)
	b = append(b, '\n')
	b = append(b, timestamp...)
	b = append(b, '\n')
	b = append(b, nonce...)
	return b
}

// MailboxID is the recipient id of a public key: SHA-256 of the key, in
// lower-case hex.
func MailboxID(pub ed25519.PublicKey) string {
	sum := sha256.Sum256(pub)
	return hex.EncodeToString(sum[:])
}

// NewNonce returns NonceSize random bytes for SignGet.
func NewNonce() ([]byte, error) {
	n := make([]byte, NonceSize)
	if _, err := rand.Read(n); err != nil {
		return nil, err
	}
	return n, nil
}

// Signed holds the four header values of a signed GET.
type Signed struct {
	Key, Timestamp, Nonce, Signature string
}

// Apply sets the four headers on h.
func (s Signed) Apply(h http.Header) {
	h.Set(HeaderKey, s.Key)
	h.Set(HeaderTimestamp, s.Timestamp)
	h.Set(HeaderNonce, s.Nonce)
	h.Set(HeaderSignature, s.Signature)
}

// SignGet signs a GET of the mailbox that key owns (the one named
// MailboxID(key.Public())) at time at with nonce (8 to 32 bytes, fresh
// for every request: the server accepts each key and nonce once). The
// server accepts timestamps within 60 seconds of its clock.
func SignGet(key ed25519.PrivateKey, at time.Time, nonce []byte) (Signed, error) {
	if len(key) != ed25519.PrivateKeySize {
		return Signed{}, errors.New("client: not an Ed25519 private key")
	}
	if len(nonce) < 8 || len(nonce) > 32 {
		return Signed{}, errors.New("client: nonce must be 8 to 32 bytes (16 to 64 hex characters)")
	}
	pub := key.Public().(ed25519.PublicKey)
	s := Signed{
		Key:       hex.EncodeToString(pub),
		Timestamp: strconv.FormatInt(at.Unix(), 10),
		Nonce:     hex.EncodeToString(nonce),
	}
	sig := ed25519.Sign(key, SignedString(MailboxID(pub), s.Timestamp, s.Nonce))
	s.Signature = hex.EncodeToString(sig)
	return s, nil
}
