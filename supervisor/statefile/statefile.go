// Package statefile keeps queued messages and the epoch across a planned
// restart (`state_file`, Z12): the supervisor's leftovers are written at
// shutdown and read back, then removed, at start.
//
// The format is binary and versioned. Version 2: the magic line
// "ZRCSTATE2\n", the epoch (Z9) as one length byte and its characters, then
// one record per message — recipient id (32 bytes), sequence (uint64),
// arrival in Unix nanoseconds (int64), body length (uint32), body — all
// big-endian, and last a SHA-256 of everything before it, so a torn or
// edited file is refused whole rather than half-restored. Version 1
// ("ZRCSTATE1\n") is the same without the epoch; it is still read, as
// state without an epoch.
package statefile

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

// The magic lines: a common prefix, then the version and a newline.
const (
	magicPrefix = "ZRCSTATE"
	magicV1     = magicPrefix + "1\n"
	magic       = magicPrefix + "2\n" // what Write writes
)

// recordHeader is a record's fixed part: id, sequence, arrival, length.
const recordHeader = actor.IDLen + 8 + 8 + 4

// maxBody bounds a record's declared length, so a corrupt length cannot
// make Read allocate without limit.
const maxBody = 64 << 20

// State is what the file keeps.
type State struct {
	// Epoch is the lineage of the queued state (Z9): 16 to 64 URL-safe
	// characters; "" only when read from a version 1 file, which had none.
	Epoch string
	// Messages are the queued messages, oldest first per mailbox.
	Messages map[actor.ID][]actor.Message
}

// ValidEpoch reports whether e is an epoch the file can keep: 16 to 64
// URL-safe characters (A-Z, a-z, 0-9, '-', '_'), as Z9 has it.
func ValidEpoch(e string) bool {
	if len(e) < 16 || len(e) > 64 {
		return false
	}
	for i := 0; i < len(e); i++ {
		c := e[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '-' || c == '_') {
			return false
		}
	}
	return true
}

// Write stores st at path atomically: a temporary file in the same
// directory, synced, then renamed over path. Only the owner may read it: it
// holds other people's (encrypted) envelopes. n is the messages written.
func Write(path string, st State) (n int, err error) {
	if !ValidEpoch(st.Epoch) {
		return 0, fmt.Errorf("epoch %q is not 16 to 64 URL-safe characters", st.Epoch)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".tmp*")
	if err != nil {
		return 0, err
	}
	defer func() {
		if err != nil {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(0o600); err != nil {
		return 0, err
	}
	sum := sha256.New()
	w := bufio.NewWriter(io.MultiWriter(tmp, sum))
	w.WriteString(magic)
	w.WriteByte(byte(len(st.Epoch)))
	w.WriteString(st.Epoch)
	var hdr [recordHeader]byte
	for id, list := range st.Messages {
		for _, m := range list {
			copy(hdr[:actor.IDLen], id[:])
			binary.BigEndian.PutUint64(hdr[actor.IDLen:], m.Seq)
			binary.BigEndian.PutUint64(hdr[actor.IDLen+8:], uint64(m.Arrived.UnixNano()))
			binary.BigEndian.PutUint32(hdr[actor.IDLen+16:], uint32(len(m.Body)))
			w.Write(hdr[:])
			w.Write(m.Body)
			n++
		}
	}
	if err := w.Flush(); err != nil {
		return 0, err
	}
	if _, err := tmp.Write(sum.Sum(nil)); err != nil {
		return 0, err
	}
	if err := tmp.Sync(); err != nil {
		return 0, err
	}
	if err := tmp.Close(); err != nil {
		return 0, err
	}
	return n, os.Rename(tmp.Name(), path)
}

// ErrCorrupt is returned for a file that is not a complete state file of a
// known version: corrupt, truncated, foreign or of an unknown version.
var ErrCorrupt = errors.New("state file is corrupt")

// Read loads the state stored at path. A missing file is no state:
// (nil, nil).
func Read(path string) (*State, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(data)
}

func decode(data []byte) (*State, error) {
	var v2 bool
	switch {
	case bytes.HasPrefix(data, []byte(magic)):
		v2 = true
	case bytes.HasPrefix(data, []byte(magicV1)):
	case bytes.HasPrefix(data, []byte(magicPrefix)):
		line, _, _ := bytes.Cut(data[len(magicPrefix):], []byte{'\n'})
		return nil, fmt.Errorf("%w: unknown version %.8q", ErrCorrupt, line)
	default:
		return nil, fmt.Errorf("%w: no %q header", ErrCorrupt, magicPrefix)
	}
	if len(data) < len(magic)+sha256.Size {
		return nil, fmt.Errorf("%w: truncated", ErrCorrupt)
	}
	body, want := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	st := &State{Messages: make(map[actor.ID][]actor.Message)}
	rest := body[len(magic):] // both versions' magic lines are as long
	if v2 {
		if len(rest) < 1 || len(rest) < 1+int(rest[0]) {
			return nil, fmt.Errorf("%w: truncated epoch", ErrCorrupt)
		}
		st.Epoch, rest = string(rest[1:1+rest[0]]), rest[1+rest[0]:]
		if !ValidEpoch(st.Epoch) {
			return nil, fmt.Errorf("%w: bad epoch", ErrCorrupt)
		}
	}
	for len(rest) > 0 {
		if len(rest) < recordHeader {
			return nil, fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		var id actor.ID
		copy(id[:], rest[:actor.IDLen])
		seq := binary.BigEndian.Uint64(rest[actor.IDLen:])
		arrived := int64(binary.BigEndian.Uint64(rest[actor.IDLen+8:]))
		size := binary.BigEndian.Uint32(rest[actor.IDLen+16:])
		rest = rest[recordHeader:]
		if size > maxBody || int(size) > len(rest) {
			return nil, fmt.Errorf("%w: record length %d", ErrCorrupt, size)
		}
		msg := actor.Message{Seq: seq, Arrived: time.Unix(0, arrived), Body: bytes.Clone(rest[:size])}
		rest = rest[size:]
		st.Messages[id] = append(st.Messages[id], msg)
	}
	return st, nil
}
