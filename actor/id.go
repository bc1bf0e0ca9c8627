package actor

import (
	"encoding/hex"
	"errors"
)

// IDLen is the size of a recipient id in bytes: a SHA-256 digest.
const IDLen = 32

// ID names a mailbox: the SHA-256 of the recipient's Ed25519 public key.
type ID [IDLen]byte

// ErrBadID is returned by ParseID for anything but 64 hex characters.
var ErrBadID = errors.New("recipient id must be exactly 64 hex characters")

// ParseID parses the 64-character hex form of an id, in either case, so that
// "AB…" and "ab…" name the same mailbox.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, ErrBadID
	}
	for i := range id {
		hi, ok1 := fromHex(s[2*i])
		lo, ok2 := fromHex(s[2*i+1])
		if !ok1 || !ok2 {
			return ID{}, ErrBadID
		}
		id[i] = hi<<4 | lo
	}
	return id, nil
}

// fromHex decodes one hex digit of either case; a hand-rolled loop keeps
// ParseID free of allocations on the request path.
func fromHex(c byte) (byte, bool) {
	switch {
	case '0' <= c && c <= '9':
		return c - '0', true
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10, true
	case 'A' <= c && c <= 'F':
		return c - 'A' + 10, true
	}
	return 0, false
}

// String is the canonical lower-case hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex characters: the only form logs may carry (Z6).
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }
