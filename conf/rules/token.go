package rules

import (
	"encoding/hex"
	"errors"
	"strings"
)

// Prefix marks a token configured as the hex SHA-256 of the real one.
const Prefix = "sha256:"

// Allowed says what a configured token may be.
const Allowed = "plain (visible ASCII characters, no spaces) or " + Prefix + "<64 hex characters>"

// The reasons Check gives; none holds the token.
var (
	errEmpty  = errors.New("is empty")
	errDigest = errors.New("starts with " + Prefix + " but is not followed by exactly 64 hex characters")
	errChars  = errors.New("holds characters a Bearer token cannot carry (spaces, control or non-ASCII characters)")
)

// Check reports why tok cannot be a configured token, or nil. The error
// reads after the entry's name ("auth_tokens entry 2 is empty") and never
// holds the token.
func Check(tok string) error {
	if hexDigest, ok := strings.CutPrefix(tok, Prefix); ok {
		if _, err := Digest(hexDigest); err != nil {
			return err
		}
		return nil
	}
	if tok == "" {
		return errEmpty
	}
	if !Visible(tok) {
		return errChars
	}
	return nil
}

// Digest decodes the 64 hex characters (either case) after Prefix.
func Digest(hexDigest string) ([32]byte, error) {
	var d [32]byte
	if !DecodeHex(d[:], hexDigest) {
		return d, errDigest
	}
	return d, nil
}

// DecodeHex decodes s, hex of either case, into exactly dst, and reports
// whether s was that: the one hex rule of the credentials, configured
// token digests and the signature headers' key and signature alike
// (httpapi/guard). It allocates nothing. (actor.ParseID, which may import
// nothing of ours, calls encoding/hex the same way.)
func DecodeHex(dst []byte, s string) bool {
	if len(s) != 2*len(dst) {
		return false
	}
	_, err := hex.Decode(dst, []byte(s))
	return err == nil
}

// Visible reports whether s can arrive as a Bearer token: one or more
// visible ASCII characters. It allocates nothing.
func Visible(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if s[i] <= ' ' || s[i] > '~' {
			return false
		}
	}
	return true
}
