package statefile

import (
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"testing"
	"time"

	"github.com/zrc-rendezvous/zrc-rendezvous/actor"
)

func sample() map[actor.ID][]actor.Message {
	at := time.Unix(1700000000, 123456789)
	return map[actor.ID][]actor.Message{
		{1}: {
			{Seq: 10, Body: []byte("first"), Arrived: at},
			{Seq: 11, Body: []byte{0, 1, 2, 255}, Arrived: at.Add(time.Second)},
		},
		{2}: {{Seq: 99, Body: []byte("x"), Arrived: at}},
	}
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
	want := sample()
	for id := range want {
		for i := range want[id] {
			if !got[id][i].Arrived.Equal(want[id][i].Arrived) {
				t.Fatalf("%v[%d] arrived %v; want %v", id.Short(), i, got[id][i].Arrived, want[id][i].Arrived)
			}
			got[id][i].Arrived = want[id][i].Arrived
		}
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %+v; want %+v", got, want)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	if len(entries) != 1 {
		t.Fatalf("%d files in the directory; want only the state file", len(entries))
	}
}

func TestMissingFileIsNoState(t *testing.T) {
	got, err := Read(filepath.Join(t.TempDir(), "none"))
	if got != nil || err != nil {
		t.Fatalf("got %v, %v; want nil, nil", got, err)
	}
}

func TestCorruptFilesAreRefused(t *testing.T) {
	path := filepath.Join(t.TempDir(), "state")
	if _, err := Write(path, sample()); err != nil {
		t.Fatal(err)
	}
	good, _ := os.ReadFile(path)
	flipped := append([]byte(nil), good...)
	flipped[len(magic)+5] ^= 1
	for name, data := range map[string][]byte{
		"empty":     {},
		"no magic":  []byte("hello world, this is not a state file at all....."),
		"truncated": good[:len(good)-7],
		"flipped":   flipped,
	} {
		t.Run(name, func(t *testing.T) {
			if _, err := decode(data); !errors.Is(err, ErrCorrupt) {
				t.Fatalf("got %v; want ErrCorrupt", err)
			}
		})
	}
}

func FuzzDecode(f *testing.F) {
	path := filepath.Join(f.TempDir(), "state")
	Write(path, sample())
	good, _ := os.ReadFile(path)
	f.Add(good)
	f.Add([]byte(magic))
	f.Fuzz(func(t *testing.T, data []byte) {
		msgs, err := decode(data)
		if err != nil && !errors.Is(err, ErrCorrupt) {
			t.Fatalf("error %v is not ErrCorrupt", err)
		}
		if err == nil && msgs == nil {
			t.Fatalf("nil map without an error")
		}
	})
}
