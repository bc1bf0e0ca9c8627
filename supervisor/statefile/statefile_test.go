package statefile

import (
	"crypto/sha256"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

const testEpoch = "q7Hc0vXbS3m-Yp1_ZlK9Aw"

func sample() State {
	at := time.Unix(1700000000, 123456789)
	return State{Epoch: testEpoch, Messages: map[actor.ID][]actor.Message{
		{1}: {
			{Seq: 10, Body: []byte("first"), Arrived: at},
			{Seq: 11, Body: []byte{0, 1, 2, 255}, Arrived: at.Add(time.Second)},
		},
		{2}: {{Seq: 99, Body: []byte("x"), Arrived: at}},
	}}
}

// sameState fails t unless got holds want's epoch and messages.
func sameState(t *testing.T, got *State, want State) {
	t.Helper()
	if got == nil {
		t.Fatal("got no state")
	}
	for id := range want.Messages {
		for i := range want.Messages[id] {
			if !got.Messages[id][i].Arrived.Equal(want.Messages[id][i].Arrived) {
				t.Fatalf("%v[%d] arrived %v; want %v", id.Short(), i, got.Messages[id][i].Arrived, want.Messages[id][i].Arrived)
			}
			got.Messages[id][i].Arrived = want.Messages[id][i].Arrived
		}
	}
	if !reflect.DeepEqual(*got, want) {
		t.Fatalf("got %+v; want %+v", *got, want)
	}
}

// goodFile writes sample() and returns the file's bytes.
func goodFile(tb testing.TB) []byte {
	tb.Helper()
	path := filepath.Join(tb.TempDir(), "state")
	if _, err := Write(path, sample()); err != nil {
		tb.Fatal(err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		tb.Fatal(err)
	}
	return b
}

// withSum returns body followed by its SHA-256, as Write ends a file.
func withSum(body []byte) []byte {
	sum := sha256.Sum256(body)
	return append(body, sum[:]...)
}

// versionOne turns a version 2 file into the version 1 file of the same
// messages: the old magic line, no epoch.
func versionOne(v2 []byte) []byte {
	body := v2[len(magic) : len(v2)-sha256.Size]
	body = body[1+int(body[0]):]
	return withSum(append([]byte(magicV1), body...))
}

func TestRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	n, err := Write(path, sample())
	if err != nil || n != 3 {
		t.Fatalf("Write: n=%d err=%v; want 3 nil", n, err)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm != 0o600 {
		t.Fatalf("mode %v; want 0600", perm)
	}
	got, err := Read(path)
	if err != nil {
		t.Fatal(err)
	}
	sameState(t, got, sample())
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory; want only the state file", len(entries))
	}
}

// Z9: an empty state keeps its epoch too.
func TestRoundTripNoMessages(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if n, err := Write(path, State{Epoch: testEpoch}); err != nil || n != 0 {
		t.Fatalf("Write: n=%d err=%v; want 0 nil", n, err)
	}
	got, err := Read(path)
	if err != nil || got == nil || got.Epoch != testEpoch || len(got.Messages) != 0 {
		t.Fatalf("Read: %+v %v; want epoch %s and no messages", got, err, testEpoch)
	}
}

// A file written by a version that knew no epoch is restored, without
// one: its messages are not lost on an upgrade.
func TestReadsVersionOne(t *testing.T) {
	got, err := decode(versionOne(goodFile(t)))
	if err != nil {
		t.Fatal(err)
	}
	want := sample()
	want.Epoch = ""
	sameState(t, got, want)
}

func TestWriteRefusesBadEpoch(t *testing.T) {
	for _, e := range []string{"", "short", "has space in it, long enough", string(make([]byte, 65))} {
		path := filepath.Join(t.TempDir(), "state")
		if _, err := Write(path, State{Epoch: e}); err == nil {
			t.Fatalf("Write with epoch %q succeeded; want an error", e)
		}
		if _, err := os.Stat(path); !os.IsNotExist(err) {
			t.Fatalf("Write with epoch %q left a file: %v", e, err)
		}
	}
}

func TestMissingFileIsNoState(t *testing.T) {
	got, err := Read(filepath.Join(t.TempDir(), "none"))
	if got != nil || err != nil {
		t.Fatalf("got %v, %v; want nil, nil", got, err)
	}
}

// Z12: corrupt, truncated, foreign and unknown-version files are refused
// whole.
func TestCorruptFilesAreRefused(t *testing.T) {
	good := goodFile(t)
	flipped := append([]byte(nil), good...)
	flipped[len(magic)+30] ^= 1
	badEpoch := append([]byte(magic), 16)
	badEpoch = withSum(append(badEpoch, "0123456789abcde!"...))
	longEpoch := append([]byte(magic), 200)
	longEpoch = withSum(append(longEpoch, "x"...))
	for name, data := range map[string][]byte{
		"empty":           {},
		"foreign":         []byte("hello world, this is not a state file at all....."),
		"magic only":      []byte(magic),
		"truncated":       good[:len(good)-7],
		"flipped":         flipped,
		"unknown version": withSum(append([]byte(magicPrefix+"3\n"), good[len(magic):len(good)-sha256.Size]...)),
		"bad epoch":       badEpoch,
		"epoch past end":  longEpoch,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decode(data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v; want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	good := goodFile(f)
	f.Add(good)
	f.Add(good[:len(good)-7])
	f.Add(versionOne(good))
	f.Add([]byte(magic))
	f.Add([]byte("ZRCSTATX\n"))
	f.Add(withSum([]byte(magicPrefix + "3\n")))
	f.Fuzz(func(t *testing.T, data []byte) {
		st, err := decode(data)
		if err != nil {
			if !errors.Is(err, ErrCorrupt) {
				t.Fatalf("error %v is not ErrCorrupt", err)
			}
			return
		}
		if st == nil || st.Messages == nil {
			t.Fatalf("no state without an error")
		}
		if st.Epoch != "" && !ValidEpoch(st.Epoch) {
			t.Fatalf("accepted epoch %q", st.Epoch)
		}
		for _, list := range st.Messages {
			for _, m := range list {
				if len(m.Body) > maxBody {
					t.Fatalf("a body of %d bytes", len(m.Body))
				}
			}
		}
	})
}
