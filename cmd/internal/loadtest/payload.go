package loadtest

import (
	"encoding/binary"
	"errors"
	"hash/crc32"
	"sync"
)

// A payload carries what the verifier needs to prove a delivered body is
// byte-identical to the one sent, and to which message it belongs:
//
//	0  magic "ZRL1"
//	4  run id        uint64  random per run: bodies of other runs are foreign
//	12 message id    uint64  0, 1, 2, … in posting order
//	20 mailbox index uint32  which of the run's mailboxes it was posted to
//	24 send time     int64   ns since the run started, read just before the POST
//	32 checksum      uint32  CRC-32C of the whole payload with this field zeroed
//	36 length        uint32  the payload's length
//	40 filler                pseudo-random bytes derived from run and message id
//
// All little-endian. The filler makes every body different, and the
// verifier regenerates it rather than trusting the checksum alone.
const (
	headerSize = 40
	// MinPayload is the smallest payload size.
	MinPayload = headerSize
)

var magic = [4]byte{'Z', 'R', 'L', '1'}

// castagnoli is made on first use, not at start: this package is linked
// into the server binary, which should not pay for it.
var castagnoli = sync.OnceValue(func() *crc32.Table { return crc32.MakeTable(crc32.Castagnoli) })

// header is a payload's fixed fields.
type header struct {
	run, msg uint64
	mailbox  uint32
	sent     int64 // ns since the run started
}

// encode writes a payload of len(b) bytes (at least headerSize) into b.
func encode(b []byte, h header) {
	copy(b[0:4], magic[:])
	binary.LittleEndian.PutUint64(b[4:], h.run)
	binary.LittleEndian.PutUint64(b[12:], h.msg)
	binary.LittleEndian.PutUint32(b[20:], h.mailbox)
	binary.LittleEndian.PutUint64(b[24:], uint64(h.sent))
	binary.LittleEndian.PutUint32(b[32:], 0)
	binary.LittleEndian.PutUint32(b[36:], uint32(len(b)))
	fill(b[headerSize:], h.run, h.msg)
	binary.LittleEndian.PutUint32(b[32:], crc32.Checksum(b, castagnoli()))
}

// Verification failures.
var (
	errForeign = errors.New("not a payload of this run")
	errCorrupt = errors.New("body differs from the one sent")
)

// decode checks that b is a payload of run, intact, and returns its
// header: errForeign when it is not this run's (or too mangled to tell),
// errCorrupt when any byte differs from what was sent.
func decode(b []byte, run uint64) (header, error) {
	if len(b) < headerSize || [4]byte(b[0:4]) != magic || binary.LittleEndian.Uint64(b[4:]) != run {
		return header{}, errForeign
	}
	h := header{
		run:     run,
		msg:     binary.LittleEndian.Uint64(b[12:]),
		mailbox: binary.LittleEndian.Uint32(b[20:]),
		sent:    int64(binary.LittleEndian.Uint64(b[24:])),
	}
	sum := binary.LittleEndian.Uint32(b[32:])
	if binary.LittleEndian.Uint32(b[36:]) != uint32(len(b)) {
		return h, errCorrupt
	}
	// The checksum covers the payload with its own field zeroed.
	tab := castagnoli()
	crc := crc32.Update(0, tab, b[:32])
	crc = crc32.Update(crc, tab, []byte{0, 0, 0, 0})
	crc = crc32.Update(crc, tab, b[36:])
	if crc != sum || !filled(b[headerSize:], run, h.msg) {
		return h, errCorrupt
	}
	return h, nil
}

// fill writes the filler of message msg of run: splitmix64 output.
func fill(b []byte, run, msg uint64) {
	s := run ^ msg*0x9e3779b97f4a7c15
	for len(b) >= 8 {
		binary.LittleEndian.PutUint64(b, splitmix(&s))
		b = b[8:]
	}
	if len(b) > 0 {
		var last [8]byte
		binary.LittleEndian.PutUint64(last[:], splitmix(&s))
		copy(b, last[:])
	}
}

// filled reports whether b is exactly fill's output for run and msg.
func filled(b []byte, run, msg uint64) bool {
	s := run ^ msg*0x9e3779b97f4a7c15
	for len(b) >= 8 {
		if binary.LittleEndian.Uint64(b) != splitmix(&s) {
			return false
		}
		b = b[8:]
	}
	if len(b) > 0 {
		var last [8]byte
		binary.LittleEndian.PutUint64(last[:], splitmix(&s))
		return string(b) == string(last[:len(b)])
	}
	return true
}

func splitmix(s *uint64) uint64 {
	*s += 0x9e3779b97f4a7c15
	z := *s
	z = (z ^ z>>30) * 0xbf58476d1ce4e5b9
	z = (z ^ z>>27) * 0x94d049bb133111eb
	return z ^ z>>31
}
