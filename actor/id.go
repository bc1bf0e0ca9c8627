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
// "AB…" and "ab…" name the same mailbox. encoding/hex decodes it without
// an allocation: the string's bytes are read in place.
func ParseID(s string) (ID, error) {
	var id ID
	if len(s) != 2*IDLen {
		return id, ErrBadID
	}
	if _, err := hex.Decode(id[:], []byte(s)); err != nil {
		return ID{}, ErrBadID
	}
	return id, nil
}

// String is the canonical lower-case hex form.
func (id ID) String() string { return hex.EncodeToString(id[:]) }

// Short is the first 8 hex characters: the only form logs may carry (Z6).
func (id ID) Short() string { return hex.EncodeToString(id[:4]) }
