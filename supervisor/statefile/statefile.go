// Package statefile keeps queued messages across a planned restart
// (`state_file`): the supervisor's leftovers are written at shutdown and
// read back, then removed, at start.
//
// The format is binary and versioned: the magic line "ZRCSTATE1\n", then
// one record per message — recipient id (32 bytes), sequence (uint64),
// arrival in Unix nanoseconds (int64), body length (uint32), body — all
// big-endian, and last a SHA-256 of everything before it, so a torn or
// edited file is refused whole rather than half-restored.
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

const magic = "ZRCSTATE1\n"

// maxBody bounds a record's declared length, so a corrupt length cannot
// make Read allocate without limit.
const maxBody = 64 << 20

// Write stores msgs at path atomically: a temporary file in the same
// directory, synced, then renamed over path. Only the owner may read it: it
// holds other people's (encrypted) envelopes.
func Write(path string, msgs map[actor.ID][]actor.Message) (n int, err error) {
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
	var hdr [32 + 8 + 8 + 4]byte
	for id, list := range msgs {
		for _, m := range list {
			copy(hdr[:32], id[:])
			binary.BigEndian.PutUint64(hdr[32:], m.Seq)
			binary.BigEndian.PutUint64(hdr[40:], uint64(m.Arrived.UnixNano()))
			binary.BigEndian.PutUint32(hdr[48:], uint32(len(m.Body)))
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

// ErrCorrupt is returned for a file that is not a complete state file.
var ErrCorrupt = errors.New("state file is corrupt")

// Read loads the messages stored at path, oldest first per mailbox. A
// missing file is no state: (nil, nil).
func Read(path string) (map[actor.ID][]actor.Message, error) {
	data, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	return decode(data)
}

func decode(data []byte) (map[actor.ID][]actor.Message, error) {
	if len(data) < len(magic)+sha256.Size || string(data[:len(magic)]) != magic {
		return nil, fmt.Errorf("%w: no %q header", ErrCorrupt, magic[:len(magic)-1])
	}
	body, want := data[:len(data)-sha256.Size], data[len(data)-sha256.Size:]
	if got := sha256.Sum256(body); !bytes.Equal(got[:], want) {
		return nil, fmt.Errorf("%w: checksum mismatch", ErrCorrupt)
	}
	out := make(map[actor.ID][]actor.Message)
	rest := body[len(magic):]
	for len(rest) > 0 {
		if len(rest) < 52 {
			return nil, fmt.Errorf("%w: truncated record", ErrCorrupt)
		}
		var id actor.ID
		copy(id[:], rest[:32])
		seq := binary.BigEndian.Uint64(rest[32:])
		arrived := int64(binary.BigEndian.Uint64(rest[40:]))
		size := binary.BigEndian.Uint32(rest[48:])
		rest = rest[52:]
		if size > maxBody || int(size) > len(rest) {
			return nil, fmt.Errorf("%w: record length %d", ErrCorrupt, size)
		}
		msg := actor.Message{Seq: seq, Arrived: time.Unix(0, arrived), Body: bytes.Clone(rest[:size])}
		rest = rest[size:]
		out[id] = append(out[id], msg)
	}
	return out, nil
}
